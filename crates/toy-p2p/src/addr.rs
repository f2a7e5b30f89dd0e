//! Peer addresses on the wire: `host:port`, comma-separated lists.

/// Whether `s` looks like `host:port`.
pub fn is_valid_addr(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && host.len() <= 253
                && port.parse::<u16>().is_ok_and(|p| p != 0)
                && !host.contains(',')
                && host.chars().all(|c| c.is_ascii_graphic())
        }
        None => false,
    }
}

/// Parses a comma-separated peer list, keeping at most `max` valid addresses.
pub fn parse_addrs(bytes: &[u8], max: usize) -> Vec<String> {
    std::str::from_utf8(bytes)
        .map(|s| s.split(',').map(str::trim).filter(|a| is_valid_addr(a)).take(max).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Joins addresses with commas.
pub fn join_addrs<'a>(addrs: impl IntoIterator<Item = &'a str>) -> String {
    addrs.into_iter().collect::<Vec<_>>().join(",")
}

/// Whether two socket addresses are on one host (the same IP; an IPv4
/// address seen through an IPv6 socket counts as itself). Names and
/// malformed addresses are never the same host.
pub(crate) fn same_host(a: &str, b: &str) -> bool {
    use std::net::SocketAddr;
    match (a.parse::<SocketAddr>(), b.parse::<SocketAddr>()) {
        (Ok(a), Ok(b)) => a.ip().to_canonical() == b.ip().to_canonical(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::same_host;

    #[test]
    fn same_host_compares_ips_only() {
        assert!(same_host("10.0.0.1:1", "10.0.0.1:2"));
        assert!(same_host("[::ffff:10.0.0.1]:1", "10.0.0.1:2"));
        assert!(!same_host("10.0.0.1:1", "10.0.0.2:1"));
        assert!(!same_host("host:1", "host:1"));
    }
}

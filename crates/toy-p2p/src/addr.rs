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

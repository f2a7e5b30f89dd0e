//! Where a connection comes from: the identity a ban hits and the group a
//! connection limit counts.
//!
//! An address a peer *announces* is only a claim; the remote end of the
//! socket is what the operating system saw. Bitcoin Core charges
//! misbehaviour to the remote IP and spreads its connections over
//! "netgroups" (an IPv4 /16, an IPv6 /32) so that one operator, who can
//! usually get many addresses of one subnet cheaply but few subnets, cannot
//! fill a node's slots. These two functions are that idea for toy.
//!
//! On loopback every node of a local testnet shares `127.0.0.1`, so there
//! the identity and the group are the whole `ip:port` (one connection),
//! and names that are not socket addresses (the memory transport's
//! endpoint names) are their own identity and group.

use std::net::{IpAddr, SocketAddr};

/// Where a connection really comes from, the key misbehaviour is charged to
/// and bans apply to (never the address a peer announces about itself):
///
/// * a remote IP address, for connections from other hosts: every
///   connection from that host shares the record, so a banned peer cannot
///   come back by announcing another address (Bitcoin Core bans by IP too);
/// * the whole `ip:port`, for loopback, where every local process shares the
///   IP: a per-connection identity, so one bad local process never gets the
///   honest ones on the same host banned;
/// * the remote name as given, for transports without IP addresses (the
///   in-memory network names each endpoint).
///
/// For an address we dial, the same rule applies to the dialled address.
///
/// ```
/// assert_eq!(toy_net::origin_of("203.0.113.7:9000"), "203.0.113.7");
/// assert_eq!(toy_net::origin_of("127.0.0.1:9000"), "127.0.0.1:9000");
/// assert_eq!(toy_net::origin_of("node-a"), "node-a");
/// ```
pub fn origin_of(remote: &str) -> String {
    match remote.parse::<SocketAddr>() {
        // An IPv4 address seen through an IPv6 socket is that IPv4 address.
        Ok(sa) if sa.ip().to_canonical().is_loopback() => {
            SocketAddr::new(sa.ip().to_canonical(), sa.port()).to_string()
        }
        Ok(sa) => sa.ip().to_canonical().to_string(),
        Err(_) => remote.to_owned(),
    }
}

/// The group a connection from `remote` counts in for per-group limits:
/// the IPv4 /16 or IPv6 /32 it comes from (as Bitcoin Core's netgroups),
/// else [`origin_of`]: loopback and names, one connection each; private and
/// link-local addresses (10/8, 172.16/12, 192.168/16, 169.254/16, fc00::/7,
/// fe80::/10), one host each. A private network (a LAN, containers, the
/// testnet's namespaces) is one operator's: all of it in one /16 would
/// make every node one group to the new table and to eviction.
///
/// ```
/// assert_eq!(toy_net::netgroup_of("203.0.113.7:9000"), toy_net::netgroup_of("203.0.1.1:1"));
/// assert_ne!(toy_net::netgroup_of("203.0.113.7:9000"), toy_net::netgroup_of("203.1.113.7:9000"));
/// assert_eq!(toy_net::netgroup_of("[2001:db8:1::1]:1"), toy_net::netgroup_of("[2001:db8:ffff::2]:2"));
/// ```
pub fn netgroup_of(remote: &str) -> String {
    match remote.parse::<SocketAddr>().map(|sa| sa.ip().to_canonical()) {
        Ok(ip) if ip.is_loopback() => origin_of(remote),
        Ok(IpAddr::V4(v4)) if v4.is_private() || v4.is_link_local() => v4.to_string(),
        Ok(IpAddr::V6(v6)) if (v6.segments()[0] & 0xfe00) == 0xfc00 || (v6.segments()[0] & 0xffc0) == 0xfe80 => {
            v6.to_string()
        }
        Ok(IpAddr::V4(v4)) => {
            let [a, b, ..] = v4.octets();
            format!("{a}.{b}.0.0/16")
        }
        Ok(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}::/32", s[0], s[1])
        }
        Err(_) => remote.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_ipv4_is_the_ipv4_address() {
        assert_eq!(origin_of("[::ffff:198.51.100.2]:5"), "198.51.100.2");
        assert_eq!(netgroup_of("[::ffff:198.51.100.2]:5"), "198.51.0.0/16");
        assert_eq!(origin_of("[::ffff:127.0.0.1]:5"), "127.0.0.1:5");
    }

    #[test]
    fn private_hosts_are_groups_of_their_own() {
        assert_ne!(netgroup_of("10.79.0.1:1"), netgroup_of("10.79.0.2:1"));
        assert_eq!(netgroup_of("10.79.0.1:1"), netgroup_of("10.79.0.1:2"));
        assert_ne!(netgroup_of("192.168.1.5:1"), netgroup_of("192.168.1.6:1"));
        assert_ne!(netgroup_of("[fd00::1]:1"), netgroup_of("[fd00::2]:1"));
        assert_eq!(netgroup_of("8.8.4.4:1"), netgroup_of("8.8.8.8:1"), "public: the /16");
    }

    #[test]
    fn loopback_connections_are_groups_of_one() {
        assert_ne!(netgroup_of("127.0.0.1:1"), netgroup_of("127.0.0.1:2"));
        assert_ne!(netgroup_of("[::1]:1"), netgroup_of("[::1]:2"));
    }
}

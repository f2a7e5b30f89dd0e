//! One network namespace per node, each with its own address on
//! 10.79.0.0/24, joined by the [`Wire`](super::wire::Wire).
//!
//! Node `i` is `toytn<i>` at 10.79.0.(i+1); the testnet itself (and the
//! oracle it starts) reaches them from 10.79.0.254 over a TUN device of its
//! own, `toytnh`. Everything is removed when [`Namespaces`] is dropped, and
//! what a killed testnet left behind is removed before starting.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

use super::wire::Tun;

/// The subnet's first three octets.
const NET: [u8; 3] = [10, 79, 0];
/// The host's last octet.
const HOST: u8 = 254;
/// Prefix of the namespaces' names.
const PREFIX: &str = "toytn";

/// The namespaces of a testnet, removed on drop.
pub(crate) struct Namespaces {
    names: Vec<String>,
    /// Held while they exist: one namespaced testnet per machine (the
    /// names and the subnet are fixed).
    _lock: std::fs::File,
}

/// The lock a namespaced testnet holds.
const LOCK: &str = "/run/toy-testnet.lock";

/// Node `i`'s address.
pub(crate) fn address(i: usize) -> String {
    format!("{}.{}.{}.{}", NET[0], NET[1], NET[2], i + 1)
}

/// The node index (or `nodes` for the host) an IPv4 address belongs to.
pub(crate) fn index(nodes: usize) -> impl Fn([u8; 4]) -> Option<usize> + Send + 'static {
    move |ip| {
        if ip[..3] != NET {
            return None;
        }
        match ip[3] {
            HOST => Some(nodes),
            0 => None,
            n if usize::from(n) <= nodes => Some(usize::from(n) - 1),
            _ => None,
        }
    }
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output().context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

impl Namespaces {
    /// Creates `nodes` namespaces, a TUN device in each and one for the
    /// host; returns them with the devices (node order, then the host's).
    pub(crate) fn create(nodes: usize) -> anyhow::Result<(Namespaces, Vec<Tun>, Tun)> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!("--netns needs root (network namespaces and TUN devices): run the testnet with sudo");
        }
        if nodes >= usize::from(HOST) {
            bail!("--netns supports at most {} nodes", HOST - 1);
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK)
            .with_context(|| format!("opening {LOCK}"))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            bail!("another --netns testnet is running (it holds {LOCK}); stop it first");
        }
        // No testnet runs: what is left was a killed one's.
        Self::clean_stale();
        let mut me = Namespaces { names: Vec::new(), _lock: lock };
        let mut tuns = Vec::new();
        for i in 0..nodes {
            let ns = format!("{PREFIX}{i}");
            ip(&["netns", "add", &ns])?;
            me.names.push(ns.clone());
            let dev = format!("{PREFIX}{i}");
            tuns.push(Tun::create(&dev, Some(&PathBuf::from("/run/netns").join(&ns)))?);
            ip(&["-n", &ns, "addr", "add", &format!("{}/24", address(i)), "dev", &dev])?;
            ip(&["-n", &ns, "link", "set", &dev, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        let host_dev = format!("{PREFIX}h");
        let host = Tun::create(&host_dev, None)?;
        ip(&["addr", "add", &format!("{}.{}.{}.{HOST}/24", NET[0], NET[1], NET[2]), "dev", &host_dev])?;
        ip(&["link", "set", &host_dev, "up"])?;
        Ok((me, tuns, host))
    }

    /// Node `i`'s namespace.
    pub(crate) fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// Removes the namespaces an earlier, killed testnet left.
    fn clean_stale() {
        let out = Command::new("ip").args(["netns", "list"]).output();
        let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        for name in text.lines().filter_map(|l| l.split_whitespace().next()) {
            if name.strip_prefix(PREFIX).is_some_and(|n| n.parse::<usize>().is_ok()) {
                let _ = ip(&["netns", "del", name]);
            }
        }
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.names {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

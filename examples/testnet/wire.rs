//! The wire between namespaced nodes: every packet between two nodes
//! crosses this process, which delays, drops and paces it as `tc netem`
//! would on the sender's link.
//!
//! Why not `tc netem` itself: the kernels this project runs on in CI (and
//! this machine's, 6.18 built without `CONFIG_NET_SCH_NETEM`) have no netem
//! qdisc, and `tc qdisc add … netem` answers "Specified qdisc kind is
//! unknown". A TUN device in each namespace hands us every IP packet the
//! node sends, which works on any Linux with `/dev/net/tun`, and lets the
//! chaos schedule cut and heal partitions and spike latency by changing
//! a table instead of running commands.
//!
//! Semantics, per link (an ordered pair of nodes), as netem's on egress:
//! - **delay**: `latency ± jitter` (uniform), plus the latency spike of
//!   either end;
//! - **loss**: each packet independently with probability `loss`;
//! - **rate**: the sender's link serialises its packets at `rate` bits/s
//!   (one queue per sender, as netem's `rate` on one interface);
//! - **order**: packets of one link are never reordered (netem keeps order
//!   once a rate is set; TCP stays on its fast path);
//! - **limit**: at most [`QUEUE_LIMIT`] packets wait per sender, the
//!   newest dropped past it (netem's `limit`, 1000 by default).
//!
//! The host (the testnet itself, the oracle) reaches the nodes through a
//! TUN device of its own, whose link is not shaped: the observer should
//! not disturb what it measures.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
#[cfg(test)]
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::{Rng, SeedableRng};

/// Packets waiting per sender before new ones are dropped (netem's default
/// `limit`).
pub(crate) const QUEUE_LIMIT: usize = 1000;

/// The shape of every node-to-node link.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Shape {
    /// One-way delay.
    pub(crate) latency: Duration,
    /// Uniform variation around `latency` (never below zero).
    pub(crate) jitter: Duration,
    /// Probability that a packet is lost, 0 to 1.
    pub(crate) loss: f64,
    /// Bits per second a sender's link carries (`None`: unlimited).
    pub(crate) rate_bps: Option<u64>,
}

/// What the chaos schedule changes while the network runs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Conditions {
    /// Every link's shape.
    pub(crate) shape: Shape,
    /// Extra one-way delay on every link to or from a node.
    pub(crate) spikes: HashMap<usize, Duration>,
    /// When set, the side of the partition each node is on: packets between
    /// nodes on different sides are dropped.
    pub(crate) sides: Option<Vec<u8>>,
}

impl Conditions {
    /// What happens to a packet from `src` to `dst` (node indices) sent at
    /// `now`: `None` when it is lost, else its delay on the wire. `rng`
    /// draws loss and jitter.
    pub(crate) fn delay(&self, src: usize, dst: usize, rng: &mut impl Rng) -> Option<Duration> {
        if let Some(sides) = &self.sides
            && sides.get(src) != sides.get(dst)
        {
            return None;
        }
        if self.shape.loss > 0.0 && rng.gen_bool(self.shape.loss.min(1.0)) {
            return None;
        }
        let jitter = self.shape.jitter.as_secs_f64();
        let base = self.shape.latency.as_secs_f64();
        let varied = if jitter > 0.0 { base + rng.gen_range(-jitter..=jitter) } else { base };
        let spike =
            self.spikes.get(&src).copied().unwrap_or_default().max(self.spikes.get(&dst).copied().unwrap_or_default());
        Some(Duration::from_secs_f64(varied.max(0.0)) + spike)
    }
}

/// A packet on its way, released at `at` (then by `seq`, the order sent).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Instant,
    seq: u64,
    src: usize,
    dst: usize,
    packet: Vec<u8>,
}

/// The scheduling of one sender's packets: pacing by rate, order per link,
/// and the queue limit.
#[derive(Debug, Default)]
pub(crate) struct Scheduler {
    /// When each sender's link is next free (rate pacing).
    free_at: HashMap<usize, Instant>,
    /// The latest release time on each link (keeps each link in order).
    last: HashMap<(usize, usize), Instant>,
    /// Packets waiting per sender.
    queued: HashMap<usize, usize>,
}

impl Scheduler {
    /// The release time of a `len`-byte packet from `src` to `dst` sent at
    /// `now` with wire delay `delay`, or `None` when the sender's queue is
    /// full. Call [`Scheduler::released`] when it leaves.
    pub(crate) fn admit(
        &mut self,
        src: usize,
        dst: usize,
        len: usize,
        now: Instant,
        delay: Duration,
        rate_bps: Option<u64>,
    ) -> Option<Instant> {
        let queued = self.queued.entry(src).or_default();
        if *queued >= QUEUE_LIMIT {
            return None;
        }
        *queued += 1;
        let mut departs = now;
        if let Some(rate) = rate_bps.filter(|r| *r > 0) {
            let start = self.free_at.get(&src).copied().unwrap_or(now).max(now);
            departs = start + Duration::from_secs_f64(len as f64 * 8.0 / rate as f64);
            self.free_at.insert(src, departs);
        }
        let at = (departs + delay).max(self.last.get(&(src, dst)).copied().unwrap_or(now));
        self.last.insert((src, dst), at);
        Some(at)
    }

    /// A packet of `src` left the queue.
    pub(crate) fn released(&mut self, src: usize) {
        if let Some(q) = self.queued.get_mut(&src) {
            *q = q.saturating_sub(1);
        }
    }
}

/// A TUN device's file: one IP packet per read and per write.
pub(crate) struct Tun(File);

impl Tun {
    /// Creates the TUN device `name` inside the network namespace at
    /// `netns` (a path such as `/run/netns/x`; `None`: this one). The device
    /// is created from a short-lived thread that enters the namespace, so
    /// this process stays where it is; the file keeps working afterwards
    /// (a TUN device moved between namespaces instead stops answering).
    pub(crate) fn create(name: &str, netns: Option<&std::path::Path>) -> anyhow::Result<Tun> {
        let name = name.to_owned();
        let netns = netns.map(std::path::Path::to_path_buf);
        std::thread::spawn(move || -> anyhow::Result<Tun> {
            if let Some(path) = &netns {
                let ns = File::open(path).with_context(|| format!("opening {}", path.display()))?;
                // SAFETY: a valid descriptor of a network namespace; setns
                // moves only this thread, which ends right after.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    bail!("entering {}: {}", path.display(), std::io::Error::last_os_error());
                }
            }
            let file =
                std::fs::OpenOptions::new().read(true).write(true).open("/dev/net/tun").context("/dev/net/tun")?;
            let mut req =
                IfReq { name: [0; 16], flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short, _pad: [0; 22] };
            if name.len() >= req.name.len() {
                bail!("interface name {name} is too long");
            }
            req.name[..name.len()].copy_from_slice(name.as_bytes());
            // SAFETY: TUNSETIFF reads an `ifreq`, which `IfReq` lays out.
            if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &raw mut req) } != 0 {
                bail!("creating TUN device {name}: {}", std::io::Error::last_os_error());
            }
            // SAFETY: fcntl on a descriptor we own.
            unsafe {
                let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
                libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
            }
            Ok(Tun(file))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the thread creating {0} panicked", "a TUN device"))?
    }

    #[cfg(test)]
    fn pair() -> (Tun, Tun) {
        let mut fds = [0; 2];
        // SAFETY: a socket pair for tests; both ends become owned files.
        let rc =
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK, 0, fds.as_mut_ptr()) };
        assert_eq!(rc, 0);
        // SAFETY: fresh descriptors, owned once each.
        unsafe { (Tun(File::from_raw_fd(fds[0])), Tun(File::from_raw_fd(fds[1]))) }
    }
}

/// `struct ifreq` as TUNSETIFF reads it: a name and the flags.
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// The wire: a thread forwarding packets between the TUN devices under the
/// current [`Conditions`]. Stops when dropped.
pub(crate) struct Wire {
    /// What the chaos schedule changes.
    pub(crate) conditions: Arc<Mutex<Conditions>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Counters of what the wire did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct WireStats {
    /// Packets delivered.
    pub(crate) delivered: u64,
    /// Packets lost by `loss`, a partition or a full queue.
    pub(crate) dropped: u64,
}

impl Wire {
    /// Starts forwarding. `ports[i]` is node `i`'s device and `host` the
    /// testnet's; `index` maps a destination IPv4 address to a port
    /// (`ports.len()` for the host).
    pub(crate) fn start(
        ports: Vec<Tun>,
        host: Tun,
        index: impl Fn([u8; 4]) -> Option<usize> + Send + 'static,
        conditions: Conditions,
        seed: u64,
        stats: Arc<Mutex<WireStats>>,
    ) -> Wire {
        let conditions = Arc::new(Mutex::new(conditions));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (conditions.clone(), stop.clone());
        let mut all = ports;
        all.push(host);
        let thread = std::thread::Builder::new()
            .name("wire".into())
            .spawn(move || forward(all, &index, &c, &s, seed, &stats))
            .ok();
        Wire { conditions, stop, thread }
    }

    /// Changes the conditions (a partition, a spike, their end).
    pub(crate) fn change(&self, f: impl FnOnce(&mut Conditions)) {
        f(&mut self.conditions.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The destination of an IPv4 packet.
fn ipv4_dst(packet: &[u8]) -> Option<[u8; 4]> {
    (packet.len() >= 20 && packet[0] >> 4 == 4).then(|| [packet[16], packet[17], packet[18], packet[19]])
}

/// The forwarding loop: read what is ready, schedule it, write what is due.
fn forward(
    mut ports: Vec<Tun>,
    index: &dyn Fn([u8; 4]) -> Option<usize>,
    conditions: &Mutex<Conditions>,
    stop: &AtomicBool,
    seed: u64,
    stats: &Mutex<WireStats>,
) {
    let host = ports.len() - 1;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut heap: BinaryHeap<Reverse<InFlight>> = BinaryHeap::new();
    let mut sched = Scheduler::default();
    let mut seq = 0u64;
    let mut buf = vec![0u8; 65_536];
    let mut counts = WireStats::default();
    let mut dead = vec![false; ports.len()];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let wait = heap.peek().map_or(Duration::from_millis(100), |Reverse(p)| p.at.saturating_duration_since(now));
        // A negative descriptor is skipped by poll.
        let mut fds: Vec<libc::pollfd> = ports
            .iter()
            .zip(&dead)
            .map(|(t, dead)| libc::pollfd {
                fd: if *dead { -1 } else { t.0.as_raw_fd() },
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // Rounded up: a packet due in 0.3 ms is not a busy poll(0).
        let ms = wait.as_micros().div_ceil(1000).min(100) as libc::c_int;
        // SAFETY: `fds` is a valid array of pollfd for its length.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if ready > 0 {
            let shaping = conditions.lock().unwrap_or_else(PoisonError::into_inner).clone();
            let now = Instant::now();
            for (src, fd) in fds.iter().enumerate() {
                if fd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                    // Its namespace is gone: ignored from now on, not polled
                    // in a busy loop.
                    dead[src] = true;
                }
                if fd.revents & libc::POLLIN == 0 || dead[src] {
                    continue;
                }
                // Drain this device (at most a queue's worth per round, so
                // one busy sender cannot starve the rest).
                for _ in 0..QUEUE_LIMIT {
                    let Ok(n) = ports[src].0.read(&mut buf) else { break };
                    let Some(dst) = ipv4_dst(&buf[..n]).and_then(index) else { continue };
                    if dst == src || dst >= ports.len() {
                        continue;
                    }
                    let (delay, rate) = if src == host || dst == host {
                        (Some(Duration::ZERO), None)
                    } else {
                        (shaping.delay(src, dst, &mut rng), shaping.shape.rate_bps)
                    };
                    let at = delay.and_then(|d| sched.admit(src, dst, n, now, d, rate));
                    match at {
                        Some(at) => {
                            seq += 1;
                            heap.push(Reverse(InFlight { at, seq, src, dst, packet: buf[..n].to_vec() }));
                        }
                        None => counts.dropped += 1,
                    }
                }
            }
        }
        let now = Instant::now();
        while heap.peek().is_some_and(|Reverse(p)| p.at <= now) {
            let Some(Reverse(p)) = heap.pop() else { break };
            sched.released(p.src);
            // A TUN write takes a whole packet or none; a full device
            // drops it, as a full NIC queue would.
            match ports[p.dst].0.write(&p.packet) {
                Ok(n) if n == p.packet.len() => counts.delivered += 1,
                _ => counts.dropped += 1,
            }
        }
        *stats.lock().unwrap_or_else(PoisonError::into_inner) = counts;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(latency_ms: u64, jitter_ms: u64, loss: f64) -> Conditions {
        Conditions {
            shape: Shape {
                latency: Duration::from_millis(latency_ms),
                jitter: Duration::from_millis(jitter_ms),
                loss,
                rate_bps: None,
            },
            ..Conditions::default()
        }
    }

    #[test]
    fn delay_stays_within_latency_plus_or_minus_jitter_and_loss_is_near_its_rate() {
        let c = shape(50, 10, 0.1);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (mut lost, mut sum) = (0, 0.0);
        for _ in 0..10_000 {
            match c.delay(0, 1, &mut rng) {
                Some(d) => {
                    assert!(d >= Duration::from_millis(40) && d <= Duration::from_millis(60), "{d:?}");
                    sum += d.as_secs_f64();
                }
                None => lost += 1,
            }
        }
        assert!((800..1200).contains(&lost), "{lost} of 10 000 lost at 10 %");
        let mean = sum / f64::from(10_000 - lost);
        assert!((mean - 0.050).abs() < 0.002, "mean delay {mean}");
    }

    #[test]
    fn a_partition_drops_only_across_sides_and_a_spike_adds_to_both_directions() {
        let mut c = shape(50, 0, 0.0);
        c.sides = Some(vec![0, 0, 1]);
        c.spikes.insert(1, Duration::from_millis(500));
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(c.delay(0, 2, &mut rng), None);
        assert_eq!(c.delay(2, 1, &mut rng), None);
        assert_eq!(c.delay(0, 1, &mut rng), Some(Duration::from_millis(550)));
        assert_eq!(c.delay(1, 0, &mut rng), Some(Duration::from_millis(550)));
        c.sides = None;
        assert_eq!(c.delay(0, 2, &mut rng), Some(Duration::from_millis(50)));
    }

    #[test]
    fn a_link_keeps_its_order_paces_by_rate_and_bounds_its_queue() {
        let mut s = Scheduler::default();
        let t0 = Instant::now();
        // 8 000 bits at 1 Mbit/s: 8 ms on the wire each.
        let a = s.admit(0, 1, 1000, t0, Duration::from_millis(60), Some(1_000_000)).expect("room");
        let b = s.admit(0, 1, 1000, t0, Duration::from_millis(40), Some(1_000_000)).expect("room");
        assert_eq!(a, t0 + Duration::from_millis(68));
        assert!(b >= a, "a later packet with less jitter does not overtake");
        let c = s.admit(0, 2, 1000, t0, Duration::from_millis(40), Some(1_000_000)).expect("room");
        assert_eq!(c, t0 + Duration::from_millis(64), "paced behind the two before it on the sender's link");
        for _ in 3..QUEUE_LIMIT {
            assert!(s.admit(0, 1, 10, t0, Duration::ZERO, None).is_some());
        }
        assert_eq!(s.admit(0, 1, 10, t0, Duration::ZERO, None), None, "the sender's queue is full");
        assert!(s.admit(1, 0, 10, t0, Duration::ZERO, None).is_some(), "another sender's is not");
        s.released(0);
        assert!(s.admit(0, 1, 10, t0, Duration::ZERO, None).is_some());
    }

    #[test]
    fn the_wire_delivers_by_destination_address_after_the_delay_and_never_across_a_partition() {
        let (a_node, a_wire) = Tun::pair();
        let (b_node, b_wire) = Tun::pair();
        let (host_node, host_wire) = Tun::pair();
        let index = |ip: [u8; 4]| match ip {
            [10, 0, 0, 1] => Some(0),
            [10, 0, 0, 2] => Some(1),
            [10, 0, 0, 254] => Some(2),
            _ => None,
        };
        let stats = Arc::new(Mutex::new(WireStats::default()));
        let wire = Wire::start(vec![a_wire, b_wire], host_wire, index, shape(30, 0, 0.0), 1, stats.clone());
        let packet = |dst: u8, tag: u8| {
            let mut p = vec![0u8; 28];
            p[0] = 0x45;
            p[16..20].copy_from_slice(&[10, 0, 0, dst]);
            p[27] = tag;
            p
        };
        let read = |t: &Tun, within: Duration| -> Option<Vec<u8>> {
            let end = Instant::now() + within;
            let mut buf = [0u8; 100];
            while Instant::now() < end {
                if let Ok(n) = (&t.0).read(&mut buf) {
                    return Some(buf[..n].to_vec());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            None
        };
        let sent = Instant::now();
        (&a_node.0).write_all(&packet(2, 1)).expect("write");
        let got = read(&b_node, Duration::from_secs(10)).expect("delivered to 10.0.0.2");
        assert_eq!(got[27], 1);
        assert!(sent.elapsed() >= Duration::from_millis(30), "held for the link's latency");
        (&b_node.0).write_all(&packet(254, 2)).expect("write");
        assert_eq!(read(&host_node, Duration::from_secs(10)).expect("the host's link")[27], 2);
        wire.change(|c| c.sides = Some(vec![0, 1]));
        (&a_node.0).write_all(&packet(2, 3)).expect("write");
        assert_eq!(read(&b_node, Duration::from_millis(300)), None, "cut by the partition");
        wire.change(|c| c.sides = None);
        (&a_node.0).write_all(&packet(2, 4)).expect("write");
        assert_eq!(read(&b_node, Duration::from_secs(10)).expect("healed")[27], 4);
        drop(wire);
        let s = *stats.lock().expect("stats");
        assert_eq!((s.delivered, s.dropped), (3, 1));
    }
}

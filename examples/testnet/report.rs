//! The summary at the end of a run, from the nodes' own logs: every node
//! logs each block it stores (`toy_chain::arrival`, with the wall-clock
//! millisecond it stored it and its parent) and each reorganisation. The
//! nodes share one clock (one machine), so arrival times compare directly.
//!
//! - **Propagation**: for each block of the final best chain, the delay
//!   from its first arrival anywhere (the miner storing it) to its arrival
//!   at each other node; p50, p90 and p99 over all such pairs. Left out:
//!   a node that was down, or on the other side of a partition, when the
//!   block appeared, or within the testnet's catch-up grace after the
//!   fault ended (the outages it passes in); and stale blocks, because a
//!   losing branch is not relayed, so the time it takes to reach a node
//!   measures sync, not propagation.
//! - **The bound**, next to it: for the same pairs, hops on the shortest
//!   path (in the peer graph of the block's time) × the mean per-link
//!   latency. It leaves out jitter, pacing, spikes and each hop's checking,
//!   so a figure below it is luck with jitter, and the gap above it is what
//!   relaying costs.
//! - **Stale blocks**: blocks stored anywhere, at or below the final tip's
//!   height, that are not on the final best chain.
//! - **Longest reorg**: the most blocks one reorganisation undid.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;

/// What one node's log says.
#[derive(Debug, Default)]
pub(crate) struct NodeLog {
    /// Block hash → (stored at, ms since the epoch; parent hash; height).
    pub(crate) arrivals: HashMap<String, (u64, String, u64)>,
    /// Blocks undone by each reorganisation.
    pub(crate) reorgs: Vec<u64>,
}

/// The value of `key=` in a log line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

impl NodeLog {
    /// Reads a node's log (its own lines only; every restart appends).
    pub(crate) fn parse(text: &str) -> NodeLog {
        let mut log = NodeLog::default();
        for line in text.lines() {
            if line.contains("toy_chain::arrival") {
                let parsed = (|| {
                    let hash = field(line, "hash")?.to_owned();
                    let parent = field(line, "parent")?.to_owned();
                    let height = field(line, "height")?.parse().ok()?;
                    let at = field(line, "at_ms")?.parse().ok()?;
                    Some((hash, (at, parent, height)))
                })();
                if let Some((hash, v)) = parsed {
                    log.arrivals.entry(hash).or_insert(v);
                }
            } else if line.contains("reorganised")
                && let Some(n) = field(line, "disconnected").and_then(|v| v.parse().ok())
            {
                log.reorgs.push(n);
            }
        }
        log
    }

    /// Reads `path` (empty when missing).
    pub(crate) fn read(path: &Path) -> NodeLog {
        NodeLog::parse(&std::fs::read_to_string(path).unwrap_or_default())
    }
}

/// A time a node could not hear a block's miner: it was down, or on the
/// other side of a partition. Milliseconds since the epoch.
#[derive(Debug, Clone)]
pub(crate) struct Outage {
    /// From.
    pub(crate) from_ms: u64,
    /// Until.
    pub(crate) to_ms: u64,
    /// The nodes on one side (a killed node: itself).
    pub(crate) group: Vec<usize>,
    /// A partition (both sides lose each other) rather than a kill.
    pub(crate) partition: bool,
}

impl Outage {
    /// Whether `node` could not hear `origin` at `at_ms`.
    fn cuts(&self, origin: usize, node: usize, at_ms: u64) -> bool {
        if at_ms < self.from_ms || at_ms > self.to_ms {
            return false;
        }
        if self.partition {
            self.group.contains(&origin) != self.group.contains(&node)
        } else {
            self.group.contains(&node)
        }
    }
}

/// Shortest-path hops between every pair of nodes (`None`: unreachable).
pub(crate) fn hops(adjacency: &[HashSet<usize>]) -> Vec<Vec<Option<u32>>> {
    let n = adjacency.len();
    (0..n)
        .map(|from| {
            let mut dist = vec![None; n];
            dist[from] = Some(0);
            let mut queue = VecDeque::from([from]);
            while let Some(u) = queue.pop_front() {
                let d = dist[u].unwrap_or(0);
                for &v in &adjacency[u] {
                    if v < n && dist[v].is_none() {
                        dist[v] = Some(d + 1);
                        queue.push_back(v);
                    }
                }
            }
            dist
        })
        .collect()
}

/// The `p`-th percentile (0 to 1) of sorted values.
pub(crate) fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// The figures of a run.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Summary {
    /// Distinct blocks stored by any node in this run.
    pub(crate) blocks: usize,
    /// Of those at or below the final tip, how many are off the best chain.
    pub(crate) stale: usize,
    /// Those at or below the final tip.
    pub(crate) counted: usize,
    /// `stale` and `counted` of the blocks first seen once every node was
    /// up (the start of a fresh chain mines fast at its first, low
    /// difficulty, and most of its forks are there).
    pub(crate) stale_since: (usize, usize),
    /// The most blocks one reorganisation undid.
    pub(crate) longest_reorg: u64,
    /// Propagation delays (ms), sorted.
    pub(crate) delays: Vec<u64>,
    /// The graph's bound for the same pairs (ms), sorted.
    pub(crate) bounds: Vec<u64>,
}

/// What the summary is computed over.
#[derive(Debug, Default)]
pub(crate) struct Run<'a> {
    /// The final best tip.
    pub(crate) tip: Option<&'a str>,
    /// The peer graph over the run: each snapshot (ms since the epoch,
    /// neighbours of each node) holds from its time to the next one's.
    pub(crate) graphs: &'a [(u64, Vec<HashSet<usize>>)],
    /// The per-link latency (0: no bound reported).
    pub(crate) latency_ms: u64,
    /// When every node was up (ms since the epoch): blocks first seen
    /// earlier are left out of propagation (a node not yet started did not
    /// miss them).
    pub(crate) since_ms: u64,
    /// Nodes down or cut off, and when.
    pub(crate) outages: &'a [Outage],
}

/// Computes the summary of a run from every node's log.
pub(crate) fn summarise(logs: &[NodeLog], run: &Run<'_>) -> Summary {
    let Run { tip, graphs, latency_ms, since_ms, outages } = *run;
    let mut s = Summary {
        longest_reorg: logs.iter().flat_map(|l| l.reorgs.iter().copied()).max().unwrap_or(0),
        ..Summary::default()
    };
    // Every block: its first arrival (time, node), its parent and height.
    let mut first: HashMap<&str, (u64, usize, &str, u64)> = HashMap::new();
    for (node, log) in logs.iter().enumerate() {
        for (hash, (at, parent, height)) in &log.arrivals {
            let e = first.entry(hash).or_insert((*at, node, parent, *height));
            if *at < e.0 {
                *e = (*at, node, parent, *height);
            }
        }
    }
    s.blocks = first.len();
    let mut best = HashSet::new();
    let mut cursor = tip;
    while let Some(h) = cursor {
        if !best.insert(h) {
            break;
        }
        cursor = first.get(h).map(|e| e.2);
    }
    // Without a known final tip nothing is called stale.
    let top = tip.and_then(|t| first.get(t)).map(|e| e.3);
    for (hash, (t0, _, _, height)) in &first {
        if top.is_some_and(|top| *height <= top) {
            let stale = usize::from(!best.contains(hash));
            s.counted += 1;
            s.stale += stale;
            if *t0 >= since_ms {
                s.stale_since.0 += stale;
                s.stale_since.1 += 1;
            }
        }
    }
    let dists: Vec<(u64, Vec<Vec<Option<u32>>>)> = graphs.iter().map(|(t, g)| (*t, hops(g))).collect();
    // Propagation of the blocks that count: those on the final best chain.
    // A block on a losing branch is not relayed (only the best chain is)
    // and reaches most nodes late, by sync, if at all.
    let counted = |hash: &&str| tip.is_none() || best.contains(hash);
    for (hash, (t0, origin, _, _)) in first.iter().filter(|(h, e)| e.0 >= since_ms && counted(h)) {
        // The graph as it was when the block appeared (else the first one).
        let dist = dists.iter().rev().find(|(t, _)| t <= t0).or(dists.first()).map(|(_, d)| d);
        for (node, log) in logs.iter().enumerate() {
            if node == *origin || outages.iter().any(|o| o.cuts(*origin, node, *t0)) {
                continue;
            }
            if let Some((at, _, _)) = log.arrivals.get(*hash) {
                s.delays.push(at - t0);
                if latency_ms > 0
                    && let Some(Some(h)) = dist.and_then(|d| d.get(*origin)).and_then(|d| d.get(node))
                {
                    s.bounds.push(u64::from(*h) * latency_ms);
                }
            }
        }
    }
    s.delays.sort_unstable();
    s.bounds.sort_unstable();
    s
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pct = |v: &[u64], p| percentile(v, p).map_or_else(|| "-".to_owned(), |x| format!("{x} ms"));
        writeln!(f, "summary:")?;
        writeln!(f, "  blocks stored: {} distinct", self.blocks)?;
        let rate = |stale: usize, of: usize| if of == 0 { 0.0 } else { 100.0 * stale as f64 / of as f64 };
        let (stale, of) = self.stale_since;
        writeln!(
            f,
            "  stale blocks: {} of {} ({:.1} %); of those first seen once every node was up: {stale} of {of} ({:.1} %)",
            self.stale,
            self.counted,
            rate(self.stale, self.counted),
            rate(stale, of)
        )?;
        writeln!(f, "  longest reorg: {} blocks", self.longest_reorg)?;
        writeln!(
            f,
            "  propagation ({} arrivals): p50 {}, p90 {}, p99 {}",
            self.delays.len(),
            pct(&self.delays, 0.5),
            pct(&self.delays, 0.9),
            pct(&self.delays, 0.99)
        )?;
        if !self.bounds.is_empty() {
            write!(
                f,
                "  graph bound (hops x latency): p50 {}, p90 {}, p99 {}",
                pct(&self.bounds, 0.5),
                pct(&self.bounds, 0.9),
                pct(&self.bounds, 0.99)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG_A: &str = "\
2026-11-24T10:00:00.000001Z DEBUG toy_chain::arrival: block stored hash=b1 parent=g height=1 at_ms=1000
2026-11-24T10:00:00.000001Z DEBUG toy_chain::arrival: block stored hash=b2 parent=b1 height=2 at_ms=2000
2026-11-24T10:00:00.000001Z DEBUG toy_chain::arrival: block stored hash=s2 parent=b1 height=2 at_ms=2100
2026-11-24T10:00:00.000001Z  INFO toy_chain::tree::reorg: reorganised from=b2 to=s3 disconnected=1 connected=2 readmitted=0
2026-11-24T10:00:00.000001Z DEBUG toy_chain::arrival: block stored hash=s3 parent=s2 height=3 at_ms=3000
2026-11-24T10:00:00.000001Z  INFO toy_chain::tree: something else hash=zz
";
    const LOG_B: &str = "\
x DEBUG toy_chain::arrival: block stored hash=b1 parent=g height=1 at_ms=1100
x DEBUG toy_chain::arrival: block stored hash=s2 parent=b1 height=2 at_ms=2150
x DEBUG toy_chain::arrival: block stored hash=s3 parent=s2 height=3 at_ms=3300
x DEBUG toy_chain::arrival: block stored hash=s4 parent=s3 height=4 at_ms=4000
";

    #[test]
    fn logs_give_stale_blocks_reorgs_and_delays_from_each_blocks_first_arrival() {
        let mut b = LOG_B.to_owned();
        // B also stores the stale b2, late (by sync): not a propagation.
        b.push_str("x DEBUG toy_chain::arrival: block stored hash=b2 parent=b1 height=2 at_ms=9000\n");
        let logs = [NodeLog::parse(LOG_A), NodeLog::parse(&b)];
        assert_eq!(logs[0].arrivals.len(), 4);
        assert_eq!(logs[0].reorgs, vec![1]);
        let graphs = [(0, vec![HashSet::from([1]), HashSet::from([0])])];
        let s = summarise(&logs, &Run { tip: Some("s3"), graphs: &graphs, latency_ms: 50, ..Run::default() });
        assert_eq!(s.blocks, 5);
        // b2 is off the chain g-b1-s2-s3; s4 is above the final tip.
        assert_eq!((s.stale, s.counted, s.longest_reorg), (1, 4, 1));
        assert_eq!(s.stale_since, (1, 4), "every block came after since_ms = 0");
        // b1: A first, B +100; s2: A first, B +50; s3: A first, B +300; s4
        // only B; b2 (stale) is not counted.
        assert_eq!(s.delays, vec![50, 100, 300]);
        assert_eq!(s.bounds, vec![50, 50, 50]);
        let text = s.to_string();
        assert!(text.contains("1 of 4 (25.0 %)") && text.contains("p50 100 ms"), "{text}");
    }

    #[test]
    fn a_node_down_or_cut_off_when_a_block_appeared_is_left_out_of_propagation() {
        let logs = [NodeLog::parse(LOG_A), NodeLog::parse(LOG_B)];
        let down = Outage { from_ms: 1900, to_ms: 2500, group: vec![1], partition: false };
        let s = summarise(&logs, &Run { tip: Some("s3"), outages: &[down], ..Run::default() });
        assert_eq!(s.delays, vec![100, 300], "s2 reached B while it was down");
        assert!(s.bounds.is_empty());
        let cut = Outage { from_ms: 2900, to_ms: 3100, group: vec![0], partition: true };
        let s = summarise(&logs, &Run { tip: Some("s3"), outages: &[cut], ..Run::default() });
        assert_eq!(s.delays, vec![50, 100], "s3 was mined on the other side");
        let s = summarise(&logs, &Run { tip: Some("s3"), since_ms: 2000, ..Run::default() });
        assert_eq!(s.delays, vec![50, 300], "b1 came before every node was up");
        assert_eq!(s.stale_since, (1, 3), "b1 is not counted; b2 (stale), s2 and s3 are");
    }

    #[test]
    fn each_block_is_bounded_by_the_graph_of_its_time() {
        let logs = [NodeLog::parse(LOG_A), NodeLog::parse(LOG_B), NodeLog::default()];
        // Until 2 000 ms A and B are two hops apart (through C), then one.
        let far = vec![HashSet::from([2]), HashSet::from([2]), HashSet::from([0, 1])];
        let near = vec![HashSet::from([1]), HashSet::from([0]), HashSet::new()];
        let graphs = [(500, far), (2000, near)];
        let s = summarise(&logs, &Run { tip: Some("s3"), graphs: &graphs, latency_ms: 50, ..Run::default() });
        assert_eq!(s.bounds, vec![50, 50, 100], "b1 at 1 000 ms crossed two hops; s2 and s3 one");
    }

    #[test]
    fn percentiles_and_hops_are_exact_on_small_cases() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Some(50));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&[7], 0.9), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
        let line = vec![HashSet::from([1]), HashSet::from([0, 2]), HashSet::from([1]), HashSet::new()];
        let d = hops(&line);
        assert_eq!(d[0], vec![Some(0), Some(1), Some(2), None]);
    }
}

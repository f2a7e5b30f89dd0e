//! Prometheus metrics in the text exposition format.

use std::fmt::Write;

/// The figures `/metrics` shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsSnapshot {
    /// Best chain height.
    pub height: u64,
    /// Peers.
    pub peers: u64,
    /// Mempool transactions.
    pub mempool: u64,
    /// Orphan blocks waiting.
    pub orphans: u64,
    /// Whether the store writes (no storage failure outstanding).
    pub store_ok: bool,
    /// Local hash rate (hashes/s).
    pub hash_rate: f64,
    /// Labelled counters `(family, label, count)` (see
    /// `toy_chain::network::NodeStats::snapshot`).
    pub counters: Vec<(&'static str, String, u64)>,
}

/// Label name and help text of each counter family.
const FAMILIES: &[(&str, &str, &str)] = &[
    ("messages", "kind", "Chain messages received, by kind."),
    ("blocks_accepted", "outcome", "Blocks accepted: from gossip (by outcome), sync, and mined here."),
    ("blocks_rejected", "reason", "Blocks from the network rejected, by reason."),
    ("txs_accepted", "source", "Transactions accepted, from gossip or local (API)."),
    ("txs_rejected", "reason", "Transactions refused (from the network or the API), by reason."),
    (
        "requests_refused",
        "reason",
        "Peer requests and messages refused past their rate or malformed, by kind or reason.",
    ),
    ("orphan_fetches_refused", "reason", "Orphan ancestor fetches not started, by reason."),
];

impl MetricsSnapshot {
    /// The text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let gauges = [
            ("toy_height", "Height of the best chain.", self.height as f64),
            ("toy_peers", "Connected peers.", self.peers as f64),
            ("toy_mempool_transactions", "Transactions in the mempool.", self.mempool as f64),
            ("toy_orphan_blocks", "Blocks waiting for their parent.", self.orphans as f64),
            ("toy_hash_rate", "Hashes per second of the local miner.", self.hash_rate),
            (
                "toy_store_ok",
                "1 while the store writes, 0 after a storage failure until it recovers.",
                f64::from(u8::from(self.store_ok)),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        for (family, label, help) in FAMILIES {
            let name = format!("toy_{family}_total");
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (_, l, n) in self.counters.iter().filter(|(f, _, _)| f == family) {
                let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {n}", escape(l));
            }
        }
        out
    }
}

/// Escapes a label value (backslash, quote, newline).
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_gauges_and_labelled_counters() {
        let m = MetricsSnapshot {
            height: 7,
            counters: vec![("blocks_rejected", "BadPow".into(), 3), ("messages", "gossip:\"x\"".into(), 1)],
            ..Default::default()
        };
        let text = m.render();
        assert!(text.contains("toy_height 7\n"));
        assert!(text.contains("toy_blocks_rejected_total{reason=\"BadPow\"} 3\n"));
        assert!(text.contains("toy_messages_total{kind=\"gossip:\\\"x\\\"\"} 1\n"));
    }
}

//! Per-shard counters, without locks: each shard owns its own and only it writes them.
//! Rendered as Prometheus text by whoever collects them. Uses only `base`.

use std::cell::Cell;

/// Counters of one shard.
#[derive(Debug, Default)]
pub struct ShardMetrics {
    /// Requests that left this core for another shard.
    pub cross_shard_hops: Cell<u64>,
    pub produce_requests: Cell<u64>,
    pub fetch_requests: Cell<u64>,
    pub connections_accepted: Cell<u64>,
    /// Connections closed for a malformed or oversized frame.
    pub connections_refused_frames: Cell<u64>,
    /// Connections closed at once because the broker had `max_connections` open.
    pub connections_refused_limit: Cell<u64>,
}

impl ShardMetrics {
    pub fn bump(cell: &Cell<u64>) {
        cell.set(cell.get() + 1);
    }

    /// Prometheus text exposition of these counters, labelled with the shard.
    pub fn render(&self, shard: usize) -> String {
        let rows = [
            ("sluice_cross_shard_hops_total", self.cross_shard_hops.get()),
            ("sluice_produce_requests_total", self.produce_requests.get()),
            ("sluice_fetch_requests_total", self.fetch_requests.get()),
            (
                "sluice_connections_accepted_total",
                self.connections_accepted.get(),
            ),
            (
                "sluice_connections_refused_frames_total",
                self.connections_refused_frames.get(),
            ),
            (
                "sluice_connections_refused_limit_total",
                self.connections_refused_limit.get(),
            ),
        ];
        rows.iter()
            .map(|(name, v)| format!("{name}{{shard=\"{shard}\"}} {v}\n"))
            .collect()
    }
}

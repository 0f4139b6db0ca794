//! Per-shard metrics without locks: each shard thread owns one [`ShardMetrics`] (a
//! thread-local, reached with [`local`]) and only that thread writes it — counters in `Cell`s,
//! HDR latency histograms in `RefCell`s borrowed for one record at a time. Whoever serves a
//! scrape asks every shard for a [`ShardSnapshot`] (plain, `Send` data) through the router and
//! renders them as Prometheus text with [`text::PrometheusText`]; histograms of all shards are
//! merged exactly there (HDR histograms of one layout add bucket by bucket).
//!
//! Uses only `base`. Recording points live where the work happens: the connection (queue
//! time, requests, network bytes), the channel mesh (cross-shard hop), the log appender (disk
//! write, fsync) and the shard (per-partition bytes).

mod histogram;
pub mod text;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::time::Duration;

use crate::base::TopicPartition;

pub use histogram::StageHistogram;

/// The latency stages a request can pass through, each with its own histogram per shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// From the read that completed a request's frame to its handler starting: pipelined
    /// requests waiting behind earlier ones on their connection, and task scheduling.
    Queue,
    /// From a message entering the channel mesh to the owner shard taking it out.
    CrossShardHop,
    /// One O_DIRECT write of a log flush.
    DiskWrite,
    /// One fdatasync of a segment.
    Fsync,
    /// A whole Produce request: handler start to response ready (acks included).
    Produce,
    /// A whole Fetch request: handler start to response ready (long-poll wait included).
    Fetch,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Queue,
        Stage::CrossShardHop,
        Stage::DiskWrite,
        Stage::Fsync,
        Stage::Produce,
        Stage::Fetch,
    ];

    /// The label value in the exposition.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Queue => "queue",
            Stage::CrossShardHop => "cross_shard_hop",
            Stage::DiskWrite => "disk_write",
            Stage::Fsync => "fsync",
            Stage::Produce => "Produce",
            Stage::Fetch => "Fetch",
        }
    }

    /// Whether this is a whole request rather than a stage inside one.
    pub fn is_request(self) -> bool {
        matches!(self, Stage::Produce | Stage::Fetch)
    }
}

/// Counters of one partition on the shard that owns it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionCounters {
    /// Record-batch bytes appended.
    pub bytes_in: u64,
    /// Record-batch bytes read for fetches.
    pub bytes_out: u64,
    /// Produce requests (per partition part) that reached the owner.
    pub produce_requests: u64,
    /// Fetch reads of this partition.
    pub fetch_requests: u64,
}

/// Everything one shard measures.
#[derive(Debug, Default)]
pub struct ShardMetrics {
    /// Requests that left this core for another shard.
    pub cross_shard_hops: Cell<u64>,
    pub connections_accepted: Cell<u64>,
    /// Connections closed for a malformed or oversized frame.
    pub connections_refused_frames: Cell<u64>,
    /// Connections closed at once because the broker had `max_connections` open.
    pub connections_refused_limit: Cell<u64>,
    /// Bytes read from and written to client connections.
    pub network_bytes_in: Cell<u64>,
    pub network_bytes_out: Cell<u64>,
    /// Requests by Kafka API key.
    requests: RefCell<BTreeMap<i16, u64>>,
    stages: RefCell<BTreeMap<Stage, StageHistogram>>,
    /// Keyed by partition; the topic id tells a re-created topic from its predecessor.
    partitions: RefCell<HashMap<TopicPartition, ([u8; 16], PartitionCounters)>>,
}

thread_local! {
    static LOCAL: Rc<ShardMetrics> = Rc::new(ShardMetrics::default());
}

/// This thread's (shard's) metrics.
pub fn local() -> Rc<ShardMetrics> {
    LOCAL.with(|m| m.clone())
}

/// Records a stage latency in this thread's metrics.
pub fn record_stage(stage: Stage, elapsed: Duration) {
    LOCAL.with(|m| m.record(stage, elapsed));
}

impl ShardMetrics {
    pub fn bump(cell: &Cell<u64>) {
        cell.set(cell.get() + 1);
    }

    pub fn add(cell: &Cell<u64>, n: u64) {
        cell.set(cell.get().wrapping_add(n));
    }

    pub fn record(&self, stage: Stage, elapsed: Duration) {
        self.stages
            .borrow_mut()
            .entry(stage)
            .or_default()
            .record(elapsed);
    }

    pub fn count_request(&self, api_key: i16) {
        *self.requests.borrow_mut().entry(api_key).or_default() += 1;
    }

    /// Updates the counters of a partition this shard owns.
    pub fn on_partition(
        &self,
        tp: &TopicPartition,
        topic_id: [u8; 16],
        update: impl FnOnce(&mut PartitionCounters),
    ) {
        let mut parts = self.partitions.borrow_mut();
        let entry = parts
            .entry(tp.clone())
            .or_insert((topic_id, PartitionCounters::default()));
        if entry.0 != topic_id {
            *entry = (topic_id, PartitionCounters::default());
        }
        update(&mut entry.1);
    }

    /// A copy of everything, for a scrape. Partitions whose topic is not in `live` (deleted
    /// topics) are dropped here for good, so the map never outgrows the live partitions.
    pub fn snapshot(&self, shard: usize, live: Option<&HashSet<[u8; 16]>>) -> ShardSnapshot {
        if let Some(live) = live {
            self.partitions
                .borrow_mut()
                .retain(|_, (id, _)| live.contains(id));
        }
        let mut partitions: Vec<(TopicPartition, PartitionCounters)> = self
            .partitions
            .borrow()
            .iter()
            .map(|(tp, (_, c))| (tp.clone(), *c))
            .collect();
        partitions.sort_by(|a, b| a.0.cmp(&b.0));
        ShardSnapshot {
            shard,
            counters: vec![
                (
                    "cross_shard_hops_total",
                    "Requests that left this shard for another one.",
                    self.cross_shard_hops.get(),
                ),
                (
                    "connections_accepted_total",
                    "Client connections accepted.",
                    self.connections_accepted.get(),
                ),
                (
                    "connections_refused_frames_total",
                    "Connections closed for a malformed or oversized frame.",
                    self.connections_refused_frames.get(),
                ),
                (
                    "connections_refused_limit_total",
                    "Connections closed at once because max_connections were open.",
                    self.connections_refused_limit.get(),
                ),
                (
                    "network_received_bytes_total",
                    "Bytes read from client connections.",
                    self.network_bytes_in.get(),
                ),
                (
                    "network_sent_bytes_total",
                    "Bytes written to client connections.",
                    self.network_bytes_out.get(),
                ),
            ],
            requests: self
                .requests
                .borrow()
                .iter()
                .map(|(k, v)| (*k, *v))
                .collect(),
            stages: self
                .stages
                .borrow()
                .iter()
                .map(|(s, h)| (*s, h.clone()))
                .collect(),
            partitions,
        }
    }
}

/// One shard's metrics at one moment; plain data that may cross to the scraping shard.
#[derive(Debug, Clone)]
pub struct ShardSnapshot {
    pub shard: usize,
    /// `(name without the sluice_ prefix, help, value)`.
    pub counters: Vec<(&'static str, &'static str, u64)>,
    /// `(api key, requests)`.
    pub requests: Vec<(i16, u64)>,
    pub stages: Vec<(Stage, StageHistogram)>,
    pub partitions: Vec<(TopicPartition, PartitionCounters)>,
}

/// Adds up every shard's histogram of each stage.
pub fn merge_stages(snapshots: &[ShardSnapshot]) -> BTreeMap<Stage, StageHistogram> {
    let mut merged: BTreeMap<Stage, StageHistogram> = BTreeMap::new();
    for s in snapshots {
        for (stage, h) in &s.stages {
            merged.entry(*stage).or_default().merge(h);
        }
    }
    merged
}

#[cfg(test)]
mod tests;

//! The broker registry on the controller leader: registrations (with broker epochs),
//! heartbeats, and the fencing decision.
//!
//! Registered brokers and their fenced state live in the metadata (records); heartbeat
//! times live only here, in memory, on the leader: a new controller leader starts every
//! alive broker's session afresh at its first `tick`, so a failover never fences a broker
//! that was heartbeating to the old leader. Time comes in as `now_ms` from the caller's
//! clock; a clock that jumps back counts as no time passing.
//!
//! Lifecycle (Kafka's KRaft): `RegisterBroker` (fenced, epoch = the Raft index of the
//! record) → heartbeats; the first one with its logs ready unfences it → no heartbeat for
//! `broker.session.timeout.ms` fences it (leaderships move, it leaves the ISRs) → its next
//! heartbeat unfences it again. A controlled shutdown moves leadership off and fences it
//! until it registers anew. A heartbeat or shutdown naming an old epoch is refused with
//! STALE_BROKER_EPOCH. Pure: every call returns the records to commit.

use std::collections::{BTreeMap, BTreeSet};

use super::election;
use super::snapshot::ClusterSnapshot;
use super::MetadataRecord;
use crate::base::{KafkaCode, KafkaError};

/// Kafka's `broker.session.timeout.ms` default.
pub const DEFAULT_SESSION_TIMEOUT_MS: u64 = 9000;
/// Kafka's `broker.heartbeat.interval.ms` default.
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 2000;

/// What a broker says of itself when it registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    pub shards: usize,
}

/// The controller leader's in-memory view of broker sessions.
#[derive(Debug, Clone)]
pub struct Registry {
    session_timeout_ms: u64,
    /// Last heartbeat (or registration) time per broker.
    last_seen: BTreeMap<i32, u64>,
    /// Brokers in controlled shutdown: heartbeats do not unfence them until they register
    /// again.
    shutting_down: BTreeSet<i32>,
}

impl Registry {
    pub fn new(session_timeout_ms: u64) -> Self {
        Self {
            session_timeout_ms,
            last_seen: BTreeMap::new(),
            shutting_down: BTreeSet::new(),
        }
    }

    /// A broker (re)registers; `epoch` is the Raft index the registration record will get.
    /// A new registration replaces an old one: the old incarnation is gone, so whatever it
    /// led moves and it leaves the ISRs, and the new one starts fenced.
    pub fn register(
        &mut self,
        reg: Registration,
        epoch: i64,
        now_ms: u64,
        snap: &ClusterSnapshot,
    ) -> Result<Vec<MetadataRecord>, KafkaError> {
        if let Some(old) = snap.broker(reg.node_id) {
            if epoch <= old.epoch {
                return Err(stale(old.epoch, epoch));
            }
        }
        self.last_seen.insert(reg.node_id, now_ms);
        self.shutting_down.remove(&reg.node_id);
        let mut records = vec![MetadataRecord::RegisterBroker {
            node_id: reg.node_id,
            epoch,
            host: reg.host,
            port: reg.port,
            rack: reg.rack,
            shards: reg.shards,
        }];
        records.extend(election::on_fenced(snap, reg.node_id));
        Ok(records)
    }

    /// A heartbeat from `node` at `epoch`. `logs_ready`: the broker has caught up with the
    /// metadata and opened its logs, so it may be unfenced.
    pub fn on_heartbeat(
        &mut self,
        node: i32,
        epoch: i64,
        now_ms: u64,
        logs_ready: bool,
        snap: &ClusterSnapshot,
    ) -> Result<Vec<MetadataRecord>, KafkaError> {
        let broker = current(snap, node, epoch)?;
        self.last_seen.insert(node, now_ms);
        if !broker.fenced || !logs_ready || self.shutting_down.contains(&node) {
            return Ok(Vec::new());
        }
        let mut records = vec![MetadataRecord::UnfenceBroker {
            node_id: node,
            epoch,
        }];
        records.extend(election::on_unfenced(snap, node));
        Ok(records)
    }

    /// Fences every alive broker whose session expired by `now_ms`, moving its
    /// leaderships; each fencing sees the ones before it.
    pub fn tick(&mut self, now_ms: u64, snap: &ClusterSnapshot) -> Vec<MetadataRecord> {
        let expired: Vec<(i32, i64)> = snap
            .live_brokers()
            .filter(|b| {
                let seen = *self.last_seen.entry(b.node_id).or_insert(now_ms);
                now_ms.saturating_sub(seen) > self.session_timeout_ms
            })
            .map(|b| (b.node_id, b.epoch))
            .collect();
        if expired.is_empty() {
            return Vec::new();
        }
        let mut work = snap.clone();
        let mut records = Vec::new();
        for (node_id, epoch) in expired {
            let mut step = vec![MetadataRecord::FenceBroker { node_id, epoch }];
            step.extend(election::on_fenced(&work, node_id));
            for r in &step {
                work.apply(r);
            }
            records.extend(step);
        }
        records
    }

    /// `node` asks to shut down: its leaderships move away and it is fenced, and stays so
    /// until it registers again.
    pub fn controlled_shutdown(
        &mut self,
        node: i32,
        epoch: i64,
        snap: &ClusterSnapshot,
    ) -> Result<Vec<MetadataRecord>, KafkaError> {
        let broker = current(snap, node, epoch)?;
        self.shutting_down.insert(node);
        let mut records = election::controlled_shutdown(snap, node);
        if !broker.fenced {
            records.push(MetadataRecord::FenceBroker {
                node_id: node,
                epoch,
            });
        }
        Ok(records)
    }

    /// Removes `node`'s registration (Kafka's UnregisterBroker): whatever it led moves, it
    /// leaves the ISRs, and its registration goes; its replicas stay assigned (offline). A
    /// broker still running finds its epoch unknown at its next heartbeat and registers
    /// again, as in Kafka. An unknown node is refused with BROKER_ID_NOT_REGISTERED.
    pub fn unregister(
        &mut self,
        node: i32,
        snap: &ClusterSnapshot,
    ) -> Result<Vec<MetadataRecord>, KafkaError> {
        let epoch = snap.broker(node).ok_or_else(|| not_registered(node))?.epoch;
        self.last_seen.remove(&node);
        self.shutting_down.remove(&node);
        let mut records = election::on_fenced(snap, node);
        records.push(MetadataRecord::UnregisterBroker {
            node_id: node,
            epoch,
        });
        Ok(records)
    }

    /// Whether `node` is in controlled shutdown.
    pub fn is_shutting_down(&self, node: i32) -> bool {
        self.shutting_down.contains(&node)
    }
}

/// The registration of `node` if `epoch` is its current one.
fn current(
    snap: &ClusterSnapshot,
    node: i32,
    epoch: i64,
) -> Result<&super::BrokerInfo, KafkaError> {
    let broker = snap.broker(node).ok_or_else(|| not_registered(node))?;
    if broker.epoch != epoch {
        return Err(stale(broker.epoch, epoch));
    }
    Ok(broker)
}

fn not_registered(node: i32) -> KafkaError {
    KafkaError::new(
        KafkaCode::BrokerIdNotRegistered,
        format!("Broker ID {node} is not currently registered"),
    )
}

fn stale(expected: i64, got: i64) -> KafkaError {
    KafkaError::new(
        KafkaCode::StaleBrokerEpoch,
        format!("Expected broker epoch {expected}, but got broker epoch {got}"),
    )
}

#[cfg(test)]
mod tests;

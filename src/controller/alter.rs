//! AlterPartition on the controller leader: a partition leader asks to change its ISR
//! (shrink a lagging follower out, expand a caught-up one in). Validated as Kafka's
//! controller validates it, then committed as a `PartitionChange`.
//!
//! Checks, in Kafka's order: the asking broker's epoch (STALE_BROKER_EPOCH), the partition
//! exists (UNKNOWN_TOPIC_OR_PARTITION), the leader epoch is the current one
//! (FENCED_LEADER_EPOCH), the asker leads (INVALID_REQUEST), the partition epoch is the
//! current one (INVALID_UPDATE_VERSION: the leader acted on an old state and must wait for
//! the newer snapshot), the new ISR is a set of replicas holding the leader
//! (INVALID_REQUEST), and every replica it adds is alive and not shutting down
//! (INELIGIBLE_REPLICA). Like Kafka, an ISR smaller than `min.insync.replicas` is accepted:
//! producing with acks=all is what refuses it (NOT_ENOUGH_REPLICAS); `under_min_isr` tells.
//!
//! The leader keeps its leader epoch; the partition epoch moves. A reassignment whose new
//! replicas are all in the new ISR completes in the same change. Pure.

use super::change::{Bump, Next};
use super::reassign;
use super::snapshot::ClusterSnapshot;
use super::MetadataRecord;
use crate::base::{KafkaCode, KafkaError};

/// One partition's AlterPartition, as the leader sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterIsr {
    pub broker_id: i32,
    pub broker_epoch: i64,
    pub topic: String,
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
}

/// Validates `req` against `snap`. `Ok(None)`: the ISR is already what is asked (nothing to
/// commit; answer with the current state). `shutting_down`: brokers in controlled shutdown.
pub fn alter_partition(
    snap: &ClusterSnapshot,
    req: &AlterIsr,
    shutting_down: impl Fn(i32) -> bool,
) -> Result<Option<MetadataRecord>, KafkaError> {
    let broker = snap.broker(req.broker_id);
    if broker.is_none_or(|b| b.epoch != req.broker_epoch) {
        return Err(KafkaError::new(
            KafkaCode::StaleBrokerEpoch,
            format!(
                "Broker {} sent AlterPartition with a stale broker epoch {}",
                req.broker_id, req.broker_epoch
            ),
        ));
    }
    let p = snap.partition(&req.topic, req.partition).ok_or_else(|| {
        KafkaError::new(
            KafkaCode::UnknownTopicOrPartition,
            "This server does not host this topic-partition.",
        )
    })?;
    if req.leader_epoch != p.leader_epoch {
        return Err(KafkaError::new(
            KafkaCode::FencedLeaderEpoch,
            format!(
                "The leader epoch {} is not the current one, {}.",
                req.leader_epoch, p.leader_epoch
            ),
        ));
    }
    if req.broker_id != p.leader {
        return Err(invalid(format!(
            "Broker {} is not the leader of {}-{}.",
            req.broker_id, req.topic, req.partition
        )));
    }
    if req.partition_epoch != p.partition_epoch {
        return Err(KafkaError::new(
            KafkaCode::InvalidUpdateVersion,
            format!(
                "The partition epoch {} is not the current one, {}.",
                req.partition_epoch, p.partition_epoch
            ),
        ));
    }
    check_isr(&req.new_isr, &p.replicas, p.leader)?;
    let ineligible: Vec<i32> = req
        .new_isr
        .iter()
        .copied()
        .filter(|b| !p.isr.contains(b) && (!snap.is_live(*b) || shutting_down(*b)))
        .collect();
    if !ineligible.is_empty() {
        return Err(KafkaError::new(
            KafkaCode::IneligibleReplica,
            format!(
                "Replicas {ineligible:?} are fenced or shutting down: they cannot join the ISR."
            ),
        ));
    }
    let mut next = Next::of(p);
    next.isr = req.new_isr.clone();
    let bump = match reassign::complete_if_ready(&mut next, snap) {
        true => Bump::LeaderAndPartition,
        false => Bump::PartitionOnly,
    };
    Ok(next.changes(p).then(|| next.record(&req.topic, p, bump)))
}

/// The ISR must be distinct replicas and hold the leader.
fn check_isr(isr: &[i32], replicas: &[i32], leader: i32) -> Result<(), KafkaError> {
    let distinct = isr.iter().enumerate().all(|(i, b)| !isr[..i].contains(b));
    if !distinct || !isr.iter().all(|b| replicas.contains(b)) {
        return Err(invalid(format!(
            "The ISR {isr:?} is not a set of the replicas {replicas:?}."
        )));
    }
    if !isr.contains(&leader) {
        return Err(invalid(format!(
            "The ISR {isr:?} does not hold the leader {leader}."
        )));
    }
    Ok(())
}

fn invalid(message: String) -> KafkaError {
    KafkaError::new(KafkaCode::InvalidRequest, message)
}

/// Whether `topic`'s partition has fewer in-sync replicas than its `min.insync.replicas`
/// (or `default_min` when the topic does not set it).
pub fn under_min_isr(
    snap: &ClusterSnapshot,
    topic: &str,
    partition: i32,
    default_min: i32,
) -> bool {
    let Some(t) = snap.topics.get(topic) else {
        return false;
    };
    let min = t
        .configs
        .get("min.insync.replicas")
        .and_then(|v| v.trim().parse::<i32>().ok())
        .unwrap_or(default_min);
    snap.partition(topic, partition)
        .is_some_and(|p| (p.isr.len() as i32) < min)
}

#[cfg(test)]
mod tests;

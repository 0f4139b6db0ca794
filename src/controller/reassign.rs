//! Partition reassignment (KIP-455): moving a partition's replicas to a target set.
//!
//! Start: the replicas become the target followed by the original replicas leaving;
//! `adding` = target − original, `removing` = original − target. The new replicas fetch
//! from the leader like any follower; when the leader's AlterPartition puts all of `adding`
//! in the ISR, the reassignment completes in that same change: replicas = target,
//! `removing` leave the ISR, and if the leader was leaving, the first target replica in the
//! ISR leads. Cancel: back to the original replicas, `adding` leaves the ISR; as in Kafka,
//! they keep the order they had during the move (target first), so the preferred leader
//! may differ from before. A new
//! reassignment of a partition already moving replaces the old one, counted from the
//! original replicas. Pure: each call returns the records to commit.

use super::change::{Bump, Next};
use super::election::{self, Alive};
use super::placement;
use super::snapshot::{ClusterSnapshot, PartitionInfo};
use super::MetadataRecord;
use crate::base::{KafkaCode, KafkaError};

/// Starts moving `topic`/`partition` to `target` (first = preferred leader).
pub fn start(
    snap: &ClusterSnapshot,
    topic: &str,
    partition: i32,
    target: &[i32],
) -> Result<Option<MetadataRecord>, KafkaError> {
    let p = find(snap, topic, partition)?;
    check_target(snap, target)?;
    let (original, original_shards) = original(p);
    let adding: Vec<i32> = target
        .iter()
        .copied()
        .filter(|b| !original.contains(b))
        .collect();
    let removing: Vec<i32> = original
        .iter()
        .copied()
        .filter(|b| !target.contains(b))
        .collect();
    let mut next = Next::of(p);
    next.replicas = target.to_vec();
    next.replicas.extend(&removing);
    next.replica_shards = next
        .replicas
        .iter()
        .map(|&b| shard_of(snap, &original, &original_shards, b))
        .collect();
    // Replicas of a replaced reassignment that are in sync stay so if still wanted.
    next.isr.retain(|b| next.replicas.contains(b));
    if next.isr.is_empty() {
        return Err(KafkaError::new(
            KafkaCode::InvalidReplicaAssignment,
            format!("Cannot move {topic}-{partition} to {target:?}: none of its in-sync replicas would stay."),
        ));
    }
    next.adding = adding;
    next.removing = removing;
    complete_if_ready(&mut next, snap);
    if next.leader == super::change::NO_LEADER || !next.isr.contains(&next.leader) {
        election::elect(&mut next, &Alive::of(snap), false);
    }
    let bump = bump_for(p, &next);
    Ok(next.changes(p).then(|| next.record(topic, p, bump)))
}

/// Cancels the reassignment of `topic`/`partition`: back to its original replicas.
pub fn cancel(
    snap: &ClusterSnapshot,
    topic: &str,
    partition: i32,
) -> Result<MetadataRecord, KafkaError> {
    let p = find(snap, topic, partition)?;
    if p.adding.is_empty() && p.removing.is_empty() {
        return Err(KafkaError::new(
            KafkaCode::NoReassignmentInProgress,
            format!("No ongoing reassignment for {topic}-{partition}."),
        ));
    }
    let (original, original_shards) = original(p);
    let mut next = Next::of(p);
    next.isr.retain(|b| original.contains(b));
    if next.isr.is_empty() {
        // Only new replicas are in sync: reverting would leave no replica with the data.
        return Err(KafkaError::new(
            KafkaCode::InvalidReplicaAssignment,
            format!("Cannot cancel the reassignment of {topic}-{partition}: none of its original replicas is in sync."),
        ));
    }
    next.replicas = original;
    next.replica_shards = original_shards;
    next.adding.clear();
    next.removing.clear();
    if !next.isr.contains(&next.leader) {
        election::elect(&mut next, &Alive::of(snap), false);
    }
    let bump = bump_for(p, &next);
    Ok(next.record(topic, p, bump))
}

/// If every `adding` replica of `next` is in its ISR, finishes the reassignment in `next`
/// (replicas = target, the leaving ones out of the ISR, a new leader if the old one left).
/// Returns whether it did.
pub fn complete_if_ready(next: &mut Next, snap: &ClusterSnapshot) -> bool {
    if next.adding.is_empty() && next.removing.is_empty() {
        return false;
    }
    if !next.adding.iter().all(|b| next.isr.contains(b)) {
        return false;
    }
    let leaving = std::mem::take(&mut next.removing);
    let kept: Vec<(i32, usize)> = next
        .replicas
        .iter()
        .copied()
        .zip(next.replica_shards.iter().copied())
        .filter(|(b, _)| !leaving.contains(b))
        .collect();
    next.replicas = kept.iter().map(|(b, _)| *b).collect();
    next.replica_shards = kept.iter().map(|(_, s)| *s).collect();
    next.adding.clear();
    let isr_after: Vec<i32> = next
        .isr
        .iter()
        .copied()
        .filter(|b| !leaving.contains(b))
        .collect();
    if isr_after.is_empty() {
        // Nothing of the target is in sync: keep moving (cannot happen once `adding` is).
        next.removing = leaving;
        return false;
    }
    next.isr = isr_after;
    if leaving.contains(&next.leader) {
        election::elect(next, &Alive::of(snap), false);
    }
    true
}

/// One reassignment in progress, as ListPartitionReassignments reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ongoing {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

/// Every reassignment in progress, by topic and partition.
pub fn list(snap: &ClusterSnapshot) -> Vec<Ongoing> {
    snap.topics
        .values()
        .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
        .filter(|(_, p)| !p.adding.is_empty() || !p.removing.is_empty())
        .map(|(t, p)| Ongoing {
            topic: t.name.clone(),
            partition: p.index,
            replicas: p.replicas.clone(),
            adding: p.adding.clone(),
            removing: p.removing.clone(),
        })
        .collect()
}

/// The replicas (and their shards) before any reassignment in progress.
fn original(p: &PartitionInfo) -> (Vec<i32>, Vec<usize>) {
    p.replicas
        .iter()
        .zip(&p.replica_shards)
        .filter(|(b, _)| !p.adding.contains(b))
        .map(|(b, s)| (*b, *s))
        .unzip()
}

/// A replica keeps its shard; a new one goes to its broker's least loaded shard.
fn shard_of(snap: &ClusterSnapshot, original: &[i32], shards: &[usize], broker: i32) -> usize {
    match original.iter().position(|&b| b == broker) {
        Some(k) => shards.get(k).copied().unwrap_or(0),
        None => placement::least_loaded_shard(snap, broker),
    }
}

/// Removing a replica or changing the leader moves the leader epoch (a removed replica
/// must stop acting on the old one); adding replicas only moves the partition epoch.
fn bump_for(p: &PartitionInfo, next: &Next) -> Bump {
    let removed = p.replicas.iter().any(|b| !next.replicas.contains(b));
    if removed || next.leader != p.leader {
        Bump::LeaderAndPartition
    } else {
        Bump::PartitionOnly
    }
}

fn check_target(snap: &ClusterSnapshot, target: &[i32]) -> Result<(), KafkaError> {
    let bad = |m: String| KafkaError::new(KafkaCode::InvalidReplicaAssignment, m);
    if target.is_empty() {
        return Err(bad("The target replicas are empty.".into()));
    }
    if target
        .iter()
        .enumerate()
        .any(|(i, b)| target[..i].contains(b))
    {
        return Err(bad(format!(
            "The target replicas {target:?} repeat a broker."
        )));
    }
    if let Some(b) = target.iter().find(|b| snap.broker(**b).is_none()) {
        return Err(bad(format!(
            "The target replicas name broker {b}, which is not registered."
        )));
    }
    Ok(())
}

fn find<'a>(
    snap: &'a ClusterSnapshot,
    topic: &str,
    partition: i32,
) -> Result<&'a PartitionInfo, KafkaError> {
    snap.partition(topic, partition).ok_or_else(|| {
        KafkaError::new(
            KafkaCode::UnknownTopicOrPartition,
            "This server does not host this topic-partition.",
        )
    })
}

#[cfg(test)]
mod tests;

//! Partition leader election, as the controller leader decides it: when a broker is fenced
//! or shuts down (leadership moves off it and it leaves the ISRs), when a broker comes back
//! (leaderless partitions get a leader again), and preferred-leader rebalance.
//!
//! The rule (Kafka's): the leader is the first replica, in `replicas` order, that is in the
//! ISR and alive. If there is none the partition has no leader (−1) — unless the topic sets
//! `unclean.leader.election.enable`, then the first alive replica leads and the ISR becomes
//! just it (acknowledged records it lacks are lost: that is what "unclean" means). The ISR
//! never becomes empty: when its last member goes, that member stays listed, so that it is
//! the one elected when it comes back with the committed records.
//!
//! Every change is a `PartitionChange` with leader epoch and partition epoch bumped. Pure:
//! functions of a snapshot, returning the records to commit.

use super::change::{Bump, Next, NO_LEADER};
use super::snapshot::{ClusterSnapshot, PartitionInfo, TopicInfo};
use super::MetadataRecord;
use crate::base::{KafkaCode, KafkaError};

/// The topic config that allows electing a replica outside the ISR.
pub const UNCLEAN_LEADER_ELECTION: &str = "unclean.leader.election.enable";

/// Whether `topic` allows unclean leader election (Kafka's default: no).
pub fn unclean_enabled(topic: &TopicInfo) -> bool {
    topic
        .configs
        .get(UNCLEAN_LEADER_ELECTION)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Which brokers may lead: the snapshot's live brokers, with one broker forced out (being
/// fenced or shutting down) or in (being unfenced) ahead of the record that says so.
#[derive(Clone, Copy)]
pub struct Alive<'a> {
    snap: &'a ClusterSnapshot,
    gone: Option<i32>,
    back: Option<i32>,
}

impl<'a> Alive<'a> {
    pub fn of(snap: &'a ClusterSnapshot) -> Self {
        Self {
            snap,
            gone: None,
            back: None,
        }
    }

    pub fn without(self, node: i32) -> Self {
        Self {
            gone: Some(node),
            ..self
        }
    }

    pub fn with(self, node: i32) -> Self {
        Self {
            back: Some(node),
            ..self
        }
    }

    pub fn is(&self, node: i32) -> bool {
        if self.gone == Some(node) {
            return false;
        }
        self.back == Some(node) || self.snap.is_live(node)
    }
}

/// How an election went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elected {
    /// From the ISR.
    Clean(i32),
    /// From outside the ISR (only when the topic allows it).
    Unclean(i32),
    /// No replica may lead.
    None,
}

/// Elects a leader for `next` (its ISR and replicas as they will be) and sets it.
pub fn elect(next: &mut Next, alive: &Alive<'_>, unclean: bool) -> Elected {
    let clean = next
        .replicas
        .iter()
        .copied()
        .find(|&b| next.isr.contains(&b) && alive.is(b));
    if let Some(b) = clean {
        next.leader = b;
        return Elected::Clean(b);
    }
    let any = next.replicas.iter().copied().find(|&b| alive.is(b));
    match any {
        Some(b) if unclean => {
            next.leader = b;
            next.isr = vec![b];
            Elected::Unclean(b)
        }
        _ => {
            next.leader = NO_LEADER;
            Elected::None
        }
    }
}

/// `node` is fenced (missed its heartbeats): it leaves every ISR (unless it is the last
/// member) and every partition it led gets a new leader.
pub fn on_fenced(snap: &ClusterSnapshot, node: i32) -> Vec<MetadataRecord> {
    remove_broker(snap, node)
}

/// `node` shuts down in a controlled way: as fencing, before it stops, so its partitions
/// move while it can still serve the requests already in flight.
pub fn controlled_shutdown(snap: &ClusterSnapshot, node: i32) -> Vec<MetadataRecord> {
    remove_broker(snap, node)
}

/// `node` is unfenced: partitions without a leader that it (or anyone now) can lead get one.
pub fn on_unfenced(snap: &ClusterSnapshot, node: i32) -> Vec<MetadataRecord> {
    elect_leaderless(snap, Alive::of(snap).with(node))
}

/// Elects a leader wherever there is none, or the leader is not alive.
pub fn elect_leaderless(snap: &ClusterSnapshot, alive: Alive<'_>) -> Vec<MetadataRecord> {
    each_partition(snap, |t, p| {
        if alive.is(p.leader) {
            return None;
        }
        let mut next = Next::of(p);
        elect(&mut next, &alive, unclean_enabled(t));
        next.changes(p)
            .then(|| next.record(&t.name, p, Bump::LeaderAndPartition))
    })
}

fn remove_broker(snap: &ClusterSnapshot, node: i32) -> Vec<MetadataRecord> {
    let alive = Alive::of(snap).without(node);
    each_partition(snap, |t, p| {
        if p.leader != node && !p.isr.contains(&node) {
            return None;
        }
        let mut next = Next::of(p);
        if next.isr.len() > 1 {
            next.isr.retain(|&b| b != node);
        }
        if !alive.is(next.leader) {
            elect(&mut next, &alive, unclean_enabled(t));
        }
        // A follower leaving the ISR does not move the leader epoch (Kafka since 3.6,
        // KAFKA-15021): the leader keeps serving, its clients' fetches stay valid.
        let bump = match next.leader == p.leader {
            true => Bump::PartitionOnly,
            false => Bump::LeaderAndPartition,
        };
        next.changes(p).then(|| next.record(&t.name, p, bump))
    })
}

/// Moves leadership back to each partition's preferred replica (the first) wherever it is
/// alive, in the ISR and not leading: Kafka's auto leader rebalance, for every partition.
pub fn preferred_rebalance(snap: &ClusterSnapshot) -> Vec<MetadataRecord> {
    let alive = Alive::of(snap);
    each_partition(snap, |t, p| {
        let preferred = *p.replicas.first()?;
        let ready = p.leader != preferred && p.isr.contains(&preferred) && alive.is(preferred);
        ready.then(|| {
            let mut next = Next::of(p);
            next.leader = preferred;
            next.record(&t.name, p, Bump::LeaderAndPartition)
        })
    })
}

/// ElectLeaders (preferred) for one partition: the record, or Kafka's reason why not.
pub fn elect_preferred(
    snap: &ClusterSnapshot,
    topic: &str,
    partition: i32,
) -> Result<MetadataRecord, KafkaError> {
    let (t, p) = find(snap, topic, partition)?;
    let preferred = p.replicas.first().copied().unwrap_or(NO_LEADER);
    if p.leader == preferred {
        return Err(KafkaError::new(
            KafkaCode::ElectionNotNeeded,
            "Leader election not needed for topic partition.",
        ));
    }
    if !p.isr.contains(&preferred) || !snap.is_live(preferred) {
        return Err(KafkaError::new(
            KafkaCode::PreferredLeaderNotAvailable,
            format!(
                "Failed to elect leader for partition {topic}-{partition} under strategy PreferredReplicaPartitionLeaderElectionStrategy"
            ),
        ));
    }
    let mut next = Next::of(p);
    next.leader = preferred;
    Ok(next.record(&t.name, p, Bump::LeaderAndPartition))
}

/// ElectLeaders (unclean) for one partition: a leader for a leaderless partition, from
/// the ISR if possible, else any alive replica, whatever the topic's config says.
pub fn elect_unclean(
    snap: &ClusterSnapshot,
    topic: &str,
    partition: i32,
) -> Result<MetadataRecord, KafkaError> {
    let (t, p) = find(snap, topic, partition)?;
    let alive = Alive::of(snap);
    if alive.is(p.leader) {
        return Err(KafkaError::new(
            KafkaCode::ElectionNotNeeded,
            "Leader election not needed for topic partition.",
        ));
    }
    let mut next = Next::of(p);
    if elect(&mut next, &alive, true) == Elected::None {
        return Err(KafkaError::new(
            KafkaCode::EligibleLeadersNotAvailable,
            format!("Failed to elect leader for partition {topic}-{partition} under strategy UncleanLeaderElectionStrategy"),
        ));
    }
    Ok(next.record(&t.name, p, Bump::LeaderAndPartition))
}

fn find<'a>(
    snap: &'a ClusterSnapshot,
    topic: &str,
    partition: i32,
) -> Result<(&'a TopicInfo, &'a PartitionInfo), KafkaError> {
    let unknown = || {
        KafkaError::new(
            KafkaCode::UnknownTopicOrPartition,
            "This server does not host this topic-partition.",
        )
    };
    let t = snap.topics.get(topic).ok_or_else(unknown)?;
    let p = snap.partition(topic, partition).ok_or_else(unknown)?;
    Ok((t, p))
}

/// The records `decide` returns for each partition of the cluster, in topic order.
fn each_partition(
    snap: &ClusterSnapshot,
    mut decide: impl FnMut(&TopicInfo, &PartitionInfo) -> Option<MetadataRecord>,
) -> Vec<MetadataRecord> {
    snap.topics
        .values()
        .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
        .filter_map(|(t, p)| decide(t, p))
        .collect()
}

#[cfg(test)]
mod tests;

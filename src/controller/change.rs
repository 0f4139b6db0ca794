//! The next state of one partition, as a controller decision (election, ISR change,
//! reassignment) builds it, and the `PartitionChange` record that commits it.

use super::snapshot::PartitionInfo;
use super::MetadataRecord;

/// No leader: no live replica may lead.
pub const NO_LEADER: i32 = -1;

/// A partition's state after a change, started from its current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Next {
    pub leader: i32,
    pub isr: Vec<i32>,
    pub replicas: Vec<i32>,
    pub replica_shards: Vec<usize>,
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

/// Which epochs a change bumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bump {
    /// A new leader (election, fencing or shutdown of the leader, reassignment that removes
    /// a replica): leader epoch and partition epoch both move, so every replica learns of
    /// it and a stale leader is fenced.
    LeaderAndPartition,
    /// The same leader with a new ISR or replica set (its own AlterPartition, a fenced
    /// follower dropped from the ISR): it stays leader in the same epoch.
    PartitionOnly,
}

impl Next {
    pub fn of(p: &PartitionInfo) -> Self {
        Self {
            leader: p.leader,
            isr: p.isr.clone(),
            replicas: p.replicas.clone(),
            replica_shards: p.replica_shards.clone(),
            adding: p.adding.clone(),
            removing: p.removing.clone(),
        }
    }

    /// Whether this differs from `p`'s current state.
    pub fn changes(&self, p: &PartitionInfo) -> bool {
        *self != Self::of(p)
    }

    /// The record committing this state for `topic`/`p`, epochs bumped per `bump`.
    pub fn record(self, topic: &str, p: &PartitionInfo, bump: Bump) -> MetadataRecord {
        debug_assert!(
            self.leader == NO_LEADER || self.isr.contains(&self.leader),
            "leader {} outside the ISR {:?}",
            self.leader,
            self.isr
        );
        let leader_epoch = match bump {
            Bump::LeaderAndPartition => p.leader_epoch + 1,
            Bump::PartitionOnly => p.leader_epoch,
        };
        MetadataRecord::PartitionChange {
            topic: topic.to_owned(),
            partition: p.index,
            leader: self.leader,
            leader_epoch,
            partition_epoch: p.partition_epoch + 1,
            isr: self.isr,
            replicas: self.replicas,
            replica_shards: self.replica_shards,
            adding: self.adding,
            removing: self.removing,
        }
    }
}

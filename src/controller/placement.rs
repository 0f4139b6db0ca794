//! Where new partitions' replicas go (CreateTopics, CreatePartitions): which brokers, in
//! which order (the first is the preferred leader), and which shard on each broker.
//!
//! Brokers: the live (unfenced) ones. Order: Kafka's round robin — partition p's first
//! replica is broker `(p + start) % n` of the broker list, its followers follow at a shift
//! that grows by one every `n` partitions, so leaders and followers both spread evenly.
//! `start` and the first shift come from a random number the caller passes in (Kafka draws
//! them at random so that topics do not all start on the same broker); a fixed number gives
//! a fixed answer. When every broker has a rack, the broker list alternates racks and each
//! rack gets a replica of a partition before any rack gets a second one. Within a broker, a
//! replica goes to the shard holding the fewest replicas so far. Pure: no I/O, no clock.

use std::collections::{BTreeMap, BTreeSet};

use super::snapshot::ClusterSnapshot;
use super::validate;
use crate::base::KafkaError;

/// Replicas for a run of new partitions, indexed from the first new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// `replicas[i]`: the brokers of the i-th new partition, preferred leader first.
    pub replicas: Vec<Vec<i32>>,
    /// `replica_shards[i][k]`: the shard of broker `replicas[i][k]` holding it.
    pub replica_shards: Vec<Vec<usize>>,
}

impl Assignment {
    /// The preferred leader's shard of each new partition (the records' `shards` field).
    pub fn leader_shards(&self) -> Vec<usize> {
        self.replica_shards
            .iter()
            .map(|s| s.first().copied().unwrap_or(0))
            .collect()
    }
}

/// What to place.
#[derive(Debug, Clone, Copy)]
pub struct NewPartitions {
    /// Index of the first new partition (0 for a new topic, the current count when adding).
    pub first: i32,
    pub count: i32,
    pub replication_factor: i16,
}

/// Places `new` across the live brokers of `snap`. `random` seeds the round robin's start
/// and shift. RF above the number of live brokers → INVALID_REPLICATION_FACTOR.
pub fn assign(
    snap: &ClusterSnapshot,
    new: NewPartitions,
    random: u64,
) -> Result<Assignment, KafkaError> {
    let live: Vec<(i32, Option<&str>)> = snap
        .live_brokers()
        .map(|b| (b.node_id, b.rack.as_deref()))
        .collect();
    validate::replication_factor(new.replication_factor, live.len())?;
    let rf = new.replication_factor as usize;
    let rack_aware = live.iter().all(|(_, rack)| rack.is_some());
    let order = if rack_aware {
        rack_alternated(&live)
    } else {
        live.iter().map(|(id, _)| *id).collect()
    };
    let rack_of: BTreeMap<i32, &str> = live
        .iter()
        .map(|(id, rack)| (*id, rack.unwrap_or("")))
        .collect();
    let robin = RoundRobin::new(order, new.first, random);
    let mut shards = ShardLoad::of(snap);
    let mut out = Assignment {
        replicas: Vec::with_capacity(new.count.max(0) as usize),
        replica_shards: Vec::with_capacity(new.count.max(0) as usize),
    };
    for p in new.first..new.first.saturating_add(new.count.max(0)) {
        let brokers = if rack_aware {
            robin.rack_aware(p, rf, &rack_of)
        } else {
            robin.plain(p, rf)
        };
        out.replica_shards
            .push(brokers.iter().map(|&b| shards.take(b)).collect());
        out.replicas.push(brokers);
    }
    Ok(out)
}

/// Brokers ordered rack by rack in turn (racks sorted by name, brokers of a rack by id), so
/// neighbours in the list sit in different racks.
fn rack_alternated(live: &[(i32, Option<&str>)]) -> Vec<i32> {
    let mut by_rack: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (id, rack) in live {
        by_rack.entry(rack.unwrap_or("")).or_default().push(*id);
    }
    for ids in by_rack.values_mut() {
        ids.sort_unstable();
    }
    let deepest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    (0..deepest)
        .flat_map(|round| {
            by_rack
                .values()
                .filter_map(move |ids| ids.get(round).copied())
        })
        .collect()
}

/// Kafka's round robin over an ordered broker list.
struct RoundRobin {
    order: Vec<i32>,
    /// Index in `order` of partition `first`'s first replica, less `first`.
    start: usize,
    /// The follower shift at partition `first`.
    shift: usize,
    first: usize,
}

impl RoundRobin {
    fn new(order: Vec<i32>, first: i32, random: u64) -> Self {
        let n = order.len().max(1) as u64;
        Self {
            start: (random % n) as usize,
            shift: ((random >> 32) % n) as usize,
            first: first.max(0) as usize,
            order,
        }
    }

    fn n(&self) -> usize {
        self.order.len()
    }

    /// Index in `order` of partition `p`'s first replica, and the follower shift for `p`:
    /// one more at every nonzero multiple of `n` from the first new partition on, as Kafka
    /// counts it.
    fn first_and_shift(&self, p: i32) -> (usize, usize) {
        let p = p.max(0) as usize;
        let n = self.n();
        let shift = self.shift + p / n - (self.first.max(1) - 1) / n;
        ((p + self.start) % n, shift)
    }

    /// The index of the `j`-th candidate follower after `first` at `shift`: never `first`
    /// itself, and `j` in `0..n-1` visits every other broker once.
    fn follower(&self, first: usize, shift: usize, j: usize) -> usize {
        let n = self.n();
        (first + 1 + (shift + j) % (n - 1)) % n
    }

    fn plain(&self, p: i32, rf: usize) -> Vec<i32> {
        let (first, shift) = self.first_and_shift(p);
        let mut out = vec![self.order[first]];
        out.extend((0..rf - 1).map(|j| self.order[self.follower(first, shift, j)]));
        out
    }

    /// Like `plain`, skipping a candidate while a rack (or a broker) with no replica yet
    /// remains, so racks fill one replica each before any takes two.
    fn rack_aware(&self, p: i32, rf: usize, rack_of: &BTreeMap<i32, &str>) -> Vec<i32> {
        let n = self.n();
        let racks = rack_of.values().collect::<BTreeSet<_>>().len();
        let (first, shift) = self.first_and_shift(p);
        let leader = self.order[first];
        let mut out = vec![leader];
        let mut racks_used: BTreeSet<&str> = BTreeSet::from([rack_of[&leader]]);
        let mut j = 0;
        while out.len() < rf {
            // A full round over the others always finds one: the bound only guards a bug.
            debug_assert!(j < n * rf, "rack-aware placement found no broker");
            let b = self.order[self.follower(first, shift * racks, j)];
            let rack = rack_of[&b];
            let rack_ok = !racks_used.contains(rack) || racks_used.len() == racks;
            let broker_ok = !out.contains(&b) || out.len() == n;
            let desperate = j >= n * rf;
            if ((rack_ok && broker_ok) || desperate) && !out.contains(&b) {
                out.push(b);
                racks_used.insert(rack);
            }
            j += 1;
        }
        out
    }
}

/// The shard of `broker` holding the fewest replicas (for a replica added by a
/// reassignment).
pub fn least_loaded_shard(snap: &ClusterSnapshot, broker: i32) -> usize {
    ShardLoad::of(snap).take(broker)
}

/// How many replicas each shard of each registered broker holds, so each new replica goes to
/// its broker's least loaded shard (lowest index on a tie).
struct ShardLoad {
    load: BTreeMap<i32, Vec<usize>>,
}

impl ShardLoad {
    fn of(snap: &ClusterSnapshot) -> Self {
        let mut load: BTreeMap<i32, Vec<usize>> = snap
            .brokers
            .iter()
            .map(|b| (b.node_id, vec![0; b.shards.max(1)]))
            .collect();
        let partitions = snap.topics.values().flat_map(|t| &t.partitions);
        for p in partitions {
            for (broker, shard) in p.replicas.iter().zip(&p.replica_shards) {
                if let Some(shards) = load.get_mut(broker) {
                    let n = shards.len();
                    shards[shard % n] += 1;
                }
            }
        }
        Self { load }
    }

    fn take(&mut self, broker: i32) -> usize {
        let Some(shards) = self.load.get_mut(&broker) else {
            return 0;
        };
        let (i, _) = shards
            .iter()
            .enumerate()
            .min_by_key(|(i, n)| (**n, *i))
            .expect("a broker has at least one shard");
        shards[i] += 1;
        i
    }
}

#[cfg(test)]
mod tests;

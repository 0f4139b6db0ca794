//! Metadata application as explicit, ordered transitions (sans-io).
//!
//! Every metadata snapshot carries a version (the number of committed metadata records it
//! reflects). A shard applies snapshots one at a time, in one task, through a
//! [`MetadataApplier`]: a snapshot older than (or as old as) the one applied is skipped, so a
//! late snapshot can never bring back a deleted partition or undo a newer placement; a newer
//! one is turned into transitions against what the shard has open, which the shard then
//! executes in order (stops and deletes before opens, so a re-created topic's directory is
//! wiped before its new log opens). Opening the same partition twice cannot happen: a
//! partition is opened only when the applier does not already count it as open.

use std::collections::BTreeMap;

use crate::base::TopicPartition;

/// What this shard is for a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    /// Replicates the partition from broker `leader` (-1: no leader right now).
    Follower {
        leader: i32,
    },
}

/// How the metadata places one partition on this shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub topic_id: [u8; 16],
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub role: Role,
    /// This broker's node id.
    pub local: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

impl Placement {
    /// A placement of the only replica, led here.
    pub fn single(topic_id: [u8; 16], leader_epoch: i32, local: i32) -> Self {
        Self {
            topic_id,
            leader_epoch,
            partition_epoch: 0,
            role: Role::Leader,
            local,
            replicas: vec![local],
            isr: vec![local],
        }
    }
}

/// One change to the set of partitions a shard runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Open the partition's log in the given role.
    Open {
        tp: TopicPartition,
        placement: Placement,
    },
    /// The partition moved to another shard of this broker: close it, keep its data.
    Stop { tp: TopicPartition },
    /// The partition's topic is gone (or was re-created with a new id), or its replica left
    /// this broker (a reassignment): close and remove it.
    Delete { tp: TopicPartition },
    /// Same log, new role, leader epoch or ISR (the replication fetchers and the ISR
    /// tracking react to it).
    Update {
        tp: TopicPartition,
        placement: Placement,
    },
}

/// The metadata a shard should reflect: its own partitions, and a way to tell whether a
/// partition it stops running still has a replica on this broker (stop) or not (delete).
pub struct Desired<'a> {
    pub version: u64,
    pub here: BTreeMap<TopicPartition, Placement>,
    pub exists: &'a dyn Fn(&TopicPartition, &[u8; 16]) -> bool,
}

/// What a shard has applied so far.
#[derive(Debug, Default)]
pub struct MetadataApplier {
    version: Option<u64>,
    current: BTreeMap<TopicPartition, Placement>,
}

impl MetadataApplier {
    /// The partitions counted as open, with their placement.
    #[cfg(test)]
    pub fn current(&self) -> &BTreeMap<TopicPartition, Placement> {
        &self.current
    }

    /// The transitions that bring the shard from what it runs to `desired`, or `None` when
    /// `desired` is not newer than what was applied (it must then be ignored).
    pub fn offer(&mut self, desired: Desired<'_>) -> Option<Vec<Transition>> {
        if self.version.is_some_and(|v| desired.version <= v) {
            return None;
        }
        self.version = Some(desired.version);
        let mut closing = Vec::new();
        let mut opening = Vec::new();
        for (tp, have) in &self.current {
            match desired.here.get(tp) {
                Some(want) if want.topic_id == have.topic_id => {
                    if want != have {
                        opening.push(Transition::Update {
                            tp: tp.clone(),
                            placement: want.clone(),
                        });
                    }
                }
                Some(_) => closing.push(Transition::Delete { tp: tp.clone() }),
                None if (desired.exists)(tp, &have.topic_id) => {
                    closing.push(Transition::Stop { tp: tp.clone() })
                }
                None => closing.push(Transition::Delete { tp: tp.clone() }),
            }
        }
        for (tp, want) in &desired.here {
            if self
                .current
                .get(tp)
                .is_none_or(|have| have.topic_id != want.topic_id)
            {
                opening.push(Transition::Open {
                    tp: tp.clone(),
                    placement: want.clone(),
                });
            }
        }
        self.current = desired.here;
        closing.extend(opening);
        Some(closing)
    }

    /// An open that failed: the partition is not running, so the next newer snapshot
    /// retries it.
    pub fn open_failed(&mut self, tp: &TopicPartition) {
        self.current.remove(tp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn tp(t: &str, p: i32) -> TopicPartition {
        TopicPartition::new(t.to_owned(), p)
    }

    fn placed(id: u8) -> Placement {
        Placement::single([id; 16], 0, 1)
    }

    fn desired(version: u64, here: &[(TopicPartition, u8)]) -> Desired<'static> {
        Desired {
            version,
            here: here
                .iter()
                .map(|(t, id)| (t.clone(), placed(*id)))
                .collect(),
            exists: &|_, _| false,
        }
    }

    #[test]
    fn a_stale_snapshot_cannot_bring_back_a_deleted_partition() {
        let mut a = MetadataApplier::default();
        let opened = a.offer(desired(1, &[(tp("t", 0), 1)])).unwrap();
        assert_eq!(opened.len(), 1);
        let deleted = a.offer(desired(2, &[])).unwrap();
        assert_eq!(deleted, vec![Transition::Delete { tp: tp("t", 0) }]);
        assert!(a.offer(desired(1, &[(tp("t", 0), 1)])).is_none());
        assert!(a.current().is_empty());
    }

    #[test]
    fn a_recreated_topic_is_deleted_before_it_is_opened_again() {
        let mut a = MetadataApplier::default();
        a.offer(desired(1, &[(tp("t", 0), 1)])).unwrap();
        let steps = a.offer(desired(3, &[(tp("t", 0), 2)])).unwrap();
        assert_eq!(steps[0], Transition::Delete { tp: tp("t", 0) });
        assert!(
            matches!(&steps[1], Transition::Open { placement, .. } if placement.topic_id == [2; 16])
        );
    }

    #[test]
    fn a_partition_placed_elsewhere_is_stopped_not_deleted() {
        let mut a = MetadataApplier::default();
        a.offer(desired(1, &[(tp("t", 0), 1)])).unwrap();
        let exists = |_: &TopicPartition, id: &[u8; 16]| *id == [1; 16];
        let steps = a
            .offer(Desired {
                version: 2,
                here: BTreeMap::new(),
                exists: &exists,
            })
            .unwrap();
        assert_eq!(steps, vec![Transition::Stop { tp: tp("t", 0) }]);
    }

    #[test]
    fn a_new_leader_or_isr_is_an_update_of_the_open_log() {
        let mut a = MetadataApplier::default();
        a.offer(desired(1, &[(tp("t", 0), 1)])).unwrap();
        let follower = Placement {
            role: Role::Follower { leader: 2 },
            leader_epoch: 1,
            replicas: vec![1, 2],
            isr: vec![1, 2],
            ..placed(1)
        };
        let here = BTreeMap::from([(tp("t", 0), follower.clone())]);
        let steps = a
            .offer(Desired {
                version: 2,
                here: here.clone(),
                exists: &|_, _| true,
            })
            .unwrap();
        assert_eq!(
            steps,
            vec![Transition::Update {
                tp: tp("t", 0),
                placement: follower
            }]
        );
        let same = a
            .offer(Desired {
                version: 3,
                here,
                exists: &|_, _| true,
            })
            .unwrap();
        assert!(same.is_empty(), "nothing changed: {same:?}");
    }

    #[test]
    fn a_failed_open_is_retried_by_the_next_snapshot() {
        let mut a = MetadataApplier::default();
        a.offer(desired(1, &[(tp("t", 0), 1)])).unwrap();
        a.open_failed(&tp("t", 0));
        let again = a.offer(desired(2, &[(tp("t", 0), 1)])).unwrap();
        assert_eq!(again.len(), 1);
    }

    /// A cluster history: each version's set of (partition, topic id), where topics are
    /// created, deleted and re-created with fresh ids.
    fn history() -> impl Strategy<Value = Vec<BTreeMap<TopicPartition, u8>>> {
        proptest::collection::vec((0u8..3, any::<bool>()), 1..12).prop_map(|steps| {
            let mut next_id = 1u8;
            let mut state: BTreeMap<String, u8> = BTreeMap::new();
            let mut versions = Vec::new();
            for (topic, create) in steps {
                let name = format!("t{topic}");
                if create && !state.contains_key(&name) {
                    state.insert(name, next_id);
                    next_id += 1;
                } else if !create {
                    state.remove(&name);
                }
                let here = state
                    .iter()
                    .flat_map(|(n, id)| (0..2).map(move |p| (tp(n, p), *id)))
                    .collect();
                versions.push(here);
            }
            versions
        })
    }

    proptest! {
        /// Snapshots delivered in any order, some twice: the shard never opens a partition it
        /// runs, never runs a (partition, id) the newest applied snapshot lacks, and ends
        /// exactly on the newest snapshot's partitions.
        #[test]
        fn reordered_snapshots_converge_on_the_newest(
            (versions, order) in history().prop_flat_map(|h| {
                let n = h.len();
                let order = proptest::collection::vec(0..n, n..n * 2)
                    .prop_map(move |mut picks| { picks.extend(0..n); picks })
                    .prop_shuffle();
                (Just(h), order)
            })
        ) {
            let mut applier = MetadataApplier::default();
            let mut running: BTreeSet<(TopicPartition, [u8; 16])> = BTreeSet::new();
            let mut newest_applied = None::<usize>;
            for i in order {
                let here: Vec<(TopicPartition, u8)> =
                    versions[i].iter().map(|(t, id)| (t.clone(), *id)).collect();
                let Some(steps) = applier.offer(desired(i as u64 + 1, &here)) else {
                    prop_assert!(newest_applied.is_some_and(|n| n >= i));
                    continue;
                };
                prop_assert!(newest_applied.is_none_or(|n| n < i));
                newest_applied = Some(i);
                for s in steps {
                    match s {
                        Transition::Open { tp, placement } => {
                            prop_assert!(
                                !running.iter().any(|(t, _)| *t == tp),
                                "{tp} opened while running"
                            );
                            running.insert((tp, placement.topic_id));
                        }
                        Transition::Stop { tp } | Transition::Delete { tp } => {
                            let before = running.len();
                            running.retain(|(t, _)| *t != tp);
                            prop_assert_eq!(before, running.len() + 1);
                        }
                        Transition::Update { .. } => {}
                    }
                }
                let want: BTreeSet<_> =
                    versions[i].iter().map(|(t, id)| (t.clone(), [*id; 16])).collect();
                prop_assert_eq!(&running, &want);
            }
            let last: BTreeSet<_> = versions
                .last()
                .expect("a history has versions")
                .iter()
                .map(|(t, id)| (t.clone(), [*id; 16]))
                .collect();
            prop_assert_eq!(running, last);
        }
    }
}

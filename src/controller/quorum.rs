//! The controller's metadata over the Raft quorum: the state machine that applies committed
//! `MetadataRecord`s to the `ClusterSnapshot` and publishes it, the snapshot form of the
//! record history, and the commands a non-leader forwards to the leader (with their
//! replies).
//!
//! Forwarded commands travel as JSON `{id, command}` / `{id, reply}` on the controller
//! transport (kinds 1 and 2). A reply carries the leader's applied index after the command;
//! the forwarding broker waits until it applied that far itself, so its caller reads the
//! change in its own snapshot.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use futures::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};

use super::observer::{MetadataDelta, RecentRecords};
use super::raft::{RaftHandle, StateMachine};
use super::{AdminOp, ClusterSnapshot, MetadataRecord, NewTopic, PublishSink};
use crate::base::KafkaError;

/// A controller operation a non-leader forwards to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerCommand {
    CreateTopics {
        topics: Vec<NewTopic>,
    },
    DeleteTopics {
        names: Vec<String>,
    },
    Admin {
        op: AdminOp,
    },
    AllocateProducerIds {
        count: i64,
    },
    /// A broker process starts (or re-registers after STALE_BROKER_EPOCH). `incarnation`
    /// names the process: a retried registration of the same one gets the same epoch.
    RegisterBroker {
        node_id: i32,
        host: String,
        port: i32,
        rack: Option<String>,
        shards: usize,
        incarnation: u64,
    },
    Heartbeat {
        node_id: i32,
        epoch: i64,
    },
    ControlledShutdown {
        node_id: i32,
        epoch: i64,
    },
    /// Removes a broker's registration (Kafka's UnregisterBroker).
    UnregisterBroker {
        node_id: i32,
    },
    /// An observer asks any voter for the records applied after index `since`, waiting up
    /// to `max_wait_ms` for one when there is none yet. Answered by every voter, leader or
    /// not, with [`ControllerReply::Metadata`].
    FetchMetadata {
        since: u64,
        max_wait_ms: u64,
    },
    /// A partition leader's ISR change (Kafka's AlterPartition).
    AlterPartition {
        broker_id: i32,
        broker_epoch: i64,
        topic: String,
        partition: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: Vec<i32>,
    },
}

/// The leader's answer to a forwarded command.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerReply {
    /// This voter is not the (ready) leader; `leader` is the one it knows of (-1: none).
    NotController { leader: i32 },
    /// One result per named topic, in order; `index` is the leader's applied index after.
    Results {
        results: Vec<(String, Result<(), KafkaError>)>,
        index: u64,
    },
    ProducerIds {
        result: Result<(i64, i64), KafkaError>,
        index: u64,
    },
    /// A voter's answer to `FetchMetadata`: the metadata up to its applied index
    /// `applied` (records after `since`, or all of it), and the leader it knows (-1: none).
    Metadata {
        leader: i32,
        applied: u64,
        delta: MetadataDelta,
    },
    /// A broker lifecycle command's outcome: the broker epoch (for a registration; the
    /// one named, otherwise).
    Broker {
        result: Result<i64, KafkaError>,
        index: u64,
    },
}

impl ControllerReply {
    /// The leader's applied index the forwarding broker must reach before answering.
    pub fn index(&self) -> u64 {
        match self {
            Self::NotController { .. } | Self::Metadata { .. } => 0,
            Self::Results { index, .. }
            | Self::ProducerIds { index, .. }
            | Self::Broker { index, .. } => *index,
        }
    }
}

#[derive(Serialize, Deserialize)]
pub struct CommandEnvelope {
    pub id: u64,
    pub command: ControllerCommand,
}

#[derive(Serialize, Deserialize)]
pub struct ReplyEnvelope {
    pub id: u64,
    pub reply: ControllerReply,
}

/// This voter's place in the quorum: the running node and the voters' addresses.
pub struct Quorum {
    pub id: u64,
    pub handle: RaftHandle,
    pub voters: HashMap<u64, SocketAddr>,
    pub machine: Rc<MetadataMachine>,
    pub next_request: Cell<u64>,
    pub _server: crate::runtime::Task<()>,
}

impl Quorum {
    /// True when this voter may validate and propose changes.
    pub fn leads(&self) -> bool {
        self.handle.status.is_ready_leader()
    }

    /// The leader's controller address, if there is one other than this voter.
    pub fn leader_addr(&self) -> Option<(u64, SocketAddr)> {
        let leader = self.handle.status.leader.get();
        if leader == 0 || leader == self.id {
            return None;
        }
        self.voters.get(&leader).map(|a| (leader, *a))
    }

    pub fn leader_id(&self) -> i32 {
        match self.handle.status.leader.get() {
            0 => -1,
            id => id as i32,
        }
    }
}

/// Applies committed records to the snapshot the controller and the shards read.
pub struct MetadataMachine {
    /// The snapshot before any record: this broker and the cluster id.
    pub base: ClusterSnapshot,
    pub current: Rc<RefCell<Arc<ClusterSnapshot>>>,
    /// Every applied record, compacted when a snapshot is taken.
    pub history: RefCell<Vec<MetadataRecord>>,
    pub publish: Rc<PublishSink>,
    pub dirty: Cell<bool>,
    /// The last records applied, with their indexes, for observers that follow closely.
    pub recent: RefCell<RecentRecords>,
}

impl MetadataMachine {
    /// What an observer that has everything up to `since` lacks of what is applied here:
    /// the records after it while this voter still holds them, else the whole metadata.
    pub fn delta_since(&self, since: u64) -> MetadataDelta {
        match self.recent.borrow().since(since) {
            Some(records) => MetadataDelta::Records(records),
            None => MetadataDelta::Snapshot(compact_records(&self.history.borrow())),
        }
    }

    fn update(&self, change: impl FnOnce(&mut ClusterSnapshot)) {
        let mut next = (**self.current.borrow()).clone();
        change(&mut next);
        *self.current.borrow_mut() = Arc::new(next);
        self.dirty.set(true);
    }
}

impl StateMachine for MetadataMachine {
    fn apply(&self, index: u64, data: &[u8]) {
        let record: MetadataRecord = match serde_json::from_slice(data) {
            Ok(r) => r,
            Err(e) => {
                // Every voter skips the same entry, so their snapshots stay equal.
                tracing::error!(index, error = %e, "unreadable metadata record skipped");
                return;
            }
        };
        self.update(|s| s.apply(&record));
        self.recent.borrow_mut().push(index, record.clone());
        self.history.borrow_mut().push(record);
    }

    fn snapshot_data(&self) -> Vec<u8> {
        let compacted = compact_records(&self.history.borrow());
        *self.history.borrow_mut() = compacted.clone();
        serde_json::to_vec(&compacted).unwrap_or_default()
    }

    fn restore(&self, index: u64, data: &[u8]) {
        let records: Vec<MetadataRecord> = match serde_json::from_slice(data) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(index, error = %e, "unreadable metadata snapshot ignored");
                return;
            }
        };
        let mut next = self.base.clone();
        for r in &records {
            next.apply(r);
        }
        let current = self.current.borrow().clone();
        // Shards take only a newer version than the one they hold.
        next.version = current.version.max(next.version) + 1;
        next.controller_id = current.controller_id;
        *self.current.borrow_mut() = Arc::new(next);
        *self.history.borrow_mut() = records;
        self.recent.borrow_mut().reset(index);
        self.dirty.set(true);
    }

    fn leader_changed(&self, leader: u64) {
        let id = if leader == 0 { -1 } else { leader as i32 };
        self.update(|s| {
            s.controller_id = id;
            s.version += 1;
        });
    }

    fn applied(&self) -> LocalBoxFuture<'static, ()> {
        if !self.dirty.replace(false) {
            return Box::pin(async {});
        }
        let snapshot = self.current.borrow().clone();
        (self.publish)(snapshot)
    }
}

/// The records that rebuild the same snapshot as `records`: a topic deleted later loses
/// its records (and the deletion), only the last config change of a topic and the last
/// producer-id block stay. Records of other kinds are kept as they are.
pub fn compact_records(records: &[MetadataRecord]) -> Vec<MetadataRecord> {
    let mut deleted: HashSet<&str> = HashSet::new();
    let mut configs_seen: HashSet<&str> = HashSet::new();
    let mut producer_ids_seen = false;
    let mut kept = Vec::with_capacity(records.len());
    for r in records.iter().rev() {
        let keep = if let MetadataRecord::DeleteTopic { name } = r {
            deleted.insert(name);
            false
        } else if let MetadataRecord::CreateTopic { name, .. } = r {
            let keep = !deleted.contains(name.as_str());
            // An earlier incarnation of the name is deleted by definition.
            deleted.insert(name);
            keep
        } else if let MetadataRecord::AlterTopicConfigs { name, .. } = r {
            !deleted.contains(name.as_str()) && configs_seen.insert(name)
        } else if let MetadataRecord::CreatePartitions { name, .. } = r {
            !deleted.contains(name.as_str())
        } else if let MetadataRecord::ProducerIds { .. } = r {
            !std::mem::replace(&mut producer_ids_seen, true)
        } else {
            true
        };
        if keep {
            kept.push(r.clone());
        }
    }
    kept.reverse();
    kept
}

/// The cluster id of a quorum: every voter derives the same one from the voter list, in
/// Kafka's form (16 bytes, URL-safe base64).
pub fn cluster_id(voters: &[(u64, SocketAddr)]) -> String {
    let mut sorted: Vec<String> = voters.iter().map(|(id, a)| format!("{id}@{a}")).collect();
    sorted.sort();
    let text = sorted.join(",");
    let mut bytes = Vec::with_capacity(16);
    for i in 0u8..4 {
        let crc = crc32c::crc32c_append(crc32c::crc32c(&[i]), text.as_bytes());
        bytes.extend_from_slice(&crc.to_be_bytes());
    }
    super::metadata_log::base64_url(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::BrokerInfo;
    use std::collections::BTreeMap;

    fn create(name: &str, id: u8) -> MetadataRecord {
        MetadataRecord::CreateTopic {
            name: name.into(),
            topic_id: [id; 16],
            shards: vec![0],
            replication_factor: 1,
            configs: BTreeMap::new(),
            replicas: vec![],
            replica_shards: vec![],
        }
    }

    fn rebuild(records: &[MetadataRecord]) -> ClusterSnapshot {
        let broker = BrokerInfo {
            node_id: 1,
            host: "h".into(),
            port: 1,
            rack: None,
            shards: 2,
            epoch: 0,
            fenced: false,
        };
        let mut s = ClusterSnapshot::empty(broker, "c".into());
        for r in records {
            s.apply(r);
        }
        s
    }

    #[test]
    fn compacted_records_rebuild_the_same_topics_and_producer_ids() {
        let configs: BTreeMap<String, String> = [("retention.ms".into(), "1".into())].into();
        let records = vec![
            create("a", 1),
            MetadataRecord::ProducerIds {
                next_producer_id: 1000,
            },
            create("b", 2),
            MetadataRecord::AlterTopicConfigs {
                name: "b".into(),
                configs: BTreeMap::new(),
            },
            MetadataRecord::DeleteTopic { name: "a".into() },
            create("a", 3),
            MetadataRecord::CreatePartitions {
                name: "a".into(),
                shards: vec![1],
                replicas: vec![],
                replica_shards: vec![],
            },
            MetadataRecord::AlterTopicConfigs {
                name: "b".into(),
                configs: configs.clone(),
            },
            MetadataRecord::ProducerIds {
                next_producer_id: 2000,
            },
        ];
        let compacted = compact_records(&records);
        assert_eq!(compacted.len(), 5);
        let (full, small) = (rebuild(&records), rebuild(&compacted));
        assert_eq!(full.topics, small.topics);
        assert_eq!(small.topics["a"].topic_id, [3; 16]);
        assert_eq!(small.topics["a"].partitions.len(), 2);
        assert_eq!(small.topics["b"].configs, configs);
        assert_eq!(small.next_producer_id, 2000);
    }

    #[test]
    fn a_voter_answers_observers_from_its_recent_records_or_with_everything() {
        let machine = MetadataMachine {
            base: rebuild(&[]),
            current: Rc::new(RefCell::new(Arc::new(rebuild(&[])))),
            history: RefCell::new(Vec::new()),
            publish: Rc::new(Box::new(|_| Box::pin(async {}))),
            dirty: Cell::new(false),
            recent: RefCell::new(RecentRecords::new(2)),
        };
        let records = [create("a", 1), create("b", 2), create("c", 3)];
        for (i, r) in records.iter().enumerate() {
            machine.apply(10 + i as u64, &serde_json::to_vec(r).unwrap());
        }
        assert_eq!(
            machine.delta_since(10),
            MetadataDelta::Records(records[1..].to_vec())
        );
        assert_eq!(machine.delta_since(12), MetadataDelta::Records(vec![]));
        assert_eq!(
            machine.delta_since(5),
            MetadataDelta::Snapshot(records.to_vec()),
            "index 10 fell off the recent records: everything"
        );
        // A snapshot installed at 20 replaces the state: older positions get everything.
        let snapshot = serde_json::to_vec(&records[..1]).unwrap();
        machine.restore(20, &snapshot);
        assert_eq!(
            machine.delta_since(12),
            MetadataDelta::Snapshot(records[..1].to_vec())
        );
        assert_eq!(machine.delta_since(20), MetadataDelta::Records(vec![]));
    }

    #[test]
    fn every_voter_derives_the_same_cluster_id() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let id = cluster_id(&[(1, a), (2, b)]);
        assert_eq!(id, cluster_id(&[(2, b), (1, a)]));
        assert_eq!(id.len(), 22);
        assert_ne!(id, cluster_id(&[(1, a)]));
    }
}

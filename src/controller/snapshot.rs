//! An immutable view of the cluster's metadata at one point, shared by every shard.
//!
//! Every broker applies the same committed records in the same order, so every broker's
//! snapshot lists the same brokers, partitions, leaders and ISRs. What differs per broker is
//! only `local_node` and what is derived from it when a record is applied: a partition's
//! `shard` is the shard of *this* broker holding it, and `local_replica()` says whether this
//! broker holds it at all.

use std::collections::BTreeMap;

use super::MetadataRecord;

/// Kafka's internal topics: only these are flagged internal in Metadata (a user's topic may
/// start with "__" too).
pub const INTERNAL_TOPICS: &[&str] = &["__consumer_offsets", "__transaction_state"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// How many shards (cores) the broker runs: placement puts replicas on them.
    pub shards: usize,
    /// The epoch of its current registration (the Raft index of `RegisterBroker`).
    pub epoch: i64,
    /// A fenced broker is not alive: not listed in Metadata, leads nothing, gets no new
    /// replicas.
    pub fenced: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub index: i32,
    /// The shard of **this** broker that holds this partition (meaningless, 0, when
    /// `local_replica()` is false). Resolved from `replica_shards` when a record is applied.
    pub shard: usize,
    /// The leader's node id, or −1 when no replica can lead.
    pub leader: i32,
    pub leader_epoch: i32,
    /// Bumped on every change of the partition (leader, ISR, replicas): AlterPartition must
    /// name the current one.
    pub partition_epoch: i32,
    /// The brokers holding a replica; the first one is the preferred leader.
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// `replica_shards[k]`: the shard of broker `replicas[k]` holding the replica.
    pub replica_shards: Vec<usize>,
    /// Replicas being added by a reassignment in progress (KIP-455).
    pub adding: Vec<i32>,
    /// Replicas being removed by a reassignment in progress (KIP-455).
    pub removing: Vec<i32>,
    /// Whether `local_node` is in `replicas`: derived when a record is applied; read it
    /// through `local_replica()`.
    pub hosted_here: bool,
}

impl PartitionInfo {
    /// Whether this broker holds a replica of the partition.
    pub fn local_replica(&self) -> bool {
        self.hosted_here
    }

    /// The shard of broker `node` holding this partition, if it holds a replica.
    pub fn shard_on(&self, node: i32) -> Option<usize> {
        let k = self.replicas.iter().position(|&r| r == node)?;
        self.replica_shards.get(k).copied()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub topic_id: [u8; 16],
    pub partitions: Vec<PartitionInfo>,
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
    pub internal: bool,
}

#[derive(Debug, Clone)]
pub struct ClusterSnapshot {
    /// How many metadata records this snapshot reflects: a later snapshot has a higher one,
    /// so a shard can tell an old snapshot arriving late from a new one.
    pub version: u64,
    pub cluster_id: String,
    /// The current controller (Raft leader) node id, −1 while unknown.
    pub controller_id: i32,
    /// Which broker this process is.
    pub local_node: i32,
    /// Every registered broker, fenced or not, sorted by node id.
    pub brokers: Vec<BrokerInfo>,
    pub topics: BTreeMap<String, TopicInfo>,
    /// The first producer id not yet handed out.
    pub next_producer_id: i64,
}

/// One partition's placement as a record states it.
struct Placement<'a> {
    /// The shard of a record from before the cluster (empty `replicas`: this node only).
    legacy_shard: usize,
    replicas: Option<&'a [i32]>,
    replica_shards: &'a [usize],
}

impl ClusterSnapshot {
    /// A single node: `broker` is the only broker, alive, and its own controller.
    pub fn empty(broker: BrokerInfo, cluster_id: String) -> Self {
        Self {
            version: 0,
            cluster_id,
            controller_id: broker.node_id,
            local_node: broker.node_id,
            brokers: vec![broker],
            topics: BTreeMap::new(),
            next_producer_id: 0,
        }
    }

    /// A member of a cluster before any record: no broker known (each one appears when its
    /// `RegisterBroker` applies), no controller yet.
    pub fn joining(local_node: i32, cluster_id: String) -> Self {
        Self {
            version: 0,
            cluster_id,
            controller_id: -1,
            local_node,
            brokers: Vec::new(),
            topics: BTreeMap::new(),
            next_producer_id: 0,
        }
    }

    /// This process's broker, once it is known (always, on a single node).
    pub fn this_broker(&self) -> Option<&BrokerInfo> {
        self.broker(self.local_node)
    }

    pub fn broker(&self, node_id: i32) -> Option<&BrokerInfo> {
        self.brokers.iter().find(|b| b.node_id == node_id)
    }

    /// The brokers that are alive (registered and not fenced), by node id.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerInfo> {
        self.brokers.iter().filter(|b| !b.fenced)
    }

    pub fn is_live(&self, node_id: i32) -> bool {
        self.broker(node_id).is_some_and(|b| !b.fenced)
    }

    pub fn partition(&self, topic: &str, index: i32) -> Option<&PartitionInfo> {
        let t = self.topics.get(topic)?;
        usize::try_from(index)
            .ok()
            .and_then(|i| t.partitions.get(i))
    }

    pub fn topic_by_id(&self, id: &[u8; 16]) -> Option<&TopicInfo> {
        self.topics.values().find(|t| &t.topic_id == id)
    }

    pub fn apply(&mut self, record: &MetadataRecord) {
        self.version += 1;
        match record {
            MetadataRecord::CreateTopic {
                name,
                topic_id,
                shards,
                replication_factor,
                configs,
                replicas,
                replica_shards,
            } => {
                let partitions = self.new_partitions(0, shards, replicas, replica_shards);
                self.topics.insert(
                    name.clone(),
                    TopicInfo {
                        name: name.clone(),
                        topic_id: *topic_id,
                        partitions,
                        replication_factor: *replication_factor,
                        configs: configs.clone(),
                        internal: INTERNAL_TOPICS.contains(&name.as_str()),
                    },
                );
            }
            MetadataRecord::DeleteTopic { name } => {
                self.topics.remove(name);
            }
            MetadataRecord::AlterTopicConfigs { name, configs } => {
                if let Some(t) = self.topics.get_mut(name) {
                    t.configs = configs.clone();
                }
            }
            MetadataRecord::CreatePartitions {
                name,
                shards,
                replicas,
                replica_shards,
            } => {
                let Some(first) = self.topics.get(name).map(|t| t.partitions.len()) else {
                    return;
                };
                let added = self.new_partitions(first, shards, replicas, replica_shards);
                if let Some(t) = self.topics.get_mut(name) {
                    t.partitions.extend(added);
                }
            }
            MetadataRecord::ProducerIds { next_producer_id } => {
                self.next_producer_id = self.next_producer_id.max(*next_producer_id);
            }
            MetadataRecord::RegisterBroker {
                node_id,
                epoch,
                host,
                port,
                rack,
                shards,
            } => self.register_broker(BrokerInfo {
                node_id: *node_id,
                host: host.clone(),
                port: *port,
                rack: rack.clone(),
                shards: *shards,
                epoch: *epoch,
                fenced: true,
            }),
            MetadataRecord::FenceBroker { node_id, epoch } => {
                self.set_fenced(*node_id, *epoch, true)
            }
            MetadataRecord::UnfenceBroker { node_id, epoch } => {
                self.set_fenced(*node_id, *epoch, false)
            }
            MetadataRecord::UnregisterBroker { node_id, epoch } => {
                self.brokers
                    .retain(|b| !(b.node_id == *node_id && b.epoch == *epoch));
            }
            MetadataRecord::PartitionChange {
                topic,
                partition,
                leader,
                leader_epoch,
                partition_epoch,
                isr,
                replicas,
                replica_shards,
                adding,
                removing,
            } => {
                let local = self.local_node;
                let Some(p) = self.topics.get_mut(topic).and_then(|t| {
                    usize::try_from(*partition)
                        .ok()
                        .and_then(|i| t.partitions.get_mut(i))
                }) else {
                    return;
                };
                p.leader = *leader;
                p.leader_epoch = *leader_epoch;
                p.partition_epoch = *partition_epoch;
                p.isr = isr.clone();
                p.replicas = replicas.clone();
                p.replica_shards = replica_shards.clone();
                p.adding = adding.clone();
                p.removing = removing.clone();
                p.hosted_here = p.replicas.contains(&local);
                p.shard = p.shard_on(local).unwrap_or(0);
            }
        }
    }

    /// Partitions `first..` as a CreateTopic / CreatePartitions record places them: the
    /// first replica leads, every replica is in sync, both epochs start at 0.
    fn new_partitions(
        &self,
        first: usize,
        shards: &[usize],
        replicas: &[Vec<i32>],
        replica_shards: &[Vec<usize>],
    ) -> Vec<PartitionInfo> {
        let count = if replicas.is_empty() {
            shards.len()
        } else {
            replicas.len()
        };
        (0..count)
            .map(|i| {
                let placement = Placement {
                    legacy_shard: shards.get(i).copied().unwrap_or(0),
                    replicas: replicas.get(i).map(Vec::as_slice),
                    replica_shards: replica_shards.get(i).map_or(&[][..], Vec::as_slice),
                };
                self.new_partition((first + i) as i32, placement)
            })
            .collect()
    }

    fn new_partition(&self, index: i32, placement: Placement<'_>) -> PartitionInfo {
        let (replicas, replica_shards) = match placement.replicas {
            Some(r) => (r.to_vec(), placement.replica_shards.to_vec()),
            None => (vec![self.local_node], vec![placement.legacy_shard]),
        };
        let local = self.local_node;
        let mut p = PartitionInfo {
            index,
            shard: 0,
            leader: replicas.first().copied().unwrap_or(-1),
            leader_epoch: 0,
            partition_epoch: 0,
            isr: replicas.clone(),
            replicas,
            replica_shards,
            adding: Vec::new(),
            removing: Vec::new(),
            hosted_here: false,
        };
        p.hosted_here = p.replicas.contains(&local);
        p.shard = p.shard_on(local).unwrap_or(0);
        p
    }

    /// Adds or replaces a broker's registration, keeping `brokers` sorted by node id.
    fn register_broker(&mut self, broker: BrokerInfo) {
        match self
            .brokers
            .binary_search_by_key(&broker.node_id, |b| b.node_id)
        {
            Ok(i) => self.brokers[i] = broker,
            Err(i) => self.brokers.insert(i, broker),
        }
    }

    /// Fences or unfences `node_id` if `epoch` is its current registration's; a record for
    /// an older registration changes nothing.
    fn set_fenced(&mut self, node_id: i32, epoch: i64, fenced: bool) {
        if let Some(b) = self
            .brokers
            .iter_mut()
            .find(|b| b.node_id == node_id && b.epoch == epoch)
        {
            b.fenced = fenced;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker() -> BrokerInfo {
        BrokerInfo {
            node_id: 1,
            host: "h".into(),
            port: 1,
            rack: None,
            shards: 2,
            epoch: 0,
            fenced: false,
        }
    }

    fn legacy_topic(name: &str, shards: Vec<usize>) -> MetadataRecord {
        MetadataRecord::CreateTopic {
            name: name.into(),
            topic_id: [1; 16],
            shards,
            replication_factor: 1,
            configs: Default::default(),
            replicas: vec![],
            replica_shards: vec![],
        }
    }

    fn register(node_id: i32, epoch: i64) -> MetadataRecord {
        MetadataRecord::RegisterBroker {
            node_id,
            epoch,
            host: format!("h{node_id}"),
            port: 9092,
            rack: None,
            shards: 2,
        }
    }

    /// Brokers 1..=3 alive, this process being broker `local`.
    fn three_brokers(local: i32) -> ClusterSnapshot {
        let mut s = ClusterSnapshot::joining(local, "c".into());
        for n in [3, 1, 2] {
            s.apply(&register(n, 10 + n as i64));
            s.apply(&MetadataRecord::UnfenceBroker {
                node_id: n,
                epoch: 10 + n as i64,
            });
        }
        s
    }

    fn replicated_topic() -> MetadataRecord {
        MetadataRecord::CreateTopic {
            name: "r".into(),
            topic_id: [2; 16],
            shards: vec![1, 0],
            replication_factor: 2,
            configs: Default::default(),
            replicas: vec![vec![1, 2], vec![3, 1]],
            replica_shards: vec![vec![1, 0], vec![0, 1]],
        }
    }

    #[test]
    fn legacy_records_place_partitions_on_this_node_only() {
        let mut s = ClusterSnapshot::empty(broker(), "c".into());
        s.apply(&legacy_topic("a", vec![1, 0]));
        let p = &s.topics["a"].partitions[0];
        assert_eq!(
            (p.shard, p.leader, p.leader_epoch, p.partition_epoch),
            (1, 1, 0, 0)
        );
        assert_eq!(
            (&p.replicas, &p.isr, &p.replica_shards),
            (&vec![1], &vec![1], &vec![1])
        );
        assert!(p.local_replica());
        assert_eq!(s.this_broker().map(|b| b.node_id), Some(1));
    }

    #[test]
    fn replica_shard_is_resolved_for_the_local_broker() {
        let mut on2 = three_brokers(2);
        on2.apply(&replicated_topic());
        let t = &on2.topics["r"];
        assert!(t.partitions[0].local_replica());
        assert_eq!(t.partitions[0].shard, 0, "broker 2 holds p0 on its shard 0");
        assert_eq!(t.partitions[0].leader, 1, "the first replica leads");
        assert_eq!(t.partitions[0].isr, vec![1, 2]);
        assert!(
            !t.partitions[1].local_replica(),
            "broker 2 holds no replica of p1"
        );

        let mut on1 = three_brokers(1);
        on1.apply(&replicated_topic());
        let shards: Vec<usize> = on1.topics["r"].partitions.iter().map(|p| p.shard).collect();
        assert_eq!(shards, vec![1, 1]);
        assert_eq!(on1.this_broker().map(|b| b.host.as_str()), Some("h1"));
    }

    #[test]
    fn registered_broker_is_fenced_until_unfenced_for_its_epoch() {
        let mut s = ClusterSnapshot::joining(1, "c".into());
        assert!(s.this_broker().is_none());
        assert_eq!(s.controller_id, -1);
        s.apply(&register(2, 5));
        s.apply(&register(1, 6));
        let ids: Vec<i32> = s.brokers.iter().map(|b| b.node_id).collect();
        assert_eq!(ids, vec![1, 2], "sorted by node id");
        assert!(s.brokers.iter().all(|b| b.fenced));
        s.apply(&MetadataRecord::UnfenceBroker {
            node_id: 2,
            epoch: 5,
        });
        assert!(s.is_live(2));
        assert_eq!(s.live_brokers().count(), 1);
        // broker 2 restarts: the new registration replaces the old, fenced again
        s.apply(&register(2, 9));
        assert!(!s.is_live(2));
        assert_eq!(s.broker(2).map(|b| b.epoch), Some(9));
        // records naming the old registration change nothing
        s.apply(&MetadataRecord::UnfenceBroker {
            node_id: 2,
            epoch: 5,
        });
        assert!(!s.is_live(2));
        s.apply(&MetadataRecord::UnfenceBroker {
            node_id: 2,
            epoch: 9,
        });
        s.apply(&MetadataRecord::FenceBroker {
            node_id: 2,
            epoch: 5,
        });
        assert!(s.is_live(2));
        s.apply(&MetadataRecord::FenceBroker {
            node_id: 2,
            epoch: 9,
        });
        assert!(!s.is_live(2));
    }

    #[test]
    fn unregistering_removes_only_the_named_registration() {
        let mut s = three_brokers(3);
        s.apply(&replicated_topic());
        let epoch = s.broker(3).unwrap().epoch;
        s.apply(&MetadataRecord::UnregisterBroker {
            node_id: 3,
            epoch: epoch + 1,
        });
        assert!(
            s.broker(3).is_some(),
            "another epoch's record changes nothing"
        );
        s.apply(&MetadataRecord::UnregisterBroker { node_id: 3, epoch });
        assert!(s.broker(3).is_none());
        assert!(!s.is_live(3));
        let ids: Vec<i32> = s.brokers.iter().map(|b| b.node_id).collect();
        assert_eq!(ids, vec![1, 2]);
        let p = &s.topics["r"].partitions[1];
        assert_eq!(p.replicas, vec![3, 1], "its replicas stay assigned");
    }

    #[test]
    fn partition_change_replaces_the_partitions_state() {
        let mut s = three_brokers(3);
        s.apply(&replicated_topic());
        assert!(!s.topics["r"].partitions[0].local_replica());
        s.apply(&MetadataRecord::PartitionChange {
            topic: "r".into(),
            partition: 0,
            leader: 2,
            leader_epoch: 1,
            partition_epoch: 1,
            isr: vec![2, 3],
            replicas: vec![1, 2, 3],
            replica_shards: vec![1, 0, 1],
            adding: vec![3],
            removing: vec![1],
        });
        let p = &s.topics["r"].partitions[0];
        assert!(p.local_replica(), "broker 3 was added");
        assert_eq!(p.shard, 1);
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (2, 1, 1));
        assert_eq!((&p.adding, &p.removing), (&vec![3], &vec![1]));
        // a change for a partition that does not exist is ignored
        let before = s.topics.clone();
        s.apply(&MetadataRecord::PartitionChange {
            topic: "r".into(),
            partition: 7,
            leader: 2,
            leader_epoch: 1,
            partition_epoch: 1,
            isr: vec![2],
            replicas: vec![2],
            replica_shards: vec![0],
            adding: vec![],
            removing: vec![],
        });
        assert_eq!(s.topics, before);
    }

    #[test]
    fn only_kafkas_internal_topics_are_flagged_internal() {
        let mut s = ClusterSnapshot::empty(broker(), "c".into());
        for name in ["__consumer_offsets", "__transaction_state", "__mine"] {
            s.apply(&legacy_topic(name, vec![0]));
        }
        assert!(s.topics["__consumer_offsets"].internal);
        assert!(s.topics["__transaction_state"].internal);
        assert!(!s.topics["__mine"].internal);
        assert_eq!(s.version, 3);
    }

    #[test]
    fn added_partitions_and_altered_configs_apply() {
        let mut s = ClusterSnapshot::empty(broker(), "c".into());
        s.apply(&legacy_topic("a", vec![0]));
        s.apply(&MetadataRecord::CreatePartitions {
            name: "a".into(),
            shards: vec![1, 0],
            replicas: vec![],
            replica_shards: vec![],
        });
        let t = &s.topics["a"];
        let got: Vec<(i32, usize)> = t.partitions.iter().map(|p| (p.index, p.shard)).collect();
        assert_eq!(got, vec![(0, 0), (1, 1), (2, 0)]);
        let configs: BTreeMap<String, String> =
            [("retention.ms".to_string(), "5".to_string())].into();
        s.apply(&MetadataRecord::AlterTopicConfigs {
            name: "a".into(),
            configs: configs.clone(),
        });
        assert_eq!(s.topics["a"].configs, configs);
    }
}

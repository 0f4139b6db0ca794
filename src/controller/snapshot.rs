//! An immutable view of the cluster's metadata at one point, shared by every shard.

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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub index: i32,
    /// The shard of the leader broker that owns this partition.
    pub shard: usize,
    pub leader: i32,
    pub leader_epoch: i32,
    /// Bumped on every change of the partition's state (leader, ISR, replicas).
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
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
    pub controller_id: i32,
    pub brokers: Vec<BrokerInfo>,
    pub topics: BTreeMap<String, TopicInfo>,
    /// The first producer id not yet handed out.
    pub next_producer_id: i64,
}

impl ClusterSnapshot {
    pub fn empty(broker: BrokerInfo, cluster_id: String) -> Self {
        Self {
            version: 0,
            cluster_id,
            controller_id: broker.node_id,
            brokers: vec![broker],
            topics: BTreeMap::new(),
            next_producer_id: 0,
        }
    }

    pub fn this_broker(&self) -> &BrokerInfo {
        &self.brokers[0]
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

    /// Shards for `count` new partitions: each to the shard owning the fewest so far.
    pub fn place(&self, count: i32, shards: usize) -> Vec<usize> {
        let mut load = vec![0usize; shards.max(1)];
        for t in self.topics.values() {
            for p in &t.partitions {
                let n = load.len();
                load[p.shard % n] += 1;
            }
        }
        (0..count)
            .map(|_| {
                let (i, _) = load
                    .iter()
                    .enumerate()
                    .min_by_key(|(i, n)| (**n, *i))
                    .expect("at least one shard");
                load[i] += 1;
                i
            })
            .collect()
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
            } => {
                let node = self.controller_id;
                let partitions = shards
                    .iter()
                    .enumerate()
                    .map(|(i, &shard)| PartitionInfo {
                        index: i as i32,
                        shard,
                        leader: node,
                        leader_epoch: 0,
                        partition_epoch: 0,
                        replicas: vec![node],
                        isr: vec![node],
                    })
                    .collect();
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
            MetadataRecord::CreatePartitions { name, shards } => {
                let node = self.controller_id;
                if let Some(t) = self.topics.get_mut(name) {
                    let first = t.partitions.len();
                    t.partitions
                        .extend(shards.iter().enumerate().map(|(i, &shard)| PartitionInfo {
                            index: (first + i) as i32,
                            shard,
                            leader: node,
                            leader_epoch: 0,
                            partition_epoch: 0,
                            replicas: vec![node],
                            isr: vec![node],
                        }));
                }
            }
            MetadataRecord::ProducerIds { next_producer_id } => {
                self.next_producer_id = self.next_producer_id.max(*next_producer_id);
            }
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
        }
    }

    #[test]
    fn only_kafkas_internal_topics_are_flagged_internal() {
        let mut s = ClusterSnapshot::empty(broker(), "c".into());
        for name in ["__consumer_offsets", "__transaction_state", "__mine"] {
            s.apply(&MetadataRecord::CreateTopic {
                name: name.into(),
                topic_id: [1; 16],
                shards: vec![0],
                replication_factor: 1,
                configs: Default::default(),
            });
        }
        assert!(s.topics["__consumer_offsets"].internal);
        assert!(s.topics["__transaction_state"].internal);
        assert!(!s.topics["__mine"].internal);
        assert_eq!(s.version, 3);
    }

    #[test]
    fn placement_balances_partitions_over_shards() {
        let mut s = ClusterSnapshot::empty(broker(), "c".into());
        let shards = s.place(3, 2);
        assert_eq!(shards, vec![0, 1, 0]);
        s.apply(&MetadataRecord::CreateTopic {
            name: "a".into(),
            topic_id: [1; 16],
            shards,
            replication_factor: 1,
            configs: Default::default(),
        });
        assert_eq!(s.place(1, 2), vec![1]);
    }

    #[test]
    fn added_partitions_and_altered_configs_apply() {
        let mut s = ClusterSnapshot::empty(broker(), "c".into());
        s.apply(&MetadataRecord::CreateTopic {
            name: "a".into(),
            topic_id: [1; 16],
            shards: vec![0],
            replication_factor: 1,
            configs: Default::default(),
        });
        s.apply(&MetadataRecord::CreatePartitions {
            name: "a".into(),
            shards: vec![1, 0],
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

//! The client's picture of the cluster: brokers, controller, cluster id, and for each known
//! topic its partitions with leader, replicas and ISR. Built from Metadata answers and merged
//! snapshot by snapshot (pure: no I/O here), so readers hold an `Rc` of one consistent view.

use std::collections::BTreeMap;

use kafka_protocol::messages::MetadataResponse;

/// One broker as the metadata names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

impl BrokerInfo {
    /// `host:port`, as a bootstrap list would name it.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// One partition's replicas as the metadata names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: i32,
    /// -1 when there is no leader.
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline: Vec<i32>,
    pub error: i16,
}

/// One topic as the metadata names it; `error` is non-zero for a topic the broker could not
/// describe (3 = does not exist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub topic_id: [u8; 16],
    pub internal: bool,
    pub error: i16,
    /// Sorted by partition index.
    pub partitions: Vec<PartitionInfo>,
}

impl TopicInfo {
    pub fn partition(&self, p: i32) -> Option<&PartitionInfo> {
        self.partitions
            .get(usize::try_from(p).ok()?)
            .filter(|x| x.partition == p)
    }

    /// Partitions with a leader, for the sticky partitioner.
    pub fn available(&self) -> impl Iterator<Item = i32> + '_ {
        self.partitions
            .iter()
            .filter(|p| p.leader >= 0)
            .map(|p| p.partition)
    }
}

/// A consistent snapshot of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterMetadata {
    pub cluster_id: Option<String>,
    /// -1 when unknown.
    pub controller_id: i32,
    pub brokers: BTreeMap<i32, BrokerInfo>,
    /// Topics that exist (error 0 or a transient error); missing ones are left out.
    pub topics: BTreeMap<String, TopicInfo>,
}

impl ClusterMetadata {
    /// The snapshot a Metadata answer describes, plus the topics it reports as errors.
    pub fn from_response(resp: &MetadataResponse) -> (Self, Vec<TopicInfo>) {
        let brokers = resp
            .brokers
            .iter()
            .map(|b| {
                let info = BrokerInfo {
                    id: b.node_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.as_ref().map(|r| r.to_string()),
                };
                (info.id, info)
            })
            .collect();
        let mut topics = BTreeMap::new();
        let mut failed = Vec::new();
        for t in &resp.topics {
            let info = topic_info(t);
            if info.error == 0
                || (info.error != 3 && info.error != 17 && !info.partitions.is_empty())
            {
                topics.insert(info.name.clone(), info);
            } else {
                failed.push(info);
            }
        }
        let meta = Self {
            cluster_id: resp.cluster_id.as_ref().map(|c| c.to_string()),
            controller_id: resp.controller_id.0,
            brokers,
            topics,
        };
        (meta, failed)
    }

    /// This snapshot updated by a fresher one. `all_topics` says the fresh one listed every
    /// topic (so topics it lacks are gone); otherwise only `asked` topics are replaced.
    pub fn merged(&self, fresh: Self, all_topics: bool, asked: &[String]) -> Self {
        let mut topics = if all_topics {
            BTreeMap::new()
        } else {
            let mut kept = self.topics.clone();
            for name in asked {
                kept.remove(name);
            }
            kept
        };
        topics.extend(fresh.topics);
        Self {
            cluster_id: fresh.cluster_id.or_else(|| self.cluster_id.clone()),
            controller_id: fresh.controller_id,
            brokers: fresh.brokers,
            topics,
        }
    }

    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topics.get(name)
    }

    /// The leader of a partition, if it has one and that broker is known.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        let leader = self.topic(topic)?.partition(partition)?.leader;
        (leader >= 0 && self.brokers.contains_key(&leader)).then_some(leader)
    }
}

fn topic_info(t: &kafka_protocol::messages::metadata_response::MetadataResponseTopic) -> TopicInfo {
    let mut partitions: Vec<PartitionInfo> = t
        .partitions
        .iter()
        .map(|p| PartitionInfo {
            partition: p.partition_index,
            leader: p.leader_id.0,
            leader_epoch: p.leader_epoch,
            replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
            isr: p.isr_nodes.iter().map(|b| b.0).collect(),
            offline: p.offline_replicas.iter().map(|b| b.0).collect(),
            error: p.error_code,
        })
        .collect();
    partitions.sort_by_key(|p| p.partition);
    TopicInfo {
        name: t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default(),
        topic_id: *t.topic_id.as_bytes(),
        internal: t.is_internal,
        error: t.error_code,
        partitions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::*;
    use kafka_protocol::messages::{BrokerId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn response() -> MetadataResponse {
        let mut r = MetadataResponse::default();
        let mut b = MetadataResponseBroker::default();
        b.node_id = BrokerId(1);
        b.host = StrBytes::from_static_str("h");
        b.port = 9092;
        r.brokers.push(b);
        r.controller_id = BrokerId(1);
        let mut t = MetadataResponseTopic::default();
        t.name = Some(TopicName(StrBytes::from_static_str("t")));
        for i in [1, 0] {
            let mut p = MetadataResponsePartition::default();
            p.partition_index = i;
            p.leader_id = BrokerId(if i == 0 { 1 } else { -1 });
            t.partitions.push(p);
        }
        r.topics.push(t);
        let mut missing = MetadataResponseTopic::default();
        missing.name = Some(TopicName(StrBytes::from_static_str("gone")));
        missing.error_code = 3;
        r.topics.push(missing);
        r
    }

    #[test]
    fn snapshot_sorts_partitions_and_separates_missing_topics() {
        let (m, failed) = ClusterMetadata::from_response(&response());
        let t = m.topic("t").unwrap();
        assert_eq!(
            t.partitions.iter().map(|p| p.partition).collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert_eq!(m.leader("t", 0), Some(1));
        assert_eq!(m.leader("t", 1), None);
        assert_eq!(t.available().collect::<Vec<_>>(), vec![0]);
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].name, "gone");
        assert_eq!(m.brokers[&1].address(), "h:9092");
    }

    #[test]
    fn partial_refresh_keeps_other_topics_and_drops_asked_missing_ones() {
        let (m, _) = ClusterMetadata::from_response(&response());
        let mut other = m.clone();
        other.topics.clear();
        let merged = m.merged(other.clone(), false, &[]);
        assert!(merged.topic("t").is_some());
        let merged = m.merged(other.clone(), false, &["t".to_owned()]);
        assert!(merged.topic("t").is_none());
        let merged = m.merged(other, true, &[]);
        assert!(merged.topics.is_empty());
    }
}

//! Snapshots for the controller's sans-io tests: live brokers and topics with given
//! replicas, built from records as the controller builds them.

use super::snapshot::{ClusterSnapshot, PartitionInfo};
use super::MetadataRecord;

/// Brokers `ids`, registered at epoch 1 and unfenced, each with 2 shards.
pub fn cluster(ids: &[i32]) -> ClusterSnapshot {
    let mut s = ClusterSnapshot::joining(ids[0], "c".into());
    for &node_id in ids {
        s.apply(&MetadataRecord::RegisterBroker {
            node_id,
            epoch: 1,
            host: format!("h{node_id}"),
            port: 9092,
            rack: None,
            shards: 2,
        });
        s.apply(&MetadataRecord::UnfenceBroker { node_id, epoch: 1 });
    }
    s
}

/// Adds topic `name` whose partition p has `replicas[p]` (all in sync, first leading).
pub fn with_topic(
    s: &mut ClusterSnapshot,
    name: &str,
    replicas: &[&[i32]],
    configs: &[(&str, &str)],
) {
    s.apply(&MetadataRecord::CreateTopic {
        name: name.into(),
        topic_id: [name.len() as u8; 16],
        shards: vec![0; replicas.len()],
        replication_factor: replicas.first().map_or(1, |r| r.len() as i16),
        configs: configs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        replicas: replicas.iter().map(|r| r.to_vec()).collect(),
        replica_shards: replicas.iter().map(|r| vec![0; r.len()]).collect(),
    });
}

/// Fences `node` in `s` at its current epoch.
pub fn fence(s: &mut ClusterSnapshot, node: i32) {
    let epoch = s.broker(node).map_or(0, |b| b.epoch);
    s.apply(&MetadataRecord::FenceBroker {
        node_id: node,
        epoch,
    });
}

pub fn unfence(s: &mut ClusterSnapshot, node: i32) {
    let epoch = s.broker(node).map_or(0, |b| b.epoch);
    s.apply(&MetadataRecord::UnfenceBroker {
        node_id: node,
        epoch,
    });
}

pub fn part<'a>(s: &'a ClusterSnapshot, topic: &str, p: i32) -> &'a PartitionInfo {
    s.partition(topic, p).expect("partition exists")
}

/// Applies `records` to `s`.
pub fn apply_all(s: &mut ClusterSnapshot, records: &[MetadataRecord]) {
    for r in records {
        s.apply(r);
    }
}

//! Before a partition fetches from a leader in a new leader epoch, it asks that leader with
//! OffsetForLeaderEpoch where the partition's own latest epoch ends in the leader's log, and
//! cuts its log back to there: a tail it wrote as an earlier leader, which the new leader
//! never had, goes (Kafka's KIP-101/KIP-279 truncation). The leader answers with the largest
//! epoch it knows at or below the one asked and that epoch's end, so the cut is
//! `min(answer, own log end)`; an undefined answer (the leader knows no such epoch) cuts
//! nothing.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{ApiKey, BrokerId, OffsetForLeaderEpochRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::base::{KafkaCode, TopicPartition};
use crate::client::conn::Connection;
use crate::partition::Partition;

/// The newest OffsetForLeaderEpoch version asked for.
const VERSION_MAX: i16 = 4;

/// The leader epoch each partition was last reconciled in, by partition.
pub type Reconciled = HashMap<TopicPartition, i32>;

/// Reconciles every partition of `parts` not yet reconciled in its current leader epoch;
/// a partition whose answer is an error stays unreconciled (it is asked again next round).
pub async fn reconcile(
    conn: &Connection,
    local: i32,
    parts: &[Rc<Partition>],
    done: &mut Reconciled,
) -> Result<(), String> {
    let mut asking: Vec<(Rc<Partition>, i32)> = Vec::new();
    for p in parts {
        let epoch = p.leader_epoch();
        if done.get(&p.tp) == Some(&epoch) {
            continue;
        }
        match p.epoch_entries().last() {
            Some(&(latest, _)) => asking.push((p.clone(), latest)),
            // Nothing of its own to keep or cut.
            None => {
                done.insert(p.tp.clone(), epoch);
            }
        }
    }
    if asking.is_empty() {
        return Ok(());
    }
    let version = conn
        .version(ApiKey::OffsetForLeaderEpoch)
        .map_err(|e| e.to_string())?
        .min(VERSION_MAX);
    let resp = conn
        .request_at(&request(local, &asking), version)
        .await
        .map_err(|e| e.to_string())?;
    let mut answers: HashMap<TopicPartition, (i16, i64)> = HashMap::new();
    for t in resp.topics {
        for a in t.partitions {
            let tp = TopicPartition::new(t.topic.to_string(), a.partition);
            answers.insert(tp, (a.error_code, a.end_offset));
        }
    }
    for (p, _) in asking {
        let Some(&(code, end)) = answers.get(&p.tp) else {
            continue;
        };
        if code != KafkaCode::None.code() {
            continue;
        }
        let own_end = p.log_end_offset();
        if end >= 0 && end < own_end {
            tracing::info!(tp = %p.tp, from = own_end, to = end,
                "truncating a tail the leader does not have");
            p.truncate_to(end).await.map_err(|e| e.to_string())?;
        }
        done.insert(p.tp.clone(), p.leader_epoch());
    }
    Ok(())
}

fn request(local: i32, asking: &[(Rc<Partition>, i32)]) -> OffsetForLeaderEpochRequest {
    let mut topics: BTreeMap<&str, Vec<OffsetForLeaderPartition>> = BTreeMap::new();
    for (p, latest) in asking {
        let mut q = OffsetForLeaderPartition::default();
        q.partition = p.tp.partition;
        q.current_leader_epoch = p.leader_epoch();
        q.leader_epoch = *latest;
        topics.entry(p.tp.topic.as_str()).or_default().push(q);
    }
    let mut req = OffsetForLeaderEpochRequest::default();
    req.replica_id = BrokerId(local);
    req.topics = topics
        .into_iter()
        .map(|(name, partitions)| {
            let mut t = OffsetForLeaderTopic::default();
            t.topic = TopicName(StrBytes::from_string(name.to_owned()));
            t.partitions = partitions;
            t
        })
        .collect();
    req
}

//! Handler of OffsetForLeaderEpoch (API 23): where a leader epoch ends in a partition's log.
//! Followers ask it of a new leader to find where their log diverges; consumers (KIP-320)
//! ask it to detect truncation.
//!
//! Kafka's rules: a follower (`replica_id` >= 0) and a consumer (-1) are answered by the
//! partition's leader only, NOT_LEADER_OR_FOLLOWER elsewhere; the debugging id (-2) is
//! answered by any replica. Errors are per partition, with epoch and offset -1.

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::*;

use super::handlers::Handlers;
use crate::base::{KafkaCode, KafkaError, TopicPartition};
use crate::controller::ClusterSnapshot;
use crate::shard::{EpochAnswer, EpochQuery};

/// Kafka's OffsetsForLeaderEpochRequest.DEBUGGING_REPLICA_ID: any replica may answer it.
const DEBUGGING_REPLICA_ID: i32 = -2;

impl Handlers {
    pub async fn offset_for_leader_epoch(&self, req: OffsetForLeaderEpochRequest) -> ResponseKind {
        let snap = self.router.snapshot();
        let leader_only = req.replica_id.0 != DEBUGGING_REPLICA_ID;
        let mut queries = Vec::new();
        for t in &req.topics {
            for p in &t.partitions {
                queries.push(EpochQuery {
                    tp: TopicPartition::new(t.topic.0.to_string(), p.partition),
                    current_leader_epoch: p.current_leader_epoch,
                    leader_epoch: p.leader_epoch,
                });
            }
        }
        // Only partitions this broker may answer go to their shards.
        let refusals: Vec<Option<KafkaError>> = queries
            .iter()
            .map(|q| refusal(&snap, &q.tp, leader_only))
            .collect();
        let asked: Vec<EpochQuery> = queries
            .iter()
            .zip(&refusals)
            .filter(|(_, r)| r.is_none())
            .map(|(q, _)| q.clone())
            .collect();
        let mut answers = self.router.epoch_end_offsets(asked).await.into_iter();
        let mut refusals = refusals.into_iter();
        let mut resp = OffsetForLeaderEpochResponse::default();
        for t in req.topics {
            let mut tr = OffsetForLeaderTopicResult::default();
            tr.topic = t.topic;
            for p in t.partitions {
                let answer: EpochAnswer = match refusals.next().flatten() {
                    Some(e) => Err(e),
                    None => answers
                        .next()
                        .unwrap_or(Err(KafkaCode::UnknownServerError.into())),
                };
                tr.partitions.push(epoch_end_offset(p.partition, answer));
            }
            resp.topics.push(tr);
        }
        ResponseKind::OffsetForLeaderEpoch(resp)
    }
}

/// Why this broker does not answer for `tp`: an unknown partition, or one it does not lead
/// when only the leader may answer.
fn refusal(snap: &ClusterSnapshot, tp: &TopicPartition, leader_only: bool) -> Option<KafkaError> {
    let Some(info) = snap.partition(&tp.topic, tp.partition) else {
        return Some(KafkaCode::UnknownTopicOrPartition.into());
    };
    if leader_only && info.leader != snap.local_node {
        return Some(KafkaError::new(
            KafkaCode::NotLeaderOrFollower,
            format!("this broker does not lead {tp}"),
        ));
    }
    None
}

fn epoch_end_offset(partition: i32, answer: EpochAnswer) -> EpochEndOffset {
    let mut out = EpochEndOffset::default();
    out.partition = partition;
    match answer {
        Ok((epoch, end_offset)) => {
            out.leader_epoch = epoch;
            out.end_offset = end_offset;
        }
        Err(e) => {
            out.error_code = e.code.code();
            out.leader_epoch = -1;
            out.end_offset = -1;
        }
    }
    out
}

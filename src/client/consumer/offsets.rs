//! Turning "earliest", "latest" or "first record at or after time T" into an offset with
//! ListOffsets, asked of each partition's leader.

use std::collections::BTreeMap;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{Consumer, Position, ResetTo};
use crate::base::TopicPartition;
use crate::client::error::{ClientError, KafkaApiError};

/// Kafka's ListOffsets timestamps for the log start and end.
const EARLIEST: i64 = -2;
const LATEST: i64 = -1;

impl Consumer {
    /// Resolves every partition waiting for a reset. Partitions whose leader is unknown or
    /// answers with a retriable error stay unresolved (and the metadata is marked stale).
    pub(super) async fn resolve_positions(&mut self) -> Result<(), ClientError> {
        if let Some((tp, _)) = self
            .parts
            .iter()
            .find(|(_, s)| s.position == Position::Undefined)
        {
            return Err(ClientError::Config(format!(
                "partition {tp} has no position and auto.offset.reset is none; seek it first"
            )));
        }
        let meta = self.client.metadata();
        let mut by_node: BTreeMap<i32, Vec<(TopicPartition, i64)>> = BTreeMap::new();
        for (tp, state) in &self.parts {
            let Position::Reset(to) = state.position else {
                continue;
            };
            let Some(node) = meta.leader(&tp.topic, tp.partition) else {
                self.metadata_stale = true;
                continue;
            };
            let ts = match to {
                ResetTo::Earliest => EARLIEST,
                ResetTo::Latest => LATEST,
                ResetTo::Timestamp(t) => t,
            };
            by_node.entry(node).or_default().push((tp.clone(), ts));
        }
        for (node, queries) in by_node {
            match self.list_offsets(node, &queries).await {
                Ok(answers) => self.apply_offsets(answers)?,
                Err(e) if e.is_retriable() => self.back_off(node, &e),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn apply_offsets(
        &mut self,
        answers: Vec<(TopicPartition, Result<i64, ClientError>)>,
    ) -> Result<(), ClientError> {
        for (tp, answer) in answers {
            let Some(state) = self.parts.get_mut(&tp) else {
                continue;
            };
            let Position::Reset(to) = state.position else {
                continue;
            };
            match answer {
                Ok(offset) if offset >= 0 => state.position = Position::Offset(offset),
                // No record at or after the timestamp: read from the end.
                Ok(_) if matches!(to, ResetTo::Timestamp(_)) => {
                    state.position = Position::Reset(ResetTo::Latest)
                }
                Ok(offset) => {
                    return Err(ClientError::Protocol {
                        peer: "the leader".into(),
                        reason: format!("ListOffsets answered offset {offset} for {tp}"),
                    })
                }
                Err(e) if e.is_retriable() => self.metadata_stale |= e.needs_metadata_refresh(),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn list_offsets(
        &self,
        node: i32,
        queries: &[(TopicPartition, i64)],
    ) -> Result<Vec<(TopicPartition, Result<i64, ClientError>)>, ClientError> {
        let conn = self.client.node_conn(node).await?;
        let version = conn.version(ApiKey::ListOffsets)?;
        let req = list_offsets_request(
            queries,
            self.config.isolation_level,
            version,
            self.config.client.request_timeout.as_millis() as i32,
        );
        let resp = conn.request_at(&req, version).await?;
        let mut answers = Vec::new();
        for t in resp.topics {
            let topic = t.name.0.to_string();
            for p in t.partitions {
                let context = || {
                    format!(
                        "listing offsets of topic '{topic}' partition {}",
                        p.partition_index
                    )
                };
                let answer = match p.error_code {
                    0 => Ok(p.offset),
                    code => Err(ClientError::Kafka(KafkaApiError::new(
                        code,
                        None,
                        context(),
                    ))),
                };
                answers.push((
                    TopicPartition::new(topic.clone(), p.partition_index),
                    answer,
                ));
            }
        }
        Ok(answers)
    }
}

fn list_offsets_request(
    queries: &[(TopicPartition, i64)],
    isolation: i8,
    version: i16,
    timeout_ms: i32,
) -> ListOffsetsRequest {
    let mut topics: BTreeMap<&str, Vec<ListOffsetsPartition>> = BTreeMap::new();
    for (tp, ts) in queries {
        let mut p = ListOffsetsPartition::default();
        p.partition_index = tp.partition;
        p.timestamp = *ts;
        topics.entry(tp.topic.as_str()).or_default().push(p);
    }
    let mut req = ListOffsetsRequest::default();
    req.replica_id = BrokerId(-1);
    if version >= 2 {
        req.isolation_level = isolation;
    }
    if version >= 10 {
        req.timeout_ms = timeout_ms;
    }
    req.topics = topics
        .into_iter()
        .map(|(name, partitions)| {
            let mut t = ListOffsetsTopic::default();
            t.name = TopicName(StrBytes::from_string(name.to_owned()));
            t.partitions = partitions;
            t
        })
        .collect();
    req
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Encodable;

    #[test]
    fn list_offsets_request_encodes_at_every_version() {
        let q = vec![
            (TopicPartition::new("t", 0), EARLIEST),
            (TopicPartition::new("t", 1), 12345),
        ];
        for v in 1..=10 {
            let req = list_offsets_request(&q, 1, v, 1000);
            let mut buf = bytes::BytesMut::new();
            req.encode(&mut buf, v)
                .unwrap_or_else(|e| panic!("v{v}: {e}"));
            assert_eq!(req.replica_id, BrokerId(-1));
        }
    }
}

//! Fetching: one Fetch request in flight per leader broker, covering every assigned
//! partition of that broker with a known position and nothing buffered; answers come back
//! over a channel and are turned into buffered records, position moves, offset resets or
//! metadata refreshes. Fetches run without sessions (session epoch -1), so every request is
//! complete in itself.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{Buffered, Consumer, Position, ResetTo};
use crate::base::TopicPartition;
use crate::client::cluster::{backoff, Client};
use crate::client::config::{ConsumerConfig, OffsetReset};
use crate::client::decode::{parse_records, AbortedFilter};
use crate::client::error::ClientError;
use crate::runtime;

/// The answer to one fetch, with the offsets it asked for.
pub(super) struct FetchResult {
    node: i32,
    asked: Vec<(TopicPartition, i64)>,
    outcome: Result<FetchResponse, ClientError>,
}

impl Consumer {
    /// Starts a fetch on every broker that has none in flight and has partitions to read.
    pub(super) async fn send_fetches(&mut self) {
        if self.metadata_stale {
            self.refresh_metadata().await;
        }
        let meta = self.client.metadata();
        let now = Instant::now();
        let mut by_node: BTreeMap<i32, Vec<(TopicPartition, i64)>> = BTreeMap::new();
        for (tp, state) in &self.parts {
            let Position::Offset(offset) = state.position else {
                continue;
            };
            if state.fetching || self.has_buffered(tp) {
                continue;
            }
            let Some(node) = meta.leader(&tp.topic, tp.partition) else {
                self.metadata_stale = true;
                continue;
            };
            let backing_off = self
                .node_backoff
                .get(&node)
                .is_some_and(|(until, _)| *until > now);
            if self.fetches.contains_key(&node) || backing_off {
                continue;
            }
            by_node.entry(node).or_default().push((tp.clone(), offset));
        }
        for (node, asked) in by_node {
            for (tp, _) in &asked {
                if let Some(s) = self.parts.get_mut(tp) {
                    s.fetching = true;
                }
            }
            let task = runtime::spawn(fetch_from(
                self.client.clone(),
                self.config.clone(),
                node,
                asked,
                self.results_tx.clone(),
            ));
            self.fetches.insert(node, task);
        }
    }

    /// Applies one fetch answer.
    pub(super) fn handle_result(&mut self, result: FetchResult) -> Result<(), ClientError> {
        self.fetches.remove(&result.node);
        for (tp, _) in &result.asked {
            if let Some(s) = self.parts.get_mut(tp) {
                s.fetching = false;
            }
        }
        let resp = match result.outcome.and_then(check_top_level) {
            Ok(resp) => resp,
            Err(e) if e.is_retriable() => {
                self.back_off(result.node, &e);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        self.node_backoff.remove(&result.node);
        let asked: BTreeMap<TopicPartition, i64> = result.asked.into_iter().collect();
        for topic in resp.responses {
            let name = topic.topic.0.to_string();
            for p in topic.partitions {
                let tp = TopicPartition::new(name.clone(), p.partition_index);
                let Some(&offset) = asked.get(&tp) else {
                    continue;
                };
                self.apply_partition(result.node, tp, offset, p)?;
            }
        }
        Ok(())
    }

    fn apply_partition(
        &mut self,
        node: i32,
        tp: TopicPartition,
        offset: i64,
        p: kafka_protocol::messages::fetch_response::PartitionData,
    ) -> Result<(), ClientError> {
        let reset = self.config.auto_offset_reset;
        let Some(state) = self.parts.get_mut(&tp) else {
            return Ok(());
        };
        if state.position != Position::Offset(offset) {
            return Ok(()); // sought elsewhere while this fetch was in flight
        }
        if p.high_watermark >= 0 {
            state.high_watermark = p.high_watermark;
        }
        match p.error_code {
            0 => {}
            1 => {
                state.position = match reset {
                    OffsetReset::Earliest => Position::Reset(ResetTo::Earliest),
                    OffsetReset::Latest => Position::Reset(ResetTo::Latest),
                    OffsetReset::None => {
                        return Err(ClientError::OffsetOutOfRange {
                            tp: tp.to_string(),
                            offset,
                        })
                    }
                };
                return Ok(());
            }
            code => {
                let e = ClientError::Kafka(crate::client::error::KafkaApiError::new(
                    code,
                    None,
                    format!("fetching topic '{}' partition {}", tp.topic, tp.partition),
                ));
                if e.is_retriable() {
                    self.back_off(node, &e);
                    return Ok(());
                }
                return Err(e);
            }
        }
        let Some(bytes) = p.records.filter(|r| !r.is_empty()) else {
            return Ok(());
        };
        let topic = self
            .topic_names
            .get(&tp.topic)
            .cloned()
            .unwrap_or_else(|| tp.topic.as_str().into());
        let mut aborted = AbortedFilter::new(
            p.aborted_transactions
                .unwrap_or_default()
                .iter()
                .map(|a| (a.producer_id.0, a.first_offset))
                .collect(),
        );
        let parsed = parse_records(
            &topic,
            tp.partition,
            &bytes,
            offset,
            self.config.check_crcs,
            &mut aborted,
        )
        .map_err(|reason| ClientError::CorruptRecords {
            tp: tp.to_string(),
            reason,
        })?;
        let Some(next_offset) = parsed.next_offset else {
            return Err(ClientError::CorruptRecords {
                tp: tp.to_string(),
                reason: format!(
                    "the batch at offset {offset} does not fit in max.partition.fetch.bytes ({} bytes)",
                    self.config.max_partition_fetch_bytes
                ),
            });
        };
        if parsed.records.is_empty() {
            state.position = Position::Offset(next_offset.max(offset));
        } else {
            self.buffered.push_back(Buffered {
                tp,
                records: VecDeque::from(parsed.records),
                next_offset,
            });
        }
        Ok(())
    }

    /// A retriable failure on `node`: wait before fetching from it again, with fresh metadata
    /// if the error says ours is stale.
    pub(super) fn back_off(&mut self, node: i32, e: &ClientError) {
        tracing::debug!(node, error = %e, "fetch will be retried");
        if e.needs_metadata_refresh() {
            self.metadata_stale = true;
        }
        let attempt = self.node_backoff.get(&node).map_or(0, |(_, a)| *a);
        let wait = backoff(&self.config.client, attempt, self.client.jitter());
        self.node_backoff
            .insert(node, (Instant::now() + wait, attempt + 1));
    }
}

fn check_top_level(resp: FetchResponse) -> Result<FetchResponse, ClientError> {
    ClientError::check(resp.error_code, None, || "fetch".to_owned())?;
    Ok(resp)
}

async fn fetch_from(
    client: Client,
    config: ConsumerConfig,
    node: i32,
    asked: Vec<(TopicPartition, i64)>,
    results: futures::channel::mpsc::UnboundedSender<FetchResult>,
) {
    let outcome = async {
        let conn = client.node_conn(node).await?;
        let version = conn.version(ApiKey::Fetch)?;
        let req = fetch_request(&config, &asked);
        let timeout = config.client.request_timeout + config.fetch_max_wait;
        conn.send_at(&req, version, timeout).await?.await
    }
    .await;
    let _ = results.unbounded_send(FetchResult {
        node,
        asked,
        outcome,
    });
}

fn fetch_request(config: &ConsumerConfig, asked: &[(TopicPartition, i64)]) -> FetchRequest {
    let mut topics: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
    for (tp, offset) in asked {
        let mut p = FetchPartition::default();
        p.partition = tp.partition;
        p.fetch_offset = *offset;
        p.partition_max_bytes = config.max_partition_fetch_bytes;
        topics.entry(tp.topic.as_str()).or_default().push(p);
    }
    let mut req = FetchRequest::default();
    req.max_wait_ms = config.fetch_max_wait.as_millis().min(i32::MAX as u128) as i32;
    req.min_bytes = config.fetch_min_bytes;
    req.max_bytes = config.fetch_max_bytes;
    req.isolation_level = config.isolation_level;
    req.topics = topics
        .into_iter()
        .map(|(name, partitions)| {
            let mut t = FetchTopic::default();
            t.topic = TopicName(StrBytes::from_string(name.to_owned()));
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
    fn fetch_request_groups_partitions_by_topic_and_encodes_at_every_version() {
        let asked = vec![
            (TopicPartition::new("a", 0), 5),
            (TopicPartition::new("b", 1), 7),
            (TopicPartition::new("a", 2), 9),
        ];
        let req = fetch_request(&ConsumerConfig::default(), &asked);
        assert_eq!(req.topics.len(), 2);
        assert_eq!(
            req.topics[0]
                .partitions
                .iter()
                .map(|p| p.fetch_offset)
                .collect::<Vec<_>>(),
            vec![5, 9]
        );
        assert_eq!(req.session_epoch, -1);
        for v in 4..=12 {
            let mut buf = bytes::BytesMut::new();
            req.encode(&mut buf, v)
                .unwrap_or_else(|e| panic!("v{v}: {e}"));
        }
    }
}

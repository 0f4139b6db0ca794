//! Handlers of the exactly-once APIs: InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn,
//! EndTxn, TxnOffsetCommit, and the operator APIs DescribeProducers, ListTransactions and
//! DescribeTransactions (KIP-664). They translate Kafka messages to the transaction
//! coordinator's plain requests (`crate::txn`) and back, per version.

use std::collections::BTreeMap;

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::describe_transactions_response::{
    TopicData, TransactionState as DescribedTxn,
};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedTxnState;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::write_txn_markers_request::WritableTxnMarker;
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::handlers::Handlers;
use crate::base::{Clock, KafkaCode, SystemClock, TopicPartition};
use crate::group::{self, CommittedOffset, MemberRef};
use crate::protocol::batch::ControlType;
use crate::shard::MarkerPart;
use crate::txn::{self, ProducerRef};

/// Versions before KIP-588 know INVALID_PRODUCER_EPOCH where newer ones get PRODUCER_FENCED.
fn fenced_for(code: KafkaCode, version: i16, first_fenced_version: i16) -> KafkaCode {
    if code == KafkaCode::ProducerFenced && version < first_fenced_version {
        KafkaCode::InvalidProducerEpoch
    } else {
        code
    }
}

fn code_of(r: Result<(), KafkaCode>) -> KafkaCode {
    r.err().unwrap_or(KafkaCode::None)
}

impl Handlers {
    /// WriteTxnMarkers, from a transaction coordinator on another broker: each marker is
    /// written where this broker leads the partition; an offsets partition's pending
    /// transactional offsets settle once its marker is written.
    pub async fn write_txn_markers(&self, req: WriteTxnMarkersRequest) -> ResponseKind {
        let mut resp = WriteTxnMarkersResponse::default();
        for m in req.markers {
            resp.markers.push(self.write_one_marker(m).await);
        }
        ResponseKind::WriteTxnMarkers(resp)
    }

    async fn write_one_marker(&self, m: WritableTxnMarker) -> WritableTxnMarkerResult {
        let snap = self.router.snapshot();
        let me = snap.local_node;
        let kind = if m.transaction_result {
            ControlType::Commit
        } else {
            ControlType::Abort
        };
        let mut codes: Vec<(TopicPartition, Option<KafkaCode>)> = Vec::new();
        let mut parts = Vec::new();
        for t in &m.topics {
            for &p in &t.partition_indexes {
                let tp = TopicPartition::new(t.name.to_string(), p);
                let refusal = match snap.partition(&tp.topic, p) {
                    None => Some(KafkaCode::UnknownTopicOrPartition),
                    Some(info) if info.leader != me => Some(KafkaCode::NotLeaderOrFollower),
                    Some(_) => None,
                };
                if refusal.is_none() {
                    parts.push(MarkerPart {
                        tp: tp.clone(),
                        producer_id: m.producer_id.0,
                        producer_epoch: m.producer_epoch,
                        coordinator_epoch: m.coordinator_epoch,
                        kind,
                    });
                }
                codes.push((tp, refusal));
            }
        }
        let mut written = self.router.write_markers(parts).await.into_iter();
        let mut result = WritableTxnMarkerResult::default();
        result.producer_id = m.producer_id;
        let mut by_topic: BTreeMap<String, Vec<WritableTxnMarkerPartitionResult>> = BTreeMap::new();
        for (tp, refusal) in codes {
            let code = match refusal {
                Some(code) => code,
                None => match written.next() {
                    Some(Ok(())) => {
                        if tp.topic == group::OFFSETS_TOPIC {
                            group::complete_txn(
                                &self.router,
                                tp.partition,
                                m.producer_id.0,
                                m.transaction_result,
                            )
                            .await;
                        }
                        KafkaCode::None
                    }
                    Some(Err(e)) => e.code,
                    None => KafkaCode::UnknownServerError,
                },
            };
            let mut pr = WritableTxnMarkerPartitionResult::default();
            pr.partition_index = tp.partition;
            pr.error_code = code.code();
            by_topic.entry(tp.topic).or_default().push(pr);
        }
        result.topics = by_topic
            .into_iter()
            .map(|(name, partitions)| {
                let mut t = WritableTxnMarkerTopicResult::default();
                t.name = TopicName(StrBytes::from_string(name));
                t.partitions = partitions;
                t
            })
            .collect();
        result
    }

    pub async fn init_producer_id(&self, req: InitProducerIdRequest, version: i16) -> ResponseKind {
        let expected = (version >= 3 && req.producer_id.0 >= 0).then_some(ProducerRef {
            producer_id: req.producer_id.0,
            epoch: req.producer_epoch,
        });
        let txn_id = req.transactional_id.map(|t| t.0.to_string());
        let result = txn::init_producer_id(
            &self.router,
            &self.txn,
            txn_id,
            req.transaction_timeout_ms,
            expected,
        )
        .await;
        let mut resp = InitProducerIdResponse::default();
        match result {
            Ok(p) => {
                resp.producer_id = ProducerId(p.producer_id);
                resp.producer_epoch = p.epoch;
            }
            Err(code) => {
                resp.error_code = fenced_for(code, version, 4).code();
                resp.producer_id = ProducerId(-1);
                resp.producer_epoch = -1;
            }
        }
        ResponseKind::InitProducerId(resp)
    }

    pub async fn add_partitions_to_txn(
        &self,
        req: AddPartitionsToTxnRequest,
        version: i16,
    ) -> ResponseKind {
        let snap = self.router.snapshot();
        let who = ProducerRef {
            producer_id: req.v3_and_below_producer_id.0,
            epoch: req.v3_and_below_producer_epoch,
        };
        let asked: Vec<(String, i32)> = req
            .v3_and_below_topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.name.0.to_string(), *p)))
            .collect();
        let unknown: Vec<bool> = asked
            .iter()
            .map(|(t, p)| snap.partition(t, *p).is_none())
            .collect();
        // Kafka adds nothing when any partition is unknown: those get the error, the others
        // OPERATION_NOT_ATTEMPTED.
        let overall = if unknown.iter().any(|u| *u) {
            None
        } else {
            let txn_id = req.v3_and_below_transactional_id.0.to_string();
            let r = txn::add_partitions(&self.router, txn_id, who, asked.clone()).await;
            Some(fenced_for(code_of(r), version, 2))
        };
        let mut resp = AddPartitionsToTxnResponse::default();
        let mut topics: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
        for ((topic, p), unknown) in asked.into_iter().zip(unknown) {
            let code = match overall {
                Some(code) => code,
                None if unknown => KafkaCode::UnknownTopicOrPartition,
                None => KafkaCode::OperationNotAttempted,
            };
            if topics.last().is_none_or(|t| t.name.0.as_str() != topic) {
                let mut t = AddPartitionsToTxnTopicResult::default();
                t.name = TopicName(StrBytes::from_string(topic.clone()));
                topics.push(t);
            }
            let mut pr = AddPartitionsToTxnPartitionResult::default();
            pr.partition_index = p;
            pr.partition_error_code = code.code();
            if let Some(t) = topics.last_mut() {
                t.results_by_partition.push(pr);
            }
        }
        resp.results_by_topic_v3_and_below = topics;
        ResponseKind::AddPartitionsToTxn(resp)
    }

    pub async fn add_offsets_to_txn(
        &self,
        req: AddOffsetsToTxnRequest,
        version: i16,
    ) -> ResponseKind {
        let who = ProducerRef {
            producer_id: req.producer_id.0,
            epoch: req.producer_epoch,
        };
        let r = txn::add_offsets(
            &self.router,
            &self.groups,
            req.transactional_id.0.to_string(),
            who,
            req.group_id.0.as_str(),
        )
        .await;
        let mut resp = AddOffsetsToTxnResponse::default();
        resp.error_code = fenced_for(code_of(r), version, 2).code();
        ResponseKind::AddOffsetsToTxn(resp)
    }

    pub async fn end_txn(&self, req: EndTxnRequest, version: i16) -> ResponseKind {
        let who = ProducerRef {
            producer_id: req.producer_id.0,
            epoch: req.producer_epoch,
        };
        let r = txn::end_txn(
            &self.router,
            req.transactional_id.0.to_string(),
            who,
            req.committed,
        )
        .await;
        let mut resp = EndTxnResponse::default();
        resp.error_code = fenced_for(code_of(r), version, 2).code();
        ResponseKind::EndTxn(resp)
    }

    pub async fn txn_offset_commit(
        &self,
        req: TxnOffsetCommitRequest,
        version: i16,
    ) -> ResponseKind {
        let now = SystemClock.now_ms();
        let snap = self.router.snapshot();
        let who = MemberRef {
            generation: if version >= 3 { req.generation_id } else { -1 },
            member_id: req.member_id.to_string(),
            instance_id: req.group_instance_id.map(|i| i.to_string()),
        };
        let mut layout = Vec::new();
        let mut offsets = Vec::new();
        for t in &req.topics {
            let topic = t.name.0.to_string();
            for p in &t.partitions {
                let known = snap.partition(&topic, p.partition_index).is_some();
                layout.push((topic.clone(), p.partition_index, known));
                if known {
                    offsets.push((
                        (topic.clone(), p.partition_index),
                        CommittedOffset {
                            offset: p.committed_offset,
                            leader_epoch: p.committed_leader_epoch,
                            metadata: p
                                .committed_metadata
                                .as_ref()
                                .map(|m| m.to_string())
                                .unwrap_or_default(),
                            commit_timestamp: now,
                        },
                    ));
                }
            }
        }
        let producer = (req.producer_id.0, req.producer_epoch);
        let mut codes = group::txn_commit(
            &self.router,
            req.group_id.0.to_string(),
            who,
            producer,
            offsets,
        )
        .await
        .into_iter();
        let mut resp = TxnOffsetCommitResponse::default();
        for (topic, p, known) in layout {
            let code = if known {
                codes.next().unwrap_or(KafkaCode::UnknownServerError)
            } else {
                KafkaCode::UnknownTopicOrPartition
            };
            if resp
                .topics
                .last()
                .is_none_or(|t| t.name.0.as_str() != topic)
            {
                let mut t = TxnOffsetCommitResponseTopic::default();
                t.name = TopicName(StrBytes::from_string(topic.clone()));
                resp.topics.push(t);
            }
            let mut pr = TxnOffsetCommitResponsePartition::default();
            pr.partition_index = p;
            pr.error_code = fenced_for(code, version, 3).code();
            if let Some(t) = resp.topics.last_mut() {
                t.partitions.push(pr);
            }
        }
        ResponseKind::TxnOffsetCommit(resp)
    }

    pub async fn describe_producers(&self, req: DescribeProducersRequest) -> ResponseKind {
        let tps: Vec<TopicPartition> = req
            .topics
            .iter()
            .flat_map(|t| {
                t.partition_indexes
                    .iter()
                    .map(move |p| TopicPartition::new(t.name.0.to_string(), *p))
            })
            .collect();
        let mut answers = self.router.describe_producers(tps).await.into_iter();
        let mut resp = DescribeProducersResponse::default();
        for t in req.topics {
            let mut tr = TopicResponse::default();
            tr.name = t.name.clone();
            for p in t.partition_indexes {
                let mut pr = PartitionResponse::default();
                pr.partition_index = p;
                match answers.next() {
                    Some(Ok(producers)) => {
                        pr.active_producers = producers
                            .into_iter()
                            .map(|v| {
                                let mut s = ProducerState::default();
                                s.producer_id = ProducerId(v.producer_id);
                                s.producer_epoch = i32::from(v.epoch);
                                s.last_sequence = v.last_sequence;
                                s.last_timestamp = v.last_timestamp;
                                s.coordinator_epoch = v.coordinator_epoch;
                                s.current_txn_start_offset = v.txn_start_offset;
                                s
                            })
                            .collect();
                    }
                    Some(Err(e)) => pr.error_code = e.code.code(),
                    None => pr.error_code = KafkaCode::UnknownServerError.code(),
                }
                tr.partitions.push(pr);
            }
            resp.topics.push(tr);
        }
        ResponseKind::DescribeProducers(resp)
    }

    pub async fn list_transactions(&self, req: ListTransactionsRequest) -> ResponseKind {
        const KNOWN: &[&str] = &[
            "Empty",
            "Ongoing",
            "PrepareCommit",
            "PrepareAbort",
            "CompleteCommit",
            "CompleteAbort",
            "PrepareEpochFence",
        ];
        let mut resp = ListTransactionsResponse::default();
        let states: Vec<String> = req.state_filters.iter().map(|s| s.to_string()).collect();
        resp.unknown_state_filters = req
            .state_filters
            .iter()
            .filter(|s| !KNOWN.contains(&s.as_str()))
            .cloned()
            .collect();
        let producers: Vec<i64> = req.producer_id_filters.iter().map(|p| p.0).collect();
        let listed = txn::list(&self.router, states, producers, req.duration_filter).await;
        resp.transaction_states = listed
            .into_iter()
            .map(|t| {
                let mut s = ListedTxnState::default();
                s.transactional_id = TransactionalId(StrBytes::from_string(t.txn_id));
                s.producer_id = ProducerId(t.producer_id);
                s.transaction_state = StrBytes::from_static_str(t.status.name());
                s
            })
            .collect();
        ResponseKind::ListTransactions(resp)
    }

    pub async fn describe_transactions(&self, req: DescribeTransactionsRequest) -> ResponseKind {
        let mut resp = DescribeTransactionsResponse::default();
        for id in req.transactional_ids {
            let mut d = DescribedTxn::default();
            d.transactional_id = id.clone();
            match txn::describe(&self.router, id.0.to_string()).await {
                Ok(m) => {
                    d.transaction_state = StrBytes::from_static_str(m.status.name());
                    d.transaction_timeout_ms = m.timeout_ms;
                    d.transaction_start_time_ms = m.start_ms;
                    d.producer_id = ProducerId(m.producer_id);
                    d.producer_epoch = m.epoch;
                    let mut topics: Vec<TopicData> = Vec::new();
                    for (t, p) in m.partitions {
                        if topics.last().is_none_or(|x| x.topic.0.as_str() != t) {
                            let mut td = TopicData::default();
                            td.topic = TopicName(StrBytes::from_string(t.clone()));
                            topics.push(td);
                        }
                        if let Some(td) = topics.last_mut() {
                            td.partitions.push(p);
                        }
                    }
                    d.topics = topics;
                }
                Err(code) => {
                    d.error_code = code.code();
                    d.transaction_state = StrBytes::from_static_str("");
                    d.producer_id = ProducerId(-1);
                    d.producer_epoch = -1;
                }
            }
            resp.transaction_states.push(d);
        }
        ResponseKind::DescribeTransactions(resp)
    }
}

//! The producer's sender task and response handling. The sender loop drains ready batches
//! from the accumulator and queues each broker's produce request on its connection itself, so
//! requests enter a connection in drain order; answers are awaited by detached tasks, which
//! report deliveries, requeue retriable failures, and wake the sender.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Instant;

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::accumulator::SealedBatch;
use super::{ProducerShared, RecordMetadata};
use crate::client::conn::ResponseFuture;
use crate::client::error::ClientError;
use crate::client::retry::Decision;
use crate::runtime;

/// Runs until the producer closes and has nothing left.
pub(super) async fn run(shared: Rc<ProducerShared>) {
    let mut next_refresh = Instant::now();
    loop {
        let woken = shared.wake.notified();
        if shared.refresh_due.get() && Instant::now() >= next_refresh {
            shared.refresh_due.set(false);
            refresh_metadata(&shared).await;
            next_refresh = Instant::now() + shared.config.client.retry_backoff;
        }
        let next_wake = send_ready(&shared).await;
        if shared.closing.get() && shared.acc.borrow().is_idle() {
            return;
        }
        match next_wake {
            Some(at) => {
                let _ = runtime::timeout(at.saturating_duration_since(Instant::now()), woken).await;
            }
            None => woken.await,
        }
    }
}

/// Drains and sends until nothing more is sendable; returns when to look again by time.
async fn send_ready(shared: &Rc<ProducerShared>) -> Option<Instant> {
    loop {
        let meta = shared.client.metadata();
        let drained = shared
            .acc
            .borrow_mut()
            .drain(Instant::now(), |tp| meta.leader(&tp.topic, tp.partition));
        if drained.missing_leader {
            shared.refresh_due.set(true);
        }
        for batch in drained.expired {
            shared.acc.borrow_mut().release(&batch);
            let ms = shared.config.delivery_timeout.as_millis();
            fail(
                shared,
                batch,
                ClientError::TimedOut(format!(
                    "record not delivered within delivery.timeout.ms ({ms} ms)"
                )),
            );
            shared.progress.notify_all();
        }
        if drained.requests.is_empty() {
            return drained.next_wake;
        }
        for (node, batches) in drained.requests {
            send_request(shared, node, batches).await;
        }
    }
}

async fn refresh_metadata(shared: &ProducerShared) {
    let topics: Vec<String> = {
        let meta = shared.client.metadata();
        meta.topics.keys().cloned().collect()
    };
    if let Err(e) = shared.client.refresh_once(Some(&topics)).await {
        tracing::debug!(error = %e, "producer metadata refresh failed");
        shared.refresh_due.set(true);
    }
}

/// Queues one produce request on `node`'s connection and detaches the wait for its answer.
async fn send_request(shared: &Rc<ProducerShared>, node: i32, batches: Vec<SealedBatch>) {
    let conn = match shared.client.node_conn(node).await {
        Ok(c) => c,
        Err(e) => return request_failed(shared, node, batches, e),
    };
    let version = match conn.version(ApiKey::Produce) {
        Ok(v) => v,
        Err(e) => return request_failed(shared, node, batches, e),
    };
    let acks = shared.config.acks.wire();
    let req = produce_request(
        &batches,
        acks,
        shared.config.client.request_timeout.as_millis() as i32,
    );
    if acks == 0 {
        match conn.send_no_reply(&req, version) {
            Ok(written) => runtime::detach(finish_unacknowledged(
                shared.clone(),
                node,
                batches,
                written,
            )),
            Err(e) => request_failed(shared, node, batches, e),
        }
        return;
    }
    match conn
        .send_at(&req, version, shared.config.client.request_timeout)
        .await
    {
        Ok(answer) => runtime::detach(handle_answer(shared.clone(), node, batches, answer)),
        Err(e) => request_failed(shared, node, batches, e),
    }
}

fn produce_request(batches: &[SealedBatch], acks: i16, timeout_ms: i32) -> ProduceRequest {
    let mut by_topic: BTreeMap<&str, Vec<PartitionProduceData>> = BTreeMap::new();
    for b in batches {
        let mut p = PartitionProduceData::default();
        p.index = b.tp.partition;
        p.records = Some(b.bytes.clone());
        by_topic.entry(b.tp.topic.as_str()).or_default().push(p);
    }
    let mut req = ProduceRequest::default();
    req.acks = acks;
    req.timeout_ms = timeout_ms;
    req.topic_data = by_topic
        .into_iter()
        .map(|(topic, partitions)| {
            let mut t = TopicProduceData::default();
            t.name = TopicName(StrBytes::from_string(topic.to_owned()));
            t.partition_data = partitions;
            t
        })
        .collect();
    req
}

async fn finish_unacknowledged(
    shared: Rc<ProducerShared>,
    node: i32,
    batches: Vec<SealedBatch>,
    written: futures::channel::oneshot::Receiver<()>,
) {
    let outcome = written.await.map_err(|_| ClientError::Disconnected {
        peer: format!("broker {node}"),
        reason: "the connection closed before the request was written".into(),
    });
    let results = batches.into_iter().map(|b| {
        let r = outcome.clone().map(|()| (-1, -1));
        (b, r)
    });
    settle(&shared, node, results.collect());
}

async fn handle_answer(
    shared: Rc<ProducerShared>,
    node: i32,
    batches: Vec<SealedBatch>,
    answer: ResponseFuture<ProduceResponse>,
) {
    match answer.await {
        Ok(resp) => {
            let mut outcomes = partition_outcomes(resp);
            let results = batches
                .into_iter()
                .map(|b| {
                    let key = (b.tp.topic.clone(), b.tp.partition);
                    let r = outcomes.remove(&key).unwrap_or_else(|| {
                        Err(ClientError::Protocol {
                            peer: format!("broker {node}"),
                            reason: format!("no produce answer for {}", b.tp),
                        })
                    });
                    (b, r)
                })
                .collect();
            settle(&shared, node, results);
        }
        Err(e) => request_failed(&shared, node, batches, e),
    }
}

type Outcome = Result<(i64, i64), ClientError>;

/// (topic, partition) → (base offset, log append time) or the partition's error.
fn partition_outcomes(resp: ProduceResponse) -> HashMap<(String, i32), Outcome> {
    let mut out = HashMap::new();
    for t in resp.responses {
        let topic = t.name.0.to_string();
        for p in t.partition_responses {
            let message = p.error_message.map(|m| m.to_string());
            let context = || format!("topic '{topic}' partition {}", p.index);
            let r = ClientError::check(p.error_code, message, context)
                .map(|()| (p.base_offset, p.log_append_time_ms));
            out.insert((topic.clone(), p.index), r);
        }
    }
    out
}

fn request_failed(
    shared: &Rc<ProducerShared>,
    node: i32,
    batches: Vec<SealedBatch>,
    e: ClientError,
) {
    let results = batches.into_iter().map(|b| (b, Err(e.clone()))).collect();
    settle(shared, node, results);
}

/// Reports, requeues or fails each batch of a finished request and wakes whoever waits.
fn settle(shared: &Rc<ProducerShared>, node: i32, results: Vec<(SealedBatch, Outcome)>) {
    shared.acc.borrow_mut().finish_request(node);
    for (mut batch, outcome) in results {
        match outcome {
            Ok((base_offset, append_time)) => {
                shared.acc.borrow_mut().finish_batch(&batch);
                deliver(batch, base_offset, append_time);
            }
            Err(e) => {
                let policy = shared.config.retry_policy();
                let jitter = shared.client.jitter();
                match policy.decide(&e, batch.attempts, batch.created.elapsed(), jitter) {
                    Decision::Retry(wait) => {
                        tracing::debug!(error = %e, tp = %batch.tp, "produce will be retried");
                        if e.needs_metadata_refresh() {
                            shared.refresh_due.set(true);
                        }
                        batch.attempts += 1;
                        shared
                            .acc
                            .borrow_mut()
                            .requeue(batch, Instant::now() + wait);
                    }
                    Decision::GiveUp => {
                        shared.acc.borrow_mut().finish_batch(&batch);
                        fail(shared, batch, e);
                    }
                }
            }
        }
    }
    shared.progress.notify_all();
    shared.wake.notify_all();
}

fn deliver(batch: SealedBatch, base_offset: i64, append_time: i64) {
    let topic: Rc<str> = Rc::from(batch.tp.topic.as_str());
    for (i, r) in batch.records.into_iter().enumerate() {
        let meta = RecordMetadata {
            topic: topic.clone(),
            partition: batch.tp.partition,
            offset: if base_offset < 0 {
                -1
            } else {
                base_offset + i as i64
            },
            timestamp: if append_time >= 0 {
                append_time
            } else {
                r.timestamp
            },
        };
        let _ = r.reply.send(Ok(meta));
    }
}

fn fail(shared: &ProducerShared, batch: SealedBatch, e: ClientError) {
    shared.acc.borrow_mut().note_failed(batch.records.len());
    for r in batch.records {
        let _ = r.reply.send(Err(e.clone()));
    }
}

//! The producer: `send` places a record in its partition's batch (murmur2 of the key like
//! the Java client, a sticky partition for null keys, or the partition asked for) and returns
//! a future of its delivery report; a sender task sends batches as they fill or linger out,
//! pipelined up to `max.in.flight` requests per broker, and retries retriable failures in
//! order (see [`accumulator`]). `flush` waits for every record sent so far; `close` flushes
//! and stops the sender. With `transactional.id` set, records go out in transactions
//! (`begin_transaction` .. `commit_transaction` / `abort_transaction`, see [`txn`]).

mod accumulator;
mod sender;
mod txn;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures::channel::oneshot;

use kafka_protocol::messages::{InitProducerIdRequest, ProducerId};

use self::accumulator::{Accumulator, Limits, ProducerIdentity};
use self::txn::{Phase, Transactions};
use super::batch::{BatchBuilder, RecordHeader};
use super::cluster::Client;
use super::config::ProducerConfig;
use super::error::{ClientError, KafkaApiError};
use super::metadata::TopicInfo;
use super::murmur2::partition_for_key;
use super::notify::Notify;
use crate::base::{Clock, SystemClock, TopicPartition};
use crate::protocol::batch::HEADER_LEN;
use crate::runtime::{self, Task};

/// Requests an idempotent producer may have in flight per broker (Kafka's limit: the broker
/// keeps the last five batches of each producer).
const MAX_IDEMPOTENT_IN_FLIGHT: usize = 5;

/// A record to send.
#[derive(Debug, Clone, Default)]
pub struct ProducerRecord {
    pub topic: String,
    /// `None`: chosen by the partitioner.
    pub partition: Option<i32>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<RecordHeader>,
    /// Milliseconds since the epoch; `None`: now.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    pub fn new(topic: impl Into<String>, value: Option<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            value,
            ..Self::default()
        }
    }

    pub fn key(mut self, key: Option<Bytes>) -> Self {
        self.key = key;
        self
    }

    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    pub fn header(mut self, key: impl Into<String>, value: Option<Bytes>) -> Self {
        self.headers.push((key.into(), value));
        self
    }

    pub fn timestamp(mut self, ms: i64) -> Self {
        self.timestamp = Some(ms);
        self
    }
}

/// Where a record was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Shared by the records of one batch.
    pub topic: Rc<str>,
    pub partition: i32,
    /// -1 with acks=0 (the broker does not say).
    pub offset: i64,
    pub timestamp: i64,
}

/// Resolves to a record's delivery report.
pub struct DeliveryFuture(oneshot::Receiver<Result<RecordMetadata, ClientError>>);

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ClientError::Closed("producer"))))
    }
}

/// State the producer shares with its sender task and response handlers.
pub(crate) struct ProducerShared {
    pub client: Client,
    pub config: ProducerConfig,
    pub acc: RefCell<Accumulator>,
    /// New work for the sender.
    pub wake: Notify,
    /// Batches answered or failed (flush and buffer waiters).
    pub progress: Notify,
    pub closing: Cell<bool>,
    pub refresh_due: Cell<bool>,
}

/// A Kafka producer on the current shard.
pub struct Producer {
    shared: Rc<ProducerShared>,
    sender: Option<Task<()>>,
    /// Set for a transactional producer.
    txn: Option<Transactions>,
}

impl Producer {
    pub fn new(client: Client, mut config: ProducerConfig) -> Self {
        let txn = config
            .transactional_id
            .clone()
            .map(|id| Transactions::new(id, config.transaction_timeout));
        // A transactional producer is an idempotent one, as in Kafka.
        config.idempotence |= txn.is_some();
        if config.idempotence {
            // What Kafka's producer requires of idempotence: every write acknowledged by the
            // in-sync replicas, and no more in flight than the broker remembers per producer.
            config.acks = super::config::Acks::All;
            config.max_in_flight = config.max_in_flight.min(MAX_IDEMPOTENT_IN_FLIGHT);
        }
        let limits = Limits {
            batch_size: config.batch_size,
            linger: config.linger,
            compression: config.compression,
            delivery_timeout: config.delivery_timeout,
            max_in_flight: config.max_in_flight,
            max_request_size: config.max_request_size,
            retry_backoff: config.client.retry_backoff,
        };
        let shared = Rc::new(ProducerShared {
            client,
            config,
            acc: RefCell::new(Accumulator::new(limits)),
            wake: Notify::default(),
            progress: Notify::default(),
            closing: Cell::new(false),
            refresh_due: Cell::new(false),
        });
        let sender = runtime::spawn(sender::run(shared.clone()));
        Self {
            shared,
            sender: Some(sender),
            txn,
        }
    }

    pub fn config(&self) -> &ProducerConfig {
        &self.shared.config
    }

    /// For an idempotent producer, gets a producer id from the cluster (InitProducerId); every
    /// batch sealed afterwards carries it. Must complete before the first `send`. Does
    /// nothing for a producer without idempotence.
    pub async fn init(&self) -> Result<(), ClientError> {
        if let Some(txn) = &self.txn {
            txn.expect(Phase::Uninitialized, "init")?;
            let identity = txn::init_producer_id(&self.shared.client, txn).await?;
            self.shared.acc.borrow_mut().set_producer(identity);
            txn.phase.set(Phase::Ready);
            return Ok(());
        }
        if !self.shared.config.idempotence || self.shared.acc.borrow().producer().is_some() {
            return Ok(());
        }
        let client = &self.shared.client;
        let resp = client
            .retry(|| async {
                let conn = client.any_conn().await?;
                let mut req = InitProducerIdRequest::default();
                req.transactional_id = None;
                req.transaction_timeout_ms = i32::MAX;
                req.producer_id = ProducerId(-1);
                req.producer_epoch = -1;
                let resp = conn.request(&req).await?;
                match resp.error_code {
                    0 => Ok(resp),
                    code => Err(ClientError::Kafka(KafkaApiError::new(
                        code,
                        None,
                        "InitProducerId",
                    ))),
                }
            })
            .await?;
        self.shared.acc.borrow_mut().set_producer(ProducerIdentity {
            producer_id: resp.producer_id.0,
            epoch: resp.producer_epoch,
            transactional: false,
        });
        Ok(())
    }

    /// Queues a record; the returned future resolves to its delivery report. Fails at once
    /// for an unknown topic or partition or an oversized record; waits (up to `max.block.ms`)
    /// for metadata and for buffer space.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture, ClientError> {
        if self.shared.closing.get() {
            return Err(ClientError::Closed("producer"));
        }
        if self.shared.config.idempotence && self.shared.acc.borrow().producer().is_none() {
            return Err(ClientError::Config(
                "an idempotent producer needs Producer::init before its first send".into(),
            ));
        }
        let size = HEADER_LEN
            + BatchBuilder::record_size(
                record.key.as_deref(),
                record.value.as_deref(),
                &record.headers,
            );
        let max = self.shared.config.max_request_size;
        if size > max {
            return Err(ClientError::RecordTooLarge { size, max });
        }
        if let Some(txn) = &self.txn {
            txn.expect(Phase::Open, "send")?;
        }
        let partition = self.choose_partition(&record).await?;
        let tp = TopicPartition::new(record.topic, partition);
        self.add_to_transaction(&tp).await?;
        self.wait_for_buffer(size).await?;
        let (reply, rx) = oneshot::channel();
        let timestamp = record.timestamp.unwrap_or_else(|| SystemClock.now_ms());
        let wake = self.shared.acc.borrow_mut().append(
            tp,
            timestamp,
            record.key.as_deref(),
            record.value.as_deref(),
            &record.headers,
            reply,
            Instant::now(),
        );
        if wake {
            self.shared.wake.notify_all();
        }
        Ok(DeliveryFuture(rx))
    }

    /// Opens a transaction: records sent until `commit_transaction` or `abort_transaction`
    /// become visible to read_committed consumers together, or not at all.
    pub fn begin_transaction(&self) -> Result<(), ClientError> {
        let txn = self.transactional("begin a transaction")?;
        txn.expect(Phase::Ready, "begin a transaction")?;
        txn.begin(self.shared.acc.borrow().failed_records());
        Ok(())
    }

    /// Delivers every record of the open transaction, then commits it (EndTxn). If any of its
    /// records failed, nothing is committed: the error says so and the transaction stays open
    /// for `abort_transaction`.
    pub async fn commit_transaction(&self) -> Result<(), ClientError> {
        let txn = self.transactional("commit a transaction")?;
        txn.expect(Phase::Open, "commit a transaction")?;
        self.flush().await;
        if txn.lost_records(self.shared.acc.borrow().failed_records()) {
            return Err(ClientError::Config(format!(
                "transaction '{}' lost records before commit: abort it",
                txn.id
            )));
        }
        self.end_transaction(txn, true).await
    }

    /// Waits for the open transaction's records in flight, then aborts it (EndTxn): its
    /// records stay in the log, skipped by read_committed consumers.
    pub async fn abort_transaction(&self) -> Result<(), ClientError> {
        let txn = self.transactional("abort a transaction")?;
        txn.expect(Phase::Open, "abort a transaction")?;
        self.flush().await;
        self.end_transaction(txn, false).await
    }

    fn transactional(&self, what: &str) -> Result<&Transactions, ClientError> {
        self.txn.as_ref().ok_or_else(|| {
            ClientError::Config(format!("cannot {what}: transactional.id is not set"))
        })
    }

    async fn end_transaction(&self, txn: &Transactions, commit: bool) -> Result<(), ClientError> {
        let Some(id) = self.shared.acc.borrow().producer() else {
            return Err(ClientError::Config(
                "the producer has no producer id".into(),
            ));
        };
        // Like the Java client: a transaction that never added a partition has nothing for
        // the coordinator to end.
        if txn.has_partitions() {
            if let Err(e) = txn::end(&self.shared.client, txn, id, commit).await {
                txn.note_error(&e);
                return Err(e);
            }
        }
        txn.phase.set(Phase::Ready);
        Ok(())
    }

    /// Adds `tp` to the open transaction before its first record goes there.
    async fn add_to_transaction(&self, tp: &TopicPartition) -> Result<(), ClientError> {
        let Some(txn) = &self.txn else {
            return Ok(());
        };
        if txn.is_added(tp) {
            return Ok(());
        }
        let Some(id) = self.shared.acc.borrow().producer() else {
            return Err(ClientError::Config(
                "the producer has no producer id".into(),
            ));
        };
        if let Err(e) = txn::add_partition(&self.shared.client, txn, id, tp).await {
            txn.note_error(&e);
            return Err(e);
        }
        txn.mark_added(tp.clone());
        Ok(())
    }

    /// Sends everything queued now and waits until every record sent so far has its report.
    pub async fn flush(&self) {
        self.shared.acc.borrow_mut().set_flushing(true);
        self.shared.wake.notify_all();
        loop {
            let progressed = self.shared.progress.notified();
            if self.shared.acc.borrow().is_idle() {
                break;
            }
            progressed.await;
        }
        self.shared.acc.borrow_mut().set_flushing(false);
    }

    /// Flushes, then stops the sender. Later sends fail.
    pub async fn close(mut self) {
        self.flush().await;
        self.shared.closing.set(true);
        self.shared.wake.notify_all();
        if let Some(sender) = self.sender.take() {
            sender.await;
        }
    }

    async fn choose_partition(&self, record: &ProducerRecord) -> Result<i32, ClientError> {
        let meta = self.shared.client.metadata();
        if let Some(info) = meta.topic(&record.topic) {
            return self.partition_in(info, record);
        }
        let client = &self.shared.client;
        let topic = &record.topic;
        let info = runtime::timeout(
            self.shared.config.max_block,
            client.retry(|| client.topic(topic)),
        )
        .await
        .ok_or_else(|| {
            ClientError::TimedOut(format!(
                "no metadata for topic '{topic}' within max.block.ms"
            ))
        })??;
        self.partition_in(&info, record)
    }

    /// The partition asked for (checked), the key's murmur2 partition, or the sticky one.
    fn partition_in(&self, info: &TopicInfo, record: &ProducerRecord) -> Result<i32, ClientError> {
        let count = info.partitions.len();
        if count == 0 {
            return Err(ClientError::UnknownTopic(record.topic.clone()));
        }
        if let Some(p) = record.partition {
            if p < 0 || p as usize >= count {
                return Err(ClientError::UnknownPartition {
                    topic: record.topic.clone(),
                    partition: p,
                    count,
                });
            }
            return Ok(p);
        }
        if let Some(key) = &record.key {
            return Ok(partition_for_key(key, count as i32));
        }
        let client = &self.shared.client;
        let pick = || {
            let available: Vec<i32> = info.available().collect();
            if available.is_empty() {
                client.random_below(count as u32) as i32
            } else {
                available[client.random_below(available.len() as u32) as usize]
            }
        };
        Ok(self
            .shared
            .acc
            .borrow_mut()
            .sticky_partition(&record.topic, pick))
    }

    async fn wait_for_buffer(&self, size: usize) -> Result<(), ClientError> {
        let limit = self.shared.config.buffer_memory;
        let deadline = Instant::now() + self.shared.config.max_block;
        loop {
            let progressed = self.shared.progress.notified();
            let buffered = self.shared.acc.borrow().buffered();
            if buffered == 0 || buffered + size <= limit {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if runtime::timeout(left, progressed).await.is_none() {
                return Err(ClientError::TimedOut(format!(
                    "buffer.memory ({limit} bytes) stayed full for max.block.ms"
                )));
            }
        }
    }
}

//! One benchmark producer: a Kafka producer on this thread's executor that sends records on
//! the workload's schedule (or as fast as the producer takes them) and records, for each
//! delivery report, the latency from the record's intended send time to its ack.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{select, Either};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};

use super::pacing::{per_producer_rate, Pacer};
use super::payload::{Keys, PayloadSource};
use super::plan::{Plan, ThreadStats};
use crate::client::{
    Acks, Client, ClientError, Compression, DeliveryFuture, Producer, ProducerConfig,
    ProducerRecord, RecordMetadata,
};
use crate::runtime;

/// In max-rate mode, records sent between voluntary yields, so the producer's sender task
/// and the consumers on this thread get to run.
const SENDS_PER_YIELD: u64 = 256;
/// The shortest a fixed-rate producer sleeps. Sleeping until each record's due time (20 µs
/// apart at 50,000 records/s) parks and wakes the thread per record, and the kernel's
/// timer and wake-up work then costs more CPU than the load itself; records due within this
/// slice go out together instead. Their latency still counts from their due time.
const MIN_PACING_SLEEP: Duration = Duration::from_micros(200);

/// The producer settings a workload asks for (producer `index` of the run).
pub fn producer_config(plan: &Plan, index: usize) -> Result<ProducerConfig, ClientError> {
    let w = &plan.workload;
    let mut c = ProducerConfig {
        client: crate::client::ClientConfig::with_bootstrap(&plan.bootstrap)?,
        acks: Acks::parse(&w.acks)?,
        compression: Compression::parse(&w.compression)?,
        linger: Duration::from_millis(w.linger_ms),
        batch_size: w.batch_size,
        max_in_flight: w.max_in_flight,
        buffer_memory: w.buffer_memory,
        max_request_size: (w.batch_size + 64 * 1024).max(1 << 20),
        ..ProducerConfig::default()
    };
    c.client.client_id = "sluice-bench".into();
    if w.idempotence {
        c.set("enable.idempotence", "true")?;
    }
    if w.transaction_records > 0 {
        // The run's topic is new, so the id is too: no earlier producer to fence.
        c.set(
            "transactional.id",
            &format!("sluice-bench-{}-{index}", plan.topic),
        )?;
    }
    Ok(c)
}

/// A record on its way: its delivery report, intended send time and value size.
async fn tracked(
    delivery: DeliveryFuture,
    intended: Duration,
    bytes: usize,
) -> (Result<RecordMetadata, ClientError>, Duration, usize) {
    (delivery.await, intended, bytes)
}

/// Runs producer `index` of the plan to the end of the measured phase (or its share of the
/// records), then flushes and waits for every delivery report.
pub async fn run(plan: Arc<Plan>, stats: Rc<ThreadStats>, index: usize) {
    let producer = match connect(&plan, index).await {
        Ok(p) => p,
        Err(e) => {
            stats.error(true, format!("producer {index}: {e}"));
            plan.failed.fetch_add(1, Ordering::SeqCst);
            plan.ready.fetch_add(1, Ordering::SeqCst);
            return;
        }
    };
    plan.ready.fetch_add(1, Ordering::SeqCst);
    super::wait_for_start(&plan).await;
    produce(&plan, &stats, &producer, index).await;
    producer.close().await;
    plan.producers_done.fetch_add(1, Ordering::SeqCst);
}

async fn connect(plan: &Plan, index: usize) -> Result<Producer, ClientError> {
    let config = producer_config(plan, index)?;
    let client = Client::connect(config.client.clone()).await?;
    client.retry(|| client.topic(&plan.topic)).await?;
    let producer = Producer::new(client, config);
    producer.init().await?;
    Ok(producer)
}

/// This producer's records in a run of a given count (its share of `records`).
fn quota(plan: &Plan, index: usize) -> Option<u64> {
    let w = &plan.workload;
    if w.duration_s > 0.0 {
        return None;
    }
    let n = w.producers.max(1) as u64;
    let extra = u64::from((index as u64) < w.records % n);
    Some(w.records / n + extra)
}

async fn produce(plan: &Plan, stats: &ThreadStats, producer: &Producer, index: usize) {
    let w = &plan.workload;
    let mut pacer = w.fixed_rate().then(|| {
        Pacer::new(per_producer_rate(
            w.target_records_per_s(),
            w.total_producers(),
        ))
    });
    let mut payload = PayloadSource::new(w.payload, w.record_size, 0x5eed + index as u64);
    let mut keys = Keys::new(w.keys, index * 7919);
    let quota = quota(plan, index);
    let mut measured_sends = 0u64;
    let mut in_flight = FuturesUnordered::new();
    let mut sends = 0u64;
    let mut txn = Txn::start(plan, stats, producer);
    loop {
        while let Some(Some(done)) = in_flight.next().now_or_never() {
            on_delivery(plan, stats, done);
        }
        let now = plan.elapsed();
        if plan.aborted() || plan.measure_end().is_some_and(|end| now >= end) {
            break;
        }
        if quota.is_some_and(|q| measured_sends >= q) {
            break;
        }
        let intended = match pacer.as_mut() {
            None => now,
            Some(p) if p.next_due() <= now => p.take(),
            Some(p) => {
                wait_until(plan, p.next_due() - now, &mut in_flight, stats).await;
                continue;
            }
        };
        // Only consumers read the stamp; without them values are zero-copy pool slices.
        let stamp = (w.total_consumers() > 0).then(|| plan.unix_ns(intended));
        let value = payload.next_value(stamp);
        let bytes = value.len();
        let record = ProducerRecord {
            topic: plan.topic.clone(),
            key: keys.next_key(),
            value: Some(value),
            timestamp: Some((plan.unix_ns(intended) / 1_000_000) as i64),
            ..ProducerRecord::default()
        };
        match producer.send(record).await {
            Ok(delivery) => in_flight.push(tracked(delivery, intended, bytes)),
            Err(e) => stats.error(plan.in_window(plan.elapsed()), format!("send: {e}")),
        }
        if let Some(t) = txn.as_mut() {
            t.on_send(plan, stats, producer).await;
        }
        if intended >= plan.warmup() {
            measured_sends += 1;
        }
        sends += 1;
        if pacer.is_none() && sends.is_multiple_of(SENDS_PER_YIELD) {
            runtime::yield_now().await;
        }
    }
    if let Some(t) = txn {
        t.finish(plan, stats, producer).await;
    }
    producer.flush().await;
    while let Some(done) = in_flight.next().await {
        on_delivery(plan, stats, done);
    }
}

/// A transactional producer's place in its transactions: one is always open while records
/// are sent, committed every `transaction_records` records.
struct Txn {
    per_txn: u64,
    sent: u64,
}

impl Txn {
    /// Opens the first transaction, for a transactional workload.
    fn start(plan: &Plan, stats: &ThreadStats, producer: &Producer) -> Option<Self> {
        let per_txn = plan.workload.transaction_records;
        if per_txn == 0 {
            return None;
        }
        if let Err(e) = producer.begin_transaction() {
            stats.error(false, format!("begin transaction: {e}"));
        }
        Some(Self { per_txn, sent: 0 })
    }

    /// Counts a record sent; commits (timed) and opens the next transaction when full.
    async fn on_send(&mut self, plan: &Plan, stats: &ThreadStats, producer: &Producer) {
        self.sent += 1;
        if self.sent < self.per_txn {
            return;
        }
        self.sent = 0;
        let started = plan.elapsed();
        let committed = producer.commit_transaction().await;
        let now = plan.elapsed();
        match committed {
            Ok(()) if plan.in_window(started) => stats
                .txn_commit
                .borrow_mut()
                .record_duration(now.saturating_sub(started)),
            Ok(()) => {}
            Err(e) => {
                stats.error(plan.in_window(now), format!("commit: {e}"));
                if let Err(e) = producer.abort_transaction().await {
                    stats.error(plan.in_window(now), format!("abort: {e}"));
                }
            }
        }
        if let Err(e) = producer.begin_transaction() {
            stats.error(plan.in_window(now), format!("begin transaction: {e}"));
        }
    }

    /// Commits the last, partial transaction (not timed).
    async fn finish(self, plan: &Plan, stats: &ThreadStats, producer: &Producer) {
        if let Err(e) = producer.commit_transaction().await {
            stats.error(plan.in_window(plan.elapsed()), format!("commit: {e}"));
        }
    }
}

/// Sleeps until the next record is due, handling deliveries that arrive meanwhile.
async fn wait_until<F>(
    plan: &Plan,
    wait: Duration,
    in_flight: &mut FuturesUnordered<F>,
    stats: &ThreadStats,
) where
    F: std::future::Future<Output = (Result<RecordMetadata, ClientError>, Duration, usize)>,
{
    let wait = wait.max(MIN_PACING_SLEEP);
    if in_flight.is_empty() {
        runtime::sleep(wait).await;
        return;
    }
    let sleep = std::pin::pin!(runtime::sleep(wait));
    if let Either::Right((Some(done), _)) = select(sleep, in_flight.next()).await {
        on_delivery(plan, stats, done);
    }
}

fn on_delivery(
    plan: &Plan,
    stats: &ThreadStats,
    (outcome, intended, bytes): (Result<RecordMetadata, ClientError>, Duration, usize),
) {
    let now = plan.elapsed();
    let counted = plan.in_window(now);
    if let Err(e) = outcome {
        stats.error(counted, format!("delivery: {e}"));
        return;
    }
    stats.count(counted, |c| {
        c.produced += 1;
        c.produced_bytes += bytes as u64;
    });
    let latency = now.saturating_sub(intended);
    stats.interval_produce.borrow_mut().record_duration(latency);
    if plan.in_window(intended) {
        stats.produce.borrow_mut().record_duration(latency);
        plan.window_acked.fetch_add(1, Ordering::Relaxed);
    }
}

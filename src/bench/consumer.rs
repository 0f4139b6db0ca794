//! One benchmark consumer: a Kafka consumer with partitions assigned by the harness (the
//! Rust client has no group membership yet, so a "consumer group" is a set of consumers that
//! share the partitions out between them, each group reading every partition). In `e2e` mode
//! it reads from the end, recording each record's latency from its intended send time to its
//! consumption; in `consume` mode it reads the filled topic from the start, again and again.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::payload::read_stamp;
use super::plan::{unix_now_ns, Plan, ThreadStats, DRAIN_TIMEOUT};
use super::workload::Mode;
use crate::base::TopicPartition;
use crate::client::{Client, ClientError, Consumer, ConsumerConfig, ConsumerRecord, OffsetReset};
use crate::runtime;

/// How long one poll waits for records before the consumer checks whether to stop.
const POLL_WAIT: Duration = Duration::from_millis(50);
/// Records one poll hands out at most.
const MAX_POLL_RECORDS: usize = 10_000;

/// Member `member` of group `group`: which partitions it reads.
pub fn partitions_of(partitions: i32, consumers: usize, member: usize) -> Vec<i32> {
    (0..partitions)
        .filter(|p| *p as usize % consumers.max(1) == member)
        .collect()
}

fn consumer_config(plan: &Plan) -> Result<ConsumerConfig, ClientError> {
    let w = &plan.workload;
    let mut c = ConsumerConfig {
        client: crate::client::ClientConfig::with_bootstrap(&plan.bootstrap)?,
        auto_offset_reset: match w.mode {
            Mode::Consume => OffsetReset::Earliest,
            _ => OffsetReset::Latest,
        },
        fetch_max_wait: Duration::from_millis(w.fetch_max_wait_ms),
        max_partition_fetch_bytes: w.max_partition_fetch_bytes,
        max_poll_records: MAX_POLL_RECORDS,
        // Transactional runs measure what a read_committed reader sees: records arrive
        // only once their transaction commits.
        isolation_level: i8::from(w.transaction_records > 0),
        ..ConsumerConfig::default()
    };
    c.client.client_id = "sluice-bench".into();
    Ok(c)
}

/// Runs one consumer until the run is over and (in e2e mode) its group has read every
/// record the producers had acknowledged, or the drain times out.
pub async fn run(plan: Arc<Plan>, stats: Rc<ThreadStats>, group: usize, member: usize) {
    let mut consumer = match connect(&plan, member).await {
        Ok(c) => c,
        Err(e) => {
            stats.error(true, format!("consumer {group}/{member}: {e}"));
            plan.failed.fetch_add(1, Ordering::SeqCst);
            plan.ready.fetch_add(1, Ordering::SeqCst);
            return;
        }
    };
    plan.ready.fetch_add(1, Ordering::SeqCst);
    super::wait_for_start(&plan).await;
    while !should_stop(&plan, group) {
        match consumer.poll(POLL_WAIT).await {
            Ok(records) => on_records(&plan, &stats, &mut consumer, group, records),
            Err(e) => {
                stats.error(plan.in_window(plan.elapsed()), format!("poll: {e}"));
                runtime::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Connects, assigns this member's partitions and resolves their starting positions, so the
/// first record produced after the start is read.
async fn connect(plan: &Plan, member: usize) -> Result<Consumer, ClientError> {
    let config = consumer_config(plan)?;
    let client = Client::connect(config.client.clone()).await?;
    client.retry(|| client.topic(&plan.topic)).await?;
    let mut consumer = Consumer::new(client, config);
    let w = &plan.workload;
    let tps: Vec<TopicPartition> = partitions_of(w.partitions, w.consumers, member)
        .into_iter()
        .map(|p| TopicPartition::new(plan.topic.clone(), p))
        .collect();
    consumer.assign(tps.clone()).await?;
    for tp in &tps {
        consumer.position(tp).await?;
    }
    Ok(consumer)
}

fn should_stop(plan: &Plan, group: usize) -> bool {
    if plan.aborted() {
        return true;
    }
    let now = plan.elapsed();
    let Some(end) = plan.measure_end() else {
        return false;
    };
    if plan.workload.mode == Mode::Consume {
        return now >= end;
    }
    let producers_done =
        plan.producers_done.load(Ordering::SeqCst) >= plan.workload.total_producers();
    if !producers_done {
        return false;
    }
    let acked = plan.window_acked.load(Ordering::SeqCst);
    let consumed = plan.window_consumed[group].load(Ordering::SeqCst);
    consumed >= acked || now >= end + DRAIN_TIMEOUT
}

fn on_records(
    plan: &Plan,
    stats: &ThreadStats,
    consumer: &mut Consumer,
    group: usize,
    records: Vec<ConsumerRecord>,
) {
    if records.is_empty() {
        return;
    }
    let now = plan.elapsed();
    let now_unix = unix_now_ns();
    let counted = plan.in_window(now);
    let bytes: u64 = records
        .iter()
        .map(|r| r.value.as_ref().map_or(0, |v| v.len()) as u64)
        .sum();
    stats.count(counted, |c| {
        c.consumed += records.len() as u64;
        c.consumed_bytes += bytes;
    });
    if plan.workload.mode == Mode::Consume {
        wrap_around(plan, consumer, &records);
        return;
    }
    let mut in_window = 0u64;
    let mut e2e = stats.end_to_end.borrow_mut();
    let mut interval = stats.interval_end_to_end.borrow_mut();
    for r in &records {
        let stamp = r
            .value
            .as_deref()
            .and_then(read_stamp)
            .unwrap_or((r.timestamp.max(0) as u64).saturating_mul(1_000_000));
        let latency = now_unix.saturating_sub(stamp);
        interval.record_nanos(latency);
        if plan.in_window(plan.from_unix_ns(stamp)) {
            e2e.record_nanos(latency);
            in_window += 1;
        }
    }
    plan.window_consumed[group].fetch_add(in_window, Ordering::Relaxed);
}

/// consume mode: a partition read to the end of the fill starts again at its beginning.
fn wrap_around(plan: &Plan, consumer: &mut Consumer, records: &[ConsumerRecord]) {
    let mut last: HashMap<i32, i64> = HashMap::new();
    for r in records {
        last.insert(r.partition, r.offset);
    }
    for (partition, offset) in last {
        let end = plan.fill_end.get(partition as usize).copied().unwrap_or(0);
        if offset + 1 >= end {
            let tp = TopicPartition::new(plan.topic.clone(), partition);
            // Assigned by construction; a failure would only end the wrap early.
            let _ = consumer.seek(&tp, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_shares_out_every_partition_once() {
        let mut all: Vec<i32> = (0..3).flat_map(|m| partitions_of(8, 3, m)).collect();
        all.sort();
        assert_eq!(all, (0..8).collect::<Vec<_>>());
        assert_eq!(partitions_of(2, 4, 3), Vec::<i32>::new());
    }
}

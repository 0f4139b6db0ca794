//! The load generator behind `sluice bench`: runs a [`Workload`] against any Kafka-compatible
//! cluster and returns a [`Report`]. Load comes from one pinned executor per core
//! (`runtime::run_shards`), each running its share of the producers and consumers with its
//! own statistics; the main thread starts the clock once all are connected, prints a
//! progress line every second, samples CPU times at the edges of the measured phase, and
//! merges the threads' histograms at the end.
//!
//! Uses `base`, `client`, `metrics` and `runtime` only (DESIGN.md §2). Files: [`workload`]
//! (the knobs), [`pacing`] (the send schedule, coordinated omission), [`latency`] (HDR
//! histograms), [`payload`] (values, stamps, keys), [`plan`] (what threads share),
//! [`producer`] and [`consumer`] (the actors), [`progress`] (the live line), [`report`]
//! (the JSON), [`plot`] (the picture) and [`ratio_plot`] (the picture of a peer comparison).

pub mod consumer;
pub mod latency;
pub mod pacing;
pub mod payload;
pub mod plan;
pub mod plot;
pub mod producer;
pub mod progress;
pub mod ratio_plot;
pub mod report;
pub mod workload;

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};

use self::latency::LatencyHistogram;
use self::payload::{PayloadSource, SplitMix64};
use self::plan::{unix_now_ns, Counts, Plan, ThreadResult, ThreadStats, Tick};
use self::progress::Interval;
use self::report::{cpu_seconds, CpuUse, Latencies, Machine, Report, Throughput, SCHEMA};
pub use self::workload::{Mode, Payload, RecordSize, Workload};
use crate::client::{Admin, Client, ClientConfig, ClientError, NewTopic, Producer, ProducerRecord};
use crate::runtime;

/// How long producers and consumers may take to connect and find the topic.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Kafka's TOPIC_ALREADY_EXISTS.
const TOPIC_ALREADY_EXISTS: i16 = 36;

/// How to run a workload (things that are not part of the workload itself).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// `host:port[,host:port...]`
    pub bootstrap: String,
    /// The broker process whose CPU time the report includes (same machine only).
    pub broker_pid: Option<u32>,
    /// Print the progress line every second on stderr.
    pub progress: bool,
    /// Keep a topic the run created instead of deleting it.
    pub keep_topic: bool,
}

/// Runs `workload` and reports on it. Blocks the calling thread (which must not be an
/// executor thread) until the run is over.
pub fn run(workload: &Workload, opts: &RunOptions) -> anyhow::Result<Report> {
    workload.validate().map_err(anyhow::Error::msg)?;
    let started_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = if workload.threads == 0 {
        cores
    } else {
        workload.threads
    };
    let threads = threads
        .min(workload.total_producers() + workload.total_consumers())
        .max(1);
    let (topic, created, fill_end) = runtime::block_on(prepare(workload, &opts.bootstrap))?;
    let plan = Arc::new(Plan::new(
        workload.clone(),
        opts.bootstrap.clone(),
        topic.clone(),
        fill_end,
        threads,
    ));
    let (ticks_tx, ticks) = mpsc::channel::<Tick>();
    let shard_plan = plan.clone();
    let handles = runtime::run_shards(threads, move |shard| {
        thread_main(shard_plan.clone(), ticks_tx.clone(), shard)
    })
    .context("cannot start the harness threads")?;
    let timing = supervise(&plan, &ticks, opts);
    let mut results = Vec::with_capacity(threads);
    for h in handles {
        results.push(h.join()?);
    }
    if created && !opts.keep_topic {
        let _ = runtime::block_on(delete_topic(&opts.bootstrap, &topic));
    }
    let timing = timing?;
    if plan.failed.load(Ordering::SeqCst) > 0 {
        let first = results.iter().flat_map(|r| r.error_samples.iter()).next();
        bail!(
            "{} producers or consumers could not start (first: {})",
            plan.failed.load(Ordering::SeqCst),
            first.map_or("unknown", |s| s.as_str())
        );
    }
    Ok(build_report(&plan, opts, started_unix_s, timing, results))
}

/// Waits for the actors to start on this thread's executor.
pub(crate) async fn wait_for_start(plan: &Plan) {
    while !plan.started() && !plan.aborted() {
        runtime::sleep(Duration::from_millis(1)).await;
    }
}

/// One harness thread: its share of producers and consumers, a ticker, and its result.
async fn thread_main(plan: Arc<Plan>, ticks: mpsc::Sender<Tick>, shard: usize) -> ThreadResult {
    let stats = Rc::new(ThreadStats::default());
    let w = &plan.workload;
    let threads = plan.threads;
    let producers = w.total_producers();
    let mut tasks = Vec::new();
    for i in (0..producers).filter(|i| i % threads == shard) {
        tasks.push(runtime::spawn(producer::run(
            plan.clone(),
            stats.clone(),
            i,
        )));
    }
    let groups = if w.total_consumers() > 0 {
        w.consumer_groups
    } else {
        0
    };
    for g in 0..groups {
        for m in 0..w.consumers {
            if (producers + g * w.consumers + m) % threads == shard {
                let task = consumer::run(plan.clone(), stats.clone(), g, m);
                tasks.push(runtime::spawn(task));
            }
        }
    }
    let ticker_stats = stats.clone();
    let ticker_tx = ticks.clone();
    let ticker = runtime::spawn(async move {
        loop {
            runtime::sleep(PROGRESS_EVERY).await;
            if ticker_tx.send(ticker_stats.take_tick()).is_err() {
                return;
            }
        }
    });
    for t in tasks {
        t.await;
    }
    drop(ticker);
    let _ = ticks.send(stats.take_tick());
    stats.take_result()
}

/// CPU-time samples and the length of the measured phase.
struct Timing {
    measured_s: f64,
    harness_cpu_s: f64,
    broker_cpu_s: Option<f64>,
}

/// The main thread's part: start the clock, print progress, sample CPU times.
fn supervise(
    plan: &Plan,
    ticks: &mpsc::Receiver<Tick>,
    opts: &RunOptions,
) -> anyhow::Result<Timing> {
    let setup_deadline = Instant::now() + SETUP_TIMEOUT;
    while plan.ready.load(Ordering::SeqCst) < plan.actors() {
        if Instant::now() > setup_deadline {
            plan.abort.store(true, Ordering::SeqCst);
            bail!("producers and consumers did not connect within {SETUP_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if plan.failed.load(Ordering::SeqCst) > 0 {
        plan.abort.store(true, Ordering::SeqCst);
    }
    plan.start();
    let sample = || {
        (
            cpu_seconds(None),
            opts.broker_pid.and_then(|p| cpu_seconds(Some(p))),
        )
    };
    let mut at_start = None;
    let mut at_end = None;
    let mut interval = Interval::default();
    let mut next_line = PROGRESS_EVERY;
    let producers = plan.workload.total_producers();
    loop {
        match ticks.recv_timeout(Duration::from_millis(50)) {
            Ok(tick) => interval.add(&tick),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let now = plan.elapsed();
        if at_start.is_none() && now >= plan.warmup() {
            at_start = Some((now, sample()));
        }
        if plan.measure_end().is_none()
            && producers > 0
            && plan.producers_done.load(Ordering::SeqCst) >= producers
        {
            plan.end_measuring_now();
        }
        if at_end.is_none() && plan.measure_end().is_some_and(|end| now >= end) {
            at_end = Some((now, sample()));
        }
        if now >= next_line {
            let phase = phase(plan, now);
            let line = interval.line(now, phase, PROGRESS_EVERY.as_secs_f64());
            if opts.progress {
                eprintln!("{line}");
            }
            next_line += PROGRESS_EVERY;
        }
    }
    let end_sample = at_end.unwrap_or_else(|| (plan.elapsed(), sample()));
    let start_sample = at_start.unwrap_or(end_sample);
    let measured = plan
        .measure_end()
        .unwrap_or(end_sample.0)
        .saturating_sub(plan.warmup());
    let diff = |a: Option<f64>, b: Option<f64>| Some(b? - a?);
    Ok(Timing {
        measured_s: measured.as_secs_f64(),
        harness_cpu_s: diff(start_sample.1 .0, end_sample.1 .0).unwrap_or(0.0),
        broker_cpu_s: diff(start_sample.1 .1, end_sample.1 .1),
    })
}

fn phase(plan: &Plan, now: Duration) -> &'static str {
    if now < plan.warmup() {
        "warmup"
    } else if plan.measure_end().is_none_or(|end| now < end) {
        "measure"
    } else {
        "drain"
    }
}

fn build_report(
    plan: &Plan,
    opts: &RunOptions,
    started_unix_s: u64,
    timing: Timing,
    results: Vec<ThreadResult>,
) -> Report {
    let mut counts = Counts::default();
    let mut produce = LatencyHistogram::new();
    let mut end_to_end = LatencyHistogram::new();
    let mut txn_commit = LatencyHistogram::new();
    let mut error_samples = Vec::new();
    for r in &results {
        counts.add(&r.counts);
        produce.merge(&r.produce);
        end_to_end.merge(&r.end_to_end);
        txn_commit.merge(&r.txn_commit);
        error_samples.extend(r.error_samples.iter().cloned());
    }
    error_samples.truncate(plan::ERROR_SAMPLES);
    let w = &plan.workload;
    let secs = timing.measured_s;
    let gb_produced = counts.produced_bytes as f64 / 1e9;
    Report {
        schema: SCHEMA.into(),
        name: w.name.clone(),
        mode: w.mode,
        sluice_version: env!("CARGO_PKG_VERSION").into(),
        started_unix_s,
        bootstrap: opts.bootstrap.clone(),
        topic: plan.topic.clone(),
        measured_s: secs,
        produce: Throughput::over(counts.produced, counts.produced_bytes, secs),
        consume: Throughput::over(counts.consumed, counts.consumed_bytes, secs),
        errors: counts.errors,
        error_samples,
        latency: Latencies {
            produce: (w.total_producers() > 0).then(|| produce.summary()),
            end_to_end: (w.mode == Mode::E2e).then(|| end_to_end.summary()),
            txn_commit: (w.transaction_records > 0).then(|| txn_commit.summary()),
        },
        cpu: CpuUse {
            harness_s: timing.harness_cpu_s,
            harness_cores: timing.harness_cpu_s / secs.max(1e-9),
            broker_pid: opts.broker_pid,
            broker_s: timing.broker_cpu_s,
            broker_cores: timing.broker_cpu_s.map(|s| s / secs.max(1e-9)),
            broker_s_per_gb_produced: timing
                .broker_cpu_s
                .filter(|_| gb_produced > 0.0)
                .map(|s| s / gb_produced),
        },
        machine: Machine::describe(),
        parameters: w.clone(),
    }
}

/// Creates the topic (or finds the one named), and in consume mode fills it. Returns the
/// topic, whether this run created it, and the end offset of each partition after the fill.
async fn prepare(w: &Workload, bootstrap: &str) -> anyhow::Result<(String, bool, Vec<i64>)> {
    let client = Client::connect(ClientConfig::with_bootstrap(bootstrap)?).await?;
    let admin = Admin::new(client.clone());
    let created = w.topic.is_empty();
    let topic = if created {
        let suffix = SplitMix64::new(unix_now_ns()).next_u64() as u32;
        let name: String = w
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("bench-{name}-{suffix:08x}")
    } else {
        w.topic.clone()
    };
    let new = NewTopic {
        name: topic.clone(),
        partitions: w.partitions,
        replication_factor: w.replication_factor,
        configs: Vec::new(),
    };
    for (name, outcome) in admin.create_topics(&[new], false).await? {
        match outcome {
            Err(e) if !created && e.kafka_code() == Some(TOPIC_ALREADY_EXISTS) => {}
            Err(e) => bail!("cannot create topic '{name}': {e}"),
            Ok(()) => {}
        }
    }
    wait_for_partitions(&client, &topic, w.partitions).await?;
    let fill_end = match w.mode {
        Mode::Consume => fill(w, client, &topic).await?,
        _ => Vec::new(),
    };
    Ok((topic, created, fill_end))
}

/// Waits until metadata shows the topic with its partitions led.
async fn wait_for_partitions(client: &Client, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let deadline = Instant::now() + SETUP_TIMEOUT;
    loop {
        let _ = client.refresh(Some(&[topic.to_owned()])).await;
        let info = client.metadata().topic(topic).cloned();
        if let Some(info) = info {
            if info.partitions.len() >= partitions as usize
                && info.available().count() >= partitions as usize
            {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!(
                "topic '{topic}' did not get {partitions} led partitions within {SETUP_TIMEOUT:?}"
            );
        }
        runtime::sleep(Duration::from_millis(50)).await;
    }
}

/// consume mode: writes `fill_bytes_per_partition` to every partition; returns each
/// partition's end offset.
async fn fill(w: &Workload, client: Client, topic: &str) -> anyhow::Result<Vec<i64>> {
    let mut config = crate::client::ProducerConfig {
        client: client.config().clone(),
        acks: crate::client::Acks::Leader,
        batch_size: 1 << 20,
        max_request_size: 2 << 20,
        ..crate::client::ProducerConfig::default()
    };
    config.buffer_memory = 64 << 20;
    let producer = Producer::new(client, config);
    let mut payload = PayloadSource::new(w.payload, w.record_size, 7);
    let per_partition =
        (w.fill_bytes_per_partition as f64 / w.record_size.mean().max(1.0)).ceil() as u64;
    let mut deliveries = Vec::new();
    for _ in 0..per_partition {
        for p in 0..w.partitions {
            let record = ProducerRecord::new(topic, Some(payload.next_value(None))).partition(p);
            deliveries.push(producer.send(record).await?);
        }
    }
    producer.flush().await;
    let mut end = vec![0i64; w.partitions as usize];
    for d in deliveries {
        let m = d
            .await
            .map_err(|e: ClientError| anyhow::anyhow!("filling '{topic}': {e}"))?;
        if let Some(slot) = end.get_mut(m.partition as usize) {
            *slot = (*slot).max(m.offset + 1);
        }
    }
    producer.close().await;
    Ok(end)
}

async fn delete_topic(bootstrap: &str, topic: &str) -> anyhow::Result<()> {
    let client = Client::connect(ClientConfig::with_bootstrap(bootstrap)?).await?;
    Admin::new(client)
        .delete_topics(&[topic.to_owned()])
        .await?;
    Ok(())
}

//! `sluice produce`: one record per line of stdin, like `kafka-console-producer.sh`. Lines are
//! read on a plain thread (stdin blocks) and handed to the producer on the executor; every
//! delivery report is checked, and the command fails if any record was not acknowledged.

use std::io::BufRead;

use anyhow::bail;
use bytes::Bytes;
use clap::Args;
use futures::channel::mpsc;
use std::collections::VecDeque;

use futures::{FutureExt, SinkExt, StreamExt};

use super::common::{self, key_value, ConnectArgs};
use crate::client::{
    Acks, Client, ClientError, Compression, DeliveryFuture, Producer, ProducerConfig,
    ProducerRecord, RecordMetadata,
};

/// Lines handed over from the stdin thread at once (at most).
const LINES_PER_HANDOFF: usize = 1024;
/// The console producer's batch size: a whole pipe of lines goes out in large batches (the
/// Java client's 16 KiB default costs three times the time here).
const CLI_BATCH_SIZE: usize = 1_000_000;
/// Delivery failures printed one by one before only the count is kept.
const FAILURES_SHOWN: usize = 10;

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Topic to write to
    pub topic: String,
    /// Split each line at the first SEP into key and value (without it, lines are values
    /// with a null key)
    #[arg(long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// Send a key or value equal to this text as null
    #[arg(long, value_name = "TEXT")]
    pub null_marker: Option<String>,
    /// Header added to every record, as key=value; repeatable
    #[arg(long = "header", short = 'H', value_parser = key_value, value_name = "KEY=VALUE")]
    pub headers: Vec<(String, String)>,
    /// Write every record to this partition instead of using the partitioner
    #[arg(long)]
    pub partition: Option<i32>,
    /// Replicas that must have a record before it counts as written: 0, 1 or all
    #[arg(long)]
    pub acks: Option<String>,
    /// none, gzip, snappy, lz4 or zstd
    #[arg(long)]
    pub compression: Option<String>,
    /// How long a batch waits for more records (ms)
    #[arg(long)]
    pub linger_ms: Option<u64>,
    /// Bytes a partition's batch collects before it is sent [default: 1000000, as librdkafka]
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Print "PARTITION OFFSET" for every acknowledged record, in input order
    #[arg(long)]
    pub print_offsets: bool,
    /// Any producer setting as key=value (e.g. -X max.in.flight.requests.per.connection=1);
    /// repeatable. The flags above win over these.
    #[arg(long = "property", short = 'X', value_parser = key_value, value_name = "KEY=VALUE")]
    pub properties: Vec<(String, String)>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

impl ProduceArgs {
    fn producer_config(&self) -> Result<ProducerConfig, ClientError> {
        let mut c = ProducerConfig {
            client: self.connect.client_config()?,
            batch_size: CLI_BATCH_SIZE,
            ..ProducerConfig::default()
        };
        // As kafka-console-producer (the Java producer's default): a missing topic is created
        // by the broker if its auto.create.topics.enable is on; -X allow.auto.create.topics=false
        // turns that off.
        c.client.allow_auto_create_topics = true;
        for (k, v) in &self.properties {
            c.set(k, v)?;
        }
        if let Some(a) = &self.acks {
            c.acks = Acks::parse(a)?;
        }
        if let Some(codec) = &self.compression {
            c.compression = Compression::parse(codec)?;
        }
        if let Some(ms) = self.linger_ms {
            c.set("linger.ms", &ms.to_string())?;
        }
        if let Some(n) = self.batch_size {
            c.set("batch.size", &n.to_string())?;
        }
        Ok(c)
    }

    /// The record one input line stands for.
    fn record(&self, line: Vec<u8>) -> Result<ProducerRecord, String> {
        let line = Bytes::from(line);
        let (key, value) = match &self.key_separator {
            None => (None, Some(line)),
            Some(sep) => {
                let at = find(&line, sep.as_bytes())
                    .ok_or_else(|| format!("no key separator '{sep}' in the line"))?;
                (Some(line.slice(..at)), Some(line.slice(at + sep.len()..)))
            }
        };
        let nulled = |b: Option<Bytes>| {
            b.filter(|b| {
                self.null_marker
                    .as_ref()
                    .is_none_or(|m| b[..] != *m.as_bytes())
            })
        };
        let mut record = ProducerRecord::new(self.topic.clone(), nulled(value)).key(nulled(key));
        record.partition = self.partition;
        for (k, v) in &self.headers {
            record = record.header(k.clone(), Some(Bytes::from(v.clone())));
        }
        Ok(record)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub fn run(args: ProduceArgs) -> i32 {
    common::run(produce(args))
}

/// Counts of what happened to the input.
#[derive(Default)]
struct Tally {
    lines: u64,
    acknowledged: u64,
    failed: u64,
    first_failure: Option<String>,
}

impl Tally {
    fn failure(&mut self, line: u64, what: &str) {
        self.failed += 1;
        if self.failed as usize <= FAILURES_SHOWN {
            eprintln!("Error: line {line}: {what}");
        }
        self.first_failure
            .get_or_insert_with(|| format!("line {line}: {what}"));
    }

    fn report(
        &mut self,
        line: u64,
        outcome: Result<RecordMetadata, ClientError>,
        print_offsets: bool,
    ) {
        match outcome {
            Ok(m) => {
                self.acknowledged += 1;
                if print_offsets {
                    println!("{} {}", m.partition, m.offset);
                }
            }
            Err(e) => self.failure(line, &format!("not delivered: {e}")),
        }
    }
}

async fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    let config = args.producer_config()?;
    let client = common::connect(config.client.clone()).await?;
    let allow_auto_create = config.client.allow_auto_create_topics;
    if let Some(partitions) = ensure_topic(&client, &args.topic, allow_auto_create).await? {
        eprintln!(
            "Created topic '{}' ({partitions} partition{}): the broker creates missing topics (auto.create.topics.enable).",
            args.topic,
            if partitions == 1 { "" } else { "s" }
        );
    }
    // With -X transactional.id, the whole input is one transaction: committed only if every
    // line was written.
    let transactional = config.transactional_id.is_some();
    let producer = Producer::new(client, config);
    producer.init().await?;
    if transactional {
        producer.begin_transaction()?;
    }
    let mut lines = spawn_stdin_reader();
    // Reports are taken in input order: (line number, its delivery).
    let mut pending: VecDeque<(u64, DeliveryFuture)> = VecDeque::new();
    let mut tally = Tally::default();
    while let Some(chunk) = lines.next().await {
        for line in chunk? {
            tally.lines += 1;
            let n = tally.lines;
            let record = match args.record(line) {
                Ok(r) => r,
                Err(what) => {
                    tally.failure(n, &what);
                    continue;
                }
            };
            let delivery = match producer.send(record).await {
                Ok(d) => d,
                Err(e @ ClientError::RecordTooLarge { .. }) => {
                    tally.failure(n, &e.to_string());
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            pending.push_back((n, delivery));
            take_ready(&mut pending, &mut tally, args.print_offsets);
        }
    }
    producer.flush().await;
    for (n, delivery) in pending {
        tally.report(n, delivery.await, args.print_offsets);
    }
    if transactional {
        if tally.failed == 0 {
            producer.commit_transaction().await?;
        } else {
            producer.abort_transaction().await?;
            eprintln!("The transaction was aborted: none of its records will be read_committed.");
        }
    }
    producer.close().await;
    if tally.failed > 0 {
        let first = tally.first_failure.unwrap_or_default();
        bail!(
            "{} of {} records were not written (first: {first})",
            tally.failed,
            tally.lines
        );
    }
    Ok(())
}

/// Makes sure `topic` exists: `Some(partitions)` if the broker created it for us (it was
/// missing and auto-creation is allowed on both sides), `None` if it was there already.
async fn ensure_topic(
    client: &Client,
    topic: &str,
    allow_auto_create: bool,
) -> anyhow::Result<Option<usize>> {
    match client.retry(|| client.topic_once(topic, false)).await {
        Ok(_) => return Ok(None),
        Err(ClientError::UnknownTopic(_)) if allow_auto_create => {}
        Err(e) => return Err(e.into()),
    }
    match client.retry(|| client.topic_once(topic, true)).await {
        Ok(info) => Ok(Some(info.partitions.len())),
        Err(ClientError::UnknownTopic(_)) => bail!(
            "topic '{topic}' does not exist and the broker does not create topics (auto.create.topics.enable is off); create it with `sluice topic create {topic}`"
        ),
        Err(e) => Err(e.into()),
    }
}

/// Reports the deliveries at the front of the queue that have completed.
fn take_ready(
    pending: &mut VecDeque<(u64, DeliveryFuture)>,
    tally: &mut Tally,
    print_offsets: bool,
) {
    while let Some((n, delivery)) = pending.front_mut() {
        let Some(outcome) = delivery.now_or_never() else {
            break;
        };
        let n = *n;
        pending.pop_front();
        tally.report(n, outcome, print_offsets);
    }
}

/// Reads stdin on its own thread: a blocking read must not stall the executor. Lines come
/// over in chunks, without their line ending, as soon as no more are buffered.
fn spawn_stdin_reader() -> mpsc::Receiver<std::io::Result<Vec<Vec<u8>>>> {
    let (mut tx, rx) = mpsc::channel(8);
    std::thread::spawn(move || {
        let mut input = std::io::BufReader::with_capacity(1 << 16, std::io::stdin());
        loop {
            let (chunk, done) = read_chunk(&mut input);
            let failed = chunk.is_err();
            if futures::executor::block_on(tx.send(chunk)).is_err() || done || failed {
                return;
            }
        }
    });
    rx
}

/// Lines up to [`LINES_PER_HANDOFF`] or until the buffer runs dry; `true` at end of input.
fn read_chunk(
    input: &mut std::io::BufReader<std::io::Stdin>,
) -> (std::io::Result<Vec<Vec<u8>>>, bool) {
    let mut chunk = Vec::new();
    loop {
        let mut line = Vec::new();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => return (Ok(chunk), true),
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                }
                chunk.push(line);
            }
            Err(e) => return (Err(e), true),
        }
        if chunk.len() >= LINES_PER_HANDOFF || input.buffer().is_empty() {
            return (Ok(chunk), false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: ProduceArgs,
    }

    fn args(extra: &[&str]) -> ProduceArgs {
        let mut argv = vec!["x", "t"];
        argv.extend_from_slice(extra);
        Wrap::parse_from(argv).args
    }

    #[test]
    fn key_separator_splits_at_the_first_occurrence() {
        let a = args(&["--key-separator", ":"]);
        let r = a.record(b"k:v:w".to_vec()).unwrap();
        assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(r.value.as_deref(), Some(&b"v:w"[..]));
        assert!(a.record(b"nosep".to_vec()).is_err());
    }

    #[test]
    fn null_marker_nulls_keys_and_values() {
        let a = args(&[
            "--key-separator",
            "\t",
            "--null-marker",
            "NULL",
            "-H",
            "h=1",
        ]);
        let r = a.record(b"NULL\tv".to_vec()).unwrap();
        assert_eq!(r.key, None);
        assert_eq!(r.value.as_deref(), Some(&b"v"[..]));
        let r = a.record(b"k\tNULL".to_vec()).unwrap();
        assert_eq!(r.value, None);
        assert_eq!(
            r.headers,
            vec![("h".to_owned(), Some(Bytes::from_static(b"1")))]
        );
    }

    #[test]
    fn flags_win_over_properties() {
        let a = args(&[
            "-X",
            "acks=0",
            "--acks",
            "1",
            "-X",
            "linger.ms=50",
            "--compression",
            "lz4",
        ]);
        let c = a.producer_config().unwrap();
        assert_eq!(c.acks, Acks::Leader);
        assert_eq!(c.compression, Compression::Lz4);
        assert_eq!(c.linger, std::time::Duration::from_millis(50));
        assert!(args(&["-X", "bogus=1"]).producer_config().is_err());
    }
}

//! `sluice consume`: prints a topic's records to stdout, like `kafka-console-consumer.sh`.
//! Reads every partition (or one) from the end, the beginning, an offset or a timestamp,
//! and stops after `--max-messages` or `--timeout-ms` without records.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;

use super::common::{self, key_value, ConnectArgs};
use super::format::{Format, FORMAT_HELP};
use crate::base::TopicPartition;
use crate::client::consumer::ResetTo;
use crate::client::{ClientError, Consumer, ConsumerConfig};

/// Longest one poll waits, so the idle timeout is checked often enough.
const POLL_SLICE: Duration = Duration::from_millis(500);

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Topic to read
    pub topic: String,
    /// Start at the earliest record instead of the end
    #[arg(long, conflicts_with_all = ["offset", "from_timestamp"])]
    pub from_beginning: bool,
    /// Start at this offset, or at earliest or latest (applies to every partition read)
    #[arg(
        long,
        value_name = "OFFSET|earliest|latest",
        conflicts_with = "from_timestamp"
    )]
    pub offset: Option<String>,
    /// Start at the first record with a timestamp at or after this (ms since the epoch)
    #[arg(long, value_name = "MS")]
    pub from_timestamp: Option<i64>,
    /// Read only this partition
    #[arg(long)]
    pub partition: Option<i32>,
    /// Join this consumer group: read the partitions it assigns, from its committed offsets
    /// (else from where the start flags say), and commit after printing
    #[arg(long)]
    pub group: Option<String>,
    /// Exit after printing this many records
    #[arg(long, value_name = "N")]
    pub max_messages: Option<u64>,
    /// Exit when no record arrives for this long (ms)
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
    /// Output format, e.g. '%p %o %k %v\n' (a newline is added if it has none)
    #[arg(long, long_help = format!("Output format, e.g. '%p %o %k %v'. {FORMAT_HELP} A newline ends each record unless the format has one."))]
    pub format: Option<String>,
    /// Print the key before the value (default layout only)
    #[arg(long)]
    pub print_key: bool,
    /// Text between key and value with --print-key
    #[arg(long, default_value = "\t", value_name = "SEP")]
    pub key_separator: String,
    /// Any consumer setting as key=value (e.g. -X fetch.max.wait.ms=100); repeatable
    #[arg(long = "property", short = 'X', value_parser = key_value, value_name = "KEY=VALUE")]
    pub properties: Vec<(String, String)>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Where reading starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Start {
    At(ResetTo),
    Offset(i64),
}

impl ConsumeArgs {
    pub(super) fn start(&self) -> anyhow::Result<Start> {
        if let Some(ts) = self.from_timestamp {
            return Ok(Start::At(ResetTo::Timestamp(ts)));
        }
        if self.from_beginning {
            return Ok(Start::At(ResetTo::Earliest));
        }
        match self.offset.as_deref() {
            None | Some("latest") | Some("end") => Ok(Start::At(ResetTo::Latest)),
            Some("earliest") | Some("beginning") => Ok(Start::At(ResetTo::Earliest)),
            Some(n) => match n.parse::<i64>() {
                Ok(o) if o >= 0 => Ok(Start::Offset(o)),
                _ => bail!("--offset must be a non-negative number, earliest or latest, not '{n}'"),
            },
        }
    }

    pub(super) fn format(&self) -> anyhow::Result<Format> {
        match &self.format {
            None => Ok(Format::default_layout(self.print_key, &self.key_separator)),
            Some(spec) => {
                let spec = if spec.ends_with("\\n") || spec.ends_with('\n') {
                    spec.clone()
                } else {
                    format!("{spec}\\n")
                };
                Format::parse(&spec).map_err(anyhow::Error::msg)
            }
        }
    }

    pub(super) fn consumer_config(&self) -> Result<ConsumerConfig, ClientError> {
        let mut c = ConsumerConfig {
            client: self.connect.client_config()?,
            ..ConsumerConfig::default()
        };
        for (k, v) in &self.properties {
            if super::group::GROUP_PROPERTIES.contains(&k.as_str()) {
                continue;
            }
            c.set(k, v)?;
        }
        Ok(c)
    }
}

pub fn run(args: ConsumeArgs) -> i32 {
    common::run(consume(args))
}

async fn consume(args: ConsumeArgs) -> anyhow::Result<()> {
    if let Some(group) = args.group.clone() {
        if args.partition.is_some() {
            bail!("--partition and --group do not go together: the group assigns partitions");
        }
        return super::group::consume_in_group(&args, group, args.start()?, args.format()?).await;
    }
    let start = args.start()?;
    let format = args.format()?;
    let config = args.consumer_config()?;
    let client = common::connect(config.client.clone()).await?;
    let mut consumer = Consumer::new(client, config);
    let tps = match args.partition {
        Some(p) => {
            let tp = TopicPartition::new(args.topic.clone(), p);
            consumer.assign(vec![tp.clone()]).await?;
            vec![tp]
        }
        None => consumer.assign_topic(&args.topic).await?,
    };
    match start {
        Start::At(to) => consumer.seek_to(&tps, to)?,
        Start::Offset(o) => tps.iter().try_for_each(|tp| consumer.seek(tp, o))?,
    }
    let count = print_records(&mut consumer, &args, &format).await?;
    eprintln!("Processed a total of {count} messages");
    Ok(())
}

/// Polls and prints until the record limit, the idle timeout, or a closed stdout.
pub(super) async fn print_records(
    consumer: &mut Consumer,
    args: &ConsumeArgs,
    format: &Format,
) -> anyhow::Result<u64> {
    let idle_limit = args.timeout_ms.map(Duration::from_millis);
    let max = args.max_messages.unwrap_or(u64::MAX);
    let mut count = 0u64;
    let mut last_record = Instant::now();
    let stdout = std::io::stdout();
    let mut out = Vec::with_capacity(1 << 16);
    while count < max {
        let slice = match idle_limit {
            Some(limit) => limit.saturating_sub(last_record.elapsed()).min(POLL_SLICE),
            None => POLL_SLICE,
        };
        if slice.is_zero() {
            break;
        }
        let records = consumer.poll(slice).await?;
        if !records.is_empty() {
            last_record = Instant::now();
        }
        out.clear();
        for r in records.iter().take((max - count) as usize) {
            format.write(r, &mut out);
            count += 1;
        }
        let mut lock = stdout.lock();
        if lock.write_all(&out).and_then(|()| lock.flush()).is_err() {
            break; // the reader went away (e.g. `| head`): stop quietly
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: ConsumeArgs,
    }

    fn args(extra: &[&str]) -> ConsumeArgs {
        let mut argv = vec!["x", "t"];
        argv.extend_from_slice(extra);
        Wrap::parse_from(argv).args
    }

    #[test]
    fn start_position_follows_the_flags() {
        assert_eq!(args(&[]).start().unwrap(), Start::At(ResetTo::Latest));
        assert_eq!(
            args(&["--from-beginning"]).start().unwrap(),
            Start::At(ResetTo::Earliest)
        );
        assert_eq!(
            args(&["--offset", "17"]).start().unwrap(),
            Start::Offset(17)
        );
        assert_eq!(
            args(&["--offset", "earliest"]).start().unwrap(),
            Start::At(ResetTo::Earliest)
        );
        assert_eq!(
            args(&["--from-timestamp", "5"]).start().unwrap(),
            Start::At(ResetTo::Timestamp(5))
        );
        assert!(args(&["--offset=-3"]).start().is_err());
        assert!(Wrap::try_parse_from(["x", "t", "--from-beginning", "--offset", "3"]).is_err());
    }

    #[test]
    fn a_format_without_a_newline_gets_one() {
        let f = args(&["--format", "%o"]).format().unwrap();
        assert_eq!(f, Format::parse("%o\\n").unwrap());
    }
}

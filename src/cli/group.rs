//! `sluice group` (list, describe with lag, reset-offsets, delete — like
//! `kafka-consumer-groups.sh`) and the group side of `sluice consume --group`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::{Args, Subcommand};

use super::common::{self, ConnectArgs};
use super::consume::{ConsumeArgs, Start};
use super::format::Format;
use crate::base::TopicPartition;
use crate::client::consumer::ResetTo;
use crate::client::group::{GroupConfig, GroupMember};
use crate::client::{group_admin, Client, Consumer, ConsumerConfig};

/// `-X` settings that belong to group membership rather than the fetcher.
pub(super) const GROUP_PROPERTIES: &[&str] = &[
    "group.instance.id",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
];

const POLL_SLICE: Duration = Duration::from_millis(200);

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List consumer groups with their state.
    ///
    /// Examples:
    ///   sluice group list
    ///   sluice group list --bootstrap-server kafka1:9092
    #[command(verbatim_doc_comment)]
    List(ConnectOnly),
    /// Members, their partitions, committed offsets, log end offsets and lag.
    ///
    /// Examples:
    ///   sluice group describe dashboard
    #[command(verbatim_doc_comment)]
    Describe(Named),
    /// Set a group's committed offsets (refused while it has members). Dry run by default.
    ///
    /// Examples:
    ///   sluice group reset-offsets dashboard --topic trucks_gps --to-earliest
    ///   sluice group reset-offsets dashboard --topic trucks_gps --to-offset 100 --execute
    ///   sluice group reset-offsets dashboard --topic trucks_gps --to-datetime 2026-11-22T10:00:00Z --execute
    ///   sluice group reset-offsets dashboard --topic trucks_gps --shift-by -50 --execute
    #[command(verbatim_doc_comment)]
    ResetOffsets(ResetArgs),
    /// Delete an empty group and its committed offsets.
    ///
    /// Examples:
    ///   sluice group delete dashboard
    #[command(verbatim_doc_comment)]
    Delete(Named),
}

#[derive(Debug, Args)]
pub struct ConnectOnly {
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct Named {
    /// Group id
    pub group: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// Group id
    pub group: String,
    /// Topic whose partitions are reset
    #[arg(long)]
    pub topic: String,
    #[arg(long, group = "target")]
    pub to_earliest: bool,
    #[arg(long, group = "target")]
    pub to_latest: bool,
    #[arg(long, group = "target", value_name = "OFFSET")]
    pub to_offset: Option<i64>,
    /// RFC 3339 time, e.g. 2026-11-22T10:00:00Z
    #[arg(long, group = "target", value_name = "ISO")]
    pub to_datetime: Option<String>,
    /// Move the committed offsets by N (negative: back)
    #[arg(long, group = "target", value_name = "N", allow_hyphen_values = true)]
    pub shift_by: Option<i64>,
    /// Print the new offsets without committing them (the default)
    #[arg(long, conflicts_with = "execute")]
    pub dry_run: bool,
    /// Commit the new offsets
    #[arg(long)]
    pub execute: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub fn run(cmd: GroupCommand) -> i32 {
    common::run(async move {
        match cmd {
            GroupCommand::List(a) => list(a).await,
            GroupCommand::Describe(a) => describe(a).await,
            GroupCommand::ResetOffsets(a) => reset(a).await,
            GroupCommand::Delete(a) => {
                let client = common::connect(a.connect.client_config()?).await?;
                group_admin::delete_group(&client, &a.group).await?;
                println!("Deleted group {}.", a.group);
                Ok(())
            }
        }
    })
}

async fn list(a: ConnectOnly) -> anyhow::Result<()> {
    let client = common::connect(a.connect.client_config()?).await?;
    for (group, state) in group_admin::list_groups(&client).await? {
        println!("{group}\t{state}");
    }
    Ok(())
}

/// The offset `position` resolves to for each partition (end, beginning or a timestamp).
async fn resolve(
    client: &Client,
    tps: &[TopicPartition],
    to: ResetTo,
) -> anyhow::Result<BTreeMap<TopicPartition, i64>> {
    let mut c = Consumer::new(
        client.clone(),
        ConsumerConfig {
            client: client.config().clone(),
            ..ConsumerConfig::default()
        },
    );
    c.assign(tps.to_vec()).await?;
    c.seek_to(tps, to)?;
    let mut out = BTreeMap::new();
    for tp in tps {
        out.insert(tp.clone(), c.position(tp).await?);
    }
    Ok(out)
}

async fn describe(a: Named) -> anyhow::Result<()> {
    let client = common::connect(a.connect.client_config()?).await?;
    let desc = group_admin::describe_group(&client, &a.group).await?;
    let committed = group_admin::committed_offsets(&client, &a.group).await?;
    let mut owner: HashMap<TopicPartition, (String, String, String)> = HashMap::new();
    for m in &desc.members {
        for tp in &m.assignment {
            owner.insert(
                tp.clone(),
                (m.member_id.clone(), m.host.clone(), m.client_id.clone()),
            );
        }
    }
    let mut tps: Vec<TopicPartition> = committed.keys().chain(owner.keys()).cloned().collect();
    tps.sort();
    tps.dedup();
    let ends = resolve(&client, &tps, ResetTo::Latest).await?;
    println!(
        "Group {} is {} ({} members, protocol {})\n",
        a.group,
        desc.state,
        desc.members.len(),
        if desc.protocol.is_empty() {
            "-"
        } else {
            &desc.protocol
        }
    );
    println!(
        "{:<24} {:>9} {:>14} {:>14} {:>8}  {:<40} {:<16} CLIENT-ID",
        "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST"
    );
    for tp in &tps {
        let cur = committed.get(tp);
        let end = ends.get(tp).copied().unwrap_or(-1);
        let lag = cur.map_or("-".to_string(), |c| (end - c).max(0).to_string());
        let (id, host, client_id) = owner
            .get(tp)
            .cloned()
            .unwrap_or_else(|| ("-".into(), "-".into(), "-".into()));
        println!(
            "{:<24} {:>9} {:>14} {:>14} {:>8}  {:<40} {:<16} {}",
            tp.topic,
            tp.partition,
            cur.map_or("-".to_string(), |c| c.to_string()),
            end,
            lag,
            id,
            host,
            client_id
        );
    }
    Ok(())
}

async fn reset(a: ResetArgs) -> anyhow::Result<()> {
    let client = common::connect(a.connect.client_config()?).await?;
    let desc = group_admin::describe_group(&client, &a.group).await?;
    if !desc.members.is_empty() {
        bail!(
            "group '{}' has {} active member(s) (state {}); stop its consumers before resetting offsets",
            a.group,
            desc.members.len(),
            desc.state
        );
    }
    let info = client.topic(&a.topic).await?;
    let tps: Vec<TopicPartition> = info
        .partitions
        .iter()
        .map(|p| TopicPartition::new(a.topic.clone(), p.partition))
        .collect();
    let earliest = resolve(&client, &tps, ResetTo::Earliest).await?;
    let latest = resolve(&client, &tps, ResetTo::Latest).await?;
    let clamp = |tp: &TopicPartition, o: i64| o.clamp(earliest[tp], latest[tp]);
    let target: BTreeMap<TopicPartition, i64> = if a.to_earliest {
        earliest.clone()
    } else if a.to_latest {
        latest.clone()
    } else if let Some(o) = a.to_offset {
        tps.iter().map(|tp| (tp.clone(), clamp(tp, o))).collect()
    } else if let Some(iso) = &a.to_datetime {
        let ms = parse_rfc3339_ms(iso).ok_or_else(|| {
            anyhow::anyhow!(
                "--to-datetime '{iso}' is not an RFC 3339 time such as 2026-11-22T10:00:00Z"
            )
        })?;
        resolve(&client, &tps, ResetTo::Timestamp(ms)).await?
    } else if let Some(n) = a.shift_by {
        let committed = group_admin::committed_offsets(&client, &a.group).await?;
        tps.iter()
            .map(|tp| {
                (
                    tp.clone(),
                    clamp(tp, committed.get(tp).copied().unwrap_or(latest[tp]) + n),
                )
            })
            .collect()
    } else {
        bail!("say where to: --to-earliest, --to-latest, --to-offset N, --to-datetime ISO or --shift-by N");
    };
    println!("{:<24} {:>9} {:>10}", "TOPIC", "PARTITION", "NEW-OFFSET");
    for (tp, o) in &target {
        println!("{:<24} {:>9} {:>10}", tp.topic, tp.partition, o);
    }
    if a.execute {
        let offsets: Vec<(TopicPartition, i64)> = target.into_iter().collect();
        group_admin::set_offsets(&client, &a.group, &offsets).await?;
        println!("Committed.");
    } else {
        println!("Dry run: nothing committed (add --execute).");
    }
    Ok(())
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)` into milliseconds since the epoch.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let (date, rest) = s.split_once(['T', ' '])?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (time, offset_min) = if let Some(t) = rest.strip_suffix('Z') {
        (t, 0)
    } else {
        let i = rest.rfind(['+', '-'])?;
        let (t, off) = rest.split_at(i);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off[1..].split_once(':')?;
        (
            t,
            sign * (oh.parse::<i64>().ok()? * 60 + om.parse::<i64>().ok()?),
        )
    };
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<i64>().ok());
    let (h, mi, sec) = (t.next()??, t.next()??, t.next()??);
    let ms_frac: i64 = format!("{frac:0<3}")[..3].parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3600 + mi * 60 + sec) - offset_min * 60) * 1000 + ms_frac)
}

/// `sluice consume --group`: a real member of the group. Reads what it is assigned from the
/// committed offsets and commits after each printed batch; leaves the group on exit.
pub(super) async fn consume_in_group(
    args: &ConsumeArgs,
    group: String,
    start: Start,
    format: Format,
) -> anyhow::Result<()> {
    let config = args.consumer_config()?;
    let client = common::connect(config.client.clone()).await?;
    let mut gcfg = GroupConfig::new(group);
    for (k, v) in &args.properties {
        let ms = || v.parse::<u64>().map(Duration::from_millis);
        match k.as_str() {
            "group.instance.id" => gcfg.instance_id = Some(v.clone()),
            "session.timeout.ms" => gcfg.session_timeout = ms()?,
            "heartbeat.interval.ms" => gcfg.heartbeat_interval = ms()?,
            "max.poll.interval.ms" => gcfg.rebalance_timeout = ms()?,
            _ => {}
        }
    }
    let mut member = GroupMember::new(client.clone(), gcfg, vec![args.topic.clone()]);
    let mut consumer = Consumer::new(client, config);
    let idle_limit = args.timeout_ms.map(Duration::from_millis);
    let max = args.max_messages.unwrap_or(u64::MAX);
    let (mut count, mut last_record) = (0u64, Instant::now());
    let mut out = Vec::with_capacity(1 << 16);
    while count < max {
        if member.needs_rejoin() {
            let tps = member.join().await?;
            consumer.assign(tps.clone()).await?;
            let committed = member.committed(&tps).await?;
            for tp in &tps {
                match (committed.get(tp), start) {
                    (Some(o), _) => consumer.seek(tp, *o)?,
                    (None, Start::At(to)) => consumer.seek_to(std::slice::from_ref(tp), to)?,
                    (None, Start::Offset(o)) => consumer.seek(tp, o)?,
                }
            }
        }
        let slice = match idle_limit {
            Some(limit) => limit.saturating_sub(last_record.elapsed()).min(POLL_SLICE),
            None => POLL_SLICE,
        };
        if slice.is_zero() {
            break;
        }
        let records = consumer.poll(slice).await?;
        if records.is_empty() {
            continue;
        }
        last_record = Instant::now();
        out.clear();
        let mut next: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        for r in records.iter().take((max - count) as usize) {
            format.write(r, &mut out);
            next.insert(
                TopicPartition::new(r.topic.to_string(), r.partition),
                r.offset + 1,
            );
            count += 1;
        }
        let mut lock = std::io::stdout().lock();
        if lock.write_all(&out).and_then(|()| lock.flush()).is_err() {
            break;
        }
        drop(lock);
        let offsets: Vec<(TopicPartition, i64)> = next.into_iter().collect();
        if let Err(e) = member.commit(&offsets).await {
            // A rebalance took the partitions: the new owner starts from the last commit.
            tracing::debug!(error = %e, "commit refused; rejoining");
        }
    }
    member.leave().await;
    eprintln!("Processed a total of {count} messages");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_parse_to_epoch_ms() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ms("2026-11-22T10:00:00Z"),
            Some(1_795_341_600_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-11-22T11:00:00.5+01:00"),
            Some(1_795_341_600_500)
        );
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
        assert_eq!(parse_rfc3339_ms("2026-13-01T00:00:00Z"), None);
    }
}

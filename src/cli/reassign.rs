//! `sluice cluster reassign`: partition reassignment plans, like Kafka's
//! `kafka-reassign-partitions.sh`. `--generate` prints a plan moving the given topics onto
//! the given brokers (evenly, keeping replicas already there where possible); `--execute`
//! submits a plan (AlterPartitionReassignments) and prints the current assignment to roll
//! back with; `--verify` reports each partition (exits 1 while any still moves, `--wait`
//! polls until all are done) and, once done, removes the throttles; `--cancel` cancels the
//! plan's moves; `--decommission` moves every replica off a broker onto the other live ones
//! and waits; `--list` shows every move in progress.
//!
//! `--throttle BYTES_PER_SEC` (with `--execute` or `--decommission`) does what Kafka's tool
//! does: sets `leader.replication.throttled.replicas` / `follower.replication.throttled.replicas`
//! on the moving topics (current replicas as leaders, added ones as followers) and the
//! dynamic broker configs `leader.replication.throttled.rate` /
//! `follower.replication.throttled.rate` on every broker (IncrementalAlterConfigs on the
//! BROKER resource).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{ArgGroup, Args};

use super::common::{self, ConnectArgs};
use super::reassign_plan::{self, Current, Plan, Progress, Spread};
use crate::client::reassign_admin::{self, Move};
use crate::client::{Admin, Client, ConfigAlteration, ConfigResource};
use crate::runtime;

/// How often `--wait` looks again.
const POLL: Duration = Duration::from_millis(500);

const LEADER_REPLICAS: &str = "leader.replication.throttled.replicas";
const FOLLOWER_REPLICAS: &str = "follower.replication.throttled.replicas";
const LEADER_RATE: &str = "leader.replication.throttled.rate";
const FOLLOWER_RATE: &str = "follower.replication.throttled.rate";

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("action").required(true).args(
    ["generate", "execute", "verify", "cancel", "decommission", "list"]
)))]
pub struct ReassignArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Print a plan moving --topics onto --brokers
    #[arg(long, requires_all = ["topics", "brokers"])]
    pub generate: bool,
    /// Start the moves of --plan
    #[arg(long, requires = "plan")]
    pub execute: bool,
    /// Report the progress of --plan (exit 1 while moving); removes the throttles when done
    #[arg(long, requires = "plan")]
    pub verify: bool,
    /// Cancel the moves of --plan still in progress
    #[arg(long, requires = "plan")]
    pub cancel: bool,
    /// Move every replica off this broker onto the other live brokers, and wait
    #[arg(long, value_name = "BROKER_ID")]
    pub decommission: Option<i32>,
    /// Show every reassignment in progress
    #[arg(long)]
    pub list: bool,
    /// Topics to move (with --generate), comma-separated
    #[arg(long, value_delimiter = ',', value_name = "TOPIC,...")]
    pub topics: Vec<String>,
    /// Brokers to move onto (with --generate), comma-separated
    #[arg(long, value_delimiter = ',', value_name = "ID,...")]
    pub brokers: Vec<i32>,
    /// The plan file in Kafka's reassignment JSON format ('-' = stdin)
    #[arg(long, value_name = "FILE")]
    pub plan: Option<String>,
    /// With --verify: poll until every move is done
    #[arg(long)]
    pub wait: bool,
    /// How long --wait (and --decommission) wait at most, in seconds
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
    pub timeout: u64,
    /// Limit the replication traffic of the moves to this many bytes/s per broker
    #[arg(long, value_name = "BYTES_PER_SEC")]
    pub throttle: Option<u64>,
}

pub fn run(a: ReassignArgs) -> i32 {
    common::run(reassign(a))
}

async fn reassign(a: ReassignArgs) -> anyhow::Result<()> {
    let client = common::connect(a.connect.client_config()?).await?;
    if a.generate {
        let current = current_of(&client, Some(&a.topics)).await?;
        let plan = reassign_plan::generate(&current, &a.brokers, Spread::Even)
            .map_err(anyhow::Error::msg)?;
        println!("{}", plan.to_json());
        return Ok(());
    }
    if a.list {
        for o in reassign_admin::list_partition_reassignments(&client, None).await? {
            println!(
                "{}-{}\treplicas {:?}\tadding {:?}\tremoving {:?}",
                o.topic, o.partition, o.replicas, o.adding, o.removing
            );
        }
        return Ok(());
    }
    if let Some(broker) = a.decommission {
        return decommission(&client, broker, a.throttle, deadline(a.timeout)).await;
    }
    let plan = read_plan(a.plan.as_deref().unwrap_or("-"))?;
    if a.execute {
        execute(&client, &plan, a.throttle).await
    } else if a.verify {
        let until = a.wait.then(|| deadline(a.timeout));
        verify(&client, &plan, until).await
    } else {
        cancel(&client, &plan).await
    }
}

fn deadline(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

fn read_plan(path: &str) -> anyhow::Result<Plan> {
    let text = if path == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading the plan from stdin")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading the plan {path}"))?
    };
    Plan::parse(&text).map_err(anyhow::Error::msg)
}

/// Every partition's current replicas, of the named topics (`None`: all topics).
async fn current_of(client: &Client, topics: Option<&[String]>) -> anyhow::Result<Vec<Current>> {
    let (meta, missing) = client.refresh(topics).await?;
    if let Some(t) = missing.first() {
        bail!("topic '{}' does not exist", t.name);
    }
    Ok(meta
        .topics
        .values()
        .filter(|t| topics.is_none_or(|names| names.contains(&t.name)))
        .flat_map(|t| {
            t.partitions.iter().map(|p| Current {
                topic: t.name.clone(),
                partition: p.partition,
                replicas: p.replicas.clone(),
            })
        })
        .collect())
}

async fn execute(client: &Client, plan: &Plan, throttle: Option<u64>) -> anyhow::Result<()> {
    let topics: Vec<String> = plan
        .partitions
        .iter()
        .map(|p| p.topic.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let current = current_of(client, Some(&topics)).await?;
    let before: Vec<_> = plan
        .partitions
        .iter()
        .filter_map(|p| {
            current
                .iter()
                .find(|c| c.topic == p.topic && c.partition == p.partition)
        })
        .map(|c| reassign_plan::PlannedPartition {
            topic: c.topic.clone(),
            partition: c.partition,
            replicas: c.replicas.clone(),
            log_dirs: None,
        })
        .collect();
    println!(
        "Current partition replica assignment\n\n{}\n\nSave this to use as the --plan of a later --execute to roll back",
        Plan::new(before).to_json()
    );
    if let Some(rate) = throttle {
        set_throttles(client, &current, plan, rate).await?;
    }
    let moves: Vec<Move> = plan
        .partitions
        .iter()
        .map(|p| Move {
            topic: p.topic.clone(),
            partition: p.partition,
            replicas: Some(p.replicas.clone()),
        })
        .collect();
    let outcomes = reassign_admin::alter_partition_reassignments(client, &moves).await?;
    report(&moves, outcomes, "start the reassignment of")?;
    println!(
        "Successfully started partition reassignment{} for {}",
        if moves.len() == 1 { "" } else { "s" },
        names(&moves)
    );
    Ok(())
}

async fn cancel(client: &Client, plan: &Plan) -> anyhow::Result<()> {
    let moves: Vec<Move> = plan
        .partitions
        .iter()
        .map(|p| Move {
            topic: p.topic.clone(),
            partition: p.partition,
            replicas: None,
        })
        .collect();
    let outcomes = reassign_admin::alter_partition_reassignments(client, &moves).await?;
    report(&moves, outcomes, "cancel the reassignment of")?;
    println!(
        "Successfully cancelled partition reassignments for: {}",
        names(&moves)
    );
    Ok(())
}

fn names(moves: &[Move]) -> String {
    moves
        .iter()
        .map(|m| format!("{}-{}", m.topic, m.partition))
        .collect::<Vec<_>>()
        .join(",")
}

/// Prints each failed move; an error when any failed.
fn report(
    moves: &[Move],
    outcomes: Vec<Result<(), crate::client::ClientError>>,
    doing: &str,
) -> anyhow::Result<()> {
    let mut failed = 0;
    for (m, r) in moves.iter().zip(outcomes) {
        match r {
            Ok(()) => {}
            Err(crate::client::ClientError::Kafka(e)) if e.message.is_some() => {
                eprintln!(
                    "Failed to {doing} {}-{}: {} ({})",
                    m.topic,
                    m.partition,
                    e,
                    e.name()
                );
                failed += 1;
            }
            Err(e) => {
                eprintln!("Failed to {doing} {}-{}: {e}", m.topic, m.partition);
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} partitions failed", moves.len());
    }
    Ok(())
}

/// Reports the plan's progress, polling until `until` when given; removes the throttles
/// once every move is done.
async fn verify(client: &Client, plan: &Plan, until: Option<Instant>) -> anyhow::Result<()> {
    loop {
        let (states, moving) = progress(client, plan).await?;
        let last = moving == 0 || until.is_none_or(|t| Instant::now() >= t);
        if last {
            for (p, s) in &states {
                println!("{}", reassign_plan::progress_line(p, s));
            }
        }
        if moving == 0 {
            let failed = states.iter().filter(|(_, s)| *s != Progress::Done).count();
            clear_throttles(client, plan).await?;
            if failed > 0 {
                bail!("{failed} partitions do not have the planned replicas");
            }
            return Ok(());
        }
        if last {
            bail!("{moving} of {} partitions are still moving", states.len());
        }
        runtime::sleep(POLL).await;
    }
}

async fn progress(
    client: &Client,
    plan: &Plan,
) -> anyhow::Result<(Vec<(reassign_plan::PlannedPartition, Progress)>, usize)> {
    let wanted: Vec<(String, i32)> = plan
        .partitions
        .iter()
        .map(|p| (p.topic.clone(), p.partition))
        .collect();
    let ongoing: BTreeSet<(String, i32)> =
        reassign_admin::list_partition_reassignments(client, Some(&wanted))
            .await?
            .into_iter()
            .map(|o| (o.topic, o.partition))
            .collect();
    let topics: Vec<String> = wanted
        .iter()
        .map(|w| w.0.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let current = current_of(client, Some(&topics)).await?;
    let states = reassign_plan::verify(plan, &ongoing, &current);
    let moving = states
        .iter()
        .filter(|(_, s)| *s == Progress::Moving)
        .count();
    Ok((states, moving))
}

async fn live_brokers(client: &Client) -> anyhow::Result<Vec<i32>> {
    let cluster = Admin::new(client.clone()).describe_cluster().await?;
    Ok(cluster
        .brokers
        .iter()
        .map(|b| b.id)
        .filter(|id| !cluster.fenced.contains(id))
        .collect())
}

async fn decommission(
    client: &Client,
    broker: i32,
    throttle: Option<u64>,
    until: Instant,
) -> anyhow::Result<()> {
    let live = live_brokers(client).await?;
    let others: Vec<i32> = live.iter().copied().filter(|b| *b != broker).collect();
    let current = current_of(client, None).await?;
    let holds = current.iter().any(|c| c.replicas.contains(&broker));
    if holds && others.is_empty() {
        bail!("broker {broker} is the only live broker: there is nowhere to move its replicas");
    }
    let plan = reassign_plan::generate(&current, &others, Spread::OffDisallowed)
        .map_err(anyhow::Error::msg)?;
    if plan.partitions.is_empty() {
        println!("Broker {broker} holds no replicas.");
        return Ok(());
    }
    println!(
        "Moving {} partitions off broker {broker} onto {others:?}",
        plan.partitions.len()
    );
    execute(client, &plan, throttle).await?;
    verify(client, &plan, Some(until)).await?;
    println!("Broker {broker} holds no replicas.");
    Ok(())
}

/// Kafka's throttle: the topics' throttled replicas and every broker's rates.
async fn set_throttles(
    client: &Client,
    current: &[Current],
    plan: &Plan,
    rate: u64,
) -> anyhow::Result<()> {
    let admin = Admin::new(client.clone());
    for (topic, (leaders, followers)) in reassign_plan::throttled_replicas(current, plan) {
        let changes = [
            ConfigAlteration::Set(LEADER_REPLICAS.into(), leaders),
            ConfigAlteration::Set(FOLLOWER_REPLICAS.into(), followers),
        ];
        admin
            .incremental_alter_configs(&ConfigResource::Topic(topic), &changes, false)
            .await?;
    }
    for b in live_brokers(client).await? {
        let changes = [
            ConfigAlteration::Set(LEADER_RATE.into(), rate.to_string()),
            ConfigAlteration::Set(FOLLOWER_RATE.into(), rate.to_string()),
        ];
        admin
            .incremental_alter_configs(&ConfigResource::Broker(b), &changes, false)
            .await?;
    }
    println!("The inter-broker throttle limit was set to {rate} B/s");
    Ok(())
}

/// Removes what `set_throttles` set (as Kafka's `--verify` does once the moves are done).
async fn clear_throttles(client: &Client, plan: &Plan) -> anyhow::Result<()> {
    let admin = Admin::new(client.clone());
    let topics: BTreeSet<&str> = plan.partitions.iter().map(|p| p.topic.as_str()).collect();
    for topic in topics {
        let changes = [
            ConfigAlteration::Delete(LEADER_REPLICAS.into()),
            ConfigAlteration::Delete(FOLLOWER_REPLICAS.into()),
        ];
        admin
            .incremental_alter_configs(&ConfigResource::Topic(topic.to_owned()), &changes, false)
            .await?;
    }
    for b in live_brokers(client).await? {
        let changes = [
            ConfigAlteration::Delete(LEADER_RATE.into()),
            ConfigAlteration::Delete(FOLLOWER_RATE.into()),
        ];
        admin
            .incremental_alter_configs(&ConfigResource::Broker(b), &changes, false)
            .await?;
    }
    Ok(())
}

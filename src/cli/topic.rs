//! `sluice topic create|list|describe|alter-config|delete`: what `kafka-topics.sh` does, with
//! the same output layout for `describe`; `describe --configs` and `alter-config` do what
//! `kafka-configs.sh --entity-type topics` does.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use super::common::{self, key_value, ConnectArgs};
use super::configs::configs_table;
use crate::client::{
    Admin, ClientError, ConfigAlteration, ConfigEntry, ConfigResource, NewTopic, TopicInfo,
};

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    ///
    /// Examples:
    ///   sluice topic create trucks_gps --partitions 10 --replication-factor 1
    ///   sluice topic create audit --config retention.ms=604800000 --config cleanup.policy=compact
    ///   sluice topic create trucks_gps --if-not-exists -b kafka1:9092
    #[command(verbatim_doc_comment)]
    Create(CreateArgs),
    /// List topic names, one per line.
    ///
    /// Examples:
    ///   sluice topic list
    ///   sluice topic list --exclude-internal -b kafka1:9092,kafka2:9092
    #[command(verbatim_doc_comment)]
    List(ListArgs),
    /// Describe topics: partition count, replication factor and configs, then each
    /// partition's leader, replicas and in-sync replicas (as kafka-topics --describe).
    ///
    /// Examples:
    ///   sluice topic describe trucks_gps
    ///   sluice topic describe                  # every topic
    ///   sluice topic describe orders payments
    ///   sluice topic describe orders --configs  # every config: value, source, default or not
    #[command(verbatim_doc_comment)]
    Describe(DescribeArgs),
    /// Change some of a topic's configs, leaving the others as they are.
    ///
    /// Examples:
    ///   sluice topic alter-config orders --set retention.ms=86400000
    ///   sluice topic alter-config orders --set cleanup.policy=compact --set min.compaction.lag.ms=60000
    ///   sluice topic alter-config orders --delete retention.ms     # back to the broker's value
    #[command(verbatim_doc_comment)]
    AlterConfig(AlterConfigArgs),
    /// Delete topics and their data.
    ///
    /// Examples:
    ///   sluice topic delete trucks_gps
    ///   sluice topic delete old_a old_b --if-exists
    #[command(verbatim_doc_comment)]
    Delete(DeleteArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Topic name
    pub topic: String,
    /// Number of partitions [default: the broker's num.partitions]
    #[arg(long, short = 'p')]
    pub partitions: Option<i32>,
    /// Copies of each partition [default: the broker's default.replication.factor]
    #[arg(long, short = 'r')]
    pub replication_factor: Option<i16>,
    /// Topic config as key=value (e.g. retention.ms=86400000); repeatable
    #[arg(long = "config", short = 'c', value_parser = key_value, value_name = "KEY=VALUE")]
    pub configs: Vec<(String, String)>,
    /// Succeed without change if the topic exists
    #[arg(long)]
    pub if_not_exists: bool,
    /// Check the request with the broker but create nothing
    #[arg(long)]
    pub validate_only: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Leave out internal topics (such as __consumer_offsets)
    #[arg(long)]
    pub exclude_internal: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// Topics to describe [default: all]
    pub topics: Vec<String>,
    /// Show every config of each topic (value, source, whether it is the default) instead
    /// of its partitions
    #[arg(long)]
    pub configs: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("change").required(true).multiple(true).args(["set", "delete"])))]
pub struct AlterConfigArgs {
    /// Topic name
    pub topic: String,
    /// Set a config as key=value; repeatable
    #[arg(long, value_parser = key_value, value_name = "KEY=VALUE")]
    pub set: Vec<(String, String)>,
    /// Remove the topic's own value of a config (the broker's applies again); repeatable
    #[arg(long, value_name = "KEY")]
    pub delete: Vec<String>,
    /// Check the change with the broker but apply nothing
    #[arg(long)]
    pub validate_only: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Topics to delete
    #[arg(required = true)]
    pub topics: Vec<String>,
    /// Succeed for topics that do not exist
    #[arg(long)]
    pub if_exists: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub fn run(cmd: TopicCommand) -> i32 {
    match cmd {
        TopicCommand::Create(a) => common::run(create(a)),
        TopicCommand::List(a) => common::run(list(a)),
        TopicCommand::Describe(a) => common::run(describe(a)),
        TopicCommand::AlterConfig(a) => common::run(alter_config(a)),
        TopicCommand::Delete(a) => common::run(delete(a)),
    }
}

async fn admin(connect: &ConnectArgs) -> anyhow::Result<Admin> {
    let client = common::connect(connect.client_config()?).await?;
    Ok(Admin::new(client))
}

async fn create(a: CreateArgs) -> anyhow::Result<()> {
    let admin = admin(&a.connect).await?;
    let topic = NewTopic {
        name: a.topic.clone(),
        partitions: a.partitions.unwrap_or(-1),
        replication_factor: a.replication_factor.unwrap_or(-1),
        configs: a.configs,
    };
    let mut outcomes = admin.create_topics(&[topic], a.validate_only).await?;
    let (name, outcome) = outcomes
        .pop()
        .context("the broker did not answer for the topic")?;
    match outcome {
        Ok(()) if a.validate_only => println!("Topic {name} can be created."),
        Ok(()) => println!("Created topic {name}."),
        Err(e) if a.if_not_exists && e.kafka_code() == Some(36) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

async fn list(a: ListArgs) -> anyhow::Result<()> {
    let admin = admin(&a.connect).await?;
    for t in admin.list_topics().await? {
        if a.exclude_internal && (t.internal || t.name.starts_with("__")) {
            continue;
        }
        println!("{}", t.name);
    }
    Ok(())
}

async fn describe(a: DescribeArgs) -> anyhow::Result<()> {
    let admin = admin(&a.connect).await?;
    let topics: Vec<Result<TopicInfo, ClientError>> = if a.topics.is_empty() {
        admin.list_topics().await?.into_iter().map(Ok).collect()
    } else {
        admin.describe_topics(&a.topics).await?
    };
    let mut errors = Vec::new();
    for t in topics {
        match t {
            Ok(t) if a.configs => {
                let resource = ConfigResource::Topic(t.name.clone());
                let configs = admin.describe_configs(&resource).await?;
                print!("Topic: {}\n{}", t.name, configs_table(&configs));
            }
            Ok(t) => {
                let configs = admin.describe_topic_configs(&t.name).await?;
                print!("{}", describe_text(&t, configs.as_deref()));
            }
            Err(e) => errors.push(e),
        }
    }
    // Every failure is reported; the last one through the exit path.
    let last = errors.pop();
    for e in errors {
        eprintln!("Error: {e}");
    }
    match last {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// kafka-topics' --describe layout: a topic line, then one tab-indented line per partition.
pub fn describe_text(t: &TopicInfo, configs: Option<&[ConfigEntry]>) -> String {
    let overrides: Vec<String> = configs
        .unwrap_or(&[])
        .iter()
        .filter(|c| c.is_topic_override())
        .map(|c| format!("{}={}", c.name, c.value.as_deref().unwrap_or("")))
        .collect();
    let rf = t.partitions.first().map_or(0, |p| p.replicas.len());
    let mut out = format!(
        "Topic: {}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {}\n",
        t.name,
        topic_id_text(&t.topic_id),
        t.partitions.len(),
        rf,
        overrides.join(",")
    );
    for p in &t.partitions {
        let leader = if p.leader >= 0 {
            p.leader.to_string()
        } else {
            "none".to_owned()
        };
        out.push_str(&format!(
            "\tTopic: {}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}\n",
            t.name,
            p.partition,
            leader,
            ids(&p.replicas),
            ids(&p.isr)
        ));
    }
    out
}

fn ids(v: &[i32]) -> String {
    v.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// Kafka prints a topic id as URL-safe base64 without padding (22 characters).
pub fn topic_id_text(id: &[u8; 16]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(22);
    for chunk in id.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize] as char);
        }
    }
    out
}

async fn alter_config(a: AlterConfigArgs) -> anyhow::Result<()> {
    let admin = admin(&a.connect).await?;
    let alterations: Vec<ConfigAlteration> = a
        .set
        .into_iter()
        .map(|(k, v)| ConfigAlteration::Set(k, v))
        .chain(a.delete.into_iter().map(ConfigAlteration::Delete))
        .collect();
    let resource = ConfigResource::Topic(a.topic.clone());
    admin
        .incremental_alter_configs(&resource, &alterations, a.validate_only)
        .await?;
    if a.validate_only {
        println!("The configs of topic {} can be changed.", a.topic);
    } else {
        println!("Changed the configs of topic {}.", a.topic);
    }
    Ok(())
}

async fn delete(a: DeleteArgs) -> anyhow::Result<()> {
    let admin = admin(&a.connect).await?;
    let outcomes = admin.delete_topics(&a.topics).await?;
    let mut failed = 0;
    let mut last = None;
    for (name, outcome) in outcomes {
        match outcome {
            Ok(()) => println!("Deleted topic {name}."),
            Err(ClientError::UnknownTopic(_)) if a.if_exists => {}
            Err(e) => {
                failed += 1;
                last = Some(e);
            }
        }
    }
    match (failed, last) {
        (0, _) | (_, None) => Ok(()),
        (1, Some(e)) => Err(e.into()),
        (n, Some(e)) => bail!("{n} topics were not deleted; the last: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::PartitionInfo;

    #[test]
    fn topic_id_is_kafka_base64() {
        // Kafka's Uuid.toString of 00..0f
        let id: [u8; 16] = std::array::from_fn(|i| i as u8);
        assert_eq!(topic_id_text(&id), "AAECAwQFBgcICQoLDA0ODw");
        assert_eq!(topic_id_text(&[0xff; 16]), "_____________________w");
    }

    #[test]
    fn describe_matches_kafka_topics_layout() {
        let t = TopicInfo {
            name: "t".into(),
            topic_id: [0; 16],
            internal: false,
            error: 0,
            partitions: vec![PartitionInfo {
                partition: 0,
                leader: 1,
                leader_epoch: 0,
                replicas: vec![1, 2],
                isr: vec![1],
                offline: vec![],
                error: 0,
            }],
        };
        let configs = [
            ConfigEntry {
                name: "retention.ms".into(),
                value: Some("1000".into()),
                source: 1,
                read_only: false,
            },
            ConfigEntry {
                name: "segment.bytes".into(),
                value: Some("1".into()),
                source: 5,
                read_only: false,
            },
        ];
        assert_eq!(
            describe_text(&t, Some(&configs)),
            "Topic: t\tTopicId: AAAAAAAAAAAAAAAAAAAAAA\tPartitionCount: 1\tReplicationFactor: 2\tConfigs: retention.ms=1000\n\
             \tTopic: t\tPartition: 0\tLeader: 1\tReplicas: 1,2\tIsr: 1\n"
        );
    }
}

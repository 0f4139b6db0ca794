//! Config listings shared by `sluice topic describe --configs` and `sluice broker config`
//! (what `kafka-configs.sh --describe --all` shows): one row per config with its value, where
//! the value comes from (Kafka's source names) and whether it is the built-in default.

use clap::{Args, Subcommand};

use super::common::{self, ConnectArgs};
use crate::client::admin::config_source_name;
use crate::client::{Admin, ConfigEntry, ConfigResource};

#[derive(Debug, Subcommand)]
pub enum BrokerCommand {
    /// Show a broker's configs (DescribeConfigs of the broker): value, source, default.
    ///
    /// Examples:
    ///   sluice broker config
    ///   sluice broker config --bootstrap-server kafka1:9092 --broker-id 2
    #[command(verbatim_doc_comment)]
    Config(BrokerConfigArgs),
}

#[derive(Debug, Args)]
pub struct BrokerConfigArgs {
    /// The broker to describe [default: the lowest broker id in the cluster]
    #[arg(long)]
    pub broker_id: Option<i32>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub fn run(cmd: BrokerCommand) -> i32 {
    match cmd {
        BrokerCommand::Config(a) => common::run(broker_config(a)),
    }
}

async fn broker_config(a: BrokerConfigArgs) -> anyhow::Result<()> {
    let client = common::connect(a.connect.client_config()?).await?;
    let admin = Admin::new(client);
    let broker_id = match a.broker_id {
        Some(id) => id,
        None => lowest_broker_id(&admin).await?,
    };
    let configs = admin
        .describe_configs(&ConfigResource::Broker(broker_id))
        .await?;
    print!("Broker: {broker_id}\n{}", configs_table(&configs));
    Ok(())
}

async fn lowest_broker_id(admin: &Admin) -> anyhow::Result<i32> {
    let cluster = admin.describe_cluster().await?;
    cluster
        .brokers
        .iter()
        .map(|b| b.id)
        .min()
        .ok_or_else(|| anyhow::anyhow!("the cluster lists no brokers"))
}

/// A header row, then one row per config: name, value, source, default, read-only, in
/// columns as wide as their longest cell. A config without a value (sensitive, or unset
/// without a default) shows `-`.
pub fn configs_table(configs: &[ConfigEntry]) -> String {
    let header = ["CONFIG", "VALUE", "SOURCE", "DEFAULT", "READ-ONLY"];
    let rows: Vec<[String; 5]> = configs
        .iter()
        .map(|c| {
            [
                c.name.clone(),
                c.value.clone().unwrap_or_else(|| "-".to_owned()),
                config_source_name(c.source).to_owned(),
                c.is_default().to_string(),
                c.read_only.to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut push_row = |cells: [&str; 5]| {
        let line: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    };
    push_row(header);
    for row in &rows {
        push_row([&row[0], &row[1], &row[2], &row[3], &row[4]]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, value: Option<&str>, source: i8, read_only: bool) -> ConfigEntry {
        ConfigEntry {
            name: name.into(),
            value: value.map(Into::into),
            source,
            read_only,
        }
    }

    #[test]
    fn configs_table_aligns_columns_and_names_sources() {
        let table = configs_table(&[
            entry("retention.ms", Some("1000"), 1, false),
            entry("cleanup.policy", Some("delete"), 5, false),
            entry("log.retention.ms", None, 4, true),
        ]);
        assert_eq!(
            table,
            "CONFIG            VALUE   SOURCE                DEFAULT  READ-ONLY\n\
             retention.ms      1000    DYNAMIC_TOPIC_CONFIG  false    false\n\
             cleanup.policy    delete  DEFAULT_CONFIG        true     false\n\
             log.retention.ms  -       STATIC_BROKER_CONFIG  false    true\n"
        );
    }
}

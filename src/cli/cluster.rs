//! `sluice cluster info`: the cluster id, the controller and every broker;
//! `sluice cluster unregister ID`: removes a stopped broker from the cluster's registry.
//! `sluice cluster reassign`: partition reassignment (in `reassign`).

use clap::{Args, Subcommand};

use super::common::{self, ConnectArgs};
use crate::client::{Admin, ClusterDescription};

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Show the cluster id, the controller and the brokers.
    ///
    /// Examples:
    ///   sluice cluster info
    ///   sluice cluster info --bootstrap-server kafka1:9092
    ///   SLUICE_BROKERS=kafka1:9092,kafka2:9092 sluice cluster info
    #[command(verbatim_doc_comment)]
    Info(InfoArgs),
    /// Remove a broker's registration (Kafka's UnregisterBroker), e.g. one shut down for
    /// good. It is no longer listed; the partitions it held keep it as an offline replica
    /// until they are reassigned. A broker still running registers again.
    ///
    /// Examples:
    ///   sluice cluster unregister 4 --bootstrap-server kafka1:9092
    #[command(verbatim_doc_comment)]
    Unregister(UnregisterArgs),
    /// Move partition replicas between brokers (plans in Kafka's reassignment JSON).
    ///
    /// Examples:
    ///   sluice cluster reassign --generate --topics orders --brokers 1,2,3 > plan.json
    ///   sluice cluster reassign --execute --plan plan.json --throttle 10000000
    ///   sluice cluster reassign --verify --plan plan.json --wait
    ///   sluice cluster reassign --cancel --plan plan.json
    ///   sluice cluster reassign --decommission 3
    ///   sluice cluster reassign --list
    #[command(verbatim_doc_comment)]
    Reassign(super::reassign::ReassignArgs),
}

#[derive(Debug, Args)]
pub struct UnregisterArgs {
    /// The node id of the broker to remove.
    pub id: i32,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub fn run(cmd: ClusterCommand) -> i32 {
    match cmd {
        ClusterCommand::Info(a) => common::run(info(a)),
        ClusterCommand::Unregister(a) => common::run(unregister(a)),
        ClusterCommand::Reassign(a) => super::reassign::run(a),
    }
}

async fn unregister(a: UnregisterArgs) -> anyhow::Result<()> {
    let client = common::connect(a.connect.client_config()?).await?;
    Admin::new(client).unregister_broker(a.id).await?;
    println!("Broker {} unregistered.", a.id);
    Ok(())
}

async fn info(a: InfoArgs) -> anyhow::Result<()> {
    let client = common::connect(a.connect.client_config()?).await?;
    let cluster = Admin::new(client).describe_cluster().await?;
    print!("{}", info_text(&cluster));
    Ok(())
}

/// The report: one `Name: value` line each for id and controller, then a line per broker.
pub fn info_text(c: &ClusterDescription) -> String {
    let controller = if c.controller_id >= 0 {
        c.controller_id.to_string()
    } else {
        "none".to_owned()
    };
    let mut out = format!(
        "Cluster ID: {}\nController: {controller}\nBrokers: {}\n",
        c.cluster_id.as_deref().unwrap_or("(none)"),
        c.brokers.len()
    );
    for b in &c.brokers {
        let role = if b.id == c.controller_id {
            "\tcontroller"
        } else {
            ""
        };
        let state = if c.fenced.contains(&b.id) {
            "\tfenced"
        } else {
            "\tunfenced"
        };
        let rack = b
            .rack
            .as_deref()
            .map(|r| format!("\track {r}"))
            .unwrap_or_default();
        out.push_str(&format!("  {}\t{}{rack}{state}{role}\n", b.id, b.address()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::BrokerInfo;

    #[test]
    fn info_names_id_controller_and_brokers() {
        let c = ClusterDescription {
            cluster_id: Some("abc".into()),
            controller_id: 1,
            brokers: vec![BrokerInfo {
                id: 1,
                host: "h".into(),
                port: 9092,
                rack: None,
            }],
            fenced: vec![],
        };
        assert_eq!(
            info_text(&c),
            "Cluster ID: abc\nController: 1\nBrokers: 1\n  1\th:9092\tunfenced\tcontroller\n"
        );
    }
}

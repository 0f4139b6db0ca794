//! `sluice txn` (list, describe, producers — like `kafka-transactions.sh`): open and recent
//! transactions, one transactional id's state and partitions, and the producers each partition
//! of a topic knows.

use clap::{Args, Subcommand};

use super::common::{self, ConnectArgs};
use crate::client::txn_admin::{self, ProducerDescription, TxnDescription, TxnListing};

#[derive(Debug, Subcommand)]
pub enum TxnCommand {
    /// List transactional ids with their producer id and state.
    ///
    /// Examples:
    ///   sluice txn list
    ///   sluice txn list --state Ongoing
    #[command(verbatim_doc_comment)]
    List(ListArgs),
    /// One transactional id: state, producer id and epoch, timeout, start time, partitions.
    ///
    /// Examples:
    ///   sluice txn describe payments-processor-1
    #[command(verbatim_doc_comment)]
    Describe(DescribeArgs),
    /// The producers each partition of a topic knows (id, epoch, last sequence, open
    /// transaction's first offset).
    ///
    /// Examples:
    ///   sluice txn producers payments
    #[command(verbatim_doc_comment)]
    Producers(ProducersArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only transactions in this state (Empty, Ongoing, PrepareCommit, PrepareAbort,
    /// CompleteCommit, CompleteAbort); repeatable
    #[arg(long = "state")]
    pub states: Vec<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// Transactional id
    pub transactional_id: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct ProducersArgs {
    /// Topic
    pub topic: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub fn run(cmd: TxnCommand) -> i32 {
    match cmd {
        TxnCommand::List(a) => common::run(list(a)),
        TxnCommand::Describe(a) => common::run(describe(a)),
        TxnCommand::Producers(a) => common::run(producers(a)),
    }
}

async fn list(a: ListArgs) -> anyhow::Result<()> {
    let client = common::connect(a.connect.client_config()?).await?;
    let found = txn_admin::list_transactions(&client, &a.states).await?;
    print!("{}", list_text(&found));
    Ok(())
}

async fn describe(a: DescribeArgs) -> anyhow::Result<()> {
    let client = common::connect(a.connect.client_config()?).await?;
    let d = txn_admin::describe_transaction(&client, &a.transactional_id).await?;
    print!("{}", describe_text(&d));
    Ok(())
}

async fn producers(a: ProducersArgs) -> anyhow::Result<()> {
    let client = common::connect(a.connect.client_config()?).await?;
    let found = txn_admin::describe_producers(&client, &a.topic).await?;
    print!("{}", producers_text(&a.topic, &found));
    Ok(())
}

pub fn list_text(found: &[TxnListing]) -> String {
    let mut out = String::from("TransactionalId\tProducerId\tState\n");
    for t in found {
        out.push_str(&format!("{}\t{}\t{}\n", t.txn_id, t.producer_id, t.state));
    }
    out
}

pub fn describe_text(d: &TxnDescription) -> String {
    let partitions: Vec<String> = d
        .partitions
        .iter()
        .map(|(t, p)| format!("{t}-{p}"))
        .collect();
    format!(
        "TransactionalId: {}\nState: {}\nProducerId: {}\nProducerEpoch: {}\nTimeoutMs: {}\nStartTimeMs: {}\nPartitions: {}\n",
        d.txn_id,
        d.state,
        d.producer_id,
        d.epoch,
        d.timeout_ms,
        d.start_ms,
        partitions.join(",")
    )
}

pub fn producers_text(topic: &str, found: &[ProducerDescription]) -> String {
    let mut out = String::from(
        "Partition\tProducerId\tProducerEpoch\tLastSequence\tLastTimestamp\tCoordinatorEpoch\tCurrentTransactionStartOffset\n",
    );
    for p in found {
        out.push_str(&format!(
            "{topic}-{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            p.partition,
            p.producer_id,
            p.epoch,
            p.last_sequence,
            p.last_timestamp,
            p.coordinator_epoch,
            p.txn_start_offset
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_lists_partitions_as_topic_dash_partition() {
        let d = TxnDescription {
            txn_id: "t".into(),
            state: "Ongoing".into(),
            timeout_ms: 60000,
            start_ms: 5,
            producer_id: 7,
            epoch: 2,
            partitions: vec![("a".into(), 0), ("b".into(), 3)],
        };
        let text = describe_text(&d);
        assert!(text.contains("State: Ongoing\n"), "{text}");
        assert!(text.contains("Partitions: a-0,b-3\n"), "{text}");
    }
}

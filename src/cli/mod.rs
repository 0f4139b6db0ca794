//! The `sluice` command line (clap). `sluice broker` starts a broker; the client commands
//! (topic, produce, consume, cluster) build on the Kafka client in `client/`, one file each.
//! A failing command prints one `Error: ...` line and exits 1; usage errors exit 2.

mod bench;
mod cluster;
mod common;
mod configs;
mod consume;
mod format;
mod group;
mod produce;
mod reassign;
mod reassign_plan;
mod topic;
mod tune;
mod txn;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{ConfigFile, Durability};

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "A Kafka-compatible, thread-per-core event streaming broker"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a broker.
    ///
    /// Examples:
    ///   sluice broker                                  # 127.0.0.1:9092, data in ./data
    ///   sluice broker --listen 0.0.0.0:9092 --advertised-listener kafka1:9092 --cores 4
    ///   sluice broker --profile throughput --data-dir /var/lib/sluice
    ///   sluice broker --profile latency --config site.toml --metrics-listen 0.0.0.0:9644
    ///   sluice broker config -b kafka1:9092            # a running broker's configs
    #[command(verbatim_doc_comment, args_conflicts_with_subcommands = true)]
    Broker(BrokerArgs),
    /// Create, list, describe and delete topics.
    ///
    /// Examples:
    ///   sluice topic create trucks_gps --partitions 10 --replication-factor 1
    ///   sluice topic list
    ///   sluice topic describe trucks_gps
    ///   sluice topic delete trucks_gps
    #[command(subcommand, verbatim_doc_comment)]
    Topic(topic::TopicCommand),
    /// Write stdin to a topic, one record per line.
    ///
    /// Examples:
    ///   echo hello | sluice produce trucks_gps
    ///   sluice produce trucks_gps --key-separator : --acks all --compression zstd < lines.txt
    ///   sluice produce trucks_gps -H source=gps --linger-ms 20 --batch-size 65536 --print-offsets
    ///   sluice produce trucks_gps -X max.in.flight.requests.per.connection=1 -X retries=10
    #[command(verbatim_doc_comment)]
    Produce(produce::ProduceArgs),
    /// Print a topic's records to stdout.
    ///
    /// Examples:
    ///   sluice consume trucks_gps --from-beginning
    ///   sluice consume trucks_gps --from-beginning --format '%p %o %k %v' --max-messages 10
    ///   sluice consume trucks_gps --partition 3 --offset 1000 --print-key --timeout-ms 5000
    ///   sluice consume trucks_gps --from-timestamp 1700000000000 --format '%T %h %v'
    #[command(verbatim_doc_comment)]
    Consume(consume::ConsumeArgs),
    /// Describe the cluster.
    ///
    /// Examples:
    ///   sluice cluster info
    ///   sluice cluster info --bootstrap-server kafka1:9092
    #[command(subcommand, verbatim_doc_comment)]
    Cluster(cluster::ClusterCommand),
    /// List, describe (with lag), reset offsets of, and delete consumer groups.
    ///
    /// Examples:
    ///   sluice group list
    ///   sluice group describe dashboard
    ///   sluice group reset-offsets dashboard --topic trucks_gps --to-earliest --execute
    ///   sluice group delete dashboard
    #[command(subcommand, verbatim_doc_comment)]
    Group(group::GroupCommand),
    /// List and describe transactions and the producers of a topic's partitions.
    ///
    /// Examples:
    ///   sluice txn list --state Ongoing
    ///   sluice txn describe payments-processor-1
    ///   sluice txn producers payments
    #[command(subcommand, verbatim_doc_comment)]
    Txn(txn::TxnCommand),
    /// Measure a Kafka-compatible cluster: throughput and latency percentiles, as JSON.
    ///
    /// Examples:
    ///   sluice bench --workload bench/workloads/max-throughput-1kb-8p.toml -o run.json
    ///   sluice bench produce --partitions 8 --record-size 1024 --duration 30 --acks all
    ///   sluice bench e2e --rate 100MB/s --linger-ms 1 -b 127.0.0.1:9092 --broker-pid 4242
    ///   sluice bench consume --partitions 8 --consumers 2
    ///   sluice bench plot sluice.json kafka.json -o latency.svg
    #[command(verbatim_doc_comment)]
    Bench(Box<bench::BenchArgs>),
    /// Tune the host (like `rpk redpanda tune`) or pick a profile for a latency target.
    ///
    /// Examples:
    ///   sluice tune check --data-dir /var/lib/sluice --cores 7
    ///   sluice tune apply --data-dir /var/lib/sluice --cores 7
    ///   sluice tune undo
    ///   sluice tune slo --p99 2ms -b kafka1:9092 --apply-cmd './restart-with.sh' -o site.toml
    #[command(subcommand, verbatim_doc_comment)]
    Tune(tune::TuneCommand),
}

/// Every flag has a config-file key of the same name with underscores.
#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// Instead of running a broker, ask a running one
    #[command(subcommand)]
    pub command: Option<configs::BrokerCommand>,
    /// TOML config file; flags override its keys.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Tuning profile under the config file and flags: latency, balanced or throughput
    #[arg(long)]
    pub profile: Option<String>,
    /// Data directory [default: ./data]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// host:port to listen on; port 0 picks a free port [default: 127.0.0.1:9092]
    #[arg(long)]
    pub listen: Option<String>,
    /// host:port clients are told to connect to [default: the listen address]
    #[arg(long)]
    pub advertised_listener: Option<String>,
    /// This broker's node.id [default: 1]
    #[arg(long)]
    pub node_id: Option<i32>,
    /// Shards (one per core) [default: all cores]
    #[arg(long)]
    pub cores: Option<usize>,
    /// fsync (acknowledge after fdatasync, the default) or interval
    #[arg(long, value_parser = parse_durability)]
    pub durability: Option<Durability>,
    /// host:port of the Prometheus metrics and admin HTTP API [default: off]
    #[arg(long)]
    pub metrics_listen: Option<String>,
    /// The controller quorum, id@host:port,... (Kafka's controller.quorum.voters); a broker
    /// whose --node-id is not listed joins as an observer [default: none: a single node]
    #[arg(long)]
    pub controller_voters: Option<String>,
    /// host:port this voter's controller listener binds [default: its voters entry]
    #[arg(long)]
    pub controller_listen: Option<String>,
    /// This broker's rack (Kafka's broker.rack)
    #[arg(long)]
    pub rack: Option<String>,
}

fn parse_durability(s: &str) -> Result<Durability, String> {
    match s {
        "fsync" => Ok(Durability::Fsync),
        "interval" => Ok(Durability::Interval),
        other => Err(format!("{other:?} is not fsync or interval")),
    }
}

impl BrokerArgs {
    fn overrides(&self) -> ConfigFile {
        ConfigFile {
            data_dir: self.data_dir.clone(),
            listen: self.listen.clone(),
            advertised_listener: self.advertised_listener.clone(),
            node_id: self.node_id,
            cores: self.cores,
            durability: self.durability,
            profile: self.profile.clone(),
            metrics_listen: self.metrics_listen.clone(),
            controller_voters: self.controller_voters.clone(),
            controller_listen: self.controller_listen.clone(),
            rack: self.rack.clone(),
            ..Default::default()
        }
    }
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    crate::runtime::install_crash_report();
    let cli = Cli::parse();
    match cli.command {
        Command::Broker(BrokerArgs {
            command: Some(cmd), ..
        }) => configs::run(cmd),
        Command::Broker(args) => run_broker(args),
        Command::Topic(cmd) => topic::run(cmd),
        Command::Produce(args) => produce::run(args),
        Command::Consume(args) => consume::run(args),
        Command::Cluster(cmd) => cluster::run(cmd),
        Command::Group(cmd) => group::run(cmd),
        Command::Txn(cmd) => txn::run(cmd),
        Command::Bench(args) => bench::run(*args),
        Command::Tune(cmd) => tune::run(cmd),
    }
}

fn run_broker(args: BrokerArgs) -> i32 {
    init_logging();
    let file = match &args.config {
        Some(path) => match ConfigFile::load(path) {
            Ok(f) => f,
            Err(e) => return fail(&e),
        },
        None => ConfigFile::default(),
    };
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    let layered = ConfigFile::layered(file, args.overrides());
    let config = match layered.and_then(|c| c.resolve(available)) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    match crate::server::run(config) {
        Ok(()) => 0,
        Err(e) => fail(&format!("{e:#}")),
    }
}

fn fail(e: &dyn std::fmt::Display) -> i32 {
    eprintln!("Error: {e:#}");
    1
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

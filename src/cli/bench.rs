//! `sluice bench`: runs a workload (a file from `bench/workloads/`, flags on top) against any
//! Kafka-compatible cluster, prints a progress line every second and a summary at the end,
//! and writes the JSON report; `sluice bench plot` draws reports side by side.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::bench::plot::plot;
use crate::bench::ratio_plot;
use crate::bench::report::Report;
use crate::bench::{self, Mode, Payload, RecordSize, RunOptions, Workload};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    /// Without a subcommand: run the workload file's own mode.
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Producers only: throughput and send→ack latency.
    Produce(RunArgs),
    /// Consumers only, reading a topic filled first (from the tail cache).
    Consume(RunArgs),
    /// Producers and consumers: also end-to-end latency.
    E2e(RunArgs),
    /// Draw reports as latency percentile curves and a throughput bar chart.
    ///
    /// Examples:
    ///   sluice bench plot sluice.json kafka.json -o latency.svg
    ///   sluice bench plot bench/results/*.json -o bench/results/latency.png
    #[command(verbatim_doc_comment)]
    Plot(PlotArgs),
    /// Draw a peer comparison (bench/compare --kafka) as sluice's advantage per figure.
    ///
    /// Example:
    ///   sluice bench plot-ratios bench/results/kafka-compare.json -o kafka-compare.svg
    #[command(verbatim_doc_comment)]
    PlotRatios(PlotRatiosArgs),
}

#[derive(Debug, Args)]
pub struct PlotRatiosArgs {
    /// Summary written by bench/compare --kafka
    pub summary: PathBuf,
    /// Picture to write: .svg or .png
    #[arg(short, long)]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Report files written by `sluice bench --output`
    #[arg(required = true)]
    pub reports: Vec<PathBuf>,
    /// Picture to write: .svg or .png
    #[arg(short, long)]
    pub output: PathBuf,
}

/// Flags override the workload file, which overrides the defaults.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Workload file (TOML), e.g. bench/workloads/max-throughput-1kb-8p.toml
    #[arg(long, short = 'w')]
    pub workload: Option<PathBuf>,
    /// Broker(s) to start from, as host:port[,host:port...]
    #[arg(
        long = "bootstrap-server",
        short = 'b',
        env = "SLUICE_BROKERS",
        default_value = "localhost:9092",
        value_name = "HOST:PORT"
    )]
    pub bootstrap: String,
    /// Write the JSON report here
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// The broker's process id, to report its CPU time (same machine only)
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// Keep the topic the run created
    #[arg(long)]
    pub keep_topic: bool,
    /// No progress line
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Topic to use (default: a fresh one, deleted afterwards)
    #[arg(long)]
    pub topic: Option<String>,
    #[arg(long)]
    pub partitions: Option<i32>,
    /// Replication factor of the topic the run creates
    #[arg(long)]
    pub replication_factor: Option<i16>,
    /// Value size in bytes: N or MIN-MAX
    #[arg(long, value_parser = RecordSize::parse)]
    pub record_size: Option<RecordSize>,
    /// Distinct keys (0: null keys)
    #[arg(long)]
    pub keys: Option<u64>,
    /// random or compressible
    #[arg(long, value_parser = parse_payload)]
    pub payload: Option<Payload>,
    #[arg(long)]
    pub producers: Option<usize>,
    /// Consumers per group
    #[arg(long)]
    pub consumers: Option<usize>,
    /// Consumer groups, each reading every record
    #[arg(long)]
    pub groups: Option<usize>,
    /// Target rate: records/s (e.g. 50000) or MB/s (e.g. 100MB/s); 0: as fast as possible
    #[arg(long)]
    pub rate: Option<String>,
    /// Measured seconds
    #[arg(long)]
    pub duration: Option<f64>,
    /// Records to produce instead of a duration
    #[arg(long)]
    pub records: Option<u64>,
    /// Seconds before measuring starts
    #[arg(long)]
    pub warmup: Option<f64>,
    /// 0, 1 or all
    #[arg(long)]
    pub acks: Option<String>,
    #[arg(long)]
    pub linger_ms: Option<u64>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// none, gzip, snappy, lz4 or zstd
    #[arg(long)]
    pub compression: Option<String>,
    #[arg(long)]
    pub idempotence: bool,
    /// Transactional producers committing every N records; reports commit latency
    #[arg(long, value_name = "N")]
    pub transaction_records: Option<u64>,
    /// Harness threads, one pinned executor per core (default: one per core)
    #[arg(long)]
    pub threads: Option<usize>,
}

fn parse_payload(s: &str) -> Result<Payload, String> {
    match s {
        "random" => Ok(Payload::Random),
        "compressible" => Ok(Payload::Compressible),
        _ => Err(format!("payload must be random or compressible, not '{s}'")),
    }
}

impl RunArgs {
    /// The workload file (or the defaults) with these flags applied.
    pub fn workload(&self, mode: Option<Mode>) -> Result<Workload, String> {
        let mut w = match &self.workload {
            Some(path) => Workload::load(path)?,
            None => Workload::default(),
        };
        if let Some(m) = mode {
            w.mode = m;
        }
        macro_rules! set {
            ($($field:ident <- $flag:ident),*) => {$(
                if let Some(v) = &self.$flag { w.$field = v.clone(); }
            )*};
        }
        set!(topic <- topic, partitions <- partitions,
             replication_factor <- replication_factor, record_size <- record_size,
             keys <- keys, payload <- payload, producers <- producers,
             consumers <- consumers, consumer_groups <- groups, warmup_s <- warmup,
             acks <- acks, linger_ms <- linger_ms, batch_size <- batch_size,
             compression <- compression, threads <- threads);
        if let Some(d) = self.duration {
            w.duration_s = d;
            w.records = 0;
        }
        if let Some(n) = self.records {
            w.records = n;
            w.duration_s = 0.0;
        }
        if let Some(rate) = &self.rate {
            let (records, mb) = parse_rate(rate)?;
            w.rate_records_per_s = records;
            w.rate_mb_per_s = mb;
        }
        w.idempotence |= self.idempotence;
        if let Some(n) = self.transaction_records {
            w.transaction_records = n;
        }
        w.validate()?;
        Ok(w)
    }
}

/// `50000` (records/s) or `100MB/s`; returns (records/s, MB/s).
fn parse_rate(s: &str) -> Result<(f64, f64), String> {
    let bad = || format!("rate must be records/s (50000) or MB/s (100MB/s), not '{s}'");
    let t = s.trim();
    if let Some(mb) = t.strip_suffix("MB/s").or_else(|| t.strip_suffix("mb/s")) {
        return Ok((0.0, mb.trim().parse().map_err(|_| bad())?));
    }
    let records = t.trim_end_matches("/s").parse().map_err(|_| bad())?;
    Ok((records, 0.0))
}

pub fn run(args: BenchArgs) -> i32 {
    let outcome = match args.command {
        Some(BenchCommand::Plot(p)) => run_plot(p),
        Some(BenchCommand::PlotRatios(p)) => run_plot_ratios(p),
        Some(BenchCommand::Produce(r)) => run_workload(r, Some(Mode::Produce)),
        Some(BenchCommand::Consume(r)) => run_workload(r, Some(Mode::Consume)),
        Some(BenchCommand::E2e(r)) => run_workload(r, Some(Mode::E2e)),
        None if args.run.workload.is_none() => Err(anyhow::anyhow!(
            "give a mode (produce, consume, e2e) or --workload FILE; see sluice bench --help"
        )),
        None => run_workload(args.run, None),
    };
    match outcome {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error: {e:#}");
            1
        }
    }
}

fn run_workload(args: RunArgs, mode: Option<Mode>) -> anyhow::Result<()> {
    let w = args.workload(mode).map_err(anyhow::Error::msg)?;
    let opts = RunOptions {
        bootstrap: args.bootstrap.clone(),
        broker_pid: args.broker_pid,
        progress: !args.quiet,
        keep_topic: args.keep_topic,
    };
    let report = bench::run(&w, &opts)?;
    println!("{}", summary(&report));
    if let Some(path) = &args.output {
        std::fs::write(path, report.to_json() + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// The human-readable summary printed at the end of a run.
pub fn summary(r: &Report) -> String {
    let mut out = format!(
        "{} ({:?}) against {}: {:.1} s measured\n",
        r.name, r.mode, r.bootstrap, r.measured_s
    );
    if r.produce.records > 0 {
        out += &format!(
            "  produced {:.0} records/s, {:.1} MB/s\n",
            r.produce.records_per_s, r.produce.mb_per_s
        );
    }
    if r.consume.records > 0 {
        out += &format!(
            "  consumed {:.0} records/s, {:.1} MB/s\n",
            r.consume.records_per_s, r.consume.mb_per_s
        );
    }
    let kinds = [
        ("produce", &r.latency.produce),
        ("end-to-end", &r.latency.end_to_end),
        ("transaction commit", &r.latency.txn_commit),
    ];
    for (name, s) in kinds {
        if let Some(s) = s {
            out += &format!(
                "  {name} latency ms: p50 {:.3} p90 {:.3} p99 {:.3} p99.9 {:.3} p99.99 {:.3} max {:.3}\n",
                s.p50_us / 1e3, s.p90_us / 1e3, s.p99_us / 1e3, s.p999_us / 1e3,
                s.p9999_us / 1e3, s.max_us / 1e3
            );
        }
    }
    out += &format!("  errors {}", r.errors);
    if let Some(first) = r.error_samples.first() {
        out += &format!(" (first: {first})");
    }
    out += &format!("\n  harness CPU {:.2} cores", r.cpu.harness_cores);
    if let Some(b) = r.cpu.broker_cores {
        out += &format!(", broker CPU {b:.2} cores");
    }
    if let Some(g) = r.cpu.broker_s_per_gb_produced {
        out += &format!(", {g:.2} broker CPU s per GB produced");
    }
    out
}

fn run_plot(args: PlotArgs) -> anyhow::Result<()> {
    let mut runs = Vec::new();
    for path in &args.reports {
        let report = Report::load(path).map_err(anyhow::Error::msg)?;
        let label = path
            .file_stem()
            .map_or_else(|| report.name.clone(), |s| s.to_string_lossy().into_owned());
        runs.push((label, report));
    }
    plot(&runs, &args.output)?;
    eprintln!("wrote {}", args.output.display());
    Ok(())
}

fn run_plot_ratios(args: PlotRatiosArgs) -> anyhow::Result<()> {
    ratio_plot::plot_file(&args.summary, &args.output)?;
    eprintln!("wrote {}", args.output.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: BenchArgs,
    }

    #[test]
    fn rates_parse_as_records_or_megabytes() {
        assert_eq!(parse_rate("50000"), Ok((50000.0, 0.0)));
        assert_eq!(parse_rate("100MB/s"), Ok((0.0, 100.0)));
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn flags_override_the_workload_file() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/bench/workloads/max-throughput-1kb-8p.toml"
        );
        let w = Wrap::parse_from([
            "x",
            "e2e",
            "-w",
            path,
            "--partitions",
            "3",
            "--rate",
            "10MB/s",
            "--records",
            "500",
        ]);
        let Some(BenchCommand::E2e(run)) = w.args.command else {
            panic!("e2e subcommand");
        };
        let wl = run.workload(Some(Mode::E2e)).unwrap();
        assert_eq!(wl.name, "max-throughput-1kb-8p");
        assert_eq!(wl.mode, Mode::E2e);
        assert_eq!(wl.partitions, 3);
        assert_eq!(wl.rate_mb_per_s, 10.0);
        assert_eq!((wl.records, wl.duration_s), (500, 0.0));
        assert_eq!(wl.batch_size, 1_048_576);
    }
}

//! `sluice tune`: host checks (`check`, `apply`, `undo`) and latency-SLO tuning (`slo`).

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::bench::{Mode, RecordSize, Workload};
use crate::config::PROFILES;
use crate::tune::host::{self, Finding, Status, Target};
use crate::tune::journal::{self, RootFs, DEFAULT_JOURNAL};
use crate::tune::slo::{self, Candidate, SloRun};

#[derive(Debug, Subcommand)]
pub enum TuneCommand {
    /// Report each host setting as ok, would change, or not applicable.
    Check(HostArgs),
    /// Change what `check` reports as would change; the old values go to the journal.
    Apply(HostArgs),
    /// Put back everything `apply` changed.
    Undo(JournalArgs),
    /// Measure candidate profiles against a cluster; write the fastest one meeting a p99.
    ///
    /// Examples:
    ///   sluice tune slo --p99 2ms -b kafka1:9092 -o tuning/site.toml \
    ///     --apply-cmd 'ansible-playbook ansible/rolling_restart.yml -e sluice_profile_file=$SLUICE_PROFILE'
    ///   sluice tune slo --p99 5ms --mode e2e --profiles latency,throughput --apply-cmd ./restart.sh
    #[command(verbatim_doc_comment)]
    Slo(SloArgs),
}

#[derive(Debug, Args)]
pub struct JournalArgs {
    /// Where apply records the values it replaced
    #[arg(long, default_value = DEFAULT_JOURNAL)]
    pub journal: PathBuf,
}

#[derive(Debug, Args)]
pub struct HostArgs {
    /// The broker's data directory (its disk is the one tuned)
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,
    /// Shards the broker will run (they take the first CPUs; the rest take interrupts)
    /// [default: all CPUs]
    #[arg(long)]
    pub cores: Option<usize>,
    #[command(flatten)]
    pub journal: JournalArgs,
}

#[derive(Debug, Args)]
pub struct SloArgs {
    /// The latency target, e.g. 2ms or 500us
    #[arg(long, value_parser = slo::parse_latency)]
    pub p99: std::time::Duration,
    #[arg(
        long = "bootstrap-server",
        short = 'b',
        env = "SLUICE_BROKERS",
        default_value = "localhost:9092"
    )]
    pub bootstrap: String,
    /// Shell command that restarts the cluster with the profile file $SLUICE_PROFILE and
    /// returns once it serves again
    #[arg(long)]
    pub apply_cmd: String,
    /// Candidate profiles, built-in names or TOML files
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "latency,balanced,throughput"
    )]
    pub profiles: Vec<String>,
    /// produce (p99 of send to ack) or e2e (p99 of send to consume)
    #[arg(long, default_value = "produce", value_parser = parse_mode)]
    pub mode: Mode,
    #[arg(long, default_value_t = 8)]
    pub partitions: i32,
    #[arg(long, default_value = "1024", value_parser = RecordSize::parse)]
    pub record_size: RecordSize,
    /// 0, 1 or all
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// Measured seconds per run
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Fractions of the full-speed throughput to offer when full speed misses the target
    #[arg(long, value_delimiter = ',', default_value = "0.8,0.6,0.4,0.2,0.1")]
    pub steps: Vec<f64>,
    /// Profile file to write
    #[arg(long, short = 'o', default_value = "sluice-slo.toml")]
    pub output: PathBuf,
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    match s {
        "produce" => Ok(Mode::Produce),
        "e2e" => Ok(Mode::E2e),
        _ => Err(format!("mode must be produce or e2e, not '{s}'")),
    }
}

pub fn run(cmd: TuneCommand) -> i32 {
    let outcome = match cmd {
        TuneCommand::Check(a) => check(&a).map(|_| ()),
        TuneCommand::Apply(a) => apply(&a),
        TuneCommand::Undo(a) => undo(&a),
        TuneCommand::Slo(a) => run_slo(&a),
    };
    match outcome {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error: {e:#}");
            1
        }
    }
}

fn target(args: &HostArgs) -> Target {
    let data_device = std::fs::metadata(&args.data_dir)
        .or_else(|_| std::fs::metadata(args.data_dir.parent().unwrap_or(&args.data_dir)))
        .ok()
        .map(|m| (libc::major(m.dev()), libc::minor(m.dev())));
    Target {
        data_device,
        shard_cores: args.cores,
    }
}

fn print(findings: &[Finding]) {
    for f in findings {
        println!("{:<15} {:<22} {}", f.status.label(), f.item, f.detail);
    }
}

fn check(args: &HostArgs) -> anyhow::Result<Vec<Finding>> {
    let fs = RootFs::new("/");
    if host::is_virtual_machine(&fs) {
        println!("host: virtual machine (hypervisor flag in /proc/cpuinfo)");
    }
    let findings = host::check_all(&fs, &target(args));
    print(&findings);
    let changes = findings
        .iter()
        .filter(|f| f.status == Status::WouldChange)
        .count();
    println!(
        "{changes} would change; `sluice tune apply` changes them, `sluice tune undo` reverts"
    );
    Ok(findings)
}

fn apply(args: &HostArgs) -> anyhow::Result<()> {
    let fs = RootFs::new("/");
    let findings = host::check_all(&fs, &target(args));
    let written = journal::apply(&fs, &findings, &args.journal.journal)?;
    for path in &written {
        println!("changed {path}");
    }
    println!(
        "{} files changed; old values in {}",
        written.len(),
        args.journal.journal.display()
    );
    Ok(())
}

fn undo(args: &JournalArgs) -> anyhow::Result<()> {
    let n = journal::undo(&RootFs::new("/"), &args.journal)?;
    println!("{n} files restored");
    Ok(())
}

fn candidate(spec: &str) -> anyhow::Result<Candidate> {
    if let Some((name, text)) = PROFILES.iter().find(|(n, _)| *n == spec) {
        return Ok(Candidate {
            name: name.to_string(),
            toml: text.to_string(),
        });
    }
    let path = PathBuf::from(spec);
    let toml = std::fs::read_to_string(&path)
        .with_context(|| format!("{spec} is neither a built-in profile nor a readable file"))?;
    crate::config::ConfigFile::parse(&toml)
        .with_context(|| format!("{spec} is not a broker config"))?;
    let name = path
        .file_stem()
        .map_or(spec.to_owned(), |s| s.to_string_lossy().into_owned());
    Ok(Candidate { name, toml })
}

fn run_slo(args: &SloArgs) -> anyhow::Result<()> {
    let candidates = args
        .profiles
        .iter()
        .map(|p| candidate(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let workload = Workload {
        name: "tune-slo".into(),
        description: format!("sluice tune slo, p99 target {:?}", args.p99),
        mode: args.mode,
        partitions: args.partitions,
        record_size: args.record_size,
        producers: 2,
        consumers: if args.mode == Mode::E2e { 2 } else { 0 },
        consumer_groups: if args.mode == Mode::E2e { 1 } else { 0 },
        acks: args.acks.clone(),
        duration_s: args.duration,
        records: 0,
        warmup_s: args.warmup,
        ..Workload::default()
    };
    workload.validate().map_err(anyhow::Error::msg)?;
    let opts = SloRun {
        p99: args.p99,
        bootstrap: args.bootstrap.clone(),
        apply_cmd: args.apply_cmd.clone(),
        candidates,
        workload,
        steps: args.steps.clone(),
        scratch: std::env::temp_dir().join(format!("sluice-tune-slo-{}", std::process::id())),
        progress: true,
    };
    let results = slo::run(&opts)?;
    let _ = std::fs::remove_dir_all(&opts.scratch);
    let kind = if args.mode == Mode::E2e {
        "end-to-end"
    } else {
        "produce"
    };
    let Some(text) = slo::profile_file(&results, args.p99, kind) else {
        for r in &results {
            if let Some(f) = &r.failure {
                eprintln!("{}: {f}", r.candidate.name);
            }
        }
        anyhow::bail!("no candidate met p99 {:?} at any offered rate", args.p99);
    };
    std::fs::write(&args.output, &text)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    print!(
        "{}",
        text.lines()
            .take_while(|l| l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    );
    println!("wrote {}", args.output.display());
    Ok(())
}

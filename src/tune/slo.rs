//! `sluice tune slo`: latency-SLO tuning from measurement. For each candidate profile the
//! tuner has the cluster run with it (a command the operator gives, e.g. a rolling restart
//! that installs the profile), measures the highest throughput (`sluice bench` at full
//! speed), then, if the p99 misses the target there, steps the offered rate down until it
//! meets it. The candidate with the highest throughput whose p99 met the target is written
//! out as a profile file, with every measurement in its header.
//!
//! The choice itself ([`best_measurement`], [`choose`], [`profile_file`]) is sans-io; the
//! runner around it applies candidates and runs the bench.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::bench::{self, Mode, RunOptions, Workload};

/// A profile to try: its name and its TOML text (broker config keys).
#[derive(Debug, Clone)]
pub struct Candidate {
    pub name: String,
    pub toml: String,
}

/// One bench run.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// Offered rate, MB/s; 0 for as fast as the producers go.
    pub offered_mb_per_s: f64,
    pub mb_per_s: f64,
    pub p99: Duration,
    pub errors: u64,
}

impl Measurement {
    pub fn meets(&self, slo: Duration) -> bool {
        self.errors == 0 && self.p99 <= slo && self.mb_per_s > 0.0
    }
}

/// Everything measured under one candidate.
#[derive(Debug, Clone)]
pub struct CandidateResult {
    pub candidate: Candidate,
    pub measurements: Vec<Measurement>,
    /// Why the candidate could not be measured, if it could not.
    pub failure: Option<String>,
}

/// The highest-throughput measurement that meets the SLO.
pub fn best_measurement(measurements: &[Measurement], slo: Duration) -> Option<&Measurement> {
    measurements
        .iter()
        .filter(|m| m.meets(slo))
        .max_by(|a, b| a.mb_per_s.total_cmp(&b.mb_per_s))
}

/// The candidate whose best SLO-meeting throughput is highest.
pub fn choose(
    results: &[CandidateResult],
    slo: Duration,
) -> Option<(&CandidateResult, &Measurement)> {
    results
        .iter()
        .filter_map(|r| best_measurement(&r.measurements, slo).map(|m| (r, m)))
        .max_by(|a, b| a.1.mb_per_s.total_cmp(&b.1.mb_per_s))
}

/// Offered rates to try after a full-speed run missed the SLO: fractions of what it reached.
pub fn rate_ladder(max_mb_per_s: f64, steps: &[f64]) -> Vec<f64> {
    steps
        .iter()
        .map(|f| max_mb_per_s * f)
        .filter(|r| *r > 0.0)
        .collect()
}

/// Parses `2ms`, `500us`, `1.5ms`, `0.002s`.
pub fn parse_latency(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("us").or_else(|| t.strip_suffix("µs")) {
        (n, 1e-6)
    } else if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else {
        return Err(format!("latency must have a unit (us, ms, s): '{text}'"));
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("not a latency: '{text}'"))?;
    if !(value > 0.0 && value.is_finite()) {
        return Err(format!("latency must be positive: '{text}'"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

/// The profile file to write: the winner's settings under a header of every measurement.
pub fn profile_file(
    results: &[CandidateResult],
    slo: Duration,
    latency_kind: &str,
) -> Option<String> {
    let (winner, best) = choose(results, slo)?;
    let mut out = format!(
        "# Written by `sluice tune slo`: the candidate with the highest throughput whose {latency_kind}\n\
         # p99 met {:.3} ms. Chosen: {} at {:.1} MB/s (p99 {:.3} ms).\n#\n# Measured (offered MB/s, 0 = full speed -> MB/s, p99 ms, errors):\n",
        ms(slo),
        winner.candidate.name,
        best.mb_per_s,
        ms(best.p99)
    );
    for r in results {
        out += &format!("#   {}:", r.candidate.name);
        if let Some(f) = &r.failure {
            out += &format!(" not measured ({f})");
        }
        for m in &r.measurements {
            out += &format!(
                " [{:.1} -> {:.1}, {:.3}, {}]",
                m.offered_mb_per_s,
                m.mb_per_s,
                ms(m.p99),
                m.errors
            );
        }
        out.push('\n');
    }
    out += "\n";
    out += &winner.candidate.toml;
    Some(out)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// How the tuner runs.
#[derive(Debug, Clone)]
pub struct SloRun {
    pub p99: Duration,
    pub bootstrap: String,
    /// Shell command that makes the cluster run with `$SLUICE_PROFILE` (a file) and returns
    /// once it serves again.
    pub apply_cmd: String,
    pub candidates: Vec<Candidate>,
    /// Base workload; its rate is set by the tuner.
    pub workload: Workload,
    /// Fractions of the full-speed throughput to offer, tried in order.
    pub steps: Vec<f64>,
    /// Where candidate files are written for the apply command.
    pub scratch: PathBuf,
    pub progress: bool,
}

/// Measures every candidate (see the module docs).
pub fn run(opts: &SloRun) -> anyhow::Result<Vec<CandidateResult>> {
    std::fs::create_dir_all(&opts.scratch)
        .with_context(|| format!("cannot create {}", opts.scratch.display()))?;
    let mut results = Vec::new();
    for candidate in &opts.candidates {
        let mut result = CandidateResult {
            candidate: candidate.clone(),
            measurements: Vec::new(),
            failure: None,
        };
        if let Err(e) = measure_candidate(opts, candidate, &mut result.measurements) {
            result.failure = Some(format!("{e:#}"));
        }
        results.push(result);
    }
    Ok(results)
}

fn measure_candidate(
    opts: &SloRun,
    candidate: &Candidate,
    out: &mut Vec<Measurement>,
) -> anyhow::Result<()> {
    let file = opts
        .scratch
        .join(format!("candidate-{}.toml", candidate.name));
    std::fs::write(&file, &candidate.toml)
        .with_context(|| format!("cannot write {}", file.display()))?;
    apply(&opts.apply_cmd, &file, &candidate.name)?;
    let full = measure(opts, 0.0)?;
    note(opts, candidate, &full);
    let max = full.mb_per_s;
    let met = full.meets(opts.p99);
    out.push(full);
    if met {
        return Ok(());
    }
    for rate in rate_ladder(max, &opts.steps) {
        let m = measure(opts, rate)?;
        note(opts, candidate, &m);
        let met = m.meets(opts.p99);
        out.push(m);
        if met {
            break;
        }
    }
    Ok(())
}

fn note(opts: &SloRun, c: &Candidate, m: &Measurement) {
    if opts.progress {
        eprintln!(
            "{}: offered {:.1} MB/s -> {:.1} MB/s, p99 {:.3} ms, {} errors",
            c.name,
            m.offered_mb_per_s,
            m.mb_per_s,
            ms(m.p99),
            m.errors
        );
    }
}

/// Runs the operator's command with `SLUICE_PROFILE` set to the candidate file.
fn apply(cmd: &str, profile: &Path, name: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("SLUICE_PROFILE", profile)
        .env("SLUICE_PROFILE_NAME", name)
        .status()
        .with_context(|| format!("cannot run the apply command {cmd:?}"))?;
    if !status.success() {
        bail!("the apply command failed ({status}) for profile {name}");
    }
    Ok(())
}

fn measure(opts: &SloRun, offered_mb_per_s: f64) -> anyhow::Result<Measurement> {
    let mut w = opts.workload.clone();
    w.rate_mb_per_s = offered_mb_per_s;
    w.rate_records_per_s = 0.0;
    let run = RunOptions {
        bootstrap: opts.bootstrap.clone(),
        broker_pid: None,
        progress: false,
        keep_topic: false,
    };
    let report = bench::run(&w, &run)?;
    let (throughput, latency) = match w.mode {
        Mode::E2e => (&report.consume, &report.latency.end_to_end),
        _ => (&report.produce, &report.latency.produce),
    };
    let p99_us = latency.as_ref().map_or(f64::INFINITY, |l| l.p99_us);
    Ok(Measurement {
        offered_mb_per_s,
        mb_per_s: throughput.mb_per_s,
        p99: Duration::from_secs_f64((p99_us / 1e6).min(3600.0)),
        errors: report.errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(offered: f64, got: f64, p99_ms: f64) -> Measurement {
        Measurement {
            offered_mb_per_s: offered,
            mb_per_s: got,
            p99: Duration::from_secs_f64(p99_ms / 1e3),
            errors: 0,
        }
    }

    fn result(name: &str, ms: Vec<Measurement>) -> CandidateResult {
        CandidateResult {
            candidate: Candidate {
                name: name.into(),
                toml: format!("# {name}\ndurability = \"fsync\"\n"),
            },
            measurements: ms,
            failure: None,
        }
    }

    #[test]
    fn highest_throughput_meeting_the_slo_wins_not_the_fastest() {
        let slo = Duration::from_millis(2);
        let results = vec![
            // Fastest at full speed, but its p99 only meets the SLO at 40 MB/s.
            result(
                "throughput",
                vec![m(0.0, 300.0, 9.0), m(240.0, 230.0, 4.0), m(40.0, 40.0, 1.9)],
            ),
            result("latency", vec![m(0.0, 150.0, 5.0), m(120.0, 118.0, 1.5)]),
            result("balanced", vec![m(0.0, 100.0, 1.0)]),
        ];
        let (winner, best) = choose(&results, slo).unwrap();
        assert_eq!(winner.candidate.name, "latency");
        assert_eq!(best.mb_per_s, 118.0);
        let text = profile_file(&results, slo, "produce").unwrap();
        assert!(text.contains("Chosen: latency at 118.0 MB/s"), "{text}");
        assert!(text.ends_with("# latency\ndurability = \"fsync\"\n"));
        assert!(crate::config::ConfigFile::parse(&text).is_ok());
    }

    #[test]
    fn runs_with_errors_or_no_throughput_never_meet_the_slo() {
        let slo = Duration::from_millis(2);
        let mut failed = m(0.0, 100.0, 1.0);
        failed.errors = 3;
        assert!(!failed.meets(slo));
        assert!(!m(0.0, 0.0, 0.5).meets(slo));
        assert!(choose(&[result("x", vec![failed])], slo).is_none());
    }

    #[test]
    fn rate_ladder_steps_down_from_the_full_speed_throughput() {
        assert_eq!(
            rate_ladder(200.0, &[0.75, 0.5, 0.25]),
            vec![150.0, 100.0, 50.0]
        );
        assert!(rate_ladder(0.0, &[0.5]).is_empty());
    }

    #[test]
    fn latency_targets_parse_with_units() {
        assert_eq!(parse_latency("2ms"), Ok(Duration::from_millis(2)));
        assert_eq!(parse_latency("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_latency("1.5ms"), Ok(Duration::from_micros(1500)));
        assert_eq!(parse_latency("0.25s"), Ok(Duration::from_millis(250)));
        assert!(parse_latency("2").is_err());
        assert!(parse_latency("-1ms").is_err());
    }
}

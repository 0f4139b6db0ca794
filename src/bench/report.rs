//! The report of a run, as JSON: throughput, errors, latency percentiles per kind, the CPU
//! time of the harness and of the broker, the machine, and the workload's parameters, so a
//! result file says everything needed to judge or repeat it. Also reads the machine
//! description and CPU times from `/proc` and `/sys`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::latency::LatencySummary;
use super::workload::{Mode, Workload};

/// Names this layout; bumped when a field changes meaning.
pub const SCHEMA: &str = "sluice-bench/1";
/// Linux reports process CPU times in USER_HZ ticks, 100 a second on every architecture.
const USER_HZ: f64 = 100.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub name: String,
    pub mode: Mode,
    pub sluice_version: String,
    /// Unix seconds at the start of the run.
    pub started_unix_s: u64,
    pub bootstrap: String,
    pub topic: String,
    /// Length of the measured phase (after the warm-up), seconds.
    pub measured_s: f64,
    pub produce: Throughput,
    pub consume: Throughput,
    /// Failed sends, deliveries and polls after the warm-up.
    pub errors: u64,
    /// The first few error messages.
    pub error_samples: Vec<String>,
    pub latency: Latencies,
    pub cpu: CpuUse,
    pub machine: Machine,
    pub parameters: Workload,
}

/// Records and value bytes in the measured phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    pub records: u64,
    pub bytes: u64,
    pub records_per_s: f64,
    /// 10^6 bytes of record values a second.
    pub mb_per_s: f64,
}

impl Throughput {
    pub fn over(records: u64, bytes: u64, seconds: f64) -> Self {
        let s = seconds.max(1e-9);
        Self {
            records,
            bytes,
            records_per_s: records as f64 / s,
            mb_per_s: bytes as f64 / s / 1e6,
        }
    }
}

/// Latency kinds; a kind the mode does not measure is absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latencies {
    /// From the intended send time (fixed rate) or the `send` call (max rate) to the ack.
    pub produce: Option<LatencySummary>,
    /// From the record's intended send (create) time to its consumption.
    pub end_to_end: Option<LatencySummary>,
    /// Transactional runs: from `commit_transaction` (which first delivers the transaction's
    /// records) to the coordinator's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn_commit: Option<LatencySummary>,
}

/// CPU seconds spent in the measured phase (user + system).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuUse {
    pub harness_s: f64,
    /// harness_s / measured_s: cores' worth of CPU the harness used.
    pub harness_cores: f64,
    pub broker_pid: Option<u32>,
    pub broker_s: Option<f64>,
    pub broker_cores: Option<f64>,
    /// Broker CPU seconds per 10^9 bytes of values produced.
    pub broker_s_per_gb_produced: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub memory_bytes: u64,
    pub kernel: String,
    pub disks: Vec<Disk>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Disk {
    pub name: String,
    pub model: String,
    pub size_bytes: u64,
    pub rotational: bool,
}

impl Report {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }

    pub fn from_json(text: &str) -> Result<Self, String> {
        let report: Self = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if report.schema != SCHEMA {
            return Err(format!(
                "schema '{}' is not '{SCHEMA}' (written by another version)",
                report.schema
            ));
        }
        Ok(report)
    }

    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// CPU seconds (user + system) used so far by a process (`None`: this one).
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    parse_stat_cpu(&stat)
}

/// utime + stime of a `/proc/PID/stat` line, in seconds. The command name (field 2) may
/// contain spaces and parentheses, so fields are counted after its closing parenthesis.
fn parse_stat_cpu(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

impl Machine {
    /// This machine, from `/proc` and `/sys`; unknown fields stay empty.
    pub fn describe() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default();
        let memory_bytes = read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024);
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            memory_bytes,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            disks: disks(),
        }
    }
}

/// Block devices, less loop, ram and device-mapper ones.
fn disks() -> Vec<Disk> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    let mut out: Vec<Disk> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            !["loop", "ram", "dm-", "zram"]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .map(|name| {
            let read = |f: &str| {
                std::fs::read_to_string(format!("/sys/block/{name}/{f}"))
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            };
            Disk {
                model: read("device/model"),
                size_bytes: read("size").parse::<u64>().unwrap_or(0) * 512,
                rotational: read("queue/rotational") == "1",
                name,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::latency::LatencyHistogram;

    fn sample() -> Report {
        let mut h = LatencyHistogram::new();
        for i in 1..1000 {
            h.record_nanos(i * 1000);
        }
        Report {
            schema: SCHEMA.into(),
            name: "max-throughput-1kb-8p".into(),
            mode: Mode::E2e,
            sluice_version: "0.1.0".into(),
            started_unix_s: 1_700_000_000,
            bootstrap: "127.0.0.1:9092".into(),
            topic: "t".into(),
            measured_s: 10.0,
            produce: Throughput::over(1000, 1_024_000, 10.0),
            consume: Throughput::over(1000, 1_024_000, 10.0),
            errors: 1,
            error_samples: vec!["boom".into()],
            latency: Latencies {
                produce: Some(h.summary()),
                end_to_end: None,
                txn_commit: None,
            },
            cpu: CpuUse {
                harness_s: 1.5,
                broker_pid: Some(42),
                ..CpuUse::default()
            },
            machine: Machine::describe(),
            parameters: Workload::default(),
        }
    }

    #[test]
    fn report_survives_a_json_round_trip() {
        let r = sample();
        let back = Report::from_json(&r.to_json()).expect("parses");
        assert_eq!(back, r);
    }

    #[test]
    fn report_json_has_the_documented_fields() {
        let v: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        for key in [
            "schema",
            "produce",
            "consume",
            "latency",
            "cpu",
            "machine",
            "parameters",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        let p = &v["latency"]["produce"];
        for key in [
            "p50_us", "p75_us", "p90_us", "p99_us", "p999_us", "p9999_us", "max_us",
        ] {
            assert!(p[key].is_number(), "missing {key}");
        }
        assert!(v["latency"]["end_to_end"].is_null());
        assert_eq!(v["produce"]["mb_per_s"], 0.1024);
    }

    #[test]
    fn another_schema_is_refused() {
        let text = sample().to_json().replace(SCHEMA, "other/9");
        assert!(Report::from_json(&text).unwrap_err().contains("other/9"));
    }

    #[test]
    fn cpu_time_is_read_past_a_command_name_with_spaces() {
        let stat = "123 (a b) c) S 1 1 1 0 -1 0 0 0 0 0 250 50 0 0 20 0 1 0 1 1 1";
        assert_eq!(parse_stat_cpu(stat), Some(3.0));
        assert!(cpu_seconds(None).is_some());
    }
}

//! A workload: every knob of a benchmark run, read from a TOML file (`bench/workloads/`)
//! and overridden by command-line flags, then checked. The names follow the OpenMessaging
//! Benchmark's workload files where there is an equivalent; producer settings carry the
//! Java client's meaning (`acks`, `linger.ms`, `batch.size`, ...).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::client::{Acks, Compression};

/// What the run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Producers only: throughput and send→ack latency.
    Produce,
    /// Consumers only, re-reading a topic the run fills first (from the tail cache when the
    /// fill fits in it).
    Consume,
    /// Producers and consumers together: also end-to-end latency.
    E2e,
}

/// A record's value size in bytes: fixed, or uniform in `min..=max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RecordSize {
    Fixed(usize),
    Range { min: usize, max: usize },
}

impl RecordSize {
    /// Parses `1024` or `100-2000`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let num = |t: &str| {
            t.trim()
                .parse::<usize>()
                .map_err(|_| format!("record size must be N or MIN-MAX, not '{s}'"))
        };
        match s.split_once('-') {
            None => Ok(Self::Fixed(num(s)?)),
            Some((a, b)) => Ok(Self::Range {
                min: num(a)?,
                max: num(b)?,
            }),
        }
    }

    pub fn min(self) -> usize {
        match self {
            Self::Fixed(n) => n,
            Self::Range { min, .. } => min,
        }
    }

    pub fn max(self) -> usize {
        match self {
            Self::Fixed(n) => n,
            Self::Range { max, .. } => max,
        }
    }

    pub fn mean(self) -> f64 {
        (self.min() + self.max()) as f64 / 2.0
    }
}

/// What record values contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Payload {
    /// Random bytes: incompressible.
    Random,
    /// Text-like bytes from a small vocabulary: compresses about 3–5×.
    Compressible,
}

/// Every knob of a run. Zero means "off" or "as fast as possible" where noted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Workload {
    pub name: String,
    pub description: String,
    pub mode: Mode,
    /// Topic to use; empty: a fresh `bench-<name>-<random>` topic, deleted afterwards.
    pub topic: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub record_size: RecordSize,
    /// Distinct keys, chosen round-robin; 0: null keys (the producer's sticky partitioner).
    pub keys: u64,
    pub payload: Payload,
    pub producers: usize,
    /// Consumers per consumer group.
    pub consumers: usize,
    /// Consumer groups: each one reads every record (fan-out).
    pub consumer_groups: usize,
    /// Target records/s over all producers; 0: as fast as possible.
    pub rate_records_per_s: f64,
    /// Target MB/s (10^6 bytes of values) over all producers; 0: use the record rate.
    pub rate_mb_per_s: f64,
    /// Measured seconds, after the warm-up; 0: stop after `records`.
    pub duration_s: f64,
    /// Records to produce in the measured phase when `duration_s` is 0.
    pub records: u64,
    /// Seconds run before measuring starts.
    pub warmup_s: f64,
    /// `consume` mode: bytes written to each partition before the run (then read again and
    /// again). The default fits sluice's 8 MiB tail cache per partition.
    pub fill_bytes_per_partition: u64,
    /// `acks`: "0", "1" or "all".
    pub acks: String,
    pub linger_ms: u64,
    pub batch_size: usize,
    /// none, gzip, snappy, lz4 or zstd.
    pub compression: String,
    pub idempotence: bool,
    /// Records per transaction: each producer is transactional and commits every this many
    /// records (0: no transactions).
    pub transaction_records: u64,
    pub max_in_flight: usize,
    pub buffer_memory: usize,
    pub fetch_max_wait_ms: u64,
    pub max_partition_fetch_bytes: i32,
    /// Executor threads of the harness, pinned one per core; 0: one per core.
    pub threads: usize,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            name: "adhoc".into(),
            description: String::new(),
            mode: Mode::Produce,
            topic: String::new(),
            partitions: 1,
            replication_factor: 1,
            record_size: RecordSize::Fixed(1024),
            keys: 0,
            payload: Payload::Random,
            producers: 1,
            consumers: 1,
            consumer_groups: 1,
            rate_records_per_s: 0.0,
            rate_mb_per_s: 0.0,
            duration_s: 10.0,
            records: 0,
            warmup_s: 2.0,
            fill_bytes_per_partition: 4 << 20,
            acks: "1".into(),
            linger_ms: 5,
            batch_size: 1 << 20,
            compression: "none".into(),
            idempotence: false,
            transaction_records: 0,
            max_in_flight: 5,
            buffer_memory: 64 << 20,
            fetch_max_wait_ms: 100,
            max_partition_fetch_bytes: 1 << 20,
            threads: 0,
        }
    }
}

/// The largest value the harness builds (Kafka's default `max.request.size` is 1 MiB).
pub const MAX_RECORD_SIZE: usize = 1 << 20;

impl Workload {
    /// Reads a workload file; its name defaults to the file's stem.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read workload {}: {e}", path.display()))?;
        let mut w: Self =
            toml::from_str(&text).map_err(|e| format!("workload {}: {e}", path.display()))?;
        if w.name == Self::default().name {
            if let Some(stem) = path.file_stem() {
                w.name = stem.to_string_lossy().into_owned();
            }
        }
        Ok(w)
    }

    /// Checks the knobs fit together; the message names the one that does not.
    pub fn validate(&self) -> Result<(), String> {
        let size = self.record_size;
        if size.min() > size.max() {
            return Err(format!(
                "record_size range {}-{} is empty",
                size.min(),
                size.max()
            ));
        }
        if size.max() > MAX_RECORD_SIZE {
            return Err(format!("record_size over {MAX_RECORD_SIZE} bytes"));
        }
        if self.partitions < 1 {
            return Err("partitions must be at least 1".into());
        }
        if self.rate_records_per_s < 0.0 || self.rate_mb_per_s < 0.0 {
            return Err("rates cannot be negative".into());
        }
        if self.rate_records_per_s > 0.0 && self.rate_mb_per_s > 0.0 {
            return Err("give rate_records_per_s or rate_mb_per_s, not both".into());
        }
        if self.duration_s <= 0.0 && self.records == 0 {
            return Err("give duration_s or records".into());
        }
        if self.mode == Mode::Consume && self.duration_s <= 0.0 {
            return Err("consume mode runs for duration_s".into());
        }
        if self.warmup_s < 0.0 {
            return Err("warmup_s cannot be negative".into());
        }
        Acks::parse(&self.acks).map_err(|e| e.to_string())?;
        Compression::parse(&self.compression).map_err(|e| e.to_string())?;
        match self.mode {
            Mode::Produce if self.producers == 0 => Err("produce mode needs producers".into()),
            Mode::Consume if self.consumers == 0 || self.consumer_groups == 0 => {
                Err("consume mode needs consumers and consumer_groups".into())
            }
            Mode::E2e if self.producers == 0 || self.consumers == 0 => {
                Err("e2e mode needs producers and consumers".into())
            }
            Mode::E2e if self.consumer_groups == 0 => Err("e2e mode needs consumer_groups".into()),
            _ => Ok(()),
        }
    }

    /// Records/s over all producers, or 0 for "as fast as possible".
    pub fn target_records_per_s(&self) -> f64 {
        if self.rate_mb_per_s > 0.0 {
            return self.rate_mb_per_s * 1e6 / self.record_size.mean().max(1.0);
        }
        self.rate_records_per_s
    }

    /// Whether producers run on a schedule (and latency is measured from it).
    pub fn fixed_rate(&self) -> bool {
        self.target_records_per_s() > 0.0
    }

    /// Consumers over all groups.
    pub fn total_consumers(&self) -> usize {
        match self.mode {
            Mode::Produce => 0,
            _ => self.consumers * self.consumer_groups,
        }
    }

    pub fn total_producers(&self) -> usize {
        match self.mode {
            Mode::Consume => 0,
            _ => self.producers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_size_parses_fixed_and_range() {
        assert_eq!(RecordSize::parse("1024"), Ok(RecordSize::Fixed(1024)));
        assert_eq!(
            RecordSize::parse("100-2000"),
            Ok(RecordSize::Range {
                min: 100,
                max: 2000
            })
        );
        assert!(RecordSize::parse("x").is_err());
        assert_eq!(RecordSize::parse("100-300").unwrap().mean(), 200.0);
    }

    #[test]
    fn toml_accepts_both_record_size_forms_and_rejects_unknown_keys() {
        let w: Workload = toml::from_str("record_size = { min = 10, max = 20 }").unwrap();
        assert_eq!(w.record_size, RecordSize::Range { min: 10, max: 20 });
        let w: Workload = toml::from_str("record_size = 100\nmode = \"e2e\"").unwrap();
        assert_eq!(w.record_size, RecordSize::Fixed(100));
        assert_eq!(w.mode, Mode::E2e);
        assert!(toml::from_str::<Workload>("recordsize = 1").is_err());
    }

    #[test]
    fn mb_rate_becomes_records_per_second() {
        let w = Workload {
            rate_mb_per_s: 100.0,
            record_size: RecordSize::Fixed(1000),
            ..Workload::default()
        };
        assert_eq!(w.target_records_per_s(), 100_000.0);
        assert!(w.fixed_rate());
        assert!(!Workload::default().fixed_rate());
    }

    #[test]
    fn validation_names_the_bad_knob() {
        let bad = Workload {
            acks: "2".into(),
            ..Workload::default()
        };
        assert!(bad.validate().unwrap_err().contains("acks"));
        let bad = Workload {
            rate_mb_per_s: 1.0,
            rate_records_per_s: 1.0,
            ..Workload::default()
        };
        assert!(bad.validate().unwrap_err().contains("not both"));
        assert_eq!(Workload::default().validate(), Ok(()));
    }

    #[test]
    fn every_workload_file_parses_and_validates() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/workloads");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("bench/workloads exists") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                let w = Workload::load(&path).unwrap_or_else(|e| panic!("{e}"));
                w.validate()
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
                assert_eq!(Some(w.name.clone()), stem, "name matches the file");
                seen += 1;
            }
        }
        assert!(seen >= 9, "expected the named workloads, found {seen}");
    }
}

//! The Prometheus text exposition format (version 0.0.4): `# HELP`/`# TYPE` once per family,
//! then one line per sample, label values escaped. Written by hand because the format is a few
//! lines of rules and the registry crates assume shared, locked metric objects, which is what
//! the per-shard design avoids.

use std::collections::BTreeSet;
use std::fmt::Write;

use super::{merge_stages, ShardSnapshot, Stage, StageHistogram};

/// Upper bounds (seconds) of the exported histogram buckets: 10 µs to 10 s.
pub const BUCKETS: [f64; 19] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Quantiles of the merged (all shards) histograms.
pub const QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];

/// Metric family kinds.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
        }
    }
}

/// Builds an exposition; every family is declared once, before its samples.
#[derive(Debug, Default)]
pub struct PrometheusText {
    out: String,
    declared: BTreeSet<String>,
}

impl PrometheusText {
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a family (once; later calls for the same name are ignored).
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        if self.declared.insert(name.to_owned()) {
            let help = help.replace('\\', "\\\\").replace('\n', "\\n");
            let _ = writeln!(self.out, "# HELP {name} {help}");
            let _ = writeln!(self.out, "# TYPE {name} {}", kind.name());
        }
    }

    /// One sample line.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", format_value(value));
    }

    /// A histogram's `_bucket`, `_sum` and `_count` lines.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &StageHistogram) {
        for le in BUCKETS {
            let le_text = format_value(le);
            let mut l = labels.to_vec();
            l.push(("le", &le_text));
            self.sample(&format!("{name}_bucket"), &l, h.count_at_most(le) as f64);
        }
        let mut l = labels.to_vec();
        l.push(("le", "+Inf"));
        self.sample(&format!("{name}_bucket"), &l, h.count() as f64);
        self.sample(&format!("{name}_sum"), labels, h.sum_seconds());
        self.sample(&format!("{name}_count"), labels, h.count() as f64);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn format_value(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    format!("{v}")
}

/// Renders every shard's snapshot: per-shard counters, requests by API (named by `api_name`),
/// per-shard stage histograms, the merged quantiles, and per-partition counters.
pub fn render_shards(
    t: &mut PrometheusText,
    snapshots: &[ShardSnapshot],
    api_name: &dyn Fn(i16) -> String,
) {
    for s in snapshots {
        let shard = s.shard.to_string();
        for (name, help, v) in &s.counters {
            let full = format!("sluice_{name}");
            t.family(&full, Kind::Counter, help);
            t.sample(&full, &[("shard", &shard)], *v as f64);
        }
        t.family(
            "sluice_requests_total",
            Kind::Counter,
            "Kafka requests received, by API.",
        );
        for (key, n) in &s.requests {
            let api = api_name(*key);
            t.sample(
                "sluice_requests_total",
                &[("shard", &shard), ("api", &api)],
                *n as f64,
            );
        }
    }
    render_histograms(t, snapshots);
    render_partitions(t, snapshots);
}

fn histogram_family(stage: Stage) -> (&'static str, &'static str, &'static str) {
    if stage.is_request() {
        (
            "sluice_request_latency_seconds",
            "api",
            "Whole-request latency, by API.",
        )
    } else {
        (
            "sluice_stage_latency_seconds",
            "stage",
            "Latency of one stage of a request: queue, cross_shard_hop, disk_write, fsync.",
        )
    }
}

fn render_histograms(t: &mut PrometheusText, snapshots: &[ShardSnapshot]) {
    for stage in Stage::ALL {
        let (family, label, help) = histogram_family(stage);
        t.family(family, Kind::Histogram, help);
        for s in snapshots {
            if let Some((_, h)) = s.stages.iter().find(|(st, _)| *st == stage) {
                let shard = s.shard.to_string();
                t.histogram(family, &[("shard", &shard), (label, stage.name())], h);
            }
        }
    }
    for (stage, h) in merge_stages(snapshots) {
        let (family, label, _) = histogram_family(stage);
        let name = format!("{}_merged", family.trim_end_matches("_seconds"));
        let name = format!("{name}_seconds");
        t.family(
            &name,
            Kind::Summary,
            "Quantiles over all shards (histograms merged exactly at scrape time).",
        );
        for q in QUANTILES {
            let q_text = format_value(q);
            t.sample(
                &name,
                &[(label, stage.name()), ("quantile", &q_text)],
                h.quantile_seconds(q),
            );
        }
        t.sample(
            &format!("{name}_sum"),
            &[(label, stage.name())],
            h.sum_seconds(),
        );
        t.sample(
            &format!("{name}_count"),
            &[(label, stage.name())],
            h.count() as f64,
        );
    }
}

/// A per-partition counter family: name, help, and which counter.
type PartitionFamily = (
    &'static str,
    &'static str,
    fn(&super::PartitionCounters) -> u64,
);

fn render_partitions(t: &mut PrometheusText, snapshots: &[ShardSnapshot]) {
    let families: [PartitionFamily; 4] = [
        (
            "sluice_partition_received_bytes_total",
            "Record-batch bytes appended to the partition.",
            |c| c.bytes_in,
        ),
        (
            "sluice_partition_sent_bytes_total",
            "Record-batch bytes read from the partition for fetches.",
            |c| c.bytes_out,
        ),
        (
            "sluice_partition_produce_requests_total",
            "Produce requests for the partition.",
            |c| c.produce_requests,
        ),
        (
            "sluice_partition_fetch_requests_total",
            "Fetch reads of the partition.",
            |c| c.fetch_requests,
        ),
    ];
    for (name, help, get) in families {
        t.family(name, Kind::Counter, help);
        for s in snapshots {
            let shard = s.shard.to_string();
            for (tp, c) in &s.partitions {
                let p = tp.partition.to_string();
                let labels = [
                    ("shard", shard.as_str()),
                    ("topic", tp.topic.as_str()),
                    ("partition", p.as_str()),
                ];
                t.sample(name, &labels, get(c) as f64);
            }
        }
    }
}

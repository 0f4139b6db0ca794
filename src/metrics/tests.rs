//! Metrics: recording, snapshots, exact merging across shards, and the text exposition.

use std::time::Duration;

use super::text::{render_shards, PrometheusText};
use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn merged_quantiles_come_from_every_shards_samples() {
    // Shard 0 is fast, shard 1 slow: the merged p99 must see shard 1's tail, the median both.
    let (a, b) = (ShardMetrics::default(), ShardMetrics::default());
    for _ in 0..900 {
        a.record(Stage::Fsync, ms(1));
    }
    for _ in 0..100 {
        b.record(Stage::Fsync, ms(50));
    }
    let merged = merge_stages(&[a.snapshot(0, None), b.snapshot(1, None)]);
    let h = &merged[&Stage::Fsync];
    assert_eq!(h.count(), 1000);
    assert!(
        (h.quantile_seconds(0.5) - 0.001).abs() < 0.00002,
        "{}",
        h.quantile_seconds(0.5)
    );
    assert!(
        (h.quantile_seconds(0.99) - 0.05).abs() < 0.001,
        "{}",
        h.quantile_seconds(0.99)
    );
    assert!((h.sum_seconds() - (0.9 + 5.0)).abs() < 1e-9);
}

#[test]
fn histogram_buckets_are_cumulative_and_end_at_the_count() {
    let m = ShardMetrics::default();
    for us in [5, 40, 400, 4_000, 40_000] {
        m.record(Stage::DiskWrite, Duration::from_micros(us));
    }
    let mut t = PrometheusText::new();
    render_shards(&mut t, &[m.snapshot(3, None)], &|k| k.to_string());
    let text = t.finish();
    let bucket = |le: &str| -> f64 {
        let prefix = format!(
            "sluice_stage_latency_seconds_bucket{{shard=\"3\",stage=\"disk_write\",le=\"{le}\"}} "
        );
        let line = text
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("{prefix}\n{text}"));
        line[prefix.len()..].parse().unwrap()
    };
    assert_eq!(bucket("0.00001"), 1.0);
    assert_eq!(bucket("0.00005"), 2.0);
    assert_eq!(bucket("0.0005"), 3.0);
    assert_eq!(bucket("0.005"), 4.0);
    assert_eq!(bucket("0.05"), 5.0);
    assert_eq!(bucket("+Inf"), 5.0);
    assert!(
        text.contains("sluice_stage_latency_seconds_count{shard=\"3\",stage=\"disk_write\"} 5\n")
    );
}

#[test]
fn each_family_is_declared_once_across_shards() {
    let (a, b) = (ShardMetrics::default(), ShardMetrics::default());
    a.count_request(0);
    b.count_request(0);
    let mut t = PrometheusText::new();
    render_shards(&mut t, &[a.snapshot(0, None), b.snapshot(1, None)], &|_| {
        "Produce".into()
    });
    let text = t.finish();
    assert_eq!(
        text.matches("# TYPE sluice_requests_total counter").count(),
        1
    );
    assert!(text.contains("sluice_requests_total{shard=\"0\",api=\"Produce\"} 1\n"));
    assert!(text.contains("sluice_requests_total{shard=\"1\",api=\"Produce\"} 1\n"));
}

#[test]
fn partitions_of_deleted_topics_are_dropped_at_snapshot() {
    let m = ShardMetrics::default();
    let tp = TopicPartition::new("gone", 0);
    m.on_partition(&tp, [1; 16], |c| c.bytes_in += 10);
    m.on_partition(&TopicPartition::new("kept", 0), [2; 16], |c| {
        c.bytes_out += 7
    });
    let live: HashSet<[u8; 16]> = [[2u8; 16]].into_iter().collect();
    let snap = m.snapshot(0, Some(&live));
    assert_eq!(snap.partitions.len(), 1);
    assert_eq!(snap.partitions[0].0.topic, "kept");
    assert_eq!(snap.partitions[0].1.bytes_out, 7);
}

#[test]
fn recreated_topic_starts_its_partition_counters_afresh() {
    let m = ShardMetrics::default();
    let tp = TopicPartition::new("t", 0);
    m.on_partition(&tp, [1; 16], |c| c.bytes_in += 100);
    m.on_partition(&tp, [9; 16], |c| c.bytes_in += 1);
    assert_eq!(m.snapshot(0, None).partitions[0].1.bytes_in, 1);
}

#[test]
fn label_values_are_escaped() {
    let mut t = PrometheusText::new();
    t.family("x", text::Kind::Gauge, "h");
    t.sample("x", &[("group", "a\"b\\c\nd")], 1.5);
    assert!(t.finish().contains("x{group=\"a\\\"b\\\\c\\nd\"} 1.5\n"));
}

//! One short real run of the benchmark harness against a test broker: starts the `sluice`
//! binary on an ephemeral loopback port, runs an e2e workload for about two seconds through
//! the bench library, and checks the report is plausible (nonzero throughput, ordered
//! percentiles, no errors), then stops the broker with SIGTERM.

use std::time::Duration;

mod common;
use common::start_broker;
use sluice::bench::{self, Mode, RecordSize, RunOptions, Workload};

#[test]
fn a_two_second_e2e_run_reports_throughput_and_sane_percentiles() {
    let broker = start_broker();
    let workload = Workload {
        name: "smoke".into(),
        mode: Mode::E2e,
        partitions: 4,
        record_size: RecordSize::Fixed(512),
        producers: 1,
        consumers: 1,
        consumer_groups: 2,
        rate_records_per_s: 5000.0,
        warmup_s: 0.5,
        duration_s: 2.0,
        linger_ms: 1,
        batch_size: 64 * 1024,
        threads: 2,
        ..Workload::default()
    };
    let opts = RunOptions {
        bootstrap: broker.addr.clone(),
        broker_pid: Some(broker.child.id()),
        progress: false,
        keep_topic: false,
    };
    let report = bench::run(&workload, &opts).expect("the run completes");
    assert_eq!(report.errors, 0, "errors: {:?}", report.error_samples);
    assert!(
        (report.measured_s - 2.0).abs() < 0.5,
        "{}",
        report.measured_s
    );
    // 5,000 records/s for 2 s, read by two groups.
    let produced = report.produce.records_per_s;
    assert!(
        (3000.0..=7000.0).contains(&produced),
        "produced {produced}/s"
    );
    assert!(
        report.consume.records_per_s > 2.0 * 3000.0,
        "{:?}",
        report.consume
    );
    for kind in [&report.latency.produce, &report.latency.end_to_end] {
        let s = kind.as_ref().expect("both latency kinds measured");
        assert!(s.count > 5000, "count {}", s.count);
        let ps = [s.p50_us, s.p90_us, s.p99_us, s.p999_us, s.max_us];
        assert!(ps[0] > 0.0, "{ps:?}");
        assert!(ps.windows(2).all(|w| w[0] <= w[1]), "{ps:?}");
        assert!(
            s.p50_us < Duration::from_secs(1).as_micros() as f64,
            "{ps:?}"
        );
    }
    assert!(report.cpu.harness_s > 0.0);
    assert!(report.cpu.broker_s.is_some());
    let back = sluice::bench::report::Report::from_json(&report.to_json()).expect("round trip");
    assert_eq!(back.produce, report.produce);
}

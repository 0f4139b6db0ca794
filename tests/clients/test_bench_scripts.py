"""The measurement scripts: bench/compare --kafka's parsing and bookkeeping (no Kafka needed:
the tools' output is given as text), and perf/restart_time.py end to end on a small log."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from conftest import REPO, SLUICE_BIN


def load_compare():
    spec = importlib.util.spec_from_file_location("kafka_compare", REPO / "bench" / "kafka-peer" / "compare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


compare = load_compare()

PRODUCER_OUTPUT = """\
Warmup first 40000 records. Steady state results will print after the complete test summary.
105316 records sent, 21063.2 records/sec (20.57 MB/sec), 1205.3 ms avg latency, 1802.0 ms max latency.
200000 records sent, 70077.084793 records/sec (68.43 MB/sec), 266.22 ms avg latency, 462.00 ms max latency, 296 ms 50th, 367 ms 95th, 386 ms 99th, 403 ms 99.9th.
160000 steady state records sent, 82056.892779 records/sec (80.13 MB/sec), 312.45 ms avg latency, 412.00 ms max latency, 312 ms 50th, 371 ms 95th, 389 ms 99th, 404 ms 99.9th.
"""

CONSUMER_OUTPUT = """\
start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
2026-12-03 15:14:44:086, 2026-12-03 15:14:50:163, 390.9258, 64.3287, 400308, 65872.6345, 3958, 2119, 184.4860, 188913.6385
"""


def test_producer_perf_summary_prefers_the_steady_state_line_and_counts_mb_in_10e6():
    figures = compare.parse_producer_perf(PRODUCER_OUTPUT, 1024)
    assert figures["produce records/s"] == pytest.approx(82056.892779)
    assert figures["produce MB/s"] == pytest.approx(82056.892779 * 1024 / 1e6)
    assert (figures["produce p50 ms"], figures["produce p99 ms"], figures["produce p99.9 ms"]) == (312, 389, 404)
    assert figures["steady-state records"] == 160000


def test_producer_perf_without_warmup_uses_the_whole_run_and_without_summary_gives_none():
    whole = "\n".join(line for line in PRODUCER_OUTPUT.splitlines() if "steady state" not in line)
    assert compare.parse_producer_perf(whole, 1024)["produce p99 ms"] == 386
    assert compare.parse_producer_perf("Exception in thread main", 1024) is None


def test_consumer_perf_throughput_is_the_fetch_phase_without_the_group_join():
    figures = compare.parse_consumer_perf(CONSUMER_OUTPUT)
    assert figures["consume MB/s"] == pytest.approx(390.9258 * 2**20 / 2.119 / 1e6)
    assert figures["records"] == 400308
    assert figures["rebalance ms"] == 3958
    assert compare.parse_consumer_perf("no header, no row") is None


def test_perf_test_runs_are_sized_from_the_brokers_measured_rate():
    ctx = SimpleNamespace(duration=3, warmup=1, scale=1.0)
    max_rate = {"records": 600_000, "rate": -1}
    # A slow broker gets what it took about 4 s to acknowledge, never under 50,000.
    assert compare.perf_records(ctx, max_rate, 20_000) == (80_000, 16_000)
    assert compare.perf_records(ctx, max_rate, 1_000) == (50_000, 10_000)
    # A fast one is capped by the workload's own count; no measurement: the count.
    assert compare.perf_records(ctx, max_rate, 10_000_000) == (600_000, 120_000)
    assert compare.perf_records(ctx, max_rate, None) == (600_000, 120_000)
    fixed = {"records": 0, "rate": 100_000}
    # Fixed rate: duration + warm-up at the rate, the warm-up second left out; a broker that
    # cannot take the rate gets its own rate's worth.
    assert compare.perf_records(ctx, fixed, None) == (400_000, 100_000)
    assert compare.perf_records(ctx, fixed, 25_000) == (100_000, 25_000)


def test_rounds_compare_as_sluice_over_kafka_with_medians_skipping_missing_sides():
    workload = {"kind": "sluice-bench", "metrics": [("produce MB/s", "higher")]}
    results = {("durable", "w"): {"workload": workload, "rounds": {
        1: {"sluice": {"produce MB/s": 300.0}, "kafka": {"produce MB/s": 100.0}},
        2: {"kafka": {"produce MB/s": 50.0}, "sluice": {"produce MB/s": 200.0}},
        3: {"sluice": {"produce MB/s": 90.0}, "kafka": {"produce MB/s": 0.0}},
    }}}
    [c] = compare.compare_rounds(results)
    assert [r["ratio"] for r in c["rounds"]] == [3.0, 4.0, None]
    assert c["median_ratio"] == 3.5
    assert (c["median_sluice"], c["median_kafka"]) == (200.0, 50.0)
    assert (c["profile"], c["metric"], c["better"]) == ("durable", "produce MB/s", "higher")


def test_ratio_plot_draws_the_summary(tmp_path):
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"date": "d", "kafka_version": "4.x", "comparisons": [
        {"profile": "durable", "workload": "w", "metric": "e2e p99 ms", "better": "lower",
         "rounds": [{"ratio": 0.5}, {"ratio": 0.25}, {"ratio": None}], "median_ratio": 0.375}]}))
    out = tmp_path / "ratios.svg"
    subprocess.run([str(SLUICE_BIN), "bench", "plot-ratios", str(summary), "-o", str(out)], check=True)
    assert "e2e p99 ms" in out.read_text()


def test_restart_time_script_times_clean_and_kill9_restarts_of_a_served_log(tmp_path):
    out = tmp_path / "restart.json"
    env = dict(os.environ, SLUICE_BIN=str(SLUICE_BIN))
    subprocess.run([sys.executable, str(REPO / "perf" / "restart_time.py"), "--gb", "0.02", "--partitions", "2",
                    "--rounds", "1", "--dir", str(tmp_path / "run"), "-o", str(out)],
                   check=True, env=env, stdout=subprocess.DEVNULL, timeout=300)
    report = json.loads(out.read_text())
    assert report["records"] == int(0.02e9 / 1024), "every produced record is in the log"
    assert [r["case"] for r in report["restarts"]] == ["clean", "kill"]
    for r in report["restarts"]:
        assert 0 < r["serving_s"] < 300
    assert report["log_bytes"] >= 0.02e9
    assert not (tmp_path / "run" / "data").exists(), "the filled log is removed afterwards"

#!/usr/bin/env python3
"""Cluster figures (issue 9) on a 3-broker cluster on loopback, started by this script.

  failover    kills the leader of each partition in turn (SIGKILL) under a steady idempotent
              producer (acks=all, RF=3, min.insync.replicas=2) with a consumer group reading,
              restarts it and waits for it to rejoin every ISR; reports the unavailability
              window per kill (kill -> first acknowledgement of a record produced after it),
              and checks no acknowledged record was lost or duplicated and order was kept
              (tests/clients/failover.py). Brokers use a 200 ms heartbeat and a 1.5 s session.
  throughput  `sluice bench produce --acks all` with replication factor 3 and 1 on the same
              cluster, alternating, and the ratio RF=3 / RF=1 per round and its median.

  perf/cluster.py failover [--kills 20] [-o bench/results/failover-3brokers.json]
  perf/cluster.py throughput [--rounds 3] [--duration 10] [-o bench/results/replication-rf3-vs-rf1.json]

Needs a release build (target/release/sluice or $SLUICE_BIN) and the test venv
(target/pyenv, made by tests/run.sh) for confluent-kafka.
"""

import argparse
import datetime
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "clients"))
import failover  # noqa: E402

SLUICE = os.environ.get("SLUICE_BIN") or os.path.join(ROOT, "target", "release", "sluice")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    def __init__(self, node_id, workdir, voters, config):
        self.node_id = node_id
        self.port = free_port()
        self.data = os.path.join(workdir, f"node{node_id}")
        self.log = open(os.path.join(workdir, f"node{node_id}.log"), "ab")
        self.args = [SLUICE, "broker", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data,
                     "--cores", "1", "--node-id", str(node_id), "--controller-voters", voters,
                     "--config", config]
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=self.log)
        for line in self.proc.stdout:
            if b"sluice ready" in line:
                return
        raise RuntimeError(f"node {self.node_id} did not start (see its log)")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


class Cluster:
    """The interface tests/clients/failover.py drives."""

    def __init__(self, workdir, n=3):
        cfg = os.path.join(workdir, "cluster.toml")
        with open(cfg, "w") as f:
            f.write(failover.FAST_FAILURE_CONFIG)
        voters = ",".join(f"{i}@127.0.0.1:{free_port()}" for i in range(1, n + 1))
        self.nodes = {i: Node(i, workdir, voters, cfg) for i in range(1, n + 1)}

    def start(self):
        for n in self.nodes.values():
            n.start()
        return self

    def running(self):
        return [i for i, n in self.nodes.items() if n.alive()]

    def bootstrap(self, node_id):
        return f"127.0.0.1:{self.nodes[node_id].port}"

    def kill9(self, node_id):
        n = self.nodes[node_id]
        n.proc.kill()
        n.proc.wait()

    def restart(self, node_id):
        self.nodes[node_id].start()

    def stop(self):
        for n in self.nodes.values():
            if n.alive():
                n.proc.send_signal(signal.SIGTERM)
        for n in self.nodes.values():
            if n.proc is not None:
                n.proc.wait(60)


def machine():
    return {"cpus": os.cpu_count(), "kernel": platform.release(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def run_failover(cluster, args):
    windows, acks, reader = failover.run(cluster, kills=args.kills, partitions=3, rate=args.rate)
    ms = sorted(w * 1000 for w in windows)
    acked = sum(len(v) for v in acks.by_partition.values())
    return {
        "what": "unavailability window per leader kill (kill -> first ack of a record sent after it)",
        "kills": len(ms), "window_ms": [round(w, 1) for w in ms],
        "p50_ms": round(statistics.median(ms), 1),
        "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 1),
        "max_ms": round(ms[-1], 1),
        "acknowledged_records": acked, "lost": 0, "duplicated": 0,
        "consumer_group_records_seen": reader.seen,
        "settings": {"heartbeat_ms": 200, "session_timeout_ms": 1500, "replication_factor": 3,
                     "min_insync_replicas": 2, "rate_records_per_s": args.rate,
                     "producer": "confluent-kafka, enable.idempotence, acks=all"},
    }


def bench_once(cluster, rf, duration):
    out = tempfile.mktemp(suffix=".json")
    cmd = [SLUICE, "bench", "produce", "-b", cluster.bootstrap(cluster.running()[0]), "--partitions", "3",
           "--replication-factor", str(rf), "--record-size", "1024", "--acks", "all",
           "--duration", str(duration), "--warmup", "2", "-q", "-o", out]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(out) as f:
        report = json.load(f)
    os.unlink(out)
    return report["produce"]["mb_per_s"]


def run_throughput(cluster, args):
    failover.wait(lambda: all(len(failover.metadata_brokers(cluster.bootstrap(n))) == 3
                              for n in cluster.running()), 60, "three live brokers")
    rounds = []
    for _ in range(args.rounds):
        rf1 = bench_once(cluster, 1, args.duration)
        rf3 = bench_once(cluster, 3, args.duration)
        rounds.append({"rf1_mb_per_s": round(rf1, 1), "rf3_mb_per_s": round(rf3, 1),
                       "ratio_rf3_over_rf1": round(rf3 / rf1, 3)})
    return {
        "what": "sluice bench produce, acks=all, 1 KiB records, 3 partitions, 3 brokers (1 core each) on 2 shared cores",
        "rounds": rounds,
        "median_ratio_rf3_over_rf1": statistics.median(r["ratio_rf3_over_rf1"] for r in rounds),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["failover", "throughput"])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--rate", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("-o", "--output")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sluice-cluster-") as work:
        cluster = Cluster(work).start()
        try:
            result = run_failover(cluster, args) if args.mode == "failover" else run_throughput(cluster, args)
        finally:
            cluster.stop()
    result["machine"] = machine()
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()

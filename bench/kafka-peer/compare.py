#!/usr/bin/env python3
"""sluice against Apache Kafka on this machine, in one run (`bench/compare --kafka`).

Fetches Apache Kafka (pom.xml beside this file) from Maven Central into target/kafka-peer/lib,
starts a single-node KRaft Kafka and a sluice broker side by side on loopback ports, and runs
the same workloads against both in alternation (round 1: sluice then Kafka, round 2: Kafka
then sluice, ...), so both see the same machine noise, with the same clients:

  - `sluice bench` workloads from bench/workloads (Rust client);
  - Kafka's own kafka-producer-perf-test and kafka-consumer-perf-test (Java client,
    org.apache.kafka.tools.*), so the harness cannot be said to favour sluice.

Two durability profiles, each its own pair of freshly started brokers:
  durable  sluice's defaults (acknowledged = fdatasync'ed) against Kafka with
           log.flush.interval.messages=1 (an fsync after every append);
  default  Kafka's defaults (page cache, no fsync: the OS writes back) against sluice's
           closest profile, `throughput` (acknowledged = written with O_DIRECT; fdatasync
           every 100 ms), which is still the more durable of the two.

Writes every run's raw output under --out, a summary (per round: each side's figures and
the ratio sluice/Kafka; the median ratio) as JSON, and pictures: the ratios
(`sluice bench plot-ratios`) and the latency curves of the sluice-bench workloads
(`sluice bench plot`). Python 3 standard library only.
"""

import argparse
import base64
import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
POM = os.path.join(ROOT, "bench", "kafka-peer", "pom.xml")
PEER_DIR = os.path.join(ROOT, "target", "kafka-peer")
LIB = os.path.join(PEER_DIR, "lib")
# Kafka's own scripts start the broker with these (kafka-server-start.sh, kafka-run-class.sh)
# and the perf tools with a 512 MiB heap.
KAFKA_HEAP = ["-Xmx1G", "-Xms1G"]
KAFKA_JVM = ["-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
             "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
             "-Djava.awt.headless=true"]
TOOL_HEAP = ["-Xmx512M"]
START_TIMEOUT_S = 90
RUN_TIMEOUT_S = 300

PROFILES = {
    "durable": {
        "label": "durable: sluice default (fsync before ack) vs Kafka flush.messages=1",
        "sluice_args": [],
        "kafka_props": {"log.flush.interval.messages": "1"},
    },
    "default": {
        "label": "default: sluice --profile throughput (fsync every 100 ms) vs Kafka defaults (no fsync)",
        "sluice_args": ["--profile", "throughput"],
        "kafka_props": {},
    },
}


# --- workloads ------------------------------------------------------------------------------
# kind "sluice-bench": a bench/workloads file run by `sluice bench`;
# kind "producer-perf" / "consumer-perf": Kafka's tools with the same shape.
# Each names the figures compared and whether higher or lower is better.

def sluice_bench(name, workload, metrics, max_rate_of=None):
    """max_rate_of: the record size whose max rate this run measures (see perf_records)."""
    w = {"name": name, "kind": "sluice-bench", "workload": workload, "metrics": metrics}
    if max_rate_of:
        w["max_rate_of"] = max_rate_of
    return w


WORKLOADS = [
    sluice_bench("sluice-bench max-throughput 1 KiB acks=all 8p", "acksall-1kb-8p.toml",
                 [("produce MB/s", "higher")], max_rate_of=1024),
    sluice_bench("sluice-bench max-throughput 100 B acks=1 8p", "max-throughput-100b-8p.toml",
                 [("produce records/s", "higher")], max_rate_of=100),
    sluice_bench("sluice-bench fixed-rate 100 MB/s 1 KiB acks=all 8p", "latency-1kb-8p-fixed-rate.toml",
                 [("e2e p50 ms", "lower"), ("e2e p99 ms", "lower"), ("e2e p99.9 ms", "lower")]),
    sluice_bench("sluice-bench consume 1 KiB 8p", "consume-tail-1kb-8p.toml",
                 [("consume MB/s", "higher")]),
    {"name": "kafka-producer-perf-test 1 KiB acks=all 8p", "kind": "producer-perf",
     "record_size": 1024, "records": 600_000, "rate": -1,
     "props": {"acks": "all", "linger.ms": "1", "batch.size": "131072"},
     "metrics": [("produce MB/s", "higher")], "then_consume": True},
    {"name": "kafka-producer-perf-test 100 B acks=1 8p", "kind": "producer-perf",
     "record_size": 100, "records": 2_000_000, "rate": -1,
     "props": {"acks": "1", "linger.ms": "5", "batch.size": "1048576"},
     "metrics": [("produce records/s", "higher")]},
    {"name": "kafka-producer-perf-test fixed-rate 100 MB/s 1 KiB acks=all 8p", "kind": "producer-perf",
     "record_size": 1024, "records": 0, "rate": 97_656,
     "props": {"acks": "all", "linger.ms": "1", "batch.size": "131072"},
     "metrics": [("produce p50 ms", "lower"), ("produce p99 ms", "lower"), ("produce p99.9 ms", "lower")]},
]
CONSUMER_PERF = {"name": "kafka-consumer-perf-test 1 KiB 8p", "kind": "consumer-perf",
                 "metrics": [("consume MB/s", "higher")]}


# --- processes ------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def cpu_seconds(pid):
    """User + system CPU seconds of a process (from /proc/PID/stat), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def stop(proc, name):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        log(f"{name} did not stop in 60 s; killing it")
        proc.kill()
        proc.wait()


def classpath():
    return os.path.join(LIB, "*")


def ensure_kafka_jars():
    """Resolves Kafka and its runtime dependencies once per pom.xml (a stamp of its hash)."""
    with open(POM, "rb") as f:
        stamp = hashlib.sha256(f.read()).hexdigest()[:16]
    stamp_file = os.path.join(PEER_DIR, "lib.stamp")
    if os.path.exists(stamp_file) and open(stamp_file).read().strip() == stamp:
        return
    log("fetching Apache Kafka from Maven Central into target/kafka-peer/lib")
    shutil.rmtree(LIB, ignore_errors=True)
    os.makedirs(PEER_DIR, exist_ok=True)
    subprocess.run(["mvn", "-B", "-q", "-f", POM, f"-Dmaven.repo.local={PEER_DIR}/m2",
                    "dependency:copy-dependencies", f"-DoutputDirectory={LIB}",
                    "-DincludeScope=runtime"], check=True)
    with open(stamp_file, "w") as f:
        f.write(stamp + "\n")


def kafka_version():
    for name in os.listdir(LIB):
        m = re.fullmatch(r"kafka_2\.13-(.+)\.jar", name)
        if m:
            return m.group(1)
    return "unknown"


class Kafka:
    """One single-node KRaft Kafka (broker and controller in one process)."""

    name = "kafka"

    def __init__(self, workdir, props):
        self.dir = workdir
        self.port = free_port()
        self.controller_port = free_port()
        self.props = props
        self.proc = None

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def server_properties(self):
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": os.path.join(self.dir, "logs"),
            # A single node cannot hold three copies of the internal topics.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
        }
        props.update(self.props)
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def log4j_properties(self):
        return ("appender.file.type=File\nappender.file.name=file\n"
                f"appender.file.fileName={self.dir}/server.log\n"
                "appender.file.layout.type=PatternLayout\n"
                "appender.file.layout.pattern=[%d] %p %m (%c)%n\n"
                "rootLogger.level=INFO\nrootLogger.appenderRef.file.ref=file\n")

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        config = os.path.join(self.dir, "server.properties")
        with open(config, "w") as f:
            f.write(self.server_properties())
        log4j = os.path.join(self.dir, "log4j2.properties")
        with open(log4j, "w") as f:
            f.write(self.log4j_properties())
        java = ["java", f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath()]
        cluster_id = kafka_cluster_id()
        subprocess.run(java + ["kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", config],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        out = open(os.path.join(self.dir, "stdout"), "w")
        self.proc = subprocess.Popen(["java"] + KAFKA_HEAP + KAFKA_JVM + java[1:] + ["kafka.Kafka", config],
                                     stdout=out, stderr=subprocess.STDOUT)
        server_log = os.path.join(self.dir, "server.log")
        deadline = time.time() + START_TIMEOUT_S
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kafka exited with {self.proc.returncode}; see {self.dir}")
            if port_open(self.port) and "Kafka Server started" in read_text(server_log):
                return
            time.sleep(0.2)
        raise RuntimeError(f"kafka did not start in {START_TIMEOUT_S} s; see {self.dir}")

    def stop(self):
        stop(self.proc, "kafka")


def kafka_cluster_id():
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def read_text(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


class Sluice:
    name = "sluice"

    def __init__(self, binary, workdir, args):
        self.binary = binary
        self.dir = workdir
        self.args = args
        self.proc = None
        self.bootstrap = None

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        stdout = os.path.join(self.dir, "stdout")
        self.proc = subprocess.Popen(
            [self.binary, "broker", "--listen", "127.0.0.1:0", "--data-dir",
             os.path.join(self.dir, "data")] + self.args,
            stdout=open(stdout, "w"), stderr=open(os.path.join(self.dir, "stderr"), "w"))
        deadline = time.time() + START_TIMEOUT_S
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sluice exited with {self.proc.returncode}; see {self.dir}")
            m = re.search(r"127\.0\.0\.1:(\d+)", read_text(stdout))
            if m and port_open(int(m.group(1))):
                self.bootstrap = m.group(0)
                return
            time.sleep(0.1)
        raise RuntimeError(f"sluice did not start in {START_TIMEOUT_S} s; see {self.dir}")

    def stop(self):
        stop(self.proc, "sluice")


# --- one run of one workload against one broker -------------------------------------------

def run_sluice_bench(ctx, broker, w, out_base):
    report = out_base + ".json"
    cmd = [ctx.sluice, "bench", "--workload", os.path.join(ROOT, "bench", "workloads", w["workload"]),
           "-b", broker.bootstrap, "--broker-pid", str(broker.proc.pid), "-q", "-o", report]
    cmd += ["--duration", str(ctx.duration), "--warmup", str(ctx.warmup)]
    run_logged(cmd, out_base + ".txt")
    with open(report) as f:
        r = json.load(f)
    figures = {
        "produce MB/s": r["produce"]["mb_per_s"],
        "produce records/s": r["produce"]["records_per_s"],
        "consume MB/s": r["consume"]["mb_per_s"],
        "errors": r["errors"],
        "broker cpu cores": r["cpu"].get("broker_cores"),
        "broker cpu s per GB produced": r["cpu"].get("broker_s_per_gb_produced"),
    }
    for kind, prefix in (("end_to_end", "e2e"), ("produce", "produce")):
        lat = r["latency"].get(kind)
        if lat and lat.get("count"):
            figures[f"{prefix} p50 ms"] = lat["p50_us"] / 1000
            figures[f"{prefix} p99 ms"] = lat["p99_us"] / 1000
            figures[f"{prefix} p99.9 ms"] = lat["p999_us"] / 1000
    return figures, report


PRODUCER_LINE = re.compile(
    r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
    r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99\.9th")
STEADY_LINE = re.compile(r"(\d+) steady state records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), "
                         r"([\d.]+) ms avg latency, ([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, "
                         r"(\d+) ms 99th, (\d+) ms 99\.9th")


def java_tool(main):
    return ["java"] + TOOL_HEAP + ["-Dlog4j2.level=WARN", "-cp", classpath(), f"org.apache.kafka.tools.{main}"]


# Topics for the perf tools are made and removed with `sluice topic` (plain Kafka admin
# requests, not measured): a JVM start per call would add seconds to every run.
def create_topic(ctx, broker, topic, partitions):
    cmd = [ctx.sluice, "topic", "create", topic, "-p", str(partitions), "-r", "1", "-b", broker.bootstrap]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, timeout=120)


def delete_topic(ctx, broker, topic):
    cmd = [ctx.sluice, "topic", "delete", topic, "--if-exists", "-b", broker.bootstrap]
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)


def perf_records(ctx, w, max_rate):
    """How many records a perf-test run sends, and how many of them are its warm-up.

    The tool stops after a count, not a time. The count is what this broker took about
    duration + warm-up seconds to acknowledge in the same round's sluice-bench run of the same
    shape (`max_rate`, records/s), capped by the workload's own count (and by the fixed rate
    times that time), so a slow broker does not stretch the run to minutes."""
    seconds = ctx.duration + ctx.warmup
    if w["rate"] > 0:
        # Fixed rate: its warm-up left out of the figures. A broker that cannot take the rate
        # at all queues without bound; cap the run near its normal length.
        rate = w["rate"] if max_rate is None else min(w["rate"], max_rate)
        records = int(rate * seconds)
        return records, records * ctx.warmup // seconds
    records = max(1, int(w["records"] * ctx.scale))
    if max_rate:
        records = max(min(records, int(max_rate * seconds)), 50_000)
    return records, records // 5


def run_producer_perf(ctx, broker, w, out_base, topic, max_rate):
    """kafka-producer-perf-test; MB/s there is 2^20 bytes, converted here to 10^6 like sluice bench."""
    records, warmup = perf_records(ctx, w, max_rate)
    props = [f"bootstrap.servers={broker.bootstrap}"] + [f"{k}={v}" for k, v in w["props"].items()]
    cmd = java_tool("ProducerPerformance") + [
        "--topic", topic, "--num-records", str(records), "--warmup-records", str(warmup),
        "--record-size", str(w["record_size"]), "--throughput", str(w["rate"]),
        "--command-property"] + props
    cpu0, t0 = cpu_seconds(broker.proc.pid), time.monotonic()
    text = run_logged(cmd, out_base + ".txt")
    elapsed, cpu1 = time.monotonic() - t0, cpu_seconds(broker.proc.pid)
    figures = parse_producer_perf(text, w["record_size"])
    if figures is None:
        raise RuntimeError(f"no summary line in {out_base}.txt")
    figures["records"] = records
    add_cpu(figures, cpu0, cpu1, elapsed, records * w["record_size"])
    return figures, records


def parse_producer_perf(text, record_size):
    """The figures of kafka-producer-perf-test's summary: the steady-state line (after the
    warm-up records) when there is one, else the whole run's. None without a summary."""
    m = STEADY_LINE.search(text) or PRODUCER_LINE.search(text)
    if not m:
        return None
    rps = float(m.group(2))
    return {
        "produce records/s": rps,
        "produce MB/s": rps * record_size / 1e6,
        "produce p50 ms": float(m.group(6)),
        "produce p99 ms": float(m.group(8)),
        "produce p99.9 ms": float(m.group(9)),
        "steady-state records": int(m.group(1)),
    }


def run_consumer_perf(ctx, broker, out_base, topic, records):
    cmd = java_tool("ConsumerPerformance") + [
        "--bootstrap-server", broker.bootstrap, "--topic", topic, "--num-records", str(records),
        "--group", f"perf-{uuid.uuid4().hex[:8]}", "--timeout", "60000",
        "--command-property", "max.partition.fetch.bytes=4194304"]
    cpu0, t0 = cpu_seconds(broker.proc.pid), time.monotonic()
    text = run_logged(cmd, out_base + ".txt")
    elapsed, cpu1 = time.monotonic() - t0, cpu_seconds(broker.proc.pid)
    figures = parse_consumer_perf(text)
    if figures is None:
        raise RuntimeError(f"no summary line in {out_base}.txt")
    add_cpu(figures, cpu0, cpu1, elapsed, None)
    return figures


def parse_consumer_perf(text):
    """The figures of kafka-consumer-perf-test's summary row, None without one. Columns:
    start, end, MB, MB/s, records, records/s, rebalance ms, fetch ms, fetch MB/s, fetch
    records/s (MB = 2^20 bytes)."""
    rows = [line for line in text.splitlines() if re.match(r"\d{4}-\d\d-\d\d ", line)]
    if not rows:
        return None
    cols = [c.strip() for c in rows[-1].split(",")]
    consumed_bytes = float(cols[2]) * 2**20
    fetch_s = float(cols[7]) / 1000
    return {
        # The fetch phase only: Kafka's tool counts the group join (rebalance) separately.
        "consume MB/s": consumed_bytes / fetch_s / 1e6 if fetch_s > 0 else 0.0,
        "consume records/s": float(cols[9]),
        "records": int(cols[4]),
        "rebalance ms": float(cols[6]),
    }


def add_cpu(figures, cpu0, cpu1, elapsed, produced_bytes):
    """Broker CPU over the whole tool run (JVM start and warm-up included)."""
    if cpu0 is None or cpu1 is None or elapsed <= 0:
        return
    figures["broker cpu cores"] = (cpu1 - cpu0) / elapsed
    if produced_bytes:
        figures["broker cpu s per GB produced"] = (cpu1 - cpu0) / (produced_bytes / 1e9)


def run_logged(cmd, path):
    with open(path, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=RUN_TIMEOUT_S)
        f.write(p.stdout)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({p.returncode}); see {path}")
    return p.stdout


# --- the run ------------------------------------------------------------------------------

def slug(name):
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def run_pair_round(ctx, profile, rnd, brokers, results):
    """One round: every workload, against each broker in this round's order."""
    # records/s each broker acknowledged at max rate this round, by record size (from the
    # sluice-bench runs, which come first): sizes the perf-test runs (perf_records).
    max_rates = {b.name: {} for b in brokers}
    for w in ctx.workloads:
        for broker in brokers:
            base = os.path.join(ctx.out, profile, f"{slug(w['name'])}-{broker.name}-{rnd}")
            log(f"{profile} round {rnd}: {w['name']} against {broker.name}")
            entry = results.setdefault((profile, w["name"]), {"workload": w, "rounds": {}})
            side = entry["rounds"].setdefault(rnd, {})
            if w["kind"] == "sluice-bench":
                side[broker.name], report = run_sluice_bench(ctx, broker, w, base)
                entry.setdefault("reports", {}).setdefault(broker.name, {})[rnd] = report
                if "max_rate_of" in w:
                    max_rates[broker.name][w["max_rate_of"]] = side[broker.name]["produce records/s"]
                continue
            topic = f"perf-{slug(w['name'])[:40]}-{rnd}-{uuid.uuid4().hex[:6]}"
            create_topic(ctx, broker, topic, 8)
            max_rate = max_rates[broker.name].get(w["record_size"])
            side[broker.name], records = run_producer_perf(ctx, broker, w, base, topic, max_rate)
            if w.get("then_consume"):
                c = results.setdefault((profile, CONSUMER_PERF["name"]),
                                       {"workload": CONSUMER_PERF, "rounds": {}})
                cbase = os.path.join(ctx.out, profile, f"{slug(CONSUMER_PERF['name'])}-{broker.name}-{rnd}")
                log(f"{profile} round {rnd}: {CONSUMER_PERF['name']} against {broker.name}")
                c["rounds"].setdefault(rnd, {})[broker.name] = run_consumer_perf(ctx, broker, cbase, topic, records)
            delete_topic(ctx, broker, topic)


def run_profile(ctx, profile, results):
    p = PROFILES[profile]
    kafka = Kafka(os.path.join(ctx.out, profile, "kafka-broker"), p["kafka_props"])
    sluice = Sluice(ctx.sluice, os.path.join(ctx.out, profile, "sluice-broker"), p["sluice_args"])
    try:
        log(f"{profile}: starting Kafka and sluice")
        kafka.start()
        sluice.start()
        for rnd in range(1, ctx.rounds + 1):
            order = [sluice, kafka] if rnd % 2 else [kafka, sluice]
            run_pair_round(ctx, profile, rnd, order, results)
    finally:
        sluice.stop()
        kafka.stop()
        if not ctx.keep_data:
            for d in (os.path.join(kafka.dir, "logs"), os.path.join(sluice.dir, "data")):
                shutil.rmtree(d, ignore_errors=True)


def compare_rounds(results):
    """Per (profile, workload, figure): each round's sluice and Kafka figures, their ratio
    sluice/Kafka, and the medians."""
    comparisons = []
    for (profile, name), entry in results.items():
        w = entry["workload"]
        for metric, better in w["metrics"]:
            rounds = []
            for rnd in sorted(entry["rounds"]):
                side = entry["rounds"][rnd]
                s, k = side.get("sluice", {}).get(metric), side.get("kafka", {}).get(metric)
                ratio = s / k if s is not None and k else None
                rounds.append({"round": rnd, "sluice": s, "kafka": k, "ratio": ratio})
            ratios = [r["ratio"] for r in rounds if r["ratio"] is not None]
            comparisons.append({
                "profile": profile, "workload": name, "client": w["kind"], "metric": metric,
                "better": better, "rounds": rounds,
                "median_sluice": median([r["sluice"] for r in rounds]),
                "median_kafka": median([r["kafka"] for r in rounds]),
                "median_ratio": median(ratios),
            })
    return comparisons


def summarize(ctx, results, started, elapsed):
    comparisons = compare_rounds(results)
    runs = {f"{p}/{n}": e["rounds"] for (p, n), e in results.items()}
    return {
        "schema": "sluice-vs-kafka/1",
        "date": started,
        "command": ctx.command,
        "elapsed_s": round(elapsed, 1),
        "ratio": "sluice / kafka of the same round; throughput: above 1 means sluice is faster; "
                 "latency: below 1 means sluice is quicker",
        "kafka_version": kafka_version(),
        "sluice_version": sluice_version(ctx.sluice),
        "machine": dict(machine(), load_average_at_start=ctx.load_at_start),
        "rounds": ctx.rounds,
        "measured_s": ctx.duration,
        "warmup_s": ctx.warmup,
        "profiles": {name: PROFILES[name]["label"] for name in ctx.profiles},
        "kafka_broker_settings": {name: PROFILES[name]["kafka_props"] for name in ctx.profiles},
        "comparisons": comparisons,
        "runs": runs,
    }


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def sluice_version(binary):
    p = subprocess.run([binary, "--version"], stdout=subprocess.PIPE, text=True)
    return p.stdout.strip()


def machine():
    model = ""
    for line in read_text("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {"cores": os.cpu_count(), "cpu_model": model, "kernel": os.uname().release,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "java": subprocess.run(["java", "-version"], stderr=subprocess.PIPE,
                                   text=True).stderr.splitlines()[0]}


def print_table(summary):
    print(f"{'profile':<8} {'workload / metric':<72} {'sluice':>10} {'kafka':>10} {'ratio':>7}  per round")
    for c in summary["comparisons"]:
        per_round = " ".join(f"{r['ratio']:.2f}" if r["ratio"] is not None else "-" for r in c["rounds"])
        fmt = lambda v: f"{v:,.1f}" if v is not None else "-"
        ratio = f"{c['median_ratio']:.2f}" if c["median_ratio"] is not None else "-"
        print(f"{c['profile']:<8} {c['workload'] + ': ' + c['metric']:<72} {fmt(c['median_sluice']):>10} "
              f"{fmt(c['median_kafka']):>10} {ratio:>7}  {per_round}")


def plot(ctx, summary, results, summary_path):
    stem = os.path.splitext(summary_path)[0]
    for ext in ("svg", "png"):
        subprocess.run([ctx.sluice, "bench", "plot-ratios", summary_path, "-o", f"{stem}.{ext}"], check=False)
    # Latency curves of the fixed-rate sluice-bench runs, the median round of each side.
    for (profile, name), entry in results.items():
        if "fixed-rate" not in name or "reports" not in entry:
            continue
        paths = []
        for side in ("sluice", "kafka"):
            reports = entry["reports"].get(side, {})
            if not reports:
                continue
            rnd = sorted(reports)[len(reports) // 2]
            dest = os.path.join(ctx.out, f"{profile}-fixed-rate-{side}.json")
            shutil.copyfile(reports[rnd], dest)
            paths.append(dest)
        if paths:
            subprocess.run([ctx.sluice, "bench", "plot"] + paths + ["-o", f"{stem}-latency-{profile}.svg"],
                           check=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profiles", default="durable,default", help="durable, default or both")
    ap.add_argument("--only", default="", help="run only workloads whose name contains this")
    ap.add_argument("--duration", type=int, default=3, help="measured seconds of each run")
    ap.add_argument("--warmup", type=int, default=1, help="warm-up seconds of each run")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="scales the record counts of the max-rate perf-test runs")
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "compare-kafka"))
    ap.add_argument("--summary", default=os.path.join(ROOT, "bench", "results", "kafka-compare.json"))
    ap.add_argument("--keep-data", action="store_true")
    ctx = ap.parse_args()
    if ctx.rounds < 3:
        ap.error("at least 3 rounds")
    ctx.profiles = [p for p in ctx.profiles.split(",") if p]
    for p in ctx.profiles:
        if p not in PROFILES:
            ap.error(f"unknown profile {p}")
    ctx.workloads = [w for w in WORKLOADS if ctx.only in w["name"]]
    ctx.sluice = os.environ.get("SLUICE", os.path.join(ROOT, "target", "release", "sluice"))
    ctx.command = "bench/compare --kafka " + " ".join(sys.argv[1:])
    if not os.access(ctx.sluice, os.X_OK):
        sys.exit(f"{ctx.sluice} is missing: run `cargo build --release` first")
    ensure_kafka_jars()
    shutil.rmtree(ctx.out, ignore_errors=True)
    os.makedirs(ctx.out)
    for p in ctx.profiles:
        os.makedirs(os.path.join(ctx.out, p))
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    ctx.load_at_start = [round(x, 2) for x in os.getloadavg()]
    t0 = time.monotonic()
    results = {}
    for profile in ctx.profiles:
        run_profile(ctx, profile, results)
    summary = summarize(ctx, results, started, time.monotonic() - t0)
    os.makedirs(os.path.dirname(ctx.summary), exist_ok=True)
    with open(ctx.summary, "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    print_table(summary)
    plot(ctx, summary, results, ctx.summary)
    log(f"summary in {ctx.summary}; raw output in {ctx.out}")


if __name__ == "__main__":
    main()

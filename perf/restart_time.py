#!/usr/bin/env python3
"""Broker restart time with a large log: after a clean shutdown and after kill -9 (issue 14).

Fills a topic with --gb gigabytes of 1 KiB records (`sluice bench produce --keep-topic`),
notes each partition's end offset, then restarts the broker on the same data directory and
port, alternately after SIGTERM (clean: the clean-shutdown marker lets recovery trust the
active segments) and after SIGKILL (every partition's active segment is scanned and CRC'd).

For each restart it reports, from the moment the new process is spawned:
  ready_s    sluice prints "sluice ready" (every shard started);
  serving_s  every partition is led in Metadata, ListOffsets(latest) gives the end offset
             noted before the restart, and a Fetch at end-1 returns that record: the log is
             served, not just the port. Polled every 5 ms over a raw Kafka connection
             (tests/clients/kwire.py, no client library and no reconnect back-off).
The record fetched is checked afterwards (CRC32C, offset), outside the timed part.

The target (issue 14, item 9): serving within 2 s after a clean restart with 10 GB of log.

  perf/restart_time.py [--gb 10] [--partitions 8] [--rounds 2] [--dir DIR] [-o OUT.json]

Needs a release build (target/release/sluice or $SLUICE_BIN) and --gb plus 10% free on the
data directory's disk (default under target/); refuses to start otherwise. Takes about
--gb * 4 s to fill plus the restarts.
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "clients"))
import kwire  # noqa: E402  (the raw wire client of the tests; no dependency to install)

SLUICE = os.environ.get("SLUICE_BIN", os.path.join(ROOT, "target", "release", "sluice"))
TOPIC = "restart-time"
RECORD_SIZE = 1024
POLL_S = 0.005
SERVE_TIMEOUT_S = 600


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, data_dir, port, args):
        self.data_dir = data_dir
        self.port = port
        self.args = args
        self.proc = None
        self.ready_s = None
        self.spawned = None

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def spawn(self, tag):
        out_dir = os.path.dirname(self.data_dir)
        self.stdout = os.path.join(out_dir, f"stdout-{tag}")
        self.spawned = time.monotonic()
        self.proc = subprocess.Popen(
            [SLUICE, "broker", "--listen", self.bootstrap, "--data-dir", self.data_dir] + self.args,
            stdout=open(self.stdout, "w"), stderr=open(os.path.join(out_dir, f"stderr-{tag}"), "w"))
        self.ready_s = None

    def poll_ready(self):
        """Notes when the broker printed its ready line (the time it was first seen)."""
        if self.ready_s is None:
            with open(self.stdout) as f:
                if "sluice ready" in f.read():
                    self.ready_s = time.monotonic() - self.spawned
        if self.proc.poll() is not None:
            raise RuntimeError(f"broker exited with {self.proc.returncode}; see {self.stdout}")

    def wait_ready(self):
        deadline = time.time() + SERVE_TIMEOUT_S
        while self.ready_s is None:
            if time.time() > deadline:
                raise RuntimeError("broker not ready")
            self.poll_ready()
            time.sleep(POLL_S)

    def stop(self, sig):
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        self.proc.wait(timeout=300)
        return time.monotonic() - t0


def cpu_seconds(pid):
    """User + system CPU seconds of a process so far (/proc/PID/stat), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def end_offsets(conn, partitions):
    ends = []
    for p in range(partitions):
        err, _ts, off = kwire.list_offsets_v1(conn, TOPIC, p, -1)
        if err:
            return None
        ends.append(off)
    return ends


def serves(broker, partitions, expected_ends):
    """True once the whole log is served as before the restart (see the module doc)."""
    try:
        with kwire.Connection.to(broker.bootstrap, timeout=5) as conn:
            meta = kwire.metadata_v1(conn, [TOPIC])["topics"].get(TOPIC)
            if not meta or meta["error_code"] or len(meta["partitions"]) != partitions:
                return False
            if any(p["error_code"] or p["leader"] < 0 for p in meta["partitions"]):
                return False
            if end_offsets(conn, partitions) != expected_ends:
                return False
            for p, end in enumerate(expected_ends):
                got = kwire.fetch_v4(conn, TOPIC, p, end - 1, max_bytes=1 << 16)
                if got.error_code or not got.records:
                    return False
            return True
    except (OSError, kwire.ConnectionClosed, AssertionError, ValueError, struct.error):
        return False


def check_last_records(broker, expected_ends):
    """After timing: the record at end-1 of every partition decodes with a valid CRC32C."""
    with kwire.Connection.to(broker.bootstrap) as conn:
        for p, end in enumerate(expected_ends):
            got = kwire.fetch_v4(conn, TOPIC, p, end - 1, max_bytes=1 << 16)
            offsets = [r.offset for r in kwire.decode_batches(got.records, verify_crc=True)]
            if end - 1 not in offsets:
                raise RuntimeError(f"partition {p}: offset {end - 1} not served after the restart")


def restart(broker, partitions, expected_ends, how, rnd):
    sig = signal.SIGTERM if how == "clean" else signal.SIGKILL
    stop_s = broker.stop(sig)
    broker.spawn(f"{how}-{rnd}")
    deadline = time.monotonic() + SERVE_TIMEOUT_S
    while True:
        broker.poll_ready()
        if serves(broker, partitions, expected_ends):
            serving_s = time.monotonic() - broker.spawned
            cpu_s = cpu_seconds(broker.proc.pid)
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"not serving {SERVE_TIMEOUT_S} s after the restart")
        time.sleep(POLL_S)
    broker.wait_ready()
    check_last_records(broker, expected_ends)
    result = {"case": how, "round": rnd, "stop_s": round(stop_s, 3), "ready_s": round(broker.ready_s, 3),
              "serving_s": round(serving_s, 3),
              # The broker's CPU time up to serving: near 2 x serving_s on two cores means the
              # start is CPU-bound (CRC32C, copies); far below, it waits on the disk.
              "cpu_s": round(cpu_s, 3) if cpu_s is not None else None}
    log(f"{how} restart {rnd}: ready {broker.ready_s:.3f} s, serving {serving_s:.3f} s (stop took {stop_s:.2f} s)")
    return result


def fill(broker, gb, partitions):
    records = int(gb * 1e9 / RECORD_SIZE)
    log(f"filling {TOPIC}: {records:,} records of {RECORD_SIZE} B in {partitions} partitions ({gb} GB)")
    t0 = time.monotonic()
    subprocess.run([SLUICE, "bench", "produce", "-b", broker.bootstrap, "--topic", TOPIC, "--keep-topic",
                    "--partitions", str(partitions), "--record-size", str(RECORD_SIZE), "--records", str(records),
                    "--acks", "1", "--linger-ms", "5", "--batch-size", "1048576", "--warmup", "0", "-q"],
                   check=True, stdout=subprocess.DEVNULL)
    log(f"filled in {time.monotonic() - t0:.1f} s")


def dir_bytes(path):
    total, active = 0, 0
    for d in sorted(os.listdir(path)):
        if not d.startswith(TOPIC + "-"):
            continue
        logs = sorted(f for f in os.listdir(os.path.join(path, d)) if f.endswith(".log"))
        sizes = [os.path.getsize(os.path.join(path, d, f)) for f in logs]
        total += sum(sizes)
        active += sizes[-1] if sizes else 0
    return total, active


def summarize(results, case):
    rows = [r for r in results if r["case"] == case]
    keys = ("ready_s", "serving_s", "cpu_s")
    return {k: statistics.median(r[k] or 0 for r in rows) for k in keys} if rows else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gb", type=float, default=10.0, help="log size to fill, in 10^9 bytes")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2, help="restarts of each kind")
    ap.add_argument("--dir", default=os.path.join(ROOT, "target", "restart-time"))
    ap.add_argument("--broker-args", default="", help="extra `sluice broker` flags for every start")
    ap.add_argument("--keep-data", action="store_true", help="leave the filled log in DIR/data (for profiling)")
    ap.add_argument("-o", "--output", help="write the JSON here too")
    args = ap.parse_args()
    if not os.access(SLUICE, os.X_OK):
        sys.exit(f"{SLUICE} is missing: cargo build --release")
    shutil.rmtree(args.dir, ignore_errors=True)
    os.makedirs(args.dir)
    free = shutil.disk_usage(args.dir).free
    if free < args.gb * 1e9 * 1.1:
        sys.exit(f"{free / 1e9:.1f} GB free under {args.dir}: not enough for --gb {args.gb}; pass a smaller --gb")
    broker = Broker(os.path.join(args.dir, "data"), free_port(), args.broker_args.split())
    try:
        broker.spawn("fill")
        broker.wait_ready()
        fill(broker, args.gb, args.partitions)
        with kwire.Connection.to(broker.bootstrap) as conn:
            expected = end_offsets(conn, args.partitions)
        results = []
        for rnd in range(1, args.rounds + 1):
            for how in ("clean", "kill"):
                results.append(restart(broker, args.partitions, expected, how, rnd))
        total, active = dir_bytes(broker.data_dir)
    finally:
        if broker.proc and broker.proc.poll() is None:
            broker.stop(signal.SIGTERM)
        if not args.keep_data:
            shutil.rmtree(broker.data_dir, ignore_errors=True)
    report = {
        "schema": "sluice-restart-time/1",
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": "perf/restart_time.py " + " ".join(sys.argv[1:]),
        "sluice_version": subprocess.run([SLUICE, "--version"], stdout=subprocess.PIPE, text=True).stdout.strip(),
        "log_bytes": total,
        "active_segment_bytes": active,
        "partitions": args.partitions,
        "records": sum(expected),
        "target": "serving within 2 s after a clean restart with 10 GB of log",
        "clean_median": summarize(results, "clean"),
        "kill_median": summarize(results, "kill"),
        "restarts": results,
    }
    text = json.dumps(report, indent=2) + "\n"
    print(text, end="")
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()

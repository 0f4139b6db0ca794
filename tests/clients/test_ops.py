"""Operations against a real broker: the admin HTTP API and Prometheus metrics
(`--metrics-listen`), tuning profiles (`--profile`), socket buffers, and `sluice tune slo` in a
short mode that restarts a broker per candidate profile.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from conftest import SLUICE_BIN
from support import TIMEOUT, ck_conf, ck_create_topic, ck_produce, new_tag, wait_for

ADMIN_RE = re.compile(rb"sluice admin: listening on (?P<addr>[0-9.]+:\d+)")


def admin_addr(broker) -> str:
    text = b"".join(Path(p).read_bytes() for p in broker.log_paths)
    m = ADMIN_RE.findall(text)
    assert m, f"no admin line in {broker.log_paths}"
    return m[-1].decode()


def get(addr, path):
    """(status, body text) of GET http://addr/path."""
    try:
        with urllib.request.urlopen(f"http://{addr}{path}", timeout=TIMEOUT) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def samples(text, name):
    """{frozenset(labels.items()): value} of every sample of metric `name`."""
    out = {}
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, value = line.rsplit(" ", 1)
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', head))
        out[frozenset(labels.items())] = float(value)
    return out


def pick(found, **want):
    return [v for k, v in found.items() if all((n, str(x)) in k for n, x in want.items())]


def test_metrics_and_admin_api_report_real_traffic_and_lag(broker_factory):
    b = broker_factory(extra_args=["--metrics-listen", "127.0.0.1:0"])
    addr = admin_addr(b)
    assert get(addr, "/v1/ready") == (200, '{\n  "ready": true\n}\n')
    status, health = get(addr, "/v1/health")
    assert status == 200 and json.loads(health)["status"] == "ok"
    topic, n, tag = "ops_metrics", 300, new_tag()
    ck_create_topic(b.bootstrap, topic, partitions=2)
    delivery = ck_produce(b.bootstrap, topic, n, tag)
    per_partition = {p: sum(1 for q, _ in delivery.values() if q == p) for p in (0, 1)}

    # A group reads partition 0 to the end and commits; partition 1 it never reads.
    c = Consumer(ck_conf(b.bootstrap, **{"group.id": "ops-lag", "enable.auto.commit": False,
                                         "auto.offset.reset": "earliest"}))
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        got = 0
        deadline = time.monotonic() + TIMEOUT
        while got < per_partition[0] and time.monotonic() < deadline:
            got += sum(1 for m in c.consume(1000, timeout=0.5) if m.error() is None)
        assert got == per_partition[0]
        c.commit(offsets=[TopicPartition(topic, 0, per_partition[0]),
                          TopicPartition(topic, 1, 0)], asynchronous=False)
    finally:
        c.close()

    status, text = get(addr, "/metrics")
    assert status == 200
    assert text.count("# TYPE sluice_requests_total counter") == 1
    bytes_in = samples(text, "sluice_partition_received_bytes_total")
    assert all(sum(pick(bytes_in, topic=topic, partition=p)) > 0 for p in (0, 1)), bytes_in
    bytes_out = samples(text, "sluice_partition_sent_bytes_total")
    assert sum(pick(bytes_out, topic=topic, partition=0)) >= sum(pick(bytes_in, topic=topic, partition=0))
    assert sum(pick(samples(text, "sluice_requests_total"), api="Produce")) >= 1
    hw = samples(text, "sluice_partition_high_watermark")
    assert pick(hw, topic=topic, partition=1) == [per_partition[1]]
    lag = samples(text, "sluice_consumer_group_lag")
    assert pick(lag, group="ops-lag", topic=topic, partition=0) == [0]
    assert pick(lag, group="ops-lag", topic=topic, partition=1) == [per_partition[1]]
    # acks=all: every acknowledged batch went through a disk write and an fdatasync.
    fsyncs = samples(text, "sluice_stage_latency_seconds_count")
    assert sum(pick(fsyncs, stage="fsync")) >= 1 and sum(pick(fsyncs, stage="disk_write")) >= 1
    merged = samples(text, "sluice_stage_latency_merged_seconds_count")
    assert pick(merged, stage="fsync") == [sum(pick(fsyncs, stage="fsync"))]
    assert samples(text, "sluice_under_replicated_partitions") == {frozenset(): 0.0}

    status, cluster = get(addr, "/v1/cluster")
    state = json.loads(cluster)
    topics = {t["name"]: t for t in state["topics"]}
    assert status == 200 and state["shards"] == 2
    assert [p["isr"] for p in topics[topic]["partitions"]] == [[1], [1]]
    assert get(addr, "/nowhere")[0] == 404


def test_profile_flag_layers_under_config_and_bad_profile_fails(broker_factory, tmp_path):
    b = broker_factory(config={"tail_cache_bytes": 65536}, extra_args=["--profile", "throughput"])
    ck_create_topic(b.bootstrap, "ops_profile", partitions=1)
    ck_produce(b.bootstrap, "ops_profile", 10, new_tag())
    r = subprocess.run([str(SLUICE_BIN), "broker", "--profile", "fastest", "--data-dir",
                        str(tmp_path / "x"), "--listen", "127.0.0.1:0"],
                       capture_output=True, timeout=30)
    assert r.returncode == 1 and b"unknown profile \"fastest\"" in r.stderr, r.stderr


def test_socket_buffers_are_set_on_accepted_connections(broker_factory):
    b = broker_factory(config={"socket_receive_buffer_bytes": 65536, "socket_send_buffer_bytes": 32768})
    with socket.create_connection((b.host, b.port)) as s:
        local = s.getsockname()[1]
        out = ""
        def server_side_has_buffers():
            nonlocal out
            out = subprocess.run(["ss", "-tmnH", "state", "established", f"( dport = :{local} )"],
                                 capture_output=True, text=True).stdout
            return "rb131072" in out and "tb65536" in out
        wait_for(server_side_has_buffers, what=f"broker-side socket with doubled buffers: {out}")


RESTART = r'''#!/bin/sh
# Restarts the test broker with the candidate profile: what an operator's command does.
set -e
if [ -f "$DIR/pid" ]; then kill -TERM "$(cat "$DIR/pid")" 2>/dev/null || true
  while kill -0 "$(cat "$DIR/pid")" 2>/dev/null; do sleep 0.05; done; fi
rm -rf "$DIR/data"
"$SLUICE_BIN" broker --listen "127.0.0.1:$PORT" --data-dir "$DIR/data" --cores 2 \
  --config "$SLUICE_PROFILE" > "$DIR/out.$SLUICE_PROFILE_NAME" 2>&1 &
echo $! > "$DIR/pid"
for i in $(seq 1 300); do
  grep -q "sluice ready" "$DIR/out.$SLUICE_PROFILE_NAME" && exit 0
  kill -0 "$(cat "$DIR/pid")" || exit 1
  sleep 0.05
done
exit 1
'''


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tune_slo_short_mode_writes_the_best_measured_profile(tmp_path):
    script = tmp_path / "restart.sh"
    script.write_text(RESTART)
    script.chmod(0o755)
    port = free_port()
    env = {**os.environ, "DIR": str(tmp_path), "PORT": str(port), "SLUICE_BIN": str(SLUICE_BIN)}
    out = tmp_path / "slo.toml"
    try:
        r = subprocess.run([str(SLUICE_BIN), "tune", "slo", "--p99", "1s", "-b", f"127.0.0.1:{port}",
                            "--apply-cmd", str(script), "--profiles", "latency,throughput",
                            "--duration", "1", "--warmup", "0.3", "--partitions", "2",
                            "--steps", "0.5", "-o", str(out)],
                           capture_output=True, timeout=300, env=env)
    finally:
        pid = tmp_path / "pid"
        if pid.exists():
            try:
                os.kill(int(pid.read_text()), signal.SIGTERM)
            except ProcessLookupError:
                pass
    assert r.returncode == 0, (r.stdout, r.stderr)
    text = out.read_text()
    measured = re.findall(r"#   (\w+): \[0\.0 -> ([0-9.]+), ([0-9.]+), (\d+)\]", text)
    assert {m[0] for m in measured} == {"latency", "throughput"}, text
    best = max(measured, key=lambda m: float(m[1]))
    assert f"Chosen: {best[0]} at" in text, text
    # Both profiles ran in turn: the restart script saw each one.
    assert (tmp_path / "out.latency").exists() and (tmp_path / "out.throughput").exists()
    # The written file is a broker config: a broker starts with it.
    chosen = dict(l.split(" = ", 1) for l in text.splitlines() if " = " in l and not l.startswith("#"))
    assert chosen["durability"] == ('"interval"' if best[0] == "throughput" else '"fsync"')

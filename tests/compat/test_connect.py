"""Kafka Connect against sluice: standalone with the FileStream source and sink connectors (a
file copied through a topic, byte for byte), and distributed mode, whose config, offset and
status topics are compacted topics, with connectors created through Connect's REST API."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import pytest
from confluent_kafka.admin import ConfigResource

import clients
from clients import CONNECT
from support import TIMEOUT, ck_admin, ck_create_topic, ck_topics

WAIT = 120


def text_to_copy(n=2000):
    """Lines a FileStream source reads and a sink writes back unchanged: UTF-8, tabs, long and
    short lines, every line ended by a newline."""
    return "".join(f"{i}\tline {i} ünïcödé ✓ {'x' * (i % 50)}\n" for i in range(n)).encode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def props(path, values: dict):
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path


def worker_common(bootstrap, rest_port):
    return {
        "bootstrap.servers": bootstrap,
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        "value.converter": "org.apache.kafka.connect.storage.StringConverter",
        "listeners": f"http://127.0.0.1:{rest_port}",
        "offset.flush.interval.ms": "1000",
        # The FileStream connectors are on the classpath and declare themselves as services.
        "plugin.discovery": "service_load",
    }


def source_config(name, path, topic):
    return {"name": name, "connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector",
            "tasks.max": "1", "file": str(path), "topic": topic}


def sink_config(name, path, topic):
    return {"name": name, "connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector",
            "tasks.max": "1", "file": str(path), "topics": topic}


class Worker:
    """A Connect worker JVM with its log; stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, main_class, args, log):
        self.log = log
        cmd = clients.java_cmd(main_class, *args, log_level="info", classpath=clients.connect_classpath())
        self.proc = subprocess.Popen(cmd,
                                     stdout=open(log, "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True, env=clients.client_env())

    def wait_until(self, cond, what):
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"FAIL connect: the worker exited with {self.proc.returncode} waiting for "
                                     f"{what}: {self.first_error()}")
            if cond():
                return
            time.sleep(0.5)
        raise AssertionError(f"FAIL connect: timed out after {WAIT}s waiting for {what}: {self.first_error()}")

    def first_error(self):
        lines = self.log.read_text(errors="replace").splitlines()
        errors = [ln for ln in lines if " ERROR " in ln]
        causes = [ln for ln in lines if ln.startswith("Caused by:")]
        return " / ".join(x[:300] for x in (errors[:1] + causes[-1:])) or "(no ERROR line in the worker log)"

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)

    def tail(self):
        return self.log.read_text(errors="replace")[-6000:]


def same_bytes(path, want):
    return path.exists() and path.read_bytes() == want


@pytest.mark.compat(CONNECT, "standalone: FileStream source -> topic -> FileStream sink, byte for byte")
def test_connect_standalone_copies_a_file_byte_for_byte(broker, tmp_path):
    b = broker.bootstrap
    ck_create_topic(b, "connect-lines", partitions=1)
    want = text_to_copy()
    src, dst = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_bytes(want)
    worker = props(tmp_path / "worker.properties", {
        **worker_common(b, free_port()), "offset.storage.file.filename": tmp_path / "offsets"})
    source = props(tmp_path / "source.properties", source_config("file-source", src, "connect-lines"))
    sink = props(tmp_path / "sink.properties", sink_config("file-sink", dst, "connect-lines"))
    w = Worker("org.apache.kafka.connect.cli.ConnectStandalone", [worker, source, sink], tmp_path / "connect.log")
    try:
        w.wait_until(lambda: same_bytes(dst, want), f"{dst} to equal {src} ({len(want)} bytes)")
    except AssertionError as e:
        got = dst.read_bytes() if dst.exists() else b""
        raise AssertionError(f"{e}\n(sink file has {len(got)} of {len(want)} bytes)\n--- worker log ---\n{w.tail()}") from None
    finally:
        w.stop()


def rest(port, method, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None, None


def running(port, name):
    status, body = rest(port, "GET", f"/connectors/{name}/status")
    return (status == 200 and body["connector"]["state"] == "RUNNING" and body["tasks"]
            and all(t["state"] == "RUNNING" for t in body["tasks"]))


@pytest.mark.compat(CONNECT, "distributed: compacted config/offset/status topics, connectors created over REST")
def test_connect_distributed_connectors_created_over_rest(broker, tmp_path):
    b = broker.bootstrap
    ck_create_topic(b, "dist-lines", partitions=1)
    want = text_to_copy(1000)
    src, dst = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_bytes(want)
    port = free_port()
    tag = uuid.uuid4().hex[:6]
    internal = {"config": f"connect-configs-{tag}", "offset": f"connect-offsets-{tag}",
                "status": f"connect-status-{tag}"}
    worker = props(tmp_path / "worker.properties", {
        **worker_common(b, port), "group.id": f"connect-cluster-{tag}",
        "config.storage.topic": internal["config"], "offset.storage.topic": internal["offset"],
        "status.storage.topic": internal["status"], "config.storage.replication.factor": "1",
        "offset.storage.replication.factor": "1", "status.storage.replication.factor": "1"})
    w = Worker("org.apache.kafka.connect.cli.ConnectDistributed", [worker], tmp_path / "connect.log")
    try:
        w.wait_until(lambda: rest(port, "GET", "/connectors")[0] == 200, "the REST API to answer")
        for name, config in [("dist-source", source_config("dist-source", src, "dist-lines")),
                             ("dist-sink", sink_config("dist-sink", dst, "dist-lines"))]:
            status, body = rest(port, "POST", "/connectors", {"name": name, "config": config})
            assert status == 201, f"FAIL connect: POST /connectors {name}: {status} {body}"
        w.wait_until(lambda: running(port, "dist-source") and running(port, "dist-sink"),
                     "both connectors and their tasks RUNNING")
        w.wait_until(lambda: same_bytes(dst, want), f"{dst} to equal {src} ({len(want)} bytes)")
        status, listed = rest(port, "GET", "/connectors")
        assert sorted(listed) == ["dist-sink", "dist-source"], listed
        topics = ck_topics(b)
        for t in internal.values():
            assert t in topics, f"Connect's internal topic {t} missing: {sorted(topics)}"
        admin = ck_admin(b)  # kept alive until its futures resolve
        futures = admin.describe_configs([ConfigResource("topic", t) for t in internal.values()])
        for res, f in futures.items():
            assert f.result(timeout=TIMEOUT)["cleanup.policy"].value == "compact", f"{res.name} is not compacted"
        status, _ = rest(port, "DELETE", "/connectors/dist-source")
        assert status == 204, status
    except AssertionError as e:
        got = dst.read_bytes() if dst.exists() else b""
        raise AssertionError(f"{e}\n(sink file has {len(got)} of {len(want)} bytes)\n--- worker log ---\n{w.tail()}") from None
    finally:
        w.stop()

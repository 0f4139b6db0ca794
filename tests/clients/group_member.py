"""One consumer-group member in its own process, and the handle the tests use to drive it.

Run as a script, it is a confluent-kafka consumer that subscribes to one topic in one group and
reports everything it does as JSON lines on stdout (one object per line, flushed at once):

  {"ev": "start", "pid": N}
  {"ev": "assign", "parts": [..], "owned": [..], "t": MONO}   # owned: the whole assignment after it
  {"ev": "revoke", "parts": [..], "owned": [..], "t": MONO}
  {"ev": "lost",   "parts": [..], "owned": [..], "t": MONO}
  {"ev": "recs",   "recs": [[partition, offset, value], ..]}  # "processing" = reporting them
  {"ev": "commit", "offsets": {"P": next_offset, ..}}         # a synchronous commit that succeeded
  {"ev": "commit_error", "error": "..."}
  {"ev": "stats",  "rebalance_cnt": N, "state": "...", "join_state": "...", "t": MONO}  # librdkafka's
                                                        # cgrp statistics, every --stats-ms
  {"ev": "closed"}

It commits after processing: each batch is reported first, then committed synchronously with the
offsets after its last record, so a record is never committed before it was reported. SIGTERM
makes it commit and close the consumer (leaving the group unless it is a static member); after
--max-records records it does the same on its own. MONO is time.monotonic(), which is the system-
wide CLOCK_MONOTONIC on Linux, so a parent can compare it with its own clock.

Imported, it gives `Member`, a handle on such a process (start, kill -9, terminate, and the state
it reported: current assignment, records, commits), shared by tests/clients/test_groups.py and
perf/rebalance_time.py.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve()


# ------------------------------------------------------------------------------ the member process

def _main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--client-id", default="member")
    ap.add_argument("--instance-id")
    ap.add_argument("--assignor", default="range")
    ap.add_argument("--session-ms", type=int, default=6000)
    ap.add_argument("--heartbeat-ms", type=int, default=1000)
    ap.add_argument("--max-records", type=int, default=0, help="commit and close after this many (0: never)")
    ap.add_argument("--stats-ms", type=int, default=0, help="statistics.interval.ms (0: no stats events)")
    ap.add_argument("--debug", default="", help="librdkafka debug contexts, logged to stderr (e.g. cgrp)")
    a = ap.parse_args(argv)

    from confluent_kafka import Consumer, KafkaException, TopicPartition

    out_lock = threading.Lock()

    def emit(**obj):
        line = json.dumps(obj, separators=(",", ":"))
        with out_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def on_stats(js):
        cg = json.loads(js).get("cgrp") or {}
        emit(ev="stats", rebalance_cnt=cg.get("rebalance_cnt"), state=cg.get("state"),
             join_state=cg.get("join_state"), t=time.monotonic())

    conf = {
        "bootstrap.servers": a.bootstrap,
        "group.id": a.group,
        "client.id": a.client_id,
        "partition.assignment.strategy": a.assignor,
        "session.timeout.ms": a.session_ms,
        "heartbeat.interval.ms": a.heartbeat_ms,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "fetch.wait.max.ms": 100,
        "topic.metadata.refresh.interval.ms": 5000,
        "log_level": 3,
    }
    if a.instance_id:
        conf["group.instance.id"] = a.instance_id
    if a.debug:
        conf["debug"] = a.debug
    if a.stats_ms:
        conf["statistics.interval.ms"] = a.stats_ms
        conf["stats_cb"] = on_stats
    c = Consumer(conf)
    owned: set[int] = set()
    cooperative = a.assignor == "cooperative-sticky"

    def on_assign(consumer, parts):
        ps = sorted(p.partition for p in parts)
        if cooperative:
            owned.update(ps)
        else:
            owned.clear()
            owned.update(ps)
        emit(ev="assign", parts=ps, owned=sorted(owned), t=time.monotonic())

    def on_revoke(consumer, parts):
        ps = sorted(p.partition for p in parts)
        owned.difference_update(ps)
        emit(ev="revoke", parts=ps, owned=sorted(owned), t=time.monotonic())

    def on_lost(consumer, parts):
        ps = sorted(p.partition for p in parts)
        owned.difference_update(ps)
        emit(ev="lost", parts=ps, owned=sorted(owned), t=time.monotonic())

    emit(ev="start", pid=os.getpid())
    c.subscribe([a.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
    total = 0
    try:
        while not stop.is_set():
            msgs = c.consume(num_messages=500, timeout=0.2)
            batch, nexts = [], {}
            for m in msgs:
                if m.error() is not None:
                    continue
                if a.max_records and total >= a.max_records:
                    break
                batch.append([m.partition(), m.offset(), m.value().decode(errors="replace")])
                nexts[m.partition()] = m.offset() + 1
                total += 1
            if batch:
                emit(ev="recs", recs=batch)  # processed
                try:
                    res = c.commit(offsets=[TopicPartition(a.topic, p, o) for p, o in nexts.items()],
                                   asynchronous=False)
                    ok = {str(tp.partition): tp.offset for tp in res if tp.error is None}
                    bad = [str(tp.error) for tp in res if tp.error is not None]
                    if ok:
                        emit(ev="commit", offsets=ok)
                    if bad:
                        emit(ev="commit_error", error="; ".join(bad))
                except KafkaException as e:
                    emit(ev="commit_error", error=str(e.args[0]))
            if a.max_records and total >= a.max_records:
                break
    finally:
        c.close()
        emit(ev="closed")


# ------------------------------------------------------------------------------ the handle

class Member:
    """A member process and what it has reported so far (updated by a reader thread)."""

    def __init__(self, bootstrap, group, topic, client_id="member", instance_id=None, assignor="range",
                 session_ms=6000, heartbeat_ms=1000, max_records=0, stats_ms=0, debug="", log_dir=None,
                 python=sys.executable):
        self.name = client_id
        self.args = [python, str(HERE), "--bootstrap", bootstrap, "--group", group, "--topic", topic,
                     "--client-id", client_id, "--assignor", assignor, "--session-ms", str(session_ms),
                     "--heartbeat-ms", str(heartbeat_ms), "--max-records", str(max_records),
                     "--stats-ms", str(stats_ms), "--debug", debug]
        if instance_id:
            self.args += ["--instance-id", instance_id]
        self.log_dir = Path(log_dir) if log_dir else None
        self.lock = threading.Lock()
        self.events: list[dict] = []
        self.owned: set[int] = set()
        self.recs: list[tuple[int, int, str]] = []  # (partition, offset, value) in report order
        self.commits: dict[int, int] = {}           # partition -> last successfully committed offset
        self.commit_log: list[tuple[int, int, int]] = []  # (index into recs when committed, partition, offset)
        self.batch_of: list[int] = []               # recs[k] came in batch batch_of[k]
        self.batch_commits: dict[int, dict[int, int]] = {}  # batch -> {partition: offset} its commit stored
        self.stats: dict = {}
        self.closed = False
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self._reader = None

    def start(self):
        stderr = subprocess.DEVNULL
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self.log_path = self.log_dir / f"member-{self.name}-{int(time.time() * 1000)}.log"
            stderr = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=stderr, start_new_session=True)
        if stderr is not subprocess.DEVNULL:
            stderr.close()
        self._reader = threading.Thread(target=self._read, daemon=True, name=f"member-{self.name}")
        self._reader.start()
        return self

    def _read(self):
        for raw in self.proc.stdout:
            try:
                ev = json.loads(raw)
            except ValueError:
                continue
            with self.lock:
                self.events.append(ev)
                kind = ev.get("ev")
                if kind in ("assign", "revoke", "lost"):
                    self.owned = set(ev["owned"])
                elif kind == "recs":
                    batch = self.batch_of[-1] + 1 if self.batch_of else 0
                    self.recs.extend((p, o, v) for p, o, v in ev["recs"])
                    self.batch_of.extend([batch] * len(ev["recs"]))
                elif kind == "commit":
                    # The member commits each batch right after reporting it, before the next one.
                    batch = self.batch_of[-1] if self.batch_of else -1
                    for p, o in ev["offsets"].items():
                        self.commits[int(p)] = o
                        self.commit_log.append((len(self.recs), int(p), o))
                        self.batch_commits.setdefault(batch, {})[int(p)] = o
                elif kind == "stats":
                    self.stats = ev
                elif kind == "closed":
                    self.closed = True

    # -------------------------------------------------------------- control
    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        """SIGKILL: no commit, no LeaveGroup."""
        if self.alive():
            self.proc.kill()
        self.proc.wait(timeout=30)
        self._join_reader()

    def terminate(self, timeout=60):
        """SIGTERM: the member commits, closes its consumer and exits 0."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
            raise AssertionError(f"member {self.name} did not exit within {timeout}s of SIGTERM")
        self._join_reader()
        assert rc == 0, f"member {self.name} exited with {rc}"
        return rc

    def wait_exit(self, timeout=60):
        rc = self.proc.wait(timeout=timeout)
        self._join_reader()
        return rc

    def _join_reader(self):
        if self._reader is not None:
            self._reader.join(timeout=10)

    # -------------------------------------------------------------- observation
    def consumptions(self):
        """[(partition, offset, value, committed)]: every record processed, and whether the commit
        right after its batch succeeded for its partition (so the group stored an offset past it)."""
        with self.lock:
            return [(p, o, v, self.batch_commits.get(b, {}).get(p, -1) > o)
                    for (p, o, v), b in zip(self.recs, self.batch_of)]

    def snapshot(self):
        with self.lock:
            return set(self.owned), len(self.recs), dict(self.commits)

    def assignments_since(self, index):
        with self.lock:
            return [e for e in self.events[index:] if e.get("ev") in ("assign", "revoke", "lost")]

    def n_events(self):
        with self.lock:
            return len(self.events)

    def first_time_owning(self, partition, after_index=0):
        """Monotonic time of the first assign event at/after `after_index` that gave `partition`."""
        with self.lock:
            for e in self.events[after_index:]:
                if e.get("ev") == "assign" and partition in e["parts"]:
                    return e["t"]
        return None

    def heartbeat_times(self):
        """Wall-clock times (time.time()) at which librdkafka sent a Heartbeat, from its stderr log
        (needs debug="cgrp" and a log_dir): `%7|SECONDS.MILLIS|HEARTBEAT|...: Heartbeat for group`."""
        if self.log_path is None or not self.log_path.exists():
            return []
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            parts = line.split("|", 3)
            if len(parts) == 4 and parts[2] == "HEARTBEAT" and "Heartbeat for group" in parts[3]:
                out.append(float(parts[1]))
        return out

    def __repr__(self):
        owned, n, commits = self.snapshot()
        return f"<Member {self.name} pid={self.proc and self.proc.pid} owned={sorted(owned)} recs={n} commits={commits}>"


if __name__ == "__main__":
    _main()

#!/usr/bin/env python3
"""Rebalance time after a member dies, with real clients (issue 4's closing figure).

Three confluent-kafka consumers, each in its own process (tests/clients/group_member.py), form a
group on a 3-partition topic and settle at one partition each. One is SIGKILLed (no LeaveGroup,
no commit). The time from the kill until a survivor's rebalance callback has been handed the dead
member's partition is `observed_ms`; the coordinator may only notice the death once the session
timeout has passed, so `rebalance_ms = observed_ms - session_timeout_ms` is what the rebalance
itself costs (detection slack, the survivors learning of it through their next heartbeat, the
JoinGroup and SyncGroup round, the assignor). The member's last heartbeat can precede the kill by
up to one heartbeat interval, so a single figure can be up to `heartbeat_interval_ms` below the
true cost; the kill lands at a random point of the heartbeat cycle, so repeat (--runs) and read the
median.

The members log librdkafka's cgrp debug lines, which time every Heartbeat they send; from the
victim's last heartbeat before the kill the script also derives when its session really expired
on the coordinator (last heartbeat + session timeout) and reports `after_expiry_ms`: the time from
that expiry to the survivor's assignment, which is the rebalance cost without the heartbeat-phase
noise (it includes the survivors' wait for their next heartbeat, at most one interval).

Times are CLOCK_MONOTONIC on both sides (time.monotonic() here and in the member processes).

  perf/rebalance_time.py --bootstrap 127.0.0.1:9092 [--session-timeout-ms 6000]
                         [--heartbeat-interval-ms 1000] [--runs 3]

The broker's group.min.session.timeout.ms must allow the session timeout (sluice's default is
6000). Prints one JSON object per run, then a summary object, on stdout.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "clients"))

from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from group_member import Member  # noqa: E402


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def create_topic(bootstrap, topic, partitions=3):
    adm = AdminClient({"bootstrap.servers": bootstrap})
    adm.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic].result(timeout=30)

    def ready():
        t = adm.list_topics(topic, timeout=10).topics.get(topic)
        return t is not None and t.error is None and len(t.partitions) == partitions and \
            all(p.error is None and p.leader >= 0 for p in t.partitions.values())
    wait_for(ready, 30, f"topic {topic}")


def one_run(bootstrap, session_ms, heartbeat_ms, settle_s, log_dir):
    tag = uuid.uuid4().hex[:8]
    topic, group = f"rebalance-time-{tag}", f"rebalance-time-{tag}"
    create_topic(bootstrap, topic)
    ms = [Member(bootstrap, group, topic, client_id=f"m{i}", session_ms=session_ms, heartbeat_ms=heartbeat_ms,
                 debug="cgrp", log_dir=log_dir).start() for i in (1, 2, 3)]
    try:
        def settled():
            owned = [m.snapshot()[0] for m in ms]
            return all(len(o) == 1 for o in owned) and set().union(*owned) == {0, 1, 2}
        wait_for(settled, 120, "3 members with one partition each")
        # Steady state, then a kill at a random point of the heartbeat cycle (members that joined
        # together heartbeat in lockstep, so a fixed delay would always hit the same phase).
        time.sleep(settle_s + random.uniform(0, heartbeat_ms / 1000))
        assert settled(), "the group rebalanced again while settling"
        victim = ms[1]
        (lost,) = victim.snapshot()[0]
        survivors = [ms[0], ms[2]]
        marks = {m.name: m.n_events() for m in survivors}
        t_kill = time.monotonic()
        wall_minus_mono = time.time() - t_kill
        victim.kill9()
        taker = wait_for(lambda: next((m for m in survivors if lost in m.snapshot()[0]), None),
                         session_ms / 1000 + 120, f"partition {lost} to move")
        t_moved = taker.first_time_owning(lost, marks[taker.name])
        observed = (t_moved - t_kill) * 1000
        r = {"session_timeout_ms": session_ms, "heartbeat_interval_ms": heartbeat_ms,
             "observed_ms": round(observed, 1), "rebalance_ms": round(observed - session_ms, 1),
             "partition": lost, "new_owner": taker.name}
        beats = [t - wall_minus_mono for t in victim.heartbeat_times() if t - wall_minus_mono <= t_kill]
        if beats:
            expiry = beats[-1] + session_ms / 1000
            r["last_heartbeat_before_kill_ms"] = round((t_kill - beats[-1]) * 1000, 1)
            r["after_expiry_ms"] = round((t_moved - expiry) * 1000, 1)
        return r
    finally:
        for m in ms:
            try:
                m.kill9()
            except Exception:
                pass


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--session-timeout-ms", type=int, default=6000)
    ap.add_argument("--heartbeat-interval-ms", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--settle-s", type=float, default=2.0, help="steady state before each kill")
    ap.add_argument("--log-dir", help="member processes' stderr, librdkafka debug logs (default: a temp dir)")
    a = ap.parse_args()
    if not a.log_dir:
        a.log_dir = tempfile.mkdtemp(prefix="rebalance-time-")
    runs = []
    for _ in range(a.runs):
        r = one_run(a.bootstrap, a.session_timeout_ms, a.heartbeat_interval_ms, a.settle_s, a.log_dir)
        print(json.dumps(r), flush=True)
        runs.append(r)
    reb = [r["rebalance_ms"] for r in runs]
    print(json.dumps({
        "summary": True, "runs": len(runs), "session_timeout_ms": a.session_timeout_ms,
        "heartbeat_interval_ms": a.heartbeat_interval_ms,
        "observed_ms": round(statistics.median(r["observed_ms"] for r in runs), 1),
        "rebalance_ms": round(statistics.median(reb), 1),
        "rebalance_ms_min": min(reb), "rebalance_ms_max": max(reb),
        **({"after_expiry_ms": round(statistics.median(r["after_expiry_ms"] for r in runs), 1)}
           if all("after_expiry_ms" in r for r in runs) else {}),
    }), flush=True)


if __name__ == "__main__":
    main()

"""Replication on a 3-broker cluster on loopback (issue 9).

acks=all to a replication-factor-3 topic: every replica ends with the same bytes for the
committed range. A paused broker (SIGSTOP) drops out of the ISR after replica.lag.time.max.ms
and rejoins after SIGCONT once it has caught up. Killing each partition's leader in turn under
a steady idempotent producer loses no acknowledged record and duplicates none, and a consumer
group keeps reading (the shared workload in failover.py; perf/failover.py runs it longer and
records the unavailability windows).
"""

import os
import signal
import time

import pytest

from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

import failover
import kwire
from cluster import cluster_factory  # noqa: F401  (the fixture)
from kwire import Connection
from support import TIMEOUT, ck_admin, wait_for

PARTITIONS = 3


def fast_failure(tmp_path):
    cfg = tmp_path / "fast-failure.toml"
    cfg.write_text(failover.FAST_FAILURE_CONFIG)
    return ["--config", str(cfg)]


def all_brokers_listed(cluster):
    for node in cluster.running():
        with Connection.to(cluster.bootstrap(node)) as c:
            if sorted(b["node_id"] for b in kwire.metadata_v8(c, [])["brokers"]) != [1, 2, 3]:
                return False
    return True


def create_rf3(cluster, name, partitions=PARTITIONS, configs=None):
    wait_for(lambda: all_brokers_listed(cluster), what="three live brokers")
    admin = ck_admin(cluster.bootstrap(cluster.running()[0]))
    fs = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=3,
                                       config=configs or {})],
                             operation_timeout=TIMEOUT, request_timeout=TIMEOUT * 2)
    fs[name].result(timeout=TIMEOUT * 3)


def isr(cluster, name, node=None):
    """{partition: (leader, sorted isr)} from `node`'s metadata (any running node if None)."""
    node = node or cluster.running()[0]
    with Connection.to(cluster.bootstrap(node)) as c:
        md = kwire.metadata_v8(c, [name])
    t = md["topics"][name] if isinstance(md["topics"], dict) else md["topics"][0]
    return {p["partition"]: (p["leader"], sorted(p["isr"])) for p in t["partitions"]}


def every_partition(cluster, name, holds, partitions=PARTITIONS, node=None):
    """True once `name` shows all its partitions (a broker that has not applied the topic yet
    shows none, which must not count as every partition holding) and holds(leader, isr) for each."""
    parts = isr(cluster, name, node)
    return len(parts) == partitions and all(holds(leader, i) for leader, i in parts.values())


def leaders_and_epochs(cluster, name, node):
    """{partition: (leader, leader epoch)} from `node`'s metadata."""
    with Connection.to(cluster.bootstrap(node)) as c:
        t = kwire.metadata_v8(c, [name])["topics"][name]
    return {p["partition"]: (p["leader"], p["leader_epoch"]) for p in t["partitions"]}


def replica_log(cluster, node, name, partition, end):
    """The raw record bytes of [0, end) that `node` holds, read with a replica fetch."""
    out = b""
    offset = 0
    with Connection.to(cluster.bootstrap(node)) as c:
        while offset < end:
            r = kwire.fetch_v4(c, name, partition, offset, max_bytes=1 << 20, replica_id=-2)
            assert r.error_code == 0, f"node {node} p{partition}: error {r.error_code}"
            batches = kwire.batch_spans(r.records or b"")
            assert batches, f"node {node} p{partition}: nothing at offset {offset}"
            for base, last, raw in batches:
                if base >= end:
                    return out
                out += raw
                offset = last + 1
    return out


def test_acks_all_leaves_every_replica_with_the_same_bytes(cluster_factory, tmp_path):
    cluster = cluster_factory(n=3, extra_args=fast_failure(tmp_path))
    create_rf3(cluster, "replicated")
    wait_for(lambda: every_partition(cluster, "replicated", lambda _, i: i == [1, 2, 3]),
             what="every replica in sync")
    p = Producer({"bootstrap.servers": cluster.bootstrap(1), "acks": "all", "linger.ms": 5})
    acked = []
    for i in range(3000):
        p.produce("replicated", key=str(i).encode(), value=os.urandom(100),
                  on_delivery=lambda err, m: acked.append(m) if err is None else None)
    assert p.flush(60) == 0
    assert len(acked) == 3000
    for part in range(PARTITIONS):
        end = max(m.offset() for m in acked if m.partition() == part) + 1
        wait_for(lambda: len({len(replica_log(cluster, n, "replicated", part, end)) for n in (1, 2, 3)}) == 1,
                 what=f"every replica of p{part} holding the committed range")
        logs = {node: replica_log(cluster, node, "replicated", part, end) for node in (1, 2, 3)}
        assert logs[1] and logs[1] == logs[2] == logs[3], f"p{part}: replicas differ"


@pytest.mark.parametrize("which", ["controller-leader", "not-controller"])
def test_a_paused_broker_leaves_the_isr_and_rejoins_after_catching_up(cluster_factory, tmp_path, which):
    """Pausing the controller leader too: the others must elect a new one and keep
    heartbeating to it, not wait out requests to the paused one (then the new leader fenced
    every broker, and no ISR ever shrank)."""
    cluster = cluster_factory(n=3, extra_args=fast_failure(tmp_path))
    create_rf3(cluster, "paused")
    wait_for(lambda: every_partition(cluster, "paused", lambda _, i: i == [1, 2, 3]),
             what="every replica in sync")
    leader = cluster.wait_leader()
    victim = leader if which == "controller-leader" else next(n for n in (1, 2, 3) if n != leader)
    survivor = next(n for n in (1, 2, 3) if n != victim)
    before = leaders_and_epochs(cluster, "paused", survivor)
    pid = cluster.nodes[victim].proc.pid
    os.kill(pid, signal.SIGSTOP)
    acked = []
    try:
        p = Producer({"bootstrap.servers": cluster.bootstrap(survivor), "acks": "all", "linger.ms": 5,
                      "message.timeout.ms": 60000})
        for i in range(300):
            p.produce("paused", value=b"v%d" % i,
                      on_delivery=lambda err, m: acked.append(m) if err is None else None)
        assert p.flush(60) == 0, "acks=all must complete once the paused broker leaves the ISR"
        wait_for(lambda: every_partition(cluster, "paused", lambda _, i: victim not in i, node=survivor),
                 what=f"broker {victim} out of every ISR")
        after = leaders_and_epochs(cluster, "paused", survivor)
        kept = {p: le for p, le in before.items() if le[0] != victim}
        assert {p: after[p] for p in kept} == kept, \
            "a survivor lost a leadership: the controller fenced a broker that kept heartbeating"
    finally:
        os.kill(pid, signal.SIGCONT)
    assert len(acked) == 300
    # Asked of a survivor: the victim's own metadata, right after SIGCONT, is still the
    # pre-pause view with every replica in sync.
    wait_for(lambda: every_partition(cluster, "paused", lambda _, i: i == [1, 2, 3], node=survivor),
             timeout=60, what=f"broker {victim} back in every ISR")
    for part, (leader, _) in isr(cluster, "paused", survivor).items():
        end = max((m.offset() for m in acked if m.partition() == part), default=-1) + 1
        if end:
            assert replica_log(cluster, victim, "paused", part, end) == \
                replica_log(cluster, leader, "paused", part, end), f"p{part}: broker {victim} rejoined without the records"


def test_leader_kills_under_load_lose_and_duplicate_nothing(cluster_factory, tmp_path):
    cluster = cluster_factory(n=3, extra_args=fast_failure(tmp_path))
    windows, acks, reader = failover.run(cluster, kills=3, partitions=PARTITIONS, rate=300)
    assert len(windows) == 3
    assert reader.seen > 0 and not reader.errors


# Sessions long enough that a short pause fences no one and shrinks no ISR.
SLOW_SESSION_CONFIG = """\
broker_heartbeat_interval_ms = 200
broker_session_timeout_ms = 4000
replica_lag_time_max_ms = 10000
"""
# Longer than the leader may hold a replica fetch (replica.fetch.wait.max.ms, 500 ms): after
# it, a paused follower's last fetch has been answered and no other is in flight, so what the
# leader appends next reaches no follower.
FETCH_HOLD_S = 1.0


def test_a_returning_old_leader_truncates_its_divergent_tail(cluster_factory, tmp_path):
    """The old leader appends records (acks=1) its followers never fetch, dies, and comes back
    after a new leader wrote other records at those offsets: it must cut its tail back with
    OffsetForLeaderEpoch and end byte-identical to the new leader."""
    cfg = tmp_path / "slow-session.toml"
    cfg.write_text(SLOW_SESSION_CONFIG)
    cluster = cluster_factory(n=3, extra_args=["--config", str(cfg)])
    create_rf3(cluster, "diverge", partitions=1, configs={"min.insync.replicas": "2"})
    wait_for(lambda: every_partition(cluster, "diverge", lambda _, i: i == [1, 2, 3], partitions=1),
             what="every replica in sync")
    old_leader = isr(cluster, "diverge")[0][0]
    followers = [n for n in (1, 2, 3) if n != old_leader]

    committed = Producer({"bootstrap.servers": cluster.bootstrap(old_leader), "acks": "all"})
    for i in range(20):
        committed.produce("diverge", value=b"base-%d" % i)
    assert committed.flush(30) == 0

    for n in followers:
        os.kill(cluster.nodes[n].proc.pid, signal.SIGSTOP)
    try:
        time.sleep(FETCH_HOLD_S)
        tail = Producer({"bootstrap.servers": cluster.bootstrap(old_leader), "acks": "1"})
        acked = []
        for i in range(30):
            tail.produce("diverge", value=b"lost-%d" % i,
                         on_delivery=lambda err, m: acked.append(m.offset()) if err is None else None)
        assert tail.flush(30) == 0 and sorted(acked) == list(range(20, 50)), acked
        cluster.kill9(old_leader)
    finally:
        for n in followers:
            os.kill(cluster.nodes[n].proc.pid, signal.SIGCONT)

    survivor = followers[0]
    new_leader = wait_for(
        lambda: (lambda l: l if l in followers else None)(isr(cluster, "diverge", survivor)[0][0]),
        timeout=60, what="a new leader among the followers")
    fresh = Producer({"bootstrap.servers": cluster.bootstrap(new_leader), "acks": "all"})
    fresh_offsets = []
    for i in range(10):
        fresh.produce("diverge", value=b"new-%d" % i,
                      on_delivery=lambda err, m: fresh_offsets.append(m.offset()) if err is None else None)
    assert fresh.flush(30) == 0
    assert sorted(fresh_offsets) == list(range(20, 30)), "the new leader never had the old tail"

    cluster.restart(old_leader)
    wait_for(lambda: every_partition(cluster, "diverge", lambda _, i: i == [1, 2, 3], partitions=1,
                                     node=survivor),
             timeout=60, what=f"broker {old_leader} back in the ISR")
    leader_log = replica_log(cluster, new_leader, "diverge", 0, 30)
    assert b"lost-" not in leader_log and b"new-9" in leader_log
    wait_for(lambda: replica_log(cluster, old_leader, "diverge", 0, 30) == leader_log,
             what=f"broker {old_leader}'s log equal to the new leader's")

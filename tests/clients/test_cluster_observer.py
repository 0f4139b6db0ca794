"""Brokers that are not controller voters (observers) and UnregisterBroker, on loopback.

Three voters and one observer (node 4, not in `--controller-voters`): the observer keeps no
Raft log, registers and heartbeats like any broker, is listed by every broker (and lists
every broker itself), gets replicas placed on it and holds the leader's bytes, forwards the
topics created through it to the controller, follows a controller leader change and comes
back after its own restart with the metadata it missed. UnregisterBroker (API 64, and
`sluice cluster unregister ID`) removes a stopped broker from the registry: no longer listed,
its replicas stay assigned as offline; an unknown id is refused (BROKER_ID_NOT_REGISTERED,
whose message the CLI shows).
"""

import os
import subprocess

from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

import failover
import kwire
from cluster import cluster_factory  # noqa: F401  (the fixture)
from conftest import SLUICE_BIN
from kwire import Connection
from support import TIMEOUT, ck_admin, ck_consume_all, ck_produce, new_tag, verify_read_back, wait_for
from test_cluster_brokers import cluster_info, listed_brokers, partitions_seen
from test_cluster_replication import replica_log

OBSERVER = 4
UNREGISTER_BROKER = 64


def fast_failure(tmp_path):
    cfg = tmp_path / "fast-failure.toml"
    cfg.write_text(failover.FAST_FAILURE_CONFIG)
    return ["--config", str(cfg)]


def three_voters_one_observer(cluster_factory, tmp_path):
    cluster = cluster_factory(n=4, voters=3, extra_args=fast_failure(tmp_path))
    assert cluster.observers() == [OBSERVER]
    cluster.wait_leader()
    wait_all_listed(cluster, [1, 2, 3, 4])
    return cluster


def wait_all_listed(cluster, expected):
    for node in cluster.running():
        wait_for(lambda node=node: listed_brokers(cluster, node) == expected,
                 what=f"brokers {expected} in the metadata of node {node}")


def create(cluster, node, name, partitions, rf):
    admin = ck_admin(cluster.bootstrap(node))
    fs = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=rf)],
                             operation_timeout=TIMEOUT, request_timeout=TIMEOUT * 2)
    assert fs[name].result(timeout=TIMEOUT * 3) is None


def wait_topic_everywhere(cluster, name, partitions):
    for node in cluster.running():
        wait_for(lambda node=node: len(partitions_seen(cluster, node, name) or {}) == partitions,
                 what=f"{name} with {partitions} partitions in the metadata of node {node}")


def all_in_sync(cluster, name, partitions, replicas):
    for node in cluster.running():
        parts = partitions_seen(cluster, node, name) or {}
        if len(parts) != partitions:
            return False
        if any(sorted(p["isr"]) != replicas or p["leader"] < 0 for p in parts.values()):
            return False
    return True


def unregister(cluster, node, broker_id):
    return subprocess.run([str(SLUICE_BIN), "cluster", "unregister", str(broker_id),
                           "--bootstrap-server", cluster.bootstrap(node)],
                          capture_output=True, text=True, timeout=60)


def test_observer_is_listed_gets_replicas_with_the_leaders_bytes_and_forwards_creation(
        cluster_factory, tmp_path):
    cluster = three_voters_one_observer(cluster_factory, tmp_path)
    observer = cluster.nodes[OBSERVER]
    assert not (observer.data_dir / "meta" / "raft").exists(), "an observer keeps no Raft log"
    for node in cluster.running():
        assert cluster_info(cluster, node) == {1: "unfenced", 2: "unfenced", 3: "unfenced", 4: "unfenced"}
    assert cluster.controller_seen_by(OBSERVER) in (1, 2, 3)

    # A replication-factor-4 topic: every partition has a replica on the observer.
    topic = "rf4-" + new_tag().decode()
    create(cluster, 1, topic, partitions=4, rf=4)
    wait_for(lambda: all_in_sync(cluster, topic, 4, [1, 2, 3, 4]), what=f"{topic} in sync on 4 brokers")
    leaders = {p["leader"] for p in partitions_seen(cluster, OBSERVER, topic).values()}
    assert OBSERVER in leaders, "round-robin placement makes the observer lead one partition"
    p = Producer({"bootstrap.servers": cluster.bootstrap(2), "acks": "all", "linger.ms": 5})
    acked = []
    for i in range(2000):
        p.produce(topic, key=str(i).encode(), value=os.urandom(100),
                  on_delivery=lambda err, m: acked.append(m) if err is None else None)
    assert p.flush(60) == 0
    assert len(acked) == 2000
    for part in range(4):
        end = max(m.offset() for m in acked if m.partition() == part) + 1
        wait_for(lambda: len({len(replica_log(cluster, n, topic, part, end)) for n in (1, 2, 3, 4)}) == 1,
                 what=f"every replica of p{part} holding the committed range")
        logs = {n: replica_log(cluster, n, topic, part, end) for n in (1, 2, 3, 4)}
        assert logs[OBSERVER] and all(logs[n] == logs[OBSERVER] for n in (1, 2, 3)), f"p{part}: replicas differ"

    # A topic created through the observer: forwarded to the controller, seen everywhere, usable.
    via = "via-observer-" + new_tag().decode()
    create(cluster, OBSERVER, via, partitions=3, rf=3)
    wait_topic_everywhere(cluster, via, 3)
    tag = new_tag()
    delivery = ck_produce(cluster.bootstrap(OBSERVER), via, 300, tag)
    recs, _ = ck_consume_all(cluster.bootstrap(OBSERVER), via, 3)
    verify_read_back(recs, tag, 300, 3, delivery)


def test_observer_follows_a_controller_failover_and_its_own_restart(cluster_factory, tmp_path):
    cluster = three_voters_one_observer(cluster_factory, tmp_path)
    leader = cluster.wait_leader()
    cluster.kill9(leader)
    # wait_leader asks every running node, the observer included.
    new_leader = cluster.wait_leader(exclude=(leader,))
    assert new_leader != leader and new_leader != OBSERVER
    after = "after-failover-" + new_tag().decode()
    create(cluster, OBSERVER, after, partitions=2, rf=2)
    wait_topic_everywhere(cluster, after, 2)
    cluster.restart(leader)
    wait_all_listed(cluster, [1, 2, 3, 4])

    # The observer stops; a topic is created while it is away.
    cluster.nodes[OBSERVER].stop()
    assert (cluster.nodes[OBSERVER].data_dir / "meta" / "observer" / "metadata.json").exists()
    wait_all_listed(cluster, [1, 2, 3])
    missed = "while-observer-down-" + new_tag().decode()
    create(cluster, 1, missed, partitions=3, rf=3)
    tag = new_tag()
    delivery = ck_produce(cluster.bootstrap(1), missed, 200, tag)
    cluster.restart(OBSERVER)
    wait_all_listed(cluster, [1, 2, 3, 4])
    assert set(partitions_seen(cluster, OBSERVER, after)) == {0, 1}
    wait_topic_everywhere(cluster, missed, 3)
    assert cluster_info(cluster, OBSERVER)[OBSERVER] == "unfenced"
    recs, _ = ck_consume_all(cluster.bootstrap(OBSERVER), missed, 3)
    verify_read_back(recs, tag, 200, 3, delivery)


def test_unregister_removes_a_stopped_broker_and_keeps_its_replicas_offline(cluster_factory, tmp_path):
    cluster = three_voters_one_observer(cluster_factory, tmp_path)
    with Connection.to(cluster.bootstrap(1)) as c:
        _, apis = kwire.api_versions(c)
    assert apis.get(UNREGISTER_BROKER) == (0, 0), "UnregisterBroker v0 is advertised"

    topic = "unreg-" + new_tag().decode()
    create(cluster, 1, topic, partitions=4, rf=4)
    wait_for(lambda: all_in_sync(cluster, topic, 4, [1, 2, 3, 4]), what=f"{topic} in sync")
    cluster.nodes[OBSERVER].stop()
    wait_all_listed(cluster, [1, 2, 3])

    out = unregister(cluster, 2, OBSERVER)
    assert out.returncode == 0, out.stderr
    for node in cluster.running():
        wait_for(lambda node=node: OBSERVER not in cluster_info(cluster, node),
                 what=f"broker {OBSERVER} gone from `cluster info` of node {node}")
        parts = partitions_seen(cluster, node, topic)
        assert len(parts) == 4
        for p in parts.values():
            assert OBSERVER in p["replicas"], "its replicas stay assigned"
            assert OBSERVER in p["offline"]
            assert OBSERVER not in p["isr"]
            assert p["leader"] in (1, 2, 3)

    again = unregister(cluster, 3, OBSERVER)
    assert again.returncode != 0
    assert "Broker ID 4 is not currently registered" in again.stderr, again.stderr
    unknown = unregister(cluster, 1, 99)
    assert unknown.returncode != 0
    assert "Broker ID 99 is not currently registered" in unknown.stderr, unknown.stderr


def test_unregister_on_a_single_node_names_the_unknown_id(broker):
    out = subprocess.run([str(SLUICE_BIN), "cluster", "unregister", "7", "--bootstrap-server", broker.bootstrap],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "Broker ID 7 is not currently registered" in out.stderr, out.stderr

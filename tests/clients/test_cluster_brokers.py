"""Broker registration, heartbeats and fencing (issue 9) on a 3-broker cluster on loopback.

Every broker registers with the controller quorum and heartbeats; every broker's Metadata
lists the three; a replication-factor-3 topic spreads its replicas over them. A broker killed
with SIGKILL stops heartbeating: after the session timeout (short here) the controller fences
it, Metadata stops listing it, and the partitions it led get a new leader from the ISR in a
higher leader epoch. Restarted, it registers again and is listed again.
"""

import subprocess

import kwire
from cluster import cluster_factory  # noqa: F401  (the fixture)
from conftest import SLUICE_BIN
from kwire import Connection
from support import TIMEOUT, ck_admin, new_tag, wait_for
from confluent_kafka.admin import NewTopic

HEARTBEAT_MS = 200
SESSION_MS = 1500


def fast_sessions(tmp_path):
    """Broker args giving short heartbeats and sessions, so a dead broker is fenced quickly."""
    cfg = tmp_path / "sessions.toml"
    cfg.write_text(f"broker_heartbeat_interval_ms = {HEARTBEAT_MS}\n"
                   f"broker_session_timeout_ms = {SESSION_MS}\n")
    return ["--config", str(cfg)]


def metadata(cluster, node, topics=None):
    with Connection.to(cluster.bootstrap(node)) as c:
        return kwire.metadata_v8(c, topics)


def listed_brokers(cluster, node):
    return sorted(b["node_id"] for b in metadata(cluster, node, [])["brokers"])


def wait_brokers_listed(cluster, expected):
    for node in cluster.running():
        wait_for(lambda node=node: listed_brokers(cluster, node) == expected,
                 what=f"brokers {expected} in the metadata of node {node}")


def cluster_info(cluster, node):
    """{broker id: 'fenced' | 'unfenced'} as `sluice cluster info` shows them."""
    out = subprocess.run([str(SLUICE_BIN), "cluster", "info", "--bootstrap-server", cluster.bootstrap(node)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    states = {}
    for line in out.stdout.splitlines():
        if line.startswith("  "):
            fields = line.split()
            states[int(fields[0])] = "fenced" if "fenced" in fields else "unfenced"
    return states


def create_rf3(cluster, node, name, partitions=3):
    admin = ck_admin(cluster.bootstrap(node))
    fs = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=3)],
                             operation_timeout=TIMEOUT, request_timeout=TIMEOUT * 2)
    assert fs[name].result(timeout=TIMEOUT * 3) is None


def partitions_seen(cluster, node, topic):
    t = metadata(cluster, node, [topic])["topics"].get(topic)
    if t is None or t["error_code"] != 0:
        return None
    return {p["partition"]: p for p in t["partitions"]}


def test_three_brokers_register_and_rf3_replicas_span_them(cluster_factory, tmp_path):
    cluster = cluster_factory(n=3, extra_args=fast_sessions(tmp_path))
    cluster.wait_leader()
    wait_brokers_listed(cluster, [1, 2, 3])
    for node in cluster.running():
        assert cluster_info(cluster, node) == {1: "unfenced", 2: "unfenced", 3: "unfenced"}

    topic = "rf3-" + new_tag().decode()
    create_rf3(cluster, 2, topic)
    for node in cluster.running():
        parts = wait_for(lambda node=node: partitions_seen(cluster, node, topic),
                         what=f"{topic} in the metadata of node {node}")
        assert sorted(parts) == [0, 1, 2]
        for p in parts.values():
            assert p["error_code"] == 0
            assert sorted(p["replicas"]) == [1, 2, 3]
            assert sorted(p["isr"]) == [1, 2, 3]
            assert p["leader"] == p["replicas"][0]
            assert p["leader_epoch"] == 0
        # Round-robin placement: three partitions, each led by a different broker.
        assert sorted(p["leader"] for p in parts.values()) == [1, 2, 3]


def test_killed_broker_is_fenced_its_partitions_get_new_leaders_and_it_returns(cluster_factory, tmp_path):
    cluster = cluster_factory(n=3, extra_args=fast_sessions(tmp_path))
    controller = cluster.wait_leader()
    wait_brokers_listed(cluster, [1, 2, 3])
    topic = "failover-" + new_tag().decode()
    create_rf3(cluster, controller, topic)
    before = wait_for(lambda: partitions_seen(cluster, controller, topic), what=f"{topic} created")

    victim = next(i for i in (3, 2, 1) if i != controller)
    led = {i: p for i, p in before.items() if p["leader"] == victim}
    assert led, f"broker {victim} leads none of {before}"
    cluster.kill9(victim)

    survivors = [i for i in cluster.running()]
    wait_brokers_listed(cluster, sorted(survivors))
    for node in survivors:
        def moved(node=node):
            parts = partitions_seen(cluster, node, topic)
            return parts if parts and all(parts[i]["leader"] not in (victim, -1) for i in led) else None
        parts = wait_for(moved, what=f"new leaders for {sorted(led)} on node {node}")
        for i, old in led.items():
            p = parts[i]
            assert p["leader"] in old["isr"] and p["leader"] != victim
            assert p["leader_epoch"] > old["leader_epoch"]
            assert victim not in p["isr"]
            assert p["replicas"] == old["replicas"], "fencing keeps the assignment"
        assert cluster_info(cluster, node)[victim] == "fenced"

    cluster.restart(victim)
    wait_brokers_listed(cluster, [1, 2, 3])
    wait_for(lambda: cluster_info(cluster, controller).get(victim) == "unfenced",
             what=f"broker {victim} unfenced again")


def test_sigterm_moves_leaderships_away_before_the_broker_stops(cluster_factory, tmp_path):
    # A session far longer than the wait below: only the controlled shutdown can move them.
    cfg = tmp_path / "long-sessions.toml"
    cfg.write_text("broker_heartbeat_interval_ms = 500\nbroker_session_timeout_ms = 60000\n")
    cluster = cluster_factory(n=3, extra_args=["--config", str(cfg)])
    controller = cluster.wait_leader()
    wait_brokers_listed(cluster, [1, 2, 3])
    topic = "shutdown-" + new_tag().decode()
    create_rf3(cluster, controller, topic)
    wait_for(lambda: partitions_seen(cluster, controller, topic), what=f"{topic} created")

    leaving = next(i for i in (3, 2, 1) if i != controller)
    cluster.nodes[leaving].stop()
    for node in cluster.running():
        def moved(node=node):
            parts = partitions_seen(cluster, node, topic)
            return parts and all(p["leader"] not in (leaving, -1) for p in parts.values())
        wait_for(moved, timeout=10, what=f"leaderships off broker {leaving} on node {node}")
        assert leaving not in listed_brokers(cluster, node)
    cluster.restart(leaving)
    wait_brokers_listed(cluster, [1, 2, 3])


def leader_config(tmp_path, auto_rebalance):
    """Fast sessions, plus Kafka's auto leader rebalance on (checked every second) or off."""
    cfg = tmp_path / "leaders.toml"
    cfg.write_text(f"broker_heartbeat_interval_ms = {HEARTBEAT_MS}\n"
                   f"broker_session_timeout_ms = {SESSION_MS}\n"
                   f"auto_leader_rebalance_enable = {'true' if auto_rebalance else 'false'}\n"
                   "leader_imbalance_check_interval_seconds = 1\n")
    return ["--config", str(cfg)]


def bounce_a_preferred_leader(cluster, controller, topic):
    """Stops the broker preferred for (and leading) a partition, so its leadership moves away,
    restarts it and waits until it is back in that partition's ISR. -> (partition, broker)."""
    before = wait_for(lambda: partitions_seen(cluster, controller, topic), what=f"{topic} created")
    partition, preferred = next((i, p["replicas"][0]) for i, p in sorted(before.items())
                                if p["replicas"][0] != controller and p["leader"] == p["replicas"][0])
    cluster.nodes[preferred].stop()
    wait_for(lambda: partitions_seen(cluster, controller, topic)[partition]["leader"] not in (preferred, -1),
             what=f"leadership of {topic}-{partition} off broker {preferred}")
    cluster.restart(preferred)
    wait_for(lambda: preferred in partitions_seen(cluster, controller, topic)[partition]["isr"],
             what=f"broker {preferred} back in the ISR of {topic}-{partition}")
    return partition, preferred


def test_elect_leaders_moves_leadership_back_to_the_preferred_replica(cluster_factory, tmp_path):
    from confluent_kafka import ElectionType, TopicPartition
    cluster = cluster_factory(n=3, extra_args=leader_config(tmp_path, auto_rebalance=False))
    controller = cluster.wait_leader()
    wait_brokers_listed(cluster, [1, 2, 3])
    topic = "elect-" + new_tag().decode()
    create_rf3(cluster, controller, topic)
    partition, preferred = bounce_a_preferred_leader(cluster, controller, topic)
    moved = partitions_seen(cluster, controller, topic)[partition]
    assert moved["leader"] != preferred, "auto rebalance is off: the leadership stays where it moved"

    admin = ck_admin(cluster.bootstrap(controller))
    tp = TopicPartition(topic, partition)
    result = admin.elect_leaders(ElectionType.PREFERRED, [tp]).result(timeout=TIMEOUT)
    assert result == {tp: None}
    for node in cluster.running():
        wait_for(lambda node=node: partitions_seen(cluster, node, topic)[partition]["leader"] == preferred,
                 what=f"broker {preferred} leading {topic}-{partition} on node {node}")
    after = partitions_seen(cluster, controller, topic)[partition]
    assert after["leader_epoch"] > moved["leader_epoch"]

    # Kafka's answers when there is nothing to do or nothing to elect.
    again = admin.elect_leaders(ElectionType.PREFERRED, [tp]).result(timeout=TIMEOUT)
    assert again[tp].name() == "ELECTION_NOT_NEEDED"
    unknown = TopicPartition(topic, 99)
    missing = admin.elect_leaders(ElectionType.PREFERRED, [unknown]).result(timeout=TIMEOUT)
    assert missing[unknown].name() == "UNKNOWN_TOPIC_OR_PART"
    unclean = admin.elect_leaders(ElectionType.UNCLEAN, [tp]).result(timeout=TIMEOUT)
    assert unclean[tp].name() == "ELECTION_NOT_NEEDED", "the partition has a live leader"
    # Every partition at its preferred leader: an election for all answers for none.
    assert admin.elect_leaders(ElectionType.PREFERRED, None).result(timeout=TIMEOUT) == {}


def test_auto_leader_rebalance_returns_leadership_to_the_preferred_replica(cluster_factory, tmp_path):
    cluster = cluster_factory(n=3, extra_args=leader_config(tmp_path, auto_rebalance=True))
    controller = cluster.wait_leader()
    wait_brokers_listed(cluster, [1, 2, 3])
    topic = "rebalance-" + new_tag().decode()
    create_rf3(cluster, controller, topic)
    partition, preferred = bounce_a_preferred_leader(cluster, controller, topic)
    # No request: the controller's rebalance round moves it back once the replica is in sync.
    for node in cluster.running():
        wait_for(lambda node=node: partitions_seen(cluster, node, topic)[partition]["leader"] == preferred,
                 what=f"broker {preferred} leading {topic}-{partition} again on node {node}")

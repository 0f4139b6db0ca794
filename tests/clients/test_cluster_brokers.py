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

"""Partition reassignment on a 4-broker cluster on loopback (issue 9, item 3).

`sluice cluster reassign` drives AlterPartitionReassignments / ListPartitionReassignments:
moving a partition off its leader under a steady acks=all idempotent producer completes with
no acknowledged record lost or duplicated and the order kept; the removed replica's log
directory is deleted; nothing is listed as moving afterwards. A move onto a dead broker stays
in progress (`--verify` exits 1) until `--cancel` puts the original replicas back; cancelling
when nothing moves is NO_REASSIGNMENT_IN_PROGRESS. `--throttle` sets Kafka's throttle configs
(topic replica lists, broker rates) and `--verify` removes them once nothing moves. `--decommission` moves every replica off
a broker.
"""

import json
import subprocess

from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import ConfigResource, NewTopic

import failover
import kwire
from cluster import cluster_factory  # noqa: F401  (the fixture)
from conftest import SLUICE_BIN
from kwire import Connection
from support import TIMEOUT, ck_admin, wait_for

NODES = [1, 2, 3, 4]


def fast_failure(tmp_path):
    cfg = tmp_path / "fast-failure.toml"
    cfg.write_text(failover.FAST_FAILURE_CONFIG)
    return ["--config", str(cfg)]


def reassign(cluster, *args, plan=None, timeout=180):
    """Runs `sluice cluster reassign ARGS` (the plan, a dict, on stdin); the finished process."""
    bootstrap = ",".join(cluster.bootstrap(n) for n in cluster.running())
    return subprocess.run([str(SLUICE_BIN), "cluster", "reassign", "--bootstrap-server", bootstrap, *args],
                          input=json.dumps(plan) if plan is not None else None,
                          capture_output=True, text=True, timeout=timeout)


def listed_brokers(cluster, node):
    with Connection.to(cluster.bootstrap(node)) as c:
        return sorted(b["node_id"] for b in kwire.metadata_v8(c, [])["brokers"])


def wait_live(cluster, expected):
    for node in cluster.running():
        wait_for(lambda node=node: listed_brokers(cluster, node) == expected,
                 what=f"brokers {expected} in the metadata of node {node}")


def create(cluster, name, partitions, rf, configs=None):
    admin = ck_admin(cluster.bootstrap(cluster.running()[0]))
    fs = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=rf,
                                       config=configs or {})],
                             operation_timeout=TIMEOUT, request_timeout=TIMEOUT * 2)
    fs[name].result(timeout=TIMEOUT * 3)


def state(cluster, name, node=None):
    """{partition: (leader, replicas, sorted isr)} from `node`'s metadata."""
    node = node or cluster.running()[0]
    with Connection.to(cluster.bootstrap(node)) as c:
        md = kwire.metadata_v8(c, [name])
    t = md["topics"][name] if isinstance(md["topics"], dict) else md["topics"][0]
    return {p["partition"]: (p["leader"], list(p["replicas"]), sorted(p["isr"])) for p in t["partitions"]}


def all_in_sync(cluster, name, partitions):
    s = state(cluster, name)
    return len(s) == partitions and all(sorted(r) == i for _, r, i in s.values())


def configs(cluster, kind, name, node=None):
    """{config: (value, source)} of a topic or broker (DescribeConfigs)."""
    node = node or cluster.running()[0]
    admin = ck_admin(cluster.bootstrap(node))
    (res,) = admin.describe_configs([ConfigResource(kind, str(name))]).values()
    return {k: (v.value, v.source) for k, v in res.result(timeout=TIMEOUT).items()}


def throttles_set(cluster, name):
    """The topic's throttled replica lists and each live broker's follower rate."""
    topic = configs(cluster, ConfigResource.Type.TOPIC, name)
    rates = {n: configs(cluster, ConfigResource.Type.BROKER, n, node=n)["follower.replication.throttled.rate"][0]
             for n in cluster.running()}
    return (topic.get("leader.replication.throttled.replicas", ("", 0))[0],
            topic.get("follower.replication.throttled.replicas", ("", 0))[0], rates)


def plan_of(name, moves):
    return {"version": 1, "partitions": [{"topic": name, "partition": p, "replicas": r} for p, r in moves]}


def test_reassignment_under_load_moves_the_leader_without_loss(cluster_factory, tmp_path):
    cluster = cluster_factory(n=4, extra_args=fast_failure(tmp_path))
    wait_live(cluster, NODES)
    name, partitions = failover.TOPIC, 2
    create(cluster, name, partitions, 3, {"min.insync.replicas": "2"})
    wait_for(lambda: all_in_sync(cluster, name, partitions), what="every replica in sync")
    leader, replicas, _ = state(cluster, name)[0]
    spare = next(n for n in NODES if n not in replicas)
    # the leader leaves, the spare broker comes in first (the new preferred leader)
    target = [spare] + [r for r in replicas if r != leader]
    plan = plan_of(name, [(0, target)])
    bootstrap = ",".join(cluster.bootstrap(n) for n in NODES)
    producer = failover.SteadyProducer(bootstrap, partitions, rate=300)
    producer.start()
    try:
        wait_for(lambda: all(producer.acks.by_partition.get(p) for p in range(partitions)),
                 what="first acknowledgements")
        out = reassign(cluster, "--execute", "--plan", "-", plan=plan)
        assert out.returncode == 0, out.stderr
        assert "Successfully started partition reassignment for failover-0" in out.stdout
        out = reassign(cluster, "--verify", "--wait", "--timeout", "120", "--plan", "-", plan=plan)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "Reassignment of partition failover-0 is completed." in out.stdout
        acked_before = len(producer.acks.by_partition[0])
        wait_for(lambda: len(producer.acks.by_partition[0]) > acked_before + 50,
                 what="acknowledgements on the moved partition")
    finally:
        producer.finish()
    assert not producer.acks.errors, producer.acks.errors[:5]
    new_leader, now, _ = state(cluster, name)[0]
    assert now == target and new_leader in target and new_leader != leader
    for node in NODES:
        wait_for(lambda node=node: state(cluster, name, node)[0][1] == target,
                 what=f"node {node} applying the new replicas")
    removed_dir = cluster.nodes[leader].data_dir / f"{name}-0"
    wait_for(lambda: not removed_dir.exists(), what=f"{removed_dir} deleted")
    assert (cluster.nodes[spare].data_dir / f"{name}-0").is_dir()
    out = reassign(cluster, "--list")
    assert out.returncode == 0 and out.stdout.strip() == "", out.stdout + out.stderr
    counts = {p: len(producer.acks.by_partition.get(p, [])) for p in range(partitions)}
    log = failover.read_all(bootstrap, partitions, counts)
    failover.verify(producer.acks, log)


def test_cancel_puts_the_original_replicas_back(cluster_factory, tmp_path):
    cluster = cluster_factory(n=4, extra_args=fast_failure(tmp_path))
    wait_live(cluster, NODES)
    name = "cancelled"
    create(cluster, name, 1, 2)
    wait_for(lambda: all_in_sync(cluster, name, 1), what="every replica in sync")
    _, original, _ = state(cluster, name)[0]
    plan = plan_of(name, [(0, original)])
    out = reassign(cluster, "--cancel", "--plan", "-", plan=plan)
    assert out.returncode == 1 and "NO_REASSIGNMENT_IN_PROGRESS" in out.stderr, out.stderr
    bad = reassign(cluster, "--execute", "--plan", "-", plan=plan_of(name, [(0, [1, 9])]))
    assert bad.returncode == 1 and "INVALID_REPLICA_ASSIGNMENT" in bad.stderr, bad.stderr
    unknown = reassign(cluster, "--execute", "--plan", "-", plan=plan_of("nope", [(0, [1])]))
    assert unknown.returncode == 1, unknown.stderr
    # a move onto a dead broker cannot complete
    dead = next(n for n in NODES if n not in original)
    cluster.kill9(dead)
    wait_live(cluster, sorted(n for n in NODES if n != dead))
    target = [original[0], dead]
    moving = plan_of(name, [(0, target)])
    out = reassign(cluster, "--execute", "--throttle", "1000000", "--plan", "-", plan=moving)
    assert out.returncode == 0, out.stderr
    leaders, followers, rates = throttles_set(cluster, name)
    assert sorted(leaders.split(",")) == sorted(f"0:{b}" for b in original)
    assert followers == f"0:{dead}"
    assert set(rates.values()) == {"1000000"}, rates
    out = reassign(cluster, "--verify", "--plan", "-", plan=moving)
    assert out.returncode == 1 and "is still in progress" in out.stdout, out.stdout + out.stderr
    listed = reassign(cluster, "--list")
    assert listed.returncode == 0 and listed.stdout.startswith(f"{name}-0\t"), listed.stdout
    out = reassign(cluster, "--cancel", "--plan", "-", plan=moving)
    assert out.returncode == 0, out.stderr
    assert reassign(cluster, "--list").stdout.strip() == ""
    assert state(cluster, name)[0][1] == original
    # verify after the cancel: not the planned replicas (exit 1), and the throttles are gone
    out = reassign(cluster, "--verify", "--plan", "-", plan=moving)
    assert out.returncode == 1 and "There is no active reassignment" in out.stdout, out.stdout
    leaders, followers, rates = throttles_set(cluster, name)
    assert (leaders, followers) == ("", "") and set(rates.values()) == {str(2**63 - 1)}, rates
    cluster.restart(dead)
    wait_live(cluster, NODES)


def test_decommission_moves_every_replica_off_a_broker(cluster_factory, tmp_path):
    cluster = cluster_factory(n=4, extra_args=fast_failure(tmp_path))
    wait_live(cluster, NODES)
    name, partitions = "spread", 4
    create(cluster, name, partitions, 2)
    wait_for(lambda: all_in_sync(cluster, name, partitions), what="every replica in sync")
    out = reassign(cluster, "--generate", "--topics", name, "--brokers", "1,2,3")
    assert out.returncode == 0, out.stderr
    generated = json.loads(out.stdout)
    assert generated["version"] == 1
    assert all(4 not in p["replicas"] for p in generated["partitions"])
    out = reassign(cluster, "--decommission", "4", "--timeout", "120", "--throttle", "100000000")
    assert out.returncode == 0, out.stdout + out.stderr
    leaders, followers, rates = throttles_set(cluster, name)
    assert (leaders, followers) == ("", "") and set(rates.values()) == {str(2**63 - 1)}, rates
    s = state(cluster, name)
    assert all(4 not in replicas and len(replicas) == 2 for _, replicas, _ in s.values()), s
    wait_for(lambda: not list(cluster.nodes[4].data_dir.glob(f"{name}-*")),
             what="broker 4's replicas deleted")
    out = reassign(cluster, "--decommission", "4")
    assert out.returncode == 0 and "holds no replicas" in out.stdout, out.stdout + out.stderr


def test_a_new_replica_starts_at_the_leaders_log_start(cluster_factory, tmp_path):
    """The leader's log starts past 0 (DeleteRecords here; retention does the same): the new
    replica's fetch at 0 is OFFSET_OUT_OF_RANGE, so it empties its log and starts at the
    leader's start (here inside the producer's one batch, which it takes whole from its
    base), and the move completes with the same bytes from there on."""
    cluster = cluster_factory(n=3, extra_args=fast_failure(tmp_path))
    wait_live(cluster, [1, 2, 3])
    admin = ck_admin(cluster.bootstrap(1))
    fs = admin.create_topics([NewTopic("trimmed", num_partitions=1, replica_assignment=[[1]])],
                             operation_timeout=TIMEOUT, request_timeout=TIMEOUT * 2)
    fs["trimmed"].result(timeout=TIMEOUT * 3)
    p = Producer({"bootstrap.servers": cluster.bootstrap(1), "acks": "all"})
    for i in range(100):
        p.produce("trimmed", value=b"r%d" % i)
    assert p.flush(30) == 0
    [(_, fut)] = admin.delete_records([TopicPartition("trimmed", 0, 60)]).items()
    assert fut.result(timeout=TIMEOUT).low_watermark == 60

    out = reassign(cluster, "--execute", "--plan", "-", plan=plan_of("trimmed", [(0, [1, 2])]))
    assert out.returncode == 0, out.stderr
    wait_for(lambda: state(cluster, "trimmed", node=2)[0][1:] == ([1, 2], [1, 2]),
             timeout=60, what="broker 2 in the ISR of the moved partition")
    logs = {}
    for node in (1, 2):
        with Connection.to(cluster.bootstrap(node)) as c:
            r = kwire.fetch_v4(c, "trimmed", 0, 60, max_bytes=1 << 20, replica_id=-2)
            assert r.error_code == 0, f"node {node}: error {r.error_code}"
            logs[node] = r.records
    assert logs[1] and logs[1] == logs[2], "the new replica holds the leader's bytes from its start"

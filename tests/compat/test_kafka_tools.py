"""Kafka's own command-line tools, run from the kafka-tools jar (the classes behind
kafka-topics.sh, kafka-console-producer.sh, kafka-console-consumer.sh,
kafka-consumer-groups.sh, kafka-configs.sh, kafka-reassign-partitions.sh and the perf tests)
against sluice."""

import json
import re
import time

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import NewTopic

import clients
from clients import TOOLS
from cluster import cluster_factory  # noqa: F401  (the fixture)
from support import key_of, ck_admin, ck_conf, ck_consume_all, ck_create_topic, ck_produce, ck_watermarks, new_tag, wait_for, TIMEOUT

TOPICS = "org.apache.kafka.tools.TopicCommand"
CONSOLE_PRODUCER = "org.apache.kafka.tools.ConsoleProducer"
CONSOLE_CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer"
GROUPS = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
CONFIGS = "org.apache.kafka.tools.ConfigCommand"
PRODUCER_PERF = "org.apache.kafka.tools.ProducerPerformance"
REASSIGN = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand"
CONSUMER_PERF = "org.apache.kafka.tools.ConsumerPerformance"


def topics(bootstrap, *args):
    return clients.tool_ok(TOPICS, "--bootstrap-server", bootstrap, *args)


def partition_lines(describe_out):
    return [ln for ln in describe_out.splitlines() if re.search(r"\bPartition: \d+", ln)]


@pytest.mark.compat(TOOLS, "kafka-topics --create, --list, --describe, --delete")
def test_kafka_topics_create_list_describe_delete(broker):
    b = broker.bootstrap
    topics(b, "--create", "--topic", "tool-topic", "--partitions", "3", "--replication-factor", "1",
           "--config", "retention.ms=3600000")
    assert "tool-topic" in topics(b, "--list").split()
    out = topics(b, "--describe", "--topic", "tool-topic")
    assert re.search(r"PartitionCount: 3\s+ReplicationFactor: 1", out), out
    assert "retention.ms=3600000" in out, out
    lines = partition_lines(out)
    assert len(lines) == 3, out
    for p, line in enumerate(lines):
        assert re.search(rf"Partition: {p}\s+Leader: 1\s+Replicas: 1\s+Isr: 1", line), line
    again = clients.tool(TOPICS, "--bootstrap-server", b, "--create", "--topic", "tool-topic", "--partitions", "1")
    assert again.returncode != 0 and "already exists" in again.stdout + again.stderr, again.stdout + again.stderr
    topics(b, "--delete", "--topic", "tool-topic")
    assert "tool-topic" not in topics(b, "--list").split()


@pytest.mark.compat(TOOLS, "kafka-topics --alter --partitions")
def test_kafka_topics_alter_partitions(broker):
    b = broker.bootstrap
    clients.require_api(b, 37)
    topics(b, "--create", "--topic", "grow", "--partitions", "2", "--replication-factor", "1")
    topics(b, "--alter", "--topic", "grow", "--partitions", "5")
    out = topics(b, "--describe", "--topic", "grow")
    assert "PartitionCount: 5" in out and len(partition_lines(out)) == 5, out


@pytest.mark.compat(TOOLS, "kafka-console-producer (defaults: idempotent, acks=all), keys parsed")
def test_console_producer(broker):
    b = broker.bootstrap
    ck_create_topic(b, "console-in", partitions=2)
    lines = [f"k{i % 7}:value {i} ünïcode" for i in range(200)]
    clients.tool_ok(CONSOLE_PRODUCER, "--bootstrap-server", b, "--topic", "console-in",
                    "--reader-property", "parse.key=true", "--reader-property", "key.separator=:",
                    input_text="\n".join(lines) + "\n")
    recs, _ = ck_consume_all(b, "console-in", 2)
    got = sorted((r.partition, r.offset, r.key.decode(), r.value.decode()) for r in recs)
    assert len(got) == 200, f"{len(got)} records arrived"
    assert sorted(f"{k}:{v}" for _, _, k, v in got) == sorted(lines)
    per_key = {}
    for p, _, k, v in got:
        assert per_key.setdefault(k, p) == p, f"key {k} in two partitions"
        # per-key order: values of one key appear in the order they were typed
    for k in per_key:
        seq = [int(v.split()[1]) for _, _, kk, v in got if kk == k]
        assert seq == sorted(seq), f"key {k} out of order: {seq}"


@pytest.mark.compat(TOOLS, "kafka-console-consumer --from-beginning --group, keys printed")
def test_console_consumer(broker):
    b = broker.bootstrap
    ck_create_topic(b, "console-out", partitions=1)
    tag = new_tag()
    ck_produce(b, "console-out", 50, tag, headers=False)
    out = clients.tool_ok(CONSOLE_CONSUMER, "--bootstrap-server", b, "--topic", "console-out",
                          "--from-beginning", "--max-messages", "50", "--group", "console-group",
                          "--formatter-property", "print.key=true", "--formatter-property", "key.separator=|")
    lines = [ln for ln in out.splitlines() if "|" in ln]
    assert len(lines) == 50, out
    for i, line in enumerate(lines):
        k, v = line.split("|", 1)
        assert k == key_of(i).decode(), line
        assert v.startswith(f"{tag.decode()}:{i}:"), f"line {i}: {line}"
    # The group committed what it read: a second run of the group has nothing left.
    c = Consumer(ck_conf(b, **{"group.id": "console-group"}))
    try:
        [tp] = c.committed([TopicPartition("console-out", 0)], timeout=TIMEOUT)
        assert tp.offset == 50, f"console consumer's group committed {tp.offset}, expected 50"
    finally:
        c.close()


def describe_group(b, group):
    """kafka-consumer-groups --describe as {(topic, partition): (current, log_end, lag)}."""
    out = clients.tool_ok(GROUPS, "--bootstrap-server", b, "--describe", "--group", group)
    rows = {}
    header = None
    for line in out.splitlines():
        cols = line.split()
        if cols[:1] == ["GROUP"]:
            header = cols
            continue
        if header and len(cols) >= len(header) - 3 and cols[0] == group:
            row = dict(zip(header, cols))
            rows[(row["TOPIC"], int(row["PARTITION"]))] = tuple(
                None if row[c] == "-" else int(row[c]) for c in ("CURRENT-OFFSET", "LOG-END-OFFSET", "LAG"))
    assert rows, f"no partition rows in:\n{out}"
    return rows


@pytest.mark.compat(TOOLS, "kafka-consumer-groups --list, --describe (lag), --reset-offsets")
def test_consumer_groups_describe_lag_and_reset(broker):
    b = broker.bootstrap
    ck_create_topic(b, "lagged", partitions=2)
    ck_produce(b, "lagged", 100, new_tag(), partition=0, headers=False)
    ck_produce(b, "lagged", 60, new_tag(), partition=1, headers=False)
    c = Consumer(ck_conf(b, **{"group.id": "lag-group", "enable.auto.commit": False}))
    try:
        c.commit(offsets=[TopicPartition("lagged", 0, 30), TopicPartition("lagged", 1, 60)], asynchronous=False)
    finally:
        c.close()
    listed = clients.tool_ok(GROUPS, "--bootstrap-server", b, "--list")
    assert "lag-group" in listed.split(), listed
    assert describe_group(b, "lag-group") == {("lagged", 0): (30, 100, 70), ("lagged", 1): (60, 60, 0)}
    dry = clients.tool_ok(GROUPS, "--bootstrap-server", b, "--reset-offsets", "--group", "lag-group",
                          "--topic", "lagged", "--to-earliest", "--dry-run")
    assert describe_group(b, "lag-group")[("lagged", 0)][0] == 30, f"a dry run changed offsets:\n{dry}"
    clients.tool_ok(GROUPS, "--bootstrap-server", b, "--reset-offsets", "--group", "lag-group",
                    "--topic", "lagged:1", "--to-offset", "10", "--execute")
    clients.tool_ok(GROUPS, "--bootstrap-server", b, "--reset-offsets", "--group", "lag-group",
                    "--topic", "lagged:0", "--to-earliest", "--execute")
    assert describe_group(b, "lag-group") == {("lagged", 0): (0, 100, 100), ("lagged", 1): (10, 60, 50)}


@pytest.mark.compat(TOOLS, "kafka-configs --describe (topic)")
def test_kafka_configs_describe(broker):
    b = broker.bootstrap
    ck_create_topic(b, "configured", partitions=1, config={"retention.ms": "3600000", "cleanup.policy": "compact"})
    out = clients.tool_ok(CONFIGS, "--bootstrap-server", b, "--entity-type", "topics",
                          "--entity-name", "configured", "--describe")
    assert "retention.ms=3600000" in out and "cleanup.policy=compact" in out, out


@pytest.mark.compat(TOOLS, "kafka-configs --alter --add-config / --delete-config (topic)")
def test_kafka_configs_alter(broker):
    b = broker.bootstrap
    clients.require_api(b, 44)
    ck_create_topic(b, "altered", partitions=1)
    clients.tool_ok(CONFIGS, "--bootstrap-server", b, "--entity-type", "topics", "--entity-name", "altered",
                    "--alter", "--add-config", "retention.ms=1000,max.message.bytes=2000000")
    out = clients.tool_ok(CONFIGS, "--bootstrap-server", b, "--entity-type", "topics",
                          "--entity-name", "altered", "--describe")
    assert "retention.ms=1000" in out and "max.message.bytes=2000000" in out, out
    clients.tool_ok(CONFIGS, "--bootstrap-server", b, "--entity-type", "topics", "--entity-name", "altered",
                    "--alter", "--delete-config", "retention.ms")
    out = clients.tool_ok(CONFIGS, "--bootstrap-server", b, "--entity-type", "topics",
                          "--entity-name", "altered", "--describe")
    assert "retention.ms" not in out and "max.message.bytes=2000000" in out, out


@pytest.mark.compat(TOOLS, "kafka-reassign-partitions --execute --throttle, --verify (3 brokers)")
def test_kafka_reassign_partitions(cluster_factory, tmp_path):
    cluster = cluster_factory(n=3)
    clients.require_api(cluster.bootstrap(1), 35)
    b = ",".join(cluster.bootstrap(n) for n in cluster.nodes)
    wait_for(lambda: len(ck_admin(b).list_topics(timeout=10).brokers) == 3, what="three live brokers")
    admin = ck_admin(b)
    admin.create_topics([NewTopic("moved", num_partitions=2, replication_factor=1)])["moved"].result(timeout=TIMEOUT)
    wait_for(lambda: all(p.leader > 0 for p in admin.list_topics("moved", timeout=10).topics["moved"].partitions.values()),
             what="a leader for every partition")
    ck_produce(b, "moved", 200, new_tag())
    # (--generate also asks DescribeLogDirs, which sluice does not serve; `sluice cluster
    # reassign --generate` prints the same plan format.)
    leader = admin.list_topics("moved", timeout=10).topics["moved"].partitions[0].leader
    target = leader % 3 + 1
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": "moved", "partition": 0, "replicas": [target], "log_dirs": ["any"]}]}))
    out = clients.tool_ok(REASSIGN, "--bootstrap-server", b, "--execute",
                          "--reassignment-json-file", plan, "--throttle", "10000000")
    assert "Successfully started partition reassignment" in out, out
    deadline = time.monotonic() + TIMEOUT * 4
    while True:
        out = clients.tool_ok(REASSIGN, "--bootstrap-server", b, "--verify", "--reassignment-json-file", plan)
        if "Reassignment of partition moved-0 is completed" in out:
            break
        assert time.monotonic() < deadline, out
        time.sleep(0.5)
    assert "Throttle was removed" in out, out
    md = admin.list_topics("moved", timeout=10).topics["moved"].partitions[0]
    assert list(md.replicas) == [target] and md.leader == target


PERF_RECORDS = 20000


@pytest.mark.compat(TOOLS, f"kafka-producer-perf-test ({PERF_RECORDS} records, defaults)")
def test_producer_perf_test(broker):
    b = broker.bootstrap
    ck_create_topic(b, "perf", partitions=2)
    out = clients.tool_ok(PRODUCER_PERF, "--topic", "perf", "--num-records", str(PERF_RECORDS),
                          "--record-size", "100", "--throughput", "-1",
                          "--bootstrap-server", b)
    assert re.search(rf"^{PERF_RECORDS} records sent", out, re.M), out
    marks = ck_watermarks(b, "perf", 2)
    assert sum(hi for _, hi in marks.values()) == PERF_RECORDS, marks


@pytest.mark.compat(TOOLS, f"kafka-consumer-perf-test ({PERF_RECORDS} records)")
def test_consumer_perf_test(broker):
    b = broker.bootstrap
    ck_create_topic(b, "perf-read", partitions=2)
    ck_produce(b, "perf-read", PERF_RECORDS, new_tag(), codec="lz4", headers=False)
    out = clients.tool_ok(CONSUMER_PERF, "--bootstrap-server", b, "--topic", "perf-read",
                          "--num-records", str(PERF_RECORDS), "--timeout", "60000")
    lines = [ln for ln in out.splitlines() if ln.strip()]
    header = next(i for i, ln in enumerate(lines) if "data.consumed.in.nMsg" in ln)
    cols = [c.strip() for c in lines[header].split(",")]
    vals = [v.strip() for v in lines[header + 1].split(",")]
    got = int(vals[cols.index("data.consumed.in.nMsg")])
    assert got == PERF_RECORDS, out


LEADER_ELECTION = "org.apache.kafka.tools.LeaderElectionCommand"


@pytest.mark.compat(TOOLS, "kafka-leader-election --election-type preferred / unclean")
def test_kafka_leader_election(broker):
    b = broker.bootstrap
    clients.require_api(b, 43)
    ck_create_topic(b, "elected", partitions=2)
    # One broker: each partition already has its preferred (and only) replica as leader.
    out = clients.tool_ok(LEADER_ELECTION, "--bootstrap-server", b, "--election-type", "preferred",
                          "--topic", "elected", "--partition", "1")
    assert "Valid replica already elected for partitions elected-1" in out, out
    out = clients.tool_ok(LEADER_ELECTION, "--bootstrap-server", b, "--election-type", "unclean",
                          "--all-topic-partitions")
    assert "elected" not in out, out
    failed = clients.tool(LEADER_ELECTION, "--bootstrap-server", b, "--election-type", "preferred",
                          "--topic", "elected", "--partition", "7")
    assert failed.returncode != 0, failed.stdout
    assert "UnknownTopicOrPartitionException" in failed.stdout + failed.stderr, failed.stdout + failed.stderr

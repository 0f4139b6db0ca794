"""`sluice consume --group` as a real group member and `sluice group` (list, describe with
lag, reset-offsets, delete), against a real broker, checked with confluent-kafka."""
from __future__ import annotations

import subprocess

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from conftest import SLUICE_BIN
from support import TIMEOUT, ck_create_topic

GROUP_CONFIG = {"group_initial_rebalance_delay_ms": 0, "offsets_topic_num_partitions": 3}


def sluice(*args, bootstrap, input=None, timeout=60):
    return subprocess.run([str(SLUICE_BIN), *args, "--bootstrap-server", bootstrap], input=input,
                          capture_output=True, text=True, timeout=timeout)


def produce(bootstrap, topic, lines):
    r = sluice("produce", topic, "--key-separator", ":", bootstrap=bootstrap, input="".join(l + "\n" for l in lines))
    assert r.returncode == 0, r.stderr


def consume_group(bootstrap, topic, group, *extra):
    r = sluice("consume", topic, "--group", group, "--from-beginning", "--timeout-ms", "3000",
               "--format", "%p %o %v", *extra, bootstrap=bootstrap)
    assert r.returncode == 0, r.stderr
    return [tuple(line.split(" ", 2)) for line in r.stdout.splitlines()]


def committed(bootstrap, group, topic, partitions):
    a = AdminClient({"bootstrap.servers": bootstrap})
    from confluent_kafka import ConsumerGroupTopicPartitions
    fut = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(partitions)])])
    res = fut[group].result(TIMEOUT)
    return {tp.partition: tp.offset for tp in res.topic_partitions}


@pytest.fixture
def gbroker(broker_factory):
    return broker_factory(GROUP_CONFIG)


def test_consume_group_commits_and_a_second_run_resumes_after_them(gbroker):
    b = gbroker.bootstrap
    ck_create_topic(b, "orders", partitions=3)
    produce(b, "orders", [f"k{i}:v{i}" for i in range(60)])
    first = consume_group(b, "orders", "billing")
    assert len(first) == 60
    assert {p for p, _, _ in first} == {"0", "1", "2"}, "keys spread over the partitions"
    ends = {}
    for p, o, _ in first:
        ends[int(p)] = max(ends.get(int(p), -1), int(o) + 1)
    assert committed(b, "billing", "orders", 3) == ends
    produce(b, "orders", [f"k{i}:v{i}" for i in range(60, 75)])
    second = consume_group(b, "orders", "billing")
    assert sorted(v for _, _, v in second) == sorted(f"v{i}" for i in range(60, 75)), "only the new records"


def test_group_list_describe_shows_lag_and_delete(gbroker):
    b = gbroker.bootstrap
    ck_create_topic(b, "lagged", partitions=2)
    produce(b, "lagged", [f"k{i}:v{i}" for i in range(20)])
    consume_group(b, "lagged", "reporting")
    produce(b, "lagged", [f"k{i}:v{i}" for i in range(20, 30)])
    listed = sluice("group", "list", bootstrap=b)
    assert listed.returncode == 0 and "reporting\tEmpty" in listed.stdout, listed.stdout + listed.stderr
    d = sluice("group", "describe", "reporting", bootstrap=b)
    assert d.returncode == 0, d.stderr
    rows = [line.split() for line in d.stdout.splitlines() if line.startswith("lagged")]
    assert len(rows) == 2
    assert sum(int(r[4]) for r in rows) == 10, d.stdout  # LAG column: the 10 new records
    assert all(int(r[3]) - int(r[2]) == int(r[4]) for r in rows)
    gone = sluice("group", "delete", "reporting", bootstrap=b)
    assert gone.returncode == 0, gone.stderr
    again = sluice("group", "delete", "reporting", bootstrap=b)
    assert again.returncode == 1 and again.stderr.startswith("Error:") and len(again.stderr.strip().splitlines()) == 1


def test_reset_offsets_dry_run_execute_and_refusal_with_members(gbroker):
    b = gbroker.bootstrap
    ck_create_topic(b, "resets", partitions=1)
    produce(b, "resets", [f"k:v{i}" for i in range(10)])
    consume_group(b, "resets", "rg")
    assert committed(b, "rg", "resets", 1) == {0: 10}
    dry = sluice("group", "reset-offsets", "rg", "--topic", "resets", "--to-offset", "4", bootstrap=b)
    assert dry.returncode == 0 and "Dry run" in dry.stdout
    assert committed(b, "rg", "resets", 1) == {0: 10}, "a dry run commits nothing"
    ex = sluice("group", "reset-offsets", "rg", "--topic", "resets", "--shift-by", "-3", "--execute", bootstrap=b)
    assert ex.returncode == 0, ex.stderr
    assert committed(b, "rg", "resets", 1) == {0: 7}
    assert [v for _, _, v in consume_group(b, "resets", "rg")] == ["v7", "v8", "v9"]
    ex = sluice("group", "reset-offsets", "rg", "--topic", "resets", "--to-earliest", "--execute", bootstrap=b)
    assert ex.returncode == 0 and committed(b, "rg", "resets", 1) == {0: 0}
    # with a live member the reset is refused
    member = subprocess.Popen([str(SLUICE_BIN), "consume", "resets", "--group", "rg", "--bootstrap-server", b],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        import time
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            d = sluice("group", "describe", "rg", bootstrap=b)
            if "Stable" in d.stdout:
                break
            time.sleep(0.2)
        assert "Stable" in d.stdout, d.stdout
        refused = sluice("group", "reset-offsets", "rg", "--topic", "resets", "--to-latest", "--execute", bootstrap=b)
        assert refused.returncode == 1 and "active member" in refused.stderr, refused.stderr
    finally:
        member.terminate()
        member.wait(timeout=30)

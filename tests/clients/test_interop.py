"""The sluice Rust client (through the sluice CLI) against third-party clients, both ways:

- its murmur2 partitioner puts every key where librdkafka's `murmur2_random` (the Java
  client's default) puts it, for thousands of keys and several partition counts;
- what `sluice produce` writes, in every codec, kcat and confluent-kafka read back exactly
  (keys, values, headers, offsets from sluice's own delivery reports);
- what kcat and confluent-kafka write, in every codec, `sluice consume` reads back exactly;
- null keys, null values and headers survive in both directions.

Records per codec: SLUICE_CLI_RECORDS (default 20,000).
"""

from __future__ import annotations

import os
import random

import pytest
from confluent_kafka import Producer

from support import (CODECS, ck_conf, ck_consume_all, ck_create_topic, ck_produce, headers_of, kcat_consume_all,
                     kcat_produce, key_of, new_tag, same_records, value_of, verify_read_back, Rec)
from test_cli import ok, sluice

N = int(os.environ.get("SLUICE_CLI_RECORDS", "20000"))
PARTITIONS = 3
# `sluice consume` output layout: partition, offset, key length, key, value length, value, headers
CONSUME_FORMAT = r"%p\t%o\t%K\t%k\t%S\t%v\t%h"


def sluice_produce(bootstrap, topic, lines, *args):
    """`sluice produce --print-offsets`; returns [(partition, offset)] in input order."""
    data = b"".join(l + b"\n" for l in lines)
    r = sluice("produce", topic, "--print-offsets", *args, bootstrap=bootstrap, input=data, check=0)
    reports = [tuple(map(int, l.split())) for l in r.stdout.decode().splitlines()]
    assert len(reports) == len(lines), f"{len(reports)} delivery reports for {len(lines)} lines"
    return reports


def sluice_consume_all(bootstrap, topic, expected, *args):
    """`sluice consume --from-beginning` of exactly `expected` records, parsed into Recs (headers
    as [(name, bytes)]; a header printed without '=' had a null value)."""
    r = sluice("consume", topic, "--from-beginning", "--max-messages", str(expected), "--timeout-ms", "30000",
               "--format", CONSUME_FORMAT, *args, bootstrap=bootstrap, check=0)
    recs = []
    for line in r.stdout.split(b"\n"):
        if not line:
            continue
        p, o, klen, k, vlen, v, h = line.split(b"\t", 6)
        headers = []
        for kv in h.split(b",") if h else []:
            name, eq, val = kv.partition(b"=")
            headers.append((name.decode(), val if eq else None))
        recs.append(Rec(int(p), int(o), None if int(klen) < 0 else k, None if int(vlen) < 0 else v, headers, None))
    assert len(recs) == expected, f"sluice consume read {len(recs)} records, expected {expected}: {r.stderr[-500:]!r}"
    return recs


# ------------------------------------------------------------------------------------ partitioner

def _keys(n, seed):
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.éü€😀"
    keys = set()
    while len(keys) < n:
        length = rng.choice([1, 2, 3, 4, 5, 7, 8, 13, 16, 31, 64])
        keys.add("".join(rng.choice(alphabet) for _ in range(length)).encode())
    return sorted(keys)


@pytest.mark.parametrize("partitions", [2, 3, 7, 10, 32, 100])
def test_murmur2_partitioner_matches_librdkafka_murmur2_random(broker, partitions):
    topic = f"murmur-{partitions}"
    ck_create_topic(broker.bootstrap, topic, partitions=partitions)
    keys = _keys(3000, seed=partitions)
    ours = sluice_produce(broker.bootstrap, topic, [k + b"\t" + k for k in keys], "--key-separator", "\t")
    p = Producer(ck_conf(broker.bootstrap, **{"partitioner": "murmur2_random", "linger.ms": 5}))
    theirs = {}

    def report(err, msg):
        assert err is None, err
        theirs[msg.key()] = msg.partition()

    for k in keys:
        p.produce(topic, key=k, value=k, on_delivery=report)
    assert p.flush(60) == 0
    differ = [(k, part, theirs[k]) for k, (part, _) in zip(keys, ours) if part != theirs[k]]
    assert not differ, f"{len(differ)} of {len(keys)} keys placed differently (key, sluice, librdkafka): {differ[:5]}"
    assert len({part for part, _ in ours}) == partitions, "some partition got no key"
    # and both producers' records of a key are in the same partition when read back
    recs, _ = ck_consume_all(broker.bootstrap, topic, partitions)
    where = {}
    for r in recs:
        assert where.setdefault(r.key, r.partition) == r.partition, f"key {r.key!r} in two partitions"


def test_null_keys_are_spread_by_the_sticky_partitioner(broker):
    ck_create_topic(broker.bootstrap, "sticky", partitions=4)
    reports = sluice_produce(broker.bootstrap, "sticky", [b"v%d" % i for i in range(20000)], "--batch-size", "16384")
    used = {p for p, _ in reports}
    assert len(used) > 1, "null-key records all went to one partition"
    # sticky: runs of consecutive records share a partition (a batch at a time), not one each
    switches = sum(1 for a, b in zip(reports, reports[1:]) if a[0] != b[0])
    assert switches < len(reports) / 20, f"{switches} partition switches in {len(reports)} records"


# ------------------------------------------------------------------------------------ sluice → others

@pytest.mark.parametrize("codec", CODECS)
def test_sluice_producer_is_read_by_kcat_and_confluent_kafka(broker, codec):
    topic = f"from-sluice-{codec}"
    tag = new_tag()
    ck_create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    lines = [key_of(i) + b"\t" + value_of(tag, i) for i in range(N)]
    reports = sluice_produce(broker.bootstrap, topic, lines, "--key-separator", "\t", "--compression", codec,
                             "-H", "src=sluice", "--acks", "all")
    delivery = dict(enumerate(reports))
    src = lambda i: [("src", b"sluice")]  # noqa: E731 - one header on every record
    ck_recs, _ = ck_consume_all(broker.bootstrap, topic, PARTITIONS)
    verify_read_back(ck_recs, tag, N, PARTITIONS, delivery=delivery, expected_headers=src,
                     label=f"confluent reads sluice [{codec}]")
    kc = kcat_consume_all(broker.bootstrap, topic)
    verify_read_back(kc, tag, N, PARTITIONS, delivery=delivery, expected_headers=src,
                     label=f"kcat reads sluice [{codec}]")
    same_records(ck_recs, kc, f"confluent vs kcat [{codec}]")


# ------------------------------------------------------------------------------------ others → sluice

@pytest.mark.parametrize("codec", CODECS)
def test_sluice_consumer_reads_confluent_kafka_in_each_codec(broker, codec):
    topic = f"ck-to-sluice-{codec}"
    tag = new_tag()
    ck_create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    delivery = ck_produce(broker.bootstrap, topic, N, tag, codec=codec)
    recs = sluice_consume_all(broker.bootstrap, topic, N)
    verify_read_back(recs, tag, N, PARTITIONS, delivery=delivery, expected_headers=headers_of,
                     label=f"sluice reads confluent [{codec}]")


@pytest.mark.parametrize("codec", CODECS)
def test_sluice_consumer_reads_kcat_in_each_codec(broker, codec):
    topic = f"kcat-to-sluice-{codec}"
    tag = new_tag()
    ck_create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    kcat_produce(broker.bootstrap, topic, N, tag, codec=codec)
    recs = sluice_consume_all(broker.bootstrap, topic, N)
    verify_read_back(recs, tag, N, PARTITIONS, expected_headers=lambda i: [("src", b"kcat")],
                     label=f"sluice reads kcat [{codec}]")
    same_records(recs, kcat_consume_all(broker.bootstrap, topic), f"sluice vs kcat read [{codec}]")


def test_sluice_consumer_reads_a_topic_written_by_every_client_in_every_codec(broker):
    """One partition, batches from confluent-kafka, kcat and sluice in all codecs interleaved:
    the sluice consumer returns every record once, in offset order."""
    topic = "mixed"
    tag = new_tag()
    ck_create_topic(broker.bootstrap, topic, partitions=1)
    per = 500
    start = 0
    for codec in CODECS:
        ck_produce(broker.bootstrap, topic, per, tag, codec=codec, start=start)
        kcat_produce(broker.bootstrap, topic, per, tag, codec=codec, start=start + per)
        lines = [key_of(i) + b"\t" + value_of(tag, i) for i in range(start + 2 * per, start + 3 * per)]
        sluice_produce(broker.bootstrap, topic, lines, "--key-separator", "\t", "--compression", codec)
        start += 3 * per
    recs = sluice_consume_all(broker.bootstrap, topic, start)
    assert [r.offset for r in recs] == list(range(start))
    verify_read_back(recs, tag, start, 1, expected_headers=None, label="sluice reads every client")
    same_records(recs, ck_consume_all(broker.bootstrap, topic, 1)[0], "sluice vs confluent on the mixed topic")


# ------------------------------------------------------------------------------------ nulls, headers

NULL_CASES = [
    (None, b"value-with-null-key", [("h", b"1")]),
    (b"key-with-null-value", None, [("h", b"2")]),
    (None, None, []),
    (b"", b"", [("empty", b"")]),
    (b"k", b"v", [("null-header-value", None), ("h2", b"x"), ("h2", b"dup")]),
]


def test_null_keys_values_and_headers_from_confluent_read_by_sluice(broker):
    topic = "nulls-in"
    ck_create_topic(broker.bootstrap, topic, partitions=1)
    p = Producer(ck_conf(broker.bootstrap, **{"acks": "all"}))
    for k, v, h in NULL_CASES:
        p.produce(topic, key=k, value=v, headers=h, partition=0)
        assert p.flush(30) == 0
    recs = sluice_consume_all(broker.bootstrap, topic, len(NULL_CASES))
    assert [(r.key, r.value, r.headers) for r in recs] == NULL_CASES


def test_null_keys_values_and_headers_from_sluice_read_by_confluent_and_kcat(broker):
    topic = "nulls-out"
    ck_create_topic(broker.bootstrap, topic, partitions=1)
    lines = [b"NULL|value-with-null-key", b"key-with-null-value|NULL", b"NULL|NULL", b"|"]
    sluice_produce(broker.bootstrap, topic, lines, "--key-separator", "|", "--null-marker", "NULL",
                   "-H", "a=1", "-H", "a=2", "--partition", "0")
    want = [(None, b"value-with-null-key"), (b"key-with-null-value", None), (None, None), (b"", b"")]
    recs, _ = ck_consume_all(broker.bootstrap, topic, 1)
    assert [(r.key, r.value) for r in recs] == want
    assert all(r.headers == [("a", b"1"), ("a", b"2")] for r in recs), "duplicate header keys must both survive"
    kc = kcat_consume_all(broker.bootstrap, topic)
    assert [(r.key, r.value) for r in kc] == want


def test_sluice_round_trip_keeps_every_byte(broker):
    """Values with every byte but the line ending survive sluice produce → sluice consume."""
    topic = "bytes"
    ok("topic", "create", topic, bootstrap=broker.bootstrap)
    rng = random.Random(7)
    alphabet = bytes(b for b in range(256) if b not in (0x0a, 0x0d, 0x09))
    values = [bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 300))) for _ in range(500)]
    sluice_produce(broker.bootstrap, topic, values, "--compression", "snappy")
    r = sluice("consume", topic, "--from-beginning", "--max-messages", "500", "--format", r"%S\t%v",
               "--timeout-ms", "30000", bootstrap=broker.bootstrap, check=0)
    got = []
    rest = r.stdout
    while rest:
        length, rest = rest.split(b"\t", 1)
        n = int(length)
        got.append(rest[:n])
        assert rest[n:n + 1] == b"\n"
        rest = rest[n + 1:]
    assert got == values

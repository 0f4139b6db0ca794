"""Client-side helpers shared by the third-party client tests: record layout, producers and
consumers for confluent-kafka, kafka-python and kcat, and the checks on what came back.

Record layout for record number i of a run tagged TAG (bytes):
  key     = b"k<i % NKEYS>"
  value   = b"TAG:<i>:<padding of (i*7) % 97 bytes of compressible text>"
  headers = [("idx", b"<i>")]   (kcat, which cannot vary headers per record: [("src", b"kcat")])
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
import uuid
from collections import namedtuple

import confluent_kafka
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TIMEOUT = float(os.environ.get("SLUICE_CLIENT_TIMEOUT", "15"))      # one admin/metadata call (s)
CONSUME_TIMEOUT = float(os.environ.get("SLUICE_CONSUME_TIMEOUT", "300"))  # reading a whole topic back
NKEYS = 64
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]

# confluent-kafka is fast (librdkafka): the 100,000 records per codec by default.
RECORDS = int(os.environ.get("SLUICE_TEST_RECORDS", "100000"))
# kafka-python is pure Python (roughly 10x slower to produce and consume) and kcat's read-back is
# parsed in Python: they use 20,000 records per codec unless SLUICE_TEST_RECORDS says otherwise,
# so the whole suite stays well inside its time budget on two cores.
SLOW_RECORDS = int(os.environ["SLUICE_TEST_RECORDS"]) if "SLUICE_TEST_RECORDS" in os.environ else 20000

logging.getLogger("kafka").setLevel(logging.CRITICAL)

Rec = namedtuple("Rec", "partition offset key value headers timestamp")

_PAD = b"the quick brown fox jumps over the lazy dog; sphinx of black quartz, judge my vow! " * 2


def key_of(i: int) -> bytes:
    return b"k%d" % (i % NKEYS)


def value_of(tag: bytes, i: int) -> bytes:
    return b"%s:%d:%s" % (tag, i, _PAD[:(i * 7) % 97])


def headers_of(i: int):
    return [("idx", b"%d" % i)]


def idx_of(tag: bytes, value: bytes) -> int:
    """The record number encoded in a value; fails on a value this run did not produce."""
    parts = value.split(b":", 2) if value is not None else []
    assert len(parts) == 3 and parts[0] == tag and parts[1].isdigit(), \
        f"value not produced by run {tag!r}: {value[:80] if value else value!r}"
    return int(parts[1])


def new_tag() -> bytes:
    return uuid.uuid4().hex[:10].encode()


def wait_for(cond, timeout=TIMEOUT, interval=0.1, what="condition"):
    """Polls cond() until it returns a truthy value (returned) or the deadline passes (fails)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = cond()
            if last:
                return last
        except Exception as e:  # keep polling: the last failure is reported below
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


# --------------------------------------------------------------------------- confluent-kafka

def ck_conf(bootstrap, **kw):
    c = {"bootstrap.servers": bootstrap, "client.id": "sluice-tests",
         "socket.timeout.ms": int(TIMEOUT * 1000), "log_level": 4}
    c.update(kw)
    return c


def ck_admin(bootstrap) -> AdminClient:
    return AdminClient(ck_conf(bootstrap))


def ck_topics(bootstrap) -> dict:
    """All topics (name -> TopicMetadata) from a Metadata request that cannot auto-create."""
    return ck_admin(bootstrap).list_topics(timeout=TIMEOUT).topics


def ck_create_topic(bootstrap, name, partitions=3, replication_factor=1, config=None):
    """Creates a topic with confluent-kafka's AdminClient and waits until every partition has
    leader 1 in the metadata."""
    a = ck_admin(bootstrap)
    fs = a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=replication_factor,
                                   config=config or {})],
                         operation_timeout=TIMEOUT, request_timeout=TIMEOUT * 2)
    assert fs[name].result(timeout=TIMEOUT * 3) is None
    wait_topic_ready(bootstrap, name, partitions)


def wait_topic_ready(bootstrap, name, partitions):
    def ready():
        t = ck_topics(bootstrap).get(name)
        return (t is not None and t.error is None and len(t.partitions) == partitions and
                all(p.error is None and p.leader == 1 for p in t.partitions.values()))
    wait_for(ready, what=f"topic {name} with {partitions} partitions led by node 1")


def ck_kafka_error(exc_info_or_exc) -> KafkaError:
    e = getattr(exc_info_or_exc, "value", exc_info_or_exc)
    assert isinstance(e, KafkaException), f"expected a KafkaException, got {type(e).__name__}: {e}"
    return e.args[0]


def ck_produce(bootstrap, topic, n, tag, codec="none", start=0, partition=None, headers=True, **conf):
    """Produces records start..start+n-1 with acks=all; returns {i: (partition, offset)} from the
    delivery reports (every one must succeed)."""
    p = Producer(ck_conf(bootstrap, **{
        "acks": "all", "enable.idempotence": False, "compression.type": codec, "linger.ms": 5,
        "message.timeout.ms": 120000, **conf}))
    delivery, errors = {}, []

    def on_delivery(err, msg):
        i = idx_of(tag, msg.value())
        if err is not None:
            errors.append((i, err))
        else:
            delivery[i] = (msg.partition(), msg.offset())

    extra = {} if partition is None else {"partition": partition}
    for i in range(start, start + n):
        kw = dict(key=key_of(i), value=value_of(tag, i), on_delivery=on_delivery, **extra)
        if headers:
            kw["headers"] = headers_of(i)
        while True:
            try:
                p.produce(topic, **kw)
                break
            except BufferError:
                p.poll(0.05)
        if i % 1000 == 0:
            p.poll(0)
    left = p.flush(120)
    assert left == 0, f"{left} records still undelivered after flush"
    assert not errors, f"{len(errors)} delivery errors, first: {errors[:3]}"
    assert len(delivery) == n, f"{len(delivery)} delivery reports for {n} records"
    return delivery


def ck_watermarks(bootstrap, topic, partitions) -> dict:
    """{partition: (low, high)} via ListOffsets (earliest, latest)."""
    c = Consumer(ck_conf(bootstrap, **{"group.id": "sluice-tests-watermarks", "enable.auto.commit": False}))
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT, cached=False)
                for p in range(partitions)}
    finally:
        c.close()


def ck_consume_all(bootstrap, topic, partitions, timeout=CONSUME_TIMEOUT, **conf):
    """Reads every partition from the beginning up to the high watermark seen at the start, with
    assign() at OFFSET_BEGINNING (no group join). Returns ([Rec], {partition: (low, high)})."""
    # group.id is mandatory for confluent-kafka's Consumer; only assign() is used, so no group is joined.
    c = Consumer(ck_conf(bootstrap, **{
        "group.id": f"sluice-tests-assign-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
        "enable.auto.offset.store": False, "auto.offset.reset": "earliest", "check.crcs": True,
        "enable.partition.eof": False, "fetch.wait.max.ms": 100, **conf}))
    try:
        marks = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT, cached=False)
                 for p in range(partitions)}
        c.assign([TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING) for p in range(partitions)])
        pending = {p for p, (lo, hi) in marks.items() if hi > lo}
        recs = []
        client_errors = []  # errors not tied to a partition (connection trouble): reported on timeout
        deadline = time.monotonic() + timeout
        while pending:
            assert time.monotonic() < deadline, \
                f"consume timed out: {len(recs)} records read, partitions not at their high watermark: " \
                f"{ {p: marks[p] for p in pending} }; client errors: {client_errors[-5:]}"
            for m in c.consume(num_messages=10000, timeout=0.5):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    if m.topic() == topic and m.partition() is not None and m.partition() >= 0:
                        raise AssertionError(f"consumer error on {m.topic()}/{m.partition()}: {err}")
                    client_errors.append(str(err))
                    continue
                p, o = m.partition(), m.offset()
                recs.append(Rec(p, o, m.key(), m.value(), m.headers(), m.timestamp()[1]))
                if o >= marks[p][1] - 1:
                    pending.discard(p)
        return recs, marks
    finally:
        c.close()


# --------------------------------------------------------------------------- kafka-python

def kp_common(bootstrap, **kw):
    c = {"bootstrap_servers": bootstrap, "client_id": "sluice-tests",
         "request_timeout_ms": int(max(TIMEOUT, 30) * 1000)}
    c.update(kw)
    return c


def kp_admin(bootstrap):
    from kafka.admin import KafkaAdminClient
    return KafkaAdminClient(**kp_common(bootstrap))


def kp_produce(bootstrap, topic, n, tag, codec="none", start=0):
    from kafka import KafkaProducer
    p = KafkaProducer(**kp_common(bootstrap, acks="all", enable_idempotence=False,
                                  compression_type=None if codec == "none" else codec,
                                  linger_ms=5, batch_size=65536, max_block_ms=60000,
                                  delivery_timeout_ms=120000))
    try:
        futures = [(i, p.send(topic, key=key_of(i), value=value_of(tag, i), headers=headers_of(i)))
                   for i in range(start, start + n)]
        p.flush(timeout=120)
        delivery = {}
        for i, f in futures:
            md = f.get(timeout=60)
            delivery[i] = (md.partition, md.offset)
        return delivery
    finally:
        p.close(timeout=30)


def kp_consume_all(bootstrap, topic, partitions, timeout=CONSUME_TIMEOUT):
    """assign() + seek_to_beginning() (no group), read up to the end offsets seen at the start."""
    from kafka import KafkaConsumer, TopicPartition as KTP
    c = KafkaConsumer(**kp_common(bootstrap, group_id=None, enable_auto_commit=False,
                                  auto_offset_reset="earliest", check_crcs=True, fetch_max_wait_ms=100))
    try:
        tps = [KTP(topic, p) for p in range(partitions)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        ends = c.end_offsets(tps)
        begins = c.beginning_offsets(tps)
        marks = {tp.partition: (begins[tp], ends[tp]) for tp in tps}
        pending = {p for p, (lo, hi) in marks.items() if hi > lo}
        recs = []
        deadline = time.monotonic() + timeout
        while pending:
            assert time.monotonic() < deadline, \
                f"consume timed out: {len(recs)} records read, pending {pending} marks {marks}"
            for tp, batch in c.poll(timeout_ms=500, max_records=10000).items():
                for r in batch:
                    recs.append(Rec(r.partition, r.offset, r.key, r.value, list(r.headers or []), r.timestamp))
                    if r.offset >= marks[r.partition][1] - 1:
                        pending.discard(r.partition)
        return recs, marks
    finally:
        c.close()


# --------------------------------------------------------------------------- kcat

KCAT_FORMAT = "%p\t%o\t%K\t%k\t%S\t%s\t%T\t%h\n"  # real tabs/newline


def kcat(bootstrap, *args, input_bytes=None, timeout=300):
    cmd = ["kcat", "-b", bootstrap, "-m", str(int(TIMEOUT)), *args]
    r = subprocess.run(cmd, input=input_bytes, capture_output=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.decode(errors='replace')[-2000:]}"
    return r.stdout


def kcat_produce(bootstrap, topic, n, tag, codec="none", start=0):
    """kcat -P with acks=all: one "key<TAB>value" line per record and the same header on every
    record; kcat exits non-zero if any delivery fails."""
    data = b"".join(key_of(i) + b"\t" + value_of(tag, i) + b"\n" for i in range(start, start + n))
    kcat(bootstrap, "-P", "-t", topic, "-K", "\t", "-H", "src=kcat",
         "-X", "acks=all", "-X", "enable.idempotence=false", "-X", f"compression.codec={codec}",
         "-X", "linger.ms=5", "-X", "message.timeout.ms=120000", input_bytes=data)


def kcat_consume_all(bootstrap, topic):
    """kcat -C from the beginning until EOF on every partition. Returns [Rec] (key/value None
    when kcat reports length -1; headers as [(name, bytes)])."""
    out = kcat(bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-X", "check.crcs=true",
               "-f", KCAT_FORMAT, timeout=CONSUME_TIMEOUT)
    recs = []
    for line in out.split(b"\n"):
        if not line:
            continue
        p, o, klen, k, vlen, v, ts, h = line.split(b"\t", 7)
        headers = []
        if h:
            for kv in h.split(b","):
                name, _, val = kv.partition(b"=")
                headers.append((name.decode(), val))
        recs.append(Rec(int(p), int(o), None if int(klen) < 0 else k, None if int(vlen) < 0 else v,
                        headers, int(ts)))
    return recs


def kcat_metadata(bootstrap):
    return json.loads(kcat(bootstrap, "-L", "-J"))


# --------------------------------------------------------------------------- checks

def norm_headers(h):
    """Headers as a list of (str, bytes) from any client's representation."""
    return [(k if isinstance(k, str) else k.decode(), v) for k, v in (h or [])]


def verify_read_back(recs, tag, n, partitions, delivery=None, start=0, expected_headers=headers_of,
                     label="read-back"):
    """Checks a complete read of a fresh topic holding exactly records start..start+n-1 of `tag`:
    every key, value and header; offsets contiguous from 0 in every partition; each key in one
    partition with per-key order kept; every partition used; and, if given, that each record's
    (partition, offset) equals its delivery report."""
    assert len(recs) == n, f"{label}: read {len(recs)} records, expected {n}"
    by_part = {}
    seen = set()
    key_part = {}
    for r in recs:
        i = idx_of(tag, r.value)
        assert start <= i < start + n, f"{label}: record {i} was never produced (p{r.partition}/o{r.offset})"
        assert i not in seen, f"{label}: record {i} read twice (again at p{r.partition}/o{r.offset})"
        seen.add(i)
        assert r.value == value_of(tag, i), f"{label}: value of record {i} corrupted: {r.value[:80]!r}"
        assert r.key == key_of(i), f"{label}: key of record {i} is {r.key!r}, expected {key_of(i)!r}"
        if expected_headers is not None:
            want = expected_headers(i)
            assert norm_headers(r.headers) == want, f"{label}: headers of record {i}: {r.headers!r} != {want!r}"
        assert key_part.setdefault(r.key, r.partition) == r.partition, \
            f"{label}: key {r.key!r} found in partitions {key_part[r.key]} and {r.partition}"
        if delivery is not None:
            assert delivery[i] == (r.partition, r.offset), \
                f"{label}: record {i} read at p{r.partition}/o{r.offset}, delivery report said {delivery[i]}"
        by_part.setdefault(r.partition, []).append((r.offset, i))
    assert sorted(by_part) == list(range(partitions)), \
        f"{label}: records landed in partitions {sorted(by_part)}, expected all of 0..{partitions - 1}"
    for p, lst in by_part.items():
        offsets = [o for o, _ in lst]
        assert offsets == sorted(offsets), f"{label}: partition {p} was not read in offset order"
        assert offsets == list(range(len(offsets))), \
            f"{label}: partition {p} offsets not contiguous from 0 (first {offsets[:3]}, last {offsets[-3:]}, " \
            f"{len(offsets)} records)"
        last = {}
        for o, i in lst:
            k = key_of(i)
            assert last.get(k, -1) < i, f"{label}: key {k!r}: record {i} at offset {o} is after record {last[k]}"
            last[k] = i
    return {p: len(lst) for p, lst in by_part.items()}


def same_records(a, b, label):
    """Two complete reads of the same topic (any clients) hold the same (partition, offset, key,
    value, headers) tuples."""
    def canon(recs):
        return sorted((r.partition, r.offset, r.key, r.value, tuple(norm_headers(r.headers))) for r in recs)
    ca, cb = canon(a), canon(b)
    assert len(ca) == len(cb), f"{label}: {len(ca)} vs {len(cb)} records"
    for x, y in zip(ca, cb):
        assert x == y, f"{label}: first difference {x!r} != {y!r}"

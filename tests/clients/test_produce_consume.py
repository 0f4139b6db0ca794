"""Produce and consume with unmodified third-party clients: confluent-kafka (librdkafka),
kafka-python (pure Python) and kcat, in every compression codec, and across clients.

Record counts: confluent-kafka uses SLUICE_TEST_RECORDS (default 100,000) per codec; kafka-python
and kcat use 20,000 per codec unless SLUICE_TEST_RECORDS is set (see support.SLOW_RECORDS).
"""

import pytest

from support import (CODECS, RECORDS, SLOW_RECORDS, ck_consume_all, ck_create_topic, ck_conf,
                     ck_produce, kcat_consume_all, kcat_produce, kp_admin, kp_common, kp_consume_all, kp_produce,
                     new_tag, same_records, verify_read_back, wait_topic_ready)

PARTITIONS = 3


@pytest.mark.parametrize("codec", CODECS)
def test_confluent_kafka_round_trips_every_record_in_each_codec(broker, codec):
    topic = f"ck-{codec}"
    tag = new_tag()
    ck_create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    delivery = ck_produce(broker.bootstrap, topic, RECORDS, tag, codec=codec)
    recs, marks = ck_consume_all(broker.bootstrap, topic, PARTITIONS)
    per_part = verify_read_back(recs, tag, RECORDS, PARTITIONS, delivery=delivery, label=f"confluent[{codec}]")
    assert marks == {p: (0, per_part[p]) for p in range(PARTITIONS)}, \
        f"watermarks {marks} do not match the records read per partition {per_part}"
    # Cross-client: what confluent-kafka produced, kcat reads identically.
    kc = kcat_consume_all(broker.bootstrap, topic)
    verify_read_back(kc, tag, RECORDS, PARTITIONS, delivery=delivery, label=f"kcat-read[{codec}]")
    same_records(recs, kc, f"confluent vs kcat read [{codec}]")


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_round_trips_every_record_in_each_codec(broker, codec):
    topic = f"kp-{codec}"
    tag = new_tag()
    a = kp_admin(broker.bootstrap)
    try:
        a.create_topics({topic: {"num_partitions": PARTITIONS, "replication_factor": 1}})
    finally:
        a.close()
    wait_topic_ready(broker.bootstrap, topic, PARTITIONS)
    delivery = kp_produce(broker.bootstrap, topic, SLOW_RECORDS, tag, codec=codec)
    recs, marks = kp_consume_all(broker.bootstrap, topic, PARTITIONS)
    per_part = verify_read_back(recs, tag, SLOW_RECORDS, PARTITIONS, delivery=delivery,
                                label=f"kafka-python[{codec}]")
    assert marks == {p: (0, per_part[p]) for p in range(PARTITIONS)}
    # Cross-client: librdkafka reads what kafka-python's own batch encoder wrote.
    ck_recs, _ = ck_consume_all(broker.bootstrap, topic, PARTITIONS)
    verify_read_back(ck_recs, tag, SLOW_RECORDS, PARTITIONS, delivery=delivery,
                     label=f"confluent-read-of-kafka-python[{codec}]")


@pytest.mark.parametrize("codec", CODECS)
def test_kcat_produce_is_read_back_by_confluent_kafka_in_each_codec(broker, codec):
    topic = f"kcat-{codec}"
    tag = new_tag()
    ck_create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    kcat_produce(broker.bootstrap, topic, SLOW_RECORDS, tag, codec=codec)
    kcat_headers = lambda i: [("src", b"kcat")]  # noqa: E731 - kcat sets one header on every record
    recs, _ = ck_consume_all(broker.bootstrap, topic, PARTITIONS)
    verify_read_back(recs, tag, SLOW_RECORDS, PARTITIONS, expected_headers=kcat_headers,
                     label=f"confluent-read-of-kcat[{codec}]")
    kc = kcat_consume_all(broker.bootstrap, topic)
    verify_read_back(kc, tag, SLOW_RECORDS, PARTITIONS, expected_headers=kcat_headers,
                     label=f"kcat-read-of-kcat[{codec}]")
    same_records(recs, kc, f"confluent vs kcat read of kcat-produced [{codec}]")


# Keys and values: null, empty and present are three different things and must stay so.
NULL_CASES = [
    (None, b"value-with-null-key", [("h", b"1")]),
    (b"key-with-null-value", None, [("h", b"2")]),
    (None, None, []),
    (b"", b"", [("empty", b"")]),
    (b"k", b"v", [("null-header-value", None), ("h2", b"x")]),
]


def test_null_keys_and_null_values_round_trip_through_every_client(broker):
    from confluent_kafka import Producer
    from kafka import KafkaProducer

    topic = "nulls"
    ck_create_topic(broker.bootstrap, topic, partitions=1)
    # confluent-kafka writes every case, one batch per record (offsets 0..4); kafka-python, which
    # refuses a record whose key and value are both null, writes the others in one batch after them
    p = Producer(ck_conf(broker.bootstrap, **{"acks": "all", "enable.idempotence": False}))
    reports = []
    for k, v, h in NULL_CASES:
        p.produce(topic, key=k, value=v, headers=h, partition=0,
                  on_delivery=lambda err, msg: reports.append((err, msg.partition(), msg.offset())))
        assert p.flush(30) == 0
    assert reports == [(None, 0, o) for o in range(len(NULL_CASES))]
    # (kafka-python also refuses a null header value: it sends b"" there instead)
    kp_cases = [(k, v, [(hk, b"" if hv is None else hv) for hk, hv in h])
                for k, v, h in NULL_CASES if k is not None or v is not None]
    kp = KafkaProducer(**kp_common(broker.bootstrap, acks="all", enable_idempotence=False, linger_ms=50))
    try:
        futs = [kp.send(topic, key=k, value=v, headers=h, partition=0) for k, v, h in kp_cases]
        kp.flush(30)
        offs = [f.get(timeout=30).offset for f in futs]
    finally:
        kp.close(timeout=30)
    want = NULL_CASES + kp_cases
    assert offs == list(range(len(NULL_CASES), len(want)))

    def check(recs, label):
        assert [r.offset for r in recs] == list(range(len(want))), f"{label}: offsets {[r.offset for r in recs]}"
        for r, (k, v, h) in zip(recs, want):
            assert (r.key, r.value) == (k, v), f"{label}: offset {r.offset}: got key {r.key!r} value {r.value!r}"
            got_h = [(hk if isinstance(hk, str) else hk.decode(), hv) for hk, hv in (r.headers or [])]
            assert got_h == h, f"{label}: offset {r.offset}: headers {got_h!r} != {h!r}"

    ck_recs, _ = ck_consume_all(broker.bootstrap, topic, 1)
    check(ck_recs, "confluent")
    kp_recs, _ = kp_consume_all(broker.bootstrap, topic, 1)
    check(kp_recs, "kafka-python")
    kc = kcat_consume_all(broker.bootstrap, topic)
    assert [(r.key, r.value) for r in kc] == [(k, v) for k, v, _ in want], "kcat: null/empty keys or values differ"


def test_record_close_to_the_default_size_limit_round_trips(broker):
    """A 900 kB record (under the 1 MiB default message_max_bytes) is stored and served whole."""
    from confluent_kafka import Producer
    topic = "big"
    ck_create_topic(broker.bootstrap, topic, partitions=1)
    big = bytes(range(256)) * (900_000 // 256)
    p = Producer(ck_conf(broker.bootstrap, **{"acks": "all", "enable.idempotence": False}))
    reports = []
    for i in range(3):
        p.produce(topic, key=b"big%d" % i, value=big[i:] + bytes([i]), partition=0,
                  on_delivery=lambda err, msg: reports.append((err, msg.offset())))
    assert p.flush(60) == 0
    assert reports == [(None, 0), (None, 1), (None, 2)]
    recs, _ = ck_consume_all(broker.bootstrap, topic, 1)
    assert [(r.offset, r.key, r.value) for r in recs] == \
        [(i, b"big%d" % i, big[i:] + bytes([i])) for i in range(3)]


def test_records_appended_after_a_read_continue_at_the_next_offset(broker):
    """Produce, read everything, produce more: the second lot continues every partition at its
    high watermark and a second full read returns both lots in order."""
    topic = "append"
    tag = new_tag()
    ck_create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    first = ck_produce(broker.bootstrap, topic, 3000, tag, codec="lz4")
    recs1, marks1 = ck_consume_all(broker.bootstrap, topic, PARTITIONS)
    verify_read_back(recs1, tag, 3000, PARTITIONS, delivery=first)
    second = ck_produce(broker.bootstrap, topic, 3000, tag, codec="zstd", start=3000)
    firsts = {}
    for i in sorted(second):
        p, o = second[i]
        firsts.setdefault(p, o)
    assert firsts == {p: hi for p, (_, hi) in marks1.items()}, \
        f"second lot starts at {firsts}, high watermarks were {marks1}"
    recs2, _ = ck_consume_all(broker.bootstrap, topic, PARTITIONS)
    verify_read_back(recs2, tag, 6000, PARTITIONS, delivery={**first, **second})

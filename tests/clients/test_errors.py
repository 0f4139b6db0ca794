"""Every error the broker promises, provoked on purpose and checked through a client's admin API or
a raw Kafka request (kwire), plus hostile input on the socket: garbage, absurd or negative length
prefixes, connections dropped mid-frame. After each bad-input test the broker must still be alive
and serving normal requests (and the fixture then checks that SIGTERM still exits 0)."""

import socket
import struct

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

import kwire
from kwire import Connection
from support import (TIMEOUT, ck_admin, ck_conf, ck_consume_all, ck_create_topic, ck_kafka_error, ck_produce,
                     ck_topics, kp_admin, kp_common, new_tag, verify_read_back, wait_for)

RF_MESSAGE = "Replication factor: 2 larger than available brokers: 1."


def raw(broker, **kw) -> Connection:
    return Connection.to(broker.bootstrap, **kw)


def raw_create(broker, name, partitions=1, rf=1):
    with raw(broker) as c:
        [(got, err, msg)] = kwire.create_topics_v2(c, [(name, partitions, rf)])
    assert got == name
    return err, msg


def assert_broker_healthy(broker):
    """The process is alive, a new raw connection is served, and a real client works."""
    assert broker.alive(), f"broker died (exit {broker.proc.poll() if broker.proc else '?'})"
    with raw(broker) as c:
        err, apis = kwire.api_versions(c)
        assert err == kwire.NONE and kwire.PRODUCE in apis and kwire.FETCH in apis
        md = kwire.metadata_v1(c, [])
        assert [b["node_id"] for b in md["brokers"]] == [1]
    md = ck_admin(broker.bootstrap).list_topics(timeout=TIMEOUT)
    assert set(md.brokers) == {1}


def topic_names(broker):
    return set(ck_topics(broker.bootstrap))


# --------------------------------------------------------------------------- kwire self-check

def test_kwire_crc32c_matches_the_castagnoli_check_value():
    assert kwire.crc32c(b"123456789") == 0xE3069283
    assert kwire.crc32c(b"") == 0
    batch = kwire.record_batch([(b"k", b"v", [("h", b"x")]), (None, None)], base_timestamp=1000)
    [r0, r1] = kwire.decode_batches(batch)
    assert (r0.key, r0.value, r0.headers, r1.key, r1.value) == (b"k", b"v", [("h", b"x")], None, None)
    with pytest.raises(ValueError, match="CRC"):
        kwire.decode_batches(kwire.record_batch([(b"k", b"v")], corrupt_crc=True))


# --------------------------------------------------------------------------- ApiVersions

def test_api_versions_v0_advertises_every_api_and_version_the_clients_use(broker):
    with raw(broker) as c:
        err, apis = kwire.api_versions(c, 0)
    assert err == kwire.NONE
    needed = {kwire.PRODUCE: 3, kwire.FETCH: 4, kwire.LIST_OFFSETS: 1, kwire.METADATA: 1,
              kwire.API_VERSIONS: 0, kwire.CREATE_TOPICS: 2}
    for key, version in needed.items():
        assert key in apis, f"api {key} not advertised: {apis}"
        lo, hi = apis[key]
        assert lo <= version <= hi, f"api {key} advertises {lo}..{hi}, the tests use v{version}"
    assert apis[kwire.API_VERSIONS][1] >= 3
    assert kwire.DELETE_TOPICS in apis and kwire.DESCRIBE_CLUSTER in apis


def test_unsupported_api_versions_version_gets_error_35_in_the_v0_layout(broker):
    with raw(broker) as c:
        err, apis = kwire.api_versions(c, 127)
        assert err == kwire.UNSUPPORTED_VERSION
        assert kwire.API_VERSIONS in apis, f"the v0-layout answer must still list the APIs: {apis}"
        lo, hi = apis[kwire.API_VERSIONS]
        assert lo == 0 and hi >= 3
        # The client falls back on the same connection, as kafka-python does after its v4 probe.
        err, apis2 = kwire.api_versions(c, 0)
        assert err == kwire.NONE and apis2 == apis
    assert_broker_healthy(broker)


@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_fetch_below_v4_is_answered_with_unsupported_version_and_the_connection_stays_open(broker, version):
    # An old client that negotiates nothing (sarama pinned to 0.10) must read error 35 in the
    # layout it asked for, not a closed connection.
    ck_create_topic(broker.bootstrap, "oldfetch", partitions=1)
    with raw(broker) as c:
        assert kwire.fetch_old(c, "oldfetch", 0, 0, version) == [("oldfetch", 0, kwire.UNSUPPORTED_VERSION, -1, b"")]
        assert kwire.api_versions(c)[0] == kwire.NONE, "the connection must stay usable"
    assert_broker_healthy(broker)


def test_produce_below_v3_is_refused_with_unsupported_version(broker):
    ck_create_topic(broker.bootstrap, "v2", partitions=1)
    batch = kwire.record_batch([(b"k", b"v")])
    with raw(broker) as c:
        res = kwire.produce(c, "v2", 0, batch, version=2)
        assert [(r.topic, r.partition, r.error_code) for r in res] == [("v2", 0, kwire.UNSUPPORTED_VERSION)]
    with raw(broker) as c:
        assert kwire.list_offsets_v1(c, "v2", 0, kwire.LATEST)[::2] == (kwire.NONE, 0), \
            "a refused v2 produce appended records"
        [r] = kwire.produce(c, "v2", 0, batch, version=3)
        assert (r.error_code, r.base_offset) == (kwire.NONE, 0)
    assert_broker_healthy(broker)


# --------------------------------------------------------------------------- raw produce / fetch

def test_raw_produce_v3_and_fetch_v4_round_trip_batches_with_assigned_offsets(broker):
    ck_create_topic(broker.bootstrap, "raw", partitions=2)
    b1 = kwire.record_batch([(b"a", b"1", [("h", b"x")]), (None, b"2"), (b"c", None)], base_timestamp=1_000_000,
                            timestamp_step=10)
    b2 = kwire.record_batch([(b"d", b"4"), (b"e", b"5", [("h2", None)])], base_timestamp=2_000_000,
                            base_offset=777)  # the broker assigns offsets, whatever the client wrote
    with raw(broker) as c:
        [r1] = kwire.produce(c, "raw", 1, b1)
        [r2] = kwire.produce(c, "raw", 1, b2)
        assert (r1.error_code, r1.base_offset, r2.error_code, r2.base_offset) == (0, 0, 0, 3)
        f = kwire.fetch_v4(c, "raw", 1, 0)
        assert (f.error_code, f.high_watermark) == (kwire.NONE, 5)
        recs = kwire.decode_batches(f.records)  # checks every batch CRC after the offset rewrite
        assert [(r.offset, r.key, r.value, r.headers, r.timestamp) for r in recs] == [
            (0, b"a", b"1", [("h", b"x")], 1_000_000), (1, None, b"2", [], 1_000_010), (2, b"c", None, [], 1_000_020),
            (3, b"d", b"4", [], 2_000_000), (4, b"e", b"5", [("h2", None)], 2_000_000)]
        assert kwire.list_offsets_v1(c, "raw", 1, kwire.EARLIEST)[::2] == (kwire.NONE, 0)
        assert kwire.list_offsets_v1(c, "raw", 1, kwire.LATEST)[::2] == (kwire.NONE, 5)
        assert kwire.list_offsets_v1(c, "raw", 0, kwire.LATEST)[::2] == (kwire.NONE, 0)
        # a fetch from the middle of a batch serves records from that offset on (clients skip the rest)
        mid = [r.offset for r in kwire.decode_batches(kwire.fetch_v4(c, "raw", 1, 4).records)]
        assert mid and mid[-1] == 4 and 4 in mid


# --------------------------------------------------------------------------- UNKNOWN_TOPIC_OR_PARTITION (3)

def test_produce_fetch_and_list_offsets_to_a_missing_partition_fail_with_unknown_topic_or_partition(broker):
    ck_create_topic(broker.bootstrap, "three", partitions=3)
    batch = kwire.record_batch([(b"k", b"v")])
    with raw(broker) as c:
        for p in (3, 7, -1):
            [r] = kwire.produce(c, "three", p, batch)
            assert r.error_code == kwire.UNKNOWN_TOPIC_OR_PARTITION, f"produce to partition {p}: {r}"
            assert kwire.fetch_v4(c, "three", p, 0).error_code == kwire.UNKNOWN_TOPIC_OR_PARTITION
            assert kwire.list_offsets_v1(c, "three", p, kwire.LATEST)[0] == kwire.UNKNOWN_TOPIC_OR_PARTITION
        assert kwire.fetch_v4(c, "never-created", 0, 0).error_code == kwire.UNKNOWN_TOPIC_OR_PARTITION
        # the existing partitions were not touched
        for p in range(3):
            assert kwire.list_offsets_v1(c, "three", p, kwire.LATEST)[::2] == (kwire.NONE, 0)
    assert len(ck_topics(broker.bootstrap)["three"].partitions) == 3


def test_list_offsets_of_an_unknown_topic_fails_and_does_not_create_it(broker):
    with raw(broker) as c:
        for ts in (kwire.EARLIEST, kwire.LATEST, 1_000):
            assert kwire.list_offsets_v1(c, "no-such-topic", 0, ts)[0] == kwire.UNKNOWN_TOPIC_OR_PARTITION
    assert "no-such-topic" not in topic_names(broker)


# --------------------------------------------------------------------------- CreateTopics errors

def test_creating_an_existing_topic_fails_with_topic_already_exists(broker):
    ck_create_topic(broker.bootstrap, "dup", partitions=3)
    adm = ck_admin(broker.bootstrap)  # keep the client alive until its futures resolve
    fs = adm.create_topics([NewTopic("dup", num_partitions=5, replication_factor=1)],
                                                  request_timeout=TIMEOUT)
    with pytest.raises(Exception) as ei:
        fs["dup"].result(timeout=TIMEOUT * 2)
    assert ck_kafka_error(ei).code() == KafkaError.TOPIC_ALREADY_EXISTS

    from kafka.errors import TopicAlreadyExistsError
    a = kp_admin(broker.bootstrap)
    try:
        with pytest.raises(TopicAlreadyExistsError):
            a.create_topics({"dup": {"num_partitions": 1, "replication_factor": 1}})
    finally:
        a.close()

    assert raw_create(broker, "dup", 2)[0] == kwire.TOPIC_ALREADY_EXISTS
    assert len(ck_topics(broker.bootstrap)["dup"].partitions) == 3, "a failed create replaced the topic"


BAD_NAMES = ["bad/name", "..", ".", "a" * 250, "", "white space", "bad:colon"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=["slash", "dotdot", "dot", "250chars", "empty", "space", "colon"])
def test_invalid_topic_names_fail_with_invalid_topic_exception(broker, name):
    err, _msg = raw_create(broker, name)
    assert err == kwire.INVALID_TOPIC_EXCEPTION, f"create {name[:20]!r}: error {err}"
    assert name not in topic_names(broker)
    assert_broker_healthy(broker)


def test_invalid_topic_name_via_clients_and_longest_legal_name(broker):
    adm = ck_admin(broker.bootstrap)  # keep the client alive until its futures resolve
    fs = adm.create_topics([NewTopic("bad/name", 1, 1)], request_timeout=TIMEOUT)
    with pytest.raises(Exception) as ei:
        fs["bad/name"].result(timeout=TIMEOUT * 2)
    assert ck_kafka_error(ei).code() == KafkaError.TOPIC_EXCEPTION

    from kafka.errors import InvalidTopicError
    a = kp_admin(broker.bootstrap)
    try:
        with pytest.raises(InvalidTopicError):
            a.create_topics({"..": {"num_partitions": 1, "replication_factor": 1}})
    finally:
        a.close()
    # Kafka's limit is 249 characters of [a-zA-Z0-9._-]: the longest legal name works end to end.
    longest = "L" * 240 + "a.b_c-d.9"
    assert len(longest) == 249
    assert raw_create(broker, longest)[0] == kwire.NONE
    tag = new_tag()
    delivery = ck_produce(broker.bootstrap, longest, 20, tag, partition=0)
    recs, _ = ck_consume_all(broker.bootstrap, longest, 1)
    verify_read_back(recs, tag, 20, 1, delivery=delivery)


@pytest.mark.parametrize("partitions", [0, -5])
def test_non_positive_partition_counts_fail_with_invalid_partitions(broker, partitions):
    err, _ = raw_create(broker, f"parts{partitions}", partitions)
    assert err == kwire.INVALID_PARTITIONS
    from kafka.errors import InvalidPartitionsError
    a = kp_admin(broker.bootstrap)
    try:
        with pytest.raises(InvalidPartitionsError):
            a.create_topics({f"kp-parts{partitions}": {"num_partitions": partitions, "replication_factor": 1}})
    finally:
        a.close()
    names = topic_names(broker)
    assert f"parts{partitions}" not in names and f"kp-parts{partitions}" not in names


def test_replication_factor_above_the_broker_count_fails_with_kafkas_message(broker):
    assert raw_create(broker, "rf2", 1, rf=2) == (kwire.INVALID_REPLICATION_FACTOR, RF_MESSAGE)
    assert raw_create(broker, "rf3", 3, rf=3) == \
        (kwire.INVALID_REPLICATION_FACTOR, "Replication factor: 3 larger than available brokers: 1.")

    adm = ck_admin(broker.bootstrap)  # keep the client alive until its futures resolve
    fs = adm.create_topics([NewTopic("ck-rf2", 1, 2)], request_timeout=TIMEOUT)
    with pytest.raises(Exception) as ei:
        fs["ck-rf2"].result(timeout=TIMEOUT * 2)
    e = ck_kafka_error(ei)
    assert e.code() == KafkaError.INVALID_REPLICATION_FACTOR
    assert e.str() == RF_MESSAGE

    a = kp_admin(broker.bootstrap)
    try:
        res = a.create_topics({"kp-rf2": {"num_partitions": 1, "replication_factor": 2}}, raise_errors=False)
    finally:
        a.close()
    [t] = res["topics"]
    assert (t["error_code"], t["error_message"]) == (kwire.INVALID_REPLICATION_FACTOR, RF_MESSAGE)
    assert not {"rf2", "rf3", "ck-rf2", "kp-rf2"} & topic_names(broker)


def test_one_create_topics_request_reports_each_topic_on_its_own(broker):
    with raw(broker) as c:
        res = kwire.create_topics_v2(c, [("fine", 2, 1), ("bad/one", 1, 1), ("too-replicated", 1, 2),
                                         ("no-partitions", 0, 1), ("fine-too", 1, 1, {"retention.ms": "60000"})])
    assert [(n, e) for n, e, _ in res] == [
        ("fine", kwire.NONE), ("bad/one", kwire.INVALID_TOPIC_EXCEPTION),
        ("too-replicated", kwire.INVALID_REPLICATION_FACTOR), ("no-partitions", kwire.INVALID_PARTITIONS),
        ("fine-too", kwire.NONE)]
    names = topic_names(broker)
    assert {"fine", "fine-too"} <= names
    assert not {"bad/one", "too-replicated", "no-partitions"} & names


# --------------------------------------------------------------------------- CORRUPT_MESSAGE (2)

def test_batch_with_a_bad_crc_is_rejected_with_corrupt_message_and_not_stored(broker):
    ck_create_topic(broker.bootstrap, "crc", partitions=1)
    good = kwire.record_batch([(b"k%d" % i, b"good-%d" % i) for i in range(4)])
    bad = kwire.record_batch([(b"x", b"corrupt")], corrupt_crc=True)
    # a batch whose CRC is right but whose payload was flipped after the CRC was computed
    flipped = bytearray(kwire.record_batch([(b"y", b"flipped-payload")]))
    flipped[-3] ^= 0xFF
    with raw(broker) as c:
        for b in (bad, bytes(flipped)):
            [r] = kwire.produce(c, "crc", 0, b)
            assert r.error_code == kwire.CORRUPT_MESSAGE, f"corrupt batch answered with {r}"
        assert kwire.list_offsets_v1(c, "crc", 0, kwire.LATEST)[::2] == (kwire.NONE, 0)
        [r] = kwire.produce(c, "crc", 0, good)
        assert (r.error_code, r.base_offset) == (kwire.NONE, 0)
        f = kwire.fetch_v4(c, "crc", 0, 0)
        assert f.high_watermark == 4
        assert [(x.offset, x.value) for x in kwire.decode_batches(f.records)] == \
            [(i, b"good-%d" % i) for i in range(4)]
    assert_broker_healthy(broker)


# --------------------------------------------------------------------------- MESSAGE_TOO_LARGE (10)

def test_batch_larger_than_message_max_bytes_is_rejected_with_message_too_large(broker_factory):
    b = broker_factory("message_max_bytes = 100000\n")
    ck_create_topic(b.bootstrap, "limit", partitions=1)
    with raw(b) as c:
        [r] = kwire.produce(c, "limit", 0, kwire.record_batch([(b"big", b"x" * 150_000)]))
        assert r.error_code == kwire.MESSAGE_TOO_LARGE
        # many small records adding up to more than the limit in one batch: still one batch too large
        [r] = kwire.produce(c, "limit", 0, kwire.record_batch([(b"s", b"y" * 1000)] * 120))
        assert r.error_code == kwire.MESSAGE_TOO_LARGE
        [r] = kwire.produce(c, "limit", 0, kwire.record_batch([(b"ok", b"z" * 60_000)]))
        assert (r.error_code, r.base_offset) == (kwire.NONE, 0)

    p = Producer(ck_conf(b.bootstrap, **{"acks": "all", "enable.idempotence": False, "linger.ms": 0}))
    reports = []
    p.produce("limit", key=b"big", value=b"x" * 150_000, partition=0,
              on_delivery=lambda err, msg: reports.append(err))
    assert p.flush(30) == 0
    assert len(reports) == 1 and reports[0] is not None and reports[0].code() == KafkaError.MSG_SIZE_TOO_LARGE, \
        f"confluent-kafka delivery report: {reports}"

    from kafka import KafkaProducer
    from kafka.errors import MessageSizeTooLargeError
    kp = KafkaProducer(**kp_common(b.bootstrap, acks="all", enable_idempotence=False, retries=0))
    try:
        fut = kp.send("limit", key=b"big", value=b"x" * 150_000, partition=0)
        with pytest.raises(MessageSizeTooLargeError):
            fut.get(timeout=30)
    finally:
        kp.close(timeout=10)

    with raw(b) as c:
        assert kwire.list_offsets_v1(c, "limit", 0, kwire.LATEST)[::2] == (kwire.NONE, 1), \
            "a rejected batch was stored"
    assert_broker_healthy(b)


# --------------------------------------------------------------------------- OFFSET_OUT_OF_RANGE (1)

def test_fetch_beyond_the_log_end_fails_with_offset_out_of_range(broker):
    ck_create_topic(broker.bootstrap, "oor", partitions=1)
    with raw(broker) as c:
        [r] = kwire.produce(c, "oor", 0, kwire.record_batch([(b"k", b"v%d" % i) for i in range(5)]))
        assert r.error_code == kwire.NONE
        at_end = kwire.fetch_v4(c, "oor", 0, 5)
        assert (at_end.error_code, at_end.high_watermark) == (kwire.NONE, 5)
        assert not at_end.records, "a fetch at the log end returned data"
        for off in (6, 1000, -1):
            f = kwire.fetch_v4(c, "oor", 0, off)
            assert f.error_code == kwire.OFFSET_OUT_OF_RANGE, f"fetch at {off}: error {f.error_code}"
            assert not f.records
    # A real consumer told to start past the end, with no reset policy, sees the error...
    c = Consumer(ck_conf(broker.bootstrap, **{"group.id": "oor-test", "enable.auto.commit": False,
                                             "auto.offset.reset": "error"}))
    try:
        c.assign([TopicPartition("oor", 0, 1000)])

        def error_seen():
            m = c.poll(0.5)
            return m is not None and m.error() is not None and m.error()
        err = wait_for(error_seen, timeout=30, what="offset-out-of-range error on the consumer")
        assert err.code() in (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE), str(err)
    finally:
        c.close()
    # ...and with auto.offset.reset=earliest it resets to 0 and reads everything.
    c = Consumer(ck_conf(broker.bootstrap, **{"group.id": "oor-test2", "enable.auto.commit": False,
                                             "auto.offset.reset": "earliest"}))
    try:
        c.assign([TopicPartition("oor", 0, 1000)])
        got = []

        def read_all():
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got.append((m.offset(), m.value()))
            return len(got) >= 5
        wait_for(read_all, timeout=30, interval=0, what="reset to earliest")
        assert got == [(i, b"v%d" % i) for i in range(5)]
    finally:
        c.close()


# --------------------------------------------------------------------------- hostile bytes on the socket

def _frame(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


GARBAGE = {
    "http": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "unknown-api-key": _frame(struct.pack(">hhih", 12345, 0, 1, 0) + b"\xde\xad\xbe\xef"),
    "truncated-metadata-body": _frame(struct.pack(">hhih", 3, 1, 1, 0) + struct.pack(">i", 1_000_000)),
    "client-id-past-frame-end": _frame(struct.pack(">hhih", 18, 0, 1, 300) + b"abc"),
    "frame-shorter-than-a-header": _frame(b"\x00\x12\x00"),
    "binary-noise": bytes((i * 151 + 7) % 256 for i in range(4096)),
}


@pytest.mark.parametrize("kind", list(GARBAGE))
def test_garbage_bytes_close_only_that_connection(broker, kind):
    with raw(broker) as keep:
        assert kwire.api_versions(keep)[0] == kwire.NONE
        for _ in range(3):  # several connections, so with --cores 2 more than one shard sees it
            with raw(broker) as bad:
                bad.send_raw(GARBAGE[kind])
                assert bad.wait_closed_by_peer(10), f"broker kept the connection open after {kind} garbage"
        # the untouched connection still works, on whichever shard it lives
        assert kwire.api_versions(keep)[0] == kwire.NONE
        assert [b["node_id"] for b in kwire.metadata_v1(keep, [])["brokers"]] == [1]
    assert_broker_healthy(broker)


def test_huge_length_prefix_closes_the_connection_without_allocating_it(broker):
    rss_before = broker.rss_kb()
    for prefix in (0x7FFFFFFF, 104_857_601, 0x40000000):
        conns = [raw(broker) for _ in range(4)]
        try:
            for c in conns:
                c.send_raw(struct.pack(">I", prefix))
                try:  # keep streaming body bytes, as a client announcing 2 GB would
                    for _ in range(64):
                        c.send_raw(b"\x00" * 65536)
                except OSError:
                    pass  # the broker already closed it
            for c in conns:
                assert c.wait_closed_by_peer(10), f"connection still open after a {prefix:#x} length prefix"
        finally:
            for c in conns:
                c.close()
        rss = broker.rss_kb()
        assert rss < 500 * 1024, f"broker RSS is {rss // 1024} MB after a {prefix:#x} length prefix"
    assert broker.rss_kb() - rss_before < 200 * 1024, \
        f"RSS grew from {rss_before // 1024} MB to {broker.rss_kb() // 1024} MB"
    assert_broker_healthy(broker)


@pytest.mark.parametrize("prefix", [-1, -(2 ** 31), -100])
def test_negative_length_prefix_closes_the_connection(broker, prefix):
    with raw(broker) as c:
        c.send_raw(struct.pack(">i", prefix) + b"\x00" * 16)
        assert c.wait_closed_by_peer(10), f"connection still open after a negative ({prefix}) length prefix"
    assert_broker_healthy(broker)


def _rst_close(conn):
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def test_connections_dropped_or_stalled_mid_frame_do_not_disturb_other_clients(broker):
    request = kwire.build_frame(kwire.API_VERSIONS, 0, b"", correlation_id=42)
    partials = [request[:2], request[:4], request[:len(request) - 1], struct.pack(">i", 5000) + b"\x00" * 100]
    rss_before = broker.rss_kb()
    # dropped: FIN and RST, at every cut point
    for part in partials:
        for rst in (False, True):
            c = raw(broker)
            c.send_raw(part)
            _rst_close(c) if rst else c.close()
    # stalled: partial frames held open while other clients work
    stalled = []
    try:
        for part in partials * 3:
            c = raw(broker)
            c.send_raw(part)
            stalled.append(c)
        with raw(broker, timeout=5) as fresh:
            assert kwire.api_versions(fresh)[0] == kwire.NONE
        ck_create_topic(broker.bootstrap, "alongside", partitions=2)
        tag = new_tag()
        delivery = ck_produce(broker.bootstrap, "alongside", 500, tag)
        recs, _ = ck_consume_all(broker.bootstrap, "alongside", 2)
        verify_read_back(recs, tag, 500, 2, delivery=delivery)
        # a stalled connection that finally completes its request is answered
        done = stalled[2]  # holds all but the last byte of an ApiVersions request
        done.send_raw(request[-1:])
        r = kwire.Reader(done.recv_frame())
        assert r.i32() == 42 and r.i16() == kwire.NONE
    finally:
        for c in stalled:
            c.close()
    assert broker.rss_kb() - rss_before < 200 * 1024
    assert_broker_healthy(broker)


def test_byte_by_byte_and_pipelined_requests_are_answered_in_order(broker):
    with raw(broker) as c:
        cid, req = c.frame(kwire.API_VERSIONS, 0, b"")
        for i in range(len(req)):
            c.send_raw(req[i:i + 1])
        r = kwire.Reader(c.recv_frame())
        assert r.i32() == cid and r.i16() == kwire.NONE
        # three requests in one write: three answers, in request order
        frames = [c.frame(kwire.API_VERSIONS, 0, b""),
                  c.frame(kwire.METADATA, 1, kwire.Writer().array([], None).done()),
                  c.frame(kwire.API_VERSIONS, 0, b"")]
        c.send_raw(b"".join(f for _, f in frames))
        for expected_cid, _ in frames:
            assert kwire.Reader(c.recv_frame()).i32() == expected_cid
    assert_broker_healthy(broker)

"""Broker hardening: metadata applied in order under concurrent topic creation, the broker's
named bounds (connections, queued request bytes, fetch.max.bytes), and Kafka's produce and fetch
semantics at their edges (fetch.min.bytes=0, acks=0 errors, internal topics)."""

import threading

from confluent_kafka import Producer

import kwire
from kwire import Connection
from support import TIMEOUT, ck_conf, ck_consume_all, ck_create_topic, wait_for


FIND_COORDINATOR = 10


def raw(broker, **kw) -> Connection:
    return Connection.to(broker.bootstrap, **kw)


def test_a_burst_of_concurrent_auto_creates_keeps_every_acknowledged_record(broker):
    """Several producers write to the same missing topics at once, so the broker creates each
    topic while others are being created and written: every acknowledged record is read back,
    before and after a restart, at the offset it was acknowledged with."""
    topics = [f"burst-{i}" for i in range(12)]
    per_producer = 150
    acked = {}  # (topic, partition, offset) -> value
    failures = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def produce(worker):
        p = Producer(ck_conf(broker.bootstrap, acks="all", **{"linger.ms": 0}))

        def on_delivery(err, msg):
            with lock:
                if err is not None:
                    failures.append(f"{msg.topic()}: {err}")
                else:
                    acked[(msg.topic(), msg.partition(), msg.offset())] = msg.value()

        start.wait()
        for i in range(per_producer):
            for t in topics:
                p.produce(t, value=b"w%d-%d" % (worker, i), on_delivery=on_delivery)
            p.poll(0)
        assert p.flush(TIMEOUT) == 0

    threads = [threading.Thread(target=produce, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Records a producer could not deliver while a topic was being created are the client's
    # business (it reports them); what the broker acknowledged must all be there.
    assert len(acked) >= len(topics) * per_producer, f"only {len(acked)} acknowledged; {failures[:3]}"

    def check_read_back():
        for t in topics:
            recs, _ = ck_consume_all(broker.bootstrap, t, 1)
            got = {(t, r.partition, r.offset): r.value for r in recs}
            want = {k: v for k, v in acked.items() if k[0] == t}
            missing = [k for k, v in want.items() if got.get(k) != v]
            assert not missing, f"{t}: {len(missing)} acknowledged records lost, e.g. {missing[:3]}"

    check_read_back()
    broker.stop()
    broker.restart()
    check_read_back()


def test_the_connection_limit_closes_new_connections_and_frees_slots(broker_factory):
    broker = broker_factory(config={"max_connections": 3})
    held = [raw(broker) for _ in range(3)]
    try:
        for c in held:
            assert kwire.api_versions(c)[0] == kwire.NONE
        extra = raw(broker)
        assert extra.wait_closed_by_peer(timeout=10), "a fourth connection was served"
        extra.close()
        held.pop().close()

        def served():
            try:
                with raw(broker, timeout=5) as c:
                    return kwire.api_versions(c)[0] == kwire.NONE
            except (kwire.ConnectionClosed, OSError):
                return False

        wait_for(served, what="a connection served once a slot is free")
    finally:
        for c in held:
            c.close()


def test_pipelined_requests_beyond_the_request_bytes_budget_are_all_answered(broker_factory):
    """With a 1 MiB broker-wide budget (512 KiB per shard), 24 pipelined produces of ~300 KiB
    and one larger than a shard's whole share are read as room frees up, and all land in order."""
    broker = broker_factory(config={"queued_max_request_bytes": 1 << 20})
    ck_create_topic(broker.bootstrap, "budget", partitions=1)
    batches = [kwire.record_batch([(b"k%d" % i, bytes([i]) * 300_000)]) for i in range(24)]
    batches.append(kwire.record_batch([(b"big", b"z" * 900_000)]))
    with raw(broker, timeout=60) as c:
        frames = [c.frame(kwire.PRODUCE, 3, kwire.produce_body("budget", 0, b)) for b in batches]
        sender = threading.Thread(target=lambda: [c.send_raw(f) for _, f in frames])
        sender.start()
        offsets = []
        for cid, _ in frames:
            r = kwire.Reader(c.recv_frame())
            assert r.i32() == cid
            [res] = kwire.read_produce_response(r)
            assert res.error_code == kwire.NONE, res
            offsets.append(res.base_offset)
        sender.join()
    assert offsets == list(range(len(batches)))


def test_fetch_max_bytes_caps_a_fetch_that_asks_for_everything(broker_factory):
    broker = broker_factory(config={"fetch_max_bytes": 65536})
    ck_create_topic(broker.bootstrap, "capped", partitions=1)
    with raw(broker) as c:
        for i in range(6):
            [r] = kwire.produce(c, "capped", 0, kwire.record_batch([(b"k", bytes([i]) * 40_000)]))
            assert r.error_code == kwire.NONE
        f = kwire.fetch_v4(c, "capped", 0, 0, max_bytes=2**31 - 1, partition_max_bytes=2**31 - 1)
        assert f.error_code == kwire.NONE
        got = list(kwire.decode_batches(f.records))
        assert got, "the first batch always goes out"
        assert len(f.records) <= 65536, f"{len(f.records)} bytes in a fetch capped at 65536"
        assert f.high_watermark == 6


def test_fetch_min_bytes_zero_answers_at_once_on_an_empty_partition(broker):
    ck_create_topic(broker.bootstrap, "idle", partitions=1)
    # A 30 s long poll: with min_bytes=0 the broker must answer before the socket's 10 s timeout.
    with raw(broker, timeout=10) as c:
        f = kwire.fetch_v4(c, "idle", 0, 0, max_wait_ms=30_000, min_bytes=0)
        assert f.error_code == kwire.NONE
        assert not f.records


def test_an_acks0_produce_that_fails_closes_the_connection(broker):
    ck_create_topic(broker.bootstrap, "fire", partitions=1)
    batch = kwire.record_batch([(b"k", b"v")])
    with raw(broker) as c:
        _, ok = c.frame(kwire.PRODUCE, 3, kwire.produce_body("fire", 0, batch, acks=0))
        c.send_raw(ok)
        # A good acks=0 produce gets no answer and keeps the connection.
        assert kwire.api_versions(c)[0] == kwire.NONE
        _, bad = c.frame(kwire.PRODUCE, 3, kwire.produce_body("fire", 7, batch, acks=0))
        c.send_raw(bad)
        assert c.wait_closed_by_peer(timeout=10), "a failed acks=0 produce left the connection open"
    with raw(broker) as c:
        # The good record is kept, the bad one went nowhere.
        wait_for(lambda: kwire.fetch_v4(c, "fire", 0, 0).high_watermark == 1, what="the acks=0 record")
        assert [r.value for r in kwire.decode_batches(kwire.fetch_v4(c, "fire", 0, 0).records)] == [b"v"]


def test_only_kafkas_own_internal_topics_are_flagged_internal(broker):
    ck_create_topic(broker.bootstrap, "__mine", partitions=1)
    # FindCoordinator creates __consumer_offsets, as Kafka does.
    with raw(broker) as c:
        body = kwire.Writer().string("g").done()
        r = c.request(FIND_COORDINATOR, 0, body)
        assert r.i16() == kwire.NONE

        def both():
            md = kwire.metadata_v1(c)
            return md if "__consumer_offsets" in md["topics"] else None

        md = wait_for(both, what="__consumer_offsets in metadata")
    assert md["topics"]["__consumer_offsets"]["is_internal"]
    assert not md["topics"]["__mine"]["is_internal"]

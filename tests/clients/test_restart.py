"""Durability across restarts: a clean stop (SIGTERM, exit 0) keeps everything, and a kill -9 in
the middle of a confluent-kafka produce keeps every record the broker acknowledged, at the offset
it acknowledged, with nothing corrupt served afterwards."""

import re
import signal
import threading

from confluent_kafka import Producer

from support import (TIMEOUT, ck_admin, ck_consume_all, ck_create_topic, ck_conf, ck_produce, ck_topics,
                     ck_watermarks, kp_consume_all, new_tag, verify_read_back, wait_for)

PARTITIONS = 3


def test_clean_restart_keeps_records_offsets_and_topics(broker):
    tag = new_tag()
    ck_create_topic(broker.bootstrap, "durable", partitions=PARTITIONS)
    ck_create_topic(broker.bootstrap, "empty", partitions=2)
    ck_create_topic(broker.bootstrap, "deleted", partitions=1)
    delivery = ck_produce(broker.bootstrap, "durable", 5000, tag, codec="lz4")
    delivery.update(ck_produce(broker.bootstrap, "durable", 5000, tag, codec="none", start=5000))
    ck_produce(broker.bootstrap, "deleted", 10, new_tag())
    adm = ck_admin(broker.bootstrap)  # keep the client alive until its futures resolve
    assert adm.delete_topics(["deleted"], operation_timeout=TIMEOUT)["deleted"] \
        .result(timeout=TIMEOUT * 2) is None
    wait_for(lambda: "deleted" not in ck_topics(broker.bootstrap), what="deleted topic to disappear")
    before, marks_before = ck_consume_all(broker.bootstrap, "durable", PARTITIONS)
    verify_read_back(before, tag, 10000, PARTITIONS, delivery=delivery)

    broker.stop()  # SIGTERM, asserts exit code 0
    broker.restart()

    topics = ck_topics(broker.bootstrap)
    assert {"durable", "empty"} <= set(topics), f"topics after restart: {sorted(topics)}"
    assert "deleted" not in topics, "a deleted topic came back after a restart"
    assert len(topics["durable"].partitions) == PARTITIONS and len(topics["empty"].partitions) == 2
    assert ck_watermarks(broker.bootstrap, "empty", 2) == {0: (0, 0), 1: (0, 0)}
    after, marks_after = ck_consume_all(broker.bootstrap, "durable", PARTITIONS)
    assert marks_after == marks_before
    verify_read_back(after, tag, 10000, PARTITIONS, delivery=delivery, label="after clean restart")
    assert sorted(after) == sorted(before), "records differ after a clean restart"
    # kafka-python reads the recovered log the same way
    kp_after, _ = kp_consume_all(broker.bootstrap, "durable", PARTITIONS)
    verify_read_back(kp_after, tag, 10000, PARTITIONS, delivery=delivery, label="kafka-python after restart")

    # Appending continues at each partition's previous end.
    more = ck_produce(broker.bootstrap, "durable", 3000, tag, start=10000)
    firsts = {}
    for i in sorted(more):
        firsts.setdefault(more[i][0], more[i][1])
    assert firsts == {p: hi for p, (_, hi) in marks_before.items()}
    final, _ = ck_consume_all(broker.bootstrap, "durable", PARTITIONS)
    verify_read_back(final, tag, 13000, PARTITIONS, delivery={**delivery, **more}, label="after append")


def test_sigint_is_a_clean_shutdown_too(broker):
    tag = new_tag()
    ck_create_topic(broker.bootstrap, "t", partitions=1)
    delivery = ck_produce(broker.bootstrap, "t", 100, tag)
    broker.stop(sig=signal.SIGINT)
    broker.restart()
    recs, _ = ck_consume_all(broker.bootstrap, "t", 1)
    verify_read_back(recs, tag, 100, 1, delivery=delivery, label="after SIGINT restart")


def test_cluster_id_and_node_id_are_stable_across_restart(broker):
    md = ck_admin(broker.bootstrap).list_topics(timeout=TIMEOUT)
    cluster_id = md.cluster_id
    assert cluster_id, "no cluster id in the metadata"
    broker.stop()
    broker.restart()
    md2 = ck_admin(broker.bootstrap).list_topics(timeout=TIMEOUT)
    assert md2.cluster_id == cluster_id
    assert set(md2.brokers) == {1} and md2.controller_id == 1


# ------------------------------------------------------------------------------- kill -9

VALUE_RE = re.compile(rb"^c(\d+):(\d+):(x*)$")
NKEYS = 32


def _kv(cycle, i):
    return b"k%d" % (i % NKEYS), b"c%d:%d:%s" % (cycle, i, b"x" * (i % 50))


class BackgroundProducer:
    """confluent-kafka producing (acks=all, no retries, so nothing is ever written twice) as fast as
    it can in a thread until stopped, recording every acknowledged (partition, offset, value)."""

    def __init__(self, bootstrap, topic, cycle, ack_target, limit=2_000_000):
        self.topic, self.cycle, self.ack_target, self.limit = topic, cycle, ack_target, limit
        self.acked = {}           # value -> (partition, offset)
        self.failed = 0
        self.produced = 0
        self.enough = threading.Event()
        self.stop = threading.Event()
        self.error = None
        self.p = Producer(ck_conf(bootstrap, **{
            "acks": "all", "enable.idempotence": False, "retries": 0, "linger.ms": 2,
            "compression.type": "lz4", "message.timeout.ms": 60000,
            "queue.buffering.max.messages": 50000, "batch.num.messages": 500}))
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"producer-c{cycle}")

    def _on_delivery(self, err, msg):
        if err is None:
            self.acked[msg.value()] = (msg.partition(), msg.offset())
            if len(self.acked) >= self.ack_target:
                self.enough.set()
        else:
            self.failed += 1

    def _run(self):
        try:
            i = 0
            while not self.stop.is_set() and i < self.limit:
                k, v = _kv(self.cycle, i)
                try:
                    self.p.produce(self.topic, key=k, value=v, on_delivery=self._on_delivery)
                except BufferError:
                    self.p.poll(0.02)
                    continue
                i += 1
                self.produced = i
                if i % 200 == 0:
                    self.p.poll(0)
            # The broker is dead: serve the acks that did arrive, then void everything else.
            self.p.poll(0)
            self.p.purge(in_queue=True, in_flight=True, blocking=True)
            self.p.flush(30)
            self.p = None  # destroyed here; nothing is left in it after the purge
        except Exception as e:  # surfaced by the test thread
            self.error = e

    def start(self):
        self.thread.start()
        return self

    def finish(self):
        self.stop.set()
        self.thread.join(timeout=90)
        assert not self.thread.is_alive(), "producer thread did not finish after the broker was killed"
        assert self.error is None, f"producer thread failed: {self.error!r}"


def _check_full_log(bootstrap, topic, acked):
    """Reads the whole topic and checks it against every acknowledged record so far."""
    recs, marks = ck_consume_all(bootstrap, topic, PARTITIONS)
    at = {}
    seen_values = set()
    for r in recs:
        m = VALUE_RE.match(r.value or b"")
        assert m, f"corrupt or foreign value at p{r.partition}/o{r.offset}: {r.value[:80]!r}"
        cycle, i = int(m.group(1)), int(m.group(2))
        assert (r.key, r.value) == _kv(cycle, i), f"record at p{r.partition}/o{r.offset} is garbled: {r!r}"
        assert r.value not in seen_values, f"value {r.value[:30]!r} stored twice (producer retries are off)"
        seen_values.add(r.value)
        at[(r.partition, r.offset)] = r.value
    for p, (lo, hi) in marks.items():
        assert lo == 0, f"partition {p} starts at {lo}"
        offsets = sorted(o for (pp, o) in at if pp == p)
        assert offsets == list(range(hi)), \
            f"partition {p}: offsets not contiguous from 0 to the high watermark {hi} " \
            f"(read {len(offsets)}, first gap near {next((a for a, b in zip(range(hi), offsets) if a != b), None)})"
    lost = [(v, po) for v, po in acked.items() if at.get(po) != v]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged records are missing or moved; first: " \
                     f"{[(v[:20], po, at.get(po, b'<nothing>')[:20]) for v, po in lost[:5]]}"
    return marks, len(recs)


def _produce_acked(bootstrap, topic, cycle, n):
    """Synchronous acks=all produce of n crash-layout records; returns {value: (partition, offset)}."""
    p = Producer(ck_conf(bootstrap, **{"acks": "all", "enable.idempotence": False, "linger.ms": 5}))
    acked, errors = {}, []

    def cb(err, msg):
        if err is None:
            acked[msg.value()] = (msg.partition(), msg.offset())
        else:
            errors.append(err)

    for i in range(n):
        k, v = _kv(cycle, i)
        p.produce(topic, key=k, value=v, on_delivery=cb)
    assert p.flush(60) == 0 and not errors, f"post-restart produce failed: {errors[:3]}"
    assert len(acked) == n
    return acked


def test_kill9_during_produce_keeps_every_acknowledged_record(broker):
    topic = "crash"
    ck_create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    acked = {}
    for cycle in range(3):
        prod = BackgroundProducer(broker.bootstrap, topic, cycle, ack_target=20000 + 10000 * cycle).start()
        try:
            # The event, not a sleep: kill once enough acknowledgements have come back.
            assert prod.enough.wait(timeout=120), \
                f"cycle {cycle}: only {len(prod.acked)} acks within 120 s ({prod.failed} failures)"
            broker.kill9()  # mid-stream: the producer never paused
            # ...and it keeps producing into the dead broker until it is told to stop.
            at_kill = prod.produced
            wait_for(lambda: prod.produced >= at_kill + 1000 or not prod.thread.is_alive(), timeout=60,
                     interval=0.01, what="the producer to keep producing after the kill")
        finally:
            prod.finish()
        acked_now = dict(prod.acked)
        assert len(acked_now) >= prod.ack_target
        assert prod.produced >= at_kill + 1000, "the producer had stopped before the broker was killed"
        assert prod.produced > len(acked_now)
        assert not set(acked_now) & set(acked)
        acked.update(acked_now)

        broker.restart()
        marks, n = _check_full_log(broker.bootstrap, topic, acked)
        assert n >= len(acked)

        # Producing after the restart continues at each partition's end, with no gap.
        after = _produce_acked(broker.bootstrap, topic, 100 + cycle, 600)
        by_part = {}
        for v, (p, o) in after.items():
            by_part.setdefault(p, []).append(o)
        for p, offs in by_part.items():
            assert sorted(offs) == list(range(marks[p][1], marks[p][1] + len(offs))), \
                f"cycle {cycle}: post-restart produce to p{p} got offsets {sorted(offs)[:5]}..., " \
                f"high watermark was {marks[p][1]}"
        acked.update(after)
        _check_full_log(broker.bootstrap, topic, acked)

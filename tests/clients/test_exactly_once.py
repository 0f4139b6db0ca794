"""Exactly-once with real clients: idempotent producers (confluent-kafka, kafka-python), retries
whose acknowledgements were lost (a proxy cuts the connection after the broker appended), an
idempotent producer retrying across a broker kill -9, transactions with read_committed and
read_uncommitted readers, consume-transform-produce with offsets committed in the transaction,
kill -9 in the middle of transactions (every transaction all or nothing afterwards, in-doubt
ones aborted by the coordinator's timeout), fencing of a zombie producer, and the operator APIs
(DescribeProducers, ListTransactions, DescribeTransactions) through `sluice txn`."""

import json
import socket
import struct
import subprocess
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

import conftest
import kwire
from support import (TIMEOUT, ck_conf, ck_create_topic, ck_watermarks, idx_of, key_of, new_tag,
                     value_of, verify_read_back, wait_for)

PARTITIONS = 3


# --------------------------------------------------------------------------- helpers

def read_topic(bootstrap, topic, partitions, isolation="read_committed", timeout=60):
    """Every record a consumer with `isolation` sees, up to the end offsets it reports (the
    last stable offset for read_committed). Returns [(partition, offset, value)]."""
    c = Consumer(ck_conf(bootstrap, **{
        "group.id": f"eos-read-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
        "auto.offset.reset": "earliest", "isolation.level": isolation,
        "enable.partition.eof": True, "fetch.wait.max.ms": 100}))
    try:
        tps = [TopicPartition(topic, p, 0) for p in range(partitions)]
        c.assign(tps)
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT, cached=False)[1]
                for p in range(partitions)}
        out, eof = [], set()
        deadline = time.monotonic() + timeout
        while len(eof) < partitions:
            assert time.monotonic() < deadline, f"read timed out: {len(out)} records, eof {eof}"
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        if m.offset() >= ends[m.partition()] or isolation == "read_committed":
                            eof.add(m.partition())
                        continue
                    raise AssertionError(f"consumer error: {m.error()}")
                out.append((m.partition(), m.offset(), m.value()))
        return out
    finally:
        c.close()


def lso_reached_high_watermark(bootstrap, topic, partitions):
    """Whether every partition's last stable offset equals its high watermark (no open
    transaction), asked with kafka-python's read_committed ListOffsets."""
    from kafka import KafkaConsumer, TopicPartition as KTP
    tps = [KTP(topic, p) for p in range(partitions)]
    rc = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
    ru = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_uncommitted")
    try:
        return rc.end_offsets(tps) == ru.end_offsets(tps)
    finally:
        rc.close()
        ru.close()


def txn_producer(bootstrap, txn_id, **conf):
    p = Producer(ck_conf(bootstrap, **{"transactional.id": txn_id, "linger.ms": 5, **conf}))
    p.init_transactions(TIMEOUT * 2)
    return p


def send_txn(p, topic, tag, start, n, commit):
    p.begin_transaction()
    for i in range(start, start + n):
        p.produce(topic, key=key_of(i), value=value_of(tag, i))
    p.flush(60)
    if commit:
        p.commit_transaction(TIMEOUT * 2)
    else:
        p.abort_transaction(TIMEOUT * 2)


def indexes(records, tag):
    return sorted(idx_of(tag, v) for _, _, v in records)


# --------------------------------------------------------------------------- idempotence

def test_confluent_idempotent_producer_writes_every_record_once(broker):
    tag = new_tag()
    ck_create_topic(broker.bootstrap, "idem", partitions=PARTITIONS)
    p = Producer(ck_conf(broker.bootstrap, **{"enable.idempotence": True, "linger.ms": 2,
                                              "compression.type": "lz4"}))
    delivery, errors = {}, []

    def done(err, msg):
        if err:
            errors.append(err)
        else:
            delivery[idx_of(tag, msg.value())] = (msg.partition(), msg.offset())
    for i in range(20000):
        p.produce("idem", key=key_of(i), value=value_of(tag, i), on_delivery=done)
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(60) == 0 and not errors, errors[:3]
    recs = read_topic(broker.bootstrap, "idem", PARTITIONS, isolation="read_uncommitted")
    assert indexes(recs, tag) == list(range(20000))
    offsets = {}
    for part, off in delivery.values():
        offsets.setdefault(part, []).append(off)
    for part, offs in offsets.items():
        assert sorted(offs) == list(range(len(offs))), f"offsets of partition {part} not dense"


def test_kafka_python_idempotent_producer_writes_every_record_once(broker):
    from kafka import KafkaProducer
    tag = new_tag()
    ck_create_topic(broker.bootstrap, "idem-kp", partitions=PARTITIONS)
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=True, acks="all")
    futures = [p.send("idem-kp", key=key_of(i), value=value_of(tag, i)) for i in range(3000)]
    p.flush(60)
    meta = [f.get(timeout=30) for f in futures]
    p.close()
    recs = read_topic(broker.bootstrap, "idem-kp", PARTITIONS, isolation="read_uncommitted")
    assert indexes(recs, tag) == list(range(3000))
    assert len({(m.partition, m.offset) for m in meta}) == 3000


def init_producer_id(conn):
    """InitProducerId v0 without a transactional id: (error, producer id, epoch)."""
    body = kwire.Writer().string(None).i32(60000).done()
    r = conn.request(22, 0, body)
    r.i32()  # throttle
    return r.i16(), r.i64(), r.i16()


def idempotent_batch(pid, epoch, seq, values):
    """A kwire batch stamped with a producer id, epoch and first sequence (CRC recomputed)."""
    raw = bytearray(kwire.record_batch([(None, v) for v in values]))
    struct.pack_into(">qhi", raw, 43, pid, epoch, seq)
    crc = kwire.crc32c(bytes(raw[21:]))
    struct.pack_into(">I", raw, 17, crc)
    return bytes(raw)


def test_duplicate_batch_gets_the_original_offsets_and_is_stored_once(broker):
    ck_create_topic(broker.bootstrap, "dup", partitions=1)
    with kwire.Connection.to(broker.bootstrap) as conn:
        err, pid, epoch = init_producer_id(conn)
        assert err == 0 and pid >= 0 and epoch == 0
        first = idempotent_batch(pid, epoch, 0, [b"a", b"b", b"c"])
        r1 = kwire.produce(conn, "dup", 0, first)[0]
        second = idempotent_batch(pid, epoch, 3, [b"d"])
        r2 = kwire.produce(conn, "dup", 0, second)[0]
    with kwire.Connection.to(broker.bootstrap) as conn:  # a retry arrives on a new connection
        again = kwire.produce(conn, "dup", 0, first)[0]
        gap = kwire.produce(conn, "dup", 0, idempotent_batch(pid, epoch, 9, [b"x"]))[0]
    assert (r1.error_code, r1.base_offset) == (0, 0)
    assert (r2.error_code, r2.base_offset) == (0, 3)
    assert (again.error_code, again.base_offset) == (0, 0), "a retried batch must get its original offset"
    assert gap.error_code == 45, "a sequence gap is OUT_OF_ORDER_SEQUENCE_NUMBER"
    assert ck_watermarks(broker.bootstrap, "dup", 1)[0] == (0, 4), "the duplicate was appended again"


class AckCuttingProxy:
    """A TCP proxy in front of the broker that, every `every`-th Produce response, closes both
    connections instead of forwarding it: the broker appended the batch, the client never hears
    so, and must retry."""

    def __init__(self, target=None, every=7):
        self.target = target
        self.every = every
        self.cuts = 0
        self.produce_responses = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def close(self):
        self.closed = True
        self.listener.close()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            host, port = self.target.rsplit(":", 1)
            upstream = socket.create_connection((host, int(port)))
            produce_ids = set()
            threading.Thread(target=self._requests, args=(client, upstream, produce_ids), daemon=True).start()
            threading.Thread(target=self._responses, args=(upstream, client, produce_ids), daemon=True).start()

    @staticmethod
    def _frames(sock):
        buf = b""
        while True:
            while len(buf) < 4 or len(buf) < 4 + struct.unpack(">i", buf[:4])[0]:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
            n = struct.unpack(">i", buf[:4])[0]
            yield buf[:4 + n]
            buf = buf[4 + n:]

    def _requests(self, client, upstream, produce_ids):
        try:
            for frame in self._frames(client):
                api_key, _, cid = struct.unpack(">hhi", frame[4:12])
                if api_key == 0:
                    produce_ids.add(cid)
                upstream.sendall(frame)
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                s.close()

    def _responses(self, upstream, client, produce_ids):
        try:
            for frame in self._frames(upstream):
                (cid,) = struct.unpack(">i", frame[4:8])
                if cid in produce_ids:
                    with self.lock:
                        self.produce_responses += 1
                        cut = self.produce_responses % self.every == 0
                        self.cuts += cut
                    if cut:
                        break
                client.sendall(frame)
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


def test_retries_after_lost_acks_leave_each_record_once(broker_factory):
    tag = new_tag()
    proxy = AckCuttingProxy(target=None)
    # Clients are told the proxy's address, so every connection goes through it.
    b = broker_factory(extra_args=["--advertised-listener", proxy.bootstrap])
    proxy.target = b.bootstrap
    try:
        ck_create_topic(proxy.bootstrap, "lost-acks", partitions=1)
        p = Producer(ck_conf(proxy.bootstrap, **{"enable.idempotence": True, "linger.ms": 0,
                                                 "batch.num.messages": 50,
                                                 "retry.backoff.ms": 50}))
        n = 3000
        delivered, errors = [], []
        for i in range(n):
            p.produce("lost-acks", key=key_of(i), value=value_of(tag, i),
                      on_delivery=lambda err, m: (errors if err else delivered).append(err or m.offset()))
            if i % 100 == 0:
                p.poll(0)
        assert p.flush(120) == 0
        assert not errors, errors[:3]
        assert proxy.cuts >= 3, f"the proxy cut only {proxy.cuts} acknowledgements"
        recs = read_topic(proxy.bootstrap, "lost-acks", 1, isolation="read_uncommitted")
    finally:
        proxy.close()
    assert indexes(recs, tag) == list(range(n)), "a record is missing or stored twice"
    assert sorted(delivered) == list(range(n))


def test_idempotent_producer_retrying_across_a_kill9_creates_no_duplicates(broker):
    tag = new_tag()
    ck_create_topic(broker.bootstrap, "idem-crash", partitions=PARTITIONS)
    p = Producer(ck_conf(broker.bootstrap, **{"enable.idempotence": True, "linger.ms": 5,
                                              "message.timeout.ms": 120000,
                                              "reconnect.backoff.max.ms": 200}))
    acked, errors = set(), []

    def done(err, msg):
        if err:
            errors.append(err)
        else:
            acked.add(idx_of(tag, msg.value()))
    n = 30000
    for i in range(n):
        p.produce("idem-crash", key=key_of(i), value=value_of(tag, i), on_delivery=done)
        p.poll(0)
        if i == n // 2:
            broker.kill9()
            broker.restart()
    assert p.flush(120) == 0
    assert not errors, errors[:3]
    assert len(acked) == n
    recs = read_topic(broker.bootstrap, "idem-crash", PARTITIONS, isolation="read_uncommitted")
    found = indexes(recs, tag)
    assert len(found) == len(set(found)), f"{len(found) - len(set(found))} records stored twice"
    assert set(found) == acked, "an acknowledged record is missing"


# --------------------------------------------------------------------------- transactions

def test_read_committed_sees_committed_transactions_only(broker):
    tag = new_tag()
    ck_create_topic(broker.bootstrap, "txn", partitions=PARTITIONS)
    p = txn_producer(broker.bootstrap, "txn-basic")
    send_txn(p, "txn", tag, 0, 100, commit=True)
    send_txn(p, "txn", tag, 100, 50, commit=False)
    send_txn(p, "txn", tag, 150, 100, commit=True)
    committed = read_topic(broker.bootstrap, "txn", PARTITIONS)
    assert indexes(committed, tag) == list(range(100)) + list(range(150, 250))
    everything = read_topic(broker.bootstrap, "txn", PARTITIONS, isolation="read_uncommitted")
    assert indexes(everything, tag) == list(range(250))
    assert lso_reached_high_watermark(broker.bootstrap, "txn", PARTITIONS)


def test_open_transaction_holds_back_read_committed_until_it_ends(broker):
    tag = new_tag()
    ck_create_topic(broker.bootstrap, "txn-open", partitions=1)
    p = txn_producer(broker.bootstrap, "txn-open")
    p.begin_transaction()
    for i in range(10):
        p.produce("txn-open", key=key_of(i), value=value_of(tag, i))
    p.flush(30)
    assert read_topic(broker.bootstrap, "txn-open", 1) == []
    assert len(read_topic(broker.bootstrap, "txn-open", 1, isolation="read_uncommitted")) == 10
    assert not lso_reached_high_watermark(broker.bootstrap, "txn-open", 1)
    p.commit_transaction(TIMEOUT)
    assert indexes(read_topic(broker.bootstrap, "txn-open", 1), tag) == list(range(10))


def test_kafka_python_transactions(broker):
    from kafka import KafkaProducer
    tag = new_tag()
    ck_create_topic(broker.bootstrap, "txn-kp", partitions=PARTITIONS)
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="txn-kp")
    p.init_transactions()
    for start, n, commit in [(0, 40, True), (40, 20, False), (60, 40, True)]:
        p.begin_transaction()
        for i in range(start, start + n):
            p.send("txn-kp", key=key_of(i), value=value_of(tag, i))
        if commit:
            p.commit_transaction()
        else:
            p.abort_transaction()
    p.close()
    assert indexes(read_topic(broker.bootstrap, "txn-kp", PARTITIONS), tag) == \
        list(range(40)) + list(range(60, 100))


def test_consume_transform_produce_commits_offsets_in_the_transaction(broker):
    tag = new_tag()
    ck_create_topic(broker.bootstrap, "ctp-in", partitions=PARTITIONS)
    ck_create_topic(broker.bootstrap, "ctp-out", partitions=PARTITIONS)
    src = Producer(ck_conf(broker.bootstrap, **{"enable.idempotence": True}))
    n = 600
    for i in range(n):
        src.produce("ctp-in", key=key_of(i), value=value_of(tag, i))
    assert src.flush(30) == 0
    group = "ctp-group"
    c = Consumer(ck_conf(broker.bootstrap, **{
        "group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest",
        "isolation.level": "read_committed"}))
    c.subscribe(["ctp-in"])
    p = txn_producer(broker.bootstrap, "ctp-txn")
    seen, aborted_once = 0, False
    deadline = time.monotonic() + 120
    while seen < n:
        assert time.monotonic() < deadline, f"processed {seen} of {n}"
        msgs = [m for m in c.consume(num_messages=100, timeout=1.0) if not m.error()]
        if not msgs:
            continue
        p.begin_transaction()
        for m in msgs:
            p.produce("ctp-out", key=m.key(), value=b"out:" + m.value())
        p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), TIMEOUT)
        if not aborted_once and seen > n // 3:
            # A failure mid-way: abort, rewind to the committed offsets, process again.
            p.abort_transaction(TIMEOUT)
            aborted_once = True
            committed = c.committed(c.assignment(), timeout=TIMEOUT)
            for tp in committed:
                c.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else 0))
            continue
        p.commit_transaction(TIMEOUT)
        seen += len(msgs)
    assert aborted_once
    committed = c.committed([TopicPartition("ctp-in", q) for q in range(PARTITIONS)], timeout=TIMEOUT)
    c.close()
    marks = ck_watermarks(broker.bootstrap, "ctp-in", PARTITIONS)
    assert {tp.partition: tp.offset for tp in committed} == {q: hi for q, (_, hi) in marks.items()}
    out = read_topic(broker.bootstrap, "ctp-out", PARTITIONS)
    values = sorted(v for _, _, v in out)
    assert values == sorted(b"out:" + value_of(tag, i) for i in range(n)), \
        "each input record must appear in the output exactly once"


def test_a_zombie_producer_is_fenced_by_a_new_instance(broker):
    tag = new_tag()
    ck_create_topic(broker.bootstrap, "fence", partitions=1)
    zombie = txn_producer(broker.bootstrap, "fence-id")
    zombie.begin_transaction()
    zombie.produce("fence", value=value_of(tag, 0))
    zombie.flush(30)
    fresh = txn_producer(broker.bootstrap, "fence-id")  # aborts and fences the zombie's transaction
    send_txn(fresh, "fence", tag, 1, 5, commit=True)
    with pytest.raises(KafkaException) as e:
        zombie.produce("fence", value=value_of(tag, 99))
        zombie.flush(10)
        zombie.commit_transaction(TIMEOUT)
    err = e.value.args[0]
    assert err.fatal() or err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED,
                                         KafkaError.INVALID_PRODUCER_EPOCH), err
    assert indexes(read_topic(broker.bootstrap, "fence", 1), tag) == [1, 2, 3, 4, 5]


def test_kill9_in_the_middle_of_transactions_leaves_each_all_or_nothing(broker_factory):
    b = broker_factory()
    tag = new_tag()
    ck_create_topic(b.bootstrap, "crash-txn", partitions=PARTITIONS)
    p = txn_producer(b.bootstrap, "crash-txn-id", **{"transaction.timeout.ms": 4000, "socket.timeout.ms": 3000})
    per_txn, committed = 20, []
    for t in range(10):
        send_txn(p, "crash-txn", tag, t * per_txn, per_txn, commit=True)
        committed.append(t)
    # An in-doubt transaction: records written, no decision, then the broker dies.
    p.begin_transaction()
    for i in range(10 * per_txn, 11 * per_txn):
        p.produce("crash-txn", key=key_of(i), value=value_of(tag, i))
    p.flush(30)
    b.kill9()
    del p
    b.restart()
    # Nobody resumes the producer: the coordinator aborts the transaction by its timeout.
    wait_for(lambda: lso_reached_high_watermark(b.bootstrap, "crash-txn", PARTITIONS),
             timeout=60, what="the in-doubt transaction to be aborted by its timeout")
    seen = indexes(read_topic(b.bootstrap, "crash-txn", PARTITIONS), tag)
    assert seen == list(range(10 * per_txn)), "only the committed transactions are visible"
    # The transactional id works again: a new instance commits.
    p2 = txn_producer(b.bootstrap, "crash-txn-id")
    send_txn(p2, "crash-txn", tag, 11 * per_txn, per_txn, commit=True)
    seen = indexes(read_topic(b.bootstrap, "crash-txn", PARTITIONS), tag)
    assert seen == list(range(10 * per_txn)) + list(range(11 * per_txn, 12 * per_txn))


def test_kill9_during_a_stream_of_transactions_keeps_each_atomic(broker_factory):
    """Kills the broker at a moment no one chooses (while a producer commits transactions in a
    loop); afterwards each transaction's records are all visible or none, and every commit the
    client saw succeed is visible."""
    b = broker_factory()
    tag = new_tag()
    ck_create_topic(b.bootstrap, "crash-stream", partitions=PARTITIONS)
    per_txn = 30
    acked, attempted = [], []
    stop = threading.Event()

    def run():
        p = txn_producer(b.bootstrap, "crash-stream-id", **{"transaction.timeout.ms": 3000, "socket.timeout.ms": 2500})
        t = 0
        while not stop.is_set():
            attempted.append(t)
            try:
                send_txn(p, "crash-stream", tag, t * per_txn, per_txn, commit=True)
                acked.append(t)
            except KafkaException:
                return
            t += 1
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    wait_for(lambda: len(acked) >= 15, timeout=60, what="15 committed transactions")
    b.kill9()
    stop.set()
    worker.join(timeout=120)
    b.restart()
    wait_for(lambda: lso_reached_high_watermark(b.bootstrap, "crash-stream", PARTITIONS),
             timeout=60, what="open transactions to be settled")
    seen = indexes(read_topic(b.bootstrap, "crash-stream", PARTITIONS), tag)
    by_txn = {}
    for i in seen:
        by_txn.setdefault(i // per_txn, []).append(i)
    for t, idx in by_txn.items():
        assert idx == list(range(t * per_txn, (t + 1) * per_txn)), f"transaction {t} is partly visible"
    assert set(acked) <= set(by_txn), f"committed transactions missing: {set(acked) - set(by_txn)}"
    assert len(seen) == len(set(seen))


# --------------------------------------------------------------------------- operator APIs

def sluice(bootstrap, *args):
    out = subprocess.run([str(conftest.SLUICE_BIN), *args, "--bootstrap-server", bootstrap],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"sluice {' '.join(args)} failed: {out.stderr}"
    return out.stdout


def test_sluice_txn_list_and_describe_show_open_transactions_and_producers(broker):
    ck_create_topic(broker.bootstrap, "ops", partitions=2)
    p = txn_producer(broker.bootstrap, "ops-txn")
    p.begin_transaction()
    p.produce("ops", value=b"x", partition=1)
    p.flush(30)
    listing = sluice(broker.bootstrap, "txn", "list")
    assert "ops-txn" in listing and "Ongoing" in listing, listing
    described = sluice(broker.bootstrap, "txn", "describe", "ops-txn")
    assert "Ongoing" in described and "ops-1" in described, described
    producers = sluice(broker.bootstrap, "txn", "producers", "ops")
    assert "1" in producers.splitlines()[-1], producers
    p.commit_transaction(TIMEOUT)
    wait_for(lambda: "CompleteCommit" in sluice(broker.bootstrap, "txn", "describe", "ops-txn"),
             what="the transaction to complete")
    assert "Ongoing" not in sluice(broker.bootstrap, "txn", "list", "--state", "Ongoing")


def test_idle_producer_ids_expire_after_producer_id_expiration_ms(broker_factory):
    broker = broker_factory(config={"producer_id_expiration_ms": 3000,
                                    "producer_id_expiration_check_interval_ms": 200})
    ck_create_topic(broker.bootstrap, "expire", partitions=1)
    p = Producer(ck_conf(broker.bootstrap, **{"enable.idempotence": True}))
    p.produce("expire", value=b"once", partition=0)
    assert p.flush(TIMEOUT) == 0

    def producer_rows():
        return sluice(broker.bootstrap, "txn", "producers", "expire").splitlines()[1:]

    assert len(producer_rows()) == 1, "the idempotent producer is not listed"
    # The producer is idle from now on: the broker forgets it once it has been for three seconds.
    wait_for(lambda: producer_rows() == [], what="the idle producer id to expire")


# ----------------------------------------------------------- sluice's own transactional producer

def run_sluice(bootstrap, *args, input=None):
    return subprocess.run([str(conftest.SLUICE_BIN), *args, "--bootstrap-server", bootstrap],
                          input=input, capture_output=True, timeout=120)


def test_sluice_produce_with_a_transactional_id_commits_all_or_aborts_all(broker):
    """`sluice produce -X transactional.id=...` writes its whole input as one transaction: a
    read_committed reader sees every line of a good input and none of an input with a bad line
    (the lines before it are in the log, aborted)."""
    ck_create_topic(broker.bootstrap, "cli-txn", partitions=PARTITIONS)
    good = b"".join(b"good-%d\n" % i for i in range(50))
    r = run_sluice(broker.bootstrap, "produce", "cli-txn", "-X", "transactional.id=cli-1", input=good)
    assert r.returncode == 0, r.stderr
    # A key separator is required with --key-separator; the line without one fails.
    bad = b"k:bad-0\nk:bad-1\nno separator\n"
    r = run_sluice(broker.bootstrap, "produce", "cli-txn", "--key-separator", ":", "-X",
                   "transactional.id=cli-1", input=bad)
    assert r.returncode != 0 and b"aborted" in r.stderr, r.stderr
    committed = sorted(v for _, _, v in read_topic(broker.bootstrap, "cli-txn", PARTITIONS))
    assert committed == sorted(b"good-%d" % i for i in range(50))
    everything = [v for _, _, v in read_topic(broker.bootstrap, "cli-txn", PARTITIONS, "read_uncommitted")]
    assert b"bad-0" in everything and b"bad-1" in everything


def test_sluice_bench_transactional_run_reports_commit_latency(broker, tmp_path):
    """`sluice bench --transaction-records N`: transactional producers, read_committed
    consumers reading every record, and the commit latency in the report."""
    r = run_sluice(broker.bootstrap, "bench", "e2e", "--partitions", "3", "--record-size", "256",
                   "--rate", "2000", "--duration", "2", "--warmup", "0.5",
                   "--transaction-records", "50", "-q", "-o", str(tmp_path / "report.json"))
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["errors"] == 0, report["error_samples"]
    commit = report["latency"]["txn_commit"]
    # 2,000 records/s in transactions of 50 for 2 s: about 80 commits measured.
    assert commit["count"] >= 40, commit
    assert 0 < commit["p50_us"] <= commit["p99_us"] <= commit["max_us"]
    assert report["consume"]["records"] >= report["produce"]["records"] * 0.9, report


# --------------------------------------------------------------------------- WriteTxnMarkers

WRITE_TXN_MARKERS = 27


def write_txn_markers_v1(conn, producer_id, epoch, commit, topics, coordinator_epoch=0):
    """WriteTxnMarkers v1 (flexible) for one producer; `topics` maps a topic to its
    partitions. Returns {(topic, partition): error_code}."""
    w = kwire.Writer().raw(kwire.uvarint(2))  # one marker
    w.i64(producer_id).i16(epoch).boolean(commit)
    w.raw(kwire.uvarint(len(topics) + 1))
    for name, partitions in topics.items():
        w.compact_string(name).raw(kwire.uvarint(len(partitions) + 1))
        for p in partitions:
            w.i32(p)
        w.raw(b"\x00")
    w.i32(coordinator_epoch).raw(b"\x00").raw(b"\x00")
    r = conn.request(WRITE_TXN_MARKERS, 1, w.done(), flexible=True)
    assert r.raw(1) == b"\x00"  # response header tagged fields

    def uvar():
        shift = value = 0
        while True:
            b = r.i8() & 0xFF
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value
            shift += 7

    codes = {}
    for _ in range(uvar() - 1):
        r.i64()
        for _ in range(uvar() - 1):
            name = r.raw(uvar() - 1).decode()
            for _ in range(uvar() - 1):
                partition, code = r.i32(), r.i16()
                assert r.raw(1) == b"\x00"
                codes[(name, partition)] = code
            assert r.raw(1) == b"\x00"
        assert r.raw(1) == b"\x00"
    return codes


def test_write_txn_markers_from_another_coordinator_ends_the_transaction_here(broker):
    """What a coordinator on another broker sends to this partition's leader: the marker is
    written, read_committed sees the transaction's records, and an unknown partition is
    refused per partition."""
    ck_create_topic(broker.bootstrap, "markers", partitions=1)
    with kwire.Connection.to(broker.bootstrap) as conn:
        err, pid, epoch = init_producer_id(conn)
        assert err == 0
        batch = bytearray(idempotent_batch(pid, epoch, 0, [b"x", b"y", b"z"]))
        struct.pack_into(">h", batch, 21, 0x10)  # transactional
        struct.pack_into(">I", batch, 17, kwire.crc32c(bytes(batch[21:])))
        assert kwire.produce(conn, "markers", 0, bytes(batch))[0].error_code == 0
        assert read_topic(broker.bootstrap, "markers", 1) == []
        codes = write_txn_markers_v1(conn, pid, epoch, True, {"markers": [0], "no-such-topic": [0]})
        assert codes == {("markers", 0): 0, ("no-such-topic", 0): 3}
    got = read_topic(broker.bootstrap, "markers", 1)
    assert [v for _, _, v in got] == [b"x", b"y", b"z"]

"""Compaction (cleanup.policy=compact) seen by confluent-kafka: a compacted topic read from the
beginning yields the last value per key and, once tombstones pass delete.retention.ms, no deleted
keys; a broker killed during a (throttled) compaction pass, or stopped with a swap committed on
disk but not finished, restarts without losing any key's newest value.

Each test awaits compaction by reading the topic until the expected state appears (with a
deadline); the broker's "compacted log" line confirms the cleaner did it."""

import shutil
import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from support import TIMEOUT, ck_conf, ck_create_topic, ck_watermarks, new_tag, wait_for

# The cleaner looks every 100 ms; housekeeping (segment.ms rolls) every 200 ms.
FAST_CLEANER = {"log_cleaner_backoff_ms": 100, "retention_check_interval_ms": 200}
COMPACTED = {"cleanup.policy": "compact", "segment.bytes": "4096", "segment.ms": "1000",
             "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "1000"}
KEYS, ROUNDS, DELETED = 60, 5, 15


def produce_rounds(bootstrap, topic, keys=KEYS, rounds=ROUNDS, deleted=DELETED):
    """`rounds` values for each key, then tombstones for the first `deleted` keys; returns what
    a fully compacted topic holds: {key: newest value} without the deleted keys."""
    p = Producer(ck_conf(bootstrap, **{"acks": "all", "linger.ms": 2, "batch.size": 2048,
                                       "message.timeout.ms": 60000}))
    errors = []
    expected = {}
    for r in range(rounds):
        for k in range(keys):
            key, value = b"key-%03d" % k, b"value-%03d-round-%d" % (k, r)
            p.produce(topic, key=key, value=value, on_delivery=lambda e, m: e and errors.append(e))
            expected[key] = value
        p.poll(0)
    for k in range(deleted):
        p.produce(topic, key=b"key-%03d" % k, value=None, on_delivery=lambda e, m: e and errors.append(e))
        del expected[b"key-%03d" % k]
    assert p.flush(60) == 0
    assert not errors, errors[:3]
    return expected


def read_topic(bootstrap, topic):
    """Every record of partition 0 from the beginning to the end: [(offset, key, value)]."""
    c = Consumer(ck_conf(bootstrap, **{"group.id": "compaction-" + new_tag().decode(), "enable.auto.commit": False,
                                       "enable.partition.eof": True, "fetch.wait.max.ms": 50,
                                       "check.crcs": True}))
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        out = []
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert time.monotonic() < deadline, f"no end of partition within {TIMEOUT}s ({len(out)} read)"
            # consume() waits for num_messages or its timeout, so a short one ends a read promptly.
            for m in c.consume(num_messages=1000, timeout=0.2):
                if m.error() is not None:
                    assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                    return out
                out.append((m.offset(), m.key(), m.value()))
    finally:
        c.close()


def compacted_state(records):
    """{key: newest value} (tombstones drop the key), and whether each key appears once."""
    state, seen, unique = {}, set(), True
    for _, k, v in records:
        unique = unique and k not in seen
        seen.add(k)
        if v is None:
            state.pop(k, None)
        else:
            state[k] = v
    return state, unique


def produce_batch(bootstrap, topic, records):
    """Sends [(key, value)] to partition 0 as one batch (one linger window, no retries);
    returns each record's delivery error (None when stored), in order."""
    p = Producer(ck_conf(bootstrap, **{"acks": "all", "linger.ms": 50, "retries": 0,
                                       "message.timeout.ms": 30000}))
    outcome = {}
    for i, (key, value) in enumerate(records):
        p.produce(topic, key=key, value=value, partition=0,
                  on_delivery=lambda err, msg, i=i: outcome.__setitem__(i, err))
    assert p.flush(60) == 0
    assert len(outcome) == len(records), "a record got no delivery report"
    return [outcome[i] for i in range(len(records))]


@pytest.mark.parametrize("policy", ["compact", "compact,delete"])
def test_compacted_topic_refuses_records_without_a_key_with_invalid_record(broker, policy):
    ck_create_topic(broker.bootstrap, "keyed", partitions=1, config={"cleanup.policy": policy})
    [err] = produce_batch(broker.bootstrap, "keyed", [(None, b"no key")])
    assert err is not None and err.code() == KafkaError.INVALID_RECORD, err
    # One keyless record refuses its whole batch, keyed records included.
    errs = produce_batch(broker.bootstrap, "keyed", [(b"k1", b"v1"), (None, b"v2"), (b"k3", b"v3")])
    assert all(e is not None and e.code() == KafkaError.INVALID_RECORD for e in errs), errs
    assert ck_watermarks(broker.bootstrap, "keyed", 1)[0] == (0, 0), "a refused record was stored"

    assert produce_batch(broker.bootstrap, "keyed", [(b"k1", b"v1"), (b"k2", None)]) == [None, None]
    assert [(k, v) for _, k, v in read_topic(broker.bootstrap, "keyed")] == [(b"k1", b"v1"), (b"k2", None)]


def test_delete_policy_topic_takes_records_without_a_key(broker):
    ck_create_topic(broker.bootstrap, "loose", partitions=1, config={"cleanup.policy": "delete"})
    assert produce_batch(broker.bootstrap, "loose", [(None, b"v")]) == [None]
    assert ck_watermarks(broker.bootstrap, "loose", 1)[0] == (0, 1)


def test_compacted_topic_yields_the_last_value_per_key_and_no_deleted_keys(broker_factory):
    b = broker_factory(FAST_CLEANER)
    ck_create_topic(b.bootstrap, "cmp", partitions=1, config=COMPACTED)
    expected = produce_rounds(b.bootstrap, "cmp")
    total = KEYS * ROUNDS + DELETED

    def fully_compacted():
        recs = read_topic(b.bootstrap, "cmp")
        keys = [k for _, k, _ in recs]
        return len(keys) == len(set(keys)) and all(v is not None for _, _, v in recs) and recs

    recs = wait_for(fully_compacted, timeout=90, interval=0.5, what="one live record per key, no tombstones")
    assert {k: v for _, k, v in recs} == expected
    offsets = [o for o, _, _ in recs]
    assert offsets == sorted(offsets) and offsets[-1] < total, "offsets kept, with gaps"
    assert "compacted log" in b.log_tail()


def test_kill_during_compaction_and_an_unfinished_swap_lose_no_key(broker_factory):
    # A slow cleaner (20 kB/s) so that a pass is surely running when the broker is killed.
    b = broker_factory({**FAST_CLEANER, "log_cleaner_io_max_bytes_per_second": 20000})
    config = {**COMPACTED, "delete.retention.ms": "86400000"}
    ck_create_topic(b.bootstrap, "crash", partitions=1, config=config)
    expected = produce_rounds(b.bootstrap, "crash", keys=200, rounds=4)
    wait_for(lambda: "compacting log" in b.log_tail(), timeout=60, what="a compaction pass to start")
    b.kill9()
    b.restart()
    state, _ = compacted_state(read_topic(b.bootstrap, "crash"))
    assert state == expected, "a kill during compaction lost or changed a key's newest value"

    # A swap committed on disk (the cleaned copy renamed to .swap) but not finished: the
    # broker finishes it at start. Here the "cleaned copy" is the segment itself.
    b.stop()
    part = b.data_dir / "crash-0"
    first = sorted(part.glob("*.log"))[0]
    shutil.copy(first, str(first) + ".swap")
    (part / (first.stem + ".index")).unlink(missing_ok=True)
    (part / "00000000000000099999.log.cleaned").write_bytes(b"an unfinished copy")
    b.restart()
    state, _ = compacted_state(read_topic(b.bootstrap, "crash"))
    assert state == expected
    assert not list(part.glob("*.swap")) and not list(part.glob("*.cleaned"))

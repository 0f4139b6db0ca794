"""Topic configuration and lifecycle through confluent-kafka's AdminClient: Describe, Alter and
IncrementalAlterConfigs (sources, synonyms, INVALID_CONFIG), retention deleting old segments
(by time and by size) with OFFSET_OUT_OF_RANGE below the new log start, DeleteRecords, and
CreatePartitions used by producers."""

import struct
import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, NewPartitions)

from support import (TIMEOUT, ck_admin, ck_conf, ck_consume_all, ck_create_topic, ck_kafka_error, ck_produce,
                     ck_topics, ck_watermarks, new_tag, verify_read_back, wait_for, wait_topic_ready)

# Housekeeping runs every 200 ms in these brokers, so retention acts within the test's waits.
HOUSEKEEPING = {"retention_check_interval_ms": 200}


def describe_topic(admin, topic):
    [(_, fut)] = admin.describe_configs([ConfigResource("topic", topic)]).items()
    return fut.result(TIMEOUT)


def incremental(admin, topic, *entries):
    res = ConfigResource("topic", topic, incremental_configs=[
        ConfigEntry(name, value, incremental_operation=op) for name, value, op in entries])
    [(_, fut)] = admin.incremental_alter_configs([res]).items()
    return fut.result(TIMEOUT)


def produce_sized(bootstrap, topic, n, size=1000, timestamp=None, partition=0):
    """n records of `size` bytes to one partition, acks=all, every delivery checked."""
    p = Producer(ck_conf(bootstrap, **{"acks": "all", "linger.ms": 2, "batch.size": 4096,
                                       "message.timeout.ms": 60000}))
    errors = []
    extra = {} if timestamp is None else {"timestamp": timestamp}
    for i in range(n):
        p.produce(topic, value=b"%08d" % i + b"v" * (size - 8), partition=partition,
                  on_delivery=lambda err, msg: err and errors.append(err), **extra)
        p.poll(0)
    assert p.flush(60) == 0
    assert not errors, errors[:3]


def segment_files(broker, topic, partition=0):
    d = broker.data_dir / f"{topic}-{partition}"
    return sorted(p.name for p in d.glob("*.log"))


# --------------------------------------------------------------------------- configs

def test_incremental_and_legacy_alter_configs_change_what_describe_shows(broker):
    a = ck_admin(broker.bootstrap)
    ck_create_topic(broker.bootstrap, "conf", partitions=1, config={"segment.bytes": "1048576"})

    incremental(a, "conf",
                ("retention.ms", "3600000", AlterConfigOpType.SET),
                ("cleanup.policy", "compact", AlterConfigOpType.APPEND),
                ("segment.bytes", None, AlterConfigOpType.DELETE))
    cfg = describe_topic(a, "conf")
    assert cfg["retention.ms"].value == "3600000"
    assert cfg["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert cfg["cleanup.policy"].value == "delete,compact"
    assert cfg["segment.bytes"].value == "1073741824" and cfg["segment.bytes"].is_default

    # Synonyms (librdkafka asks for them): the topic value, then the broker's default.
    syn = cfg["retention.ms"].synonyms
    assert [s for s in syn] == ["retention.ms", "log.retention.ms"]
    assert syn["log.retention.ms"].value == "604800000"

    # AlterConfigs (legacy) replaces the whole set: what it does not name goes back to default.
    [(_, fut)] = a.alter_configs([ConfigResource("topic", "conf", set_config={"max.message.bytes": "2000"})]).items()
    fut.result(TIMEOUT)
    cfg = describe_topic(a, "conf")
    assert cfg["max.message.bytes"].value == "2000" and not cfg["max.message.bytes"].is_default
    assert cfg["retention.ms"].is_default and cfg["cleanup.policy"].value == "delete"

    # The new max.message.bytes is enforced on produce.
    p = Producer(ck_conf(broker.bootstrap, **{"acks": "all", "linger.ms": 0, "message.timeout.ms": 30000}))
    errors = []
    p.produce("conf", value=b"x" * 5000, on_delivery=lambda err, msg: errors.append(err))
    p.flush(TIMEOUT)
    assert len(errors) == 1 and errors[0] is not None and errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE


@pytest.mark.parametrize("name,value", [("retention.ms", "soon"), ("segment.bytes", "10"),
                                        ("cleanup.policy", "shred"), ("compression.type", "brotli"),
                                        ("no.such.config", "1")])
def test_bad_config_values_are_refused_with_invalid_config(broker, name, value):
    a = ck_admin(broker.bootstrap)
    ck_create_topic(broker.bootstrap, "strict", partitions=1)
    with pytest.raises(Exception) as e:
        incremental(a, "strict", (name, value, AlterConfigOpType.SET))
    assert ck_kafka_error(e).code() == KafkaError.INVALID_CONFIG
    [(_, fut)] = a.alter_configs([ConfigResource("topic", "strict", set_config={name: value})]).items()
    with pytest.raises(Exception) as e:
        fut.result(TIMEOUT)
    assert ck_kafka_error(e).code() == KafkaError.INVALID_CONFIG
    assert describe_topic(a, "strict")["retention.ms"].is_default


def test_broker_configs_are_described_with_kafka_names(broker):
    a = ck_admin(broker.bootstrap)
    [(_, fut)] = a.describe_configs([ConfigResource("broker", "1")]).items()
    cfg = fut.result(TIMEOUT)
    assert cfg["log.retention.ms"].value == "604800000"
    assert cfg["log.segment.bytes"].value == "1073741824"
    assert cfg["message.max.bytes"].value == "1048588"
    assert cfg["log.retention.ms"].is_read_only


def test_broker_configs_list_the_log_cleaner_settings(broker_factory):
    b = broker_factory({"log_cleaner_dedupe_buffer_size": 16 << 20, "log_cleaner_backoff_ms": 500,
                        "log_cleaner_io_max_bytes_per_second": 1048576})
    a = ck_admin(b.bootstrap)
    [(_, fut)] = a.describe_configs([ConfigResource("broker", "1")]).items()
    cfg = fut.result(TIMEOUT)
    assert cfg["log.cleaner.dedupe.buffer.size"].value == str(16 << 20)
    assert float(cfg["log.cleaner.io.max.bytes.per.second"].value) == 1048576
    assert cfg["log.cleaner.backoff.ms"].value == "500"
    assert cfg["log.cleaner.backoff.ms"].source == ConfigSource.STATIC_BROKER_CONFIG.value


# --------------------------------------------------------------------------- retention

def test_time_retention_deletes_old_segments_and_moves_the_log_start(broker_factory):
    b = broker_factory(HOUSEKEEPING)
    ck_create_topic(b.bootstrap, "aging", partitions=1, config={"segment.bytes": "20000"})
    old = int(time.time() * 1000) - 3_600_000
    produce_sized(b.bootstrap, "aging", 400, timestamp=old)
    produce_sized(b.bootstrap, "aging", 100)  # recent: kept
    assert ck_watermarks(b.bootstrap, "aging", 1)[0] == (0, 500)
    before = segment_files(b, "aging")
    assert len(before) > 3

    incremental(ck_admin(b.bootstrap), "aging", ("retention.ms", "600000", AlterConfigOpType.SET))
    wait_for(lambda: ck_watermarks(b.bootstrap, "aging", 1)[0][0] > 0, what="log start to move")
    low, high = ck_watermarks(b.bootstrap, "aging", 1)[0]
    assert 0 < low <= 400 and high == 500
    assert len(segment_files(b, "aging")) < len(before)

    # Everything from the new start is still readable, nothing below it is.
    recs, _ = ck_consume_all(b.bootstrap, "aging", 1)
    assert [r.offset for r in recs] == list(range(low, 500))
    assert_out_of_range(b.bootstrap, "aging", 0, 0)


def test_size_retention_keeps_about_retention_bytes(broker_factory):
    b = broker_factory(HOUSEKEEPING)
    ck_create_topic(b.bootstrap, "sized", partitions=1,
                    config={"segment.bytes": "20000", "retention.bytes": "60000"})
    produce_sized(b.bootstrap, "sized", 200)
    wait_for(lambda: ck_watermarks(b.bootstrap, "sized", 1)[0][0] > 0, what="log start to move")
    wait_for(lambda: sum((b.data_dir / "sized-0" / f).stat().st_size for f in segment_files(b, "sized"))
             < 60000 + 2 * 20000, what="segments beyond retention.bytes to go")
    low, high = ck_watermarks(b.bootstrap, "sized", 1)[0]
    assert high == 200 and low > 0
    assert_out_of_range(b.bootstrap, "sized", 0, low - 1)


def assert_out_of_range(bootstrap, topic, partition, offset):
    c = Consumer(ck_conf(bootstrap, **{"group.id": "oor-" + new_tag().decode(), "enable.auto.commit": False,
                                        "auto.offset.reset": "error", "enable.partition.eof": False}))
    try:
        c.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error() is not None, f"read offset {m.offset()} below the log start"
            if m.error().code() in (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE):
                return
        raise AssertionError("no OFFSET_OUT_OF_RANGE for a fetch below the log start")
    finally:
        c.close()


# --------------------------------------------------------------------------- DeleteRecords

def test_delete_records_moves_the_earliest_offset(broker):
    ck_create_topic(broker.bootstrap, "trimmed", partitions=2, config={"segment.bytes": "10000"})
    produce_sized(broker.bootstrap, "trimmed", 300, size=200)
    a = ck_admin(broker.bootstrap)
    fs = a.delete_records([TopicPartition("trimmed", 0, 120)])
    [(_, fut)] = fs.items()
    assert fut.result(TIMEOUT).low_watermark == 120
    assert ck_watermarks(broker.bootstrap, "trimmed", 2) == {0: (120, 300), 1: (0, 0)}
    recs, _ = ck_consume_all(broker.bootstrap, "trimmed", 2)
    assert [r.offset for r in recs] == list(range(120, 300))
    assert_out_of_range(broker.bootstrap, "trimmed", 0, 119)

    # Past the high watermark: OFFSET_OUT_OF_RANGE, and nothing moves.
    [(_, fut)] = a.delete_records([TopicPartition("trimmed", 0, 301)]).items()
    with pytest.raises(Exception) as e:
        fut.result(TIMEOUT)
    assert ck_kafka_error(e).code() == KafkaError.OFFSET_OUT_OF_RANGE
    assert ck_watermarks(broker.bootstrap, "trimmed", 1)[0] == (120, 300)

    # The new start survives a restart.
    broker.stop()
    broker.restart()
    assert ck_watermarks(broker.bootstrap, "trimmed", 1)[0] == (120, 300)


# --------------------------------------------------------------------------- CreatePartitions

def test_create_partitions_adds_partitions_producers_use(broker):
    ck_create_topic(broker.bootstrap, "growing", partitions=1)
    a = ck_admin(broker.bootstrap)
    [(_, fut)] = a.create_partitions([NewPartitions("growing", 4)]).items()
    assert fut.result(TIMEOUT) is None
    wait_topic_ready(broker.bootstrap, "growing", 4)
    tag = new_tag()
    delivery = ck_produce(broker.bootstrap, "growing", 400, tag, **{"topic.metadata.refresh.interval.ms": 1000})
    assert {p for p, _ in delivery.values()} == {0, 1, 2, 3}
    recs, _ = ck_consume_all(broker.bootstrap, "growing", 4)
    assert len(recs) == 400

    for count in (4, 2):
        [(_, fut)] = a.create_partitions([NewPartitions("growing", count)]).items()
        with pytest.raises(Exception) as e:
            fut.result(TIMEOUT)
        assert ck_kafka_error(e).code() == KafkaError.INVALID_PARTITIONS
    assert len(ck_topics(broker.bootstrap)["growing"].partitions) == 4

    # Survives a restart: the added partitions come back with their data.
    broker.stop()
    broker.restart()
    recs, _ = ck_consume_all(broker.bootstrap, "growing", 4)
    assert len(recs) == 400


# --------------------------------------------------------------------------- LogAppendTime

def test_log_append_time_replaces_the_producer_timestamps(broker):
    import confluent_kafka
    ck_create_topic(broker.bootstrap, "stamped", partitions=1, config={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    produce_sized(broker.bootstrap, "stamped", 20, size=100, timestamp=before - 3_600_000)
    recs, _ = ck_consume_all(broker.bootstrap, "stamped", 1)
    assert len(recs) == 20
    assert all(r.timestamp >= before for r in recs), [r.timestamp for r in recs][:3]
    c = Consumer(ck_conf(broker.bootstrap, **{"group.id": "lat-" + new_tag().decode(), "auto.offset.reset": "earliest"}))
    try:
        c.assign([TopicPartition("stamped", 0, 0)])
        m = None
        deadline = time.monotonic() + TIMEOUT
        while m is None and time.monotonic() < deadline:
            m = c.poll(0.5)
        assert m is not None and m.error() is None
        assert m.timestamp()[0] == confluent_kafka.TIMESTAMP_LOG_APPEND_TIME
    finally:
        c.close()


def test_produce_response_carries_the_log_append_time(broker):
    """librdkafka takes a delivered message's timestamp from the Produce response's
    log_append_time_ms when the topic stamps batches; a CreateTime topic answers -1."""
    import confluent_kafka
    ck_create_topic(broker.bootstrap, "stamped-ack", partitions=1, config={"message.timestamp.type": "LogAppendTime"})
    ck_create_topic(broker.bootstrap, "created-ack", partitions=1)
    old = int(time.time() * 1000) - 3_600_000
    before = int(time.time() * 1000)
    delivered = []
    p = Producer(ck_conf(broker.bootstrap, **{"linger.ms": 0}))
    for topic in ("stamped-ack", "created-ack"):
        p.produce(topic, b"v", timestamp=old, on_delivery=lambda err, msg: delivered.append((err, msg)))
    assert p.flush(TIMEOUT) == 0
    after = int(time.time() * 1000)
    by_topic = {m.topic(): (err, m.timestamp()) for err, m in delivered}
    err, (kind, ts) = by_topic["stamped-ack"]
    assert err is None
    assert kind == confluent_kafka.TIMESTAMP_LOG_APPEND_TIME
    assert before <= ts <= after
    err, (kind, ts) = by_topic["created-ack"]
    assert err is None
    assert (kind, ts) == (confluent_kafka.TIMESTAMP_CREATE_TIME, old)

# --------------------------------------------------------------------------- min.insync.replicas

def produce_one(bootstrap, topic, acks):
    """One record with `acks` and no retries; returns the delivery error (None on success)."""
    p = Producer(ck_conf(bootstrap, **{"acks": acks, "retries": 0, "linger.ms": 0,
                                       "enable.idempotence": False, "message.timeout.ms": 20000}))
    result = []
    p.produce(topic, key=b"k", value=b"v", partition=0, on_delivery=lambda err, msg: result.append(err))
    assert p.flush(30) == 0
    return result[0]


def test_min_insync_replicas_above_the_isr_refuses_acks_all_only(broker):
    """Issue 14 item 7: a single-replica partition has an ISR of one, so acks=all with
    min.insync.replicas=2 is NOT_ENOUGH_REPLICAS (nothing appended), as Kafka answers when the
    ISR is smaller; acks=1 and acks=0 are unaffected."""
    a = ck_admin(broker.bootstrap)
    ck_create_topic(broker.bootstrap, "misr", partitions=1, config={"min.insync.replicas": "2"})
    assert describe_topic(a, "misr")["min.insync.replicas"].value == "2"

    err = produce_one(broker.bootstrap, "misr", "all")
    assert err is not None and err.code() == KafkaError.NOT_ENOUGH_REPLICAS, err
    assert ck_watermarks(broker.bootstrap, "misr", 1)[0] == (0, 0), "a refused produce appends nothing"
    assert produce_one(broker.bootstrap, "misr", "1") is None
    assert produce_one(broker.bootstrap, "misr", "0") is None
    wait_for(lambda: ck_watermarks(broker.bootstrap, "misr", 1)[0] == (0, 2), what="acks=1 and acks=0 records")

    incremental(a, "misr", ("min.insync.replicas", "1", AlterConfigOpType.SET))
    wait_for(lambda: produce_one(broker.bootstrap, "misr", "all") is None, what="acks=all accepted again")


# --------------------------------------------------------------------------- recompression

CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


def stored_codecs(broker, topic, partition=0):
    """The codec of every batch in the partition's segment files, read off the disk: each batch
    is baseOffset i64, batchLength i32, ..., attributes i16 at byte 21."""
    codecs = []
    for path in sorted((broker.data_dir / f"{topic}-{partition}").glob("*.log")):
        data = path.read_bytes()
        pos = 0
        while pos + 23 <= len(data):
            (length,) = struct.unpack_from(">i", data, pos + 8)
            if length <= 0:
                break
            (attributes,) = struct.unpack_from(">h", data, pos + 21)
            codecs.append(CODECS[attributes & 7])
            pos += 12 + length
    return codecs


@pytest.mark.parametrize("topic_codec,producer_codec", [("zstd", "gzip"), ("uncompressed", "lz4")])
def test_topic_compression_type_recompresses_stored_batches(broker, topic_codec, producer_codec):
    """A topic whose compression.type is a codec stores every batch in it, whatever the
    producer used; consumers read every record, offsets, keys, values and headers intact."""
    topic = f"recompress-{topic_codec}"
    ck_create_topic(broker.bootstrap, topic, partitions=1, config={"compression.type": topic_codec})
    tag = new_tag()
    delivery = ck_produce(broker.bootstrap, topic, 500, tag, codec=producer_codec, **{"batch.size": 8192})
    want = "none" if topic_codec == "uncompressed" else topic_codec
    codecs = wait_for(lambda: stored_codecs(broker, topic), what="batches on disk")
    assert len(codecs) > 1 and set(codecs) == {want}, codecs
    recs, _ = ck_consume_all(broker.bootstrap, topic, 1)
    verify_read_back(recs, tag, 500, 1, delivery=delivery)

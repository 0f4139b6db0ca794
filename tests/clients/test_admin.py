"""Admin operations through the clients' own admin APIs: list topics, describe cluster, create
(with configs, validate_only), delete and recreate, auto-creation, and ListOffsets by
earliest / latest / timestamp."""

import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

import kwire
from support import (TIMEOUT, ck_admin, ck_conf, ck_consume_all, ck_create_topic, ck_kafka_error, ck_produce,
                     ck_topics, ck_watermarks, kcat_metadata, kp_admin, kp_common, new_tag, verify_read_back,
                     wait_for, wait_topic_ready)


# --------------------------------------------------------------------------- list / describe

def test_list_topics_shows_every_topic_with_its_partitions_in_every_client(broker):
    want = {"alpha": 1, "beta": 3, "gamma.with-dots_and-dashes": 5}
    for name, n in want.items():
        ck_create_topic(broker.bootstrap, name, partitions=n)

    md = ck_admin(broker.bootstrap).list_topics(timeout=TIMEOUT)
    got = {t: len(m.partitions) for t, m in md.topics.items() if not t.startswith("__")}
    assert got == want
    for name, n in want.items():
        for p in md.topics[name].partitions.values():
            assert (p.error, p.leader, p.replicas, p.isrs) == (None, 1, [1], [1]), f"{name}/{p.id}: {p}"
        assert sorted(md.topics[name].partitions) == list(range(n))

    a = kp_admin(broker.bootstrap)
    try:
        assert set(want) <= set(a.list_topics())
        described = {t["name"]: t for t in a.describe_topics(list(want))}
    finally:
        a.close()
    for name, n in want.items():
        t = described[name]
        assert t["error_code"] == 0 and not t["is_internal"]
        assert sorted(p["partition_index"] for p in t["partitions"]) == list(range(n))
        assert all(p["leader_id"] == 1 and p["error_code"] == 0 for p in t["partitions"])

    kc = kcat_metadata(broker.bootstrap)
    kc_topics = {t["topic"]: len(t["partitions"]) for t in kc["topics"] if not t["topic"].startswith("__")}
    assert kc_topics == want
    assert [b["id"] for b in kc["brokers"]] == [1]


def test_describe_cluster_reports_node_1_as_the_only_broker_and_controller(broker):
    adm = ck_admin(broker.bootstrap)  # keep the client alive until its futures resolve
    res = adm.describe_cluster(request_timeout=TIMEOUT).result(timeout=TIMEOUT * 2)
    assert isinstance(res.cluster_id, str) and res.cluster_id
    assert [(n.id, n.host, n.port) for n in res.nodes] == [(1, "127.0.0.1", broker.port)]
    assert res.controller is not None and res.controller.id == 1

    a = kp_admin(broker.bootstrap)
    try:
        kp = a.describe_cluster()
    finally:
        a.close()
    assert kp["cluster_id"] == res.cluster_id
    assert kp["controller_id"] == 1
    assert [(b["broker_id"], b["host"], b["port"]) for b in kp["brokers"]] == [(1, "127.0.0.1", broker.port)]

    # Metadata agrees with DescribeCluster.
    md = ck_admin(broker.bootstrap).list_topics(timeout=TIMEOUT)
    assert md.cluster_id == res.cluster_id and md.controller_id == 1
    assert {(b.id, b.host, b.port) for b in md.brokers.values()} == {(1, "127.0.0.1", broker.port)}


# --------------------------------------------------------------------------- delete / recreate

def test_deleted_topic_is_gone_and_can_be_recreated_empty(broker):
    tag = new_tag()
    ck_create_topic(broker.bootstrap, "doomed", partitions=3)
    ck_produce(broker.bootstrap, "doomed", 1000, tag)
    adm = ck_admin(broker.bootstrap)  # keep the client alive until its futures resolve
    fs = adm.delete_topics(["doomed"], operation_timeout=TIMEOUT, request_timeout=TIMEOUT)
    assert fs["doomed"].result(timeout=TIMEOUT * 2) is None
    wait_for(lambda: "doomed" not in ck_topics(broker.bootstrap), what="deleted topic to leave the metadata")

    a = kp_admin(broker.bootstrap)
    try:
        [t] = a.describe_topics(["doomed"])  # Metadata that may not auto-create
        assert t["error_code"] == kwire.UNKNOWN_TOPIC_OR_PARTITION
        assert "doomed" not in a.list_topics()
    finally:
        a.close()
    with kwire.Connection.to(broker.bootstrap) as c:
        assert kwire.fetch_v4(c, "doomed", 0, 0).error_code == kwire.UNKNOWN_TOPIC_OR_PARTITION

    # Recreated with another partition count: empty, and offsets start from 0 again.
    ck_create_topic(broker.bootstrap, "doomed", partitions=2)
    assert ck_watermarks(broker.bootstrap, "doomed", 2) == {0: (0, 0), 1: (0, 0)}
    tag2 = new_tag()
    delivery = ck_produce(broker.bootstrap, "doomed", 200, tag2)
    recs, _ = ck_consume_all(broker.bootstrap, "doomed", 2)
    verify_read_back(recs, tag2, 200, 2, delivery=delivery, label="recreated topic")


def test_delete_with_kafka_python_and_deleting_a_missing_topic_fails(broker):
    ck_create_topic(broker.bootstrap, "kp-doomed", partitions=1)
    a = kp_admin(broker.bootstrap)
    try:
        a.delete_topics(["kp-doomed"])
        wait_for(lambda: "kp-doomed" not in a.list_topics(), what="kafka-python delete to take effect")
        from kafka.errors import UnknownTopicOrPartitionError
        with pytest.raises(UnknownTopicOrPartitionError):
            a.delete_topics(["never-existed"])
    finally:
        a.close()
    adm = ck_admin(broker.bootstrap)  # keep the client alive until its futures resolve
    fs = adm.delete_topics(["never-existed"], request_timeout=TIMEOUT)
    with pytest.raises(Exception) as ei:
        fs["never-existed"].result(timeout=TIMEOUT * 2)
    assert ck_kafka_error(ei).code() == KafkaError.UNKNOWN_TOPIC_OR_PART


# --------------------------------------------------------------------------- create with configs / validate_only

def test_create_with_topic_configs_succeeds_and_the_topic_works(broker):
    ck_create_topic(broker.bootstrap, "configured", partitions=2,
                    config={"retention.ms": "86400000", "cleanup.policy": "delete"})
    a = kp_admin(broker.bootstrap)
    try:
        res = a.create_topics({"kp-configured": {"num_partitions": 1, "replication_factor": 1,
                                                 "configs": {"retention.ms": "3600000", "cleanup.policy": "delete"}}})
        assert [t["error_code"] for t in res["topics"]] == [0]
    finally:
        a.close()
    wait_topic_ready(broker.bootstrap, "kp-configured", 1)
    for topic, parts in (("configured", 2), ("kp-configured", 1)):
        tag = new_tag()
        delivery = ck_produce(broker.bootstrap, topic, 100, tag)
        recs, _ = ck_consume_all(broker.bootstrap, topic, parts)
        verify_read_back(recs, tag, 100, parts, delivery=delivery, label=topic)


def test_validate_only_create_checks_but_creates_nothing(broker):
    adm = ck_admin(broker.bootstrap)
    fs = adm.create_topics([NewTopic("dry-run", num_partitions=4, replication_factor=1,
                                     config={"retention.ms": "60000"})],
                           validate_only=True, request_timeout=TIMEOUT)
    assert fs["dry-run"].result(timeout=TIMEOUT * 2) is None
    # validation still reports what a real create would
    fs = adm.create_topics([NewTopic("dry-run-rf2", 1, 2)], validate_only=True, request_timeout=TIMEOUT)
    with pytest.raises(Exception) as ei:
        fs["dry-run-rf2"].result(timeout=TIMEOUT * 2)
    assert ck_kafka_error(ei).code() == KafkaError.INVALID_REPLICATION_FACTOR
    ck_create_topic(broker.bootstrap, "exists", partitions=1)
    fs = adm.create_topics([NewTopic("exists", 1, 1)], validate_only=True, request_timeout=TIMEOUT)
    with pytest.raises(Exception) as ei:
        fs["exists"].result(timeout=TIMEOUT * 2)
    assert ck_kafka_error(ei).code() == KafkaError.TOPIC_ALREADY_EXISTS

    a = kp_admin(broker.bootstrap)
    try:
        res = a.create_topics({"kp-dry-run": {"num_partitions": 2, "replication_factor": 1}}, validate_only=True)
        assert [t["error_code"] for t in res["topics"]] == [0]
    finally:
        a.close()
    with kwire.Connection.to(broker.bootstrap) as c:
        [(name, err, msg)] = kwire.create_topics_v2(c, [("raw-dry-run", 3, 1)], validate_only=True)
        assert (name, err, msg or None) == ("raw-dry-run", kwire.NONE, None)
        assert kwire.create_topics_v2(c, [("bad/dry", 1, 1)], validate_only=True)[0][1] == \
            kwire.INVALID_TOPIC_EXCEPTION

    names = set(ck_topics(broker.bootstrap))
    assert not {"dry-run", "dry-run-rf2", "kp-dry-run", "raw-dry-run"} & names
    assert len(ck_topics(broker.bootstrap)["exists"].partitions) == 1
    # and the validated name is still free for a real create
    ck_create_topic(broker.bootstrap, "dry-run", partitions=4)


# --------------------------------------------------------------------------- auto-creation

def test_metadata_request_auto_creates_an_unknown_topic_with_one_partition(broker):
    with kwire.Connection.to(broker.bootstrap) as c:
        first = kwire.metadata_v1(c, ["auto-md"])["topics"]["auto-md"]
        assert first["error_code"] in (kwire.NONE, kwire.LEADER_NOT_AVAILABLE)

        def ready():
            t = kwire.metadata_v1(c, ["auto-md"])["topics"]["auto-md"]
            return t["error_code"] == 0 and t
        t = wait_for(ready, what="auto-created topic to have a leader")
    assert [(p["partition"], p["leader"], p["error_code"]) for p in t["partitions"]] == [(0, 1, 0)]
    assert len(ck_topics(broker.bootstrap)["auto-md"].partitions) == 1


def test_producing_to_an_unknown_topic_auto_creates_it_with_one_partition(broker):
    p = Producer(ck_conf(broker.bootstrap, **{"acks": "all", "enable.idempotence": False}))
    reports = []
    for i in range(10):
        p.produce("auto-ck", key=b"k%d" % i, value=b"v%d" % i,
                  on_delivery=lambda err, msg: reports.append((err, msg.partition(), msg.offset())))
    assert p.flush(30) == 0
    assert reports == [(None, 0, i) for i in range(10)]

    from kafka import KafkaProducer
    kp = KafkaProducer(**kp_common(broker.bootstrap, acks="all", enable_idempotence=False))
    try:
        md = kp.send("auto-kp", key=b"k", value=b"v").get(timeout=30)
        assert (md.partition, md.offset) == (0, 0)
    finally:
        kp.close(timeout=10)
    topics = ck_topics(broker.bootstrap)
    assert len(topics["auto-ck"].partitions) == 1 and len(topics["auto-kp"].partitions) == 1
    recs, _ = ck_consume_all(broker.bootstrap, "auto-ck", 1)
    assert [(r.offset, r.value) for r in recs] == [(i, b"v%d" % i) for i in range(10)]


def test_metadata_that_forbids_auto_creation_does_not_create(broker):
    a = kp_admin(broker.bootstrap)  # kafka-python's admin sends allow_auto_topic_creation=false
    try:
        [t] = a.describe_topics(["not-auto"])
        assert t["error_code"] == kwire.UNKNOWN_TOPIC_OR_PARTITION
    finally:
        a.close()
    assert "not-auto" not in ck_topics(broker.bootstrap)


# --------------------------------------------------------------------------- ListOffsets

def test_list_offsets_earliest_latest_and_by_timestamp(broker):
    topic = "times"
    ck_create_topic(broker.bootstrap, topic, partitions=1)
    base = int(time.time() * 1000) - 600_000
    ts = [base + 1000 * i for i in range(30)]
    p = Producer(ck_conf(broker.bootstrap, **{"acks": "all", "enable.idempotence": False, "linger.ms": 50}))
    for lot in range(3):  # three produce requests, so timestamps are searched across batches too
        for i in range(lot * 10, lot * 10 + 10):
            p.produce(topic, key=b"k", value=b"v%d" % i, partition=0, timestamp=ts[i])
        assert p.flush(30) == 0

    recs, marks = ck_consume_all(broker.bootstrap, topic, 1)
    assert [(r.offset, r.timestamp) for r in recs] == list(enumerate(ts)), "CreateTime timestamps not kept"
    assert marks == {0: (0, 30)}

    # (query timestamp, expected offset): before all, exact, between two records, batch boundary, after all
    cases = [(base - 5_000, 0), (ts[0], 0), (ts[7], 7), (ts[7] - 500, 7), (ts[9] + 1, 10), (ts[10], 10),
             (ts[15] + 999, 16), (ts[29], 29), (ts[29] + 1, -1), (ts[29] + 3_600_000, -1)]

    c = Consumer(ck_conf(broker.bootstrap, **{"group.id": "times-q", "enable.auto.commit": False}))
    try:
        got = []
        for q, _ in cases:  # one query per call: a request names each partition once
            [g] = c.offsets_for_times([TopicPartition(topic, 0, q)], timeout=TIMEOUT)
            assert g.error is None, f"offsets_for_times({q - base:+}): {g.error}"
            got.append(g.offset)
        assert got == [want for _, want in cases], \
            f"offsets_for_times by (query - base): {[(q - base, o) for (q, _), o in zip(cases, got)]}"
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT, cached=False) == (0, 30)
    finally:
        c.close()

    from kafka import KafkaConsumer, TopicPartition as KTP
    kc = KafkaConsumer(**kp_common(broker.bootstrap, group_id=None, enable_auto_commit=False))
    try:
        tp = KTP(topic, 0)
        assert kc.beginning_offsets([tp]) == {tp: 0}
        assert kc.end_offsets([tp]) == {tp: 30}
        for q, want in cases:
            r = kc.offsets_for_times({tp: q})[tp]
            if want == -1:
                assert r is None, f"timestamp after the last record: {r}"
            else:
                assert (r.offset, r.timestamp) == (want, ts[want]), f"query {q - base}: {r}"
    finally:
        kc.close()

    with kwire.Connection.to(broker.bootstrap) as c:
        assert kwire.list_offsets_v1(c, topic, 0, kwire.EARLIEST)[::2] == (0, 0)
        assert kwire.list_offsets_v1(c, topic, 0, kwire.LATEST)[::2] == (0, 30)
        assert kwire.list_offsets_v1(c, topic, 0, ts[12] - 1) == (0, ts[12], 12)
        assert kwire.list_offsets_v1(c, topic, 0, ts[29] + 1) == (0, -1, -1)


def test_list_offsets_latest_tracks_each_partition_end(broker):
    topic = "ends"
    ck_create_topic(broker.bootstrap, topic, partitions=3)
    assert ck_watermarks(broker.bootstrap, topic, 3) == {p: (0, 0) for p in range(3)}
    delivery = ck_produce(broker.bootstrap, topic, 3000, new_tag())
    per_part = {}
    for p, _ in delivery.values():
        per_part[p] = per_part.get(p, 0) + 1
    assert ck_watermarks(broker.bootstrap, topic, 3) == {p: (0, per_part.get(p, 0)) for p in range(3)}


def test_describe_configs_shows_topic_overrides_and_kafka_defaults(broker):
    from confluent_kafka.admin import ConfigResource
    a = ck_admin(broker.bootstrap)
    a.create_topics([NewTopic("configured", 1, 1, config={"retention.ms": "1000", "cleanup.policy": "compact"})])[
        "configured"].result(TIMEOUT)
    [(_, fut)] = a.describe_configs([ConfigResource("topic", "configured")]).items()
    cfg = fut.result(TIMEOUT)
    assert (cfg["retention.ms"].value, cfg["cleanup.policy"].value) == ("1000", "compact")
    assert not cfg["retention.ms"].is_default
    assert cfg["max.message.bytes"].value == "1048588" and cfg["max.message.bytes"].is_default
    [(_, missing)] = a.describe_configs([ConfigResource("topic", "no-such-topic")]).items()
    with pytest.raises(Exception) as e:
        missing.result(TIMEOUT)
    assert ck_kafka_error(e.value).code() == KafkaError.UNKNOWN_TOPIC_OR_PART

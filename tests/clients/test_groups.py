"""Consumer groups with real clients against a real broker (issue 4).

Group members are confluent-kafka consumers in their own processes (tests/clients/group_member.py),
so one can be SIGKILLed; each reports its assignment, the records it processed and the offsets it
committed (after processing) as JSON lines. The checks are on outcomes: who owns which partition,
that every record produced is consumed at least once and that no record is delivered again after it
was committed, that committed offsets survive broker restarts (clean and kill -9, with the members
stopped, and kill -9 with them running through it), that a static
member rejoins without a rebalance, that the cooperative-sticky assignor works, that kafka-python
groups work, the admin APIs, and that `__consumer_offsets` holds Kafka's own record schemas.

Every wait polls a condition with a deadline. The broker runs with group.initial.rebalance.delay
0 and a 1 s minimum session timeout so the suite stays fast.
"""

from __future__ import annotations

import struct
import subprocess
import threading
import time
import uuid
from collections import defaultdict

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions

from conftest import SLUICE_BIN
from group_member import Member
from support import (TIMEOUT, ck_admin, ck_conf, ck_consume_all, ck_create_topic, ck_kafka_error, ck_produce,
                     ck_watermarks, idx_of, key_of, kp_common, new_tag, value_of, wait_for)

GROUP_CONF = {
    "group_initial_rebalance_delay_ms": 0,
    "group_min_session_timeout_ms": 1000,
    "offsets_topic_num_partitions": 5,
}
OFFSETS_TOPIC = "__consumer_offsets"
REBALANCE_WAIT = 30.0  # a generous deadline for a rebalance to settle


@pytest.fixture
def gbroker(broker_factory):
    return broker_factory(GROUP_CONF)


@pytest.fixture
def members(tmp_path):
    """spawn(bootstrap, group, topic, **Member kwargs) -> started Member; all are killed at the end."""
    made: list[Member] = []

    def spawn(*args, **kw):
        m = Member(*args, log_dir=tmp_path / "members", **kw)
        made.append(m)
        return m.start()

    yield spawn
    for m in made:
        try:
            m.kill9()
        except Exception:
            pass


# --------------------------------------------------------------------------- helpers

def describe(bootstrap, group):
    adm = ck_admin(bootstrap)
    return adm.describe_consumer_groups([group], request_timeout=TIMEOUT)[group].result(timeout=TIMEOUT * 2)


def committed(bootstrap, group, topic=None, partitions=None) -> dict:
    """{(topic, partition): offset} committed by `group` (OffsetFetch via the AdminClient); -1 when none
    (librdkafka reports OFFSET_INVALID, -1001, for the -1 on the wire)."""
    adm = ck_admin(bootstrap)
    tps = None if topic is None else [TopicPartition(topic, p) for p in range(partitions)]
    res = adm.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, tps)],
                                          request_timeout=TIMEOUT)[group].result(timeout=TIMEOUT * 2)
    out = {}
    for tp in res.topic_partitions:
        assert tp.error is None, f"OffsetFetch error for {tp}: {tp.error}"
        out[(tp.topic, tp.partition)] = tp.offset if tp.offset >= 0 else -1  # librdkafka: -1001 = none
    return out


def high_watermarks(bootstrap, topic, partitions) -> dict:
    return {p: hi for p, (lo, hi) in ck_watermarks(bootstrap, topic, partitions).items()}


def owners(ms) -> dict:
    """{partition: [member names owning it]} over the live members."""
    o = defaultdict(list)
    for m in ms:
        if m.alive():
            for p in m.snapshot()[0]:
                o[p].append(m.name)
    return dict(o)


def each_owned_once(ms, partitions) -> bool:
    o = owners(ms)
    return sorted(o) == list(range(partitions)) and all(len(v) == 1 for v in o.values())


class BackgroundProducer:
    """Produces value_of(tag, i) records at about `rate` per second until stop(); keeps the
    delivery report of every record: {i: (partition, offset)}."""

    def __init__(self, bootstrap, topic, tag, rate=400):
        self.topic, self.tag, self.rate = topic, tag, rate
        self.p = Producer(ck_conf(bootstrap, **{"acks": "all", "linger.ms": 5, "enable.idempotence": False,
                                                "message.timeout.ms": 120000}))
        self.delivery: dict[int, tuple[int, int]] = {}
        self.errors = []
        self.n = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True, name="bg-producer")

    def _cb(self, err, msg):
        i = idx_of(self.tag, msg.value())
        if err is not None:
            self.errors.append((i, str(err)))
        else:
            self.delivery[i] = (msg.partition(), msg.offset())

    def _run(self):
        batch = max(1, self.rate // 20)
        while not self._stop.is_set():
            for _ in range(batch):
                self.p.produce(self.topic, key=key_of(self.n), value=value_of(self.tag, self.n), on_delivery=self._cb)
                self.n += 1
            self.p.poll(0)
            time.sleep(0.05)

    def start(self):
        self._t.start()
        return self

    def produced_since(self, n0, count):
        """True once `count` records past record n0 have been delivered."""
        return sum(1 for i in self.delivery if i >= n0) >= count

    def stop(self):
        self._stop.set()
        self._t.join(timeout=30)
        left = self.p.flush(60)
        assert left == 0, f"{left} records undelivered"
        assert not self.errors, f"delivery errors: {self.errors[:3]}"
        assert len(self.delivery) == self.n
        return self.delivery


def check_delivery(ms, tag, delivery, label, duplicates_in_log=False):
    """Every record produced was consumed at least once (by some member, at the partition and
    offset its delivery report gave), and no record was committed by two consumptions: once a
    member's commit of a record succeeded, the group never delivered it again to anyone who then
    committed it too. With duplicates_in_log, a record may also be read at another offset (a
    non-idempotent producer's retry after a broker crash wrote it twice)."""
    consumed = defaultdict(list)  # (p, o) -> [(member, its commit succeeded)]
    for m in ms:
        for p, o, v, done in m.consumptions():
            i = idx_of(tag, v.encode())
            assert i in delivery, f"{label}: {m.name} read record {i} at p{p}/o{o}, which was never acknowledged"
            if not duplicates_in_log:
                assert delivery[i] == (p, o), \
                    f"{label}: {m.name} read record {i} at p{p}/o{o}, its delivery report says {delivery[i]}"
            consumed[(p, o)].append((m.name, done))
    missing = sorted(i for i, po in delivery.items() if po not in consumed)
    assert not missing, f"{label}: {len(missing)} of {len(delivery)} records never consumed, first {missing[:10]}"
    twice = {po: who for po, who in consumed.items() if sum(1 for _, d in who if d) > 1}
    assert not twice, f"{label}: {len(twice)} records committed by two consumptions, e.g. {sorted(twice.items())[:3]}"
    return consumed


def wait_committed_to_end(bootstrap, group, topic, partitions, timeout=REBALANCE_WAIT):
    hw = high_watermarks(bootstrap, topic, partitions)
    want = {(topic, p): hw[p] for p in range(partitions)}
    wait_for(lambda: committed(bootstrap, group, topic, partitions) == want, timeout=timeout,
             what=f"group {group} to commit up to the high watermarks {want}")
    return hw


# --------------------------------------------------------------------------- 1. membership, kill -9

def test_three_members_one_partition_each_idle_fourth_and_sigkill_failover(gbroker, members):
    b = gbroker.bootstrap
    topic, group, tag = "g1", "g1-group", new_tag()
    session_ms, hb_ms = 3000, 500
    ck_create_topic(b, topic, partitions=3)
    prod = BackgroundProducer(b, topic, tag).start()
    kw = dict(session_ms=session_ms, heartbeat_ms=hb_ms)
    # client ids m1 < m2 < m3 < m4 order the member ids, which the range assignor sorts by.
    ms = [members(b, group, topic, client_id=f"m{i}", **kw) for i in (1, 2, 3)]
    wait_for(lambda: each_owned_once(ms, 3) and all(len(m.snapshot()[0]) == 1 for m in ms),
             timeout=REBALANCE_WAIT, what=f"3 members owning one partition each: {ms}")
    d = describe(b, group)
    assert d.state == ConsumerGroupState.STABLE and len(d.members) == 3
    assert sorted(tp.partition for mem in d.members for tp in mem.assignment.topic_partitions) == [0, 1, 2]

    # A 4th member joins: it stays connected and idle, the others keep one partition each.
    m4 = members(b, group, topic, client_id="m4", **kw)
    wait_for(lambda: len(describe(b, group).members) == 4 and describe(b, group).state == ConsumerGroupState.STABLE
             and each_owned_once(ms, 3) and m4.n_events() >= 2,
             timeout=REBALANCE_WAIT, what="4 members, Stable, the first three owning one partition each")
    assert m4.snapshot()[0] == set()
    assert [e for e in m4.assignments_since(0) if e["ev"] == "assign" and e["parts"]] == [], \
        f"m4 was assigned partitions: {m4.assignments_since(0)}"
    # ... and stays idle while the others consume a few hundred more records.
    counts = [m.snapshot()[1] for m in ms]
    wait_for(lambda: all(m.snapshot()[1] >= c + 100 for m, c in zip(ms, counts)), timeout=REBALANCE_WAIT,
             what="the three owners to consume 100 more records each")
    assert m4.alive() and m4.snapshot()[0] == set() and m4.snapshot()[1] == 0
    d = describe(b, group)
    assert d.state == ConsumerGroupState.STABLE and len(d.members) == 4
    by_client = {mem.client_id: [tp.partition for tp in mem.assignment.topic_partitions] for mem in d.members}
    assert by_client["m4"] == [] and sorted(sum(by_client.values(), [])) == [0, 1, 2], by_client

    # SIGKILL m2: after the session timeout its partition moves to a survivor.
    victim = ms[1]
    (lost,) = victim.snapshot()[0]
    survivors = [ms[0], ms[2], m4]
    marks = {m.name: m.n_events() for m in survivors}
    recs_before = {m.name: m.snapshot()[1] for m in survivors}
    t_kill = time.monotonic()
    victim.kill9()
    taker = wait_for(lambda: next((m for m in survivors if lost in m.snapshot()[0]), None),
                     timeout=session_ms / 1000 + REBALANCE_WAIT, what=f"partition {lost} to move to a survivor")
    t_moved = taker.first_time_owning(lost, marks[taker.name])
    recs_at_kill = recs_before[taker.name]
    elapsed_ms = (t_moved - t_kill) * 1000
    # The coordinator must have waited for the session to expire (the member's last heartbeat was
    # at most one heartbeat interval before the kill).
    assert elapsed_ms >= session_ms - hb_ms - 100, \
        f"partition {lost} moved {elapsed_ms:.0f} ms after the kill, before the {session_ms} ms session expired"
    wait_for(lambda: each_owned_once(survivors, 3), timeout=REBALANCE_WAIT,
             what=f"each partition owned by exactly one survivor: {survivors}")
    d = describe(b, group)
    assert len(d.members) == 3 and "m2" not in {mem.client_id for mem in d.members}

    # Keep producing a little after the failover, then drain.
    n0 = prod.n
    wait_for(lambda: prod.produced_since(n0, 500), what="500 more records produced after the failover")
    delivery = prod.stop()
    wait_committed_to_end(b, group, topic, 3)
    wait_for(lambda: sum(m.snapshot()[1] for m in [*ms, m4]) >= len(delivery), timeout=REBALANCE_WAIT,
             what="members to report as many records as were produced")
    check_delivery([*ms, m4], tag, delivery, "kill -9 failover")
    # The new owner of the dead member's partition started from the victim's last commit: not
    # below it (committed records are not delivered again) and not past what the victim processed
    # (nothing skipped; a commit in flight at the kill may have landed without being reported).
    with taker.lock:
        taken = [o for p, o, _ in taker.recs[recs_at_kill:] if p == lost]
    last_commit = victim.commits.get(lost, 0)
    victim_done = max((o for p, o, _ in victim.recs if p == lost), default=-1) + 1
    assert taken, f"{taker.name} read nothing from partition {lost} after taking it over"
    assert last_commit <= taken[0] <= victim_done, \
        f"{taker.name} started partition {lost} at offset {taken[0]}; the victim last committed " \
        f"{last_commit} and had processed up to {victim_done}"
    assert len(delivery) > 1000
    for m in survivors:
        m.terminate()


# --------------------------------------------------------------------------- 2. restart the broker

@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_consumers_resume_from_committed_offsets_after_broker_restart(gbroker, members, how):
    b = gbroker.bootstrap
    topic, group, tag = "resume", f"resume-{how}", new_tag()
    ck_create_topic(b, topic, partitions=3)
    delivery = ck_produce(b, topic, 3000, tag)
    # Two members that each process 900 records, commit, and close (leaving the group).
    first = [members(b, group, topic, client_id=f"a{i}", max_records=900, session_ms=6000) for i in (1, 2)]
    for m in first:
        assert m.wait_exit(timeout=REBALANCE_WAIT * 2) == 0 and m.closed, f"{m} did not finish cleanly"
    before = committed(b, group, topic, 3)
    reported = defaultdict(list)
    for m in first:
        for _, p, o in m.commit_log:
            reported[p].append(o)
    for p in range(3):
        assert before[(topic, p)] == max(reported[p], default=-1), \
            f"partition {p}: committed {before[(topic, p)]}, members reported {reported[p]}"
    assert 0 < sum(before.values()) < 3000, before
    # No record before a committed offset was skipped.
    seen = {(p, o) for m in first for p, o, _ in m.recs}
    for p in range(3):
        gap = [o for o in range(before[(topic, p)]) if (p, o) not in seen]
        assert not gap, f"partition {p}: offsets {gap[:5]} below the commit were never processed"
    assert describe(b, group).state == ConsumerGroupState.EMPTY

    if how == "sigterm":
        gbroker.stop()
    else:
        gbroker.kill9()
    gbroker.restart()

    assert committed(b, group, topic, 3) == before, "committed offsets changed across the restart"
    d = describe(b, group)
    assert d.state == ConsumerGroupState.EMPTY and not d.members
    delivery.update(ck_produce(b, topic, 600, tag, start=3000))
    second = [members(b, group, topic, client_id=f"b{i}", session_ms=6000) for i in (1, 2)]
    wait_committed_to_end(b, group, topic, 3, timeout=REBALANCE_WAIT * 2)
    hw = high_watermarks(b, topic, 3)
    again = defaultdict(list)
    for m in second:
        for p, o, v in m.recs:
            again[p].append(o)
    for p in range(3):
        offs = sorted(again[p])
        start = max(before[(topic, p)], 0)  # nothing committed: auto.offset.reset=earliest
        assert offs and offs[0] == start, \
            f"partition {p}: resumed at {offs[:1]}, committed offset was {before[(topic, p)]}"
        assert set(offs) == set(range(start, hw[p])), f"partition {p}: gaps after resuming"
    check_delivery([*first, *second], tag, delivery, f"restart ({how})")
    for m in second:
        m.terminate()


# --------------------------------------------------------------------------- 3. static membership

def test_static_member_rejoins_without_a_rebalance(gbroker, members):
    b = gbroker.bootstrap
    topic, group, tag = "static", "static-group", new_tag()
    ck_create_topic(b, topic, partitions=3)
    ck_produce(b, topic, 300, tag)
    kw = dict(session_ms=10000, heartbeat_ms=300, stats_ms=200)
    # s1 joins alone first so it is the leader; the member restarted below is a follower.
    s1 = members(b, group, topic, client_id="s1", instance_id="inst-1", **kw)
    wait_for(lambda: s1.snapshot()[0] == {0, 1, 2}, timeout=REBALANCE_WAIT, what="s1 owning all partitions")
    s2 = members(b, group, topic, client_id="s2", instance_id="inst-2", **kw)
    s3 = members(b, group, topic, client_id="s3", instance_id="inst-3", **kw)
    ms = [s1, s2, s3]
    wait_for(lambda: each_owned_once(ms, 3) and all(len(m.snapshot()[0]) == 1 for m in ms)
             and describe(b, group).state == ConsumerGroupState.STABLE,
             timeout=REBALANCE_WAIT, what="3 static members with one partition each, Stable")
    marks = {m.name: m.n_events() for m in (s1, s3)}
    t_stable = time.monotonic()
    wait_for(lambda: all(m.stats.get("t", 0) > t_stable and m.stats.get("join_state") == "steady" for m in ms),
             what="librdkafka statistics from every member after the group settled")
    rebalances = {m.name: m.stats["rebalance_cnt"] for m in (s1, s3)}
    assert all(m.assignments_since(marks[m.name]) == [] for m in (s1, s3))
    d0 = describe(b, group)
    ids0 = {mem.group_instance_id: mem.member_id for mem in d0.members}
    assert set(ids0) == {"inst-1", "inst-2", "inst-3"}
    part2 = s2.snapshot()[0]

    states, stop = [], threading.Event()

    def watch():
        adm = ck_admin(b)
        while not stop.is_set():
            try:
                states.append(adm.describe_consumer_groups([group], request_timeout=5)[group].result(timeout=5).state)
            except Exception:
                pass
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        s2.kill9()  # a static member sends no LeaveGroup anyway; kill it to be sure
        s2b = members(b, group, topic, client_id="s2", instance_id="inst-2", **kw)
        wait_for(lambda: s2b.snapshot()[0] == part2, timeout=REBALANCE_WAIT,
                 what=f"the restarted inst-2 to get its partition {sorted(part2)} back")
        t_back = time.monotonic()
        # Watch the others for three heartbeat intervals after the rejoin: a rebalance would
        # reach them through a heartbeat (REBALANCE_IN_PROGRESS) within one.
        wait_for(lambda: all(m.stats.get("t", 0) > t_back + 0.9 for m in (s1, s3)), what="stats after the rejoin")
    finally:
        stop.set()
        watcher.join(timeout=10)
    for m in (s1, s3):
        assert m.assignments_since(marks[m.name]) == [], f"{m.name} saw a rebalance: {m.assignments_since(marks[m.name])}"
        assert m.stats["rebalance_cnt"] == rebalances[m.name], f"{m.name}: rebalance count {m.stats} was {rebalances}"
        assert m.stats["join_state"] == "steady"
    assert states and set(states) == {ConsumerGroupState.STABLE}, f"group states seen during the rejoin: {set(states)}"
    d1 = describe(b, group)
    ids1 = {mem.group_instance_id: mem.member_id for mem in d1.members}
    assert d1.state == ConsumerGroupState.STABLE and set(ids1) == set(ids0)
    assert ids1["inst-1"] == ids0["inst-1"] and ids1["inst-3"] == ids0["inst-3"]
    assert ids1["inst-2"] != ids0["inst-2"], "the restarted static member kept its old member id"
    assign1 = {mem.group_instance_id: sorted(tp.partition for tp in mem.assignment.topic_partitions)
               for mem in d1.members}
    assert assign1 == {mem.group_instance_id: sorted(tp.partition for tp in mem.assignment.topic_partitions)
                       for mem in d0.members}
    for m in (s1, s2b, s3):
        m.terminate()


# --------------------------------------------------------------------------- 4. cooperative-sticky

def test_cooperative_sticky_assignor_two_members(gbroker, members):
    b = gbroker.bootstrap
    topic, group, tag = "coop", "coop-group", new_tag()
    ck_create_topic(b, topic, partitions=4)
    prod = BackgroundProducer(b, topic, tag, rate=300).start()
    kw = dict(assignor="cooperative-sticky", session_ms=6000, heartbeat_ms=500)
    c1 = members(b, group, topic, client_id="c1", **kw)
    wait_for(lambda: c1.snapshot()[0] == {0, 1, 2, 3}, timeout=REBALANCE_WAIT, what="c1 owning all 4 partitions")
    c2 = members(b, group, topic, client_id="c2", **kw)

    def split():
        a, bb = c1.snapshot()[0], c2.snapshot()[0]
        return a and bb and not (a & bb) and (a | bb) == {0, 1, 2, 3} and \
            describe(b, group).state == ConsumerGroupState.STABLE
    wait_for(split, timeout=REBALANCE_WAIT, what=f"disjoint assignments covering all partitions: {c1} {c2}")
    a, bb = c1.snapshot()[0], c2.snapshot()[0]
    assert len(a) == 2 and len(bb) == 2, (a, bb)
    # Incremental: c1 only ever gave partitions up, never everything at once.
    evs = c1.assignments_since(0)
    first = next(i for i, e in enumerate(evs) if e["ev"] == "assign" and e["owned"])
    assert all(e["owned"] for e in evs[first:]), f"c1 lost all its partitions during the rebalance: {evs}"
    assert all(e["ev"] != "lost" for e in evs)
    d = describe(b, group)
    assert d.partition_assignor == "cooperative-sticky"
    assert {mem.client_id: sorted(tp.partition for tp in mem.assignment.topic_partitions) for mem in d.members} \
        == {"c1": sorted(a), "c2": sorted(bb)}
    n0 = prod.n
    wait_for(lambda: prod.produced_since(n0, 300), what="300 more records")
    delivery = prod.stop()
    wait_committed_to_end(b, group, topic, 4)
    check_delivery([c1, c2], tag, delivery, "cooperative-sticky")
    for m in (c1, c2):
        m.terminate()


# --------------------------------------------------------------------------- 5. kafka-python

def test_kafka_python_group_consumer_commits_what_it_consumed(gbroker):
    from kafka import KafkaConsumer, TopicPartition as KTP
    b = gbroker.bootstrap
    topic, group, tag = "kp", "kp-group", new_tag()
    ck_create_topic(b, topic, partitions=3)
    delivery = ck_produce(b, topic, 1500, tag)

    def consumer():
        return KafkaConsumer(topic, **kp_common(b, group_id=group, enable_auto_commit=False,
                                                auto_offset_reset="earliest", session_timeout_ms=6000,
                                                heartbeat_interval_ms=1000, fetch_max_wait_ms=100))

    c = consumer()
    try:
        got = {}
        deadline = time.monotonic() + REBALANCE_WAIT * 2
        while len(got) < 1000:
            assert time.monotonic() < deadline, f"kafka-python consumed {len(got)} of 1000 records"
            for tp, batch in c.poll(timeout_ms=500, max_records=1000 - len(got)).items():
                for r in batch:
                    got[(r.partition, r.offset)] = idx_of(tag, r.value)
        assert c.assignment() == {KTP(topic, p) for p in range(3)}
        c.commit()
        last = defaultdict(lambda: -1)
        for (p, o), i in got.items():
            assert delivery[i] == (p, o)
            last[p] = max(last[p], o)
        # commit() commits the position of every assigned partition: the offset after the last
        # record returned (0 for a partition nothing was returned from yet).
        for p in range(3):
            tp = KTP(topic, p)
            assert c.position(tp) == last[p] + 1
            assert c.committed(tp) == last[p] + 1, f"partition {p}: committed {c.committed(tp)}, consumed up to {last[p]}"
            assert all((p, o) in got for o in range(last[p] + 1)), f"partition {p}: a record below the commit was skipped"
        assert committed(b, group, topic, 3) == {(topic, p): last[p] + 1 for p in range(3)}
    finally:
        c.close(autocommit=False)
    # A new kafka-python member resumes after the commit: it reads exactly the other 500.
    c = consumer()
    try:
        rest = {}
        deadline = time.monotonic() + REBALANCE_WAIT * 2
        while len(rest) < 500:
            assert time.monotonic() < deadline, f"second consumer read {len(rest)} of 500"
            for tp, batch in c.poll(timeout_ms=500).items():
                for r in batch:
                    rest[(r.partition, r.offset)] = idx_of(tag, r.value)
        assert not set(rest) & set(got), "committed records were delivered again"
        assert set(rest.values()) | set(got.values()) == set(range(1500))
        c.commit()
    finally:
        c.close(autocommit=False)
    assert committed(b, group, topic, 3) == {(topic, p): hi for p, hi in high_watermarks(b, topic, 3).items()}


# --------------------------------------------------------------------------- 6. admin, __consumer_offsets

def java_hash(s: str) -> int:
    """Java's String.hashCode (over UTF-16 code units, wrapping at 32 bits)."""
    raw = s.encode("utf-16-be")
    h = 0
    for unit in struct.unpack(f">{len(raw) // 2}H", raw):
        h = (31 * h + unit) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def kafka_partition_for(group: str, n: int) -> int:
    """Kafka's GroupMetadataManager.partitionFor: Utils.abs(groupId.hashCode) % n."""
    h = java_hash(group)
    return (0 if h == -(1 << 31) else abs(h)) % n


def _str(buf, pos):
    (n,) = struct.unpack_from(">h", buf, pos)
    pos += 2
    if n < 0:
        return None, pos
    return buf[pos:pos + n].decode(), pos + n


def decode_offset_commit(key: bytes, value: bytes | None):
    """Kafka's OffsetCommitKey v0/v1 and OffsetCommitValue v3; None for other record types."""
    (kv,) = struct.unpack_from(">h", key, 0)
    if kv not in (0, 1):
        return None
    group, pos = _str(key, 2)
    topic, pos = _str(key, pos)
    (partition,) = struct.unpack_from(">i", key, pos)
    assert pos + 4 == len(key), f"trailing bytes in offset key {key!r}"
    if value is None:
        return group, topic, partition, None
    (vv,) = struct.unpack_from(">h", value, 0)
    assert vv == 3, f"offset commit value version {vv}, expected 3"
    offset, leader_epoch = struct.unpack_from(">qi", value, 2)
    metadata, pos = _str(value, 14)
    (ts,) = struct.unpack_from(">q", value, pos)
    assert pos + 8 == len(value), f"trailing bytes in offset value {value!r}"
    return group, topic, partition, {"offset": offset, "leader_epoch": leader_epoch, "metadata": metadata,
                                     "commit_timestamp": ts}


def read_offsets_topic(bootstrap, partitions):
    """Every record of __consumer_offsets: [(partition, key, value)]."""
    c = Consumer(ck_conf(bootstrap, **{"group.id": f"reader-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
                                       "auto.offset.reset": "earliest", "fetch.wait.max.ms": 100,
                                       }))
    try:
        marks = {p: c.get_watermark_offsets(TopicPartition(OFFSETS_TOPIC, p), timeout=TIMEOUT, cached=False)
                 for p in range(partitions)}
        c.assign([TopicPartition(OFFSETS_TOPIC, p, 0) for p in range(partitions)])
        pending = {p for p, (lo, hi) in marks.items() if hi > lo}
        out = []
        deadline = time.monotonic() + 60
        while pending:
            assert time.monotonic() < deadline, f"reading {OFFSETS_TOPIC}: partitions {pending} not read to {marks}"
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error() is not None:
                    continue
                out.append((m.partition(), m.key(), m.value()))
                if m.offset() >= marks[m.partition()][1] - 1:
                    pending.discard(m.partition())
        return out
    finally:
        c.close()


def test_admin_list_describe_delete_offsets_and_the_offsets_topic_schema(gbroker, members):
    b = gbroker.bootstrap
    topic, tag = "adm", new_tag()
    # Group names whose Java hashCode is negative, so the placement rule is Kafka's
    # Utils.abs(hashCode) % partitions rather than (hashCode & 0x7fffffff) % partitions.
    empty_g, active_g = "admin-empty-0", "admin-active-0"
    for g in (empty_g, active_g):
        assert java_hash(g) < 0 and kafka_partition_for(g, 5) != (java_hash(g) & 0x7FFFFFFF) % 5, g
    ck_create_topic(b, topic, partitions=3)
    ck_produce(b, topic, 600, tag)

    # An Empty group with committed offsets: a member that processes 250 records and closes.
    done = members(b, empty_g, topic, client_id="e1", max_records=250)
    assert done.wait_exit(timeout=REBALANCE_WAIT * 2) == 0
    want_empty = {(topic, p): done.commits.get(p, -1) for p in range(3)}
    assert sum(o for o in want_empty.values() if o > 0) == 250
    # A Stable group with a live member.
    live = members(b, active_g, topic, client_id="a1")
    wait_for(lambda: live.snapshot()[0] == {0, 1, 2} and live.snapshot()[2] == high_watermarks(b, topic, 3),
             timeout=REBALANCE_WAIT, what="the active member to own everything and commit to the end")

    adm = ck_admin(b)
    listed = adm.list_consumer_groups(request_timeout=TIMEOUT).result(timeout=TIMEOUT * 2)
    assert not listed.errors, listed.errors
    states = {g.group_id: g.state for g in listed.valid}
    assert states.get(empty_g) == ConsumerGroupState.EMPTY and states.get(active_g) == ConsumerGroupState.STABLE, states
    assert not any(g.is_simple_consumer_group for g in listed.valid if g.group_id in (empty_g, active_g))
    stable_only = adm.list_consumer_groups(request_timeout=TIMEOUT, states={ConsumerGroupState.STABLE}) \
        .result(timeout=TIMEOUT * 2)
    assert active_g in {g.group_id for g in stable_only.valid} and empty_g not in {g.group_id for g in stable_only.valid}

    descs = {g: f.result(timeout=TIMEOUT * 2)
             for g, f in adm.describe_consumer_groups([empty_g, active_g], request_timeout=TIMEOUT).items()}
    assert descs[empty_g].state == ConsumerGroupState.EMPTY and descs[empty_g].members == []
    act = descs[active_g]
    assert act.state == ConsumerGroupState.STABLE and act.partition_assignor == "range"
    assert act.coordinator.id == 1
    (mem,) = act.members
    assert mem.client_id == "a1" and mem.host and mem.member_id.startswith("a1-")
    assert sorted((tp.topic, tp.partition) for tp in mem.assignment.topic_partitions) == [(topic, p) for p in range(3)]

    # OffsetFetch through the AdminClient, for chosen partitions and for all.
    assert committed(b, empty_g, topic, 3) == want_empty
    assert committed(b, empty_g) == {k: v for k, v in want_empty.items() if v >= 0}
    assert committed(b, active_g, topic, 3) == {(topic, p): hi for p, hi in high_watermarks(b, topic, 3).items()}

    # __consumer_offsets holds Kafka's own schemas, in Kafka's partition for the group.
    records = read_offsets_topic(b, GROUP_CONF["offsets_topic_num_partitions"])
    latest = {}
    for part, key, value in records:
        dec = decode_offset_commit(key, value)
        if dec is None:
            continue
        g, t, p, v = dec
        assert part == kafka_partition_for(g, 5), \
            f"offset commit of group {g!r} is in {OFFSETS_TOPIC}-{part}, Kafka puts it in {kafka_partition_for(g, 5)}"
        latest[(g, t, p)] = v
        if v is not None:
            assert v["leader_epoch"] >= -1 and v["metadata"] == "" and abs(v["commit_timestamp"] / 1000 - time.time()) < 600
    for (t, p), o in want_empty.items():
        if o >= 0:
            assert latest[(empty_g, t, p)]["offset"] == o, f"{OFFSETS_TOPIC} says {latest.get((empty_g, t, p))}, committed {o}"
    group_keys = [k for _, k, _ in records if struct.unpack_from(">h", k, 0)[0] == 2]
    assert any(_str(k, 2)[0] == active_g for k in group_keys), "no group metadata record (key v2) for the active group"

    # DeleteGroups: the non-empty group is refused, the empty one goes (with its offsets).
    res = adm.delete_consumer_groups([active_g], request_timeout=TIMEOUT)
    with pytest.raises(Exception) as ei:
        res[active_g].result(timeout=TIMEOUT * 2)
    assert ck_kafka_error(ei).code() == KafkaError.NON_EMPTY_GROUP, ei.value
    assert adm.delete_consumer_groups([empty_g], request_timeout=TIMEOUT)[empty_g].result(timeout=TIMEOUT * 2) is None
    listed = adm.list_consumer_groups(request_timeout=TIMEOUT).result(timeout=TIMEOUT * 2)
    assert empty_g not in {g.group_id for g in listed.valid} and active_g in {g.group_id for g in listed.valid}
    assert committed(b, empty_g, topic, 3) == {(topic, p): -1 for p in range(3)}
    with pytest.raises(Exception) as ei:
        adm.delete_consumer_groups([empty_g], request_timeout=TIMEOUT)[empty_g].result(timeout=TIMEOUT * 2)
    assert ck_kafka_error(ei).code() == KafkaError.GROUP_ID_NOT_FOUND, ei.value
    # The deletion is in the topic too: tombstones for the group's offsets.
    tombstoned = set()
    for _, key, value in read_offsets_topic(b, 5):
        dec = decode_offset_commit(key, value)
        if dec is not None and dec[0] == empty_g and dec[3] is None:
            tombstoned.add(dec[:3])
    assert tombstoned == {(empty_g, t, p) for (t, p), o in want_empty.items() if o >= 0}
    live.terminate()


# --------------------------------------------------------------------------- 7. sluice CLI member

def test_mixed_group_sluice_cli_member_and_confluent_kafka_member(gbroker, members):
    """A `sluice consume --group` member and a confluent-kafka member share one group."""
    b = gbroker.bootstrap
    topic, group, tag = "mixed", "mixed-group", new_tag()
    ck_create_topic(b, topic, partitions=2)
    ck = members(b, group, topic, client_id="ck1", session_ms=6000)
    wait_for(lambda: ck.snapshot()[0] == {0, 1}, timeout=REBALANCE_WAIT, what="ck1 owning both partitions")
    cli = subprocess.Popen([str(SLUICE_BIN), "consume", topic, "--group", group, "--format", "%p %o %v",
                            "--bootstrap-server", b], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           start_new_session=True)
    try:
        r = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and r is None:
            r = cli.poll()
            time.sleep(0.1)
        if r is not None:
            err = cli.stderr.read().decode(errors="replace")
            raise AssertionError(f"sluice consume --group exited {r}: {err}")
        wait_for(lambda: len(ck.snapshot()[0]) == 1 and len(describe(b, group).members) == 2
                 and describe(b, group).state == ConsumerGroupState.STABLE,
                 timeout=REBALANCE_WAIT, what="the CLI member to take one of the two partitions")
        d = describe(b, group)
        cli_parts = [tp.partition for mem in d.members if mem.client_id != "ck1"
                     for tp in mem.assignment.topic_partitions]
        assert sorted(cli_parts + sorted(ck.snapshot()[0])) == [0, 1]
        delivery = ck_produce(b, topic, 200, tag)
        wait_committed_to_end(b, group, topic, 2)
        ck_parts = ck.snapshot()[0]
        assert all(delivery[i][0] in ck_parts for i in {idx_of(tag, v.encode()) for _, _, v in ck.recs})
    finally:
        cli.terminate()
        try:
            cli.wait(timeout=30)
        except subprocess.TimeoutExpired:
            cli.kill()
    out = cli.stdout.read().decode(errors="replace").splitlines()
    cli_seen = {(int(p), int(o)) for p, o, _ in (line.split(" ", 2) for line in out if line.count(" ") >= 2)}
    ck_seen = {(p, o) for p, o, _ in ck.recs}
    assert cli_seen | ck_seen >= set(delivery.values()), "records missed by the mixed group"
    assert not (cli_seen & ck_seen), "a record was delivered to both members"
    ck.terminate()


# --------------------------------------------------------------------------- members across a crash

def test_running_members_survive_a_broker_kill9_without_skipping(gbroker, members):
    """Members that keep running while the broker is killed and restarted reconnect, rejoin (the
    coordinator lost their sessions) and go on from the committed offsets: at least once, nothing
    committed delivered again."""
    b = gbroker.bootstrap
    topic, group, tag = "crash", "crash-group", new_tag()
    ck_create_topic(b, topic, partitions=3)
    prod = BackgroundProducer(b, topic, tag, rate=300).start()
    ms = [members(b, group, topic, client_id=f"r{i}", session_ms=6000, heartbeat_ms=500) for i in (1, 2)]
    wait_for(lambda: each_owned_once(ms, 3) and all(m.snapshot()[0] for m in ms), timeout=REBALANCE_WAIT,
             what="two members sharing the 3 partitions")
    counts = [m.snapshot()[1] for m in ms]
    wait_for(lambda: all(m.snapshot()[1] > c + 50 for m, c in zip(ms, counts)), what="consumption under way")
    gbroker.kill9()
    gbroker.restart()
    n0 = prod.n
    wait_for(lambda: prod.produced_since(n0, 600), timeout=REBALANCE_WAIT, what="production to resume")
    wait_for(lambda: each_owned_once(ms, 3) and describe(b, group).state == ConsumerGroupState.STABLE
             and len(describe(b, group).members) == 2, timeout=REBALANCE_WAIT, what="the group to re-form")
    delivery = prod.stop()
    wait_committed_to_end(b, group, topic, 3, timeout=REBALANCE_WAIT * 2)
    check_delivery(ms, tag, delivery, "members across a broker kill -9", duplicates_in_log=True)
    # What the members read before the crash is still in the log at the same offsets: consumers
    # were never shown records the crash then took back (the offsets reused by other records).
    log, _ = ck_consume_all(b, topic, 3)
    at = {(r.partition, r.offset): r.value.decode() for r in log}
    for m in ms:
        for p, o, v, _ in m.consumptions():
            assert at.get((p, o)) == v, f"{m.name} read {v[:20]!r} at p{p}/o{o}; the log now holds {at.get((p, o), '')[:20]!r}"
    for m in ms:
        m.terminate()

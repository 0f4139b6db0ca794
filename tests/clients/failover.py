"""Leader failover under load, shared by the cluster failover test and `perf/failover.py`.

A steady idempotent producer (acks=all) writes numbered records to every partition of an RF=3
topic with min.insync.replicas=2 while a consumer group reads it. The partitions' leaders are
killed with SIGKILL in turn; after each kill the run measures the unavailability window of
the partition whose leader died (from the kill to the first acknowledgement of a record
produced after it), restarts the broker and waits until it is back in every ISR. At the end
every acknowledged record must be in the log exactly once, in the order it was produced.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TOPIC = "failover"
# Broker settings that make a dead broker noticed in about a second and a half.
FAST_FAILURE_CONFIG = """\
broker_heartbeat_interval_ms = 200
broker_session_timeout_ms = 1500
replica_lag_time_max_ms = 3000
"""


@dataclass
class Acks:
    """What the producer got acknowledged, per partition: (sequence, offset, time)."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    by_partition: dict[int, list[tuple[int, int, float]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, partition, seq, offset):
        with self.lock:
            self.by_partition.setdefault(partition, []).append((seq, offset, time.monotonic()))

    def first_after(self, partition, t0, sent_after):
        """Time of the first ack for `partition` of a record sent after `t0` (seq > sent_after)."""
        with self.lock:
            for seq, _, t in self.by_partition.get(partition, []):
                if seq > sent_after and t >= t0:
                    return t
        return None


def metadata(bootstrap):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return admin.list_topics(TOPIC, timeout=10)


def metadata_brokers(bootstrap):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return admin.list_topics(timeout=10).brokers


def partition_state(cluster, partitions):
    """{partition: (leader, replicas, isr)} from any running broker, or None."""
    for node in cluster.running():
        try:
            md = metadata(cluster.bootstrap(node))
        except Exception:
            continue
        t = md.topics.get(TOPIC)
        if t is None or t.error is not None or len(t.partitions) != partitions:
            continue
        return {p: (pm.leader, list(pm.replicas), list(pm.isrs)) for p, pm in t.partitions.items()}
    return None


def create_topic(cluster, partitions):
    wait(lambda: all(len(metadata_brokers(cluster.bootstrap(n))) == 3 for n in cluster.running()),
         60, "three live brokers")
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap(cluster.running()[0])})
    fs = admin.create_topics([NewTopic(TOPIC, num_partitions=partitions, replication_factor=3,
                                       config={"min.insync.replicas": "2"})],
                             operation_timeout=30, request_timeout=60)
    fs[TOPIC].result(timeout=90)


def wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class SteadyProducer(threading.Thread):
    """Produces (partition, sequence) records round robin at `rate` records/s until stopped."""

    def __init__(self, bootstrap, partitions, rate):
        super().__init__(daemon=True)
        self.partitions = partitions
        self.rate = rate
        self.acks = Acks()
        self.sent = {p: 0 for p in range(partitions)}
        self.stop_flag = threading.Event()
        self.producer = Producer({
            "bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
            "linger.ms": 2, "message.timeout.ms": 300000, "retry.backoff.ms": 50,
            "retry.backoff.max.ms": 200, "topic.metadata.refresh.interval.ms": 1000,
        })

    def run(self):
        interval = 1.0 / self.rate
        next_t = time.monotonic()
        i = 0
        while not self.stop_flag.is_set():
            p = i % self.partitions
            seq = self.sent[p] + 1
            self.sent[p] = seq
            self.producer.produce(TOPIC, key=str(p).encode(), value=f"{p}:{seq}".encode(),
                                  partition=p, on_delivery=self._delivered(p, seq))
            self.producer.poll(0)
            i += 1
            next_t += interval
            delay = next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def _delivered(self, partition, seq):
        def cb(err, msg):
            if err is None:
                self.acks.add(partition, seq, msg.offset())
            else:
                self.acks.errors.append(f"p{partition} seq {seq}: {err}")
        return cb

    def finish(self, timeout=120):
        self.stop_flag.set()
        self.join()
        left = self.producer.flush(timeout)
        assert left == 0, f"{left} records still unacknowledged after {timeout} s"


class GroupReader(threading.Thread):
    """A consumer group member reading the topic and committing, counting what it sees."""

    def __init__(self, bootstrap):
        super().__init__(daemon=True)
        self.seen = 0
        self.errors: list[str] = []
        self.stop_flag = threading.Event()
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": f"failover-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest", "enable.auto.commit": True,
            "auto.commit.interval.ms": 500, "session.timeout.ms": 10000,
        })

    def run(self):
        self.consumer.subscribe([TOPIC])
        while not self.stop_flag.is_set():
            for m in self.consumer.consume(num_messages=500, timeout=0.2):
                if m.error() is None:
                    self.seen += 1
                elif m.error().code() != KafkaError._PARTITION_EOF:
                    self.errors.append(str(m.error()))
        self.consumer.close()


def read_all(bootstrap, partitions, expected_counts, timeout=120):
    """Every record of the topic, per partition: [(offset, sequence)]."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"verify-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "enable.partition.eof": True})
    c.assign([TopicPartition(TOPIC, p, 0) for p in range(partitions)])
    out: dict[int, list[tuple[int, int]]] = {p: [] for p in range(partitions)}
    deadline = time.monotonic() + timeout
    done = set()
    try:
        while len(done) < partitions:
            assert time.monotonic() < deadline, f"verification read timed out: {[len(v) for v in out.values()]}"
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        if len(out[m.partition()]) >= expected_counts[m.partition()]:
                            done.add(m.partition())
                        continue
                    raise AssertionError(f"verification read: {m.error()}")
                p, seq = m.value().decode().split(":")
                out[m.partition()].append((m.offset(), int(seq)))
    finally:
        c.close()
    return out


def verify(acks: Acks, log: dict[int, list[tuple[int, int]]]):
    """No acknowledged record lost or duplicated; each partition's records in produce order."""
    for p, records in log.items():
        seqs = [s for _, s in records]
        assert len(seqs) == len(set(seqs)), f"partition {p}: duplicated records"
        assert seqs == sorted(seqs), f"partition {p}: records out of order"
        acked = {s: o for s, o, _ in acks.by_partition.get(p, [])}
        stored = {s: o for o, s in records}
        missing = sorted(set(acked) - set(stored))
        assert not missing, f"partition {p}: {len(missing)} acknowledged records lost, first {missing[:5]}"
        moved = [s for s, o in acked.items() if stored[s] != o]
        assert not moved, f"partition {p}: acknowledged offsets changed for {moved[:5]}"


def run(cluster, kills, partitions=3, rate=600):
    """Runs the workload with `kills` leader kills; returns the unavailability windows (s)."""
    create_topic(cluster, partitions)
    wait(lambda: (s := partition_state(cluster, partitions)) and all(len(i) == 3 for _, _, i in s.values()),
         60, "every replica in sync")
    bootstrap = ",".join(cluster.bootstrap(n) for n in cluster.nodes)
    producer = SteadyProducer(bootstrap, partitions, rate)
    reader = GroupReader(bootstrap)
    producer.start()
    reader.start()
    windows = []
    try:
        wait(lambda: all(producer.acks.by_partition.get(p) for p in range(partitions)), 60,
             "first acknowledgements")
        for k in range(kills):
            p = k % partitions
            state = partition_state(cluster, partitions)
            leader = state[p][0]
            sent_before = producer.sent[p]
            t0 = time.monotonic()
            cluster.kill9(leader)
            t1 = wait(lambda: producer.acks.first_after(p, t0, sent_before), 60,
                      f"an acknowledgement on partition {p} after killing its leader {leader}")
            windows.append(t1 - t0)
            cluster.restart(leader)
            wait(lambda: (s := partition_state(cluster, partitions))
                 and all(leader in isr for _, _, isr in s.values()), 90,
                 f"broker {leader} back in every ISR")
        seen_before = reader.seen
        wait(lambda: reader.seen > seen_before, 60, "the consumer group reading on")
    finally:
        producer.finish()
        reader.stop_flag.set()
        reader.join(30)
    counts = {p: len(producer.acks.by_partition.get(p, [])) for p in range(partitions)}
    log = read_all(bootstrap, partitions, counts)
    verify(producer.acks, log)
    return windows, producer.acks, reader

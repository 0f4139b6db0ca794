#!/usr/bin/env python3
"""Produce and consume throughput through librdkafka (confluent-kafka), against any broker.

    target/pyenv/bin/python perf/rdkafka_throughput.py --bootstrap 127.0.0.1:9092 \
        --size 1024 --partitions 8 --records 500000 [--acks all] [--compression none]

Creates a fresh topic, produces --records records of --size bytes (random, incompressible)
as fast as librdkafka batches them, waits for every delivery report, then consumes them all
from the beginning with assign(). Prints one JSON line per phase: records/s and MB/s.
The Python loop calling produce() costs about a microsecond a record, so with small records
the client, not the broker, is often the limit: compare brokers in one run, not absolutes.
"""
import argparse
import json
import os
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--acks", default="all")
    ap.add_argument("--compression", default="none")
    ap.add_argument("--broker-pid", type=int, help="report the broker's CPU seconds per phase")
    a = ap.parse_args()

    topic = f"perf-{a.size}b-{a.partitions}p-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    admin.create_topics([NewTopic(topic, a.partitions, 1)])[topic].result(30)

    payloads = [os.urandom(a.size) for _ in range(64)]
    p = Producer({"bootstrap.servers": a.bootstrap, "acks": a.acks, "linger.ms": 5,
                  "batch.size": 1_000_000, "compression.type": a.compression,
                  "queue.buffering.max.messages": 2_000_000, "queue.buffering.max.kbytes": 2_000_000,
                  "enable.idempotence": False})
    failed = [0]

    def report(err, _msg):
        if err is not None:
            failed[0] += 1

    cpu0 = broker_cpu(a.broker_pid)
    t0 = time.perf_counter()
    for i in range(a.records):
        while True:
            try:
                p.produce(topic, payloads[i & 63], partition=i % a.partitions, on_delivery=report)
                break
            except BufferError:
                p.poll(0.01)
        if i & 1023 == 0:
            p.poll(0)
    p.flush(120)
    dt = time.perf_counter() - t0
    emit("produce", a, a.records, dt, failed=failed[0], **cpu_extra(a, cpu0, a.records))

    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": f"perf-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "fetch.max.bytes": 64 << 20,
                  "max.partition.fetch.bytes": 16 << 20})
    c.assign([TopicPartition(topic, i, -2) for i in range(a.partitions)])
    got = 0
    cpu0 = broker_cpu(a.broker_pid)
    t0 = time.perf_counter()
    deadline = t0 + 300
    while got < a.records and time.perf_counter() < deadline:
        for m in c.consume(1000, 0.05):
            if m.error() is None:
                got += 1
    dt = time.perf_counter() - t0
    c.close()
    emit("consume", a, got, dt, **cpu_extra(a, cpu0, got))


def broker_cpu(pid):
    """User+system CPU seconds of a process, from /proc."""
    if not pid:
        return None
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_extra(a, cpu0, n):
    if cpu0 is None:
        return {}
    used = broker_cpu(a.broker_pid) - cpu0
    gb = n * a.size / 1e9
    return {"broker_cpu_s": round(used, 3), "broker_cpu_s_per_GB": round(used / gb, 3) if gb else None}


def emit(phase, a, n, dt, **extra):
    print(json.dumps({"phase": phase, "record_bytes": a.size, "partitions": a.partitions,
                      "acks": a.acks, "records": n, "seconds": round(dt, 3),
                      "records_per_s": round(n / dt), "MB_per_s": round(n * a.size / dt / 1e6, 1),
                      **extra}), flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Transactional commit latency through librdkafka (confluent-kafka), against any broker.

    target/pyenv/bin/python perf/txn_commit_latency.py --bootstrap 127.0.0.1:9092 \
        [--transactions 200] [--records 100] [--partitions 3] [--size 1024]

Creates a fresh topic, then runs --transactions transactions, each writing --records records
spread over --partitions partitions and committing. Latency is commit_transaction() alone
(flush of the transaction's records, EndTxn, the coordinator writing its markers to every
partition) and begin-to-commit; prints one JSON line with p50/p99/max in milliseconds.
"""
import argparse
import json
import os
import time
import uuid

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic


def percentile(sorted_ms, q):
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--transactions", type=int, default=200)
    ap.add_argument("--records", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--size", type=int, default=1024)
    a = ap.parse_args()
    topic = f"txn-latency-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    admin.create_topics([NewTopic(topic, a.partitions, 1)])[topic].result(30)
    p = Producer({"bootstrap.servers": a.bootstrap, "transactional.id": f"lat-{topic}", "linger.ms": 1})
    p.init_transactions(60)
    payload = os.urandom(a.size)
    commit_ms, total_ms = [], []
    for _ in range(a.transactions + 5):
        start = time.perf_counter()
        p.begin_transaction()
        for i in range(a.records):
            p.produce(topic, value=payload, partition=i % a.partitions)
        before_commit = time.perf_counter()
        p.commit_transaction(60)
        end = time.perf_counter()
        commit_ms.append((end - before_commit) * 1000)
        total_ms.append((end - start) * 1000)
    # The first few include connection set-up and the coordinator's first writes.
    commit_ms, total_ms = sorted(commit_ms[5:]), sorted(total_ms[5:])
    print(json.dumps({
        "transactions": a.transactions, "records_per_txn": a.records, "partitions": a.partitions,
        "commit_p50_ms": round(percentile(commit_ms, 0.5), 3),
        "commit_p99_ms": round(percentile(commit_ms, 0.99), 3),
        "commit_max_ms": round(commit_ms[-1], 3),
        "txn_p50_ms": round(percentile(total_ms, 0.5), 3),
        "txn_p99_ms": round(percentile(total_ms, 0.99), 3),
    }))


if __name__ == "__main__":
    main()

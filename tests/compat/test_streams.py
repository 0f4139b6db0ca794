"""Kafka Streams word count with exactly_once_v2: a repartition topic (re-keyed by word), a
state store with its compacted changelog topic, counts written to an output topic. The counts
must be right, and stay right after the application is killed (SIGKILL) and restarted."""

import collections
import os
import re
import signal
import struct
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import ConfigResource

import clients
from clients import STREAMS
from support import TIMEOUT, ck_admin, ck_conf, ck_create_topic, ck_topics

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett"]
APP_TIMEOUT = 120


def lines(start, n):
    """n lines of 5 words each, deterministic, so the expected counts are known."""
    return [" ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(5)) + f" Line{i % 3}"
            for i in range(start, start + n)]


def expected_counts(text_lines):
    c = collections.Counter()
    for ln in text_lines:
        c.update(w for w in re.split(r"\W+", ln.lower()) if w)
    return dict(c)


def produce_lines(bootstrap, topic, text_lines):
    p = Producer(ck_conf(bootstrap))
    for i, ln in enumerate(text_lines):
        p.produce(topic, key=str(i).encode(), value=ln.encode())
    assert p.flush(60) == 0


def committed_output(bootstrap, topic, partitions):
    """Every committed record of the output topic, in order per partition: [(word, count)]."""
    c = Consumer(ck_conf(bootstrap, **{"group.id": f"wc-reader-{uuid.uuid4().hex[:8]}",
                                       "isolation.level": "read_committed", "enable.auto.commit": False,
                                       "auto.offset.reset": "earliest"}))
    try:
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT, cached=False)[1]
                for p in range(partitions)}
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        out = []
        done = {p for p, hi in ends.items() if hi == 0}
        while len(done) < partitions:
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error():
                    continue
                out.append((m.key().decode(), struct.unpack(">q", m.value())[0]))
                if m.offset() >= ends[m.partition()] - 1:
                    done.add(m.partition())
            # read_committed stops at the last stable offset: stop at the position as well.
            for tp in c.position([TopicPartition(topic, p) for p in range(partitions)]):
                if tp.offset >= ends[tp.partition] or tp.offset < 0 and ends[tp.partition] == 0:
                    done.add(tp.partition)
        return out
    finally:
        c.close()


def latest(records):
    return dict(records)


class App:
    """The word count JVM: started, killed with SIGKILL, restarted on the same state dir."""

    def __init__(self, bootstrap, app_id, state_dir, log_dir):
        self.cmd = clients.java_cmd("sluice.compat.WordCount", bootstrap, app_id, "words-in", "word-counts",
                                    state_dir, "exactly_once_v2", log_level="info")
        self.log_dir = log_dir
        self.proc = None
        self.starts = 0

    def start(self):
        self.starts += 1
        self.log = self.log_dir / f"wordcount.start{self.starts}.log"
        self.proc = subprocess.Popen(self.cmd, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, env=clients.client_env())

    def wait_until(self, cond, what):
        """Polls cond() while the app lives; fails at once if the app dies."""
        deadline = time.monotonic() + APP_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"FAIL streams: the app exited with {self.proc.returncode} "
                                     f"waiting for {what}: {self.first_error()}")
            last = cond()
            if last:
                return
            time.sleep(0.5)
        raise AssertionError(f"FAIL streams: timed out after {APP_TIMEOUT}s waiting for {what}")

    def first_error(self):
        """The app's FAIL line and the root cause under it."""
        text = self.log.read_text(errors="replace")
        fail = re.search(r"^FAIL .*$", text, re.M)
        causes = re.findall(r"^Caused by: .*$", text, re.M)
        return " / ".join(x for x in [fail.group(0) if fail else "", causes[-1] if causes else ""] if x) \
            or text[-500:]

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill9()

    def tail(self):
        return "\n".join(p.read_text(errors="replace")[-5000:] for p in sorted(self.log_dir.glob("wordcount.*.log")))


@pytest.mark.compat(STREAMS, "word count, exactly_once_v2, changelog + repartition topics, right after kill -9 and restart")
def test_streams_word_count_exactly_once_survives_kill_and_restart(broker, tmp_path):
    b = broker.bootstrap
    ck_create_topic(b, "words-in", partitions=2)
    ck_create_topic(b, "word-counts", partitions=2)
    app_id = "wc-" + uuid.uuid4().hex[:6]
    app = App(b, app_id, tmp_path / "state", tmp_path)
    first, second = lines(0, 300), lines(300, 200)
    try:
        produce_lines(b, "words-in", first)
        app.start()
        want1 = expected_counts(first)
        app.wait_until(lambda: latest(committed_output(b, "word-counts", 2)) == want1,
                       f"counts of the first {len(first)} lines")
        topics = ck_topics(b)
        changelog, repartition = f"{app_id}-word-counts-changelog", f"{app_id}-words-repartition"
        assert changelog in topics and repartition in topics, sorted(topics)
        admin = ck_admin(b)  # kept alive until its futures resolve
        [cfg] = admin.describe_configs([ConfigResource("topic", changelog)]).values()
        assert cfg.result(timeout=TIMEOUT)["cleanup.policy"].value == "compact"

        app.kill9()
        produce_lines(b, "words-in", second)
        app.start()
        want = expected_counts(first + second)
        app.wait_until(lambda: latest(committed_output(b, "word-counts", 2)) == want,
                       f"counts of all {len(first) + len(second)} lines after the restart")
        # Exactly once: no committed count ever ran past the true total, and per word the
        # committed counts only grow (a replay after the kill would show as a jump past or a
        # step back).
        history = collections.defaultdict(list)
        for word, count in committed_output(b, "word-counts", 2):
            history[word].append(count)
        for word, counts in history.items():
            assert max(counts) == want[word], f"{word}: counts {counts}, true total {want[word]}"
            assert counts == sorted(counts), f"{word}: committed counts went back: {counts}"
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- app log (tail) ---\n{app.tail()}") from None
    finally:
        app.stop()

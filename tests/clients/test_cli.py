"""The sluice command line end to end against a real broker: every command's output and exit
code, `--help` with examples everywhere, and the error cases a person meets (unknown topic, bad
replication factor, broker down, bad flags) as one readable `Error: ...` line and exit code 1.

The CLI is the binary under test ($SLUICE_BIN, as the broker). Record counts are small: the
third-party interop of the same code paths, at volume, is in test_interop.py.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import SLUICE_BIN
from confluent_kafka.admin import ConfigResource, ConfigSource

from support import TIMEOUT, ck_admin, ck_consume_all, ck_create_topic, ck_produce, new_tag

CLI_TIMEOUT = 120


def sluice(*args, bootstrap=None, input=None, env_brokers=None, timeout=CLI_TIMEOUT, check=None):
    """Runs `sluice ARGS...`; returns the CompletedProcess (stdout/stderr as bytes)."""
    env = {k: v for k, v in os.environ.items() if k != "SLUICE_BROKERS"}
    if env_brokers is not None:
        env["SLUICE_BROKERS"] = env_brokers
    cmd = [str(SLUICE_BIN), *args]
    if bootstrap is not None:
        cmd += ["--bootstrap-server", bootstrap]
    r = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout, env=env)
    if check is not None:
        assert r.returncode == check, \
            f"{' '.join(cmd)} exited {r.returncode}, expected {check}\nstdout: {r.stdout[-2000:]!r}\n" \
            f"stderr: {r.stderr[-2000:]!r}"
    return r


def ok(*args, **kw) -> str:
    return sluice(*args, check=0, **kw).stdout.decode()


def assert_one_line_error(r, expected: str | re.Pattern):
    """Exit 1, and stderr is exactly one `Error: ...` line: no usage dump, Debug struct or panic."""
    err = r.stderr.decode()
    assert r.returncode == 1, f"exit {r.returncode}, stderr {err!r}"
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), f"not one Error line: {err!r}"
    for bad in ("panicked", "RUST_BACKTRACE", "Usage:", "{ ", "Kafka(", "Some("):
        assert bad not in err, f"{bad!r} in {err!r}"
    line = lines[0][len("Error: "):]
    if isinstance(expected, str):
        assert line == expected, f"error line {line!r}, expected {expected!r}"
    else:
        assert expected.fullmatch(line), f"error line {line!r} does not match {expected.pattern!r}"


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def produce_lines(bootstrap, topic, lines, *args):
    data = b"".join(l + b"\n" for l in lines)
    return sluice("produce", topic, *args, bootstrap=bootstrap, input=data)


def consume(bootstrap, topic, *args, timeout_ms=3000):
    r = sluice("consume", topic, "--timeout-ms", str(timeout_ms), *args, bootstrap=bootstrap, check=0)
    return r.stdout, r.stderr.decode()


# ------------------------------------------------------------------------------------ help

HELP_PATHS = [
    ["topic"], ["topic", "create"], ["topic", "list"], ["topic", "describe"], ["topic", "delete"],
    ["topic", "alter-config"], ["broker", "config"],
    ["produce"], ["consume"], ["cluster"], ["cluster", "info"],
    ["group"], ["group", "list"], ["group", "describe"], ["group", "reset-offsets"], ["group", "delete"],
]


@pytest.mark.parametrize("path", HELP_PATHS, ids=lambda p: "-".join(p))
def test_every_client_command_has_help_with_examples(path):
    out = ok(*path, "--help")
    assert "Examples:" in out, f"no examples in `sluice {' '.join(path)} --help`"
    assert re.search(r"^\s+sluice " + re.escape(path[0]), out, re.M), "examples do not show the command"
    if path not in (["topic"], ["cluster"], ["group"]):
        assert "--bootstrap-server" in out and "SLUICE_BROKERS" in out and "localhost:9092" in out


def test_top_level_help_lists_the_commands():
    out = ok("--help")
    for cmd in ("broker", "topic", "produce", "consume", "cluster", "group"):
        assert re.search(rf"^\s+{cmd}\b", out, re.M), f"{cmd} missing from sluice --help"


def test_usage_errors_exit_2_with_a_short_message():
    r = sluice("topic", "create")
    assert r.returncode == 2
    assert b"required" in r.stderr and b"panicked" not in r.stderr


# ------------------------------------------------------------------------------------ topics

def test_topic_create_list_describe_delete(broker):
    b = broker.bootstrap
    assert ok("topic", "create", "trucks_gps", "--partitions", "10", "--replication-factor", "1",
              bootstrap=b) == "Created topic trucks_gps.\n"
    assert ok("topic", "create", "other", "-p", "2", "--config", "retention.ms=86400000",
              bootstrap=b) == "Created topic other.\n"
    assert ok("topic", "list", bootstrap=b).splitlines() == ["other", "trucks_gps"]

    out = ok("topic", "describe", "trucks_gps", bootstrap=b)
    lines = out.splitlines()
    assert len(lines) == 11, out
    head = re.fullmatch(r"Topic: trucks_gps\tTopicId: ([A-Za-z0-9_-]{22})\tPartitionCount: 10\t"
                        r"ReplicationFactor: 1\tConfigs: (.*)", lines[0])
    assert head, lines[0]
    for p, line in enumerate(lines[1:]):
        assert line == f"\tTopic: trucks_gps\tPartition: {p}\tLeader: 1\tReplicas: 1\tIsr: 1", line
    assert head.group(1) != "A" * 22, "topic id is the nil uuid"

    # describe without names: every topic
    all_out = ok("topic", "describe", bootstrap=b)
    assert all_out.count("PartitionCount:") == 2 and "Topic: other\t" in all_out

    assert ok("topic", "delete", "trucks_gps", bootstrap=b) == "Deleted topic trucks_gps.\n"
    deadline = time.monotonic() + TIMEOUT
    while "trucks_gps" in ok("topic", "list", bootstrap=b).split():
        assert time.monotonic() < deadline, "deleted topic still listed"
        time.sleep(0.2)
    assert "trucks_gps" not in ck_admin(b).list_topics(timeout=TIMEOUT).topics


def test_creating_an_existing_topic_fails_unless_if_not_exists(broker):
    b = broker.bootstrap
    ok("topic", "create", "dup", bootstrap=b)
    assert_one_line_error(sluice("topic", "create", "dup", bootstrap=b), "Topic 'dup' already exists.")
    assert ok("topic", "create", "dup", "--if-not-exists", bootstrap=b) == ""


def test_bad_replication_factor_is_one_readable_line(broker):
    r = sluice("topic", "create", "rf2", "--partitions", "3", "--replication-factor", "2", bootstrap=broker.bootstrap)
    assert_one_line_error(r, "Replication factor: 2 larger than available brokers: 1.")
    assert "rf2" not in ok("topic", "list", bootstrap=broker.bootstrap).split()


def test_invalid_topic_name_and_partition_count_are_refused(broker):
    b = broker.bootstrap
    assert_one_line_error(sluice("topic", "create", "bad name!", bootstrap=b), re.compile(r".*illegal.*"))
    assert_one_line_error(sluice("topic", "create", "zero", "--partitions", "0", bootstrap=b),
                          "Number of partitions must be larger than 0.")


def test_unknown_topic_is_an_error_for_every_command(broker):
    b = broker.bootstrap
    want = "topic 'nope' does not exist"
    assert_one_line_error(sluice("topic", "describe", "nope", bootstrap=b), want)
    assert_one_line_error(sluice("topic", "delete", "nope", bootstrap=b), want)
    assert_one_line_error(sluice("produce", "nope", "-X", "allow.auto.create.topics=false", bootstrap=b,
                                 input=b"x\n"), want)
    assert_one_line_error(sluice("consume", "nope", "--timeout-ms", "1000", bootstrap=b), want)
    assert ok("topic", "delete", "nope", "--if-exists", bootstrap=b) == ""
    # nothing was auto-created on the way
    assert "nope" not in ok("topic", "list", bootstrap=b).split()


def test_produce_to_a_missing_topic_creates_it_and_says_so_in_one_line(broker):
    # As kafka-console-producer: the broker's auto.create.topics.enable creates the topic.
    b = broker.bootstrap
    r = produce_lines(b, "fresh", [b"a", b"b", b"c"])
    assert r.returncode == 0, r.stderr
    assert r.stderr.decode().splitlines() == [
        "Created topic 'fresh' (1 partition): the broker creates missing topics (auto.create.topics.enable)."]
    out, _ = consume(b, "fresh", "--from-beginning", "--max-messages", "3")
    assert out == b"a\nb\nc\n"
    # The second time the topic exists: nothing is said.
    r = produce_lines(b, "fresh", [b"d"])
    assert r.returncode == 0 and r.stderr == b"", r.stderr


def test_produce_to_a_missing_topic_fails_in_one_line_when_the_broker_does_not_auto_create(broker_factory):
    b = broker_factory(config={"auto_create_topics_enable": False}).bootstrap
    assert_one_line_error(produce_lines(b, "absent", [b"x"]),
                          "topic 'absent' does not exist and the broker does not create topics "
                          "(auto.create.topics.enable is off); create it with `sluice topic create absent`")
    assert "absent" not in ok("topic", "list", bootstrap=b).split()


@pytest.mark.parametrize("args", [
    ["topic", "list"], ["topic", "create", "t"], ["topic", "describe", "t"], ["topic", "delete", "t"],
    ["cluster", "info"], ["consume", "t", "--timeout-ms", "1000"],
], ids=lambda a: "-".join(a[:2]))
def test_broker_down_says_so_in_one_line(args):
    port = free_port()
    r = sluice(*args, bootstrap=f"127.0.0.1:{port}")
    assert_one_line_error(r, f"cannot reach 127.0.0.1:{port} (connection refused) — is the broker running?")


def test_broker_down_for_produce_and_default_address_are_named():
    port = free_port()
    r = sluice("produce", "t", bootstrap=f"127.0.0.1:{port}", input=b"x\n")
    assert_one_line_error(r, f"cannot reach 127.0.0.1:{port} (connection refused) — is the broker running?")
    # SLUICE_BROKERS is read; a list names every address tried
    r = sluice("topic", "list", env_brokers=f"127.0.0.1:{port},127.0.0.1:{free_port()}")
    assert_one_line_error(r, re.compile(rf"cannot reach 127\.0\.0\.1:{port},127\.0\.0\.1:\d+ "
                                        r"\(connection refused\) — is the broker running\?"))


def test_bad_bootstrap_address_is_named():
    assert_one_line_error(sluice("topic", "list", bootstrap="localhost"),
                          "invalid broker address 'localhost': expected host:port")


def test_sluice_brokers_environment_variable_is_the_default_bootstrap(broker):
    ok("topic", "create", "envtopic", env_brokers=broker.bootstrap)
    assert "envtopic" in ok("topic", "list", env_brokers=broker.bootstrap).split()


# ------------------------------------------------------------------------------------ configs

def config_rows(out: str, heading: str) -> dict:
    """`describe --configs` / `broker config` output -> {name: (value, source, default, read_only)}."""
    lines = out.splitlines()
    assert lines[0] == heading, out
    assert lines[1].split() == ["CONFIG", "VALUE", "SOURCE", "DEFAULT", "READ-ONLY"], out
    rows = {}
    for line in lines[2:]:
        name, value, source, default, read_only = line.split()
        rows[name] = (value, source, default, read_only)
    return rows


def ck_describe(bootstrap, kind, name) -> dict:
    admin = ck_admin(bootstrap)  # kept alive until the answer is in
    [(_, fut)] = admin.describe_configs([ConfigResource(kind, name)]).items()
    return fut.result(TIMEOUT)


def test_alter_config_sets_and_deletes_what_confluent_kafka_describes(broker):
    b = broker.bootstrap
    ok("topic", "create", "conf", "--config", "segment.bytes=1048576", bootstrap=b)
    out = ok("topic", "alter-config", "conf", "--set", "retention.ms=3600000",
             "--set", "cleanup.policy=compact", "--delete", "segment.bytes", bootstrap=b)
    assert out == "Changed the configs of topic conf.\n"

    cfg = ck_describe(b, "topic", "conf")
    assert cfg["retention.ms"].value == "3600000"
    assert cfg["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert cfg["cleanup.policy"].value == "compact"
    assert cfg["segment.bytes"].is_default and cfg["segment.bytes"].value == "1073741824"
    assert cfg["min.insync.replicas"].is_default, "a config not named was changed"

    rows = config_rows(ok("topic", "describe", "conf", "--configs", bootstrap=b), "Topic: conf")
    assert rows["retention.ms"] == ("3600000", "DYNAMIC_TOPIC_CONFIG", "false", "false")
    assert rows["cleanup.policy"] == ("compact", "DYNAMIC_TOPIC_CONFIG", "false", "false")
    assert rows["segment.bytes"] == ("1073741824", "DEFAULT_CONFIG", "true", "false")
    # every config confluent-kafka sees is listed, with the same value
    assert {n: e.value for n, e in cfg.items()} == {n: r[0] for n, r in rows.items()}

    ok("topic", "alter-config", "conf", "--delete", "retention.ms", bootstrap=b)
    assert ck_describe(b, "topic", "conf")["retention.ms"].is_default


def test_alter_config_refused_value_prints_the_brokers_message_and_changes_nothing(broker):
    b = broker.bootstrap
    ok("topic", "create", "strict", bootstrap=b)
    r = sluice("topic", "alter-config", "strict", "--set", "retention.ms=soon",
               "--set", "cleanup.policy=compact", bootstrap=b)
    assert_one_line_error(r, "Invalid value soon for configuration retention.ms: Not a number of type LONG")
    cfg = ck_describe(b, "topic", "strict")
    assert cfg["retention.ms"].is_default and cfg["cleanup.policy"].is_default

    r = sluice("topic", "alter-config", "strict", "--set", "no.such.config=1", bootstrap=b)
    assert r.returncode == 1 and "no.such.config" in r.stderr.decode(), r.stderr
    assert_one_line_error(sluice("topic", "alter-config", "missing", "--set", "retention.ms=1", bootstrap=b),
                          "topic 'missing' does not exist")
    assert sluice("topic", "alter-config", "strict", bootstrap=b).returncode == 2, "no change named"


def test_validate_only_alter_config_changes_nothing(broker):
    b = broker.bootstrap
    ok("topic", "create", "dry", bootstrap=b)
    out = ok("topic", "alter-config", "dry", "--set", "retention.ms=1000", "--validate-only", bootstrap=b)
    assert out == "The configs of topic dry can be changed.\n"
    assert ck_describe(b, "topic", "dry")["retention.ms"].is_default


def test_broker_config_lists_the_brokers_configs_with_sources(broker_factory):
    b = broker_factory({"log_cleaner_backoff_ms": 750, "log_cleaner_dedupe_buffer_size": 8 << 20})
    rows = config_rows(ok("broker", "config", bootstrap=b.bootstrap), "Broker: 1")
    cfg = ck_describe(b.bootstrap, "broker", "1")
    assert {n: e.value for n, e in cfg.items()} == {n: r[0] for n, r in rows.items()}
    assert rows["log.retention.ms"] == ("604800000", "STATIC_BROKER_CONFIG", "false", "true")
    assert rows["log.cleaner.backoff.ms"][0] == "750"
    assert rows["log.cleaner.dedupe.buffer.size"][0] == str(8 << 20)
    assert "log.cleaner.io.max.bytes.per.second" in rows
    assert config_rows(ok("broker", "config", "--broker-id", "1", bootstrap=b.bootstrap), "Broker: 1") == rows
    assert sluice("broker", "config", "--broker-id", "7", bootstrap=b.bootstrap).returncode == 1


# ------------------------------------------------------------------------------------ cluster

def test_cluster_info_names_cluster_id_controller_and_broker(broker):
    out = ok("cluster", "info", bootstrap=broker.bootstrap)
    md = ck_admin(broker.bootstrap).list_topics(timeout=TIMEOUT)
    assert out == (f"Cluster ID: {md.cluster_id}\nController: 1\nBrokers: 1\n"
                   f"  1\t{broker.bootstrap}\tunfenced\tcontroller\n"), out


# ------------------------------------------------------------------------------------ produce / consume

def test_produce_then_consume_with_keys_format_and_limits(broker):
    b = broker.bootstrap
    ok("topic", "create", "t", "--partitions", "3", bootstrap=b)
    lines = [b"k%d:value %d: with colon" % (i % 7, i) for i in range(300)]
    r = produce_lines(b, "t", lines, "--key-separator", ":", "--acks", "all", "--compression", "zstd",
                      "--print-offsets")
    assert r.returncode == 0, r.stderr
    reports = [tuple(map(int, l.split())) for l in r.stdout.decode().splitlines()]
    assert len(reports) == 300
    out, err = consume(b, "t", "--from-beginning", "--format", "%p %o %k=%v")
    assert err.strip() == "Processed a total of 300 messages"
    got = {}
    for line in out.decode().splitlines():
        p, o, rest = line.split(" ", 2)
        got[(int(p), int(o))] = rest
    want = {po: "k%d=value %d: with colon" % (i % 7, i) for i, po in enumerate(reports)}
    assert got == want

    # --max-messages stops early with exit 0; --partition/--offset pick the start
    out, err = consume(b, "t", "--from-beginning", "--max-messages", "5")
    assert len(out.splitlines()) == 5 and "total of 5 messages" in err
    p0 = sorted(o for p, o in reports if p == 0)
    out, _ = consume(b, "t", "--partition", "0", "--offset", str(p0[-3]), "--format", "%o")
    assert [int(x) for x in out.split()] == p0[-3:]
    # default start is the end: nothing old is printed
    out, err = consume(b, "t", timeout_ms=1500)
    assert out == b"" and "total of 0 messages" in err
    # --print-key uses the default layout: key TAB value
    out, _ = consume(b, "t", "--partition", "0", "--offset", str(p0[-1]), "--print-key")
    line = out.decode().rstrip("\n")
    key, value = line.split("\t")
    assert want[(0, p0[-1])] == f"{key}={value}"


def test_consume_from_timestamp_seeks_with_list_offsets(broker):
    b = broker.bootstrap
    ck_create_topic(b, "ts", partitions=1)
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": b})
    for i, ts in enumerate([1000, 2000, 3000, 4000]):
        p.produce("ts", value=b"v%d" % i, timestamp=ts)
    assert p.flush(30) == 0
    out, _ = consume(b, "ts", "--from-timestamp", "2500", "--format", "%T %v")
    assert out.decode().splitlines() == ["3000 v2", "4000 v3"]
    out, _ = consume(b, "ts", "--from-timestamp", "99999999", timeout_ms=1500)
    assert out == b""


def test_headers_null_marker_and_format_tokens(broker):
    b = broker.bootstrap
    ok("topic", "create", "h", bootstrap=b)
    r = produce_lines(b, "h", [b"NULL|v1", b"k2|NULL", b"k3|", b"|v4"], "--key-separator", "|",
                      "--null-marker", "NULL", "-H", "app=cli", "-H", "n=1")
    assert r.returncode == 0, r.stderr
    out, _ = consume(b, "h", "--from-beginning", "--format", r"%K:%k|%S:%v|%h|%t")
    assert out.decode().splitlines() == [
        "-1:|2:v1|app=cli,n=1|h", "2:k2|-1:|app=cli,n=1|h", "2:k3|0:|app=cli,n=1|h", "0:|2:v4|app=cli,n=1|h"]
    # confluent-kafka sees the same nulls and headers
    recs, _ = ck_consume_all(b, "h", 1)
    assert [(r.key, r.value, r.headers) for r in recs] == [
        (None, b"v1", [("app", b"cli"), ("n", b"1")]), (b"k2", None, [("app", b"cli"), ("n", b"1")]),
        (b"k3", b"", [("app", b"cli"), ("n", b"1")]), (b"", b"v4", [("app", b"cli"), ("n", b"1")])]
    # the console-consumer layout prints null as "null"
    out, _ = consume(b, "h", "--from-beginning", "--print-key", "--key-separator", "=")
    assert out.decode().splitlines() == ["null=v1", "k2=null", "k3=", "=v4"]


def test_produce_reports_undelivered_records_and_exits_1(broker):
    b = broker.bootstrap
    ok("topic", "create", "big", bootstrap=b)
    lines = [b"small-1", b"x" * 1_100_000, b"small-2", b"no separator here"]
    r = produce_lines(b, "big", lines[:3])
    assert r.returncode == 1
    err = r.stderr.decode().splitlines()
    assert err[0].startswith("Error: line 2: a record of ") and "larger than max.request.size" in err[0], err
    assert err[-1] == "Error: 1 of 3 records were not written (first: " + err[0][len("Error: "):] + ")", err
    out, _ = consume(b, "big", "--from-beginning")
    assert out.decode().splitlines() == ["small-1", "small-2"], "the good lines were still written"
    r = produce_lines(b, "big", [b"k:v", b"novalue"], "--key-separator", ":")
    assert r.returncode == 1 and b"line 2: no key separator ':' in the line" in r.stderr


def test_bad_producer_and_consumer_settings_are_named(broker):
    b = broker.bootstrap
    ok("topic", "create", "s", bootstrap=b)
    assert_one_line_error(sluice("produce", "s", "-X", "bogus.setting=1", bootstrap=b, input=b"x\n"),
                          "unknown producer setting 'bogus.setting'")
    assert_one_line_error(sluice("produce", "s", "--acks", "2", bootstrap=b, input=b"x\n"),
                          "acks must be 0, 1 or all, not '2'")
    assert_one_line_error(sluice("produce", "s", "--compression", "brotli", bootstrap=b, input=b"x\n"),
                          "compression must be none, gzip, snappy, lz4 or zstd, not 'brotli'")
    assert_one_line_error(sluice("consume", "s", "-X", "fetch.min.bytes=x", bootstrap=b),
                          "fetch.min.bytes must be a number, not 'x'")
    assert_one_line_error(sluice("consume", "s", "--format", "%q", bootstrap=b),
                          re.compile(r"unknown format token '%q'.*"))
    assert_one_line_error(sluice("consume", "s", "--partition", "5", bootstrap=b),
                          "topic 's' has 1 partitions, so there is no partition 5")


def test_group_and_partition_together_are_refused_in_one_line(broker):
    ok("topic", "create", "g", bootstrap=broker.bootstrap)
    r = sluice("consume", "g", "--group", "dashboard", "--partition", "0", bootstrap=broker.bootstrap)
    assert_one_line_error(r, re.compile(r"--partition and --group do not go together.*"))


def _first_batch_codec(data_dir: Path, topic: str) -> int:
    logs = sorted((data_dir / f"{topic}-0").glob("*.log"))
    assert logs, f"no log segment for {topic}-0 under {data_dir}"
    raw = logs[0].read_bytes()
    assert len(raw) >= 61, f"{logs[0]} holds {len(raw)} bytes"
    return int.from_bytes(raw[21:23], "big") & 7


@pytest.mark.parametrize("codec,attr", [("none", 0), ("gzip", 1), ("snappy", 2), ("lz4", 3), ("zstd", 4)])
def test_compression_flag_compresses_the_stored_batches(broker, codec, attr):
    b = broker.bootstrap
    topic = f"c-{codec}"
    ok("topic", "create", topic, bootstrap=b)
    lines = [b"record %d %s" % (i, b"abc" * 30) for i in range(2000)]
    r = produce_lines(b, topic, lines, "--compression", codec, "--linger-ms", "50")
    assert r.returncode == 0, r.stderr
    assert _first_batch_codec(broker.data_dir, topic) == attr
    out, _ = consume(b, topic, "--from-beginning")
    assert out.splitlines() == lines


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_every_acks_setting_delivers(broker, acks):
    b = broker.bootstrap
    topic = f"acks-{acks}"
    ok("topic", "create", topic, "-p", "2", bootstrap=b)
    r = produce_lines(b, topic, [b"v%d" % i for i in range(1000)], "--acks", acks, "--print-offsets")
    assert r.returncode == 0, r.stderr
    offsets = [l.split() for l in r.stdout.decode().splitlines()]
    assert len(offsets) == 1000
    if acks == "0":
        assert all(o == "-1" for _, o in offsets), "acks=0 has no offsets to report"
    out, _ = consume(b, topic, "--from-beginning")
    assert sorted(out.splitlines()) == sorted(b"v%d" % i for i in range(1000))


def test_consume_reads_what_confluent_kafka_wrote_and_stops_at_max_messages(broker):
    b = broker.bootstrap
    tag = new_tag()
    ck_create_topic(b, "mix", partitions=2)
    ck_produce(b, "mix", 1000, tag, codec="lz4")
    out, err = consume(b, "mix", "--from-beginning", "--max-messages", "1000", timeout_ms=30000)
    assert len(out.splitlines()) == 1000 and "total of 1000 messages" in err
    assert all(l.startswith(tag + b":") for l in out.splitlines())


def test_consume_stops_quietly_when_stdout_closes(broker):
    b = broker.bootstrap
    ok("topic", "create", "pipe", bootstrap=b)
    pad = b"p" * 100
    produce_lines(b, "pipe", [b"line %d %s" % (i, pad) for i in range(20000)])  # > a pipe buffer
    cmd = f"'{SLUICE_BIN}' consume pipe --from-beginning --timeout-ms 20000 -b {b} | head -n 3"
    started = time.monotonic()
    r = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, timeout=CLI_TIMEOUT)
    assert r.stdout.splitlines() == [b"line %d %s" % (i, pad) for i in range(3)]
    assert r.returncode == 0, r.stderr
    assert b"Error" not in r.stderr and b"panicked" not in r.stderr
    assert time.monotonic() - started < 15, "consume kept running after its reader went away"


def test_produce_and_consume_ride_out_a_broker_restart(broker):
    """Records sent while the broker is down are retried (network errors are retriable) and
    delivered once it is back; a running consumer reconnects and reads them."""
    b = broker.bootstrap
    ok("topic", "create", "restart", "-p", "2", bootstrap=b)
    consumer = subprocess.Popen([str(SLUICE_BIN), "consume", "restart", "--from-beginning", "--max-messages", "2000",
                                 "--timeout-ms", "60000", "--bootstrap-server", b],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    producer = subprocess.Popen([str(SLUICE_BIN), "produce", "restart", "--bootstrap-server", b, "--print-offsets"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        producer.stdin.write(b"".join(b"first %d\n" % i for i in range(1000)))
        producer.stdin.flush()
        time.sleep(2)
        broker.stop()
        producer.stdin.write(b"".join(b"second %d\n" % i for i in range(1000)))
        producer.stdin.flush()
        time.sleep(2)
        broker.restart()
        p_out, p_err = producer.communicate(timeout=CLI_TIMEOUT)  # closes stdin: end of input
        c_out, c_err = consumer.communicate(timeout=CLI_TIMEOUT)
    finally:
        for proc in (producer, consumer):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert producer.returncode == 0, p_err
    assert len(p_out.splitlines()) == 2000
    assert consumer.returncode == 0, c_err
    got = set(c_out.splitlines())
    want = {b"first %d" % i for i in range(1000)} | {b"second %d" % i for i in range(1000)}
    assert got == want, f"missing {sorted(want - got)[:5]}, unexpected {sorted(got - want)[:5]}"

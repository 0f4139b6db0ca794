"""How the compatibility suite runs each client: the Java programs and Kafka's own tools (a
classpath resolved by setup.sh from tests/compat/java/pom.xml), the Go program (built by
setup.sh from tests/compat/go), and the kafkajs script (tests/compat/node, installed by setup.sh
into target/compat/node). Versions come from the same pinned manifests (pom.xml, go.mod, package.json)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OUT = REPO / "target" / "compat"
JAVA_CLASSPATH_FILE = OUT / "java.classpath"
JAVA_JAR = OUT / "java-build" / "sluice-compat-1.jar"
CONNECT_CLASSPATH_FILE = OUT / "connect.classpath"
GO_BIN = OUT / "bin" / "compat-go"
NODE_MODULES = OUT / "node" / "node_modules"

# Family names as the README table shows them.
JAVA = "Java client (kafka-clients)"
TOOLS = "Kafka tools (kafka-tools)"
STREAMS = "Kafka Streams"
CONNECT = "Kafka Connect"
FRANZ = "franz-go"
KADM = "franz-go kadm"
SARAMA = "sarama"
SARAMA_OLD = "sarama pinned to Kafka 0.10.2 (negotiates nothing)"
KAFKAJS = "kafkajs"

RUN_TIMEOUT = float(os.environ.get("SLUICE_COMPAT_TIMEOUT", "300"))

# APIs being built elsewhere (issue 11's dependencies): a check that needs one is skipped, with
# this reason, only while the broker does not advertise it in ApiVersions; once it does, the
# check runs for real.
PENDING_APIS = {
    37: ("CreatePartitions", "topic configs and partitions work (branch `log`)"),
    44: ("IncrementalAlterConfigs", "topic configs and partitions work (branch `log`)"),
    35: ("DescribeLogDirs", "kafka-reassign-partitions asks it for every replica's log dir "
                            "(--generate and --execute); sluice cluster reassign does not need it"),
}


def _pom(path=HERE / "java" / "pom.xml"):
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    root = ET.parse(path).getroot()
    return {p.tag.split("}")[1]: p.text for p in root.find("m:properties", ns)}


def _go_version(module):
    m = re.search(rf"^\s*{re.escape(module)} (v\S+)", (HERE / "go" / "go.mod").read_text(), re.M)
    return m.group(1) if m else "?"


def version_of(family: str) -> str:
    if family == CONNECT:
        return _pom(HERE / "java" / "connect" / "pom.xml").get("connect.version", "?")
    if family in (JAVA, TOOLS, STREAMS):
        return _pom().get("kafka.version", "?")
    if family == FRANZ:
        return _go_version("github.com/twmb/franz-go")
    if family == KADM:
        return _go_version("github.com/twmb/franz-go/pkg/kadm")
    if family in (SARAMA, SARAMA_OLD):
        return _go_version("github.com/IBM/sarama")
    if family == KAFKAJS:
        return json.loads((HERE / "node" / "package.json").read_text())["dependencies"]["kafkajs"]
    return "?"


def failure_summary(message: str) -> str:
    """One line for the README: the check's FAIL line and, when the client logged one, the
    root cause (the last `Caused by:` or the UnsupportedVersionException it saw)."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    if not lines:
        return ""
    summary = next((ln for ln in lines if ln.startswith("FAIL ")), lines[0])
    summary = re.sub(r"^FAIL \S+: ", "", summary)
    causes = [m.group(1) for ln in lines for m in [re.search(r"Caused by: (.*)", ln)] if m]
    unsupported = [m.group(0) for ln in lines
                   for m in [re.search(r"(The node does not support \w+|\w+ API is not supported[^.]*)", ln)] if m]
    root = (unsupported or causes or [""])[-1]
    if root and root not in summary:
        summary = f"{summary} (cause: {root})"
    return summary[:400]


def require_api(bootstrap: str, api_key: int):
    """Skips the calling test, naming the missing API and the work it waits for, when the broker
    does not advertise `api_key` (one of PENDING_APIS)."""
    import kwire  # tests/clients, on sys.path via conftest.py
    import pytest
    with kwire.Connection.to(bootstrap) as conn:
        error, apis = kwire.api_versions(conn)
    assert error == kwire.NONE, f"ApiVersions error {error}"
    if api_key not in apis:
        name, pending = PENDING_APIS[api_key]
        pytest.skip(f"depends on {name} (API key {api_key}), not served yet: {pending}")


def java_classpath() -> str:
    if not JAVA_CLASSPATH_FILE.exists() or not JAVA_JAR.exists():
        raise AssertionError(f"{JAVA_CLASSPATH_FILE} or {JAVA_JAR} missing: run tests/compat/setup.sh")
    return f"{JAVA_JAR}:{JAVA_CLASSPATH_FILE.read_text().strip()}"


def connect_classpath() -> str:
    if not CONNECT_CLASSPATH_FILE.exists():
        raise AssertionError(f"{CONNECT_CLASSPATH_FILE} missing: run tests/compat/setup.sh")
    return CONNECT_CLASSPATH_FILE.read_text().strip()


def java_cmd(main_class: str, *args, log_level="warn", classpath=None) -> list[str]:
    return ["java", "-Xms64m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            f"-Dorg.slf4j.simpleLogger.defaultLogLevel={log_level}",
            "-Dorg.slf4j.simpleLogger.logFile=System.err",
            "-cp", classpath or java_classpath(), main_class, *map(str, args)]


def run(cmd, timeout=RUN_TIMEOUT, input_text=None, cwd=None) -> subprocess.CompletedProcess:
    """Runs a client to completion; a client that outlives `timeout` is killed with its children."""
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=cwd, env=client_env())
    try:
        out, err = proc.communicate(input=input_text, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"{cmd[:6]}... still running after {timeout}s\nstdout:\n{out[-3000:]}\nstderr:\n{err[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def client_env() -> dict:
    env = dict(os.environ)
    env["NODE_PATH"] = str(NODE_MODULES)
    return env


def assert_pass(res: subprocess.CompletedProcess, name: str):
    """A check program's one PASS line, or the failure with its FAIL line and output."""
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith(("PASS ", "FAIL "))]
    if res.returncode == 0 and lines and lines[-1].startswith("PASS "):
        return lines[-1]
    summary = lines[-1] if lines else f"FAIL {name}: exit {res.returncode} without a summary line"
    raise AssertionError(f"{summary}\n--- stdout ---\n{res.stdout[-6000:]}\n--- stderr ---\n{res.stderr[-6000:]}")


def java_check(name: str, bootstrap: str, *args, timeout=RUN_TIMEOUT) -> str:
    return assert_pass(run(java_cmd("sluice.compat.Check", name, bootstrap, *args), timeout=timeout), name)


def go_check(name: str, bootstrap: str, timeout=RUN_TIMEOUT) -> str:
    if not GO_BIN.exists():
        raise AssertionError(f"{GO_BIN} missing: run tests/compat/setup.sh")
    return assert_pass(run([str(GO_BIN), name, bootstrap], timeout=timeout), name)


def node_check(name: str, bootstrap: str, timeout=RUN_TIMEOUT) -> str:
    if not NODE_MODULES.exists():
        raise AssertionError(f"{NODE_MODULES} missing: run tests/compat/setup.sh")
    return assert_pass(run(["node", str(HERE / "node" / "compat.js"), name, bootstrap], timeout=timeout), name)


def tool(main_class: str, *args, input_text=None, timeout=RUN_TIMEOUT) -> subprocess.CompletedProcess:
    """One of Kafka's command-line tools, run from the kafka-tools jar as its script would."""
    return run(java_cmd(main_class, *args), input_text=input_text, timeout=timeout)


def tool_ok(main_class: str, *args, input_text=None, timeout=RUN_TIMEOUT) -> str:
    res = tool(main_class, *args, input_text=input_text, timeout=timeout)
    assert res.returncode == 0, (f"FAIL {main_class.rsplit('.', 1)[-1]}: exit {res.returncode}: {last_error(res)}"
                                 f"\n$ {main_class} {' '.join(map(str, args))}"
                                 f"\n--- stdout ---\n{res.stdout[-4000:]}\n--- stderr ---\n{res.stderr[-4000:]}")
    return res.stdout


def last_error(res: subprocess.CompletedProcess) -> str:
    """The first line of the tool's output that names an error, for the one-line summary."""
    lines = [ln.strip() for ln in (res.stderr + "\n" + res.stdout).splitlines() if ln.strip()]
    for line in lines:
        if re.search(r"(Error|Exception|ERROR|not supported)", line):
            return line[:250]
    return lines[0][:250] if lines else "(no output)"

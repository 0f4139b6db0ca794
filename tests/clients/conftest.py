"""Fixtures that run a real `sluice broker` process for the third-party client tests.

The broker binary is $SLUICE_BIN (default: target/release/sluice of this repository). Each test
gets its own broker on a free port (`--listen 127.0.0.1:0`) with a fresh data directory under
the pytest tmp dir; the fixture waits for the one `sluice ready: listening on HOST:PORT` line on
stdout. The broker's stderr (and any other stdout) goes to a log file per start; on a failing
test the tail of every log of that test's brokers is attached to the report.
"""

from __future__ import annotations

import atexit
import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SLUICE_BIN = Path(os.environ.get("SLUICE_BIN") or REPO / "target" / "release" / "sluice")
READY_TIMEOUT = float(os.environ.get("SLUICE_READY_TIMEOUT", "30"))
STOP_TIMEOUT = float(os.environ.get("SLUICE_STOP_TIMEOUT", "30"))
DEFAULT_CORES = int(os.environ.get("SLUICE_TEST_CORES", "2"))
READY_RE = re.compile(r"^sluice ready: listening on (?P<host>[0-9.]+):(?P<port>\d+)$")
LOG_TAIL_BYTES = 20000

_live = set()  # every running Broker, killed at interpreter exit whatever happens


@atexit.register
def _kill_leftovers():
    for b in list(_live):
        try:
            b.kill9()
        except Exception:
            pass


class BrokerStartError(AssertionError):
    pass


class Broker:
    """One sluice broker process, restartable on the same port and data directory."""

    def __init__(self, data_dir: Path, log_dir: Path, name="broker", cores=DEFAULT_CORES,
                 config: Path | None = None, extra_args=()):
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir)
        self.name = name
        self.cores = cores
        self.config = config
        self.extra_args = list(extra_args)
        self.port: int | None = None
        self.host = "127.0.0.1"
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.log_paths: list[Path] = []
        self._stdout_thread = None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ lifecycle
    def command(self):
        cmd = [str(SLUICE_BIN), "broker",
               "--listen", f"{self.host}:{self.port or 0}",
               "--data-dir", str(self.data_dir),
               "--cores", str(self.cores)]
        if self.config is not None:
            cmd += ["--config", str(self.config)]
        return cmd + self.extra_args

    def start(self, timeout=READY_TIMEOUT):
        assert self.proc is None, f"{self.name} is already running (pid {self.proc.pid})"
        if not SLUICE_BIN.exists():
            raise BrokerStartError(f"broker binary {SLUICE_BIN} does not exist (set SLUICE_BIN or build it)")
        self.starts += 1
        log_path = self.log_dir / f"{self.name}.start{self.starts}.log"
        self.log_paths.append(log_path)
        log = open(log_path, "ab", buffering=0)
        cmd = self.command()
        log.write(("$ " + " ".join(cmd) + "\n").encode())
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                                     start_new_session=True)
        log.close()  # the child keeps its own descriptor
        _live.add(self)
        lines: queue.Queue = queue.Queue()

        def pump(proc=self.proc, path=log_path):
            # Hands stdout lines to start() and, once it is ready, keeps draining stdout into the
            # log so the broker can never block on a full pipe.
            with open(path, "ab", buffering=0) as out:
                for raw in proc.stdout:
                    lines.put(raw)
                    out.write(b"[stdout] " + raw)
            lines.put(None)

        self._stdout_thread = threading.Thread(target=pump, daemon=True, name=f"{self.name}-stdout")
        self._stdout_thread.start()
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill9()
                raise BrokerStartError(f"{self.name}: no ready line on stdout within {timeout}s "
                                       f"(stdout so far: {seen!r})\n{self.log_tail()}")
            try:
                raw = lines.get(timeout=left)
            except queue.Empty:
                continue
            if raw is None:
                try:
                    rc = self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    rc = "nothing (it closed stdout but kept running; killed)"
                    self.kill9()
                self._reap()
                raise BrokerStartError(f"{self.name}: exited with {rc} before printing the ready line "
                                       f"(stdout: {seen!r})\n{self.log_tail()}")
            text = raw.decode(errors="replace").rstrip("\r\n")
            seen.append(text)
            m = READY_RE.match(text)
            if m:
                port = int(m.group("port"))
                assert port > 0, f"ready line names port 0: {text!r}"
                if self.port is not None:
                    assert port == self.port, f"restart asked for port {self.port}, broker listens on {port}"
                self.port = port
                self.host = m.group("host")
                return self

    @property
    def bootstrap(self) -> str:
        assert self.port is not None, "broker was never started"
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} is not running"
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=STOP_TIMEOUT, sig=signal.SIGTERM):
        """Clean shutdown: SIGTERM (or SIGINT), then the broker must exit 0 within `timeout`."""
        assert self.proc is not None, f"{self.name} is not running"
        rc = self.proc.poll()
        assert rc is None, f"{self.name} had already exited with {rc} before it was asked to stop"
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(f"{self.name} did not exit within {timeout}s of {signal.Signals(sig).name}")
        self._reap()
        assert rc == 0, f"{self.name} exited with {rc} after {signal.Signals(sig).name}, expected 0"
        return rc

    def kill9(self):
        """SIGKILL, no chance to clean up."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self._reap()

    def restart(self, timeout=READY_TIMEOUT):
        """Starts again on the same port and data directory (after stop() or kill9())."""
        assert self.proc is None, f"{self.name} is still running; stop() or kill9() it first"
        assert self.port is not None, "restart() needs a first start()"
        return self.start(timeout=timeout)

    def _reap(self):
        if self._stdout_thread is not None:
            self._stdout_thread.join(timeout=10)
            self._stdout_thread = None
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None
        _live.discard(self)

    # ------------------------------------------------------------------ observation
    def rss_kb(self) -> int:
        """Resident set size (VmRSS) of the running broker, in kB."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS line in /proc/PID/status")

    def log_tail(self, limit=LOG_TAIL_BYTES) -> str:
        parts = []
        for p in self.log_paths:
            try:
                data = p.read_bytes()
            except OSError:
                continue
            if len(data) > limit:
                data = b"...(truncated)...\n" + data[-limit:]
            parts.append(f"--- {p} ---\n{data.decode(errors='replace')}")
        return "\n".join(parts) or "(no broker log)"

    def __repr__(self):
        return f"<Broker {self.name} {self.host}:{self.port} pid={self.proc and self.proc.pid}>"


def _track(request, broker):
    request.node.__dict__.setdefault("_sluice_brokers", []).append(broker)


def _teardown(broker):
    # A broker a test left running must still shut down cleanly: SIGTERM, exit 0.
    if broker.proc is not None:
        if broker.proc.poll() is not None:
            rc = broker.proc.returncode
            broker._reap()
            raise AssertionError(f"{broker.name} died during the test (exit {rc})")
        broker.stop()


@pytest.fixture
def broker(request, tmp_path):
    """A fresh broker (default config, --cores 2) with its own data dir; SIGTERM + exit 0 at the end."""
    b = Broker(tmp_path / "data", tmp_path / "logs")
    _track(request, b)
    b.start()
    yield b
    _teardown(b)


@pytest.fixture
def broker_factory(request, tmp_path):
    """make(config=None, cores=2, extra_args=(), start=True) -> Broker.

    `config` is TOML text (or a dict of scalar values) written to a file passed with --config.
    """
    made = []

    def make(config=None, cores=DEFAULT_CORES, extra_args=(), start=True):
        n = len(made) + 1
        cfg_path = None
        if config is not None:
            if isinstance(config, dict):
                config = "".join(f"{k} = {_toml_value(v)}\n" for k, v in config.items())
            cfg_path = tmp_path / f"broker{n}.toml"
            cfg_path.write_text(config)
        b = Broker(tmp_path / f"data{n}", tmp_path / "logs", name=f"broker{n}", cores=cores,
                   config=cfg_path, extra_args=extra_args)
        made.append(b)
        _track(request, b)
        if start:
            b.start()
        return b

    yield make
    errors = []
    for b in made:
        try:
            _teardown(b)
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "; ".join(errors)


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.fixture(autouse=True)
def _release_clients():
    """librdkafka handles caught in reference cycles (admin futures) would keep reconnecting to
    a stopped broker and log into later tests: collect them when each test ends."""
    yield
    import gc
    gc.collect()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for b in item.__dict__.get("_sluice_brokers", []):
            rep.sections.append((f"sluice {b.name} log ({b.bootstrap if b.port else 'never ready'})",
                                 b.log_tail()))


def pytest_report_header(config):
    return [f"sluice binary: {SLUICE_BIN} (exists: {SLUICE_BIN.exists()}), default --cores {DEFAULT_CORES}"]

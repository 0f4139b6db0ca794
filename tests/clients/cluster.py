"""A cluster of sluice brokers on loopback for the cluster tests (issue 9).

`Cluster(tmp_path, n)` makes n brokers (node ids 1..n), each with its own data directory, a
free Kafka port and a free controller port, all started with the same `--controller-voters`.
`Cluster(tmp_path, n, voters=k)` lists only nodes 1..k as voters: nodes k+1..n are observers
(brokers that follow the quorum without voting; they have no controller port).
Brokers are the conftest `Broker` objects, so starting waits for the `sluice ready` line and a
failing test gets their logs. Use the `cluster_factory` fixture (import it into a test module)
so every broker is stopped, and checked to exit 0, at the end of the test.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from conftest import SLUICE_BIN, Broker, _teardown, _track
from support import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """n brokers, the first `voters` (default: all) controller voters; nodes by id in `self.nodes`."""

    def __init__(self, tmp_path: Path, n=3, cores=1, extra_args=(), voters=None):
        voters_n = n if voters is None else voters
        assert 1 <= voters_n <= n
        self.controller_ports = {i: free_port() for i in range(1, voters_n + 1)}
        voters = ",".join(f"{i}@127.0.0.1:{p}" for i, p in self.controller_ports.items())
        self.nodes: dict[int, Broker] = {}
        for i in range(1, n + 1):
            args = ["--node-id", str(i), "--controller-voters", voters, *extra_args]
            self.nodes[i] = Broker(tmp_path / f"node{i}", tmp_path / "logs", name=f"node{i}",
                                   cores=cores, extra_args=args)

    def observers(self) -> list[int]:
        """The node ids that are not controller voters."""
        return [i for i in self.nodes if i not in self.controller_ports]

    def start(self):
        for b in self.nodes.values():
            b.start()
        return self

    def kill9(self, node_id: int):
        self.nodes[node_id].kill9()

    def restart(self, node_id: int):
        return self.nodes[node_id].restart()

    def running(self) -> list[int]:
        return [i for i, b in self.nodes.items() if b.alive()]

    def bootstrap(self, node_id: int) -> str:
        return self.nodes[node_id].bootstrap

    def controller_seen_by(self, node_id: int) -> int:
        """The Raft leader node `node_id` reports (`sluice cluster info`), -1 if none."""
        out = subprocess.run([str(SLUICE_BIN), "cluster", "info", "--bootstrap-server", self.bootstrap(node_id)],
                             capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            return -1
        for line in out.stdout.splitlines():
            if line.startswith("Controller: "):
                value = line.split(": ", 1)[1]
                return int(value) if value.isdigit() else -1
        return -1

    def wait_leader(self, exclude=(), timeout=30) -> int:
        """Waits until every running node names the same leader (not in `exclude`)."""
        def agreed():
            seen = {self.controller_seen_by(i) for i in self.running()}
            if len(seen) == 1:
                (leader,) = seen
                if leader > 0 and leader not in exclude:
                    return leader
            return None
        return wait_for(agreed, timeout=timeout, what="a controller leader all nodes agree on")


@pytest.fixture
def cluster_factory(request, tmp_path):
    """make(n=3, cores=1, extra_args=(), voters=None) -> a started Cluster; stopped (exit 0) at the end."""
    made: list[Cluster] = []

    def make(n=3, cores=1, extra_args=(), voters=None):
        c = Cluster(tmp_path / f"cluster{len(made) + 1}", n=n, cores=cores, extra_args=extra_args,
                    voters=voters)
        made.append(c)
        for b in c.nodes.values():
            _track(request, b)
        return c.start()

    yield make
    errors = []
    for c in made:
        for b in c.nodes.values():
            try:
                _teardown(b)
            except AssertionError as e:
                errors.append(str(e))
    assert not errors, "; ".join(errors)

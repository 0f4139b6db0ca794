"""The multi-broker playbooks against a real 3-broker cluster: site.yml provisions three brokers
(controller voters, node ids, one port set each) on this host, inside a network namespace of
the test's own, with the local connection; the brokers are started with their units' own
ExecStart lines (systemd is not PID 1 here, so the `systemd`-tagged tasks are skipped, as in
test_ansible.py). Then:
- rolling_restart.yml's checks pass on a healthy cluster, and stop the roll (failing) while a
  broker is down and its partitions under-replicated, then pass again once it is back;
- add_broker.yml provisions a fourth broker that is not a controller voter (an observer):
  every broker lists it and a replication-factor-4 topic created through it works;

Needs what test_ansible.py needs (root, the ansible venv from tests/run.sh).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from ansible_host import ANSIBLE, VENV, WHY_NOT, Netns, playbook, recap, unit_exec_start
from conftest import SLUICE_BIN
from support import wait_for

pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=str(WHY_NOT))

NODES = (1, 2, 3)
RECORDS = [f"cluster-record-{i}" for i in range(300)]
TOPIC = "deployed-rf3"


def kafka_port(node):
    return 19190 + node


def admin_port(node):
    return 19290 + node


def controller_port(node):
    return 19390 + node


def host_vars(tmp: Path, node: int, tarball: Path, checksum: str, voters: str) -> dict:
    root = tmp / f"b{node}"
    return {
        "ansible_connection": "local",
        "ansible_python_interpreter": str(VENV / "python"),
        "sluice_node_id": node,
        "sluice_release_url": tarball.as_uri(),
        "sluice_release_checksum": checksum,
        "sluice_install_dir": str(root / "opt"),
        "sluice_config_dir": str(root / "etc"),
        "sluice_data_dir": str(root / "data"),
        "sluice_systemd_dir": str(root / "systemd"),
        "sluice_user": "root",
        "sluice_group": "root",
        # One namespace holds the three "hosts": one nftables table would serve them all, and
        # test_ansible.py checks the firewall role; host tuning is checked there too.
        "sluice_firewall": False,
        "sluice_os_tuning": "skip",
        "sluice_cores": 1,
        "sluice_profile": "balanced",
        "sluice_kafka_port": kafka_port(node),
        "sluice_admin_port": admin_port(node),
        "sluice_advertised_host": "127.0.0.1",
        "sluice_controller_voters": voters,
        "sluice_ready_timeout_s": 60,
        "sluice_in_sync_timeout_s": 60,
        "sluice_reassign_timeout_s": 120,
    }


class Deployment:
    """Three provisioned brokers in one namespace; start/kill them by node id."""

    def __init__(self, ns: Netns, tmp: Path, inv: Path, hosts: dict):
        self.ns, self.tmp, self.inv = ns, tmp, inv
        # The inventory's host variables by host name (add_broker derives a new host's).
        self.hosts = hosts
        self.procs: dict[int, subprocess.Popen] = {}

    def start(self, node):
        unit = self.tmp / f"b{node}" / "systemd" / "sluice.service"
        log = open(self.tmp / f"b{node}.log", "ab")
        self.procs[node] = subprocess.Popen(self.ns.cmd(unit_exec_start(unit)), stdout=log,
                                            stderr=subprocess.STDOUT)
        log.close()

    def kill9(self, node):
        p = self.procs.pop(node)
        p.kill()
        p.wait()

    def stop_all(self):
        for node, p in list(self.procs.items()):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()

    def python(self, code: str) -> str:
        """Runs code with the test venv's python inside the namespace; returns its stdout."""
        r = self.ns.run([sys.executable, "-c", code])
        assert r.returncode == 0, r.stderr[-3000:]
        return r.stdout

    def admin_json(self, node, path):
        out = self.ns.run(["python3", "-c",
                           f"import urllib.request; print(urllib.request.urlopen("
                           f"'http://127.0.0.1:{admin_port(node)}{path}', timeout=5).read().decode())"])
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def bootstrap(self, nodes=NODES):
        return ",".join(f"127.0.0.1:{kafka_port(n)}" for n in nodes)

    def log_tail(self):
        return "\n".join(f"--- b{n}\n" + (self.tmp / f"b{n}.log").read_text()[-3000:]
                         for n in NODES if (self.tmp / f"b{n}.log").exists())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    assert (VENV / "ansible-playbook").exists(), \
        f"{VENV} has no ansible: tests/run.sh installs ansible-core and ansible-lint there"
    tmp = tmp_path_factory.mktemp("ansible-cluster")
    release = subprocess.run([str(ANSIBLE / "release.sh"), str(SLUICE_BIN), str(tmp / "release")],
                             capture_output=True, text=True, check=True)
    tarball = Path(release.stdout.strip())
    checksum = Path(f"{tarball}.sha256").read_text().strip()
    voters = ",".join(f"{n}@127.0.0.1:{controller_port(n)}" for n in NODES)
    hosts = {f"b{n}": host_vars(tmp, n, tarball, checksum, voters) for n in NODES}
    for n in NODES:
        (tmp / f"b{n}" / "systemd").mkdir(parents=True)
    inv = tmp / "inventory.json"
    inv.write_text(json.dumps({"sluice": {"hosts": hosts}, "new_brokers": {"hosts": {}}}))
    ns = Netns()
    d = Deployment(ns, tmp, inv, hosts)
    try:
        site = playbook(ns, inv, "site.yml", "--skip-tags", "systemd,ready")
        assert recap(site)["failed"] == 0
        for n in NODES:
            d.start(n)
        yield d
    finally:
        d.stop_all()
        ns.close()


def create_and_fill(d: Deployment):
    d.python(f"""
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka import Producer
a = AdminClient({{"bootstrap.servers": "{d.bootstrap()}"}})
for f in a.create_topics([NewTopic("{TOPIC}", 6, 3)]).values():
    f.result(60)
p = Producer({{"bootstrap.servers": "{d.bootstrap()}", "acks": "all", "enable.idempotence": True}})
for r in {RECORDS!r}:
    p.produce("{TOPIC}", r.encode(), key=r.encode())
assert p.flush(60) == 0
""")


def read_all(d: Deployment, nodes=NODES) -> list[str]:
    out = d.python(f"""
from confluent_kafka import Consumer, TopicPartition
c = Consumer({{"bootstrap.servers": "{d.bootstrap(nodes)}", "group.id": "ansible-check",
              "enable.auto.commit": False}})
parts = [TopicPartition("{TOPIC}", i, 0) for i in range(6)]
c.assign(parts)
want = sum(c.get_watermark_offsets(p, timeout=30)[1] for p in parts)
got = []
while len(got) < want:
    m = c.poll(30)
    assert m is not None, f"{{len(got)}} of {{want}} read"
    if not m.error():
        got.append(m.value().decode())
print("\\n".join(got))
""")
    return out.split()


def test_rolling_restart_checks_hold_the_roll_while_a_broker_is_out_of_sync(cluster):
    d = cluster
    # Every broker is ready: the readiness and in-sync checks of the roll pass on all three.
    wait_for(lambda: all(live_brokers(d, n) == set(NODES) for n in NODES), timeout=60,
             what="every broker to see the three brokers unfenced")
    create_and_fill(d)
    out = playbook(d.ns, d.inv, "rolling_restart.yml", "--skip-tags", "systemd")
    assert recap(out)["failed"] == 0

    # A broker down: its partitions are under-replicated once it is fenced, and the roll stops
    # at the in-sync check before touching the next broker.
    d.kill9(3)
    wait_for(lambda: under_replicated(d, 1) > 0, timeout=60, what="under-replicated partitions")
    out = playbook(d.ns, d.inv, "rolling_restart.yml", "--skip-tags", "systemd", "-l", "b1",
                   "-e", "sluice_in_sync_timeout_s=4", expect_ok=False)
    assert "Read sluice_under_replicated_partitions" in out and recap(out)["failed"] == 1, out[-3000:]

    # Back: the ISR recovers and the roll goes through again.
    d.start(3)
    out = playbook(d.ns, d.inv, "rolling_restart.yml", "--skip-tags", "systemd")
    assert recap(out)["failed"] == 0, d.log_tail()
    assert sorted(read_all(d)) == sorted(RECORDS)


def test_add_broker_joins_a_fourth_broker_that_is_not_a_voter(cluster):
    d = cluster
    wait_for(lambda: all(live_brokers(d, n) == set(NODES) for n in NODES), timeout=60,
             what="every broker to see the three brokers unfenced")
    new = 4
    inv = json.loads(d.inv.read_text())
    b1 = d.hosts["b1"]
    # The same voters (1..3): broker 4 is not among them.
    new_vars = host_vars(d.tmp, new, Path(b1["sluice_release_url"].removeprefix("file://")),
                         b1["sluice_release_checksum"], b1["sluice_controller_voters"])
    (d.tmp / f"b{new}" / "systemd").mkdir(parents=True)
    inv["new_brokers"]["hosts"][f"b{new}"] = new_vars
    add_inv = d.tmp / "inventory-add.json"
    add_inv.write_text(json.dumps(inv))
    out = playbook(d.ns, add_inv, "add_broker.yml", "--skip-tags", "systemd,ready")
    assert recap(out)["failed"] == 0
    d.start(new)
    out = playbook(d.ns, add_inv, "add_broker.yml", "--tags", "ready")
    assert recap(out)["failed"] == 0, d.log_tail()
    everyone = (*NODES, new)
    wait_for(lambda: all(live_brokers(d, n) == set(everyone) for n in everyone), timeout=60,
             what="every broker to see the four brokers unfenced")
    assert not (d.tmp / f"b{new}" / "data" / "meta" / "raft").exists(), "an observer keeps no Raft log"
    d.python(f"""
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka import Consumer, Producer, TopicPartition
boot = "127.0.0.1:{kafka_port(new)}"
a = AdminClient({{"bootstrap.servers": boot}})
for f in a.create_topics([NewTopic("added-rf4", 2, 4)]).values():
    f.result(60)
p = Producer({{"bootstrap.servers": boot, "acks": "all"}})
for i in range(100):
    p.produce("added-rf4", b"v%d" % i)
assert p.flush(60) == 0
c = Consumer({{"bootstrap.servers": boot, "group.id": "added", "enable.auto.commit": False}})
parts = [TopicPartition("added-rf4", i, 0) for i in range(2)]
c.assign(parts)
got = []
while len(got) < 100:
    m = c.poll(30)
    assert m is not None, f"{{len(got)}} of 100 read"
    if not m.error():
        got.append(m.value())
assert sorted(got) == sorted(b"v%d" % i for i in range(100))
""")


def live_brokers(d: Deployment, node) -> set[int]:
    return {b["node_id"] for b in d.admin_json(node, "/v1/cluster")["brokers"] if not b["fenced"]}


def under_replicated(d: Deployment, node) -> float:
    text = d.ns.run(["python3", "-c",
                     f"import urllib.request; print(urllib.request.urlopen("
                     f"'http://127.0.0.1:{admin_port(node)}/metrics', timeout=5).read().decode())"])
    for line in text.stdout.splitlines():
        if line.startswith("sluice_under_replicated_partitions "):
            return float(line.split()[1])
    return -1.0

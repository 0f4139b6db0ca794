"""The ansible playbooks (ansible/) run for real against this host with the local connection,
inside a network namespace of the test's own so the firewall rules and ports touch nothing
else: site.yml installs the release tarball (ansible/release.sh of $SLUICE_BIN, fetched by
get_url and checked against its sha256), writes the config, runs `sluice tune check`, loads
the nftables table and renders the systemd unit.

What this host cannot do, and what stands in for it:
- systemd is not PID 1 here (containers, CI): the tasks tagged `systemd` (daemon-reload,
  enable, start, restart) are skipped. The unit is checked with `systemd-analyze verify` and
  the broker is started with the unit's own ExecStart line; then rolling_restart.yml (without
  its restart) runs its readiness and in-sync checks against that broker.
- `sluice tune apply` would change the shared host: the role runs with sluice_os_tuning=check.
- No system user is created (sluice_user=root): the test host's /etc/passwd is left alone.
- The multi-broker playbooks need more than one broker: add_broker.yml is only linted, and
  decommission.yml runs `sluice cluster reassign --decommission`, which must refuse to move
  the replicas of the only broker (nowhere to go), so the play stops with the broker running.

Needs root (network namespace, nftables) and the venv target/ansible-venv with ansible-core
and ansible-lint, which tests/run.sh installs.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from ansible_host import ANSIBLE, VENV, WHY_NOT, Netns, playbook, recap, unit_exec_start
from conftest import SLUICE_BIN

KAFKA_PORT, ADMIN_PORT = 19092, 19644

pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=str(WHY_NOT))


def inventory(tmp: Path, tarball: Path, checksum: str) -> Path:
    host = {
        "ansible_connection": "local",
        "ansible_python_interpreter": str(VENV / "python"),
        "sluice_node_id": 1,
        "sluice_release_url": tarball.as_uri(),
        "sluice_release_checksum": checksum,
        "sluice_install_dir": str(tmp / "opt"),
        "sluice_config_dir": str(tmp / "etc"),
        "sluice_data_dir": str(tmp / "data"),
        "sluice_systemd_dir": str(tmp / "systemd"),
        "sluice_nftables_dir": str(tmp / "nftables.d"),
        "sluice_nftables_conf": str(tmp / "nftables.conf"),
        "sluice_user": "root",
        "sluice_group": "root",
        "sluice_os_tuning": "check",
        "sluice_cores": 1,
        "sluice_profile": "latency",
        "sluice_kafka_port": KAFKA_PORT,
        "sluice_admin_port": ADMIN_PORT,
        "sluice_advertised_host": "127.0.0.1",
        "sluice_firewall_kafka_sources": ["127.0.0.1/32"],
        "sluice_firewall_admin_sources": ["127.0.0.1/32"],
        "sluice_ready_timeout_s": 30,
        "sluice_in_sync_timeout_s": 30,
    }
    path = tmp / "inventory.json"
    path.write_text(json.dumps({"sluice": {"hosts": {"local": host}}}))
    return path


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """site.yml run once in a fresh namespace; yields (netns, inventory, tmp, site output)."""
    assert (VENV / "ansible-playbook").exists(), \
        f"{VENV} has no ansible: tests/run.sh installs ansible-core and ansible-lint there"
    tmp = tmp_path_factory.mktemp("ansible")
    release = subprocess.run([str(ANSIBLE / "release.sh"), str(SLUICE_BIN), str(tmp / "release")],
                             capture_output=True, text=True, check=True)
    tarball = Path(release.stdout.strip())
    checksum = Path(f"{tarball}.sha256").read_text().strip()
    inv = inventory(tmp, tarball, checksum)
    (tmp / "systemd").mkdir()  # /etc/systemd/system on a real host
    ns = Netns()
    try:
        site = playbook(ns, inv, "site.yml", "--skip-tags", "systemd,ready")
        yield ns, inv, tmp, site
    finally:
        ns.close()


def connect_from(ns, source):
    """Connects from `source` to the Kafka port inside the namespace: 'open' or the error."""
    code = (f"import socket; s = socket.socket(); s.settimeout(5); s.bind(({source!r}, 0))\n"
            f"try:\n  s.connect(('127.0.0.1', {KAFKA_PORT})); print('open')\n"
            f"except OSError as e:\n  print(type(e).__name__)")
    return ns.run(["python3", "-c", code], check=True).stdout.strip()


def test_ansible_lint_is_clean():
    assert (VENV / "ansible-lint").exists(), f"{VENV} has no ansible-lint (tests/run.sh installs it)"
    r = subprocess.run([str(VENV / "ansible-lint"), "--offline", "--nocolor"], cwd=ANSIBLE,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]


def test_site_brings_up_a_broker_that_serves_produce_and_consume(deployed):
    ns, inv, tmp, site = deployed
    assert recap(site)["failed"] == 0
    assert re.search(r"(ok|would change|not applicable) +swappiness", site), site[-4000:]  # tune check
    installed = tmp / "opt" / "bin" / "sluice"
    assert installed.resolve().read_bytes() == SLUICE_BIN.read_bytes()
    config = (tmp / "etc" / "sluice.toml").read_text()
    assert 'profile = "latency"' in config and f'listen = "0.0.0.0:{KAFKA_PORT}"' in config

    unit = tmp / "systemd" / "sluice.service"
    if shutil.which("systemd-analyze"):
        v = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
        assert v.returncode == 0, v.stderr
    log = open(tmp / "broker.log", "wb")
    broker = subprocess.Popen(ns.cmd(unit_exec_start(unit)), stdout=log, stderr=subprocess.STDOUT)
    try:
        # Readiness and the under-replicated check of rolling_restart.yml, against this broker.
        out = playbook(ns, inv, "rolling_restart.yml", "--skip-tags", "systemd")
        assert recap(out)["failed"] == 0

        records = [f"record-{i}" for i in range(200)]
        bootstrap = f"127.0.0.1:{KAFKA_PORT}"
        p = ns.run(["kcat", "-P", "-b", bootstrap, "-t", "deployed", "-X",
                    "topic.request.required.acks=all"], input="\n".join(records) + "\n")
        assert p.returncode == 0, p.stderr
        c = ns.run(["kcat", "-C", "-b", bootstrap, "-t", "deployed", "-o", "beginning", "-e", "-q"])
        assert c.returncode == 0, c.stderr
        assert c.stdout.split() == records

        # The nftables table admits the listed source and resets everyone else.
        assert connect_from(ns, "127.0.0.1") == "open"
        assert connect_from(ns, "127.0.0.2") == "ConnectionRefusedError"
        assert f'include "{tmp}/nftables.d/sluice.nft"' in (tmp / "nftables.conf").read_text()

        # The only broker cannot be decommissioned: its replicas have nowhere to go, so the
        # move fails and the play stops before stopping the broker.
        out = playbook(ns, inv, "decommission.yml", expect_ok=False)
        assert "is the only live broker: there is nowhere to move its replicas" in out, out[-3000:]
        assert recap(out)["failed"] == 1 and broker.poll() is None

        # A second site.yml changes nothing on a host that is already as described.
        again = playbook(ns, inv, "site.yml", "--skip-tags", "systemd,ready")
        assert recap(again)["changed"] == 0, again[-6000:]

        # rolling_restart.yml rolls a new profile out: the config is rewritten before the
        # restart (skipped here), and the broker's readiness is checked after it.
        out = playbook(ns, inv, "rolling_restart.yml", "--skip-tags", "systemd",
                       "-e", "sluice_profile=throughput")
        assert 'profile = "throughput"' in (tmp / "etc" / "sluice.toml").read_text()
        assert "the restart of this play applied it" in out, out[-4000:]
    finally:
        broker.send_signal(signal.SIGTERM)
        try:
            broker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait()
        log.close()

"""What the ansible tests share: the ansible venv, a private network namespace to run the
playbooks and brokers in, and running a playbook there."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from conftest import REPO
from support import wait_for

ANSIBLE = REPO / "ansible"
VENV = REPO / "target" / "ansible-venv" / "bin"
RECAP_RE = re.compile(r"^\S+\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def _why_not():
    """Why this host cannot run the ansible tests (None: it can)."""
    if os.geteuid() != 0:
        return "needs root: a network namespace and nftables rules"
    if not (VENV / "ansible-playbook").exists():
        return None  # a missing venv is a failure (tests/run.sh installs it), not a skip
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot create a network namespace: {probe.stderr.strip()}"
    return None


WHY_NOT = _why_not()


class Netns:
    """A private network namespace held open by a `sleep` process; run() enters it."""

    def __init__(self):
        self.holder = subprocess.Popen(["unshare", "--net", "sleep", "infinity"])
        self.path = f"/proc/{self.holder.pid}/ns/net"
        wait_for(lambda: os.readlink(self.path) != os.readlink("/proc/self/ns/net"),
                 what="the network namespace")
        self.run(["ip", "link", "set", "lo", "up"], check=True)

    def cmd(self, argv):
        return ["nsenter", f"--net={self.path}", *argv]

    def run(self, argv, **kw):
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 300)
        return subprocess.run(self.cmd(argv), **kw)

    def close(self):
        self.holder.kill()
        self.holder.wait()


def playbook(ns, inv, name, *args, expect_ok=True):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ANSIBLE / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    r = ns.run([str(VENV / "ansible-playbook"), "-i", str(inv), name, *args], cwd=ANSIBLE, env=env)
    out = r.stdout + r.stderr
    if expect_ok:
        assert r.returncode == 0, f"{name} failed:\n{out[-6000:]}"
    return out


def recap(out):
    m = RECAP_RE.search(out)
    assert m, out[-3000:]
    ok, changed, unreachable, failed = map(int, m.groups())
    return {"ok": ok, "changed": changed, "unreachable": unreachable, "failed": failed}


def unit_exec_start(unit: Path):
    line = next(l for l in unit.read_text().splitlines() if l.startswith("ExecStart="))
    return line.removeprefix("ExecStart=").split()

"""Fixtures of the compatibility suite: the broker fixtures of tests/clients (a real `sluice
broker` per test on a free port, its own data dir, logs attached to failures), and a record of
every check's outcome per client family, written to target/compat/results.json for the README
table (tests/compat/readme_table.py).

Each test names what it exercises with `@pytest.mark.compat(family, check)`; the family's
version comes from the pinned manifests (pom.xml, go.mod, package.json) via clients.py.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "clients"))
sys.path.insert(0, str(HERE))

_spec = importlib.util.spec_from_file_location("sluice_broker_fixtures", REPO / "tests" / "clients" / "conftest.py")
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)

# Re-exported so pytest finds them in this conftest.
broker = _fixtures.broker
broker_factory = _fixtures.broker_factory
_release_clients = _fixtures._release_clients
pytest_runtest_makereport = _fixtures.pytest_runtest_makereport
pytest_report_header = _fixtures.pytest_report_header
# What tests/clients/cluster.py takes from "conftest", for multi-broker checks.
SLUICE_BIN = _fixtures.SLUICE_BIN
Broker = _fixtures.Broker
_teardown = _fixtures._teardown
_track = _fixtures._track

import clients  # noqa: E402  (needs the path set above)

RESULTS = REPO / "target" / "compat" / "results.json"
_results: list[dict] = []


def pytest_configure(config):
    config.addinivalue_line("markers", "compat(family, check): client family and check for the README table")


def pytest_runtest_logreport(report):
    if report.when != "call" and not (report.when == "setup" and report.outcome != "passed"):
        return
    item_marks = getattr(report, "_compat", None)
    if item_marks is None:
        return
    family, check = item_marks
    detail = ""
    if report.failed:
        detail = clients.failure_summary(getattr(report, "_compat_error", "") or report.longreprtext)
    elif report.skipped and isinstance(report.longrepr, tuple):
        detail = str(report.longrepr[2]).removeprefix("Skipped: ")
    _results.append({"family": family, "version": clients.version_of(family), "check": check,
                     "outcome": "pass" if report.passed else ("skip" if report.skipped else "fail"),
                     "detail": detail, "test": report.nodeid})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # noqa: F811  (wraps the fixtures' hook)
    outcome = yield
    rep = outcome.get_result()
    mark = item.get_closest_marker("compat")
    if mark is not None:
        rep._compat = (mark.args[0], mark.args[1])
        if call.excinfo is not None:
            rep._compat_error = str(call.excinfo.value)
    if rep.failed:
        for b in item.__dict__.get("_sluice_brokers", []):
            rep.sections.append((f"sluice {b.name} log ({b.bootstrap if b.port else 'never ready'})",
                                 b.log_tail()))


def pytest_sessionfinish(session, exitstatus):
    if not _results:
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    # A partial run (-k, one file) updates only the checks it ran; results of tests that no
    # longer exist are dropped.
    ran = {r["test"] for r in _results}
    previous = []
    if RESULTS.exists():
        previous = [r for r in json.loads(RESULTS.read_text()) if r["test"] not in ran and _still_exists(r["test"])]
    RESULTS.write_text(json.dumps(previous + _results, indent=1) + "\n")


def _still_exists(nodeid: str) -> bool:
    path, _, name = nodeid.partition("::")
    source = HERE / Path(path).name
    return source.exists() and f"def {name.split('[')[0]}(" in source.read_text()

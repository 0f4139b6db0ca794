#!/usr/bin/env bash
# The project's one test command: ./tests/run.sh [extra pytest args, e.g. -k kill9]
#  1. installs what the client tests need, idempotently (Debian: kcat jq python3-venv nftables;
#     a venv at target/pyenv with pytest, confluent-kafka, kafka-python and the codecs; a venv
#     at target/ansible-venv with ansible-core and ansible-lint for tests/clients/test_ansible.py),
#  2. cargo build --release, then cargo test --release,
#  3. runs the third-party client tests in tests/clients against target/release/sluice,
#  4. builds the compatibility suite's clients (tests/compat/setup.sh: Maven Central, the Go module
#     proxy, npm; cached under target/compat) and runs tests/compat: the Java client, Kafka's tools,
#     Streams, Connect, franz-go, sarama, kafkajs. Its results go to target/compat/results.json;
#     tests/compat/readme_table.py turns them into the README's table.
# Env: SLUICE_COMPAT=0 skips step 4; SLUICE_BIN (broker binary), SLUICE_TEST_RECORDS (records per codec, default 100000 for
#      confluent-kafka, 20000 for kafka-python/kcat), SLUICE_PYTEST_TIMEOUT (seconds, default 1800).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

step() { printf '\n==> %s\n' "$*"; }

# --- 1. system packages -------------------------------------------------------------------
missing=()
wanted=(kcat jq python3-venv nftables)
# The compatibility suite needs a JDK (17+), Maven and Node; Go comes from /usr/local/go.
command -v java >/dev/null || wanted+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || wanted+=(maven)
command -v node >/dev/null || wanted+=(nodejs)
command -v npm >/dev/null || wanted+=(npm)
for pkg in "${wanted[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  step "installing ${missing[*]}"
  SUDO=()
  [ "$(id -u)" -eq 0 ] || SUDO=(sudo)
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
fi

# --- 2. Python venv with the clients ------------------------------------------------------
VENV=$ROOT/target/pyenv
PY=$VENV/bin/python
if [ -x "$PY" ] && ! "$PY" -c 'import sys' >/dev/null 2>&1; then
  step "removing broken venv $VENV"
  rm -rf "$VENV"
fi
if [ ! -x "$PY" ]; then
  step "creating venv $VENV"
  mkdir -p "$ROOT/target"
  python3 -m venv "$VENV"
fi
if ! "$PY" -c 'import pytest, confluent_kafka, kafka, lz4, snappy, zstandard' >/dev/null 2>&1; then
  step "installing Python test clients into $VENV"
  "$PY" -m pip install -q --disable-pip-version-check pytest confluent-kafka kafka-python lz4 python-snappy zstandard
  "$PY" -c 'import pytest, confluent_kafka, kafka, lz4, snappy, zstandard'
fi

# --- 2b. ansible for the playbook test (pinned: ansible-lint's rules change between releases)
ANSIBLE_VENV=$ROOT/target/ansible-venv
ANSIBLE_PINS=(ansible-core==2.19.14 ansible-lint==26.10.1)
if ! "$ANSIBLE_VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  rm -rf "$ANSIBLE_VENV"
  python3 -m venv "$ANSIBLE_VENV"
fi
if ! "$ANSIBLE_VENV/bin/python" -c 'import importlib.metadata as m, sys
sys.exit(any(m.version(n) != v for n, v in (p.split("==") for p in sys.argv[1:])))' \
    "${ANSIBLE_PINS[@]}" >/dev/null 2>&1; then
  step "installing ${ANSIBLE_PINS[*]} into $ANSIBLE_VENV"
  "$ANSIBLE_VENV/bin/python" -m pip install -q --disable-pip-version-check "${ANSIBLE_PINS[@]}"
fi

# --- 3. build and unit/integration tests of the crate -------------------------------------
step "cargo build --release"
cargo build --release
step "cargo test --release"
cargo test --release

# --- 4. third-party client tests ------------------------------------------------------------
export SLUICE_BIN=${SLUICE_BIN:-$ROOT/target/release/sluice}
export PYTHONDONTWRITEBYTECODE=1
step "client tests (pytest tests/clients) against $SLUICE_BIN"
clients_rc=0
timeout -k 30 "${SLUICE_PYTEST_TIMEOUT:-1800}" \
  "$PY" -m pytest -v --durations=10 -o cache_dir="$ROOT/target/pytest-cache" tests/clients "$@" || clients_rc=$?

# --- 5. the compatibility suite -----------------------------------------------------------
if [ "${SLUICE_COMPAT:-1}" != "0" ]; then
  [ -x /usr/local/go/bin/go ] && export PATH=$PATH:/usr/local/go/bin
  step "compatibility suite clients (tests/compat/setup.sh)"
  tests/compat/setup.sh
  step "compatibility suite (pytest tests/compat) against $SLUICE_BIN"
  compat_rc=0
  timeout -k 30 "${SLUICE_PYTEST_TIMEOUT:-1800}" \
    "$PY" -m pytest -v --durations=10 -o cache_dir="$ROOT/target/pytest-cache" tests/compat "$@" || compat_rc=$?
  # Exit 5 is "no test selected": extra args such as -k may pick tests of one suite only.
  [ "$compat_rc" -eq 5 ] && compat_rc=0
  "$PY" tests/compat/readme_table.py --print || true
  [ "$compat_rc" -eq 0 ] || { echo "compatibility suite failed (exit $compat_rc)"; exit "$compat_rc"; }
fi
[ "$clients_rc" -eq 5 ] && clients_rc=0
[ "$clients_rc" -eq 0 ] || { echo "client tests failed (exit $clients_rc)"; exit "$clients_rc"; }

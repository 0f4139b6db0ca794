#!/usr/bin/env bash
# Instructions the broker executes per produced and per fetched record, counted by
# valgrind's callgrind: repeatable on a noisy machine, so it catches hot-path regressions
# that wall-clock benchmarks cannot see. A fixed small workload: one partition, RECORDS
# records of SIZE bytes produced with acks=1 by `sluice bench`, then read back once by
# `sluice consume`. Prints one JSON object.
#
#   perf/instructions.sh [RECORDS=20000] [SIZE=1024]
#
# Needs valgrind (apt-installed if missing) and target/release/sluice.
set -euo pipefail
RECORDS=${1:-20000}
SIZE=${2:-1024}
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
command -v valgrind >/dev/null || {
  SUDO=(); [ "$(id -u)" -eq 0 ] || SUDO=(sudo)
  "${SUDO[@]}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq valgrind >&2
}
OUT=$(mktemp -d)
trap 'stop_broker; [ -n "${KEEP:-}" ] || rm -rf "$OUT"' EXIT
BROKER_ARGS="--cores 1"
start_broker valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.%p" --dump-instr=no
TOPIC=instr-$RANDOM
# Topic creation and connection setup are not counted: zero the counters after them.
# --if-not-exists: under valgrind the first attempt can time out and its retry find the topic.
"$SLUICE" topic create "$TOPIC" --if-not-exists --partitions 1 -b "$BROKER_ADDR" >/dev/null
callgrind_control -z "$BROKER_PID" >/dev/null 2>&1
"$SLUICE" bench produce -b "$BROKER_ADDR" --topic "$TOPIC" --keep-topic --partitions 1 \
  --record-size "$SIZE" --records "$RECORDS" --warmup 0 --acks 1 --linger-ms 5 \
  --producers 1 --threads 1 -q >"$OUT/produce.txt"
callgrind_control -d produce "$BROKER_PID" >/dev/null 2>&1
"$SLUICE" consume "$TOPIC" -b "$BROKER_ADDR" --from-beginning --max-messages "$RECORDS" \
  >/dev/null 2>&1
callgrind_control -d consume "$BROKER_PID" >/dev/null 2>&1
# Each dump is a file callgrind.PID.N whose header names its trigger ("dump produce").
total() {
  local f
  f=$(grep -l "^desc: Trigger: dump $1" "$OUT"/callgrind.* | head -1)
  awk '/^(summary|totals):/ {print $2; exit}' "$f"
}
P=$(total produce)
C=$(total consume)
python3 - "$P" "$C" "$RECORDS" "$SIZE" <<'PY'
import json, sys
p, c, n, size = (int(x) for x in sys.argv[1:])
print(json.dumps({
    "schema": "sluice-instructions/1", "records": n, "record_size": size,
    "instructions_produce_total": p, "instructions_fetch_total": c,
    "instructions_per_produced_record": round(p / n, 1),
    "instructions_per_fetched_record": round(c / n, 1),
}, indent=2))
PY

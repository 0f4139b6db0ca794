#!/usr/bin/env bash
# Records a baseline in one go: this machine's limits (perf/limits.sh), then every workload
# in bench/workloads/ against a fresh sluice broker (default durability: acknowledged means
# fdatasync'ed), each report with the broker's CPU time, then the plot.
#
#   bench/baseline.sh [OUT_DIR=bench/results] [WORKLOAD.toml ...]
#
# Env: BENCH_ARGS (extra `sluice bench` flags, e.g. "--duration 5 --warmup 1").
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../perf/common.sh"
OUT=${1:-$ROOT/bench/results}
shift || true
WORKLOADS=("$@")
[ ${#WORKLOADS[@]} -gt 0 ] || WORKLOADS=("$ROOT"/bench/workloads/*.toml)
mkdir -p "$OUT"
trap stop_broker EXIT

"$ROOT/perf/limits.sh" >"$OUT/limits.json"
REPORTS=()
for w in "${WORKLOADS[@]}"; do
  name=$(basename "$w" .toml)
  start_broker
  echo "== $name" >&2
  # shellcheck disable=SC2086
  "$SLUICE" bench --workload "$w" -b "$BROKER_ADDR" --broker-pid "$BROKER_PID" -q \
    -o "$OUT/$name.json" ${BENCH_ARGS:-} | tee "$OUT/$name.txt"
  stop_broker
  REPORTS+=("$OUT/$name.json")
done
"$SLUICE" bench plot "${REPORTS[@]}" -o "$OUT/latency.svg"
"$SLUICE" bench plot "${REPORTS[@]}" -o "$OUT/latency.png"

#!/usr/bin/env bash
# Where the broker's time goes under a workload: starts a broker, runs
# `sluice bench --workload FILE` against it, and profiles the broker meanwhile. With perf
# (when the kernel allows it) the result is a folded-stack file and, if inferno is
# installed (`cargo install inferno`), an interactive SVG flame graph; otherwise callgrind
# output for callgrind_annotate / kcachegrind. Also prints the top functions.
#
#   perf/flamegraph.sh bench/workloads/max-throughput-1kb-8p.toml [OUT_DIR=target/flamegraph]
set -euo pipefail
WORKLOAD=${1:?usage: perf/flamegraph.sh WORKLOAD.toml [OUT_DIR]}
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
OUT=${2:-$ROOT/target/flamegraph}
mkdir -p "$OUT"
trap stop_broker EXIT

if command -v perf >/dev/null && perf record -q -o /dev/null -- true 2>/dev/null; then
  start_broker
  "$SLUICE" bench --workload "$WORKLOAD" -b "$BROKER_ADDR" --broker-pid "$BROKER_PID" \
    -o "$OUT/report.json" -q &
  BENCH=$!
  sleep "${PROFILE_DELAY:-3}"
  perf record -F 999 -g --call-graph dwarf,16384 -p "$BROKER_PID" -o "$OUT/perf.data" \
    -- sleep "${PROFILE_SECONDS:-5}" 2>/dev/null
  wait "$BENCH"
  perf script -i "$OUT/perf.data" 2>/dev/null >"$OUT/perf.script"
  if command -v inferno-collapse-perf >/dev/null; then
    inferno-collapse-perf <"$OUT/perf.script" >"$OUT/stacks.folded"
    inferno-flamegraph <"$OUT/stacks.folded" >"$OUT/flamegraph.svg"
    echo "flame graph: $OUT/flamegraph.svg" >&2
  fi
  perf report -i "$OUT/perf.data" --no-children --percent-limit 1.5 --stdio 2>/dev/null \
    | grep -E '^ +[0-9.]+%' | head -40 | tee "$OUT/top.txt"
else
  start_broker valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out"
  "$SLUICE" bench --workload "$WORKLOAD" -b "$BROKER_ADDR" --duration 5 --warmup 1 \
    -o "$OUT/report.json" -q
  stop_broker
  callgrind_annotate "$OUT/callgrind.out" | head -40 | tee "$OUT/top.txt"
fi
echo "profile in $OUT" >&2

#!/usr/bin/env bash
# Produce throughput with idempotence on vs off, as a ratio measured in one run: one broker,
# the acks=all 1 KiB 8-partition workload run ROUNDS times in alternation with and without
# `--idempotence` (producer ids and per-partition sequences checked by the broker).
#   perf/idempotence.sh [ROUNDS=3] [SECONDS=10]  -> JSON on stdout, per round and the median
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ROUNDS=${1:-3}
SECONDS_PER_RUN=${2:-10}
WORKLOAD=$ROOT/bench/workloads/acksall-1kb-8p.toml
OUT=$(mktemp -d)
trap 'stop_broker; rm -rf "$OUT"' EXIT
start_broker

run() { # run NAME [FLAGS...] -> records/s
  local name=$1; shift
  "$SLUICE" bench --workload "$WORKLOAD" -b "$BROKER_ADDR" --broker-pid "$BROKER_PID" \
    --duration "$SECONDS_PER_RUN" --warmup 2 "$@" -o "$OUT/$name.json" >/dev/null 2>&1
  jq '.produce.records_per_s' "$OUT/$name.json"
}

ratios=()
rounds_json=()
for r in $(seq "$ROUNDS"); do
  off=$(run "off-$r")
  on=$(run "on-$r" --idempotence)
  ratio=$(jq -n "$on / $off")
  ratios+=("$ratio")
  rounds_json+=("{\"round\": $r, \"off_records_per_s\": $off, \"on_records_per_s\": $on, \"on_over_off\": $ratio}")
done
median=$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')
printf '{"workload": "acksall-1kb-8p", "seconds_per_run": %s, "rounds": [%s], "median_on_over_off": %s}\n' \
  "$SECONDS_PER_RUN" "$(IFS=,; echo "${rounds_json[*]}")" "$median" | jq .

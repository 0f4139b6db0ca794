#!/usr/bin/env bash
# Produce p99 while the cleaner compacts the topic being produced to, against the same load on
# a delete-policy topic, on one broker in one run (issue 10). The ratio is what to read: both
# phases share the machine's two cores with the harness.
#
#   perf/compaction-latency.sh [OUT.json]      # default bench/results/compaction-produce-p99.json
#
# Knobs (env): RATE (5MB/s), DURATION (20 s per phase), FILL (records put in the compacted topic
# before its phase, so the cleaner has work throughout it), KEYS (1000).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${SLUICE_BIN:-$ROOT/target/release/sluice}
OUT=${1:-$ROOT/bench/results/compaction-produce-p99.json}
RATE=${RATE:-5MB/s}
DURATION=${DURATION:-20}
FILL=${FILL:-150000}
KEYS=${KEYS:-1000}
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BOOT=127.0.0.1:$PORT
cat > "$WORK/broker.toml" <<TOML
log_cleaner_backoff_ms = 500
TOML
"$BIN" broker --listen "$BOOT" --data-dir "$WORK/data" --config "$WORK/broker.toml" >"$WORK/broker.log" 2>&1 &
BROKER=$!
trap 'kill $BROKER 2>/dev/null; wait $BROKER 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do grep -q "broker ready" "$WORK/broker.log" && break; sleep 0.1; done

TOPIC_CONF=(--partitions 4 -c segment.bytes=1048576)
"$BIN" topic create plain "${TOPIC_CONF[@]}" -b "$BOOT" >/dev/null
"$BIN" topic create compacted "${TOPIC_CONF[@]}" -c cleanup.policy=compact \
    -c min.cleanable.dirty.ratio=0.05 -b "$BOOT" >/dev/null
LOAD=(--partitions 4 --record-size 1024 --keys "$KEYS" --rate "$RATE" --duration "$DURATION"
      --warmup 2 --acks all --linger-ms 1 -q -b "$BOOT" --broker-pid "$BROKER")

echo "phase 1: $RATE to a delete-policy topic, no compaction" >&2
"$BIN" bench produce --topic plain --keep-topic "${LOAD[@]}" -o "$WORK/plain.json" >/dev/null
echo "filling the compacted topic with $FILL records over $KEYS keys" >&2
"$BIN" bench produce --topic compacted --keep-topic --partitions 4 --record-size 1024 --keys "$KEYS" \
    --rate 0 --records "$FILL" -q -b "$BOOT" >/dev/null
passes_before=$(grep -c "compacted log" "$WORK/broker.log" || true)
echo "phase 2: $RATE to the compacted topic while the cleaner works on it" >&2
"$BIN" bench produce --topic compacted --keep-topic "${LOAD[@]}" -o "$WORK/compacted.json" >/dev/null
passes_after=$(grep -c "compacted log" "$WORK/broker.log" || true)
running=$(grep -c "compacting log" "$WORK/broker.log" || true)

python3 - "$WORK/plain.json" "$WORK/compacted.json" "$OUT" "$((passes_after - passes_before))" "$running" \
    "$RATE" "$DURATION" <<'PY'
import json, sys
plain, comp = (json.load(open(p)) for p in sys.argv[1:3])
out, passes, started, rate, duration = sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], sys.argv[7]
lat = lambda r: r["latency"]["produce"]
result = {
    "schema": "sluice-compaction-latency/1",
    "what": "produce send->ack latency at a fixed rate, acks=all, 1 KiB records, 4 partitions: "
            "to a delete-policy topic (no compaction) vs to a compacted topic while the cleaner "
            "compacts it (log.cleaner.io.max.bytes.per.second default, 64 MiB/s per shard)",
    "rate": rate, "duration_s_per_phase": int(duration),
    "compaction_passes_finished_during_phase_2": passes,
    "compaction_passes_started_in_run": started,
    "without_compaction": {k: lat(plain)[k] for k in ("p50_us", "p99_us", "p999_us", "max_us")},
    "during_compaction": {k: lat(comp)[k] for k in ("p50_us", "p99_us", "p999_us", "max_us")},
    "p99_ratio_during_vs_without": lat(comp)["p99_us"] / lat(plain)["p99_us"],
    "p50_ratio_during_vs_without": lat(comp)["p50_us"] / lat(plain)["p50_us"],
    "records_per_s": {"without_compaction": plain["produce"]["records_per_s"] if "records_per_s" in plain["produce"] else plain["produce"],
                      "during_compaction": comp["produce"]["records_per_s"] if "records_per_s" in comp["produce"] else comp["produce"]},
    "errors": {"without_compaction": plain["errors"], "during_compaction": comp["errors"]},
    "machine": plain.get("machine"),
    "sluice_version": plain.get("sluice_version"),
}
json.dump(result, open(out, "w"), indent=2)
print(json.dumps({k: result[k] for k in ("without_compaction", "during_compaction", "p99_ratio_during_vs_without",
                                          "compaction_passes_finished_during_phase_2")}, indent=2))
PY

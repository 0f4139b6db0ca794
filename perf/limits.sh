#!/usr/bin/env bash
# This machine's ceilings, measured the same way every time, as one JSON object on stdout:
#   loopback TCP bandwidth (iperf3, one stream, 127.0.0.1),
#   O_DIRECT sequential 1 MiB write bandwidth (fio, libaio, queue depth 8),
#   4 KiB O_DIRECT append + fdatasync latency p50/p99 (fio, one job, a sync after every write),
#   memcpy bandwidth (256 MiB buffers, best of 5).
# Benchmark results are stated as ratios to these (bench/README.md).
#
#   perf/limits.sh [--dir DIR] [--seconds N] > limits.json
#
# DIR is where fio writes (default target/perf-limits: the disk the broker's data is on when
# it runs from this checkout); its files are removed afterwards. iperf3 and fio are
# apt-installed if missing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=$ROOT/target/perf-limits
SECONDS_EACH=5
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) DIR=$2; shift 2 ;;
    --seconds) SECONDS_EACH=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

need=()
command -v iperf3 >/dev/null || need+=(iperf3)
command -v fio >/dev/null || need+=(fio)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  SUDO=(); [ "$(id -u)" -eq 0 ] || SUDO=(sudo)
  "${SUDO[@]}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "${need[@]}" >&2
fi

WORK=$(mktemp -d)
mkdir -p "$DIR"
cleanup() {
  [ -n "${IPERF_PID:-}" ] && kill "$IPERF_PID" 2>/dev/null || true
  rm -rf "$WORK" "$DIR"/limits-*
}
trap cleanup EXIT

# --- loopback TCP, one stream ------------------------------------------------------------
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
iperf3 -s -B 127.0.0.1 -p "$PORT" -1 >"$WORK/iperf-server.log" 2>&1 &
IPERF_PID=$!
ok=
for _ in $(seq 100); do
  if iperf3 -c 127.0.0.1 -p "$PORT" -t "$SECONDS_EACH" -J >"$WORK/iperf.json" 2>/dev/null; then
    ok=1
    break
  fi
  sleep 0.2
done
kill "$IPERF_PID" 2>/dev/null || true
wait "$IPERF_PID" 2>/dev/null || true
IPERF_PID=
if [ -z "$ok" ]; then
  echo "iperf3 could not measure loopback bandwidth:" >&2
  cat "$WORK/iperf.json" "$WORK/iperf-server.log" >&2
  exit 1
fi

# --- O_DIRECT sequential 1 MiB writes --------------------------------------------------------
fio --name=limits-seqwrite --directory="$DIR" --rw=write --bs=1M --size=1G --direct=1 \
  --ioengine=libaio --iodepth=8 --numjobs=1 --runtime="$SECONDS_EACH" --time_based \
  --output-format=json >"$WORK/seq.json"

# --- 4 KiB O_DIRECT appends, fdatasync after each -------------------------------------------
fio --name=limits-fsync --directory="$DIR" --rw=write --bs=4k --size=256M --direct=1 \
  --ioengine=sync --fdatasync=1 --numjobs=1 --runtime="$SECONDS_EACH" --time_based \
  --output-format=json >"$WORK/sync.json"

python3 - "$WORK" <<'PY'
import json, os, platform, sys, time
work = sys.argv[1]
def load(name):
    with open(os.path.join(work, name)) as f:
        return json.load(f)
iperf = load("iperf.json")["end"]["sum_received"]["bits_per_second"] / 8
seq = load("seq.json")["jobs"][0]["write"]["bw_bytes"]
job = load("sync.json")["jobs"][0]
sync_pct = job["sync"]["lat_ns"]["percentile"]
write_pct = job["write"]["clat_ns"]["percentile"]
def best_memcpy(size=256 << 20, rounds=5):
    src, dst = bytearray(os.urandom(1 << 20) * (size >> 20)), bytearray(size)
    best = 0.0
    for _ in range(rounds):
        t = time.perf_counter(); dst[:] = src; dt = time.perf_counter() - t
        best = max(best, size / dt)
    return best
mem_kb = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
out = {
    "schema": "sluice-limits/1",
    "measured_unix_s": int(time.time()),
    "machine": {"cores": os.cpu_count(), "memory_bytes": mem_kb * 1024,
                "kernel": platform.release()},
    "loopback_tcp_bytes_per_s": iperf,
    "odirect_seq_write_1mib_bytes_per_s": seq,
    "append_4kib_fdatasync_p50_us": sync_pct["50.000000"] / 1e3,
    "append_4kib_fdatasync_p99_us": sync_pct["99.000000"] / 1e3,
    "append_4kib_write_p50_us": write_pct["50.000000"] / 1e3,
    "append_4kib_write_p99_us": write_pct["99.000000"] / 1e3,
    "memcpy_bytes_per_s": best_memcpy(),
}
print(json.dumps(out, indent=2))
PY

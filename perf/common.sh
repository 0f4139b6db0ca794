# Shared by the perf/ scripts (sourced): start and stop a throwaway broker on an ephemeral
# loopback port with its own data directory.
#   start_broker [PREFIX...]  sets BROKER_PID, BROKER_ADDR, BROKER_DIR; PREFIX wraps the
#                             binary (e.g. valgrind --tool=callgrind ...)
#   stop_broker               SIGTERM, wait, remove the data directory
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SLUICE=${SLUICE_BIN:-$ROOT/target/release/sluice}

start_broker() {
  BROKER_DIR=$(mktemp -d)
  "$@" "$SLUICE" broker --listen 127.0.0.1:0 --data-dir "$BROKER_DIR/data" ${BROKER_ARGS:-} \
    >"$BROKER_DIR/stdout" 2>"$BROKER_DIR/stderr" &
  BROKER_PID=$!
  for _ in $(seq 600); do
    BROKER_ADDR=$(grep -o '127\.0\.0\.1:[0-9]*' "$BROKER_DIR/stdout" 2>/dev/null | head -1 || true)
    [ -n "$BROKER_ADDR" ] && return 0
    kill -0 "$BROKER_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "broker did not start; its stderr:" >&2
  cat "$BROKER_DIR/stderr" >&2
  return 1
}

stop_broker() {
  if [ -n "${BROKER_PID:-}" ]; then
    kill -TERM "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=
  fi
  [ -n "${BROKER_DIR:-}" ] && rm -rf "$BROKER_DIR"
  BROKER_DIR=
}

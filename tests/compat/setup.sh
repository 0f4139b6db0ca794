#!/usr/bin/env bash
# Installs and builds every client of the compatibility suite, idempotently, from the registries:
#   Maven Central -> target/compat/m2 (kafka-clients, kafka-streams, kafka-tools pinned in
#                    tests/compat/java/pom.xml, connect-* in tests/compat/java/connect/pom.xml),
#                    the Java checks built once into target/compat/java-build, the classpaths in
#                    target/compat/java.classpath and target/compat/connect.classpath;
#   Go module proxy -> target/compat/gomod (franz-go, kadm, sarama pinned in tests/compat/go/go.mod),
#                    one binary target/compat/bin/compat-go;
#   npm           -> target/compat/node (kafkajs pinned exactly in tests/compat/node/package.json;
#                    it has no dependencies of its own).
# Needs java (17+), mvn, go and node/npm on PATH (see the README).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=$ROOT/target/compat
mkdir -p "$OUT/bin" "$OUT/node"
step() { printf '\n==> %s\n' "$*"; }

for tool in java mvn go node npm; do
  command -v "$tool" >/dev/null || { echo "setup: $tool is not on PATH" >&2; exit 1; }
done

# A stamp per part: rebuild only when its sources changed.
stamp_of() { find "$@" -type f -not -path '*/node_modules/*' -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16; }

java_stamp=$(stamp_of "$ROOT/tests/compat/java")
if [ "$(cat "$OUT/java.stamp" 2>/dev/null)" != "$java_stamp" ] || [ ! -s "$OUT/java.classpath" ] || [ ! -s "$OUT/connect.classpath" ]; then
  step "Java checks and Kafka tools (Maven Central -> $OUT/m2)"
  mvn -B -q -f "$ROOT/tests/compat/java/pom.xml" -Dmaven.repo.local="$OUT/m2" \
    package dependency:build-classpath -Dmdep.outputFile="$OUT/java.classpath"
  mvn -B -q -f "$ROOT/tests/compat/java/connect/pom.xml" -Dmaven.repo.local="$OUT/m2" \
    dependency:build-classpath -Dmdep.outputFile="$OUT/connect.classpath"
  echo "$java_stamp" >"$OUT/java.stamp"
fi

go_stamp=$(stamp_of "$ROOT/tests/compat/go")
if [ "$(cat "$OUT/go.stamp" 2>/dev/null)" != "$go_stamp" ] || [ ! -x "$OUT/bin/compat-go" ]; then
  step "Go checks (module proxy -> $OUT/gomod)"
  (cd "$ROOT/tests/compat/go" &&
    GOMODCACHE=$OUT/gomod GOPATH=$OUT/gopath GOCACHE=$OUT/gocache GOFLAGS=-modcacherw \
      go build -o "$OUT/bin/compat-go" .)
  echo "$go_stamp" >"$OUT/go.stamp"
fi

node_stamp=$(stamp_of "$ROOT/tests/compat/node/package.json")
if [ "$(cat "$OUT/node.stamp" 2>/dev/null)" != "$node_stamp" ] || [ ! -d "$OUT/node/node_modules/kafkajs" ]; then
  step "kafkajs (npm -> $OUT/node)"
  cp "$ROOT/tests/compat/node/package.json" "$OUT/node/"
  (cd "$OUT/node" && npm install --silent --no-audit --no-fund --no-package-lock --cache "$OUT/npm-cache")
  echo "$node_stamp" >"$OUT/node.stamp"
fi
echo "compat clients ready in $OUT"

#!/usr/bin/env bash
# Packs a sluice binary as the release tarball the sluice_install role fetches:
#   sluice-VERSION-ARCH-linux.tar.gz holding bin/sluice, and its "sha256:<hex>" checksum in
#   the .sha256 file beside it (the value of sluice_release_checksum).
# Usage: ansible/release.sh [BINARY (default target/release/sluice)] [OUT_DIR (default target/release)]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${1:-$ROOT/target/release/sluice}
OUT=${2:-$ROOT/target/release}
VERSION=$(grep -m1 '^version' "$ROOT/Cargo.toml" | cut -d'"' -f2)
NAME=sluice-$VERSION-$(uname -m)-linux.tar.gz
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/bin" "$OUT"
install -m 0755 "$BIN" "$STAGE/bin/sluice"
tar -C "$STAGE" -czf "$OUT/$NAME" bin
echo "sha256:$(sha256sum "$OUT/$NAME" | cut -d' ' -f1)" > "$OUT/$NAME.sha256"
echo "$OUT/$NAME"

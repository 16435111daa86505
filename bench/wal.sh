#!/usr/bin/env bash
# What the write-ahead log costs: the same `graylens loadgen` run against a
# release server with `wal.sync = "always"` (the default: fsync before every
# answer, group commit) and with `wal.sync = "off"`, side by side, ROUNDS
# times alternating. Prints spans per server CPU-second, request latency
# p50/p99, and checks that every span sent is stored.
#
# Usage: bench/wal.sh [requests per transport, default 1000] [rounds, default 2]
set -euo pipefail
REQ="${1:-1000}"
ROUNDS="${2:-2}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source bench/lib.sh
for round in $(seq "$ROUNDS"); do
  for sync in always off; do
    start_graylens "[wal]\nsync = \"$sync\""
    echo "== round $round, wal.sync = $sync"
    "$BIN" loadgen --server-pid "$PID" --grpc "$GRPC" --http "$HTTP" --api "$API" --requests "$REQ" \
      | grep -E "end to end|stored"
    kill "$PID"; wait "$PID" 2>/dev/null || true
    trap - EXIT; rm -rf "$WORK"
  done
done

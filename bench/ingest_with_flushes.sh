#!/usr/bin/env bash
# Steady-state ingest: `graylens loadgen` sends REQUESTS (default 3000)
# requests of 512 spans per transport to a release server with the default
# flush threshold (500,000 rows), so several Parquet flushes fall inside
# each measured run and their CPU is counted. Prints spans per server
# CPU-second and each flush's rows and duration, for each binary given
# (default target/release/graylens) in turn; the first binary's `loadgen`
# drives every run.
#
# Usage: bench/ingest_with_flushes.sh [requests] [binary ...]
#   e.g. bench/ingest_with_flushes.sh 2000 /tmp/before/graylens target/release/graylens
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
REQ="${1:-3000}"
binaries "${@:2}"
LOADGEN="${BINS[0]}"
for B in "${BINS[@]}"; do
  BIN="$B"
  echo "$B:"
  start_graylens '[store]\nflush_rows = 500000' GRAYLENS_LOG=graylens_analyzer=debug,info
  "$LOADGEN" loadgen --server-pid "$PID" --grpc "$GRPC" --http "$HTTP" --requests "$REQ" \
    | grep -E "payload|decode|end to end"
  kill "$PID"; wait "$PID" || true
  echo "flushes:"; { grep "flushed to Parquet" "$WORK/server.log" || echo "  none"; } | sed "s/.*rows=/  rows=/"
  trap - EXIT; rm -rf "$WORK"
done

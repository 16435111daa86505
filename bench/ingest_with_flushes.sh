#!/usr/bin/env bash
# Steady-state ingest: `graylens loadgen` sends REQUESTS (default 3000)
# requests of 512 spans per transport to a release server with the default
# flush threshold (500,000 rows), so several Parquet flushes fall inside
# each measured run and their CPU is counted. Prints spans per server
# CPU-second and each flush's rows and duration.
#
# Usage: bench/ingest_with_flushes.sh [requests]   (needs target/release/graylens)
set -euo pipefail
REQ="${1:-3000}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BIN=target/release/graylens
[[ -x "$BIN" ]] || { echo "error: $BIN not found; run 'cargo build --release' first" >&2; exit 1; }
WORK="$(mktemp -d)"
trap 'kill "$PID" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
printf '[store]\nflush_rows = 500000\n' > "$WORK/graylens.toml"
GRAYLENS_LOG=graylens_analyzer=debug,info "$BIN" serve --config "$WORK/graylens.toml" --data-dir "$WORK/data" \
  --otlp-grpc-addr 127.0.0.1:0 --otlp-http-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 \
  > "$WORK/ready" 2> "$WORK/server.log" &
PID=$!
for _ in $(seq 100); do grep -q ready "$WORK/ready" 2>/dev/null && break; sleep 0.1; done
field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" "$WORK/ready"; }
"$BIN" loadgen --server-pid "$PID" --grpc "http://$(field otlp_grpc)" --http "http://$(field otlp_http)" --requests "$REQ" \
  | grep -E "payload|decode|end to end"
kill "$PID"; wait "$PID" || true
echo "flushes:"; grep "flushed hot" "$WORK/server.log" | sed 's/.*rows=/  rows=/'

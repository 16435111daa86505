#!/usr/bin/env bash
# Overload: more than the memory limit can hold, sent as fast as the server
# takes it. A release server with limits.memory_bytes = 1 GiB (a quarter of it
# is the SQL pool, the rest bounds requests in flight and hot data) and
# Parquet flushes only every 20 s, so hot data fills the limit between
# flushes; `loadgen` (8 requests in flight of 4,096 spans each, ~1.6 MB)
# retries each 503 / UNAVAILABLE after its Retry-After, as SDKs do.
# Prints the refusals, the server's peak RSS (VmHWM) and checks that every
# acknowledged span is stored.
#
# Usage: bench/overload.sh [requests per transport, default 600]
set -euo pipefail
REQ="${1:-600}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source bench/lib.sh
start_graylens "[limits]\nmemory_bytes = 1073741824\n[store]\nflush_interval_secs = 20\nflush_rows = 100000000"
echo "== limits.memory_bytes = 1 GiB, flush every 20 s, $REQ requests of 4096 spans per transport"
"$BIN" loadgen --server-pid "$PID" --grpc "$GRPC" --http "$HTTP" --api "$API" --requests "$REQ" \
  --spans-per-request 4096 --resources 8 --concurrency 8
echo "memory refusals (server): $(curl -s "$API/metrics" | sed -n 's/^graylens_memory_refusals_total \(.*\)/\1/p')"
kill "$PID"; wait "$PID" 2>/dev/null || true

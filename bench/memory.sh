#!/usr/bin/env bash
# Memory per hot span: each binary given (default target/release/graylens)
# serves a fresh store with no flush in the window, `graylens loadgen` sends
# REQUESTS requests of 512 spans per transport (the ingest benchmark's
# payload: ten attributes per span, seven per resource), and the script
# prints, per span stored: the growth of the server's resident set (VmRSS
# after the load less before it) and the bytes the hot store holds
# (`graylens_store_memory_bytes`, Arrow buffers with their capacity), and
# the CPU time of the thread that merges small batches (`store::coalesce`).
# It also prints the growth of the anonymous part of the resident set
# (RssAnon): the rest is mostly the executable's own pages, read in as the
# load runs code not run before, a fixed cost of about 24 MB, not per span.
#
# `loadgen` sends DISTINCT_REQUESTS (default 64) requests with their own
# random values in turn, as real traffic differs from request to request
# (span ids, client addresses): with one request sent again and again, the
# hot store's dictionaries hold fewer distinct values than they would.
#
# Usage: [SPANS_PER_REQUEST=512] [DISTINCT_REQUESTS=64] bench/memory.sh [requests] [binary ...]
#   e.g. bench/memory.sh 1000 /tmp/before/graylens target/release/graylens
#        SPANS_PER_REQUEST=128 bench/memory.sh 4000   (the same spans in smaller requests)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
REQ="${1:-1000}"
SPANS="${SPANS_PER_REQUEST:-512}"
DISTINCT="${DISTINCT_REQUESTS:-64}"
binaries "${@:2}"
LOADGEN="$BIN"
for B in "${BINS[@]}"; do
  BIN="$B"
  start_graylens '[store]\nflush_rows = 100000000\nflush_interval_secs = 86400'
  rss() { awk -v f="${1:-VmRSS}:" '$1 == f {print $2 * 1024}' "/proc/$PID/status"; }
  sleep 1
  BEFORE=$(rss); ANON_BEFORE=$(rss RssAnon)
  "$LOADGEN" loadgen --server-pid "$PID" --grpc "$GRPC" --http "$HTTP" --api "$API" --requests "$REQ" \
    --spans-per-request "$SPANS" --distinct-requests "$DISTINCT" | grep -E "end to end|stored" | sed 's/^/  /'
  sleep 2
  AFTER=$(rss); ANON_AFTER=$(rss RssAnon)
  for T in /proc/"$PID"/task/*; do
    if [[ "$(cat "$T/comm" 2>/dev/null || true)" == graylens-merge ]]; then
      awk -v hz="$(getconf CLK_TCK)" '{printf "  merging thread: %.2f s CPU\n", ($14 + $15) / hz}' "$T/stat"
    fi
  done
  HOT=$(curl -s "$API/metrics" | awk '$1 == "graylens_store_memory_bytes" {print $2}')
  ROWS=$(curl -s "$API/api/v1/sql" -H 'content-type: application/json' \
    -d '{"sql":"SELECT count(*) AS n FROM spans"}' | grep -o '[0-9]\+' | tail -1)
  awk -v b="$B" -v r="$ROWS" -v d="$((AFTER - BEFORE))" -v a="$((ANON_AFTER - ANON_BEFORE))" -v h="$HOT" \
    -v t="$AFTER" 'BEGIN {
    printf "%s: %d spans; resident set +%.0f bytes per span (anonymous +%.0f; %.0f MB in all); hot store %.0f bytes per span\n",
      b, r, d / r, a / r, t / 1e6, h / r }'
  kill -TERM "$PID"; wait "$PID" || true
  trap - EXIT; rm -rf "$WORK"
done

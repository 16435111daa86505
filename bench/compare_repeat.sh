#!/usr/bin/env bash
# Repeated comparisons on a running server, as the dashboards, Flagger's
# metric queries and /api/v1/verdict ask them: each binary given (default:
# target/release/graylens) serves a fresh store, `graylens loadgen` sends
# REQUESTS requests of 512 spans per transport (three services, two
# versions; flushed to Parquet every 500,000 rows of a table and after 30 s
# for the rest, which the script waits for), and then /api/v1/compare of
# checkout 1.4.0 vs 1.5.0 is asked RUNS times in a row (default 10). Printed per binary: the first
# comparison's wall time, the median of the others, the server CPU of all
# of them, and the segments the comparisons opened and reused
# (graylens_store_segments_read_total, graylens_store_segments_reused_total).
# Every comparison of every binary must count the same requests.
#
# Usage: bench/compare_repeat.sh [requests] [runs] [binary ...]
#   e.g. bench/compare_repeat.sh 8000 10 /tmp/graylens-before target/release/graylens
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
REQ="${1:-5000}" RUNS="${2:-10}"
binaries "${@:3}"
export GRAYLENS_LOG=warn
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# Server CPU seconds (user + system, all threads) from /proc.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$PID/stat"; }
counter() { curl -sf "$API/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
EXPECT=""
for bin in "${BINS[@]}"; do
  BIN="$bin"
  start_graylens '[store]\nflush_rows = 500000'
  "$BIN" loadgen --server-pid "$PID" --grpc "$GRPC" --http "$HTTP" --requests "$REQ" | grep -E "end to end" >&2
  # Wait for the interval flush to write what is left in memory, so every
  # comparison reads the same stored segments.
  for _ in $(seq 120); do
    [[ "$(counter graylens_store_memory_bytes)" == 0 ]] && break
    sleep 1
  done
  url="$API/api/v1/compare?service=checkout&baseline=1.4.0&canary=1.5.0"
  times=()
  per=()  # after each comparison: segments opened/reused so far
  c0=$(cpu)
  for i in $(seq "$RUNS"); do
    t0=$(date +%s.%N)
    curl -sf "$url" > "$WORK/out.json"
    t1=$(date +%s.%N)
    times+=("$(echo "$t1 - $t0" | bc -l)")
    per+=("$(counter graylens_store_segments_read_total)/$(counter graylens_store_segments_reused_total || true)")
    got=$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); print(c["verdict"]["decision"], c["baseline"]["requests"], c["canary"]["requests"])' "$WORK/out.json")
    [[ -z "$EXPECT" ]] && EXPECT="$got"
    [[ "$got" == "$EXPECT" ]] || { echo "error: $bin run $i answered '$got', expected '$EXPECT'" >&2; exit 1; }
  done
  c1=$(cpu)
  printf '%s\n  answer (decision, baseline requests, canary requests): %s\n' "$bin" "$got"
  printf '  first %.3f s, median of the next %s %.3f s, server CPU of all %.2f s; segments opened %s, reused %s\n' \
    "${times[0]}" "$(( RUNS - 1 ))" "$(printf '%s\n' "${times[@]:1}" | median)" "$(echo "$c1 - $c0" | bc -l)" \
    "$(counter graylens_store_segments_read_total)" "$(counter graylens_store_segments_reused_total || true)"
  printf '  wall per comparison (s): %s\n' "$(printf '%.3f ' "${times[@]}")"
  printf '  segments opened/reused so far, after each: %s\n' "${per[*]}"
  kill -TERM "$PID"; wait "$PID" || true
  rm -rf "$WORK"
done

#!/usr/bin/env bash
# Queries over stored data, to compare builds: one release graylens
# (target/release/graylens) ingests REQUESTS requests of 512 spans per
# transport with `graylens loadgen` (three services, two versions, ten
# attributes per span) and stops, flushing them to Parquet; then each
# binary given (default: target/release/graylens) runs, in turn, the same
# offline commands RUNS times (default 5), and the median wall time of each
# is printed:
#   - the UI's service list (GROUP BY service, version, role, lane);
#   - an ad-hoc aggregation per operation and version;
#   - a GROUP BY over a span attribute (`attributes['http.route']`);
#   - a query that matches nothing (process start, store opening, planning);
#   - `graylens compare` of checkout 1.4.0 vs 1.5.0.
# Every binary must print the same results, or the script stops.
#
# Usage: bench/query.sh [requests] [runs] [binary ...]
#   e.g. bench/query.sh 5000 5 ../before/target/release/graylens target/release/graylens
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
REQ="${1:-5000}" RUNS="${2:-5}"
binaries "${@:3}"
start_graylens '[store]\nflush_rows = 500000'
"$BIN" loadgen --server-pid "$PID" --grpc "$GRPC" --http "$HTTP" --requests "$REQ" | grep -E "end to end"
kill -TERM "$PID"; wait "$PID" || true
DATA="$WORK/data"
export GRAYLENS_LOG=warn

# 1-services is the query of analyzer/src/services.rs (its ENTRY_SPANS filter spelled out): keep them alike.
declare -A QUERIES=(
  [1-services]="SELECT service_name, service_version, rollout_role, traffic_lane, count(*), sum(CASE WHEN is_error THEN 1 ELSE 0 END) FROM spans WHERE span_kind IN (2, 5) OR parent_span_id IS NULL GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
  [2-operations]="SELECT span_name, service_version, count(*), avg(duration_ns), max(duration_ns) FROM spans GROUP BY 1, 2 ORDER BY 1, 2"
  [3-attribute]="SELECT attributes['http.route'] AS route, service_name, count(*) FROM spans GROUP BY 1, 2 ORDER BY 1, 2"
  [4-nothing]="SELECT count(*) FROM spans WHERE service_name = 'no-such-service' AND duration_ns > 0"
)
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# time_cmd OUT CMD...: wall seconds of CMD on stdout, its output into OUT.
time_cmd() {
  local out="$1"; shift
  local t0 t1
  t0=$(date +%s.%N); "$@" > "$out"; t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}
"${BINS[0]}" query --data-dir "$DATA" --format json "SELECT count(*) AS n FROM spans" \
  | python3 -c 'import json,sys; print("spans stored:", json.load(sys.stdin)["rows"][0][0])'
for name in $(printf '%s\n' "${!QUERIES[@]}" compare | sort); do
  times=()  # per binary: its wall times, space-separated
  for _ in $(seq "$RUNS"); do
    for i in "${!BINS[@]}"; do
      if [[ "$name" == compare ]]; then
        cmd=("${BINS[$i]}" compare --data-dir "$DATA" --service checkout --baseline 1.4.0 --canary 1.5.0 --format json)
      else
        cmd=("${BINS[$i]}" query --data-dir "$DATA" --format json "${QUERIES[$name]}")
      fi
      times[$i]+="$(time_cmd "$WORK/out.$i" "${cmd[@]}") "
      if [[ "$name" == compare ]]; then
        # Only the counts and the decision: the elapsed times inside differ.
        python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); print(c["verdict"]["decision"], c["baseline"]["requests"], c["canary"]["requests"])' \
          "$WORK/out.$i" > "$WORK/out.$i.key"
        mv "$WORK/out.$i.key" "$WORK/out.$i"
      fi
      cmp -s "$WORK/out.0" "$WORK/out.$i" || { echo "error: ${BINS[$i]} answered $name differently" >&2; exit 1; }
    done
  done
  for i in "${!BINS[@]}"; do
    printf '%-14s %-60s median %.3f s of %s runs\n' "$name" "${BINS[$i]}" \
      "$(tr ' ' '\n' <<< "${times[$i]}" | grep . | median)" "$RUNS"
  done
done

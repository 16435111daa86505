#!/usr/bin/env bash
# Scale-out benchmark (README, Performance, "Cluster"), on loopback with a moto S3 server:
#   1. ingest: one node on a local directory, one node on the bucket, two nodes on the bucket
#      with every request split by service as the Collector's load_balancing exporter routes it
#      (`graylens loadgen` with two endpoints), ROUNDS times in turn; spans per CPU-second of all
#      the nodes and spans per second of wall time, every span checked stored;
#   2. a comparison over stored data: the same `compare` through the API over the local
#      directory (a node restarted on it) and over the bucket (a fresh node that holds nothing of
#      its own), median of RUNS, with the Parquet segments each opened;
#   3. 24 hours of data in the bucket (loadgen's times spread over the last 24 h, a quarter hour
#      apart, ingested at full speed with a flush every 100,000 rows and compaction every 2 s),
#      then a one-hour and a 24-hour `compare` from a fresh node: time and segments opened.
#
# Usage: bench/cluster.sh [requests] [rounds] [runs]    (defaults 1000 2 10; requests per transport)
# Needs target/release/graylens and a Python with moto[server] (GRAYLENS_TEST_PYTHON, or the
# virtualenv that .ci/run creates in target/ci-venv). Results also go to target/bench-cluster.txt.
set -euo pipefail
REQ="${1:-1000}"
ROUNDS="${2:-2}"
RUNS="${3:-10}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BIN=target/release/graylens
PY="${GRAYLENS_TEST_PYTHON:-target/ci-venv/bin/python}"
OUT=target/bench-cluster.txt
[[ -x "$BIN" ]] || { echo "error: $BIN not found; run 'cargo build --release' first" >&2; exit 1; }
"$PY" -c 'import moto' 2>/dev/null || {
  echo "error: $PY has no moto; run 'bash .ci/run' once (it creates target/ci-venv) or set GRAYLENS_TEST_PYTHON" >&2
  exit 1
}

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

MOTO_PORT="$(free_port)"
"$PY" -m moto.server -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
PIDS+=($!)
export AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
  AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true
for _ in $(seq 300); do curl -sf "$AWS_ENDPOINT_URL/moto-api/" >/dev/null && break; sleep 0.1; done
curl -sf -X PUT "$AWS_ENDPOINT_URL/bench" >/dev/null
export GRAYLENS_LOG=warn

# start_node NAME TOML [serve flags...]: NODE_PID, NODE_GRPC, NODE_HTTP, NODE_API of the node
# serving $WORK/NAME.
start_node() {
  local name="$1" config="$2"; shift 2
  printf '%b\n' "$config" >"$WORK/$name.toml"
  "$BIN" serve --config "$WORK/$name.toml" --data-dir "$WORK/$name" \
    --otlp-grpc-addr 127.0.0.1:0 --otlp-http-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 "$@" \
    >"$WORK/$name.ready" 2>>"$WORK/$name.log" &
  NODE_PID=$!
  PIDS+=("$NODE_PID")
  for _ in $(seq 300); do grep -q ready "$WORK/$name.ready" 2>/dev/null && break; sleep 0.1; done
  grep -q ready "$WORK/$name.ready" || { echo "error: node $name did not start:" >&2; cat "$WORK/$name.log" >&2; exit 1; }
  field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" "$WORK/$name.ready"; }
  NODE_GRPC="http://$(field otlp_grpc)"
  NODE_HTTP="http://$(field otlp_http)"
  NODE_API="$(field http)"
}
# stop_node PID: a graceful stop (everything flushed).
stop_node() { kill -TERM "$1"; wait "$1" || true; }
metric() { curl -sf "$1/metrics" | awk -v m="$2" '$1 == m {print $2}'; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Eight services, a baseline and a canary of each, in every request.
LOAD=(--services 8 --resources 16 --requests "$REQ")
{
  echo "# bench/cluster.sh $REQ $ROUNDS $RUNS: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -sm), $(nproc) CPUs"
  echo "# moto $("$PY" -c 'import moto; print(moto.__version__)') on 127.0.0.1:$MOTO_PORT"
} | tee "$OUT"

# --- 1. ingest ---------------------------------------------------------------------------------
for round in $(seq "$ROUNDS"); do
  echo | tee -a "$OUT"
  echo "== round $round: one node, local directory ==" | tee -a "$OUT"
  start_node "local-$round" ""
  "$BIN" loadgen "${LOAD[@]}" --grpc "$NODE_GRPC" --http "$NODE_HTTP" --server-pid "$NODE_PID" \
    --api "$NODE_API" | grep -E "end to end|stored" | tee -a "$OUT"
  stop_node "$NODE_PID"

  echo "== round $round: one node, bucket ==" | tee -a "$OUT"
  start_node "one-$round" "" --storage-url "s3://bench/one-$round" --node-id node-1
  "$BIN" loadgen "${LOAD[@]}" --grpc "$NODE_GRPC" --http "$NODE_HTTP" --server-pid "$NODE_PID" \
    --api "$NODE_API" | grep -E "end to end|stored" | tee -a "$OUT"
  stop_node "$NODE_PID"

  echo "== round $round: two nodes, bucket, split by service ==" | tee -a "$OUT"
  start_node "a-$round" "" --storage-url "s3://bench/two-$round" --node-id node-a
  A=("$NODE_PID" "$NODE_GRPC" "$NODE_HTTP" "$NODE_API")
  start_node "b-$round" "" --storage-url "s3://bench/two-$round" --node-id node-b
  B=("$NODE_PID" "$NODE_GRPC" "$NODE_HTTP" "$NODE_API")
  "$BIN" loadgen "${LOAD[@]}" --grpc "${A[1]},${B[1]}" --http "${A[2]},${B[2]}" \
    --server-pid "${A[0]},${B[0]}" --api "${A[3]},${B[3]}" | grep -E "end to end|stored" | tee -a "$OUT"
  stop_node "${A[0]}"
  stop_node "${B[0]}"
done

# --- 2. a comparison over the local directory and over the bucket --------------------------------
# time_compare API QUERY: the median seconds of RUNS compares, and the segments each opened.
time_compare() {
  local api="$1" query="$2" times=() before after
  curl -sf "$api/api/v1/compare?$query" >"$WORK/first.json"   # a warm-up: caches, listing
  before="$(metric "$api" graylens_store_segments_read_total)"
  for _ in $(seq "$RUNS"); do
    times+=("$(curl -sf -o "$WORK/cmp.json" -w '%{time_total}' "$api/api/v1/compare?$query")")
  done
  after="$(metric "$api" graylens_store_segments_read_total)"
  local requests
  requests="$("$PY" -c 'import json,sys; c=json.load(open(sys.argv[1])); print(c["baseline"]["requests"], c["canary"]["requests"])' "$WORK/cmp.json")"
  printf '%s s median of %s, %s segments opened per compare, requests (baseline canary) %s\n' \
    "$(printf '%s\n' "${times[@]}" | median)" "$RUNS" "$(( (${after%.*} - ${before%.*}) / RUNS ))" "$requests"
}
Q="service=service-00&baseline=1.4.0&canary=1.5.0"
echo | tee -a "$OUT"
echo "== compare over stored data (the rows of round 1) ==" | tee -a "$OUT"
start_node "local-1" ""
printf 'local directory: ' | tee -a "$OUT"; time_compare "$NODE_API" "$Q" | tee -a "$OUT"
stop_node "$NODE_PID"
start_node "reader-1" "" --storage-url "s3://bench/one-1" --node-id reader
for _ in $(seq 100); do
  [[ "$(curl -sf "$NODE_API/api/v1/compare?$Q" | grep -c waiting_for)" == 0 ]] && break; sleep 0.2
done
printf 'bucket:          ' | tee -a "$OUT"; time_compare "$NODE_API" "$Q" | tee -a "$OUT"
stop_node "$NODE_PID"

# --- 3. 24 hours in the bucket --------------------------------------------------------------------
echo | tee -a "$OUT"
echo "== 24 hours of data in the bucket (ingested at full speed, then compacted) ==" | tee -a "$OUT"
start_node "day" "[store]\nflush_rows = 100000\ncompact_interval_secs = 2" --storage-url "s3://bench/day" --node-id node-1
"$BIN" loadgen "${LOAD[@]}" --spread-hours 24 --grpc "$NODE_GRPC" --http "$NODE_HTTP" \
  --server-pid "$NODE_PID" --api "$NODE_API" | grep -E "end to end|stored|time:" | tee -a "$OUT"
# Compaction (every 2 s here) until a pass merges nothing more: three looks 2 s apart.
t0=$(date +%s); last=-1; same=0
while (( same < 3 && $(date +%s) - t0 < 300 )); do
  now="$(metric "$NODE_API" graylens_store_segments_merged_total)"
  if [[ "$now" == "$last" ]]; then same=$((same + 1)); else same=0; last="$now"; fi
  sleep 2
done
echo "segments merged by compaction: $last (settled $(( $(date +%s) - t0 )) s after the load)" | tee -a "$OUT"
stop_node "$NODE_PID"
keys="$("$PY" - "$AWS_ENDPOINT_URL" <<'PYEOF'
import sys, urllib.request, re
url, token, n = sys.argv[1] + "/bench?list-type=2&prefix=day/spans/", None, 0
while True:
    body = urllib.request.urlopen(url + ("&continuation-token=" + urllib.parse.quote(token) if token else "")).read().decode()
    n += len(re.findall(r"<Key>[^<]*\.parquet</Key>", body))
    m = re.search(r"<NextContinuationToken>([^<]*)</NextContinuationToken>", body)
    if not m: break
    token = m.group(1)
print(n)
PYEOF
)"
echo "span segments in the bucket: $keys (a merge's inputs stay 10 minutes for running readers)" | tee -a "$OUT"
start_node "day-reader" "" --storage-url "s3://bench/day" --node-id reader
for _ in $(seq 100); do
  [[ "$(curl -sf "$NODE_API/api/v1/compare?$Q" | grep -c waiting_for)" == 0 ]] && break; sleep 0.2
done
FROM="$(date -u -d '-3 hours' +%Y-%m-%dT%H:00:00Z)"
TO="$(date -u -d '-2 hours' +%Y-%m-%dT%H:00:00Z)"
printf 'one hour (%s to %s): ' "$FROM" "$TO" | tee -a "$OUT"
time_compare "$NODE_API" "$Q&from=$FROM&to=$TO" | tee -a "$OUT"
printf '24 hours:                                          ' | tee -a "$OUT"
time_compare "$NODE_API" "$Q" | tee -a "$OUT"
stop_node "$NODE_PID"
echo
echo "results written to $OUT"

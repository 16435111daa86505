#!/usr/bin/env bash
# Ingest while the alert engine judges: the same `graylens loadgen` run
# against one graylens, first with no rollout, then with six rollouts
# (three services, by version and by role, over all stored data) judged
# every second. Reports spans/s (wall) and spans per server CPU-second of
# each run, and the alert engine's evaluations during the second one.
#
# Usage: bench/ingest_under_analysis.sh [requests]   (per transport, default 400)
# Needs target/release/graylens (cargo build --release).
set -euo pipefail
REQUESTS="${1:-400}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source bench/lib.sh
start_graylens '[alerts]\ninterval_secs = 1'

loadgen() { "$BIN" loadgen --server-pid "$PID" --grpc "$GRPC" --http "$HTTP" --requests "$REQUESTS" | grep "end to end"; }
evals() { curl -s "$API/metrics" | awk '/^graylens_rollout_evaluation_seconds_(sum|count)/ {printf "%s=%s ", $1, $2}'; echo; }

echo "== without rollouts"
loadgen
for svc in checkout cart payments; do
  for sel in '"baseline":"1.4.0","canary":"1.5.0","by":"version"' '"baseline":"baseline","canary":"canary","by":"role"'; do
    curl -sf "$API/api/v1/rollouts" -H 'content-type: application/json' \
      -d "{\"service\":\"$svc\",$sel,\"since\":\"2020-01-01T00:00:00Z\"}" > /dev/null
  done
done
sleep 2
echo "== with 6 rollouts judged every second over all stored data"
before="$(evals)"
loadgen
after="$(evals)"
echo "engine before: $before"
echo "engine after:  $after"
curl -s "$API/api/v1/sql" -H 'content-type: application/json' -d '{"sql":"SELECT count(*) AS spans FROM spans"}'; echo

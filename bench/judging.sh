#!/usr/bin/env bash
# Judging cost (issue #12): ROLLOUTS rollouts, one service each (baseline 1.4.0, canary 1.5.0),
# judged every INTERVAL seconds by the alert engine while `graylens loadgen` adds data to all of
# them in PHASES, then a quiet minute. After each phase: the spans per rollout so far, the looks
# (one look = one rollout judged once) of the phase, their mean time and p50/p99 (upper bounds,
# from the buckets of graylens_rollout_evaluation_seconds), and the share of one core the looks
# took (seconds of looks per second of wall time). If a look re-read its window, its time would
# grow with the spans per rollout; with incremental judging it should not.
#
# Usage: bench/judging.sh [rollouts] [phases] [requests] [interval]   (defaults 200 6 200 10;
#   requests per transport and phase, each of 20 spans per rollout)
# Needs target/release/graylens (cargo build --release).
set -euo pipefail
ROLLOUTS="${1:-200}"
PHASES="${2:-6}"
REQ="${3:-200}"
INTERVAL="${4:-10}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source bench/lib.sh
start_graylens "[alerts]\ninterval_secs = $INTERVAL"
echo "# bench/judging.sh $ROLLOUTS $PHASES $REQ $INTERVAL: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -sm), $(nproc) CPUs"

for i in $(seq 0 $((ROLLOUTS - 1))); do
  svc="$(printf 'service-%02d' "$i")"
  curl -sf "$API/api/v1/rollouts" -H 'content-type: application/json' \
    -d "{\"service\":\"$svc\",\"baseline\":\"1.4.0\",\"canary\":\"1.5.0\"}" >/dev/null
done

# The histogram's cumulative buckets as "le=count ..." and its sum.
snapshot() {
  curl -sf "$API/metrics" | awk '
    /^graylens_rollout_evaluation_seconds_bucket/ { match($0, /le="[^"]*"/); printf "%s=%s ", substr($0, RSTART + 4, RLENGTH - 5), $2 }
    /^graylens_rollout_evaluation_seconds_sum/ { printf "sum=%s ", $2 }'
}
# report LABEL BEFORE AFTER WALL_SECONDS: the looks between two snapshots.
report() {
  python3 - "$@" <<'EOF'
import sys
label, before, after, wall = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
parse = lambda s: dict(kv.split("=") for kv in s.split())
b, a = parse(before), parse(after)
les = [k for k in a if k != "sum"]
d = {k: float(a[k]) - float(b.get(k, 0)) for k in les}
n = d["+Inf"]
secs = float(a["sum"]) - float(b.get("sum", 0))
def q(p):
    for k in les:
        if d[k] >= p * n:
            return k
    return "+Inf"
if n == 0:
    print(f"{label}: no looks")
else:
    print(f"{label}: {n:.0f} looks, mean {secs / n * 1e3:.2f} ms, p50 <= {q(0.5)} s, p99 <= {q(0.99)} s, "
          f"looks took {secs / wall * 100:.1f}% of one core over {wall:.0f} s")
EOF
}

# The first look at each rollout starts its subscription with one scan of what is stored: here
# before any data, so the phases below show looks at a running subscription only.
before="$(snapshot)"
sleep $((INTERVAL + 2))
report "first looks, no data yet" "$before" "$(snapshot)" $((INTERVAL + 2))

per_phase=$((REQ * 2 * 20))
for p in $(seq "$PHASES"); do
  before="$(snapshot)"
  t0=$(date +%s.%N)
  "$BIN" loadgen --server-pid "$PID" --grpc "$GRPC" --http "$HTTP" --requests "$REQ" \
    --services "$ROLLOUTS" --resources $((2 * ROLLOUTS)) --spans-per-request $((20 * ROLLOUTS)) \
    | grep -E "end to end" | sed 's/^/  /'
  # Let a few looks see the phase's data.
  sleep $((2 * INTERVAL))
  wall=$(echo "$(date +%s.%N) - $t0" | bc -l)
  report "phase $p, $((p * per_phase)) spans per rollout" "$before" "$(snapshot)" "$wall"
done
before="$(snapshot)"
sleep 60
report "quiet minute" "$before" "$(snapshot)" 60
curl -s "$API/api/v1/sql" -H 'content-type: application/json' \
  -d '{"sql":"SELECT count(*) AS spans FROM spans"}'
echo

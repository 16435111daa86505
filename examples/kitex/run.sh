#!/usr/bin/env bash
# Kitex full-link gray release against graylens, on this machine:
#   graylens, inventory 1.4.0 (baseline), inventory 1.5.0-gray (slower on Stock), cart, and a
#   frontend sending 2,000 requests, 30% of them colored "gray"; then graylens's lane comparison.
#
#   examples/kitex/run.sh [path/to/graylens]     (default: target/release/graylens, built if missing)
#
# Needs Go (1.24 or newer). Everything listens on 127.0.0.1 with ports the system picks.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
graylens="${1:-$repo/target/release/graylens}"
if [ ! -x "$graylens" ]; then
  (cd "$repo" && cargo build --release --locked --bin graylens)
fi
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "building the Kitex services (Kitex v0.15.2, obs-opentelemetry v0.2.9)..."
(cd "$here" && go build -o "$work/shop" .)

# wait_line FILE PATTERN: the first line of FILE matching PATTERN, within 30 s.
wait_line() {
  for _ in $(seq 300); do
    if line="$(grep -m1 "$2" "$1" 2>/dev/null)"; then echo "$line"; return 0; fi
    sleep 0.1
  done
  echo "no '$2' in $1:" >&2; cat "$1" >&2; return 1
}
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }

"$graylens" serve --data-dir "$work/data" --otlp-grpc-addr 127.0.0.1:0 --otlp-http-addr 127.0.0.1:0 \
  --http-addr 127.0.0.1:0 >"$work/graylens.out" 2>"$work/graylens.log" &
pids+=($!)
ready="$(wait_line "$work/graylens.out" "graylens ready")"
otlp="$(field "$ready" otlp_grpc)"
api="$(field "$ready" http)"
echo "graylens: OTLP/gRPC $otlp, API and UI $api"

services=()
start() { # name, flags...: starts a service (not in a subshell: its pid is kept); sets $addr
  local name="$1"; shift
  "$work/shop" -otlp "$otlp" "$@" >"$work/$name.out" 2>"$work/$name.log" &
  pids+=($!)
  services+=($!)
  addr="$(wait_line "$work/$name.out" "listening on" | awk '{print $NF}')"
}
start inventory -role inventory -version 1.4.0; inventory="$addr"
start inventory-gray -role inventory -version 1.5.0-gray -stock-delay 12ms; gray="$addr"
start cart -role cart -version 2.1.0 -inventory "$inventory" -gray-inventory "$gray"; cart="$addr"
echo "inventory 1.4.0 on $inventory, inventory 1.5.0-gray on $gray (gray lane only), cart on $cart"

echo "frontend: 2,000 requests, 30% colored gray..."
"$work/shop" -otlp "$otlp" -role frontend -version 3.0.0 -inventory "$inventory" -gray-inventory "$gray" \
  -cart "$cart" -requests 2000 -rate 200 -gray-share 0.3
# The services flush their spans when they stop.
for p in "${services[@]}"; do kill "$p"; done
for p in "${services[@]}"; do
  wait "$p" || { echo "a service failed: see its log" >&2; cat "$work"/*.log >&2; exit 1; }
done
echo
"$work/shop" -role report -graylens "$api"

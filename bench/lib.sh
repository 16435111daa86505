# Shared by the bench scripts: start a release graylens on loopback port 0.
#   start_graylens "TOML config text" [ENV=VALUE ...]
# Sets WORK (a temporary directory, removed on exit), PID, GRPC, HTTP (OTLP
# URLs) and API (http://host:port of the API); the server log is $WORK/server.log.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/target/release/graylens"
[[ -x "$BIN" ]] || { echo "error: $BIN not found; run 'cargo build --release' first" >&2; exit 1; }

# binaries [PATH ...]: sets BINS to each PATH made absolute from the current
# directory (default: $BIN), then enters $ROOT. For the scripts that compare
# builds; source this file before leaving the directory the paths are from.
binaries() {
  BINS=()
  local b
  for b in "${@:-$BIN}"; do BINS+=("$(cd "$(dirname "$b")" && pwd)/$(basename "$b")"); done
  cd "$ROOT"
}

start_graylens() {
  local config="$1"; shift
  WORK="$(mktemp -d)"
  trap 'kill "$PID" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
  printf '%b\n' "$config" > "$WORK/graylens.toml"
  env "$@" "$BIN" serve --config "$WORK/graylens.toml" --data-dir "$WORK/data" \
    --otlp-grpc-addr 127.0.0.1:0 --otlp-http-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 \
    > "$WORK/ready" 2> "$WORK/server.log" &
  PID=$!
  for _ in $(seq 100); do grep -q ready "$WORK/ready" 2>/dev/null && break; sleep 0.1; done
  grep -q ready "$WORK/ready" || { echo "error: graylens did not start:" >&2; cat "$WORK/server.log" >&2; exit 1; }
  local field
  field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" "$WORK/ready"; }
  GRPC="http://$(field otlp_grpc)"; HTTP="http://$(field otlp_http)"; API="$(field http)"
}

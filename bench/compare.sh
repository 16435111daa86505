#!/usr/bin/env bash
# Side-by-side OTLP ingest benchmark: graylens vs. a minimal OpenTelemetry
# Collector (OTLP receiver -> nop exporter, built from bench/otelcol).
#
# Usage: bench/compare.sh [requests]     (requests per transport, default 400)
#
# Needs target/release/graylens (run `cargo build --release` first) and Go
# to build target/otelcol-bench/otelcol when it is missing. Both servers are
# driven by the same `graylens loadgen`, which reports spans per CPU-second
# of the server process. Results go to target/bench-compare.txt.
set -euo pipefail

REQUESTS="${1:-400}"
CONCURRENCY=4

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

GRAYLENS="target/release/graylens"
OTELCOL="target/otelcol-bench/otelcol"
OTELCOL_CONFIG="bench/otelcol/config.yaml"
OUT="target/bench-compare.txt"

if [[ ! "$REQUESTS" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: bench/compare.sh [requests]" >&2
    exit 2
fi

if [[ ! -x "$GRAYLENS" ]]; then
    echo "error: $GRAYLENS not found; run 'cargo build --release' first" >&2
    exit 1
fi

if [[ ! -x "$OTELCOL" ]]; then
    if ! command -v go >/dev/null 2>&1; then
        echo "error: $OTELCOL not found and go is not installed" >&2
        exit 1
    fi
    echo "building $OTELCOL (Go, takes a few minutes the first time)..." >&2
    (cd bench/otelcol && go build -trimpath -o "$ROOT/$OTELCOL" .)
fi

WORK="$(mktemp -d)"
SERVER_PID=""

# Stop the server started last (SIGTERM, then SIGKILL after 15 s) and reap it.
stop_server() {
    local pid="$SERVER_PID"
    [[ -n "$pid" ]] || return 0
    SERVER_PID=""
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    stop_server
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

for port in 24317 24318 24319 14317 14318; do
    if port_open "$port"; then
        echo "error: something already listens on 127.0.0.1:$port" >&2
        exit 1
    fi
done

: >"$OUT"
{
    echo "# bench/compare.sh: $REQUESTS requests per transport, concurrency $CONCURRENCY"
    echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -sm), $(nproc) CPUs"
    echo "# collector: $("$OTELCOL" --version 2>&1)"
} | tee -a "$OUT"

# --- graylens ---------------------------------------------------------------
"$GRAYLENS" serve \
    --data-dir "$WORK/graylens-data" \
    --otlp-grpc-addr 127.0.0.1:24317 \
    --otlp-http-addr 127.0.0.1:24318 \
    --http-addr 127.0.0.1:24319 \
    >"$WORK/graylens.out" 2>"$WORK/graylens.err" &
SERVER_PID=$!

for _ in $(seq 300); do
    grep -q '^graylens ready' "$WORK/graylens.out" && break
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "error: graylens serve exited early:" >&2
        cat "$WORK/graylens.out" "$WORK/graylens.err" >&2
        exit 1
    fi
    sleep 0.1
done
if ! grep -q '^graylens ready' "$WORK/graylens.out"; then
    echo "error: graylens serve not ready after 30 s" >&2
    cat "$WORK/graylens.out" "$WORK/graylens.err" >&2
    exit 1
fi

{
    echo
    echo "== graylens serve (pid $SERVER_PID) =="
} | tee -a "$OUT"
"$GRAYLENS" loadgen \
    --grpc http://127.0.0.1:24317 \
    --http http://127.0.0.1:24318 \
    --server-pid "$SERVER_PID" \
    --requests "$REQUESTS" \
    --concurrency "$CONCURRENCY" 2>&1 | tee -a "$OUT"
stop_server

# --- OpenTelemetry Collector ------------------------------------------------
"$OTELCOL" --config "$OTELCOL_CONFIG" \
    >"$WORK/otelcol.out" 2>"$WORK/otelcol.err" &
SERVER_PID=$!

for _ in $(seq 300); do
    port_open 14318 && break
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "error: otelcol exited early:" >&2
        cat "$WORK/otelcol.out" "$WORK/otelcol.err" >&2
        exit 1
    fi
    sleep 0.1
done
if ! port_open 14318; then
    echo "error: otelcol not listening on 127.0.0.1:14318 after 30 s" >&2
    cat "$WORK/otelcol.out" "$WORK/otelcol.err" >&2
    exit 1
fi

{
    echo
    echo "== OpenTelemetry Collector, otlp -> nop (pid $SERVER_PID) =="
} | tee -a "$OUT"
"$GRAYLENS" loadgen \
    --grpc http://127.0.0.1:14317 \
    --http http://127.0.0.1:14318 \
    --server-pid "$SERVER_PID" \
    --requests "$REQUESTS" \
    --concurrency "$CONCURRENCY" 2>&1 | tee -a "$OUT"
stop_server

echo
echo "results written to $OUT"

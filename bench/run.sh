#!/usr/bin/env bash
# Reproduces the tables of BENCHMARKS.md: builds release binaries, starts
# mock-llm and streamguard on loopback, runs streamguard-bench against the
# mock directly and through streamguard (gRPC and HTTP, with and without an
# input rail), then the concurrency ceiling, then the criterion benches.
# Usage: bash bench/run.sh [--quick]   (results in bench/results/)
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=${1:-}
OUT=bench/results
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cargo build --release --bins
BIN=target/release
MOCK_ADDR=127.0.0.1:9000
GRPC=127.0.0.1:50099
HTTP=127.0.0.1:8099

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

start() { # name, command...
  local name=$1; shift
  "$@" >"$OUT/$name.log" 2>&1 &
  pids+=($!)
  echo $! >"$OUT/$name.pid"
}
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0; sleep 0.1; done; echo "no listener on $1" >&2; exit 1; }

run_latency() { # ttft_ms gap_ms tokens
  start mock "$BIN/mock-llm" --addr $MOCK_ADDR --ttft-ms "$1" --token-delay-ms "$2" --tokens "$3"
  start streamguard "$BIN/streamguard" serve --config bench/configs --grpc-addr $GRPC --http-addr $HTTP
  wait_port $MOCK_ADDR; wait_port $GRPC; wait_port $HTTP
}

bench() { # label target url config concurrency requests
  "$BIN/streamguard-bench" --label "$1" --target "$2" --url "$3" --config-id "$4" \
    --concurrency "$5" --requests "$6" \
    --pid "streamguard=$(cat $OUT/streamguard.pid)" --pid "mock=$(cat $OUT/mock.pid)" | tee -a "$OUT/latency.jsonl"
}

: >"$OUT/latency.jsonl"
run_latency 20 5 20
for c in 1 64 512; do
  n=$(( c == 1 ? 100 : c * 8 ))
  [ -n "$QUICK" ] && n=$(( c == 1 ? 20 : c * 2 ))
  bench "c$c" direct "http://$MOCK_ADDR/v1" bench "$c" "$n"
  bench "c$c" grpc "http://$GRPC" bench "$c" "$n"
  bench "c$c" http "http://$HTTP/v1" bench "$c" "$n"
  bench "c$c+rail" grpc "http://$GRPC" bench-rail "$c" "$n"
  bench "c$c+rail" http "http://$HTTP/v1" bench-rail "$c" "$n"
done
cleanup; pids=(); sleep 0.5

# The ceiling: long streams (100 tokens, 100 ms apart) all open at once, each
# run on a fresh streamguard so its RSS growth is the streams' own.
: >"$OUT/ceiling.jsonl"
for c in 1000 5000 10000; do
  [ -n "$QUICK" ] && [ "$c" -gt 1000 ] && continue
  for t in grpc http; do
    run_latency 50 100 100
    url="http://$GRPC"; [ $t = http ] && url="http://$HTTP/v1"
    "$BIN/streamguard-bench" --label "ceiling" --target $t --url "$url" --config-id bench \
      --concurrency $c --requests $c \
      --pid "streamguard=$(cat $OUT/streamguard.pid)" --pid "mock=$(cat $OUT/mock.pid)" | tee -a "$OUT/ceiling.jsonl"
    cleanup; pids=(); sleep 1
  done
done

python3 bench/report.py "$OUT"

if [ -z "$QUICK" ]; then
  cargo bench --bench hot_paths -- --warm-up-time 1 --measurement-time 3 | tee "$OUT/criterion.txt"
fi

#!/usr/bin/env bash
# Reproduces the tables of BENCHMARKS.md. Builds release binaries, starts
# mock-llm, streamguard and bare-relay (the floor: the same RPC and SSE
# endpoint with nothing but the upstream call) on loopback, and runs
# streamguard-bench against the mock directly, through the relay and through
# streamguard (gRPC and HTTP), all in one run:
#   1. latency: a paced mock (first token and each token 20 ms apart, 64 tokens)
#      at concurrency 1, 64 and 512;
#   2. saturation: a mock with no gaps (16 tokens), at 64 and 512 streams at once,
#      for throughput and CPU per stream;
#   3. the ceiling: long streams all open at once (1,000 / 5,000 / 10,000), and
#      streamguard's RSS and open fds before, at the end of and 30 s after the
#      10,000-stream burst (bench/results/burst.txt);
#   4. the criterion micro-benchmarks.
# Usage: bash bench/run.sh [--quick]   (results in bench/results/)
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=${1:-}
OUT=bench/results
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cargo build --release --features bench --bins
BIN=target/release
MOCK_ADDR=127.0.0.1:9000
GRPC=127.0.0.1:50099
HTTP=127.0.0.1:8099
RELAY_GRPC=127.0.0.1:50098
RELAY_HTTP=127.0.0.1:8098

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; pids=(); sleep 0.5; }
trap cleanup EXIT

start() { # name, command...
  local name=$1; shift
  "$@" >"$OUT/$name.log" 2>&1 &
  pids+=($!)
  echo $! >"$OUT/$name.pid"
}
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0; sleep 0.1; done; echo "no listener on $1" >&2; exit 1; }

servers() { # ttft_ms gap_ms tokens
  start mock "$BIN/mock-llm" --addr $MOCK_ADDR --ttft-ms "$1" --token-delay-ms "$2" --tokens "$3"
  start streamguard "$BIN/streamguard" serve --config bench/configs --grpc-addr $GRPC --http-addr $HTTP
  start relay "$BIN/bare-relay" --grpc-addr $RELAY_GRPC --http-addr $RELAY_HTTP --upstream "http://$MOCK_ADDR/v1"
  wait_port $MOCK_ADDR; wait_port $GRPC; wait_port $HTTP; wait_port $RELAY_GRPC; wait_port $RELAY_HTTP
}

bench() { # file label target url config server concurrency requests
  "$BIN/streamguard-bench" --label "$2" --target "$3" --url "$4" --config-id "$5" \
    --concurrency "$7" --requests "$8" \
    --pid "server=$(cat "$OUT/$6.pid")" --pid "mock=$(cat $OUT/mock.pid)" | tee -a "$OUT/$1"
}

# Every path at one concurrency: the mock directly, the relay, streamguard.
paths() { # file label-suffix concurrency requests
  bench "$1" "direct$2" direct "http://$MOCK_ADDR/v1" bench mock "$3" "$4"
  bench "$1" "relay$2" grpc "http://$RELAY_GRPC" bench relay "$3" "$4"
  bench "$1" "streamguard$2" grpc "http://$GRPC" bench streamguard "$3" "$4"
  bench "$1" "relay$2" http "http://$RELAY_HTTP/v1" bench relay "$3" "$4"
  bench "$1" "streamguard$2" http "http://$HTTP/v1" bench streamguard "$3" "$4"
}

: >"$OUT/latency.jsonl"
servers 20 20 64
for c in 1 64 512; do
  n=$(( c == 1 ? 40 : c * 8 ))
  [ -n "$QUICK" ] && n=$(( c == 1 ? 10 : c * 2 ))
  paths latency.jsonl "" "$c" "$n"
  bench latency.jsonl "streamguard+rail" grpc "http://$GRPC" bench-rail streamguard "$c" "$n"
  bench latency.jsonl "streamguard+rail" http "http://$HTTP/v1" bench-rail streamguard "$c" "$n"
done
cleanup

: >"$OUT/saturation.jsonl"
servers 0 0 16
for c in 64 512; do
  n=20000
  [ -n "$QUICK" ] && n=2000
  paths saturation.jsonl "" "$c" "$n"
done
cleanup

# The ceiling: long streams (100 tokens, 100 ms apart) all open at once, each
# run on a fresh streamguard so its RSS growth is the streams' own.
: >"$OUT/ceiling.jsonl"; : >"$OUT/burst.txt"
snap() { local p; p=$(cat "$OUT/streamguard.pid")
  echo "$1: rss_kib=$(awk '/VmRSS/{print $2}' "/proc/$p/status") fds=$(ls "/proc/$p/fd" | wc -l)"; }
for c in 1000 5000 10000; do
  [ -n "$QUICK" ] && [ "$c" -gt 1000 ] && continue
  for t in grpc http; do
    servers 50 100 100
    url="http://$GRPC"; [ $t = http ] && url="http://$HTTP/v1"
    snap "$t before" >>"$OUT/burst.txt"
    bench ceiling.jsonl ceiling $t "$url" bench streamguard $c $c
    if [ "$c" = 10000 ]; then
      snap "$t stream end" >>"$OUT/burst.txt"; sleep 30; snap "$t 30 s later" >>"$OUT/burst.txt"
    fi
    cleanup
  done
done

python3 bench/report.py "$OUT"

if [ -z "$QUICK" ]; then
  cargo bench --bench hot_paths -- --warm-up-time 1 --measurement-time 3 | tee "$OUT/criterion.txt"
fi

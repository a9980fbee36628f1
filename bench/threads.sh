#!/usr/bin/env bash
# Thread requests per second: the same streamed HTTP request without a
# thread, with threads in memory, and with threads in Redis (a local
# redis-server), in one run on an instant mock (no pacing: what is measured
# is streamguard and its datastore). Each worker continues a thread of its
# own (10 turns each, then the next), so every thread request loads it and
# stores it again (GET + SET).
# Usage: bash bench/threads.sh [--quick]   (results in bench/results/threads.jsonl)
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=${1:-}
OUT=bench/results
mkdir -p "$OUT"
command -v redis-server >/dev/null || { echo "needs redis-server (apt-get install redis-server)" >&2; exit 1; }
cargo build --release --features bench --bins
BIN=target/release
MOCK=127.0.0.1:9000
REDIS_PORT=6390
MEM=127.0.0.1:8091
RED=127.0.0.1:8092
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
redis-server --port $REDIS_PORT --bind 127.0.0.1 --save '' --appendonly no >"$OUT/threads-redis.log" 2>&1 &
pids+=($!); redis=$!
"$BIN/mock-llm" --addr $MOCK --ttft-ms 0 --token-delay-ms 0 --tokens 16 >"$OUT/threads-mock.log" 2>&1 &
pids+=($!)
"$BIN/streamguard" serve --config bench/configs --grpc-addr 127.0.0.1:50091 --http-addr $MEM >"$OUT/threads-mem.log" 2>&1 &
pids+=($!); mem=$!
"$BIN/streamguard" serve --config bench/configs --grpc-addr 127.0.0.1:50092 --http-addr $RED \
  --datastore "redis://127.0.0.1:$REDIS_PORT/0" >"$OUT/threads-red.log" 2>&1 &
pids+=($!); red=$!
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0; sleep 0.1; done; echo "no listener on $1" >&2; exit 1; }
wait_port $MOCK; wait_port $MEM; wait_port $RED; wait_port 127.0.0.1:$REDIS_PORT
secs=10; [ -n "$QUICK" ] && secs=3
: >"$OUT/threads.jsonl"
run() { # label url server-pid [bench args]
  local label=$1 url=$2 pid=$3; shift 3
  "$BIN/streamguard-bench" --label "$label" --target http --url "http://$url/v1" --config-id bench \
    --concurrency 32 --duration $secs --pid "server=$pid" --pid "redis=$redis" "$@" | tee -a "$OUT/threads.jsonl"
}
run "no thread" $MEM $mem
run "memory threads" $MEM $mem --thread-prefix "bench-memory-thread"
run "no thread (Redis server)" $RED $red
run "Redis threads" $RED $red --thread-prefix "bench-redis-thread"
python3 - "$OUT/threads.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("| requests | streams | errors | requests/s | TTFT p50 ms | TTFT p99 ms | server CPU ms / request | Redis CPU ms / request |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    cpu = {p["name"]: p["cpu_seconds"] * 1e3 / max(r["streams"], 1) for p in r["processes"]}
    print(f'| {r["label"]} | {r["streams"]} | {r["errors"]} | {r["streams_per_second"]:.0f} | '
          f'{r["ttft"]["p50_ms"]:.2f} | {r["ttft"]["p99_ms"]:.2f} | {cpu["server"]:.3f} | {cpu["redis"]:.3f} |')
PY

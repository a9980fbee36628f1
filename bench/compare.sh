#!/usr/bin/env bash
# Two streamguard builds and the bare relay in one run, on one mock: the
# "before / after" tables of BENCHMARKS.md. Build the other revision first,
# e.g. `git worktree add /tmp/old REV && (cd /tmp/old && cargo build --release)`.
# Usage: bash bench/compare.sh OLD_BINARY NEW_BINARY TTFT_MS GAP_MS TOKENS "C..." REQUESTS
#   (REQUESTS 0: 40 at concurrency 1, else 8 per stream slot)
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=$1; NEW=$2; TTFT=$3; GAP=$4; TOK=$5; CS=$6; N=$7
cargo build --release --features bench --bin mock-llm --bin bare-relay --bin streamguard-bench
B=target/release
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
"$B/mock-llm" --addr 127.0.0.1:9000 --ttft-ms "$TTFT" --token-delay-ms "$GAP" --tokens "$TOK" >/dev/null 2>&1 & MOCK=$!; pids+=($!)
"$OLD" serve --config bench/configs --grpc-addr 127.0.0.1:50099 --http-addr 127.0.0.1:8099 >/dev/null 2>&1 & OLDP=$!; pids+=($!)
"$NEW" serve --config bench/configs --grpc-addr 127.0.0.1:50097 --http-addr 127.0.0.1:8097 >/dev/null 2>&1 & NEWP=$!; pids+=($!)
"$B/bare-relay" --grpc-addr 127.0.0.1:50098 --http-addr 127.0.0.1:8098 --upstream http://127.0.0.1:9000/v1 >/dev/null 2>&1 & RL=$!; pids+=($!)
sleep 1.5
for c in $CS; do
  n=$N; [ "$n" = 0 ] && n=$(( c == 1 ? 40 : c * 8 ))
  for t in "grpc http://127.0.0.1:50098 relay $RL" "grpc http://127.0.0.1:50099 before $OLDP" "grpc http://127.0.0.1:50097 after $NEWP" \
           "http http://127.0.0.1:8098/v1 relay $RL" "http http://127.0.0.1:8099/v1 before $OLDP" "http http://127.0.0.1:8097/v1 after $NEWP"; do
    set -- $t
    "$B/streamguard-bench" --label "$3" --target "$1" --url "$2" --config-id bench \
      --concurrency "$c" --requests "$n" --pid "server=$4" --pid "mock=$MOCK"
  done
done

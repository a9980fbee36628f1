#!/usr/bin/env bash
# GuardStream next to StreamGenerate, in one run on the paced mock (20 ms to
# the first token, then one every 20 ms, 64 tokens): the mock directly, then
# StreamGenerate (streamguard calls the mock) and GuardStream (the bench
# calls the mock itself and forwards each chunk), without rails (`bench`)
# and with an output rail on chunk windows (`bench-windows`), at concurrency
# 1 and 64. GuardStream's "round trip" is each chunk's time from being
# forwarded to coming back guarded: what guarding adds per chunk.
# Usage: bash bench/guard.sh [--quick]   (results in bench/results/guard.jsonl)
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=${1:-}
OUT=bench/results
mkdir -p "$OUT"
cargo build --release --features bench --bins
BIN=target/release
MOCK=127.0.0.1:9000
GRPC=127.0.0.1:50097
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
"$BIN/mock-llm" --addr $MOCK --ttft-ms 20 --token-delay-ms 20 --tokens 64 >"$OUT/guard-mock.log" 2>&1 &
pids+=($!); mock=$!
"$BIN/streamguard" serve --config bench/configs --grpc-addr $GRPC >"$OUT/guard-server.log" 2>&1 &
pids+=($!); server=$!
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0; sleep 0.1; done; echo "no listener on $1" >&2; exit 1; }
wait_port $MOCK; wait_port $GRPC
: >"$OUT/guard.jsonl"
run() { # label target url config concurrency requests
  "$BIN/streamguard-bench" --label "$1" --target "$2" --url "$3" --config-id "$4" \
    --llm-url "http://$MOCK/v1" --concurrency "$5" --requests "$6" \
    --pid "server=$server" --pid "mock=$mock" | tee -a "$OUT/guard.jsonl"
}
for c in 1 64; do
  n=$(( c == 1 ? 40 : c * 8 )); [ -n "$QUICK" ] && n=$(( c == 1 ? 10 : c * 2 ))
  run direct direct "http://$MOCK/v1" bench "$c" "$n"
  for cfg in bench bench-windows; do
    run "StreamGenerate $cfg" grpc "http://$GRPC" "$cfg" "$c" "$n"
    run "GuardStream $cfg" guard "http://$GRPC" "$cfg" "$c" "$n"
  done
done
python3 - "$OUT/guard.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("| concurrency | path | config | streams | errors | TTFT p50 ms | added p50 | added p99 | gap p50 | per-chunk round trip p50 | p99 | server CPU ms / stream |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
direct = {r["concurrency"]: r for r in rows if r["target"] == "direct"}
for r in rows:
    d = direct[r["concurrency"]]
    name, _, cfg = r["label"].partition(" ")
    added = "—" if r is d else f'{r["ttft"]["p50_ms"] - d["ttft"]["p50_ms"]:+.2f}'
    added99 = "—" if r is d else f'{r["ttft"]["p99_ms"] - d["ttft"]["p99_ms"]:+.2f}'
    rt = r["round_trip"]
    cpu = next(p for p in r["processes"] if p["name"] == "server")["cpu_seconds"] * 1e3 / max(r["streams"], 1)
    print(f'| {r["concurrency"]} | {name if r is not d else "mock directly"} | {cfg or "—"} | {r["streams"]} | {r["errors"]} | '
          f'{r["ttft"]["p50_ms"]:.2f} | {added} | {added99} | {r["gap"]["p50_ms"]:.2f} | '
          f'{rt["p50_ms"]:.3f} | {rt["p99_ms"]:.3f} | {"—" if r is d else f"{cpu:.3f}"} |'
          .replace("| 0.000 | 0.000 |", "| — | — |"))
PY

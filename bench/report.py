"""Turns bench/results/*.jsonl into the markdown tables of BENCHMARKS.md."""
import json
import sys
from pathlib import Path

out = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results")
rows = [json.loads(l) for l in (out / "latency.jsonl").read_text().splitlines() if l.strip()]


def proc(r, name):
    return next(p for p in r["processes"] if p["name"] == name)


print("### Time to first token and added latency\n")
print("| concurrency | path | streams | errors | TTFT p50 | p90 | p99 | max | added p50 | added p99 | gap p50 | gap p99 | streams/s | chunks/s | streamguard CPU µs/chunk | mock CPU µs/chunk |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
direct = {}
for r in rows:
    c = r["concurrency"]
    rail = "+rail" in r["label"]
    if r["target"] == "direct":
        direct[c] = r
    d = direct.get(c)
    path = {"direct": "mock directly", "grpc": "gRPC StreamGenerate", "http": "HTTP SSE"}[r["target"]]
    if rail:
        path += " + input rail"
    t = r["ttft"]
    added50 = f'{t["p50_ms"] - d["ttft"]["p50_ms"]:+.2f}' if d and r["target"] != "direct" else "—"
    added99 = f'{t["p99_ms"] - d["ttft"]["p99_ms"]:+.2f}' if d and r["target"] != "direct" else "—"
    chunks = max(r["chunks"], 1)
    sg = proc(r, "streamguard")["cpu_seconds"] * 1e6 / chunks if r["target"] != "direct" else 0
    mk = proc(r, "mock")["cpu_seconds"] * 1e6 / chunks
    print(f'| {c} | {path} | {r["streams"]} | {r["errors"]} | {t["p50_ms"]:.2f} | {t["p90_ms"]:.2f} | {t["p99_ms"]:.2f} | {t["max_ms"]:.2f} '
          f'| {added50} | {added99} | {r["gap"]["p50_ms"]:.2f} | {r["gap"]["p99_ms"]:.2f} | {r["streams_per_second"]:.0f} | {r["chunks_per_second"]:.0f} '
          f'| {sg:.1f} | {mk:.1f} |')

ceiling = out / "ceiling.jsonl"
if ceiling.exists():
    print("\n### Concurrent streams held (100 tokens, 100 ms apart: every stream open at once)\n")
    print("| path | concurrent streams | completed | errors | TTFT p99 | gap p99 | streamguard peak RSS | RSS per stream | streamguard CPU µs/chunk | mock CPU µs/chunk |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for l in ceiling.read_text().splitlines():
        if not l.strip():
            continue
        r = json.loads(l)
        sg = proc(r, "streamguard")
        mk = proc(r, "mock")
        per = (sg["rss_peak_kib"] - sg["rss_before_kib"]) / max(r["concurrency"], 1)
        chunks = max(r["chunks"], 1)
        print(f'| {r["target"]} | {r["concurrency"]} | {r["streams"]} | {r["errors"]} | {r["ttft"]["p99_ms"]:.1f} ms | {r["gap"]["p99_ms"]:.1f} ms '
              f'| {sg["rss_peak_kib"] / 1024:.0f} MiB | {per:.1f} KiB | {sg["cpu_seconds"] * 1e6 / chunks:.1f} | {mk["cpu_seconds"] * 1e6 / chunks:.1f} |'
              + (f' first error: {r["first_error"]}' if r["errors"] else ""))

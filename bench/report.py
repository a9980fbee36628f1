"""Turns bench/results/*.jsonl into the markdown tables of BENCHMARKS.md."""
import json
import sys
from pathlib import Path

out = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results")


def rows(name):
    f = out / name
    if not f.exists():
        return []
    return [json.loads(l) for l in f.read_text().splitlines() if l.strip()]


def proc(r, name):
    return next(p for p in r["processes"] if p["name"] == name)


def path(r):
    return {"direct": "mock directly", "grpc": "gRPC", "http": "HTTP SSE"}[r["target"]]


def who(r):
    if r["target"] == "direct":
        return "—"
    return r["label"].replace("+rail", " + input rail")


def cpu_per_stream_ms(r):
    return proc(r, "server")["cpu_seconds"] * 1e3 / max(r["streams"], 1)


latency = rows("latency.jsonl")
if latency:
    print("### Time to first token (paced mock: 20 ms to the first token, then one every 20 ms, 64 tokens)\n")
    print("| concurrency | path | server | streams | errors | TTFT p50 ms | p99 | added p50 | added p99 | added p50 over the relay's | gap p50 | gap p99 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    direct, relay = {}, {}
    for r in latency:
        c, t = r["concurrency"], r["ttft"]
        if r["target"] == "direct":
            direct[c] = r
        d = direct.get(c)
        added50 = t["p50_ms"] - d["ttft"]["p50_ms"] if d else 0
        added99 = t["p99_ms"] - d["ttft"]["p99_ms"] if d else 0
        if r["label"] == "relay":
            relay[(c, r["target"])] = added50
        base = relay.get((c, r["target"]))
        over = f"{added50 - base:+.2f}" if base is not None and r["label"].startswith("streamguard") else "—"
        a50 = f"{added50:+.2f}" if r["target"] != "direct" else "—"
        a99 = f"{added99:+.2f}" if r["target"] != "direct" else "—"
        print(f'| {c} | {path(r)} | {who(r)} | {r["streams"]} | {r["errors"]} | {t["p50_ms"]:.2f} | {t["p99_ms"]:.2f} '
              f'| {a50} | {a99} | {over} | {r["gap"]["p50_ms"]:.2f} | {r["gap"]["p99_ms"]:.2f} |')

saturation = rows("saturation.jsonl")
if saturation:
    print("\n### Saturation (mock with no gaps, 16 tokens; the load generator, the mock and the server share the 2 cores)\n")
    print("| concurrency | path | server | streams | errors | streams/s | server CPU ms/stream | vs the relay: throughput | vs the relay: CPU/stream |")
    print("|---|---|---|---|---|---|---|---|---|")
    relay = {}
    for r in saturation:
        if r["target"] == "direct":
            continue
        c = r["concurrency"]
        cpu = cpu_per_stream_ms(r)
        if r["label"] == "relay":
            relay[(c, r["target"])] = (r["streams_per_second"], cpu)
        base = relay.get((c, r["target"]))
        vs_t = f'{r["streams_per_second"] / base[0]:.0%}' if base and r["label"] != "relay" else "—"
        vs_c = f"{cpu / base[1]:.2f}×" if base and r["label"] != "relay" else "—"
        print(f'| {c} | {path(r)} | {who(r)} | {r["streams"]} | {r["errors"]} | {r["streams_per_second"]:.0f} | {cpu:.3f} | {vs_t} | {vs_c} |')

ceiling = rows("ceiling.jsonl")
if ceiling:
    print("\n### Concurrent streams held (100 tokens, 100 ms apart: every stream open at once)\n")
    print("| path | concurrent streams | completed | errors | TTFT p99 | gap p99 | streamguard peak RSS | RSS per stream | streamguard CPU µs/chunk | mock CPU µs/chunk |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in ceiling:
        sg = proc(r, "server")
        mk = proc(r, "mock")
        per = (sg["rss_peak_kib"] - sg["rss_before_kib"]) / max(r["concurrency"], 1)
        chunks = max(r["chunks"], 1)
        print(f'| {r["target"]} | {r["concurrency"]} | {r["streams"]} | {r["errors"]} | {r["ttft"]["p99_ms"]:.1f} ms | {r["gap"]["p99_ms"]:.1f} ms '
              f'| {sg["rss_peak_kib"] / 1024:.0f} MiB | {per:.1f} KiB | {sg["cpu_seconds"] * 1e6 / chunks:.1f} | {mk["cpu_seconds"] * 1e6 / chunks:.1f} |'
              + (f' first error: {r["first_error"]}' if r["errors"] else ""))

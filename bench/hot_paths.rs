//! Micro-benchmarks of the per-chunk hot paths: SSE event parsing, the
//! engine's relay of a chunk, and the output-rail window checker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{hint::black_box, sync::Arc};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::{FutureExt, StreamExt, future::BoxFuture};
use streamguard::{
    Guardrails, Request,
    engine::Windows,
    llm::{ChatRequest, Completion, Delta, DeltaStream, LlmError, Provider, parse_stream_data},
};

const CHUNKS: usize = 1000;

/// A main model that streams pre-made chunks with no delay.
#[derive(Debug)]
struct Chunks(Vec<String>);

impl Provider for Chunks {
    fn can_stream(&self) -> bool {
        true
    }
    fn complete(&self, _: ChatRequest) -> BoxFuture<'static, Result<Completion, LlmError>> {
        let text = self.0.concat();
        async move { Ok(Completion::text(text, None)) }.boxed()
    }
    fn stream(&self, _: ChatRequest) -> DeltaStream {
        futures_util::stream::iter(self.0.clone().into_iter().map(|c| Ok(Delta::Text(c)))).boxed()
    }
}

fn rails(extra: &str) -> Guardrails {
    let yml = format!(
        "models:\n  - type: main\n    engine: scripted\n    model: m\nstreaming: True\n{extra}"
    );
    let config = streamguard::config::from_yaml("bench", &yml).unwrap();
    let chunks = (0..CHUNKS).map(|i| format!(" word{i}")).collect();
    Guardrails::with_main_provider(config, Arc::new(Chunks(chunks))).unwrap()
}

fn drain(rt: &tokio::runtime::Runtime, rails: &Guardrails) -> usize {
    rt.block_on(async {
        let mut events = rails.stream(Request::user("go")).unwrap();
        let mut n = 0;
        while let Some(e) = events.next().await {
            black_box(e.unwrap());
            n += 1;
        }
        n
    })
}

fn benches(c: &mut Criterion) {
    let event = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":" token"},"finish_reason":null}]}"#;
    let mut g = c.benchmark_group("sse");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_event", |b| {
        b.iter(|| parse_stream_data(black_box(event)).unwrap())
    });
    g.finish();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(CHUNKS as u64));
    let plain = rails("");
    g.bench_function("relay_per_chunk", |b| b.iter(|| drain(&rt, &plain)));
    let windows = rails(
        "rails:\n  config:\n    regex_detection:\n      output:\n        keywords: [forbidden]\n  output:\n    flows: [regex check output]\n    streaming:\n      enabled: True\n      chunk_size: 200\n      context_size: 50\n",
    );
    g.bench_function("output_windows_per_chunk", |b| {
        b.iter(|| drain(&rt, &windows))
    });
    g.finish();

    let mut g = c.benchmark_group("windows");
    g.throughput(Throughput::Elements(CHUNKS as u64));
    g.bench_function("push_per_chunk", |b| {
        b.iter(|| {
            let mut w = Windows::new(200, 50);
            let mut due = 0;
            for i in 1..=CHUNKS {
                due += usize::from(w.push(black_box(i * 7)).is_some());
            }
            due
        })
    });
    g.finish();
}

criterion_group!(hot_paths, benches);
criterion_main!(hot_paths);

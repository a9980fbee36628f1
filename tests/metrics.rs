//! Prometheus metrics, scraped and parsed: counters move by exactly the
//! requests made. (Its own test binary: the recorder is process-wide.)

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns
mod common;

use std::{collections::BTreeMap, time::Duration};

use common::*;
use serde_json::json;

/// Parses the exposition text into `name{labels}` → value.
fn scrape(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn get(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

/// The recorder is process-wide: tests that read whole-process gauges run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn metrics_count_requests_chunks_rails_and_first_chunk_latency() {
    let _serial = SERIAL.lock().await;
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    configs.add(
        "bot",
        &config(
            &llm.base_url(),
            "rails:\n  input:\n    flows: [self check input]\nstreaming: True\n",
        ),
    );
    let mut server = start(configs.root()).await;
    let base = start_http(configs.root()).await;
    let scrape_now = || async {
        scrape(
            &reqwest::get(format!("{base}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        )
    };

    let before = scrape_now().await;
    for _ in 0..3 {
        let got = collect(&mut server.client, request("bot", "hi"))
            .await
            .unwrap();
        assert!(got.error.is_none());
    }
    server
        .client
        .generate(request("bot", "BLOCKME"))
        .await
        .unwrap();
    let _ = server.client.generate(request("nope", "hi")).await;
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"config_id": "bot", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let after = scrape_now().await;

    let delta = |key: &str| get(&after, key) - get(&before, key);
    assert_eq!(
        delta(
            r#"streamguard_requests_total{transport="grpc",config="bot",method="StreamGenerate",code="OK"}"#
        ),
        3.0
    );
    assert_eq!(
        delta(
            r#"streamguard_requests_total{transport="grpc",config="bot",method="Generate",code="OK"}"#
        ),
        1.0
    );
    assert_eq!(
        delta(
            r#"streamguard_requests_total{transport="grpc",config="",method="Generate",code="NOT_FOUND"}"#
        ),
        1.0
    );
    assert_eq!(
        delta(
            r#"streamguard_requests_total{transport="http",config="bot",method="http_chat_completions",code="200"}"#
        ),
        1.0
    );
    let tokens = Script::default().tokens.len() as f64;
    assert_eq!(
        delta(r#"streamguard_chunks_total{config="bot"}"#),
        3.0 * tokens
    );
    assert_eq!(
        delta(r#"streamguard_rail_runs_total{rail="self check input",decision="allow"}"#),
        4.0
    );
    assert_eq!(
        delta(r#"streamguard_rail_runs_total{rail="self check input",decision="block"}"#),
        1.0
    );
    assert_eq!(
        delta(r#"streamguard_added_first_chunk_seconds_count{config="bot"}"#),
        3.0
    );
    assert_eq!(
        delta(r#"streamguard_time_to_first_chunk_seconds_count{config="bot"}"#),
        3.0
    );
    assert_eq!(get(&after, "streamguard_streams_in_flight"), 0.0);
}

#[tokio::test]
async fn every_stream_outcome_is_counted_once_on_both_transports() {
    let _serial = SERIAL.lock().await;
    let llm = fake_llm(Script {
        tokens: tokens(&"tick ".repeat(40)),
        delay: Duration::from_millis(25),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    configs.add(
        "outcomes",
        &config(
            &llm.base_url(),
            // Not the other test's rail: rail counters are per rail, not per config.
            "rails:\n  config:\n    regex_detection:\n      input:\n        keywords: [BLOCKME]\n  input:\n    flows: [regex check input]\nstreaming: True\n",
        ),
    );
    let mut server = start(configs.root()).await;
    let base = start_http(configs.root()).await;
    let metrics = || async {
        scrape(
            &reqwest::get(format!("{base}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        )
    };
    let before = metrics().await;

    // Cancelled by the caller mid-stream.
    let mut stream = server
        .client
        .stream_generate(request("outcomes", "hi"))
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().unwrap();
    drop(stream);
    llm.state.wait_disconnect().await;

    // Ended by the caller's deadline.
    let mut req = tonic::Request::new(request("outcomes", "hi"));
    req.set_timeout(Duration::from_millis(200));
    let mut stream = server
        .client
        .stream_generate(req)
        .await
        .unwrap()
        .into_inner();
    let status = loop {
        match stream.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream outlived its deadline"),
            Err(s) => break s,
        }
    };
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded);

    // Blocked by the input rail, on gRPC and over HTTP SSE.
    let got = collect(&mut server.client, request("outcomes", "BLOCKME"))
        .await
        .unwrap();
    assert!(got.finals[0].violation.is_some());
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"config_id": "outcomes", "stream": true, "messages": [{"role": "user", "content": "BLOCKME"}]}))
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().ends_with("data: [DONE]\n\n"));

    let after = metrics().await;
    let delta = |key: &str| get(&after, key) - get(&before, key);
    let series = |transport: &str, method: &str, code: &str| {
        format!(
            r#"streamguard_requests_total{{transport="{transport}",config="outcomes",method="{method}",code="{code}"}}"#
        )
    };
    assert_eq!(delta(&series("grpc", "StreamGenerate", "CANCELLED")), 1.0);
    assert_eq!(
        delta(&series("grpc", "StreamGenerate", "DEADLINE_EXCEEDED")),
        1.0
    );
    assert_eq!(
        delta(&series("grpc", "StreamGenerate", "OK")),
        1.0,
        "the blocked one"
    );
    assert_eq!(delta(&series("http", "http_chat_completions", "200")), 1.0);
    for (transport, method) in [
        ("grpc", "StreamGenerate"),
        ("http", "http_chat_completions"),
    ] {
        assert_eq!(
            delta(&format!(
                r#"streamguard_requests_blocked_total{{transport="{transport}",config="outcomes",method="{method}",stage="input"}}"#
            )),
            1.0,
            "{method}"
        );
    }
    // Every streaming call's duration, however it ended: cancelled,
    // deadline, blocked (gRPC), blocked (SSE).
    let durations = |t: &str| {
        delta(&format!(
            r#"streamguard_stream_duration_seconds_count{{transport="{t}",config="outcomes"}}"#
        ))
    };
    assert_eq!(durations("grpc") + durations("http"), 4.0);
    assert_eq!(get(&after, "streamguard_streams_in_flight"), 0.0);
}

#[tokio::test]
async fn item21_series_exist_from_start_with_build_and_process_metrics() {
    let _serial = SERIAL.lock().await;
    let configs = Configs::new();
    configs.add(
        "fresh",
        &config("http://127.0.0.1:9/v1", "streaming: True\n"),
    );
    let base = start_http(configs.root()).await;
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let m = scrape(&text);
    // Before any request: the config's series are there, at zero.
    for key in [
        r#"streamguard_requests_total{transport="grpc",config="fresh",method="StreamGenerate",code="OK"}"#,
        r#"streamguard_requests_total{transport="http",config="fresh",method="http_chat_completions",code="200"}"#,
        r#"streamguard_requests_blocked_total{transport="grpc",config="fresh",method="Generate",stage="output"}"#,
        r#"streamguard_config_reloads_total{config="fresh",result="ok"}"#,
    ] {
        assert_eq!(m.get(key), Some(&0.0), "{key} in\n{text}");
    }
    let version = format!(
        r#"streamguard_build_info{{version="{}"}}"#,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(m.get(&version), Some(&1.0), "{text}");
    assert!(get(&m, "process_resident_memory_bytes") > 1e6, "{text}");
    assert!(get(&m, "process_open_fds") >= 3.0, "{text}");
    assert!(m.contains_key("process_cpu_seconds_total"), "{text}");
}

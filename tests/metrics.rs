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
        delta(r#"streamguard_requests_total{config="bot",method="StreamGenerate",code="Ok"}"#),
        3.0
    );
    assert_eq!(
        delta(r#"streamguard_requests_total{config="bot",method="Generate",code="Ok"}"#),
        1.0
    );
    assert_eq!(
        delta(r#"streamguard_requests_total{config="",method="Generate",code="NotFound"}"#),
        1.0
    );
    assert_eq!(
        delta(
            r#"streamguard_requests_total{config="bot",method="http_chat_completions",code="200"}"#
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
    let series = |method: &str, code: &str| {
        format!(
            r#"streamguard_requests_total{{config="outcomes",method="{method}",code="{code}"}}"#
        )
    };
    assert_eq!(delta(&series("StreamGenerate", "Cancelled")), 1.0);
    assert_eq!(delta(&series("StreamGenerate", "DeadlineExceeded")), 1.0);
    assert_eq!(
        delta(&series("StreamGenerate", "Ok")),
        1.0,
        "the blocked one"
    );
    assert_eq!(delta(&series("http_chat_completions", "200")), 1.0);
    for method in ["StreamGenerate", "http_chat_completions"] {
        assert_eq!(
            delta(&format!(
                r#"streamguard_requests_blocked_total{{config="outcomes",method="{method}",stage="input"}}"#
            )),
            1.0,
            "{method}"
        );
    }
    assert_eq!(get(&after, "streamguard_streams_in_flight"), 0.0);
}

//! The playground's server side: off unless asked for; its page and files
//! under a strict CSP; its config list with what the page shows; and the
//! request log it draws its timeline from (each rail's start, and the window
//! of each output-rail run on a stream). The page itself runs in Chromium in
//! `.ci/peers.sh` (`.ci/playground.mjs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::json;
use streamguard::server::ServerSettings;

const WINDOWED: &str = "models:\n  - type: main\n    engine: scripted\n    model: m\n    parameters:\n      replies: [\"one two three four five six seven\"]\nrails:\n  config:\n    regex_detection:\n      output:\n        keywords: [forbidden]\n  output:\n    flows: [regex check output]\n    streaming:\n      enabled: True\n      chunk_size: 3\n      context_size: 1\nstreaming: True\n";

async fn get(url: String) -> reqwest::Response {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::get(url).await.unwrap()
}

#[tokio::test]
async fn the_playground_is_off_unless_asked_for() {
    let configs = Configs::new();
    configs.add("w", WINDOWED);
    let base = start_http(configs.root()).await;
    assert_eq!(get(format!("{base}/playground")).await.status(), 404);
    assert_eq!(
        get(format!("{base}/playground/configs")).await.status(),
        404
    );
}

#[tokio::test]
async fn the_page_its_files_and_its_config_list_are_served() {
    let configs = Configs::new();
    configs.add("w", WINDOWED);
    let settings = ServerSettings {
        playground: true,
        ..ServerSettings::default()
    };
    let base = start_http_with(configs.root(), settings).await;
    for (path, kind, needle) in [
        ("/playground", "text/html", "What the guard did"),
        ("/playground/app.js", "text/javascript", "readSse"),
        ("/playground/style.css", "text/css", ".bar.block"),
    ] {
        let r = get(format!("{base}{path}")).await;
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        assert!(
            h["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        assert_eq!(
            h["content-security-policy"],
            "default-src 'self'; frame-ancestors 'none'"
        );
        assert!(r.text().await.unwrap().contains(needle), "{path}");
    }
    let list: serde_json::Value = get(format!("{base}/playground/configs"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        list,
        json!([{"id": "w", "streaming": true, "streaming_reason": null, "input_flows": [],
                "output_flows": ["regex check output"],
                "windows": {"chunk_size": 3, "context_size": 1, "stream_first": true}}])
    );
}

#[tokio::test]
async fn the_log_says_when_each_rail_ran_and_on_which_window() {
    let configs = Configs::new();
    configs.add("w", WINDOWED);
    let base = start_http(configs.root()).await;
    let body = json!({"model": "w", "stream": true, "messages": [{"role": "user", "content": "count"}],
                      "guardrails": {"options": {"log": {"activated_rails": true}}}});
    let events = sse_json(&base, &body).await;
    let last = events
        .iter()
        .rev()
        .find(|e| e.get("guardrails").is_some())
        .unwrap();
    let rails = last["guardrails"]["log"]["activated_rails"]
        .as_array()
        .unwrap();
    // Seven chunks, NeMo's buffer of three that keeps one chunk of context:
    // [0, 3), then two new chunks each time, [3, 5) and [5, 7).
    let windows: Vec<_> = rails.iter().map(|r| r["window"].clone()).collect();
    assert_eq!(windows, [json!([0, 3]), json!([3, 5]), json!([5, 7])]);
    let starts: Vec<f64> = rails
        .iter()
        .map(|r| r["started_ms"].as_f64().unwrap())
        .collect();
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "{starts:?}");
    let calls = last["guardrails"]["log"]["llm_calls"].as_array().unwrap();
    assert!(calls[0]["started_ms"].as_f64().unwrap() >= 0.0);
}

//! The HTTP API over real sockets: NeMo and OpenAI body shapes, the exact SSE
//! framing, blocks, error statuses and client disconnects.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns
mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const STREAMING_INPUT_RAIL: &str =
    "rails:\n  input:\n    flows: [self check input]\nstreaming: True\n";

async fn post(base: &str, body: Value) -> (u16, Value) {
    post_chat(base, &body).await
}

/// Posts a streaming request and returns the content type and the SSE `data:` payloads.
async fn post_stream(base: &str, body: Value) -> (String, Vec<String>) {
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    let text = r.text().await.unwrap();
    assert!(
        text.ends_with("\n\n"),
        "events end with a blank line: {text:?}"
    );
    let events = text
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data event: {e:?}"))
                .to_string()
        })
        .collect();
    (ct, events)
}

async fn setup(script: Script, extra: &str) -> (FakeLlm, Configs, String) {
    let llm = fake_llm(script).await;
    let configs = Configs::new();
    configs.add("bot", &config(&llm.base_url(), extra));
    let base = start_http(configs.root()).await;
    (llm, configs, base)
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

#[tokio::test]
async fn nemo_body_gets_nemos_reply_and_openai_body_a_chat_completion() {
    let (_llm, _c, base) = setup(Script::default(), STREAMING_INPUT_RAIL).await;
    let answer = Script::default().tokens.concat();
    let (status, body) = post(&base, json!({"config_id": "bot", "messages": user("hi")})).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["messages"],
        json!([{"role": "assistant", "content": answer}])
    );

    let (status, body) = post(
        &base,
        json!({"model": "gpt-4o", "messages": user("hi"), "temperature": 0.3, "guardrails": {"config_id": "bot"}}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "gpt-4o");
    assert_eq!(
        body["choices"][0]["message"],
        json!({"role": "assistant", "content": answer})
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["total_tokens"], 10);
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));

    // An OpenAI client may name the config as its model; NeMo's config_ids work too.
    let (status, body) = post(&base, json!({"model": "bot", "messages": user("hi")})).await;
    assert_eq!(
        (status, body["choices"][0]["message"]["content"].as_str()),
        (200, Some(answer.as_str()))
    );
    let (status, _) = post(
        &base,
        json!({"config_ids": ["bot"], "messages": user("hi")}),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn streaming_is_openai_sse_role_chunk_deltas_finish_chunk_then_done() {
    let (llm, _c, base) = setup(Script::default(), STREAMING_INPUT_RAIL).await;
    let (ct, events) = post_stream(&base, json!({"model": "m", "guardrails": {"config_id": "bot"}, "messages": user("hi"), "stream": true})).await;
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    let tokens = Script::default().tokens;
    assert_eq!(events.len(), tokens.len() + 3);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let id = chunks[0]["id"].clone();
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], id, "one id per stream");
        assert_eq!(c["model"], "m");
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let deltas: Vec<&str> = chunks[1..=tokens.len()]
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, tokens, "the model's own chunk boundaries");
    let last = &chunks[tokens.len() + 1];
    assert_eq!(last["choices"][0]["delta"], json!({}));
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["usage"]["completion_tokens"], tokens.len());
    assert_eq!(llm.state.streamed_requests(), 1);

    // NeMo's body streams the same way.
    let (_, events) = post_stream(
        &base,
        json!({"config_id": "bot", "messages": user("hi"), "stream": true}),
    )
    .await;
    assert_eq!(events.len(), tokens.len() + 3);
}

#[tokio::test]
async fn blocks_end_streams_with_content_filter_or_an_error_event() {
    // Input rail: the refusal as content, then finish_reason content_filter.
    let (_llm, _c, base) = setup(Script::default(), STREAMING_INPUT_RAIL).await;
    let (_, events) = post_stream(
        &base,
        json!({"config_id": "bot", "messages": user("BLOCKME"), "stream": true}),
    )
    .await;
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(
        chunks[1]["choices"][0]["delta"]["content"],
        "I'm sorry, I can't respond to that."
    );
    assert_eq!(chunks[2]["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(
        chunks[2]["guardrails"]["violation"]["rail"],
        "self check input"
    );
    assert_eq!(events.last().unwrap(), "[DONE]");

    // Output rail mid-stream: the chunks that passed, an error event, [DONE].
    let mut words: Vec<String> = (0..20).map(|i| format!("w{i}")).collect();
    words[9] = "BLOCKME".into();
    let (llm, _c2, base) = setup(
        Script { tokens: tokens(&words.join(" ")), delay: Duration::from_millis(2), ..Script::default() },
        "rails:\n  output:\n    flows: [self check output]\n    streaming:\n      enabled: True\n      chunk_size: 4\n      context_size: 0\n      stream_first: False\nstreaming: True\n",
    )
    .await;
    let (_, events) = post_stream(
        &base,
        json!({"config_id": "bot", "messages": user("hi"), "stream": true}),
    )
    .await;
    assert_eq!(events.len(), 1 + 8 + 2);
    let error: Value = serde_json::from_str(&events[9]).unwrap();
    assert_eq!(
        error["error"],
        json!({"message": "Blocked by self check output rails.", "type": "guardrails_violation", "param": "self check output", "code": "content_blocked"})
    );
    // Item 13: the tokens the cut-off answer consumed come with it.
    assert!(
        error["usage"]["completion_tokens"].as_u64().unwrap() >= 8,
        "{error}"
    );
    assert_eq!(events[10], "[DONE]");
    llm.state.wait_disconnect().await;
}

#[tokio::test]
async fn errors_are_http_statuses_with_json_bodies_naming_the_problem() {
    let (_llm, configs, base) = setup(Script::default(), "").await;
    configs.add(
        "streams",
        &config("http://127.0.0.1:9/v1", "streaming: True\n"),
    );
    let base2 = start_http(configs.root()).await;

    let (status, body) = post(&base, json!({"config_id": "nope", "messages": user("hi")})).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "config_not_found");

    let (status, body) = post(
        &base,
        json!({"config_id": "bot", "messages": [{"role": "user", "content": 5}]}),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["param"], "messages[0].content");

    let (status, body) = post(&base, json!({"config_id": "bot"})).await;
    assert_eq!(status, 422);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("messages"),
        "{body}"
    );

    let r = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);

    let (status, body) = post(&base, json!({"config_id": "bot", "messages": []})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "messages");

    // The streaming precondition: 400 with the same message as gRPC.
    let (status, body) = post(
        &base,
        json!({"config_id": "bot", "messages": user("hi"), "stream": true}),
    )
    .await;
    assert_eq!(status, 400);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("streaming precondition 1 (streaming enabled) failed"),
        "{message}"
    );
    assert_eq!(body["error"]["code"], "streaming_unsupported");

    // Upstream refused: 503.
    let (status, body) = post(
        &base2,
        json!({"config_id": "streams", "messages": user("hi")}),
    )
    .await;
    assert_eq!(status, 503, "{body}");

    // Upstream HTTP 500: 502.
    let (_llm, _c, base3) = setup(
        Script {
            status: Some((500, "boom".into())),
            ..Script::default()
        },
        "",
    )
    .await;
    let (status, body) = post(&base3, json!({"config_id": "bot", "messages": user("hi")})).await;
    assert_eq!(status, 502);
    assert!(body["error"]["message"].as_str().unwrap().contains("boom"));
}

#[tokio::test]
async fn a_client_disconnect_drops_the_upstream_request() {
    let (llm, _c, base) = setup(
        Script {
            tokens: tokens(&"tick ".repeat(300)),
            delay: Duration::from_millis(10),
            ..Script::default()
        },
        "streaming: True\n",
    )
    .await;
    let mut r = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"config_id": "bot", "messages": user("hi"), "stream": true}))
        .send()
        .await
        .unwrap();
    let first = r.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    drop(r);
    llm.state.wait_disconnect().await;
}

#[tokio::test]
async fn health_and_config_list() {
    let (_llm, _c, base) = setup(Script::default(), "").await;
    let h: Value = reqwest::get(format!("{base}/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h, json!({"status": "ok"}));
    let list: Value = reqwest::get(format!("{base}/v1/rails/configs"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list, json!([{"id": "bot"}]));
}

/// Posts and returns the status and the body as JSON.
async fn post_any(base: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn failures_before_any_content_are_http_statuses_on_streams_too() {
    // Item 11: an SDK's retry on 503/502/504 fires only on a real status.
    let stream = |id: &str| json!({"config_id": id, "stream": true, "messages": user("hi")});
    // An unreachable judge.
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    configs.add(
        "judge",
        &format!(
            "{}  - type: self_check_input\n    engine: openai\n    model: judge\n    parameters:\n      base_url: http://127.0.0.1:9/v1\n      retries: 0\nrails:\n  input:\n    flows: [self check input]\nstreaming: True\n",
            main_model(&llm.base_url())
        ),
    );
    // An upstream 5xx, and a first token that never comes.
    let failing = fake_llm(Script {
        status: Some((500, "boom".into())),
        ..Script::default()
    })
    .await;
    configs.add("five", &config(&failing.base_url(), "streaming: True\n"));
    let stalled = fake_llm(Script {
        delay: Duration::from_secs(5),
        ..Script::default()
    })
    .await;
    let yml = config(&stalled.base_url(), "streaming: True\n").replace(
        "      base_url:",
        "      first_token_timeout: 0.3\n      base_url:",
    );
    configs.add("slow", &yml);
    let base = start_http(configs.root()).await;
    let (status, body) = post_any(&base, stream("judge")).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (502, json!("rail_execution_failure")),
        "{body}"
    );
    let (status, body) = post_any(&base, stream("five")).await;
    assert_eq!(status, 502, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("boom"));
    let (status, body) = post_any(&base, stream("slow")).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (504, json!("upstream_timeout")),
        "{body}"
    );
}

#[tokio::test]
async fn the_azure_block_style_ends_a_blocked_stream_with_a_content_filter_chunk() {
    // Item 12, per request and as the server's default.
    let mut words: Vec<String> = (0..12).map(|i| format!("w{i}")).collect();
    words[5] = "BLOCKME".into();
    let llm = fake_llm(Script {
        tokens: tokens(&words.join(" ")),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    configs.add(
        "bot",
        &config(
            &llm.base_url(),
            "rails:\n  output:\n    flows: [self check output]\n    streaming:\n      enabled: True\n      chunk_size: 4\n      context_size: 0\n      stream_first: False\nstreaming: True\n",
        ),
    );
    let check = |events: Vec<String>| {
        assert_eq!(events.last().unwrap(), "[DONE]");
        let last: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
        assert_eq!(
            last["choices"][0]["finish_reason"], "content_filter",
            "{last}"
        );
        assert_eq!(last["guardrails"]["violation"]["rail"], "self check output");
        assert!(
            last["usage"]["completion_tokens"].as_u64().unwrap() > 0,
            "{last}"
        );
        assert!(
            events.iter().all(|e| !e.contains("\"error\"")),
            "{events:?}"
        );
    };
    let base = start_http(configs.root()).await;
    let (_, events) = post_stream(
        &base,
        json!({"model": "bot", "stream": true, "messages": user("hi"), "guardrails": {"block_style": "azure"}}),
    )
    .await;
    check(events);
    let azure = streamguard::server::ServerSettings {
        block_style: streamguard::server::http::BlockStyle::Azure,
        ..Default::default()
    };
    let base = start_http_with(configs.root(), azure).await;
    let (_, events) = post_stream(
        &base,
        json!({"model": "bot", "stream": true, "messages": user("hi")}),
    )
    .await;
    check(events);
}

#[tokio::test]
async fn every_error_is_json_and_unsupported_fields_are_refused_by_name() {
    // Item 14.
    let (_llm, configs, base) = setup(Script::default(), "").await;
    let client = reqwest::Client::new();
    let r = client.get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    let r = client
        .get(format!("{base}/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "method_not_allowed"
    );
    let r = client
        .post(format!("{base}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(vec![b' '; 2 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "request_too_large"
    );
    // OpenAI's model list: the configs.
    let models: Value = client
        .get(format!("{base}/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "bot");
    // Fields that would be silently ignored (or are bad) are refused, naming them.
    for (body, field) in [
        (
            json!({"config_id": "bot", "config_ids": ["bot"], "messages": user("hi")}),
            "config_ids",
        ),
        (
            // NeMo's rule: a thread id has at least 16 characters.
            json!({"model": "bot", "messages": user("hi"), "guardrails": {"thread_id": "0123"}}),
            "guardrails.thread_id",
        ),
        (
            json!({"model": "bot", "messages": user("hi"), "guardrails": {"state": {"events": []}}}),
            "guardrails.state",
        ),
        (
            json!({"model": "bot", "messages": user("hi"), "tools": [{"type": "function"}]}),
            "tools",
        ),
    ] {
        let (status, reply) = post_any(&base, body).await;
        assert_eq!(status, 400, "{reply}");
        assert_eq!(reply["error"]["param"], field, "{reply}");
    }
    // CORS is off by default, on for the origins given.
    let preflight = |base: String| {
        let client = client.clone();
        async move {
            client
                .request(
                    reqwest::Method::OPTIONS,
                    format!("{base}/v1/chat/completions"),
                )
                .header("origin", "https://app.example")
                .header("access-control-request-method", "POST")
                .send()
                .await
                .unwrap()
                .headers()
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap().to_string())
        }
    };
    assert_eq!(preflight(base.clone()).await, None);
    let cors = streamguard::server::ServerSettings {
        cors_origins: vec!["https://app.example".into()],
        ..Default::default()
    };
    let with_cors = start_http_with(configs.root(), cors).await;
    assert_eq!(
        preflight(with_cors).await.as_deref(),
        Some("https://app.example")
    );
}

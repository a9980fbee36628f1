//! The providers over real sockets, each against a fake upstream speaking
//! its vendor's wire format: Azure OpenAI (deployment URLs, `api-version`,
//! the `api-key` header, content-filter results and errors), and the
//! OpenAI-compatible engines with their base URLs (NIM and TGI without
//! `/v1`, Ollama, DeepSeek); embeddings engines without a client, and the
//! engines refused with what to run instead.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns
mod common;

use std::sync::{Arc, Mutex};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Path, State},
    http::{HeaderMap, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::post,
};
use common::*;
use serde_json::{Value, json};

/// What the fake Azure deployment saw.
#[derive(Default)]
struct AzureSeen {
    calls: Vec<(String, String, Option<String>, bool)>,
}

const AZURE_KEY: &str = "azure-test-key";

/// A fake Azure OpenAI resource: `/openai/deployments/{d}/chat/completions?api-version=…`.
async fn azure(
    State(seen): State<Arc<Mutex<AzureSeen>>>,
    Path(deployment): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let version = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("api-version="))
        .unwrap_or_default()
        .to_string();
    let key = headers
        .get("api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    seen.lock().unwrap().calls.push((
        deployment,
        version.clone(),
        key.clone(),
        headers.contains_key(header::AUTHORIZATION),
    ));
    if version.is_empty() {
        return (
            StatusCode::NOT_FOUND,
            r#"{"error":{"code":"404","message":"Resource not found"}}"#,
        )
            .into_response();
    }
    if key.as_deref() != Some(AZURE_KEY) {
        return (StatusCode::UNAUTHORIZED, r#"{"error":{"code":"401","message":"Access denied due to invalid subscription key or wrong API endpoint."}}"#).into_response();
    }
    let prompt = body["messages"].to_string();
    if prompt.contains("violent") {
        // Azure's prompt filter refusal.
        let err = json!({"error": {"message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
            "type": null, "param": "prompt", "code": "content_filter", "status": 400,
            "innererror": {"code": "ResponsibleAIPolicyViolation",
                "content_filter_result": {"violence": {"filtered": true, "severity": "high"}}}}});
        return (StatusCode::BAD_REQUEST, axum::Json(err)).into_response();
    }
    let filtered = prompt.contains("cut me");
    let safe = json!({"hate": {"filtered": false, "severity": "safe"}, "violence": {"filtered": false, "severity": "safe"}});
    let mut events = vec![
        // Azure's first event: prompt filter results, no choices.
        json!({"choices": [], "created": 0, "id": "", "model": "", "object": "",
               "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": safe}]}),
        json!({"choices": [{"content_filter_results": {}, "delta": {"content": "", "role": "assistant"}, "finish_reason": null, "index": 0}],
               "created": 1, "id": "chatcmpl-az", "model": "gpt-4o-2024-08-06", "object": "chat.completion.chunk"}),
    ];
    for t in ["Azure ", "says ", "hi."] {
        events.push(json!({"choices": [{"content_filter_results": safe, "delta": {"content": t}, "finish_reason": null, "index": 0}],
            "created": 1, "id": "chatcmpl-az", "model": "gpt-4o-2024-08-06", "object": "chat.completion.chunk"}));
    }
    let finish = if filtered { "content_filter" } else { "stop" };
    events.push(json!({"choices": [{"content_filter_results": {}, "delta": {}, "finish_reason": finish, "index": 0}],
        "created": 1, "id": "chatcmpl-az", "model": "gpt-4o-2024-08-06", "object": "chat.completion.chunk"}));
    let mut text = String::new();
    for e in events {
        text.push_str(&format!("data: {e}\n\n"));
    }
    text.push_str("data: [DONE]\n\n");
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from(Bytes::from(text)))
        .unwrap()
}

async fn fake_azure() -> (String, Arc<Mutex<AzureSeen>>) {
    let seen = Arc::new(Mutex::new(AzureSeen::default()));
    let app = Router::new()
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            post(azure),
        )
        .with_state(seen.clone());
    let listener = listener().await;
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

fn azure_config(endpoint: &str) -> String {
    format!(
        "models:\n  - type: main\n    engine: azure\n    model: gpt-4o\n    parameters:\n      azure_endpoint: {endpoint}\n      azure_deployment: prod-4o\n      api_version: \"2024-10-21\"\n      api_key: {AZURE_KEY}\nstreaming: True\n"
    )
}

#[tokio::test]
async fn azure_openai_streams_from_the_deployment_with_its_key_header() {
    let (endpoint, seen) = fake_azure().await;
    let configs = Configs::new();
    configs.add("az", &azure_config(&endpoint));
    let mut server = start(configs.root()).await;

    let got = collect(&mut server.client, request("az", "Hello"))
        .await
        .unwrap();
    assert_eq!(got.chunks, ["Azure ", "says ", "hi."]);
    let fin = &got.finals[0];
    assert_eq!(
        fin.finish_reason,
        streamguard::pb::FinishReason::Stop as i32
    );
    let calls = seen.lock().unwrap().calls.clone();
    assert_eq!(
        calls,
        [(
            "prod-4o".to_string(),
            "2024-10-21".to_string(),
            Some(AZURE_KEY.to_string()),
            false
        )],
        "deployment, api-version, api-key and no bearer token"
    );

    // Azure's own content filter cutting the answer is a content_filter finish.
    let got = collect(&mut server.client, request("az", "cut me off"))
        .await
        .unwrap();
    assert_eq!(
        got.finals[0].finish_reason,
        streamguard::pb::FinishReason::ContentFilter as i32
    );

    // Its prompt-filter refusal (HTTP 400 `content_filter`) is an upstream
    // failure that carries Azure's code.
    let e = collect(&mut server.client, request("az", "something violent"))
        .await
        .unwrap()
        .error
        .unwrap();
    assert_eq!(e.code(), tonic::Code::Unavailable);
    assert!(
        e.message().contains("HTTP 400")
            && e.message().contains("content management policy")
            && e.message().contains("code: content_filter"),
        "{}",
        e.message()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn an_azure_entry_without_an_endpoint_loads_and_check_says_what_is_missing() {
    let configs = Configs::new();
    configs.add(
        "az",
        "models:\n  - type: main\n    engine: azure\n    model: gpt-4o\n",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_streamguard"))
        .args(["check", "--config"])
        .arg(configs.root())
        .env_remove("AZURE_OPENAI_ENDPOINT")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("AZURE_OPENAI_ENDPOINT"), "{text}");
}

/// The fake LLM's root URL (without `/v1`).
fn root(llm: &FakeLlm) -> String {
    llm.base_url().trim_end_matches("/v1").to_string()
}

#[tokio::test]
async fn openai_compatible_engines_reach_their_v1_api() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    let entry = |engine: &str, key: &str, url: &str| {
        format!(
            "models:\n  - type: main\n    engine: {engine}\n    model: m-{engine}\n    parameters:\n      {key}: {url}\nstreaming: True\n"
        )
    };
    // NVIDIA's client adds `/v1` to a base_url without it; TGI and Ollama
    // serve their OpenAI-compatible API under `/v1`.
    configs.add("nim", &entry("nim", "base_url", &root(&llm)));
    configs.add(
        "tgi",
        &entry("huggingface_endpoint", "endpoint_url", &root(&llm)),
    );
    configs.add("ollama", &entry("ollama", "base_url", &root(&llm)));
    configs.add("deepseek", &entry("deepseek", "base_url", &llm.base_url()));
    let mut server = start(configs.root()).await;
    for (id, model) in [
        ("nim", "m-nim"),
        ("tgi", "m-huggingface_endpoint"),
        ("ollama", "m-ollama"),
        ("deepseek", "m-deepseek"),
    ] {
        let got = collect(&mut server.client, request(id, "Hi"))
            .await
            .unwrap();
        assert!(got.error.is_none(), "{id}: {:?}", got.error);
        assert_eq!(got.chunks, Script::default().tokens, "{id}");
        assert_eq!(llm.state.requests().last().unwrap()["model"], model);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn embeddings_engines_without_a_client_load_with_a_warning_and_rank_lexically() {
    let llm = fake_llm(Script {
        judge_answers: vec![("user \"Hello!\"".into(), "express greeting".into())],
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    let dir = configs.add(
        "bot",
        &format!(
            "{}  - type: embeddings\n    engine: cohere\n    model: embed-multilingual-v3.0\nstreaming: True\n",
            main_model(&llm.base_url())
        ),
    );
    std::fs::write(
        dir.join("rails.co"),
        "define user express greeting\n  \"Hello!\"\n\ndefine bot express greeting\n  \"Hi there, from Colang.\"\n\ndefine flow greeting\n  user express greeting\n  bot express greeting\n",
    )
    .unwrap();
    let rails = streamguard::Guardrails::load(&dir).unwrap();
    assert!(
        rails
            .warnings()
            .iter()
            .any(|w| w.contains("embed-multilingual-v3.0") && w.contains("BM25")),
        "{:?}",
        rails.warnings()
    );
    let mut server = start(configs.root()).await;
    let got = collect(&mut server.client, request("bot", "Hello!"))
        .await
        .unwrap();
    assert_eq!(got.chunks.concat(), "Hi there, from Colang.");
    assert!(
        llm.state
            .requests()
            .iter()
            .all(|r| r.get("input").is_none()),
        "no embeddings call"
    );
    server.shutdown().await;
}

#[test]
fn in_process_and_vendor_sdk_engines_are_refused_with_what_to_run_instead() {
    for (engine, needle) in [
        ("vertexai", "OpenAI-compatible endpoint"),
        ("hf_pipeline_dolly", "vLLM"),
        ("custom_llm", "OpenAI-compatible server"),
    ] {
        let yaml = format!("models:\n  - type: main\n    engine: {engine}\n    model: x\n");
        let e = streamguard::Guardrails::from_yaml("c", &yaml)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("models[0].engine") && e.contains(engine) && e.contains(needle),
            "{e}"
        );
    }
}

const ANTHROPIC_KEY: &str = "sk-ant-test";

/// What the fake Anthropic API saw: the bodies, and whether each call
/// carried the key and version headers.
type AnthropicSeen = Arc<Mutex<Vec<(Value, bool)>>>;

fn anthropic_sse(events: &[(&str, Value)]) -> String {
    events
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect()
}

/// A fake Anthropic Messages API (`POST /v1/messages`).
async fn anthropic(
    State(seen): State<AnthropicSeen>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let authed = headers.get("x-api-key").and_then(|v| v.to_str().ok()) == Some(ANTHROPIC_KEY)
        && headers
            .get("anthropic-version")
            .and_then(|v| v.to_str().ok())
            == Some("2023-06-01")
        && !headers.contains_key(header::AUTHORIZATION);
    seen.lock().unwrap().push((body.clone(), authed));
    if !authed {
        let e = json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}});
        return (StatusCode::UNAUTHORIZED, axum::Json(e)).into_response();
    }
    let said = body["messages"].to_string();
    if body["stream"] != json!(true) {
        // A judge call: answers "No" (allow).
        return axum::Json(json!({"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
            "content": [{"type": "text", "text": "No"}], "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 12, "output_tokens": 1}}))
        .into_response();
    }
    let mut events = vec![
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_2", "type": "message", "role": "assistant",
            "content": [], "model": body["model"], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 25, "output_tokens": 1}}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        ("ping", json!({"type": "ping"})),
    ];
    for t in ["Claude ", "is ", "here."] {
        events.push(("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}})));
    }
    if said.contains("overload") {
        events.push(("error", json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})));
    } else {
        events.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ));
        events.push(("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 3}})));
        events.push(("message_stop", json!({"type": "message_stop"})));
    }
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from(anthropic_sse(&events)))
        .unwrap()
}

#[tokio::test]
async fn anthropic_messages_stream_with_usage_and_errors_in_its_own_format() {
    let seen: AnthropicSeen = Arc::default();
    let app = Router::new()
        .route("/v1/messages", post(anthropic))
        .with_state(seen.clone());
    let l = listener().await;
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let configs = Configs::new();
    configs.add(
        "claude",
        &format!(
            "models:\n  - type: main\n    engine: anthropic\n    model: claude-sonnet-4-5\n    parameters:\n      base_url: {base}\n      api_key: {ANTHROPIC_KEY}\ninstructions:\n  - type: general\n    content: You are a test bot.\nrails:\n  input:\n    flows: [self check input]\nstreaming: True\n"
        ),
    );
    let mut server = start(configs.root()).await;
    let got = collect(&mut server.client, request("claude", "Hello"))
        .await
        .unwrap();
    assert_eq!(got.chunks, ["Claude ", "is ", "here."]);
    let usage = got.finals[0].usage.unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (25, 3));
    let calls = seen.lock().unwrap().clone();
    assert!(calls.iter().all(|(_, authed)| *authed), "{calls:?}");
    // The judge call (whole), then the main call with the instruction as `system`.
    let (judge, main) = (&calls[0].0, &calls[1].0);
    assert!(
        judge.get("stream").is_none() && judge["max_tokens"].is_number(),
        "{judge}"
    );
    assert_eq!(main["system"], "You are a test bot.");
    assert_eq!(
        main["messages"],
        json!([{"role": "user", "content": "Hello"}])
    );
    assert_eq!(main["max_tokens"], 4096);

    // An `error` event mid-stream ends it with UNAVAILABLE naming the error.
    let got = collect(&mut server.client, request("claude", "overload me"))
        .await
        .unwrap();
    let e = got.error.unwrap();
    assert_eq!(e.code(), tonic::Code::Unavailable);
    assert!(
        e.message().contains("overloaded_error: Overloaded"),
        "{}",
        e.message()
    );
    server.shutdown().await;
}

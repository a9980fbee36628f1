//! Shared test harness: a fake OpenAI-compatible LLM on a real socket, config
//! directories written to temp dirs, and the gRPC server on 127.0.0.1:0.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod process;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::{Value, json};
use streamguard::{pb::guardrails_client::GuardrailsClient, server::ServerSettings};
use tokio::sync::{Notify, oneshot};
use tonic::transport::Channel;

/// What the fake LLM does with the next requests.
#[derive(Debug, Clone)]
pub struct Script {
    /// Tokens of the main answer, streamed one per SSE event.
    pub tokens: Vec<String>,
    /// Pause before each token.
    pub delay: Duration,
    /// Abort the connection after this many tokens.
    pub fail_after: Option<usize>,
    /// Answer every request with this HTTP status and body.
    pub status: Option<(u16, String)>,
    /// Judge calls (stream: false) answer "Yes" when the prompt contains
    /// this, "No" otherwise.
    pub block_word: String,
    /// Report token usage at the end of the stream.
    pub usage: bool,
    /// Judge answers by a needle in the prompt, checked in order before `block_word`.
    pub judge_answers: Vec<(String, String)>,
    /// Pause before a judge answers.
    pub judge_delay: Duration,
    /// When set, only judge prompts containing this are delayed.
    pub slow_judge: Option<String>,
    /// Answer the first this-many requests with HTTP 503.
    pub fail_first: usize,
    /// A reasoning trace sent before the main answer as `reasoning_content`
    /// (DeepSeek's and vLLM's field), one piece per event.
    pub reasoning: Vec<String>,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            tokens: tokens("Hello from the fake model, streamed token by token."),
            delay: Duration::ZERO,
            fail_after: None,
            status: None,
            block_word: "BLOCKME".into(),
            usage: true,
            judge_answers: Vec::new(),
            judge_delay: Duration::ZERO,
            slow_judge: None,
            fail_first: 0,
            reasoning: Vec::new(),
        }
    }
}

/// Splits text into tokens that keep their leading space.
pub fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, word) in text.split(' ').enumerate() {
        out.push(if i == 0 {
            word.to_string()
        } else {
            format!(" {word}")
        });
    }
    out
}

/// The fake LLM's shared state, for assertions.
#[derive(Debug, Default)]
pub struct FakeState {
    pub script: Mutex<Script>,
    /// Every request body, in arrival order.
    pub requests: Mutex<Vec<Value>>,
    /// Set when a client went away before its stream finished.
    pub disconnected: AtomicBool,
    pub disconnect: Notify,
    /// Streams that ran to the end.
    pub completed: AtomicUsize,
}

impl FakeState {
    pub fn set(&self, script: Script) {
        *self.script.lock().unwrap() = script;
    }
    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }
    /// Requests that asked to stream (main LLM calls).
    pub fn streamed_requests(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r["stream"] == json!(true))
            .count()
    }
    /// Requests that did not stream (judge calls and Generate).
    pub fn whole_requests(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["stream"] != json!(true))
            .collect()
    }
    /// Waits until a client disconnected mid-stream, or fails after 5 s.
    pub async fn wait_disconnect(&self) {
        let wait = async {
            loop {
                let notified = self.disconnect.notified();
                if self.disconnected.load(Ordering::SeqCst) {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .expect("the fake LLM never saw its client disconnect");
    }
}

/// A running fake LLM.
pub struct FakeLlm {
    pub addr: SocketAddr,
    pub state: Arc<FakeState>,
}

impl FakeLlm {
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

/// Marks a stream as disconnected when dropped before it finished.
struct DropGuard {
    state: Arc<FakeState>,
    finished: bool,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.state.disconnected.store(true, Ordering::SeqCst);
            self.state.disconnect.notify_waiters();
        }
    }
}

fn sse(value: Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

/// Which OpenAI API a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions` (text completions: `prompt` in, `choices[].text` out).
    Text,
}

/// A streamed piece in the API's own shape.
fn piece(wire: Wire, token: &str, finish: Option<&str>) -> Value {
    match wire {
        Wire::Chat => {
            let delta = if finish.is_some() {
                json!({})
            } else {
                json!({"content": token})
            };
            json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": "fake",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        }
        Wire::Text => {
            json!({"id": "cmpl-fake", "object": "text_completion", "created": 0, "model": "fake",
                   "choices": [{"index": 0, "text": token, "logprobs": null, "finish_reason": finish}]})
        }
    }
}

async fn chat_completions(
    state: State<Arc<FakeState>>,
    headers: axum::http::HeaderMap,
    body: Json<Value>,
) -> Response {
    completions(state, headers, body, Wire::Chat).await
}

async fn text_completions(
    state: State<Arc<FakeState>>,
    headers: axum::http::HeaderMap,
    body: Json<Value>,
) -> Response {
    completions(state, headers, body, Wire::Text).await
}

async fn completions(
    State(state): State<Arc<FakeState>>,
    headers: axum::http::HeaderMap,
    Json(body): Json<Value>,
    wire: Wire,
) -> Response {
    // A text completion must not get chat fields, nor a chat call a prompt.
    let shape_ok = match wire {
        Wire::Chat => body["messages"].is_array() && body.get("prompt").is_none(),
        Wire::Text => body["prompt"].is_string() && body.get("messages").is_none(),
    };
    if !shape_ok {
        return (StatusCode::BAD_REQUEST, r#"{"error":{"message":"wrong request shape for this endpoint","type":"invalid_request_error"}}"#).into_response();
    }
    let seen = {
        let mut requests = state.requests.lock().unwrap();
        // Recorded with the request (not sent back): the trace header it carried.
        let mut recorded = body.clone();
        if let Some(t) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
            recorded["_traceparent"] = json!(t);
        }
        requests.push(recorded);
        requests.len()
    };
    let script = state.script.lock().unwrap().clone();
    if seen <= script.fail_first {
        return (StatusCode::SERVICE_UNAVAILABLE, "warming up").into_response();
    }
    if let Some((status, text)) = script.status {
        let mut r = (StatusCode::from_u16(status).unwrap(), text).into_response();
        // As Azure OpenAI and OpenAI do on rate limits.
        if status == 429 {
            r.headers_mut().insert("retry-after", 7.into());
        }
        return r;
    }
    let prompt: String = match wire {
        Wire::Text => body["prompt"].as_str().unwrap_or_default().to_string(),
        Wire::Chat => body["messages"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|m| m["content"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default(),
    };
    if body["stream"] != json!(true) {
        // Main calls start with the test configs' general instruction.
        let is_main = match wire {
            Wire::Chat => body["messages"][0]["content"] == json!("You are a test bot."),
            Wire::Text => prompt.starts_with("You are a test bot.\n\n"),
        };
        let (content, wait) = if is_main {
            // A whole answer takes as long as streaming it would.
            (
                script.tokens.concat(),
                script.delay * script.tokens.len() as u32,
            )
        } else {
            let answer = if let Some((_, answer)) = script
                .judge_answers
                .iter()
                .find(|(needle, _)| prompt.contains(needle.as_str()))
            {
                answer.clone()
            } else if prompt.contains(&script.block_word) {
                "Yes".to_string()
            } else {
                "No".to_string()
            };
            let slow = script
                .slow_judge
                .as_ref()
                .is_none_or(|needle| prompt.contains(needle.as_str()));
            (
                answer,
                if slow {
                    script.judge_delay
                } else {
                    Duration::ZERO
                },
            )
        };
        let usage = json!({"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10});
        let body = match wire {
            Wire::Chat => {
                json!({"id": "chatcmpl-fake", "object": "chat.completion", "model": "fake",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                "usage": usage})
            }
            Wire::Text => json!({"id": "cmpl-fake", "object": "text_completion", "model": "fake",
                "choices": [{"index": 0, "text": content, "logprobs": null, "finish_reason": "stop"}],
                "usage": usage}),
        };
        // The body is sent after the wait, so a client that goes away during
        // it is noticed (the write fails and the guard is dropped unfinished).
        let stream = async_stream::stream! {
            let mut guard = DropGuard { state: state.clone(), finished: false };
            // Leading whitespace is valid JSON; writing it while waiting makes
            // a closed connection fail the next write.
            let until = tokio::time::Instant::now() + wait;
            while tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(20).min(until - tokio::time::Instant::now())).await;
                yield Ok::<Bytes, std::io::Error>(Bytes::from_static(b" "));
            }
            yield Ok(Bytes::from(body.to_string()));
            guard.finished = true;
        };
        return Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from_stream(stream))
            .unwrap();
    }
    let stream = async_stream::stream! {
        let mut guard = DropGuard { state: state.clone(), finished: false };
        // A role-only first delta (chat) or an empty piece (text) and an SSE
        // comment, as real servers send.
        let first = match wire {
            Wire::Chat => json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": "fake",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]}),
            Wire::Text => piece(wire, "", None),
        };
        yield Ok::<Bytes, std::io::Error>(sse(first));
        yield Ok(Bytes::from_static(b": keep-alive\n\n"));
        for r in &script.reasoning {
            yield Ok(sse(json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": "fake",
                "choices": [{"index": 0, "delta": {"content": null, "reasoning_content": r}, "finish_reason": null}]})));
        }
        for (i, token) in script.tokens.iter().enumerate() {
            if script.fail_after == Some(i) {
                // Let what was written reach the client, as on a real crash.
                tokio::time::sleep(Duration::from_millis(50)).await;
                yield Err(std::io::Error::other("the fake LLM died mid-stream"));
                return;
            }
            if !script.delay.is_zero() {
                tokio::time::sleep(script.delay).await;
            }
            // Split each event across two writes to exercise reassembly.
            let bytes = sse(piece(wire, token, None));
            let (a, b) = bytes.split_at(bytes.len() / 2);
            yield Ok(Bytes::copy_from_slice(a));
            yield Ok(Bytes::copy_from_slice(b));
        }
        yield Ok(sse(piece(wire, "", Some("stop"))));
        if script.usage {
            let n = script.tokens.len();
            yield Ok(sse(json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": "fake",
                "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": n, "total_tokens": 11 + n}})));
        }
        yield Ok(Bytes::from_static(b"data: [DONE]\n\n"));
        guard.finished = true;
        state.completed.fetch_add(1, Ordering::SeqCst);
    };
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// A toy embedding: one dimension per concept, so similar intents point the
/// same way without sharing words.
async fn embeddings(State(state): State<Arc<FakeState>>, Json(body): Json<Value>) -> Response {
    state
        .requests
        .lock()
        .unwrap()
        .push(json!({"embeddings": body["input"].clone()}));
    let concepts: [&[&str]; 3] = [
        &["hello", "hi", "greetings", "hey", "morning"],
        &["can", "do", "help", "capabilities"],
        &["vote", "party", "government"],
    ];
    let data: Vec<Value> = body["input"]
        .as_array()
        .map(|inputs| {
            inputs
                .iter()
                .map(|text| {
                    let t = text.as_str().unwrap_or_default().to_lowercase();
                    let mut v: Vec<f32> = concepts
                        .iter()
                        .map(|words| words.iter().filter(|w| t.contains(**w)).count() as f32)
                        .collect();
                    v.push(0.01);
                    json!({"object": "embedding", "embedding": v})
                })
                .collect()
        })
        .unwrap_or_default();
    Json(json!({"object": "list", "data": data, "model": "fake-embed"})).into_response()
}

/// Starts the fake LLM on 127.0.0.1:0.
pub async fn fake_llm(script: Script) -> FakeLlm {
    let state = Arc::new(FakeState::default());
    state.set(script);
    let app = Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(text_completions))
        .route("/v1/embeddings", post(embeddings))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    FakeLlm { addr, state }
}

pub const SELF_CHECK_PROMPTS: &str = r#"
prompts:
  - task: self_check_input
    content: |
      Should the user message be blocked (Yes or No)?
      User message: "{{ user_input }}"
  - task: self_check_output
    content: |
      Should the bot message be blocked (Yes or No)?
      Bot message: "{{ bot_response }}"
"#;

/// A config root in a temp dir; each `add` writes one config directory.
pub struct Configs {
    pub dir: tempfile::TempDir,
}

impl Configs {
    pub fn new() -> Self {
        Configs {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `<id>/config.yml` (and `prompts.yml` with the self-check prompts).
    pub fn add(&self, id: &str, config_yml: &str) -> PathBuf {
        let dir = self.dir.path().join(id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.yml"), config_yml).unwrap();
        std::fs::write(dir.join("prompts.yml"), SELF_CHECK_PROMPTS).unwrap();
        dir
    }
}

/// A main model block pointing at `base_url`.
pub fn main_model(base_url: &str) -> String {
    format!(
        "models:\n  - type: main\n    engine: openai\n    model: fake-model\n    parameters:\n      base_url: {base_url}\n"
    )
}

/// A config YAML: the main model at `base_url`, the general instruction and `extra`.
pub fn config(base_url: &str, extra: &str) -> String {
    format!(
        "{}instructions:\n  - type: general\n    content: You are a test bot.\n{extra}",
        main_model(base_url)
    )
}

/// A running streamguard gRPC server.
pub struct Server {
    pub addr: SocketAddr,
    pub client: GuardrailsClient<Channel>,
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Stops accepting and waits for the server to drain.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.handle).await.unwrap();
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }
}

/// Serves every config under `root` on 127.0.0.1:0.
pub async fn start(root: &Path) -> Server {
    start_with(root, ServerSettings::default()).await
}

/// Builds the library's server for `root` with these settings.
pub fn builder(root: &Path, settings: ServerSettings) -> streamguard::server::ServerBuilder {
    streamguard::server::Server::builder()
        .config_root(root)
        .settings(settings)
}

/// A listener on 127.0.0.1:0.
pub async fn listener() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// Serves every config under `root` over gRPC on 127.0.0.1:0 with these settings.
pub async fn start_with(root: &Path, settings: ServerSettings) -> Server {
    let server = builder(root, settings)
        .grpc(listener().await)
        .build()
        .await
        .unwrap_or_else(|e| panic!("configs load: {e}"));
    start_server(server).await
}

/// Runs a built server until [`Server::shutdown`]; connects a gRPC client.
pub async fn start_server(server: streamguard::server::Server) -> Server {
    let addr = server.grpc_addr().expect("a gRPC listener");
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        server
            .run(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    let client = GuardrailsClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    Server {
        addr,
        client,
        stop: Some(stop),
        handle,
    }
}

/// A one-message request.
pub fn request(config_id: &str, text: &str) -> streamguard::pb::GenerateRequest {
    streamguard::pb::GenerateRequest {
        config_id: config_id.into(),
        messages: vec![streamguard::pb::Message {
            role: "user".into(),
            content: text.into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// What a StreamGenerate call produced.
#[derive(Debug)]
pub struct Collected {
    pub chunks: Vec<String>,
    pub finals: Vec<streamguard::pb::GenerateResponse>,
    pub error: Option<tonic::Status>,
    /// Pieces of tool calls, in order.
    pub tool_calls: Vec<streamguard::pb::ToolCallDelta>,
}

/// Runs StreamGenerate to the end, collecting chunks, final events and the
/// error status (whether it ended the stream or was the call's answer).
pub async fn collect(
    client: &mut GuardrailsClient<Channel>,
    request: streamguard::pb::GenerateRequest,
) -> Result<Collected, tonic::Status> {
    use streamguard::pb::stream_generate_response::Event;
    let mut out = Collected {
        chunks: vec![],
        finals: vec![],
        error: None,
        tool_calls: vec![],
    };
    // A failure before the first event comes as the call's status (the
    // response head waits for the first event); to a caller it is the same
    // outcome as a status after zero events.
    let mut stream = match client.stream_generate(request).await {
        Ok(r) => r.into_inner(),
        Err(status) => {
            out.error = Some(status);
            return Ok(out);
        }
    };
    loop {
        match stream.message().await {
            Ok(Some(msg)) => match msg.event {
                Some(Event::Chunk(c)) => {
                    assert!(out.finals.is_empty(), "chunk after the final event");
                    out.chunks.push(c.text)
                }
                Some(Event::Final(f)) => out.finals.push(f),
                Some(Event::Reasoning(_)) => {
                    assert!(out.chunks.is_empty(), "reasoning after the answer started")
                }
                Some(Event::ToolCall(piece)) => {
                    assert!(out.finals.is_empty(), "tool call after the final event");
                    out.tool_calls.push(piece)
                }
                None => panic!("event without a payload"),
            },
            Ok(None) => break,
            Err(status) => {
                out.error = Some(status);
                break;
            }
        }
    }
    Ok(out)
}

/// Serves the HTTP API for every config under `root` on 127.0.0.1:0; returns its base URL.
pub async fn start_http(root: &Path) -> String {
    start_http_with(root, ServerSettings::default()).await
}

/// [`start_http`] with these settings.
pub async fn start_http_with(root: &Path, settings: ServerSettings) -> String {
    let server = builder(root, settings)
        .http(listener().await)
        .build()
        .await
        .unwrap_or_else(|e| panic!("configs load: {e}"));
    let addr = server.http_addr().unwrap();
    tokio::spawn(server.run(std::future::pending()));
    format!("http://{addr}")
}

/// Serves gRPC with these (TLS) settings on 127.0.0.1:0; returns the address.
pub async fn start_with_tls(root: &Path, settings: ServerSettings) -> SocketAddr {
    let server = builder(root, settings)
        .grpc(listener().await)
        .build()
        .await
        .unwrap_or_else(|e| panic!("configs load: {e}"));
    let addr = server.grpc_addr().unwrap();
    tokio::spawn(server.run(std::future::pending()));
    addr
}

/// POSTs `body` to `/v1/chat/completions` and returns the status and JSON answer.
pub async fn post_chat(base: &str, body: &Value) -> (u16, Value) {
    // The server installs it when it builds an LLM client; a config without one needs it here.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// POSTs a streaming `body` to `/v1/chat/completions`; the `data:` payloads
/// of its SSE reply as JSON, `[DONE]` left out.
pub async fn sse_json(base: &str, body: &Value) -> Vec<Value> {
    use futures_util::StreamExt;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

/// The bodies a [`json_service`] was sent, in order.
pub type Seen = Arc<std::sync::Mutex<Vec<Value>>>;

/// A JSON service on 127.0.0.1:0 answering `POST path` with `reply(body)`
/// and recording each body; returns its base URL.
pub async fn json_service(path: &str, reply: fn(&Value) -> Value) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route(
            path,
            axum::routing::post(
                move |State(s): State<Seen>, Json(b): Json<Value>| async move {
                    let answer = reply(&b);
                    s.lock().unwrap().push(b);
                    Json(answer)
                },
            ),
        )
        .with_state(seen.clone());
    let l = listener().await;
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (base, seen)
}

/// Chats with config `id` over HTTP, the state carried from turn to turn;
/// each answer, or the failing turn's status and message (then it stops).
pub async fn chat_turns(base: &str, id: &str, turns: &[&str]) -> Vec<String> {
    let mut state = json!({});
    let mut out = Vec::new();
    for user in turns {
        let body = json!({"config_id": id, "messages": [{"role": "user", "content": user}],
                          "guardrails": {"state": state}});
        let (status, r) = post_chat(base, &body).await;
        if status != 200 {
            out.push(format!("{status}: {}", r["error"]["message"]));
            break;
        }
        out.push(r["messages"][0]["content"].as_str().unwrap().to_string());
        state = r["state"].clone();
    }
    out
}

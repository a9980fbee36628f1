//! The HTTP front end: NeMo Guardrails' server endpoints and OpenAI-compatible
//! chat completions, streamed as server-sent events.
//!
//! `POST /v1/chat/completions` accepts NeMo's body (`config_id`, `messages`,
//! `stream`, `options`) and OpenAI's (`model`, `messages`, `stream`,
//! `temperature`, …, with `guardrails: {"config_id": …}`, what the OpenAI SDKs
//! send through `extra_body`). Streams are OpenAI `chat.completion.chunk`
//! events ending with `data: [DONE]`, so OpenAI clients read them unchanged.

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State as AxumState},
    http::{HeaderMap, StatusCode},
    response::{
        IntoResponse, Response as HttpResponse,
        sse::{Event as SseEvent, Sse},
    },
    routing::{get, post},
};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::Instrument;

use crate::{
    engine::{self, Event, Registry, Response, Violation},
    error::Error,
    llm::{CallParams, ChatMessage, Usage},
    rails::Stage,
    server::State,
};

/// The HTTP router over the server's shared state.
pub fn router(state: Arc<State>) -> Router {
    let max_body = state.admission.settings.max_request_bytes;
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/rails/configs", get(list_configs))
        .route("/health", get(health))
        .route("/healthz", get(health))
        .route("/metrics", get(|| async { super::metrics::render() }))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers.get("authorization").and_then(|v| v.to_str().ok())
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn list_configs(AxumState(state): AxumState<Arc<State>>, headers: HeaderMap) -> HttpResponse {
    let admitted = match state.admission.admit(authorization(&headers)) {
        Ok(a) => a,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let registry = state.registry();
    let ids: Vec<Value> = registry
        .iter()
        .filter(|g| admitted.authorize(&g.config().id).is_ok())
        .map(|g| json!({"id": g.config().id}))
        .collect();
    Json(Value::Array(ids)).into_response()
}

/// A message in either body shape.
#[derive(Debug, Deserialize)]
struct InMessage {
    role: String,
    #[serde(default)]
    content: Content,
}

/// OpenAI allows content as a string or a list of typed parts.
#[derive(Debug, Default, Deserialize)]
#[serde(
    untagged,
    expecting = "a string, or a list of {\"type\": \"text\", \"text\": ...} parts"
)]
enum Content {
    #[default]
    Empty,
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a string or a list of strings")]
enum StopField {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
struct GuardrailsField {
    config_id: Option<String>,
    config_ids: Option<Vec<String>>,
    options: Option<NemoOptions>,
}

/// NeMo's `options`.
#[derive(Debug, Default, Deserialize)]
struct NemoOptions {
    rails: Option<NemoRails>,
    llm_params: Option<NemoLlmParams>,
    log: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
struct NemoRails {
    input: Option<BoolOrFlows>,
    output: Option<BoolOrFlows>,
}

/// `true`/`false`, or the flows to run.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "true, false, or a list of flow names")]
enum BoolOrFlows {
    On(bool),
    Flows(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
struct NemoLlmParams {
    temperature: Option<f64>,
    max_tokens: Option<u32>,
    stop: Option<StopField>,
}

/// Both body shapes in one; unknown OpenAI fields (`top_p`, `user`, …) are ignored.
#[derive(Debug, Deserialize)]
struct ChatBody {
    messages: Vec<InMessage>,
    #[serde(default)]
    stream: bool,
    config_id: Option<String>,
    config_ids: Option<Vec<String>>,
    model: Option<String>,
    options: Option<NemoOptions>,
    #[serde(default, rename = "context")]
    _context: Option<Value>,
    guardrails: Option<GuardrailsField>,
    temperature: Option<f64>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    stop: Option<StopField>,
}

/// An HTTP error with an OpenAI-style JSON body.
struct ApiError {
    status: u16,
    message: String,
    kind: &'static str,
    code: &'static str,
    param: Option<String>,
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let (kind, code) = e.kind();
        ApiError {
            status: e.http_status(),
            message: e.to_string(),
            kind,
            code,
            param: e.param().map(str::to_string),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> HttpResponse {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}});
        (status, Json(body)).into_response()
    }
}

fn bad_body(message: String, param: Option<String>) -> ApiError {
    ApiError {
        status: 422,
        message,
        kind: "invalid_request_error",
        code: "invalid_body",
        param,
    }
}

/// What a request resolved to.
struct Parsed {
    config_id: String,
    request: engine::Request,
    stream: bool,
    openai: bool,
    model: String,
}

fn parse(bytes: &[u8], registry: &Registry) -> Result<Parsed, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let body: ChatBody = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let param = (path != ".").then_some(path);
        let message = match &param {
            Some(p) => format!("{p}: {}", e.inner()),
            None => format!("request body: {}", e.inner()),
        };
        bad_body(message, param)
    })?;
    let ChatBody {
        messages,
        stream,
        config_id,
        config_ids,
        model,
        options,
        _context,
        guardrails,
        temperature,
        max_tokens,
        max_completion_tokens,
        stop,
    } = body;
    let guardrails = guardrails.unwrap_or_default();
    let openai = config_id.is_none() && config_ids.is_none();
    let ids = guardrails.config_ids.or(config_ids);
    let id = match (guardrails.config_id.or(config_id), ids) {
        (Some(id), _) => id,
        (None, Some(ids)) => match ids.as_slice() {
            [one] => one.clone(),
            [] => String::new(),
            _ => {
                return Err(bad_body(
                    "config_ids: combining several configs in one request is not supported; pass one".into(),
                    Some("config_ids".into()),
                ));
            }
        },
        // An OpenAI client may name the config as its model.
        (None, None) => model
            .as_deref()
            .filter(|m| registry.get(m).is_ok())
            .unwrap_or_default()
            .to_string(),
    };
    let mut converted = Vec::with_capacity(messages.len());
    for (i, m) in messages.into_iter().enumerate() {
        let content = match m.content {
            Content::Empty => String::new(),
            Content::Text(t) => t,
            Content::Parts(parts) => {
                let mut text = String::new();
                for p in parts {
                    if p.kind != "text" {
                        return Err(bad_body(
                            format!(
                                "messages[{i}].content: only `text` parts are supported, not `{}`",
                                p.kind
                            ),
                            Some(format!("messages[{i}].content")),
                        ));
                    }
                    text.push_str(p.text.as_deref().unwrap_or_default());
                }
                text
            }
        };
        let role = if m.role == "developer" {
            "system".to_string()
        } else {
            m.role
        };
        converted.push(ChatMessage { role, content });
    }
    let mut opts = engine::Options::default();
    let stop_list = |s: Option<StopField>| match s {
        None => Vec::new(),
        Some(StopField::One(s)) => vec![s],
        Some(StopField::Many(v)) => v,
    };
    let nemo = options.or(guardrails.options).unwrap_or_default();
    let params = nemo.llm_params.unwrap_or_default();
    opts.llm_params = CallParams {
        temperature: temperature.or(params.temperature),
        max_tokens: max_tokens.or(max_completion_tokens).or(params.max_tokens),
        stop: {
            let s = stop_list(stop);
            if s.is_empty() {
                stop_list(params.stop)
            } else {
                s
            }
        },
    };
    if let Some(rails) = nemo.rails {
        match rails.input {
            Some(BoolOrFlows::On(on)) => opts.input_rails = on,
            Some(BoolOrFlows::Flows(f)) => opts.input_flows = Some(f),
            None => {}
        }
        match rails.output {
            Some(BoolOrFlows::On(on)) => opts.output_rails = on,
            Some(BoolOrFlows::Flows(f)) => opts.output_flows = Some(f),
            None => {}
        }
    }
    opts.log = match nemo.log {
        Some(Value::Bool(b)) => b,
        Some(Value::Object(m)) => m.values().any(|v| v == &Value::Bool(true)),
        _ => false,
    };
    Ok(Parsed {
        config_id: id,
        request: engine::Request {
            messages: converted,
            options: opts,
            traceparent: None,
        },
        stream,
        openai,
        model: model.unwrap_or_default(),
    })
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn completion_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "chatcmpl-{:x}{:04x}",
        nanos,
        NEXT_ID.fetch_add(1, Ordering::Relaxed) & 0xffff
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn usage_json(u: &Usage) -> Value {
    json!({"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "total_tokens": u.total_tokens})
}

fn violation_json(v: &Violation) -> Value {
    json!({"rail": v.rail, "stage": v.stage.to_string(), "type": v.kind, "code": v.code, "message": v.message, "reason": v.reason})
}

fn log_json(log: &engine::GenerationLog) -> Value {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    json!({
        "activated_rails": log.rails.iter().map(|r| json!({
            "name": r.flow, "type": r.stage.to_string(), "decision": r.decision.as_str(),
            "reason": r.reason, "duration_ms": ms(r.duration)})).collect::<Vec<_>>(),
        "llm_calls": log.llm_calls.iter().map(|c| json!({
            "task": c.task, "prompt": c.prompt, "completion": c.completion,
            "usage": c.usage.as_ref().map(usage_json), "duration_ms": ms(c.duration)})).collect::<Vec<_>>(),
        "stats": {"input_rails_ms": ms(log.timing.input_rails), "generation_ms": ms(log.timing.generation),
                  "output_rails_ms": ms(log.timing.output_rails), "total_ms": ms(log.timing.total)},
    })
}

fn finish_reason(r: &Response) -> &'static str {
    if r.violation.is_some() {
        "content_filter"
    } else {
        "stop"
    }
}

/// The non-streaming reply in the shape the request used.
fn whole_reply(openai: bool, model: &str, config_id: &str, r: Response) -> Value {
    if openai {
        let mut v = json!({
            "id": completion_id(), "object": "chat.completion", "created": now(), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": r.content}, "finish_reason": finish_reason(&r)}],
            "guardrails": {"config_id": config_id},
        });
        if let Some(u) = &r.usage {
            v["usage"] = usage_json(u);
        }
        if let Some(viol) = &r.violation {
            v["guardrails"]["violation"] = violation_json(viol);
        }
        if let Some(log) = &r.log {
            v["guardrails"]["log"] = log_json(log);
        }
        if let Some(d) = &r.dialog {
            v["guardrails"]["dialog"] =
                json!({"user_intent": d.user_intent, "bot_intent": d.bot_intent});
        }
        v
    } else {
        let mut v = json!({"messages": [{"role": "assistant", "content": r.content}], "config_id": config_id});
        if let Some(viol) = &r.violation {
            v["violation"] = violation_json(viol);
        }
        if let Some(u) = &r.usage {
            v["usage"] = usage_json(u);
        }
        if let Some(log) = &r.log {
            v["log"] = log_json(log);
        }
        if let Some(d) = &r.dialog {
            v["output_data"] = json!({"user_intent": d.user_intent, "bot_intent": d.bot_intent});
        }
        v
    }
}

async fn chat_completions(
    AxumState(state): AxumState<Arc<State>>,
    headers: HeaderMap,
    body: Bytes,
) -> HttpResponse {
    let rid = super::request_id(headers.get("x-request-id").and_then(|v| v.to_str().ok()));
    let span = tracing::info_span!("request", method = "chat_completions", request_id = %rid);
    let (config, mut response) = match handle(&state, &headers, &body).instrument(span).await {
        Ok(r) => r,
        Err(e) => (String::new(), e.into_response()),
    };
    super::metrics::request(&config, "http_chat_completions", response.status().as_str());
    if let Ok(v) = axum::http::HeaderValue::from_str(&rid) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

/// Serves one chat completion; returns the config id with the response.
async fn handle(
    state: &State,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(String, HttpResponse), ApiError> {
    let admitted = state.admission.admit(authorization(headers))?;
    let registry = state.registry();
    let Parsed {
        config_id,
        mut request,
        stream,
        openai,
        model,
    } = parse(body, &registry)?;
    request.traceparent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    state.admission.check(&request)?;
    let rails = registry.get(&config_id)?.clone();
    let config_id = rails.config().id.clone();
    admitted.authorize(&config_id)?;
    let model = if model.is_empty() {
        config_id.clone()
    } else {
        model
    };
    if !stream {
        let response = rails.generate(request).await?;
        let reply = Json(whole_reply(openai, &model, &config_id, response)).into_response();
        return Ok((config_id, reply));
    }
    // Errors up to here (preconditions included) are plain HTTP errors.
    let events = rails.stream(request)?;
    let id = completion_id();
    let created = now();
    let chunk = move |delta: Value, finish: Option<&str>| {
        json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let sse = async_stream::stream! {
        // The concurrency slot is held until the stream ends.
        let _admitted = admitted;
        let data = |v: Value| Ok::<SseEvent, Infallible>(SseEvent::default().data(v.to_string()));
        yield data(chunk(json!({"role": "assistant", "content": ""}), None));
        let mut events = events;
        while let Some(event) = events.next().await {
            match event {
                Ok(Event::Chunk(text)) => yield data(chunk(json!({"content": text}), None)),
                Ok(Event::Final(r)) => {
                    match &r.violation {
                        // Blocked mid-stream by an output rail: an error event.
                        Some(v) if v.stage == Stage::Output => {
                            yield data(json!({"error": {"message": v.message, "type": v.kind, "param": v.rail, "code": v.code}}));
                        }
                        _ => {
                            let mut last = chunk(json!({}), Some(finish_reason(&r)));
                            if let Some(u) = &r.usage {
                                last["usage"] = usage_json(u);
                            }
                            if let Some(v) = &r.violation {
                                last["guardrails"] = json!({"violation": violation_json(v)});
                            }
                            if let Some(log) = &r.log {
                                last["guardrails"]["log"] = log_json(log);
                            }
                            yield data(last);
                        }
                    }
                }
                Err(e) => {
                    let (kind, code) = e.kind();
                    yield data(json!({"error": {"message": e.to_string(), "type": kind, "param": null, "code": code}}));
                    break;
                }
            }
        }
        yield Ok(SseEvent::default().data("[DONE]"));
    };
    Ok((config_id, Sse::new(sse).into_response()))
}

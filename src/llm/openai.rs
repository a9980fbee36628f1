//! OpenAI-compatible chat completions (OpenAI, NVIDIA NIM, vLLM, any server
//! that speaks `/v1/chat/completions`), streamed over server-sent events.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use eventsource_stream::Eventsource;
use futures_util::{FutureExt, StreamExt, future::BoxFuture};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    CallParams, ChatRequest, Completion, Delta, DeltaStream, LlmError, Provider, ReceiveLimits,
    UpstreamSettings, Usage,
};
use crate::config::{ConfigError, EngineKind, ModelConfig};

/// Bytes of an HTTP error body kept for the error message.
const MAX_ERROR_BODY: usize = 2048;

/// A client for one model entry. Cloning shares the connection pool.
#[derive(Clone)]
pub struct OpenAiProvider {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    url: String,
    embeddings_url: String,
    model: String,
    api_key: Result<Option<String>, String>,
    /// Config `parameters` sent with every call (temperature, top_p, …).
    defaults: Map<String, Value>,
    can_stream: bool,
    limits: ReceiveLimits,
    request_timeout: Duration,
    connect_timeout: Duration,
    retries: u32,
    model_name: Arc<str>,
}

impl std::fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the API key.
        f.debug_struct("OpenAiProvider")
            .field("url", &self.inner.url)
            .field("model", &self.inner.model)
            .finish_non_exhaustive()
    }
}

/// An HTTP client (and connection pool) for one model entry.
fn client(connect_timeout: Duration) -> Result<reqwest::Client, String> {
    // reqwest is built without a default crypto provider; use ring.
    static PROVIDER: OnceLock<()> = OnceLock::new();
    PROVIDER.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
        .map_err(|e| e.to_string())
}

fn seconds(params: &mut Map<String, Value>, key: &str) -> Option<Duration> {
    let v = params.remove(key)?;
    v.as_f64().filter(|s| *s > 0.0).map(Duration::from_secs_f64)
}

impl OpenAiProvider {
    /// Builds the client from a model entry.
    pub fn from_config(
        model: &ModelConfig,
        upstream: &UpstreamSettings,
    ) -> Result<Self, ConfigError> {
        let mut defaults = model.parameters.clone();
        // Rail calls never stream and the main call decides per request: a
        // `stream` setting in the config must not leak into either.
        for key in ["stream", "streaming", "stream_options", "n"] {
            defaults.remove(key);
        }
        let request_timeout = seconds(&mut defaults, "request_timeout")
            .or_else(|| seconds(&mut defaults, "timeout"))
            .unwrap_or(upstream.request_timeout);
        let limits = ReceiveLimits {
            initial: seconds(&mut defaults, "first_token_timeout")
                .unwrap_or(upstream.first_token_timeout),
            idle: seconds(&mut defaults, "idle_timeout").unwrap_or(upstream.idle_timeout),
            lifetime: request_timeout,
        };
        let connect_timeout =
            seconds(&mut defaults, "connect_timeout").unwrap_or(upstream.connect_timeout);
        let retries = match defaults
            .remove("retries")
            .or_else(|| defaults.remove("max_retries"))
        {
            None => upstream.retries,
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    ConfigError::invalid(
                        &model.source,
                        format!("{}.parameters.retries", model.key),
                        "must be a whole number",
                    )
                })?,
        };

        let (default_base, default_key_var) = match model.engine {
            EngineKind::Nim => (
                "https://integrate.api.nvidia.com/v1",
                Some("NVIDIA_API_KEY"),
            ),
            EngineKind::VllmOpenAi => ("", None),
            EngineKind::OpenAi | EngineKind::Scripted => {
                ("https://api.openai.com/v1", Some("OPENAI_API_KEY"))
            }
        };
        // OpenAI SDKs' convention: OPENAI_BASE_URL redirects `engine: openai`
        // entries that name no endpoint, so NeMo configs run unchanged against
        // any OpenAI-compatible server.
        let env_base = (model.engine == EngineKind::OpenAi && model.base_url.is_none())
            .then(|| std::env::var("OPENAI_BASE_URL").ok())
            .flatten();
        let custom_base = model.base_url.is_some() || env_base.is_some();
        let base = model
            .base_url
            .as_deref()
            .or(env_base.as_deref())
            .unwrap_or(default_base);
        let url = format!("{}/chat/completions", base.trim_end_matches('/'));
        let embeddings_url = format!("{}/embeddings", base.trim_end_matches('/'));

        let literal_key = match defaults.remove("api_key") {
            Some(Value::String(k)) => Some(k),
            _ => None,
        };
        let api_key = if let Some(k) = literal_key {
            Ok(Some(k))
        } else if let Some(var) = &model.api_key_env_var {
            // Named explicitly: its absence is an error at call time.
            std::env::var(var).map(Some).map_err(|_| var.clone())
        } else {
            match default_key_var {
                Some(var) => match std::env::var(var) {
                    Ok(k) => Ok(Some(k)),
                    // A self-hosted endpoint usually needs no key.
                    Err(_) if custom_base => Ok(None),
                    Err(_) => Err(var.to_string()),
                },
                None => Ok(None),
            }
        };
        let http = client(connect_timeout).map_err(|e| {
            ConfigError::invalid(&model.source, &model.key, format!("HTTP client: {e}"))
        })?;
        Ok(OpenAiProvider {
            inner: Arc::new(Inner {
                http,
                url,
                embeddings_url,
                model: model.model.clone(),
                api_key,
                defaults,
                can_stream: model.streaming,
                limits,
                request_timeout,
                connect_timeout,
                retries,
                model_name: model.model.as_str().into(),
            }),
        })
    }
}

#[derive(Deserialize)]
struct EmbeddingsBody {
    #[serde(default)]
    data: Vec<EmbeddingItem>,
    error: Option<ErrorField>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    embedding: Vec<f32>,
}

impl OpenAiProvider {
    /// Embeds `inputs` with the `/embeddings` endpoint, in order.
    pub async fn embed(&self, inputs: &[String]) -> Result<Vec<Vec<f32>>, LlmError> {
        let inner = &self.inner;
        let mut builder = inner
            .http
            .post(&inner.embeddings_url)
            .timeout(inner.request_timeout)
            .json(&json!({"model": inner.model, "input": inputs}));
        match &inner.api_key {
            Ok(Some(key)) => builder = builder.bearer_auth(key),
            Ok(None) => {}
            Err(var) => return Err(LlmError::MissingApiKey(var.clone())),
        }
        let response = builder
            .send()
            .await
            .map_err(|e| inner.transport_error(&e))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| inner.transport_error(&e))?;
        if !status.is_success() {
            return Err(LlmError::Status {
                url: inner.embeddings_url.clone(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes)
                    .chars()
                    .take(MAX_ERROR_BODY)
                    .collect(),
            });
        }
        let body: EmbeddingsBody = serde_json::from_slice(&bytes)
            .map_err(|e| LlmError::Protocol(format!("embeddings answer is not valid JSON: {e}")))?;
        if let Some(err) = body.error {
            return Err(LlmError::Api(err.into_message()));
        }
        if body.data.len() != inputs.len() {
            return Err(LlmError::Protocol(format!(
                "{} embeddings for {} inputs",
                body.data.len(),
                inputs.len()
            )));
        }
        Ok(body.data.into_iter().map(|d| d.embedding).collect())
    }
}

impl Inner {
    fn body(&self, request: &ChatRequest, stream: bool) -> Value {
        let mut body = self.defaults.clone();
        body.insert("model".into(), Value::String(self.model.clone()));
        body.insert("messages".into(), json!(request.messages));
        let CallParams {
            temperature,
            max_tokens,
            stop,
        } = &request.params;
        if let Some(t) = temperature {
            body.insert("temperature".into(), json!(t));
        }
        if let Some(m) = max_tokens {
            body.insert("max_tokens".into(), json!(m));
        }
        if !stop.is_empty() {
            body.insert("stop".into(), json!(stop));
        }
        if stream {
            body.insert("stream".into(), Value::Bool(true));
            body.insert("stream_options".into(), json!({"include_usage": true}));
        }
        Value::Object(body)
    }

    /// Sends the call, retrying connection errors, 429 and 5xx with jittered
    /// exponential backoff. Nothing has reached the caller yet when this runs,
    /// so a retry is invisible to it.
    async fn send(
        &self,
        request: &ChatRequest,
        stream: bool,
    ) -> Result<reqwest::Response, LlmError> {
        let body = self.body(request, stream);
        let trace = request.traceparent.as_deref();
        let mut attempt = 0;
        loop {
            match self.send_once(&body, stream, trace).await {
                Err(e) if attempt < self.retries && retryable(&e) => {
                    attempt += 1;
                    let base = 100u64 << attempt.min(6);
                    let wait = Duration::from_millis(base / 2 + fastrand::u64(0..=base));
                    tracing::warn!(model = %self.model_name, attempt, error = %e, ?wait, "retrying upstream call");
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    async fn send_once(
        &self,
        body: &Value,
        stream: bool,
        traceparent: Option<&str>,
    ) -> Result<reqwest::Response, LlmError> {
        let mut builder = self.http.post(&self.url).json(body);
        if let Some(t) = traceparent {
            builder = builder.header("traceparent", t);
        }
        match &self.api_key {
            Ok(Some(key)) => builder = builder.bearer_auth(key),
            Ok(None) => {}
            Err(var) => return Err(LlmError::MissingApiKey(var.clone())),
        }
        if !stream {
            builder = builder.timeout(self.request_timeout);
        }
        let response = builder.send().await.map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        let mut body = body.trim().to_string();
        if body.len() > MAX_ERROR_BODY {
            let cut = (0..=MAX_ERROR_BODY)
                .rev()
                .find(|&i| body.is_char_boundary(i))
                .unwrap_or(0);
            body.truncate(cut);
            body.push('…');
        }
        Err(LlmError::Status {
            url: self.url.clone(),
            status: status.as_u16(),
            body,
        })
    }

    fn transport_error(&self, e: &reqwest::Error) -> LlmError {
        if e.is_timeout() {
            let (limit, after) = if e.is_connect() {
                ("connect_timeout", self.connect_timeout)
            } else {
                ("request_timeout", self.request_timeout)
            };
            return LlmError::Timeout {
                limit,
                after,
                model: self.model_name.to_string(),
            };
        }
        // The innermost cause says "Connection refused" and the like.
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message = s.to_string();
            source = s.source();
        }
        LlmError::Connect {
            url: self.url.clone(),
            message,
        }
    }
}

/// Worth another try: the endpoint was unreachable, overloaded or failing.
fn retryable(e: &LlmError) -> bool {
    match e {
        LlmError::Connect { .. } => true,
        LlmError::Status { status, .. } => *status == 429 || *status >= 500,
        LlmError::Timeout { limit, .. } => *limit == "connect_timeout",
        LlmError::Api(_) | LlmError::Protocol(_) | LlmError::MissingApiKey(_) => false,
    }
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorField {
    Object(ApiError),
    Text(String),
}

impl ErrorField {
    fn into_message(self) -> String {
        match self {
            ErrorField::Object(o) => o.message.unwrap_or_else(|| "unknown error".into()),
            ErrorField::Text(t) => t,
        }
    }
}

#[derive(Deserialize)]
struct CompletionBody {
    #[serde(default)]
    choices: Vec<CompletionChoice>,
    usage: Option<Usage>,
    error: Option<ErrorField>,
}

#[derive(Deserialize)]
struct CompletionChoice {
    message: Option<MessageBody>,
}

#[derive(Deserialize)]
struct MessageBody {
    content: Option<String>,
}

#[derive(Deserialize)]
struct ChunkBody {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    usage: Option<Usage>,
    error: Option<ErrorField>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    delta: Option<MessageBody>,
    finish_reason: Option<String>,
}

fn parse_completion(bytes: &[u8]) -> Result<Completion, LlmError> {
    let body: CompletionBody = serde_json::from_slice(bytes)
        .map_err(|e| LlmError::Protocol(format!("completion is not valid JSON: {e}")))?;
    if let Some(err) = body.error {
        return Err(LlmError::Api(err.into_message()));
    }
    let text = body
        .choices
        .into_iter()
        .next()
        .and_then(|c| c.message)
        .and_then(|m| m.content)
        .ok_or_else(|| LlmError::Protocol("completion has no choices[0].message.content".into()))?;
    Ok(Completion {
        text,
        usage: body.usage,
    })
}

/// What one SSE `data:` payload of a chat-completions stream means.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Text (absent for role-only and empty deltas), usage, and whether a
    /// `finish_reason` was set.
    Deltas(Option<String>, Option<Usage>, bool),
    /// `data: [DONE]`.
    Done,
}

/// Parses one `data:` payload of a chat-completions stream.
pub fn parse_event(data: &str) -> Result<Parsed, LlmError> {
    let data = data.trim();
    if data == "[DONE]" {
        return Ok(Parsed::Done);
    }
    let chunk: ChunkBody = serde_json::from_str(data)
        .map_err(|e| LlmError::Protocol(format!("stream event is not valid JSON ({e}): {data}")))?;
    if let Some(err) = chunk.error {
        return Err(LlmError::Api(err.into_message()));
    }
    let mut text = None;
    let mut finished = false;
    if let Some(choice) = chunk.choices.into_iter().next() {
        finished = choice.finish_reason.is_some();
        // Role-only and empty deltas carry no text.
        text = choice
            .delta
            .and_then(|d| d.content)
            .filter(|c| !c.is_empty());
    }
    Ok(Parsed::Deltas(text, chunk.usage, finished))
}

impl Provider for OpenAiProvider {
    fn can_stream(&self) -> bool {
        self.inner.can_stream
    }

    fn complete(&self, request: ChatRequest) -> BoxFuture<'static, Result<Completion, LlmError>> {
        let inner = self.inner.clone();
        async move {
            let response = inner.send(&request, false).await?;
            let bytes = response
                .bytes()
                .await
                .map_err(|e| inner.transport_error(&e))?;
            parse_completion(&bytes)
        }
        .boxed()
    }

    fn stream(&self, request: ChatRequest) -> DeltaStream {
        let inner = self.inner.clone();
        let limits = inner.limits;
        let stream = async_stream::stream! {
            let response = match inner.send(&request, true).await {
                Ok(r) => r,
                Err(e) => {
                    yield Err(e);
                    return;
                }
            };
            let is_json = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/json"));
            if is_json {
                // The server ignored `stream: true`; relay its whole answer.
                match response.bytes().await {
                    Ok(bytes) => match parse_completion(&bytes) {
                        Ok(c) => {
                            if !c.text.is_empty() {
                                yield Ok(Delta::Text(c.text));
                            }
                            if let Some(u) = c.usage {
                                yield Ok(Delta::Usage(u));
                            }
                        }
                        Err(e) => yield Err(e),
                    },
                    Err(e) => yield Err(inner.transport_error(&e)),
                }
                return;
            }
            let mut events = response.bytes_stream().eventsource();
            let mut finished = false;
            loop {
                match events.next().await {
                    Some(Ok(event)) => match parse_event(&event.data) {
                        Ok(Parsed::Done) => return,
                        Ok(Parsed::Deltas(text, usage, fin)) => {
                            finished |= fin;
                            if let Some(t) = text {
                                yield Ok(Delta::Text(t));
                            }
                            if let Some(u) = usage {
                                yield Ok(Delta::Usage(u));
                            }
                        }
                        Err(e) => {
                            yield Err(e);
                            return;
                        }
                    },
                    Some(Err(e)) => {
                        yield Err(LlmError::Protocol(format!("stream broke off: {e}")));
                        return;
                    }
                    None => {
                        if !finished {
                            yield Err(LlmError::Protocol(
                                "stream ended before `data: [DONE]` or a finish_reason".into(),
                            ));
                        }
                        return;
                    }
                }
            }
        };
        limits.apply(self.inner.model_name.clone(), Box::pin(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_only_and_empty_deltas_carry_no_text() {
        let role = r#"{"choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}"#;
        assert!(matches!(
            parse_event(role),
            Ok(Parsed::Deltas(None, None, false))
        ));
        let empty = r#"{"choices":[{"delta":{"content":""}}]}"#;
        assert!(matches!(
            parse_event(empty),
            Ok(Parsed::Deltas(None, None, false))
        ));
    }

    #[test]
    fn text_usage_and_done_are_recognised() {
        let text = r#"{"choices":[{"delta":{"content":" world"}}]}"#;
        match parse_event(text) {
            Ok(Parsed::Deltas(Some(t), None, false)) => assert_eq!(t, " world"),
            _ => panic!("expected text"),
        }
        let usage =
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;
        match parse_event(usage) {
            Ok(Parsed::Deltas(None, Some(u), false)) => assert_eq!(u.total_tokens, 5),
            _ => panic!("expected usage"),
        }
        assert!(matches!(parse_event(" [DONE] "), Ok(Parsed::Done)));
    }

    #[test]
    fn error_payloads_become_api_errors() {
        let e = parse_event(r#"{"error":{"message":"overloaded","type":"server_error"}}"#);
        assert!(matches!(e, Err(LlmError::Api(m)) if m == "overloaded"));
        let e = parse_event(r#"{"error":"boom"}"#);
        assert!(matches!(e, Err(LlmError::Api(m)) if m == "boom"));
        assert!(matches!(
            parse_event("{not json"),
            Err(LlmError::Protocol(_))
        ));
    }

    #[test]
    fn completion_needs_content() {
        let ok =
            parse_completion(br#"{"choices":[{"message":{"role":"assistant","content":"No"}}]}"#);
        assert_eq!(ok.map(|c| c.text).ok().as_deref(), Some("No"));
        assert!(parse_completion(br#"{"choices":[]}"#).is_err());
    }
}

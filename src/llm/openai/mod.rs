//! OpenAI-compatible chat completions (OpenAI, Azure OpenAI, NVIDIA NIM,
//! vLLM, DeepSeek, TGI, Ollama, any server that speaks
//! `/v1/chat/completions`), streamed over server-sent events; text
//! completions (`/v1/completions`) for completion-only models; and
//! `/v1/embeddings`.

mod stream;
mod text;
mod wire;

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::{FutureExt, StreamExt, future::BoxFuture};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value, json};

use super::{
    ChatMessage, ChatRequest, Completion, DeltaStream, Embedder, LlmError, Provider, ReceiveLimits,
    UpstreamSettings,
    http::{self, Target},
    retry,
};
use super::{anthropic, azure, compat};
use crate::config::{ConfigError, EngineKind, ModelConfig, ModelMode, OpenAiSettings};

pub use wire::{Deltas, Parsed, parse_event};

/// A client for one model entry. Cloning shares the connection pool.
#[derive(Clone)]
pub struct OpenAiProvider {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// The chat (or, for a text model, the completions) URL.
    url: String,
    /// `url`, parsed once.
    chat_url: reqwest::Url,
    embeddings_url: String,
    model: String,
    /// Chat or text completions.
    text: bool,
    api_key: Result<Option<String>, String>,
    /// Azure sends the key in `api-key`, everyone else as a bearer token.
    key_header: bool,
    /// Anthropic's Messages API instead of OpenAI's wire format.
    anthropic: bool,
    /// Config `parameters` sent with every call (temperature, top_p, …).
    defaults: Map<String, Value>,
    can_stream: bool,
    limits: ReceiveLimits,
    request_timeout: Duration,
    connect_timeout: Duration,
    retries: u32,
    model_name: Arc<str>,
    /// The cap on one SSE event of a streamed answer.
    max_event_bytes: usize,
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

/// The API key: a literal one, the named env var, or the engine's default
/// env var (optional for a self-hosted endpoint). `Err` names the missing var.
fn api_key(
    settings: &OpenAiSettings,
    default_var: Option<&str>,
    custom_base: bool,
) -> Result<Option<String>, String> {
    if let Some(k) = &settings.api_key {
        return Ok(Some(k.clone()));
    }
    if let Some(var) = &settings.api_key_env_var {
        // Named explicitly: its absence is an error at call time.
        return std::env::var(var).map(Some).map_err(|_| var.clone());
    }
    match default_var {
        Some(var) => match std::env::var(var) {
            Ok(k) => Ok(Some(k)),
            // A self-hosted endpoint usually needs no key.
            Err(_) if custom_base => Ok(None),
            Err(_) => Err(var.to_string()),
        },
        None => Ok(None),
    }
}

impl OpenAiProvider {
    /// Builds the client for a model entry with its typed settings.
    pub fn new(
        model: &ModelConfig,
        settings: &OpenAiSettings,
        upstream: &UpstreamSettings,
    ) -> Result<Self, ConfigError> {
        let t = &settings.timeouts;
        let request_timeout = t.request.unwrap_or(upstream.request_timeout);
        let limits = ReceiveLimits {
            initial: t.first_token.unwrap_or(upstream.first_token_timeout),
            idle: t.idle.unwrap_or(upstream.idle_timeout),
            lifetime: request_timeout,
        };
        let connect_timeout = t.connect.unwrap_or(upstream.connect_timeout);
        let engine = model.engine();
        let defaults = compat::defaults(engine);
        let custom_base = settings.base_url.is_some()
            || (engine == EngineKind::OpenAi && std::env::var_os("OPENAI_BASE_URL").is_some());
        let bad_url = |message: String| {
            ConfigError::invalid(
                model.source(),
                format!("{}.parameters.base_url", model.key()),
                message,
            )
        };
        let mut api_key = api_key(settings, defaults.key_var, custom_base);
        let base = match settings.base_url.clone().or(defaults.base) {
            Some(base) => base,
            // Azure's endpoint may be set in the environment later: until
            // then calls fail naming the variable, and `check` warns.
            None if engine == EngineKind::Azure => {
                api_key = Err("AZURE_OPENAI_ENDPOINT".into());
                "https://azure-openai-endpoint.invalid".into()
            }
            None => return Err(bad_url(format!("required for engine {}", engine.name()))),
        };
        let text = model.mode() == ModelMode::Text;
        let operation = if text {
            "completions"
        } else {
            "chat/completions"
        };
        let anthropic = engine == EngineKind::Anthropic;
        let (url, embeddings_url) = if engine == EngineKind::Azure {
            let at = |op| azure::url(&base, settings, model.model(), op).map_err(bad_url);
            (at(operation)?, at("embeddings")?)
        } else if anthropic {
            (anthropic::messages_url(&base), String::new())
        } else {
            let base = compat::complete_base(engine, &base);
            (format!("{base}/{operation}"), format!("{base}/embeddings"))
        };
        let http = http::client(upstream, connect_timeout).map_err(|e| {
            ConfigError::invalid(model.source(), model.key(), format!("HTTP client: {e}"))
        })?;
        let chat_url = reqwest::Url::parse(&url)
            .map_err(|e| bad_url(format!("`{base}` is not a URL: {e}")))?;
        Ok(OpenAiProvider {
            inner: Arc::new(Inner {
                http,
                url,
                chat_url,
                embeddings_url,
                model: model.model().to_string(),
                text,
                api_key,
                key_header: engine == EngineKind::Azure,
                anthropic,
                defaults: settings.body.clone(),
                can_stream: model.streaming(),
                limits,
                request_timeout,
                connect_timeout,
                retries: settings.retries.unwrap_or(upstream.retries),
                max_event_bytes: upstream.max_event_bytes,
                model_name: model.model().into(),
            }),
        })
    }
}

#[derive(serde::Serialize)]
struct StreamOptions {
    include_usage: bool,
}

/// The request body, serialized straight from borrowed parts: the configured
/// defaults, with the call's own parameters winning.
struct Body<'a> {
    inner: &'a Inner,
    request: &'a ChatRequest,
    stream: bool,
}

impl Serialize for Body<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = &self.request.params;
        let mut map = s.serialize_map(None)?;
        let overridden = |k: &str| match k {
            "model" | "messages" | "prompt" | "stream" | "stream_options" => true,
            "tools" | "tool_choice" | "parallel_tool_calls" => self.request.tools.is_some(),
            "temperature" => p.temperature.is_some(),
            "max_tokens" => p.max_tokens.is_some(),
            "stop" => !p.stop.is_empty() || self.inner.text,
            _ => false,
        };
        for (k, v) in &self.inner.defaults {
            if !overridden(k) {
                map.serialize_entry(k, v)?;
            }
        }
        map.serialize_entry("model", &self.inner.model)?;
        if self.inner.text {
            map.serialize_entry("prompt", &text::prompt(&self.request.messages))?;
        } else {
            map.serialize_entry::<_, [ChatMessage]>("messages", &self.request.messages)?;
        }
        if let Some(t) = p.temperature {
            map.serialize_entry("temperature", &t)?;
        }
        if let Some(m) = p.max_tokens {
            map.serialize_entry("max_tokens", &m)?;
        }
        let turn_stop = self.inner.text && text::is_conversation(&self.request.messages);
        if turn_stop && !p.stop.iter().any(|s| s == text::TURN_STOP) {
            let mut stop = p.stop.clone();
            stop.push(text::TURN_STOP.to_string());
            map.serialize_entry("stop", &stop)?;
        } else if !p.stop.is_empty() {
            map.serialize_entry("stop", &p.stop)?;
        }
        if let Some(tools) = &self.request.tools {
            map.serialize_entry("tools", &tools.tools)?;
            if let Some(choice) = &tools.tool_choice {
                map.serialize_entry("tool_choice", choice)?;
            }
            if let Some(p) = tools.parallel_tool_calls {
                map.serialize_entry("parallel_tool_calls", &p)?;
            }
        }
        if self.stream {
            map.serialize_entry("stream", &true)?;
            map.serialize_entry(
                "stream_options",
                &StreamOptions {
                    include_usage: true,
                },
            )?;
        }
        map.end()
    }
}

impl Inner {
    /// A whole answer in this endpoint's wire format.
    fn parse_completion(&self, bytes: &[u8]) -> Result<Completion, LlmError> {
        if self.anthropic {
            anthropic::parse_completion(bytes)
        } else {
            wire::parse_completion(bytes)
        }
    }

    fn target(&self, url: &'static str) -> Target<'_> {
        Target {
            url: if url == "embeddings" {
                &self.embeddings_url
            } else {
                &self.url
            },
            model: &self.model_name,
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            secret: self.api_key.as_ref().ok().and_then(|k| k.as_deref()),
        }
    }

    /// Sends the call, retrying connection errors, 429 and 5xx with jittered
    /// exponential backoff. Nothing has reached the caller yet when this runs,
    /// so a retry is invisible to it.
    async fn send(
        &self,
        request: &ChatRequest,
        stream: bool,
    ) -> Result<reqwest::Response, LlmError> {
        let body = if self.anthropic {
            serde_json::to_vec(&anthropic::Body {
                model: &self.model,
                defaults: &self.defaults,
                request,
                stream,
            })
        } else {
            serde_json::to_vec(&Body {
                inner: self,
                request,
                stream,
            })
        }
        .map(Bytes::from)
        .map_err(|e| LlmError::Protocol(format!("request body: {e}")))?;
        let trace = request.traceparent.as_deref();
        let mut attempt = 0;
        loop {
            match self.send_once(body.clone(), stream, trace).await {
                Err(e) if attempt < self.retries && retry::retryable(&e) => {
                    attempt += 1;
                    let wait = retry::backoff(attempt);
                    tracing::warn!(model = %self.model_name, attempt, error = %e, ?wait, "retrying upstream call");
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    fn authorized(
        &self,
        builder: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, LlmError> {
        let builder = if self.anthropic {
            builder.header("anthropic-version", anthropic::API_VERSION)
        } else {
            builder
        };
        match &self.api_key {
            Ok(Some(key)) if self.anthropic => Ok(builder.header("x-api-key", key)),
            Ok(Some(key)) if self.key_header => Ok(builder.header("api-key", key)),
            Ok(Some(key)) => Ok(builder.bearer_auth(key)),
            Ok(None) => Ok(builder),
            Err(var) => Err(LlmError::MissingApiKey(var.clone())),
        }
    }

    async fn send_once(
        &self,
        body: Bytes,
        stream: bool,
        traceparent: Option<&str>,
    ) -> Result<reqwest::Response, LlmError> {
        let mut builder = self
            .http
            .post(self.chat_url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(t) = traceparent {
            builder = builder.header("traceparent", t);
        }
        builder = self.authorized(builder)?;
        if !stream {
            builder = builder.timeout(self.request_timeout);
        }
        let target = self.target("chat");
        let response = builder
            .send()
            .await
            .map_err(|e| target.transport_error(&e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(target.status_error(response).await)
    }

    /// Embeds `inputs` with the `/embeddings` endpoint, in order.
    async fn embed(&self, inputs: Vec<String>) -> Result<Vec<Vec<f32>>, LlmError> {
        let target = self.target("embeddings");
        let builder = self
            .http
            .post(&self.embeddings_url)
            .timeout(self.request_timeout)
            .json(&json!({"model": self.model, "input": inputs}));
        let response = self
            .authorized(builder)?
            .send()
            .await
            .map_err(|e| target.transport_error(&e))?;
        if !response.status().is_success() {
            return Err(target.status_error(response).await);
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| target.transport_error(&e))?;
        let body: wire::EmbeddingsBody = serde_json::from_slice(&bytes)
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

impl Embedder for OpenAiProvider {
    fn embed(&self, inputs: Vec<String>) -> BoxFuture<'static, Result<Vec<Vec<f32>>, LlmError>> {
        let inner = self.inner.clone();
        async move { inner.embed(inputs).await }.boxed()
    }
}

impl Provider for OpenAiProvider {
    fn can_stream(&self) -> bool {
        self.inner.can_stream
    }

    fn missing_api_key(&self) -> Option<&str> {
        self.inner.api_key.as_ref().err().map(String::as_str)
    }

    fn takes_tools(&self) -> bool {
        // Anthropic's Messages API and text completions have their own forms.
        !self.inner.anthropic && !self.inner.text
    }

    fn complete(&self, request: ChatRequest) -> BoxFuture<'static, Result<Completion, LlmError>> {
        let inner = self.inner.clone();
        async move {
            let response = inner.send(&request, false).await?;
            let bytes = response
                .bytes()
                .await
                .map_err(|e| inner.target("chat").transport_error(&e))?;
            inner.parse_completion(&bytes)
        }
        .boxed()
    }

    fn stream(&self, request: ChatRequest) -> DeltaStream {
        let inner = self.inner.clone();
        let limits = inner.limits;
        let max_event = inner.max_event_bytes;
        let opening = async move {
            let response = inner.send(&request, true).await?;
            let is_json = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/json"));
            Ok(if is_json {
                // The server ignored `stream: true`; relay its whole answer.
                stream::Opened::Whole(stream::whole_answer(&inner, response).await)
            } else {
                stream::Opened::Events(crate::llm::sse::Events::new(
                    response.bytes_stream().boxed(),
                    max_event,
                ))
            })
        };
        let answer = stream::Answer::new(Box::pin(opening), self.inner.anthropic);
        limits.apply(self.inner.model_name.clone(), Box::pin(answer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::CallParams;

    #[test]
    fn the_body_puts_the_calls_parameters_over_the_configured_ones() {
        let yaml = "models:\n  - type: main\n    engine: openai\n    model: m\n    parameters:\n      base_url: http://h/v1\n      temperature: 0.7\n      top_p: 0.9\n";
        let config = crate::config::from_yaml("c", yaml).unwrap();
        let model = config.main_model().unwrap();
        let crate::config::ProviderSettings::OpenAi(s) = model.settings() else {
            panic!("openai")
        };
        let p = OpenAiProvider::new(model, s, &UpstreamSettings::default()).unwrap();
        let mut request = ChatRequest::new("general", vec![ChatMessage::user("hi")]);
        request.params = CallParams {
            temperature: Some(0.1),
            max_tokens: None,
            stop: vec!["X".into()],
        };
        let body: Value = serde_json::to_value(Body {
            inner: &p.inner,
            request: &request,
            stream: true,
        })
        .unwrap();
        assert_eq!(
            body,
            json!({"top_p": 0.9, "model": "m", "temperature": 0.1, "stop": ["X"],
                   "messages": [{"role": "user", "content": "hi"}],
                   "stream": true, "stream_options": {"include_usage": true}})
        );
    }
}

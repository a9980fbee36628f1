//! LLM providers: one chat trait, one embeddings trait, an OpenAI-compatible
//! HTTP client and an in-process scripted model.
//!
//! A provider answers a [`ChatRequest`] either whole ([`Provider::complete`])
//! or as a stream of [`Delta`]s ([`Provider::stream`]). Streams are lazy and
//! own everything they need: dropping one drops the HTTP response body, which
//! cancels the upstream request. Nothing here knows about rails or dialogs.

mod anthropic;
mod azure;
pub mod cache;
mod compat;
pub(crate) mod http;
mod limits;
mod message;
mod openai;
pub mod reasoning;
pub mod redact;
mod retry;
mod scripted;
pub mod sse;
mod stop;
pub mod tools;

use std::{
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::{future::BoxFuture, stream::BoxStream};
use serde::Deserialize;

use crate::config::{ConfigError, ModelConfig, ProviderSettings};

pub use limits::ReceiveLimits;
pub use message::{ChatMessage, MessageExtra, Role, last_user_text};
pub use openai::{
    Deltas as StreamDeltas, OpenAiProvider, Parsed as StreamData, parse_event as parse_stream_data,
};
pub use scripted::ScriptedProvider;
pub use stop::StopFilter;
pub use tools::{ToolCall, ToolCallBuilder, ToolCallDelta, Tools};

/// Sampling parameters for one call; unset fields keep the model's configured
/// parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallParams {
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
}

/// A chat-completions call.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// What the call is for: `general` for the main answer, or the prompt task
    /// (`self_check_input`, …). Providers may log it; the scripted model
    /// picks its answer by it.
    pub task: String,
    pub messages: Vec<ChatMessage>,
    pub params: CallParams,
    /// The caller's W3C `traceparent`, passed on to the upstream request.
    pub traceparent: Option<String>,
    /// The tools the caller offers the model (main calls only).
    pub tools: Option<Arc<Tools>>,
}

impl ChatRequest {
    /// A call for `task` with `messages` and default parameters.
    pub fn new(task: impl Into<String>, messages: Vec<ChatMessage>) -> Self {
        ChatRequest {
            task: task.into(),
            messages,
            params: CallParams::default(),
            traceparent: None,
            tools: None,
        }
    }
}

/// Token counts reported by the model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u32,
    #[serde(default)]
    pub completion_tokens: u32,
    #[serde(default)]
    pub total_tokens: u32,
}

/// Why the model stopped, as it reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// It was done (or met a stop sequence it was sent).
    Stop,
    /// It ran into its token limit.
    Length,
    /// The provider's own content filter cut it.
    ContentFilter,
    /// It asked for tool calls.
    ToolCalls,
    /// Anything else (`tool_calls`, a vendor's own reason).
    Other,
}

impl Finish {
    /// OpenAI's `finish_reason` value.
    pub fn parse(reason: &str) -> Self {
        match reason {
            "stop" | "end_turn" | "stop_sequence" | "eos" => Finish::Stop,
            "length" | "max_tokens" => Finish::Length,
            "content_filter" => Finish::ContentFilter,
            "tool_calls" | "tool_use" | "function_call" => Finish::ToolCalls,
            _ => Finish::Other,
        }
    }
}

/// A whole answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub text: String,
    pub usage: Option<Usage>,
    /// Why the model stopped, when it said.
    pub finish: Option<Finish>,
    /// The reasoning trace of a reasoning model (its `reasoning_content`, or
    /// the `<think>` block taken out of the text).
    pub reasoning: Option<String>,
    /// The calls the model asked for.
    pub tool_calls: Vec<ToolCall>,
}

impl Completion {
    /// A text answer.
    pub fn text(text: impl Into<String>, finish: Option<Finish>) -> Self {
        Completion {
            text: text.into(),
            usage: None,
            finish,
            reasoning: None,
            tool_calls: Vec::new(),
        }
    }
}

/// One item of a streamed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delta {
    /// A non-empty piece of text, with the model's own boundaries.
    Text(String),
    /// Token usage, usually after the last text.
    Usage(Usage),
    /// Why the model stopped.
    Finish(Finish),
    /// A piece of the reasoning trace (a reasoning model's thinking), kept
    /// apart from the answer.
    Reasoning(String),
    /// A piece of a tool call the model asks for.
    ToolCall(Box<ToolCallDelta>),
}

/// A streamed answer. Ends after the last delta, or with one error.
pub type DeltaStream = BoxStream<'static, Result<Delta, LlmError>>;

/// Why a model call failed. Every variant maps to `UNAVAILABLE` for the
/// caller: the upstream, not the request, is at fault.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LlmError {
    /// The endpoint could not be reached (refused, DNS, TLS). Messages
    /// name the model; the URL is kept for operators' logs only.
    #[error("cannot reach the endpoint of model `{model}`: {message}")]
    Connect {
        model: String,
        url: String,
        message: String,
    },
    /// The endpoint answered with an HTTP error: its own error message
    /// (OpenAI's `message`, `type`, `code` when the body is such JSON), cut
    /// to a bounded length, with anything that looks like a credential
    /// redacted.
    #[error("model `{model}` answered HTTP {status}: {message}")]
    Status {
        model: String,
        url: String,
        status: u16,
        message: String,
        /// The endpoint's `Retry-After` in seconds (its seconds form, capped
        /// at an hour).
        retry_after: Option<u16>,
    },
    /// The endpoint sent an error payload (`{"error": {...}}`).
    #[error("model error: {0}")]
    Api(String),
    /// The response broke the protocol (bad JSON, cut-off stream).
    #[error("bad response from the model: {0}")]
    Protocol(String),
    /// A time limit passed (`limit` names it: `connect_timeout`,
    /// `first_token_timeout`, `idle_timeout`, `request_timeout`).
    #[error("{limit} ({after:?}) passed waiting for model `{model}`")]
    Timeout {
        limit: &'static str,
        after: Duration,
        model: String,
    },
    /// An env var the model needs (its API key, Azure's endpoint) is not set.
    #[error("env var `{0}` (the model's API key or endpoint) is not set")]
    MissingApiKey(String),
    /// A rail the answer runs on its way (a retrieval rail) could not
    /// decide: the engine reports it as that rail's failure, not the model's.
    #[error("rail `{rail}` failed: {message}")]
    Rail { rail: String, message: String },
    /// The stream came from the caller (GuardStream) and the caller broke
    /// it: the engine reports it as a bad request naming `field`.
    #[error("{field}: {message}")]
    Caller {
        field: &'static str,
        message: String,
    },
}

impl LlmError {
    /// A short name for metrics: `connect`, `status`, `api`, `protocol`, `timeout`, `api_key`.
    pub fn kind(&self) -> &'static str {
        match self {
            LlmError::Connect { .. } => "connect",
            LlmError::Status { .. } => "status",
            LlmError::Api(_) => "api",
            LlmError::Protocol(_) => "protocol",
            LlmError::Timeout { .. } => "timeout",
            LlmError::MissingApiKey(_) => "api_key",
            LlmError::Rail { .. } => "rail",
            LlmError::Caller { .. } => "caller",
        }
    }

    /// The model the failed call was for, when the error knows it.
    pub fn model(&self) -> Option<&str> {
        match self {
            LlmError::Connect { model, .. }
            | LlmError::Status { model, .. }
            | LlmError::Timeout { model, .. } => Some(model),
            LlmError::Api(_)
            | LlmError::Protocol(_)
            | LlmError::MissingApiKey(_)
            | LlmError::Rail { .. }
            | LlmError::Caller { .. } => None,
        }
    }

    /// How long the endpoint asked callers to wait before a retry.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LlmError::Status { retry_after, .. } => {
                retry_after.map(|s| Duration::from_secs(s.into()))
            }
            _ => None,
        }
    }
}

/// One LLM call, as a request log shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    /// `general` for the main answer, else the rail's prompt task.
    pub task: String,
    /// The messages sent, as `role: content` lines.
    pub prompt: String,
    pub completion: String,
    pub usage: Option<Usage>,
    pub duration: Duration,
    /// When the call started.
    pub started: std::time::Instant,
}

impl CallRecord {
    /// Renders messages as the prompt text of a record.
    pub fn prompt_text(messages: &[ChatMessage]) -> String {
        messages
            .iter()
            .map(|m| format!("{}: {}", m.role, m.content))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Collects the LLM calls of one request when its log is requested. Only
/// touched once per call, never per chunk.
#[derive(Debug, Default)]
pub struct CallLog(Mutex<Vec<CallRecord>>);

impl CallLog {
    pub fn record(&self, record: CallRecord) {
        if let Ok(mut calls) = self.0.lock() {
            calls.push(record);
        }
    }

    /// The calls so far, in completion order.
    pub fn take(&self) -> Vec<CallRecord> {
        self.0
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
    }
}

/// A chat model. Implementations are cheap to share (`Arc`) and their
/// futures and streams are `'static` so they can outlive the call site.
pub trait Provider: Send + Sync + fmt::Debug {
    /// Whether [`Provider::stream`] really streams. A provider that cannot
    /// stream breaks streaming precondition 2.
    fn can_stream(&self) -> bool;

    /// The whole answer at once.
    fn complete(&self, request: ChatRequest) -> BoxFuture<'static, Result<Completion, LlmError>>;

    /// The answer as it is generated.
    fn stream(&self, request: ChatRequest) -> DeltaStream;

    /// The API key variable this provider needs and the environment lacks.
    fn missing_api_key(&self) -> Option<&str> {
        None
    }

    /// Whether the provider sends a request's tools (and tool messages) to
    /// its model and reads tool calls back.
    fn takes_tools(&self) -> bool {
        false
    }
}

/// An embeddings model.
pub trait Embedder: Send + Sync + fmt::Debug {
    /// One vector per input, in order.
    fn embed(&self, inputs: Vec<String>) -> BoxFuture<'static, Result<Vec<Vec<f32>>, LlmError>>;
}

/// Defaults for talking to upstream LLMs; a model's `parameters` override
/// them (`connect_timeout`, `first_token_timeout`, `idle_timeout`,
/// `request_timeout` in seconds, `retries`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamSettings {
    pub connect_timeout: Duration,
    pub first_token_timeout: Duration,
    pub idle_timeout: Duration,
    /// A whole call: the whole answer, streamed or not.
    pub request_timeout: Duration,
    /// Retries of connection errors, 429 and 5xx, before any chunk arrived.
    pub retries: u32,
    /// The largest SSE event of a streamed answer, in bytes.
    pub max_event_bytes: usize,
    /// Idle connections kept per upstream host.
    pub pool_max_idle_per_host: usize,
    /// How long an idle upstream connection is kept.
    pub pool_idle_timeout: Duration,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        UpstreamSettings {
            connect_timeout: Duration::from_secs(10),
            first_token_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(600),
            retries: 2,
            max_event_bytes: sse::DEFAULT_MAX_EVENT_BYTES,
            pool_max_idle_per_host: 64,
            pool_idle_timeout: Duration::from_secs(30),
        }
    }
}

/// Builds the chat provider for a model entry. Errors name the entry's file and key.
pub fn build(
    model: &ModelConfig,
    upstream: &UpstreamSettings,
) -> Result<Arc<dyn Provider>, ConfigError> {
    let provider: Arc<dyn Provider> = match model.settings() {
        ProviderSettings::Scripted(s) => {
            Arc::new(ScriptedProvider::new(s.clone(), model.streaming()))
        }
        ProviderSettings::OpenAi(s) => Arc::new(OpenAiProvider::new(model, s, upstream)?),
        ProviderSettings::None => {
            return Err(ConfigError::invalid(
                model.source(),
                format!("{}.engine", model.key()),
                format!(
                    "`{}` is an embeddings engine; a `type: {}` model needs a chat engine",
                    model.engine().name(),
                    model.kind()
                ),
            ));
        }
    };
    // Reasoning traces written into the text are taken out (as NeMo does
    // with `<think>` blocks) unless the entry says to keep them.
    // A judge model's answers may be cached (after its traces are taken out).
    let r = model.reasoning();
    let provider: Arc<dyn Provider> = if r.remove_reasoning_traces {
        Arc::new(reasoning::StripTraces::new(
            provider,
            reasoning::TraceTags {
                start: r.start_token.clone(),
                end: r.end_token.clone(),
            },
        ))
    } else {
        provider
    };
    Ok(match model.cache() {
        Some(c) => Arc::new(cache::Cached::new(provider, model.kind(), c)),
        None => provider,
    })
}

/// Builds the embeddings client for a model entry (`type: embeddings`);
/// `None` for an embeddings engine streamguard has no client for (the
/// dialog then ranks its examples lexically).
pub fn build_embedder(
    model: &ModelConfig,
    upstream: &UpstreamSettings,
) -> Result<Option<Arc<dyn Embedder>>, ConfigError> {
    match model.settings() {
        ProviderSettings::OpenAi(s) if model.engine().openai_compatible() => {
            Ok(Some(Arc::new(OpenAiProvider::new(model, s, upstream)?)))
        }
        ProviderSettings::None => Ok(None),
        _ => Err(ConfigError::invalid(
            model.source(),
            format!("{}.engine", model.key()),
            "the embeddings model needs an OpenAI-compatible engine (`/v1/embeddings`)",
        )),
    }
}

/// The main model of a rails-only config before a request names one: the
/// engine is built again for each named model, so this is never called.
#[derive(Debug)]
pub struct Unconfigured;

impl Provider for Unconfigured {
    fn can_stream(&self) -> bool {
        true
    }

    fn complete(&self, _: ChatRequest) -> BoxFuture<'static, Result<Completion, LlmError>> {
        Box::pin(std::future::ready(Err(LlmError::Api(
            "the config has no main model".into(),
        ))))
    }

    fn stream(&self, _: ChatRequest) -> DeltaStream {
        Box::pin(futures_util::stream::once(std::future::ready(Err(
            LlmError::Api("the config has no main model".into()),
        ))))
    }
}

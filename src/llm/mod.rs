//! LLM providers: one trait, an OpenAI-compatible HTTP client and an
//! in-process scripted model.
//!
//! A provider answers a [`ChatRequest`] either whole ([`Provider::complete`])
//! or as a stream of [`Delta`]s ([`Provider::stream`]). Streams are lazy and
//! own everything they need: dropping one drops the HTTP response body, which
//! cancels the upstream request.

mod limits;
mod openai;
mod scripted;

use std::{
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::{future::BoxFuture, stream::BoxStream};
use serde::Deserialize;

use crate::config::{ConfigError, EngineKind, ModelConfig};

pub use limits::ReceiveLimits;
pub use openai::{OpenAiProvider, Parsed as StreamData, parse_event as parse_stream_data};
pub use scripted::{ScriptedProvider, ScriptedSettings};

/// One chat message sent to a model.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

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
    /// answers judge tasks by it.
    pub task: String,
    pub messages: Vec<ChatMessage>,
    pub params: CallParams,
    /// The caller's W3C `traceparent`, passed on to the upstream request.
    pub traceparent: Option<String>,
    /// Where a provider that makes calls of its own (the dialog runtime)
    /// records them, when the request keeps a log.
    pub calls: Option<Arc<CallLog>>,
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

/// A whole answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub text: String,
    pub usage: Option<Usage>,
}

/// One item of a streamed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delta {
    /// A non-empty piece of text, with the model's own boundaries.
    Text(String),
    /// Token usage, usually after the last text.
    Usage(Usage),
    /// The dialog runtime's reading of the turn (Colang dialog rails only).
    Dialog {
        user_intent: String,
        bot_intent: String,
    },
}

/// A streamed answer. Ends after the last delta, or with one error.
pub type DeltaStream = BoxStream<'static, Result<Delta, LlmError>>;

/// Why a model call failed. Every variant maps to `UNAVAILABLE` for the
/// caller: the upstream, not the request, is at fault.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LlmError {
    /// The endpoint could not be reached (refused, DNS, TLS).
    #[error("cannot reach {url}: {message}")]
    Connect { url: String, message: String },
    /// The endpoint answered with an HTTP error.
    #[error("{url} answered HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
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
    /// The API key env var is not set.
    #[error("API key env var `{0}` is not set")]
    MissingApiKey(String),
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
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        UpstreamSettings {
            connect_timeout: Duration::from_secs(10),
            first_token_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(600),
            retries: 2,
        }
    }
}

/// Builds the provider for a model entry. Errors name the entry's file and key.
pub fn build(
    model: &ModelConfig,
    upstream: &UpstreamSettings,
) -> Result<Arc<dyn Provider>, ConfigError> {
    Ok(match model.engine {
        EngineKind::Scripted => Arc::new(ScriptedProvider::from_config(model)?),
        EngineKind::OpenAi | EngineKind::Nim | EngineKind::VllmOpenAi => {
            Arc::new(OpenAiProvider::from_config(model, upstream)?)
        }
    })
}

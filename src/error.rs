//! The domain error and its one mapping to the wire.
//!
//! Inner code returns [`Error`]; transports convert at the edge with
//! [`Error::to_status`] (gRPC) and [`Error::http_status`] (HTTP) so
//! `tonic::Status` never leaks into signatures.

use std::path::PathBuf;

use crate::{config::ConfigError, llm::LlmError};

/// Everything that can make a request fail. A rail *block* is not here: it is
/// a result (see [`crate::engine::Violation`]), not a failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No loaded config has this id.
    #[error("config `{id}` not found; loaded configs: {known}")]
    ConfigNotFound { id: String, known: String },
    /// A request field is malformed.
    #[error("{field}: {message}")]
    InvalidRequest {
        field: &'static str,
        message: String,
    },
    /// An HTTP body that is not JSON or not of the expected shape; `param` is
    /// the path to the offending value.
    #[error("{message}")]
    InvalidBody {
        param: Option<String>,
        message: String,
    },
    /// The request asks to stream but the config breaks a streaming precondition.
    #[error("{0}")]
    StreamingUnsupported(#[from] PreconditionFailure),
    /// A rails-only config (no `type: main` model) got a request that names
    /// no main model, and the server has no default one.
    #[error(
        "config `{id}` has no main model (`type: main`): name one with the request's `model` field \
         (the HTTP body's `model`, gRPC `GenerateRequest.model`), or give the server a default main model \
         (`serve --main-model <name>` with `--main-base-url` / `--main-api-key-env`, or `models:` in its \
         `--server-config` file)"
    )]
    NoMainModel { id: String },
    /// The main LLM could not be reached or failed.
    #[error("main LLM failed: {0}")]
    Upstream(#[source] LlmError),
    /// A rail could not run (its judge LLM failed, its prompt did not render).
    #[error("rail `{rail}` failed: {message}")]
    Rail { rail: String, message: String },
    /// A config could not be loaded.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The caller's deadline passed.
    #[error("deadline exceeded after {0:?}")]
    DeadlineExceeded(std::time::Duration),
    /// No or an unknown API key.
    #[error("{0}")]
    Unauthenticated(String),
    /// The API key may not use this config.
    #[error("{0}")]
    PermissionDenied(String),
    /// The server is at its concurrency limit.
    #[error("{0}")]
    Overloaded(String),
    /// The server is shutting down.
    #[error("{0}")]
    ShuttingDown(String),
    /// The datastore of conversation threads (Redis) could not be reached
    /// or failed; requests without a thread still work.
    #[error("the thread datastore is unavailable: {0}")]
    Datastore(String),
}

/// Which streaming precondition a config breaks, with the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreconditionFailure {
    /// Rule 1: the config does not enable streaming (`explicit`: it says
    /// `streaming: False`; else it has no `streaming` key and the server
    /// does not treat that as enabled).
    #[error(
        "streaming precondition 1 (streaming enabled) failed: config `{id}` {}. \
         Fix: {}, or call Generate instead of StreamGenerate.",
        if *explicit { "says `streaming: False`" } else { "does not enable streaming" },
        if *explicit {
            format!("set `streaming: True` in {}", file.display())
        } else {
            format!(
                "add `streaming: True` to {}, or start the server with `--streaming-default on` \
                 (NeMo ≥ 0.20 streams without the key)",
                file.display()
            )
        }
    )]
    StreamingDisabled {
        id: String,
        file: PathBuf,
        explicit: bool,
    },
    /// Rule 2: the main model cannot stream.
    #[error(
        "streaming precondition 2 (main LLM can stream) failed: the main model `{model}` of config `{id}` \
         cannot stream (`{key}` in {} declares `streaming: false`). Fix: point the main model at an \
         endpoint that streams and remove `streaming: false` from `{key}`, or call Generate instead of StreamGenerate.",
        file.display()
    )]
    ModelCannotStream {
        id: String,
        model: String,
        file: PathBuf,
        key: String,
    },
    /// Rule 3: output rails without output-rail streaming.
    #[error(
        "streaming precondition 3 (no output rails unless output-rail streaming is enabled) failed: config `{id}` \
         has output rails ({flows}) but rails.output.streaming.enabled is False. Fix: set \
         `rails.output.streaming.enabled: True` in {} so output rails run on chunk windows, or call \
         Generate instead of StreamGenerate.",
        file.display()
    )]
    OutputRailsNotStreamable {
        id: String,
        flows: String,
        file: PathBuf,
    },
}

impl PreconditionFailure {
    /// The config that breaks the rule.
    pub fn config_id(&self) -> &str {
        match self {
            PreconditionFailure::StreamingDisabled { id, .. }
            | PreconditionFailure::ModelCannotStream { id, .. }
            | PreconditionFailure::OutputRailsNotStreamable { id, .. } => id,
        }
    }

    /// The rule number (1, 2 or 3) this failure breaks.
    pub fn rule(&self) -> u8 {
        match self {
            PreconditionFailure::StreamingDisabled { .. } => 1,
            PreconditionFailure::ModelCannotStream { .. } => 2,
            PreconditionFailure::OutputRailsNotStreamable { .. } => 3,
        }
    }
}

impl Error {
    /// The gRPC status code for this error. Exhaustive on purpose: a new
    /// variant must choose its code.
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            Error::ConfigNotFound { .. } => Code::NotFound,
            Error::InvalidRequest { .. } => Code::InvalidArgument,
            Error::InvalidBody { .. } => Code::InvalidArgument,
            Error::StreamingUnsupported(_) => Code::FailedPrecondition,
            Error::NoMainModel { .. } => Code::FailedPrecondition,
            Error::Upstream(LlmError::Timeout { .. }) => Code::DeadlineExceeded,
            Error::Upstream(_) => Code::Unavailable,
            Error::Rail { .. } => Code::Unavailable,
            Error::Config(_) => Code::Internal,
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::Overloaded(_) => Code::ResourceExhausted,
            Error::ShuttingDown(_) => Code::Unavailable,
            Error::Datastore(_) => Code::Unavailable,
        }
    }

    /// The gRPC status for this error.
    pub fn to_status(&self) -> tonic::Status {
        tonic::Status::new(self.code(), self.to_string())
    }

    /// The HTTP status for this error. Exhaustive, like [`Error::code`].
    pub fn http_status(&self) -> u16 {
        match self {
            Error::ConfigNotFound { .. } => 404,
            Error::InvalidRequest { .. } => 400,
            Error::InvalidBody { .. } => 422,
            Error::StreamingUnsupported(_) => 400,
            Error::NoMainModel { .. } => 400,
            Error::Upstream(LlmError::Connect { .. } | LlmError::MissingApiKey(_)) => 503,
            Error::Upstream(LlmError::Timeout { .. }) => 504,
            Error::Upstream(
                LlmError::Status { .. }
                | LlmError::Api(_)
                | LlmError::Protocol(_)
                | LlmError::Rail { .. }
                | LlmError::Caller { .. },
            ) => 502,
            Error::Rail { .. } => 502,
            Error::Config(_) => 500,
            Error::DeadlineExceeded(_) => 504,
            Error::Unauthenticated(_) => 401,
            Error::PermissionDenied(_) => 403,
            Error::Overloaded(_) => 429,
            Error::ShuttingDown(_) => 503,
            Error::Datastore(_) => 503,
        }
    }

    /// The OpenAI-style error `type` and `code` for JSON bodies.
    pub fn kind(&self) -> (&'static str, &'static str) {
        match self {
            Error::ConfigNotFound { .. } => ("invalid_request_error", "config_not_found"),
            Error::InvalidRequest { .. } => ("invalid_request_error", "invalid_value"),
            Error::InvalidBody { .. } => ("invalid_request_error", "invalid_body"),
            Error::StreamingUnsupported(_) => ("invalid_request_error", "streaming_unsupported"),
            Error::NoMainModel { .. } => ("invalid_request_error", "no_main_model"),
            Error::Upstream(LlmError::Timeout { .. }) => ("timeout_error", "upstream_timeout"),
            Error::Upstream(_) => ("upstream_error", "upstream_unavailable"),
            Error::Rail { .. } => ("upstream_error", "rail_execution_failure"),
            Error::Config(_) => ("server_error", "config_error"),
            Error::DeadlineExceeded(_) => ("timeout_error", "deadline_exceeded"),
            Error::Unauthenticated(_) => ("authentication_error", "invalid_api_key"),
            Error::PermissionDenied(_) => ("permission_error", "config_not_allowed"),
            Error::Overloaded(_) => ("rate_limit_error", "too_many_concurrent_requests"),
            Error::ShuttingDown(_) => ("server_error", "shutting_down"),
            Error::Datastore(_) => ("server_error", "datastore_unavailable"),
        }
    }

    /// How long the caller should wait before trying again, when that is known
    /// (the upstream's `Retry-After`).
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Error::Upstream(e) => e.retry_after(),
            _ => None,
        }
    }

    /// The request field at fault, when there is one.
    pub fn param(&self) -> Option<&str> {
        match self {
            Error::InvalidRequest { field, .. } => Some(field),
            Error::InvalidBody { param, .. } => param.as_deref(),
            Error::ConfigNotFound { .. } => Some("config_id"),
            Error::NoMainModel { .. } => Some("model"),
            _ => None,
        }
    }

    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidRequest {
            field,
            message: message.into(),
        }
    }
}

/// Caller input as an error message may show it: at most 64 characters, so
/// an error never carries a caller's megabytes back (or into a header).
pub(crate) fn echo(input: &str) -> String {
    const MAX: usize = 64;
    let mut chars = input.chars();
    let shown: String = chars.by_ref().take(MAX).collect();
    if chars.next().is_some() {
        format!("{shown}…")
    } else {
        shown
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        e.to_status()
    }
}

//! The domain error and its one mapping to the wire.
//!
//! Inner code returns [`Error`]; transports convert at the edge with
//! [`Error::to_status`] (gRPC) so `tonic::Status` never leaks into signatures.

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
    /// The request asks to stream but the config breaks a streaming precondition.
    #[error("{0}")]
    StreamingUnsupported(#[from] crate::engine::PreconditionFailure),
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
}

impl Error {
    /// The gRPC status for this error. Exhaustive on purpose: a new variant
    /// must choose its code.
    pub fn to_status(&self) -> tonic::Status {
        use tonic::Code;
        let code = match self {
            Error::ConfigNotFound { .. } => Code::NotFound,
            Error::InvalidRequest { .. } => Code::InvalidArgument,
            Error::StreamingUnsupported(_) => Code::FailedPrecondition,
            Error::Upstream(_) => Code::Unavailable,
            Error::Rail { .. } => Code::Unavailable,
            Error::Config(_) => Code::Internal,
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
        };
        tonic::Status::new(code, self.to_string())
    }

    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidRequest {
            field,
            message: message.into(),
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        e.to_status()
    }
}

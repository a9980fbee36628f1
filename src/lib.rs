//! streamguard puts guardrails around streaming LLMs.
//!
//! It loads guardrails configurations in the NeMo Guardrails format, runs
//! input rails on the user's message, streams the main LLM's tokens to the
//! caller and checks the answer with output rails — whole, or in chunk
//! windows while it streams.
//!
//! # Layout
//!
//! ```text
//! client ──gRPC/HTTP──▶ server ──▶ engine ──▶ input rails ──▶ llm provider ──SSE──▶ upstream LLM
//!                         ▲           │                          │
//!                         └─ chunks ◀─┴── output rails ◀─────────┘   (whole answer, or windows)
//! ```
//!
//! - [`config`]: loads a config directory (all `*.yml` merged) into validated
//!   types; errors name the file and the key.
//! - [`llm`]: the [`llm::Provider`] trait, the OpenAI-compatible client and the
//!   in-process scripted model.
//! - [`rails`]: the built-in rails behind one [`rails::Rail`] trait.
//! - [`colang`]: Colang 1.0 dialog flows: the parser, and the dialog runtime
//!   that answers in front of the main model (so every stage downstream is
//!   unchanged).
//! - [`engine`]: the order of work, the streaming preconditions, the chunk
//!   windows (checked while the stream goes on), the streaming handler;
//!   [`engine::Guardrails`] is the library entry point.
//! - [`server`]: the transports over one shared state: gRPC
//!   (`streamguard.v1.Guardrails`, health, reflection v1 and v1alpha), HTTP
//!   (NeMo's endpoints and OpenAI-compatible SSE), admission (API keys,
//!   limits), TLS, metrics; `serve(listener, state, shutdown)`.
//! - [`cli`]: the `serve`, `chat` and `check` commands.
//! - [`error`]: the one domain error and its mapping to gRPC status codes.

pub mod cli;
pub mod config;
pub mod dialog;
pub mod engine;
pub mod error;
pub mod llm;
pub mod rails;
pub mod server;

/// Generated `streamguard.v1` types, client and server.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("streamguard.v1");
}

pub use engine::{Event, Guardrails, Request, Response, Violation};
pub use error::Error;

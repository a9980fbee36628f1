//! streamguard puts guardrails around streaming LLMs.
//!
//! It loads guardrails configurations in the NeMo Guardrails format, runs
//! input rails on the user's message, streams the answer's tokens to the
//! caller and checks them with output rails — whole, or in chunk windows
//! while it streams.
//!
//! # Layout
//!
//! ```text
//! client ──gRPC/HTTP──▶ server::edge ──▶ engine ──▶ input rails ──▶ answer ──▶ llm provider ──SSE──▶ upstream
//!                          ▲                │                       (dialog)        │
//!                          └── bounded ◀────┴── Relay ◀── output rails on windows ◀─┘
//! ```
//!
//! The modules, bottom up (each uses only those before it in this list;
//! `dialog` uses only [`engine::answer`], which depends on nothing else in
//! the engine):
//!
//! - [`config`]: loads a config directory (every `*.yml` merged) into a
//!   validated [`config::Config`] whose invariants hold behind accessors;
//!   model `parameters` are typed per provider; errors name the file and the
//!   key. It validates only what is its own: Colang files, Python actions
//!   and knowledge-base documents are kept for the layers that use them.
//!   [`config::Config::compose`] joins configs as NeMo's `config_ids` do.
//! - [`llm`]: the [`llm::Provider`] (chat) and [`llm::Embedder`] traits, the
//!   HTTP client (`llm::openai`: chat and text completions) with each
//!   vendor's wire format and defaults in a file of its own (`compat`,
//!   `azure`, `anthropic`), reasoning traces taken out of the text
//!   ([`llm::reasoning`]), judge caches, the time limits as one stream
//!   adapter, retries, and the in-process scripted model, which answers
//!   other prompt tasks from the table its config entry gives; chat
//!   messages with their tool calls and content parts, and the tools a
//!   request offers ([`llm::tools`], bounded assembly of streamed calls).
//!   Nothing here knows about rails or dialogs.
//! - [`error`]: the one domain [`Error`] (and [`error::PreconditionFailure`])
//!   with one exhaustive mapping to gRPC codes and HTTP statuses.
//! - [`rails`]: the [`rails::Rail`] trait and one [`rails::CATALOG`] of flow
//!   specs (name, stage, needs, rewrites, build) that validation and
//!   construction both read; one judge rail driven by a table for self
//!   check, content safety, topic safety and Llama Guard; one file per other
//!   rail kind.
//! - [`engine`]: the order of work. [`engine::answer`] is the seam the engine
//!   asks for the answer stream (the main model, or a dialog wrapping it);
//!   `run` holds a request's rails, log and timings; [`engine::Relay`] is the
//!   state of one guarded stream as a plain state machine (windows, checks in
//!   flight, what may be released, stop strings), driven by the `stream`
//!   module's hand-written stream; [`engine::Guardrails`] is the library
//!   entry point (it builds itself again, once per name, for a request
//!   that names another main model) and [`engine::Registry`] the configs a
//!   server serves (and the compositions requests ask for); `trace` writes
//!   NeMo's `tracing` files; `tools` runs NeMo's tool input and tool output
//!   rails, and `check` guards messages without the main model.
//! - [`dialog`]: Colang 1.0: the parser and the dialog runtime, which
//!   implements the engine's answer seam by wrapping the main model.
//! - [`server`]: [`server::Server`] (a builder taking bound listeners; TLS,
//!   keys, limits, reload, drain; `run(shutdown)`), the shared edge (one
//!   prelude and one response adapter for both transports), one accept
//!   loop with the connection bounds ([`server::ConnectionSettings`]), gRPC
//!   (`streamguard.v1.Guardrails`, health, reflection v1 and v1alpha,
//!   gRPC-Web; errors with `google.rpc.Status` details; `Check`,
//!   `GuardStream`) and HTTP (NeMo's endpoints, OpenAI-compatible SSE with
//!   tool calls, the playground page), conversation threads in memory or
//!   Redis, metrics.
//! - [`cli`]: the `serve`, `chat` and `check` commands, thin over the above.

pub mod cli;
pub mod config;
pub mod dialog;
pub mod engine;
pub mod error;
pub mod kb;
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

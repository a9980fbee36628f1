//! The network front ends over one engine, and the server that runs them.
//!
//! - [`Server`] (`builder`): listeners (taken already bound), TLS, keys,
//!   limits, reload (SIGHUP, `--watch`), drain; `run(shutdown)`.
//! - `edge`: what both transports share: one `prepare` (admit the key,
//!   convert, check limits, find the config, authorize, deadline, request
//!   id, traceparent) and one adapter that bounds every response stream
//!   (deadline, shutdown grace, outcome metrics counted once).
//! - `grpc`: `streamguard.v1.Guardrails`, health, reflection v1 and v1alpha.
//! - `http`: NeMo's endpoints and OpenAI-compatible SSE.
//! - `listen`: every listener's accept loop and connection bounds
//!   (connection limit, TLS handshake slots and timeout, first-request and
//!   idle timeouts, HTTP/2 keep-alive).
//! - `admission` (keys, limits), `tls`, `metrics`, `reload`.
//!
//! Each transport only converts its wire format to the engine's types and back.

pub mod admission;
mod builder;
mod edge;
mod grpc;
pub mod http;
mod listen;
pub mod metrics;
mod reload;
mod state_token;
mod threads;
pub mod tls;

use std::{future::Future, sync::Arc};

use arc_swap::ArcSwap;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::{config::ConfigError, engine::Registry};

pub use admission::{Admission, ApiKeys, ServerSettings};
pub use builder::{Server, ServerBuilder};
pub use edge::{Transport, request_id};
pub use grpc::GuardrailsService;
pub use listen::{ConnectionSettings, raise_fd_limit};
pub use reload::{ReloadHandle, ReloadReport};
pub use threads::{Datastore, ThreadSettings};

/// Something the running server did, for operators and tests to wait on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// The configs were reloaded (SIGHUP, a file change, or a handle).
    Reloaded(ReloadReport),
    /// A reload failed; the previous configs keep serving.
    ReloadFailed {
        trigger: &'static str,
        error: String,
    },
    /// Shutdown began: listeners stop accepting, in-flight calls go on.
    Draining,
    /// The shutdown grace passed: the calls still running were ended.
    GraceExpired,
}

/// What every front end of one server shares: the configs (swapped whole on
/// reload, read without a lock), admission control, and the drain signal.
#[derive(Debug)]
pub struct State {
    registry: ArcSwap<Registry>,
    pub admission: Admission,
    /// Cancelled when the shutdown grace has passed: calls still running
    /// end with UNAVAILABLE (gRPC) or an error event (SSE).
    expired: CancellationToken,
    /// The same fact as `expired`, read per poll without the token's lock.
    expired_flag: std::sync::atomic::AtomicBool,
    events: broadcast::Sender<ServerEvent>,
    /// Signs the dialog states handed to callers.
    pub state_key: state_token::StateKey,
    /// Conversation threads (`thread_id`).
    pub(crate) threads: threads::Threads,
}

impl State {
    /// A server's state with a random dialog-state key.
    pub fn new(registry: Registry, settings: ServerSettings) -> Arc<Self> {
        Self::with_key(registry, settings, state_token::StateKey::random())
    }

    /// A server's state signing dialog states with `state_key`.
    pub(crate) fn with_key(
        registry: Registry,
        settings: ServerSettings,
        state_key: state_token::StateKey,
    ) -> Arc<Self> {
        let threads = threads::Threads::new(settings.threads.clone());
        Arc::new(State {
            registry: ArcSwap::from_pointee(registry),
            admission: Admission::new(settings),
            expired: CancellationToken::new(),
            expired_flag: std::sync::atomic::AtomicBool::new(false),
            events: broadcast::channel(64).0,
            state_key,
            threads,
        })
    }

    /// The configs now; a request keeps the snapshot it started with.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.load_full()
    }

    /// Serves `registry` from now on (hot reload).
    pub fn replace_registry(&self, registry: Registry) {
        self.registry.store(Arc::new(registry));
    }

    /// Ends every call still in flight (the shutdown grace passed).
    pub fn abort_streams(&self) {
        // The flag first: the tasks the token wakes read it.
        self.expired_flag
            .store(true, std::sync::atomic::Ordering::Release);
        self.expired.cancel();
        self.emit(ServerEvent::GraceExpired);
    }

    /// Completes when [`State::abort_streams`] was called.
    pub fn aborted(&self) -> impl Future<Output = ()> + Send + 'static {
        self.expired.clone().cancelled_owned()
    }

    /// Whether the shutdown grace has passed (a cheap read, for per-poll checks).
    pub(crate) fn is_expired(&self) -> bool {
        self.expired_flag.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The server's events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ServerEvent> {
        self.events.subscribe()
    }

    pub(crate) fn emit(&self, event: ServerEvent) {
        // No subscriber is fine.
        let _ = self.events.send(event);
    }
}

/// The encoded descriptor set of `streamguard.v1`, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("streamguard_descriptor");

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("HTTP server failed: {0}")]
    Http(#[from] std::io::Error),
    #[error("{0}")]
    Setup(String),
}

//! The network front ends over one engine: gRPC (`Guardrails`, health,
//! reflection) and HTTP (NeMo's endpoints, OpenAI-compatible streaming).

pub mod admission;
mod grpc;
pub mod http;
pub mod metrics;
pub mod tls;

use std::{future::Future, sync::Arc};

use arc_swap::ArcSwap;
use tokio::{net::TcpListener, sync::watch};
use tonic::transport::server::TcpIncoming;

use crate::engine::Registry;

pub use admission::{Admission, ApiKeys, ServerSettings};
pub use grpc::GuardrailsService;

/// The caller's `x-request-id`, or a new one.
pub fn request_id(given: Option<&str>) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    match given
        .map(str::trim)
        .filter(|g| !g.is_empty() && g.len() <= 128 && g.is_ascii())
    {
        Some(g) => g.to_string(),
        None => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            format!("{nanos:x}-{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
        }
    }
}

/// What every front end of one server shares: the configs (swapped whole on
/// reload, read without a lock), admission control, and the drain signal.
#[derive(Debug)]
pub struct State {
    registry: ArcSwap<Registry>,
    pub admission: Admission,
    /// Flips to true when the shutdown grace has passed: streams still
    /// running end with UNAVAILABLE.
    abort: watch::Sender<bool>,
}

impl State {
    pub fn new(registry: Registry, settings: ServerSettings) -> Arc<Self> {
        Arc::new(State {
            registry: ArcSwap::from_pointee(registry),
            admission: Admission::new(settings),
            abort: watch::channel(false).0,
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

    /// Ends every stream still in flight with UNAVAILABLE.
    pub fn abort_streams(&self) {
        self.abort.send_replace(true);
    }

    /// Completes when [`State::abort_streams`] was called.
    pub fn aborted(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.abort.subscribe();
        async move {
            let _ = rx.wait_for(|a| *a).await;
        }
    }
}

/// The encoded descriptor set of `streamguard.v1`, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("streamguard_descriptor");

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("HTTP server failed: {0}")]
    Http(#[from] std::io::Error),
}

/// Serves the HTTP API on an already-bound listener until `shutdown`
/// completes, then lets in-flight responses finish.
pub async fn serve_http(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    use axum::serve::ListenerExt;
    metrics::install();
    let router = http::router(state.clone());
    if let Some(tls) = &state.admission.settings.tls {
        let config = tls.server_config().map_err(std::io::Error::other)?;
        let listener = tls::TlsListener::new(listener, config)?;
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await?;
        return Ok(());
    }
    // Chunks are small writes: without TCP_NODELAY, Nagle holds each one
    // back until the previous is acknowledged.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "TCP_NODELAY");
        }
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// Serves gRPC on an already-bound listener until `shutdown` completes, then
/// stops accepting, reports NOT_SERVING and lets in-flight streams finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    metrics::install();
    let (health, health_service) = tonic_health::server::health_reporter();
    let max_bytes = state.admission.settings.max_request_bytes;
    let grace = state.admission.settings.shutdown_grace;
    let state_tls = state.admission.settings.tls.clone();
    let service = GuardrailsService::new(state.clone());
    health
        .set_serving::<crate::pb::guardrails_server::GuardrailsServer<GuardrailsService>>()
        .await;

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let drain_health = health.clone();
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutting down: draining in-flight requests");
        drain_health
            .set_not_serving::<crate::pb::guardrails_server::GuardrailsServer<GuardrailsService>>()
            .await;
        drain_health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        // After the grace period, streams still running are ended.
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            tracing::warn!(
                ?grace,
                "shutdown grace passed: ending the remaining streams"
            );
            state.abort_streams();
        });
    };

    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &state_tls {
        builder = builder.tls_config(tls.tonic())?;
    }
    builder
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(service.into_server().max_decoding_message_size(max_bytes))
        .serve_with_incoming_shutdown(
            // Chunks are small writes: without TCP_NODELAY, Nagle holds each
            // one back until the previous is acknowledged.
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await?;
    Ok(())
}

//! The network front ends over one engine: gRPC (`Guardrails`, health,
//! reflection) and HTTP (NeMo's endpoints, OpenAI-compatible streaming).

mod grpc;
pub mod http;

use std::{future::Future, sync::Arc};

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use crate::engine::Registry;

pub use grpc::GuardrailsService;

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
    registry: Arc<Registry>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    use axum::serve::ListenerExt;
    // Chunks are small writes: without TCP_NODELAY, Nagle holds each one
    // back until the previous is acknowledged.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "TCP_NODELAY");
        }
    });
    axum::serve(listener, http::router(registry))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// Serves gRPC on an already-bound listener until `shutdown` completes, then
/// stops accepting, reports NOT_SERVING and lets in-flight streams finish.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let service = GuardrailsService::new(registry);
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
    };

    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(service.into_server())
        .serve_with_incoming_shutdown(
            // Chunks are small writes: without TCP_NODELAY, Nagle holds each
            // one back until the previous is acknowledged.
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await?;
    Ok(())
}

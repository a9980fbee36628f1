//! The HTTP front end: NeMo Guardrails' server endpoints and OpenAI-compatible
//! chat completions, streamed as server-sent events.
//!
//! `POST /v1/chat/completions` accepts NeMo's body (`config_id`, `messages`,
//! `stream`, `options`) and OpenAI's (`model`, `messages`, `stream`,
//! `temperature`, …, with `guardrails: {"config_id": …}`, what the OpenAI SDKs
//! send through `extra_body`). Streams are OpenAI `chat.completion.chunk`
//! events ending with `data: [DONE]`, so OpenAI clients read them unchanged.

mod body;
mod reply;

use std::{convert::Infallible, future::Future, sync::Arc};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State as AxumState},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{
        IntoResponse, Response as HttpResponse,
        sse::{Event as SseEvent, Sse},
    },
    routing::{get, post},
};
use futures_util::{StreamExt, stream};
use serde::Serialize;
use serde_json::json;

use super::{
    ServeError, State,
    edge::{Bounded, CallMeta, Transport},
};
use crate::{engine::Event, error::Error, rails::Stage};

/// The HTTP router over the server's shared state.
pub fn router(state: Arc<State>) -> Router {
    let max_body = state.admission.settings.max_request_bytes;
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/rails/configs", get(list_configs))
        .route("/health", get(health))
        .route("/healthz", get(health))
        .route("/metrics", get(|| async { super::metrics::render() }))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn list_configs(AxumState(state): AxumState<Arc<State>>, headers: HeaderMap) -> HttpResponse {
    let admitted = match state.admission.admit(header(&headers, "authorization")) {
        Ok(a) => a,
        Err(e) => return error_response(&e),
    };
    let registry = state.registry();
    let ids: Vec<serde_json::Value> = registry
        .iter()
        .filter(|g| admitted.authorize(g.config().id()).is_ok())
        .map(|g| json!({"id": g.config().id()}))
        .collect();
    Json(ids).into_response()
}

/// An error as an HTTP status with an OpenAI-style JSON body.
fn error_response(e: &Error) -> HttpResponse {
    let (kind, code) = e.kind();
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = e.to_string();
    let body = reply::ErrorBody::new(&message, kind, e.param(), code);
    (status, Json(body)).into_response()
}

fn with_request_id(mut response: HttpResponse, rid: &str) -> HttpResponse {
    if let Ok(v) = HeaderValue::from_str(rid) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

async fn chat_completions(
    AxumState(state): AxumState<Arc<State>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> HttpResponse {
    let meta = CallMeta {
        authorization: header(&headers, "authorization"),
        request_id: header(&headers, "x-request-id"),
        traceparent: header(&headers, "traceparent"),
        deadline: None,
    };
    let prepared = state.prepare(Transport::Http, "http_chat_completions", meta, |registry| {
        body::parse(&bytes, registry)
    });
    let (call, shape) = match prepared {
        Ok(p) => p,
        Err(r) => return with_request_id(error_response(&r.error), &r.request_id),
    };
    let rid = call.request_id.clone();
    let config_id = call.config_id.clone();
    let model = if shape.model.is_empty() {
        config_id.to_string()
    } else {
        shape.model
    };
    let response = if shape.stream {
        // Errors up to here (preconditions included) are plain HTTP errors.
        match call.stream() {
            Ok(events) => sse(events, model).await,
            Err(e) => error_response(&e),
        }
    } else {
        match call.generate().await {
            Ok(r) if shape.openai => Json(reply::openai(&model, &config_id, &r)).into_response(),
            Ok(r) => Json(reply::nemo(&config_id, &r)).into_response(),
            Err(e) => error_response(&e),
        }
    };
    with_request_id(response, &rid)
}

fn data(value: &impl Serialize) -> Result<SseEvent, Infallible> {
    // Serialization of these borrowed structs cannot fail; if it ever did,
    // the caller gets an error event rather than a broken stream.
    Ok(SseEvent::default().json_data(value).unwrap_or_else(|_| {
        SseEvent::default().data(r#"{"error":{"message":"serialization failed"}}"#)
    }))
}

/// The SSE body: the role chunk, a chunk event per chunk, the finish chunk
/// (or NeMo's error event when an output rail blocked mid-stream, or an
/// error event when the stream failed), then `[DONE]`. The response head
/// waits for the first event: a failure before any content gets the same
/// status and JSON error as a whole answer, and the head goes out with the
/// first chunk.
async fn sse(mut events: Bounded, model: String) -> HttpResponse {
    let first = match events.next().await {
        Some(Err(e)) => return error_response(&e),
        first => first,
    };
    let head = reply::ChunkHead {
        id: reply::completion_id(),
        created: reply::now(),
        model,
    };
    let role = data(&head.role());
    let body = stream::iter(first)
        .chain(events)
        .map(move |event| match event {
            Ok(Event::Chunk(text)) => data(&head.text(&text)),
            Ok(Event::Final(r)) => match &r.violation {
                // Blocked mid-stream by an output rail: an error event.
                Some(v) if v.stage == Stage::Output => data(&reply::ErrorBody::new(
                    &v.message,
                    v.kind.type_str(),
                    Some(&v.rail),
                    v.kind.code(),
                )),
                _ => data(&head.finish(&r)),
            },
            Err(e) => {
                let (kind, code) = e.kind();
                data(&reply::ErrorBody::new(&e.to_string(), kind, None, code))
            }
        });
    let done = Ok(SseEvent::default().data("[DONE]"));
    let all = stream::once(async { role })
        .chain(body)
        .chain(stream::once(async { done }));
    Sse::new(all).into_response()
}

/// Serves the HTTP API on an already-bound listener until `shutdown`
/// completes, then lets in-flight responses finish (the edge ends streams
/// when the shutdown grace passes).
pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    use axum::serve::ListenerExt;
    let router = router(state.clone());
    if let Some(tls) = &state.admission.settings.tls {
        let config = tls.server_config().map_err(ServeError::Setup)?;
        let listener = super::tls::TlsListener::new(listener, config)?;
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

//! The HTTP front end: NeMo Guardrails' server endpoints and OpenAI-compatible
//! chat completions, streamed as server-sent events.
//!
//! `POST /v1/chat/completions` accepts NeMo's body (`config_id`, `messages`,
//! `stream`, `options`) and OpenAI's (`model`, `messages`, `stream`,
//! `temperature`, …, with `guardrails: {"config_id": …}`, what the OpenAI SDKs
//! send through `extra_body`). Streams are OpenAI `chat.completion.chunk`
//! events ending with `data: [DONE]`, so OpenAI clients read them unchanged.

mod body;
mod checks;
mod message;
mod playground;
mod reply;
mod sse;

pub use body::BlockStyle;

use std::{future::Future, sync::Arc};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State as AxumState},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response as HttpResponse},
    routing::{get, post},
};
use serde_json::json;

use super::{
    ServeError, State,
    edge::{CallMeta, Transport},
};
use crate::error::Error;

/// The HTTP router over the server's shared state.
pub fn router(state: Arc<State>) -> Router {
    let max_body = state.admission.settings.max_request_bytes;
    let cors = cors(&state.admission.settings.cors_origins);
    let pages = match state.admission.settings.playground {
        true => playground::routes(),
        false => Router::new(),
    };
    let router = Router::new()
        .merge(pages)
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/guardrail/checks", post(guardrail_checks))
        .route("/v1/models", get(list_models))
        .route("/v1/rails/configs", get(list_configs))
        .route("/health", get(health))
        .route("/healthz", get(health))
        .route("/metrics", get(|| async { super::metrics::render() }))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::map_response(json_errors))
        .with_state(state);
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// CORS for these origins (`*` for any); `None` (off) without any. The
/// gRPC listener uses it too, for gRPC-Web from browsers.
pub(super) fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, Any, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods(Any)
            .allow_headers(Any)
            .expose_headers(Any),
    )
}

fn plain_error(status: StatusCode, code: &'static str, message: &str) -> HttpResponse {
    let body = reply::ErrorBody::new(message, "invalid_request_error", None, code);
    (status, Json(body)).into_response()
}

async fn not_found(uri: axum::http::Uri) -> HttpResponse {
    let path = crate::error::echo(uri.path());
    plain_error(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("no endpoint `{path}`; see POST /v1/chat/completions, GET /v1/models"),
    )
}

async fn method_not_allowed(method: axum::http::Method) -> HttpResponse {
    plain_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("method {method} is not allowed here"),
    )
}

/// Errors the HTTP stack answers itself (a body over the limit) get the
/// same JSON error body as every other error.
async fn json_errors(response: HttpResponse) -> HttpResponse {
    let json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/event-stream"));
    match response.status() {
        StatusCode::PAYLOAD_TOO_LARGE if !json => plain_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            "the request body is larger than the server's limit (--max-request-bytes)",
        ),
        s if (s.is_client_error() || s.is_server_error()) && !json => {
            let code = if s.is_client_error() {
                "invalid_request"
            } else {
                "server_error"
            };
            plain_error(s, code, s.canonical_reason().unwrap_or("error"))
        }
        _ => response,
    }
}

/// OpenAI's model list: the configs this caller may use (an OpenAI client
/// selects a config by naming it as its model).
async fn list_models(AxumState(state): AxumState<Arc<State>>, headers: HeaderMap) -> HttpResponse {
    let admitted = match state.admission.admit(header(&headers, "authorization")) {
        Ok(a) => a,
        Err(e) => return error_response(&e),
    };
    let registry = state.registry();
    let data: Vec<serde_json::Value> = registry
        .iter()
        .filter(|g| admitted.authorize(g.config().id()).is_ok())
        .map(|g| json!({"id": g.config().id(), "object": "model", "created": 0, "owned_by": "streamguard"}))
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

/// The edge's prelude for an HTTP call (`method` the metrics label): the
/// call and what `convert` made of the body, or the error response.
fn prepare<C>(
    state: &Arc<State>,
    headers: &HeaderMap,
    method: &'static str,
    convert: impl FnOnce(
        &crate::engine::Registry,
    ) -> Result<(Vec<String>, crate::engine::Request, C), Error>,
) -> Result<(super::edge::Call, C), Box<HttpResponse>> {
    let meta = CallMeta {
        authorization: header(headers, "authorization"),
        request_id: header(headers, "x-request-id"),
        traceparent: header(headers, "traceparent"),
        deadline: None,
    };
    state
        .prepare(Transport::Http, method, meta, convert)
        .map_err(|r| Box::new(with_request_id(error_response(&r.error), &r.request_id)))
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
    let mut response = (status, Json(body)).into_response();
    // The upstream's wait, passed on: SDKs that retry honour it.
    if let Some(delay) = e.retry_after() {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, delay.as_secs().into());
    }
    response
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
    let prepared = prepare(
        &state,
        &headers,
        super::metrics::HTTP_CHAT_COMPLETIONS,
        |registry| {
            let (ids, request, shape) = body::parse(&bytes, registry, &state.state_key)?;
            if let Some((id, _)) = &shape.thread {
                super::threads::Threads::validate(id, THREAD_FIELD)?;
            }
            Ok((ids, request, shape))
        },
    );
    let (mut call, mut shape) = match prepared {
        Ok(p) => p,
        Err(response) => return *response,
    };
    // A thread's earlier messages go in front of the request's.
    if let Some((id, _)) = shape.thread.take() {
        match call.open_thread(id, THREAD_FIELD).await {
            Ok(thread) => shape.thread = Some(thread),
            Err(e) => return with_request_id(error_response(&e), &call.request_id),
        }
    }
    let rid = call.request_id.clone();
    let config_id = call.config_id.clone();
    // The reply names the main model that serves the request.
    let model = shape
        .model
        .clone()
        .or_else(|| {
            call.rails
                .config()
                .main_model()
                .map(|m| m.model().to_string())
        })
        .unwrap_or_else(|| config_id.to_string());
    let response = if shape.stream {
        // Errors up to here (preconditions included) are plain HTTP errors.
        match call.stream() {
            Ok(events) => {
                let style = shape
                    .block_style
                    .unwrap_or(state.admission.settings.block_style);
                let keep = sse::Keep {
                    server: state.clone(),
                    resume: shape.resume.clone(),
                    thread: shape.thread.clone(),
                };
                sse::sse(events, model, style, keep).await
            }
            Err(e) => error_response(&e),
        }
    } else {
        let answer = match call.generate().await {
            Ok(r) => state
                .threads
                .keep(shape.thread.clone(), &r)
                .await
                .map(|()| r),
            Err(e) => Err(e),
        };
        match answer {
            Ok(r) => match reply::state(&state.state_key, shape.resume.as_ref(), &r) {
                Ok(dialog_state) if shape.openai => {
                    Json(reply::openai(&model, &config_id, &r, dialog_state)).into_response()
                }
                Ok(dialog_state) => Json(reply::nemo(&config_id, &r, dialog_state)).into_response(),
                Err(e) => error_response(&e),
            },
            Err(e) => error_response(&e),
        }
    };
    with_request_id(response, &rid)
}

/// The HTTP body's thread field.
const THREAD_FIELD: &str = "guardrails.thread_id";

/// NeMo's `POST /v1/guardrail/checks`: the rails on each message, no main model.
async fn guardrail_checks(
    AxumState(state): AxumState<Arc<State>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> HttpResponse {
    let prepared = prepare(
        &state,
        &headers,
        super::metrics::HTTP_GUARDRAIL_CHECKS,
        |registry| {
            let (ids, request, shape) = body::parse(&bytes, registry, &state.state_key)?;
            if shape.thread.is_some() {
                return Err(Error::invalid(
                    "guardrails.thread_id",
                    "a check takes the messages to check, not a thread",
                ));
            }
            if request.messages.is_empty() {
                return Err(Error::invalid("messages", "Messages list cannot be empty."));
            }
            let checks = checks::plan(&request, shape.stream);
            Ok((ids, request, checks))
        },
    );
    let (call, checks) = match prepared {
        Ok(p) => p,
        Err(response) => return *response,
    };
    let rid = call.request_id.clone();
    with_request_id(checks::run(call, checks).await, &rid)
}

/// Serves the HTTP API on an already-bound listener until `shutdown`
/// completes, then lets in-flight responses finish (the edge ends streams
/// when the shutdown grace passes).
pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    gate: Arc<super::listen::Gate>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let tls = match &state.admission.settings.tls {
        Some(tls) => Some(tls.acceptor().map_err(ServeError::Setup)?),
        None => None,
    };
    let served = super::listen::Listener {
        name: "http",
        service: router(state),
        tls,
        gate,
    };
    super::listen::serve(listener, served, shutdown).await;
    Ok(())
}

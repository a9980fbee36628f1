//! The playground (`serve --playground`, off by default): a page on the
//! HTTP listener to chat with a config and see what the guard did, each
//! chunk as it arrives, the output rails' windows and their verdicts on a
//! timeline, the input rails and judge calls with their durations, the
//! violation when one fires. Plain HTML, CSS and JS compiled into the
//! binary (no build step); it talks to the HTTP API like any client.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::State as AxumState,
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::json;

use super::{State, error_response, header as header_text};

const PAGE: &str = include_str!("playground/index.html");
const SCRIPT: &str = include_str!("playground/app.js");
const STYLE: &str = include_str!("playground/style.css");

/// The playground's routes.
pub(super) fn routes() -> Router<Arc<State>> {
    Router::new()
        .route(
            "/playground",
            get(|| async { asset(PAGE, "text/html; charset=utf-8") }),
        )
        .route(
            "/playground/app.js",
            get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/playground/style.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
        .route("/playground/configs", get(configs))
}

/// A file of the page; its scripts and styles may come from this server only.
fn asset(body: &'static str, kind: &'static str) -> Response {
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The configs the caller's key may use, with what the page shows of them.
async fn configs(AxumState(state): AxumState<Arc<State>>, headers: HeaderMap) -> Response {
    let admitted = match state
        .admission
        .admit(header_text(&headers, "authorization"))
    {
        Ok(a) => a,
        Err(e) => return error_response(&e),
    };
    let registry = state.registry();
    let list: Vec<serde_json::Value> = registry
        .iter()
        .filter(|g| admitted.authorize(g.config().id()).is_ok())
        .map(|g| {
            let c = g.config();
            let streaming = g.check_streaming();
            let w = c.output_streaming();
            let names = |flows: &[crate::config::FlowRef]| -> Vec<String> {
                flows.iter().map(|f| f.name.clone()).collect()
            };
            json!({
                "id": c.id(),
                "streaming": streaming.is_ok(),
                "streaming_reason": streaming.err().map(|e| e.to_string()),
                "input_flows": names(&c.input().flows),
                "output_flows": names(&c.output().flows),
                "windows": (w.enabled && !c.output().flows.is_empty()).then(|| json!({
                    "chunk_size": w.chunk_size, "context_size": w.context_size, "stream_first": w.stream_first,
                })),
            })
        })
        .collect();
    Json(list).into_response()
}

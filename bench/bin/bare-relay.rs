//! bare-relay: the floor the benchmark measures streamguard against. It
//! serves the same gRPC `StreamGenerate` and an OpenAI-compatible SSE
//! endpoint, and does only what any relay must: one upstream call per
//! request (reqwest), each upstream SSE event parsed and re-framed as one
//! gRPC chunk or one SSE chunk event, and a final event with the whole text.
//! No configs, rails, limits, metrics or request ids.

use std::{net::SocketAddr, pin::Pin, sync::Arc};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    response::{
        IntoResponse, Response,
        sse::{Event as SseEvent, Sse},
    },
    routing::post,
};
use clap::Parser;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use streamguard::llm::sse;
use streamguard::pb::{self, guardrails_server::GuardrailsServer};
use tonic::{Request, Status, transport::server::TcpIncoming};

#[derive(Debug, Parser)]
#[command(
    name = "bare-relay",
    about = "A bare LLM stream relay, the benchmark's floor"
)]
struct Args {
    /// gRPC listen address.
    #[arg(long, default_value = "127.0.0.1:50098")]
    grpc_addr: SocketAddr,
    /// HTTP listen address.
    #[arg(long, default_value = "127.0.0.1:8098")]
    http_addr: SocketAddr,
    /// The upstream's base URL (`…/v1`).
    #[arg(long, default_value = "http://127.0.0.1:9000/v1")]
    upstream: String,
}

#[derive(Clone)]
struct Relay {
    http: reqwest::Client,
    url: Arc<str>,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    delta: Option<Delta>,
}

#[derive(Deserialize)]
struct Delta {
    content: Option<String>,
}

impl Relay {
    /// The upstream's content deltas, in order.
    async fn deltas(
        &self,
        user: String,
    ) -> Result<impl Stream<Item = Result<String, String>> + use<>, String> {
        let body = json!({"model": "mock", "stream": true,
            "messages": [{"role": "system", "content": "You are a bench."}, {"role": "user", "content": user}]});
        let response = self
            .http
            .post(&*self.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let events = sse::Events::new(
            response.bytes_stream().boxed(),
            sse::DEFAULT_MAX_EVENT_BYTES,
        );
        Ok(events.filter_map(|event| async move {
            match event {
                Err(e) => Some(Err(e.to_string())),
                Ok(e) if e == "[DONE]" => None,
                Ok(e) => match serde_json::from_str::<Chunk>(&e) {
                    Ok(c) => c
                        .choices
                        .into_iter()
                        .next()
                        .and_then(|c| c.delta)
                        .and_then(|d| d.content)
                        .filter(|t| !t.is_empty())
                        .map(Ok),
                    Err(e) => Some(Err(e.to_string())),
                },
            }
        }))
    }
}

type Events = Pin<Box<dyn Stream<Item = Result<pb::StreamGenerateResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::guardrails_server::Guardrails for Relay {
    async fn generate(
        &self,
        _: Request<pb::GenerateRequest>,
    ) -> Result<tonic::Response<pb::GenerateResponse>, Status> {
        Err(Status::unimplemented("the bare relay only streams"))
    }

    type StreamGenerateStream = Events;

    async fn stream_generate(
        &self,
        request: Request<pb::GenerateRequest>,
    ) -> Result<tonic::Response<Events>, Status> {
        let user = request
            .into_inner()
            .messages
            .pop()
            .map(|m| m.content)
            .unwrap_or_default();
        let deltas = self.deltas(user).await.map_err(Status::unavailable)?;
        let events = async_stream::stream! {
            let mut content = String::new();
            tokio::pin!(deltas);
            while let Some(delta) = deltas.next().await {
                match delta {
                    Ok(text) => {
                        content.push_str(&text);
                        yield Ok(pb::StreamGenerateResponse {
                            event: Some(pb::stream_generate_response::Event::Chunk(pb::Chunk { text })),
                        });
                    }
                    Err(e) => {
                        yield Err(Status::unavailable(e));
                        return;
                    }
                }
            }
            let message = pb::Message { role: "assistant".into(), content, ..Default::default() };
            yield Ok(pb::StreamGenerateResponse {
                event: Some(pb::stream_generate_response::Event::Final(pb::GenerateResponse {
                    message: Some(message),
                    ..Default::default()
                })),
            });
        };
        Ok(tonic::Response::new(Box::pin(events)))
    }

    async fn list_configs(
        &self,
        _: Request<pb::ListConfigsRequest>,
    ) -> Result<tonic::Response<pb::ListConfigsResponse>, Status> {
        Ok(tonic::Response::new(pb::ListConfigsResponse::default()))
    }

    async fn check(
        &self,
        _: Request<pb::CheckRequest>,
    ) -> Result<tonic::Response<pb::CheckResponse>, Status> {
        // The bare relay guards nothing.
        Err(Status::unimplemented("the bare relay has no rails"))
    }

    type GuardStreamStream =
        futures_util::stream::BoxStream<'static, Result<pb::GuardStreamResponse, Status>>;

    async fn guard_stream(
        &self,
        _: Request<tonic::Streaming<pb::GuardStreamRequest>>,
    ) -> Result<tonic::Response<Self::GuardStreamStream>, Status> {
        Err(Status::unimplemented("the bare relay has no rails"))
    }
}

#[derive(Serialize)]
struct OutDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
}

#[derive(Serialize)]
struct OutChoice<'a> {
    index: u32,
    delta: OutDelta<'a>,
    finish_reason: Option<&'a str>,
}

/// One `chat.completion.chunk`, as any OpenAI-compatible relay must send it.
fn chunk<'a>(
    id: &'a str,
    role: Option<&'a str>,
    content: Option<&'a str>,
    finish: Option<&'a str>,
) -> OutChunk<'a> {
    OutChunk {
        id,
        object: "chat.completion.chunk",
        created: 0,
        model: "bench",
        choices: [OutChoice {
            index: 0,
            delta: OutDelta { role, content },
            finish_reason: finish,
        }],
    }
}

#[derive(Serialize)]
struct OutChunk<'a> {
    id: &'a str,
    object: &'a str,
    created: u64,
    model: &'a str,
    choices: [OutChoice<'a>; 1],
}

#[derive(Deserialize)]
struct InBody {
    messages: Vec<InMessage>,
}

#[derive(Deserialize)]
struct InMessage {
    content: String,
}

async fn chat(State(relay): State<Relay>, body: Bytes) -> Response {
    let user = serde_json::from_slice::<InBody>(&body)
        .ok()
        .and_then(|mut b| b.messages.pop())
        .map(|m| m.content)
        .unwrap_or_default();
    let deltas = match relay.deltas(user).await {
        Ok(d) => d,
        Err(e) => return (axum::http::StatusCode::BAD_GATEWAY, e).into_response(),
    };
    // The OpenAI framing: a role chunk, the content chunks, a finish chunk, [DONE].
    let id = "chatcmpl-0193d2f1c6a87c03b9e4e1f0a5d2b7c8";
    let first = SseEvent::default().json_data(chunk(id, Some("assistant"), Some(""), None));
    let events = futures_util::stream::once(async move { first })
        .chain(deltas.map(move |delta| {
            let text = delta.unwrap_or_default();
            SseEvent::default().json_data(chunk(id, None, Some(&text), None))
        }))
        .chain(futures_util::stream::once(async move {
            SseEvent::default().json_data(chunk(id, None, None, Some("stop")))
        }))
        .chain(futures_util::stream::once(async {
            Ok(SseEvent::default().data("[DONE]"))
        }));
    Sse::new(events).into_response()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let relay = Relay {
        http: reqwest::Client::builder().tcp_nodelay(true).build()?,
        url: format!("{}/chat/completions", args.upstream.trim_end_matches('/')).into(),
    };
    let http = tokio::net::TcpListener::bind(args.http_addr).await?;
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(relay.clone());
    tokio::spawn(async move {
        use axum::serve::ListenerExt;
        let http = http.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let _ = axum::serve(http, app).await;
    });
    let grpc = tokio::net::TcpListener::bind(args.grpc_addr).await?;
    tonic::transport::Server::builder()
        .add_service(GuardrailsServer::new(relay))
        .serve_with_incoming(TcpIncoming::from(grpc).with_nodelay(Some(true)))
        .await?;
    Ok(())
}

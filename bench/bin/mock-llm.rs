//! mock-llm: a cheap OpenAI-compatible chat-completions server for demos and
//! benchmarks. Streams `--tokens` tokens after `--ttft-ms`, one every
//! `--token-delay-ms`; answers non-streaming calls (judges) with
//! `--judge-answer`, or "Yes" when the prompt contains `--block-word`.
//! Every event is rendered once at start-up; a stream only copies bytes.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::State,
    http::header,
    response::{IntoResponse, Response},
    routing::post,
};
use clap::Parser;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(
    name = "mock-llm",
    about = "A mock OpenAI-compatible LLM for demos and benchmarks"
)]
struct Args {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:9000")]
    addr: SocketAddr,
    /// Time to first token, in milliseconds.
    #[arg(long, default_value_t = 50)]
    ttft_ms: u64,
    /// Delay between tokens, in milliseconds.
    #[arg(long, default_value_t = 10)]
    token_delay_ms: u64,
    /// Tokens per answer.
    #[arg(long, default_value_t = 50)]
    tokens: usize,
    /// What judge (non-streaming) calls answer.
    #[arg(long, default_value = "No")]
    judge_answer: String,
    /// Judge calls whose prompt contains this answer "Yes".
    #[arg(long, default_value = "BLOCKME")]
    block_word: String,
}

struct Mock {
    ttft: Duration,
    gap: Duration,
    /// The pre-rendered SSE events: role chunk, tokens, finish+usage, `[DONE]`.
    first: Bytes,
    tokens: Vec<Bytes>,
    last: Bytes,
    whole: String,
    judge_answer: String,
    block_word: String,
}

fn event(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

impl Mock {
    fn new(args: &Args) -> Self {
        let chunk = |delta: Value, finish: Value| {
            json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": "mock",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        };
        let words: Vec<String> = (0..args.tokens)
            .map(|i| {
                if i == 0 {
                    "Token0".to_string()
                } else {
                    format!(" token{i}")
                }
            })
            .collect();
        let n = args.tokens;
        let mut last = chunk(json!({}), json!("stop"));
        last["usage"] =
            json!({"prompt_tokens": 10, "completion_tokens": n, "total_tokens": 10 + n});
        let mut tail = event(&last).to_vec();
        tail.extend_from_slice(b"data: [DONE]\n\n");
        Mock {
            ttft: Duration::from_millis(args.ttft_ms),
            gap: Duration::from_millis(args.token_delay_ms),
            first: event(&chunk(
                json!({"role": "assistant", "content": ""}),
                Value::Null,
            )),
            tokens: words
                .iter()
                .map(|w| event(&chunk(json!({"content": w}), Value::Null)))
                .collect(),
            last: Bytes::from(tail),
            whole: words.concat(),
            judge_answer: args.judge_answer.clone(),
            block_word: args.block_word.clone(),
        }
    }
}

async fn completions(State(mock): State<Arc<Mock>>, Json(body): Json<Value>) -> Response {
    if body["stream"] != json!(true) {
        let prompt = body["messages"].to_string();
        let main = body["messages"][0]["role"] == "system";
        let content = if main {
            tokio::time::sleep(mock.ttft + mock.gap * mock.tokens.len() as u32).await;
            mock.whole.clone()
        } else if prompt.contains(&mock.block_word) {
            "Yes".to_string()
        } else {
            mock.judge_answer.clone()
        };
        return Json(json!({"id": "chatcmpl-mock", "object": "chat.completion", "model": "mock",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}}))
        .into_response();
    }
    let stream = async_stream::stream! {
        yield Ok::<Bytes, std::convert::Infallible>(mock.first.clone());
        for (i, token) in mock.tokens.iter().enumerate() {
            tokio::time::sleep(if i == 0 { mock.ttft } else { mock.gap }).await;
            yield Ok(token.clone());
        }
        yield Ok(mock.last.clone());
    };
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        Body::from_stream(stream),
    )
        .into_response()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mock = Arc::new(Mock::new(&args));
    let app = Router::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(mock);
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    eprintln!("mock-llm listening on http://{}/v1", listener.local_addr()?);
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}

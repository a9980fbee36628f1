//! The chunks as they are generated *and* the full response at the end: the
//! counterpart of NeMo's
//! `generate_async(messages=history, streaming_handler=streaming_handler)`
//! with a task printing `async for chunk in streaming_handler`.
//!
//! cargo run --example stream_full [CONFIG_DIR]

use futures_util::StreamExt;
use streamguard::{Guardrails, Request, engine::StreamingHandler};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Errors are printed with their message (Display), not their Debug form.
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "examples/configs/streaming".into());
    let app = Guardrails::load(&dir)?;

    let (streaming_handler, mut chunks) = StreamingHandler::new();
    let process_tokens = tokio::spawn(async move {
        while let Some(chunk) = chunks.next().await {
            println!("CHUNK: {chunk:?}");
        }
    });

    let history = Request::user("What is the capital of France?");
    let result = app
        .generate_with_handler(history, streaming_handler)
        .await?;
    process_tokens.await?;
    println!("{result:#?}");
    Ok(())
}

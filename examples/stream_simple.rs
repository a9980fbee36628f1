//! Just the chunks: the counterpart of NeMo's
//! `async for chunk in app.stream_async(messages=history)`.
//!
//! cargo run --example stream_simple [CONFIG_DIR]

use futures_util::StreamExt;
use streamguard::{Guardrails, Request};

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

    let history = Request::user("What is the capital of France?");
    let mut chunks = app.stream_text(history)?;
    while let Some(chunk) = chunks.next().await {
        println!("CHUNK: {:?}", chunk?);
    }
    Ok(())
}

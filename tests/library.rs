//! The library API in both NeMo styles, against the real fake LLM.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use common::*;
use futures_util::StreamExt;
use streamguard::{Guardrails, Request, engine::StreamingHandler};

async fn rails_for(llm: &FakeLlm) -> (Configs, Guardrails) {
    let configs = Configs::new();
    let dir = configs.add(
        "bot",
        &config(
            &llm.base_url(),
            "rails:\n  input:\n    flows: [self check input]\nstreaming: True\n",
        ),
    );
    let rails = Guardrails::load(&dir).unwrap();
    (configs, rails)
}

#[tokio::test]
async fn stream_text_yields_the_upstream_chunks() {
    let llm = fake_llm(Script::default()).await;
    let (_dir, rails) = rails_for(&llm).await;
    let chunks: Vec<String> = rails
        .stream_text(Request::user("hi"))
        .unwrap()
        .map(|c| c.unwrap())
        .collect()
        .await;
    assert_eq!(chunks, Script::default().tokens);
    let refusal: Vec<String> = rails
        .stream_text(Request::user("BLOCKME"))
        .unwrap()
        .map(|c| c.unwrap())
        .collect()
        .await;
    assert_eq!(refusal, ["I'm sorry, I can't respond to that."]);
}

#[tokio::test]
async fn handler_chunks_read_in_another_task_join_to_the_full_response() {
    let llm = fake_llm(Script::default()).await;
    let (_dir, rails) = rails_for(&llm).await;
    let (handler, chunks) = StreamingHandler::new();
    let reader = tokio::spawn(chunks.collect::<Vec<String>>());
    let response = rails
        .generate_with_handler(Request::user("hi"), handler)
        .await
        .unwrap();
    let chunks = reader.await.unwrap();
    assert_eq!(chunks, Script::default().tokens);
    assert_eq!(chunks.concat(), response.content);
    assert!(response.usage.is_some());
}

#[tokio::test]
async fn a_stop_string_split_across_upstream_chunks_cuts_the_answer_and_the_upstream() {
    let text = format!("Sure, here it is. Us{}", "er: and more ".repeat(50));
    let llm = fake_llm(Script {
        tokens: tokens(&text),
        delay: std::time::Duration::from_millis(2),
        ..Script::default()
    })
    .await;
    let (_dir, rails) = rails_for(&llm).await;
    let (handler, chunks) = StreamingHandler::with_stop(["User:"]);
    let reader = tokio::spawn(chunks.collect::<Vec<String>>());
    let response = rails
        .generate_with_handler(Request::user("hi"), handler)
        .await
        .unwrap();
    let chunks = reader.await.unwrap();
    assert_eq!(response.content, "Sure, here it is. ");
    assert_eq!(chunks.concat(), response.content);
    assert!(
        chunks.iter().all(|c| !c.contains("Us")),
        "held-back text never leaked: {chunks:?}"
    );
    llm.state.wait_disconnect().await;
}

#[tokio::test]
async fn a_config_that_cannot_stream_is_refused_by_both_styles() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    let dir = configs.add("plain", &config(&llm.base_url(), ""));
    let rails = Guardrails::load(&dir).unwrap();
    let e = rails.stream_text(Request::user("hi")).err().unwrap();
    assert!(e.to_string().contains("precondition 1"), "{e}");
    let (handler, _chunks) = StreamingHandler::new();
    let e = rails
        .generate_with_handler(Request::user("hi"), handler)
        .await
        .unwrap_err();
    assert!(matches!(e, streamguard::Error::StreamingUnsupported(_)));
}

//! GuardStream: the caller's own LLM's chunks through the rails, over a
//! real gRPC socket, compared with StreamGenerate on the same chunks from a
//! fake LLM that is a real HTTP server (the judge of `self check output`).

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns
mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use streamguard::pb::{
    self, guard_stream_request::Event as In, guard_stream_response::Event as Out,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// `n` numbered words, `BLOCKME` as word `block_at` when given.
fn words(n: usize, block_at: Option<usize>) -> Vec<String> {
    let text = (0..n)
        .map(|i| match Some(i) == block_at {
            true => "BLOCKME".to_string(),
            false => format!("w{i}"),
        })
        .collect::<Vec<_>>()
        .join(" ");
    tokens(&text)
}

/// Output rails on windows of `chunk` with `context` (NeMo's settings) and
/// `self check input`.
fn windowed(base_url: &str, chunk: usize, context: usize) -> String {
    config(
        base_url,
        &format!(
            "rails:\n  input:\n    flows: [self check input]\n  output:\n    flows: [self check output]\n    streaming:\n      enabled: True\n      chunk_size: {chunk}\n      context_size: {context}\n      stream_first: False\nstreaming: True\n"
        ),
    )
}

fn start_msg(config: &str, user: &str, log: bool) -> pb::GuardStreamRequest {
    pb::GuardStreamRequest {
        event: Some(In::Start(pb::GuardStreamStart {
            config_id: config.into(),
            messages: vec![pb::Message {
                role: "user".into(),
                content: user.into(),
                ..Default::default()
            }],
            options: Some(pb::GenerationOptions {
                log,
                ..Default::default()
            }),
            ..Default::default()
        })),
    }
}

fn chunk(text: &str) -> pb::GuardStreamRequest {
    pb::GuardStreamRequest {
        event: Some(In::Chunk(pb::Chunk { text: text.into() })),
    }
}

/// What a GuardStream call gave back: the chunks and the final response.
#[derive(Debug, Default)]
struct Guarded {
    chunks: Vec<String>,
    finals: Vec<pb::GenerateResponse>,
}

async fn guard(
    server: &mut Server,
    requests: Vec<pb::GuardStreamRequest>,
) -> Result<Guarded, tonic::Status> {
    let mut events = server
        .client
        .guard_stream(futures_util::stream::iter(requests))
        .await?
        .into_inner();
    let mut out = Guarded::default();
    while let Some(e) = events.next().await {
        match e?.event.unwrap() {
            Out::Chunk(c) => out.chunks.push(c.text),
            Out::Final(f) => out.finals.push(f),
        }
    }
    Ok(out)
}

/// A call whose side stays open: its sender, after `first`, and its events.
async fn open(
    server: &mut Server,
    first: pb::GuardStreamRequest,
) -> (
    mpsc::Sender<pb::GuardStreamRequest>,
    tonic::Streaming<pb::GuardStreamResponse>,
) {
    let (tx, rx) = mpsc::channel(4);
    tx.send(first).await.unwrap();
    let events = server
        .client
        .guard_stream(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    (tx, events)
}

#[tokio::test]
async fn a_callers_stream_gets_the_windows_and_answer_stream_generate_gives() {
    // NeMo's example: 17 chunks, windows of 4 with 2 of context: 8 checks.
    let llm = fake_llm(Script {
        tokens: words(17, None),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    configs.add("w", &windowed(&llm.base_url(), 4, 2));
    let mut server = start(configs.root()).await;
    let mut req = request("w", "tell me a joke");
    req.options = Some(pb::GenerationOptions {
        log: true,
        ..Default::default()
    });
    let ours = collect(&mut server.client, req).await.unwrap();
    let judged_by_ours = llm.state.whole_requests();

    let mut calls = vec![start_msg("w", "tell me a joke", true)];
    calls.extend(words(17, None).iter().map(|t| chunk(t)));
    let theirs = guard(&mut server, calls).await.unwrap();
    let judged = llm.state.whole_requests()[judged_by_ours.len()..].to_vec();

    assert_eq!(
        theirs.chunks, ours.chunks,
        "the same chunks, in the same boundaries"
    );
    assert_eq!(theirs.chunks.len(), 17);
    // The input rail and the same 8 window checks, with the same windows.
    assert_eq!(judged.len(), 9);
    assert_eq!(judged, judged_by_ours);
    let (a, b) = (&theirs.finals[0], &ours.finals[0]);
    assert_eq!(a.message, b.message);
    assert!(a.violation.is_none());
    let rails = |f: &pb::GenerateResponse| {
        f.log
            .as_ref()
            .unwrap()
            .rails
            .iter()
            .map(|r| (r.flow.clone(), r.decision.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(rails(a), rails(b));
    assert_eq!(rails(a).len(), 9);
    // The main model was called once, by StreamGenerate only.
    assert_eq!(llm.state.streamed_requests(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn an_output_block_ends_the_call_with_the_violation() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    configs.add("w", &windowed(&llm.base_url(), 4, 0));
    let mut server = start(configs.root()).await;
    let mut calls = vec![start_msg("w", "go", false)];
    calls.extend(words(40, Some(9)).iter().map(|t| chunk(t)));
    let got = guard(&mut server, calls).await.unwrap();
    // Windows of 4: BLOCKME (word 9) is in window 8..12; 8 chunks went out.
    assert_eq!(got.chunks, words(40, Some(9))[..8]);
    let v = got.finals[0].violation.as_ref().unwrap();
    assert_eq!(
        (v.rail.as_str(), v.stage.as_str()),
        ("self check output", "output")
    );
    assert_eq!(
        got.finals[0].finish_reason(),
        pb::FinishReason::ContentFilter
    );
    server.shutdown().await;
}

#[tokio::test]
async fn an_input_block_answers_before_the_caller_sends_a_chunk() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    configs.add("w", &windowed(&llm.base_url(), 4, 0));
    let mut server = start(configs.root()).await;
    // The caller sends `start` and keeps its side open, sending nothing.
    let (tx, mut events) = open(&mut server, start_msg("w", "BLOCKME now", false)).await;
    let first = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("answered without a chunk")
        .unwrap()
        .unwrap();
    assert_eq!(
        first.event,
        Some(Out::Chunk(pb::Chunk {
            text: "I'm sorry, I can't respond to that.".into()
        }))
    );
    let Some(Out::Final(f)) = events.next().await.unwrap().unwrap().event else {
        panic!("no final event");
    };
    assert_eq!(f.violation.unwrap().rail, "self check input");
    assert!(events.next().await.is_none());
    drop(tx);
    server.shutdown().await;
}

#[tokio::test]
async fn the_caller_half_closing_ends_the_answer_and_chunks_flow_as_they_come() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    // No output rails: each chunk goes back as it arrives.
    configs.add("plain", &config(&llm.base_url(), "streaming: True\n"));
    let mut server = start(configs.root()).await;
    let (tx, mut events) = open(&mut server, start_msg("plain", "hi", false)).await;
    for word in ["Hello", " there"] {
        tx.send(chunk(word)).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("the chunk came back before the next was sent")
            .unwrap()
            .unwrap();
        assert_eq!(got.event, Some(Out::Chunk(pb::Chunk { text: word.into() })));
    }
    drop(tx);
    let Some(Out::Final(f)) = events.next().await.unwrap().unwrap().event else {
        panic!("no final event");
    };
    assert_eq!(f.message.as_ref().unwrap().content, "Hello there");
    assert_eq!(f.finish_reason(), pb::FinishReason::Stop);
    server.shutdown().await;
}

#[tokio::test]
async fn a_call_that_does_not_start_right_is_refused_naming_the_field() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    configs.add("w", &windowed(&llm.base_url(), 4, 0));
    configs.add(
        "whole",
        &config(
            &llm.base_url(),
            "rails:\n  output:\n    flows: [self check output]\nstreaming: True\n",
        ),
    );
    let mut server = start(configs.root()).await;
    let e = guard(&mut server, vec![chunk("hi")]).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().contains("the first message is `start`"),
        "{}",
        e.message()
    );
    let e = guard(&mut server, vec![]).await.unwrap_err();
    assert!(
        e.message().contains("ended before its `start`"),
        "{}",
        e.message()
    );
    let e = guard(&mut server, vec![start_msg("nope", "hi", false)])
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    // Output rails on whole answers cannot guard a stream: streaming rule 3.
    let e = guard(&mut server, vec![start_msg("whole", "hi", false)])
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().contains("precondition 3"), "{}", e.message());
    // A second `start` mid-stream ends the call with an error.
    let got = guard(
        &mut server,
        vec![
            start_msg("w", "hi", false),
            chunk("a"),
            start_msg("w", "again", false),
        ],
    )
    .await;
    let e = got.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("a second `start`"), "{}", e.message());
    server.shutdown().await;
}

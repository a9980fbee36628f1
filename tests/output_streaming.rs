//! Output rails on a live stream: chunk windows, stream_first, blocks,
//! parallel rails and rail errors, and split-independence (proptest).

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns
mod common;

use std::{sync::Arc, time::Duration};

use common::*;
use futures_util::{FutureExt, StreamExt, future::BoxFuture};
use proptest::prelude::*;
use streamguard::{
    Event, Guardrails, Request,
    llm::{ChatRequest, Completion, Delta, DeltaStream, LlmError, Provider},
};

/// `n` numbered words, with `BLOCKME` as word `block_at` (0-based) when given.
fn words(n: usize, block_at: Option<usize>) -> Vec<String> {
    let text = (0..n)
        .map(|i| {
            if Some(i) == block_at {
                "BLOCKME".to_string()
            } else {
                format!("w{i}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    tokens(&text)
}

/// A config with output `flows` on windows; `settings` goes under `rails:`.
fn windowed(
    base_url: &str,
    flows: &str,
    settings: &str,
    chunk: usize,
    context: usize,
    stream_first: bool,
) -> String {
    let sf = if stream_first { "True" } else { "False" };
    config(
        base_url,
        &format!(
            "rails:\n{settings}  output:\n{flows}    streaming:\n      enabled: True\n      chunk_size: {chunk}\n      context_size: {context}\n      stream_first: {sf}\nstreaming: True\n"
        ),
    )
}

const SELF_CHECK: &str = "    flows:\n      - self check output\n";

#[tokio::test]
async fn allowed_text_passes_unchanged_with_its_chunk_boundaries_in_both_modes() {
    let llm = fake_llm(Script {
        tokens: words(23, None),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    configs.add(
        "first",
        &windowed(&llm.base_url(), SELF_CHECK, "", 5, 2, true),
    );
    configs.add(
        "after",
        &windowed(&llm.base_url(), SELF_CHECK, "", 5, 2, false),
    );
    let mut server = start(configs.root()).await;
    for id in ["first", "after"] {
        let got = collect(&mut server.client, request(id, "go"))
            .await
            .unwrap();
        assert!(got.error.is_none(), "{id}");
        assert_eq!(got.chunks, words(23, None), "{id}");
        let fin = &got.finals[0];
        assert!(fin.violation.is_none());
        assert_eq!(
            fin.message.as_ref().unwrap().content,
            words(23, None).concat()
        );
    }
}

#[tokio::test]
async fn seventeen_chunks_in_windows_of_four_with_two_of_context_take_eight_checks() {
    let llm = fake_llm(Script {
        tokens: words(17, None),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    configs.add("w", &windowed(&llm.base_url(), SELF_CHECK, "", 4, 2, false));
    let mut server = start(configs.root()).await;
    let got = collect(&mut server.client, request("w", "go"))
        .await
        .unwrap();
    assert_eq!(got.chunks.len(), 17);
    let judges = llm.state.whole_requests();
    assert_eq!(judges.len(), 8);
    // Windows overlap by two chunks: the second window starts at chunk 2.
    let second = judges[1]["messages"][0]["content"].as_str().unwrap();
    assert!(second.contains("\" w2 w3 w4 w5\""), "{second}");
}

/// (stream_first, word with BLOCKME, expected chunks sent)
const BLOCK_CASES: &[(bool, usize, usize)] = &[
    // Windows of 4 without context: BLOCKME at word 9 is in window 8..12.
    (false, 9, 8),
    (true, 9, 12),
    // In the first window.
    (false, 1, 0),
    (true, 1, 4),
];

#[tokio::test]
async fn a_block_stops_the_stream_after_the_blocked_window_and_drops_the_upstream() {
    for &(stream_first, at, sent) in BLOCK_CASES {
        let llm = fake_llm(Script {
            tokens: words(60, Some(at)),
            delay: Duration::from_millis(3),
            ..Script::default()
        })
        .await;
        let configs = Configs::new();
        configs.add(
            "w",
            &windowed(&llm.base_url(), SELF_CHECK, "", 4, 0, stream_first),
        );
        let mut server = start(configs.root()).await;
        let got = collect(&mut server.client, request("w", "go"))
            .await
            .unwrap();
        let case = format!("stream_first={stream_first} at={at}");
        assert!(got.error.is_none(), "{case}");
        assert_eq!(got.chunks, words(60, Some(at))[..sent], "{case}");
        let fin = &got.finals[0];
        assert_eq!(
            fin.message.as_ref().unwrap().content,
            got.chunks.concat(),
            "{case}"
        );
        let v = fin.violation.as_ref().expect("violation");
        assert_eq!(
            (
                v.rail.as_str(),
                v.r#type.as_str(),
                v.code.as_str(),
                v.message.as_str()
            ),
            (
                "self check output",
                "guardrails_violation",
                "content_blocked",
                "Blocked by self check output rails."
            ),
            "{case}"
        );
        llm.state.wait_disconnect().await;
    }
}

#[tokio::test]
async fn parallel_output_rails_check_each_window_and_the_first_block_wins() {
    let llm = fake_llm(Script {
        tokens: words(30, None),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    let flows =
        "    parallel: True\n    flows:\n      - self check output\n      - regex check output\n";
    let settings = "  config:\n    regex_detection:\n      output:\n        patterns: ['w13\\b']\n";
    configs.add(
        "par",
        &windowed(&llm.base_url(), flows, settings, 5, 0, false),
    );
    let mut server = start(configs.root()).await;
    let got = collect(&mut server.client, request("par", "go"))
        .await
        .unwrap();
    assert_eq!(got.chunks, words(30, None)[..10]);
    assert_eq!(
        got.finals[0].violation.as_ref().unwrap().rail,
        "regex check output"
    );
    // Both rails saw the windows that passed.
    assert!(llm.state.whole_requests().len() >= 2);
}

#[tokio::test]
async fn a_failing_output_rail_is_an_internal_error_violation_naming_it() {
    let llm = fake_llm(Script {
        tokens: words(12, None),
        ..Script::default()
    })
    .await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let configs = Configs::new();
    let mut yml = windowed(&llm.base_url(), SELF_CHECK, "", 4, 0, false);
    yml = yml.replacen(
        "instructions:",
        &format!("  - type: self_check_output\n    engine: openai\n    model: dead-judge\n    parameters:\n      base_url: http://127.0.0.1:{closed}/v1\ninstructions:"),
        1,
    );
    configs.add("err", &yml);
    let mut server = start(configs.root()).await;
    let got = collect(&mut server.client, request("err", "go"))
        .await
        .unwrap();
    assert!(got.error.is_none());
    assert!(got.chunks.is_empty());
    let v = got.finals[0].violation.as_ref().unwrap();
    assert_eq!(
        (v.rail.as_str(), v.r#type.as_str(), v.code.as_str()),
        (
            "self check output",
            "internal_error",
            "rail_execution_failure"
        )
    );
    assert!(
        v.message
            .starts_with("Internal error in self check output rail"),
        "{}",
        v.message
    );
}

#[tokio::test]
async fn masking_on_a_stream_rewrites_each_window() {
    let llm = fake_llm(Script {
        tokens: tokens("mail a@b.io now and then c@d.io ok"),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    let flows = "    flows:\n      - mask sensitive data on output\n";
    let settings = "  config:\n    sensitive_data_detection:\n      output:\n        entities: [EMAIL_ADDRESS]\n";
    configs.add(
        "mask",
        &windowed(&llm.base_url(), flows, settings, 3, 0, false),
    );
    let mut server = start(configs.root()).await;
    let got = collect(&mut server.client, request("mask", "go"))
        .await
        .unwrap();
    // Windows of three chunks: each is one rewritten chunk.
    assert_eq!(
        got.chunks,
        [
            "mail <EMAIL_ADDRESS> now",
            " and then <EMAIL_ADDRESS>",
            " ok"
        ]
    );
    assert_eq!(
        got.chunks.concat(),
        "mail <EMAIL_ADDRESS> now and then <EMAIL_ADDRESS> ok"
    );
    assert_eq!(
        got.finals[0].message.as_ref().unwrap().content,
        got.chunks.concat()
    );
}

/// A main model that streams exactly the given chunks.
#[derive(Debug)]
struct Chunks(Vec<String>);

impl Provider for Chunks {
    fn can_stream(&self) -> bool {
        true
    }
    fn complete(&self, _: ChatRequest) -> BoxFuture<'static, Result<Completion, LlmError>> {
        let text = self.0.concat();
        async move { Ok(Completion::text(text, None)) }.boxed()
    }
    fn stream(&self, _: ChatRequest) -> DeltaStream {
        futures_util::stream::iter(self.0.clone().into_iter().map(|c| Ok(Delta::Text(c)))).boxed()
    }
}

/// Splits `text` at the given byte positions (clamped to char boundaries).
fn split(text: &str, mut cuts: Vec<usize>) -> Vec<String> {
    cuts.retain(|&c| c > 0 && c < text.len() && text.is_char_boundary(c));
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::new();
    let mut at = 0;
    for c in cuts.into_iter().chain([text.len()]) {
        out.push(text[at..c].to_string());
        at = c;
    }
    out.retain(|c| !c.is_empty());
    out
}

async fn run_stream(
    chunks: Vec<String>,
    chunk_size: usize,
    context: usize,
    stream_first: bool,
) -> (String, bool) {
    let yml = format!(
        "models:\n  - type: main\n    engine: scripted\n    model: m\nrails:\n  config:\n    regex_detection:\n      output:\n        keywords: [forbidden]\n  output:\n    flows: [regex check output]\n    streaming:\n      enabled: True\n      chunk_size: {chunk_size}\n      context_size: {context}\n      stream_first: {}\nstreaming: True\n",
        if stream_first { "True" } else { "False" }
    );
    let config = streamguard::config::from_yaml("prop", &yml).unwrap();
    let rails = Guardrails::with_main_provider(config, Arc::new(Chunks(chunks))).unwrap();
    let mut events = rails.stream(Request::user("go")).unwrap();
    let mut sent = String::new();
    let mut blocked = None;
    while let Some(e) = events.next().await {
        match e.unwrap() {
            Event::Chunk(c) => sent.push_str(&c),
            Event::Reasoning(_) | Event::ToolCall(_) => {}
            Event::Final(r) => {
                assert_eq!(r.content, sent);
                blocked = Some(r.violation.is_some());
            }
        }
    }
    (sent, blocked.expect("a final event"))
}

const VOCAB: &[&str] = &[
    "alpha",
    "beta",
    "gamma",
    "delta",
    "été",
    "naïve",
    "forbidden",
    "ok",
    "a",
    "zeta",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The relayed text equals the model's text, and the keyword rail's
    /// verdict equals "the text contains the keyword", however the text is
    /// split into chunks (given context at least the keyword's length).
    #[test]
    fn output_and_verdict_do_not_depend_on_the_split(
        picks in proptest::collection::vec(0..VOCAB.len(), 1..40),
        cuts in proptest::collection::vec(0usize..400, 0..60),
        extra in 0usize..5,
        step in 1usize..5,
        stream_first in any::<bool>(),
    ) {
        let text = picks.iter().map(|&i| VOCAB[i]).collect::<Vec<_>>().join(" ");
        let chunks = split(&text, cuts);
        prop_assert_eq!(chunks.concat(), text.clone());
        let context = "forbidden".len() - 1 + extra;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (sent, blocked) = runtime.block_on(run_stream(chunks, context + step, context, stream_first));
        let expected_block = picks.iter().any(|&i| VOCAB[i] == "forbidden");
        prop_assert_eq!(blocked, expected_block);
        if !expected_block {
            prop_assert_eq!(sent, text);
        }
    }
}

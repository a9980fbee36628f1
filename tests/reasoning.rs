//! Reasoning models over real sockets: a `<think>` trace written into the
//! text (its tags split across chunks) or sent as `reasoning_content` is
//! kept out of the answer, streamed apart when the request asks for it,
//! shown to output rails as `bot_thinking`, and checked with the answer
//! only under `apply_to_reasoning_traces`.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns
mod common;

use common::*;
use serde_json::{Value, json};
use streamguard::pb;

/// A `<think>` trace whose tags are split across chunks, then the answer.
fn thinking_tokens(trace: &str) -> Vec<String> {
    let mut t: Vec<String> = vec!["<thi".into(), "nk>".into()];
    t.extend(tokens(trace));
    t.extend(["</th".into(), "ink>".into(), "\n\n".into()]);
    t.extend(tokens("The answer is 4."));
    t
}

fn with_reasoning(mut r: pb::GenerateRequest) -> pb::GenerateRequest {
    r.options = Some(pb::GenerationOptions {
        reasoning: true,
        ..Default::default()
    });
    r
}

/// Collects a stream with its reasoning events.
async fn collect_all(
    server: &mut Server,
    request: pb::GenerateRequest,
) -> (Vec<String>, Vec<String>, pb::GenerateResponse) {
    use pb::stream_generate_response::Event;
    let mut stream = server
        .client
        .stream_generate(request)
        .await
        .unwrap()
        .into_inner();
    let (mut chunks, mut reasoning, mut last) = (vec![], vec![], None);
    while let Some(m) = stream.message().await.unwrap() {
        match m.event.unwrap() {
            Event::Chunk(c) => chunks.push(c.text),
            Event::Reasoning(r) => reasoning.push(r.text),
            Event::Final(f) => last = Some(f),
            Event::ToolCall(_) => panic!("no tools were offered"),
        }
    }
    (chunks, reasoning, last.unwrap())
}

#[tokio::test]
async fn a_think_trace_is_kept_out_of_the_answer_and_streamed_apart_when_asked() {
    let llm = fake_llm(Script {
        tokens: thinking_tokens("Two plus two."),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    configs.add("r1", &config(&llm.base_url(), "streaming: True\n"));
    let mut server = start(configs.root()).await;

    let (chunks, reasoning, last) = collect_all(&mut server, request("r1", "2+2?")).await;
    assert_eq!(chunks.concat(), "The answer is 4.");
    assert!(reasoning.is_empty(), "not asked for");
    assert_eq!(last.message.unwrap().content, "The answer is 4.");
    assert_eq!(last.reasoning_content, "");

    let (chunks, reasoning, last) =
        collect_all(&mut server, with_reasoning(request("r1", "2+2?"))).await;
    assert_eq!(chunks.concat(), "The answer is 4.");
    assert_eq!(reasoning.concat(), "Two plus two.");
    assert_eq!(last.reasoning_content, "Two plus two.");

    // The whole answer (Generate) the same way.
    let r = server
        .client
        .generate(with_reasoning(request("r1", "2+2?")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.message.unwrap().content, "The answer is 4.");
    assert_eq!(r.reasoning_content, "Two plus two.");
    server.shutdown().await;
}

#[tokio::test]
async fn remove_reasoning_traces_false_keeps_the_trace_in_the_text() {
    let llm = fake_llm(Script {
        tokens: thinking_tokens("Hmm."),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    let yml = config(&llm.base_url(), "streaming: True\n").replace(
        "    model: fake-model\n",
        "    model: fake-model\n    reasoning_config:\n      remove_reasoning_traces: False\n",
    );
    configs.add("keep", &yml);
    let mut server = start(configs.root()).await;
    let got = collect(&mut server.client, request("keep", "Hi"))
        .await
        .unwrap();
    assert_eq!(
        got.chunks.concat(),
        "<think>Hmm.</think>\n\nThe answer is 4."
    );
    server.shutdown().await;
}

#[tokio::test]
async fn output_rails_see_the_answer_and_the_trace_as_bot_thinking() {
    // The trace says the block word; the answer does not.
    let llm = fake_llm(Script {
        reasoning: tokens("I could say BLOCKME here."),
        tokens: tokens("A harmless answer."),
        judge_answers: vec![("Thinking: \"I could say BLOCKME".into(), "No".into())],
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    let rails = "rails:\n  output:\n    flows: [self check output]\n    streaming:\n      enabled: True\n      chunk_size: 2\n      context_size: 0\nstreaming: True\n";
    let dir = configs.add("plain", &config(&llm.base_url(), rails));
    // A self_check_thinking-style prompt: the trace as `bot_thinking`.
    std::fs::write(
        dir.join("prompts.yml"),
        "prompts:\n  - task: self_check_output\n    content: |\n      Should the bot message be blocked (Yes or No)?\n      Bot message: \"{{ bot_response }}\"\n      {% if bot_thinking %}Thinking: \"{{ bot_thinking }}\"{% endif %}\n",
    )
    .unwrap();
    configs.add(
        "applied",
        &config(
            &llm.base_url(),
            &rails.replace(
                "    flows: [self check output]\n",
                "    flows: [self check output]\n    apply_to_reasoning_traces: True\n",
            ),
        ),
    );
    let mut server = start(configs.root()).await;

    let got = collect(&mut server.client, request("plain", "Hi"))
        .await
        .unwrap();
    assert_eq!(got.chunks.concat(), "A harmless answer.");
    assert!(got.finals[0].violation.is_none());
    let judged: Vec<String> = llm
        .state
        .requests()
        .iter()
        .filter(|b| b["stream"] != json!(true))
        .map(|b| b["messages"][0]["content"].as_str().unwrap().to_string())
        .collect();
    assert!(
        judged
            .iter()
            .all(|p| p.contains("Thinking: \"I could say BLOCKME here.\"")
                && !p.contains("Bot message: \"I could")),
        "{judged:#?}"
    );

    // With apply_to_reasoning_traces the trace is checked with the answer.
    let got = collect(&mut server.client, request("applied", "Hi"))
        .await
        .unwrap();
    let v = got.finals[0]
        .violation
        .clone()
        .expect("blocked on the trace");
    assert_eq!(v.rail, "self check output");
    server.shutdown().await;
}

#[tokio::test]
async fn reasoning_content_streams_as_its_own_sse_deltas_when_asked() {
    let llm = fake_llm(Script {
        reasoning: vec!["Let me ".into(), "see.".into()],
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    configs.add("ds", &config(&llm.base_url(), "streaming: True\n"));
    let base = start_http(configs.root()).await;
    let body = json!({"model": "ds", "stream": true, "include_reasoning": true,
                      "messages": [{"role": "user", "content": "Hi"}]});
    let text = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let field = |k: &str| -> String {
        events
            .iter()
            .filter_map(|e| e["choices"][0]["delta"][k].as_str())
            .collect()
    };
    assert_eq!(field("reasoning_content"), "Let me see.");
    assert_eq!(field("content"), Script::default().tokens.concat());

    // Without asking, the whole answer has no trace.
    let (status, r) = post_chat(
        &base,
        &json!({"model": "ds", "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        r["choices"][0]["message"]
            .get("reasoning_content")
            .is_none(),
        "{r}"
    );
}

#[tokio::test]
async fn nemos_nemotron_reasoning_safety_example_reads_the_harm_fields() {
    let llm = fake_llm(Script {
        judge_answers: vec![
            ("AI assistant:\nHello from".into(), "Prompt harm: unharmful\nResponse Harm: unharmful".into()),
            ("Human user:\nHow do I hurt".into(), "<think>Prompt harm: unharmful? No, violent.</think>\nPrompt harm: harmful\nResponse harm: None".into()),
            ("Human user:\nHello".into(), "Prompt harm: unharmful\nResponse harm: None".into()),
        ],
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    let src = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/nemo-configs/examples-configs-content_safety_reasoning");
    let yml = std::fs::read_to_string(src.join("config.yml"))
        .unwrap()
        .replace(
            "openai_api_base: http://localhost:8001/v1",
            &format!("openai_api_base: {}", llm.base_url()),
        )
        .replacen(
            "    model: gpt-4o-mini\n",
            &format!(
                "    model: gpt-4o-mini\n    parameters:\n      base_url: {}\n",
                llm.base_url()
            ),
            1,
        );
    // The fake LLM tells the main call from judge calls by this instruction.
    let yml =
        format!("{yml}\ninstructions:\n  - type: general\n    content: You are a test bot.\n");
    let dir = configs.add("cs", &yml);
    std::fs::copy(src.join("prompts.yml"), dir.join("prompts.yml")).unwrap();
    let mut server = start(configs.root()).await;
    let r = server
        .client
        .generate(request("cs", "Hello"))
        .await
        .unwrap()
        .into_inner();
    assert!(r.violation.is_none(), "{:?}", r.violation);
    let r = server
        .client
        .generate(request("cs", "How do I hurt someone?"))
        .await
        .unwrap()
        .into_inner();
    let v = r.violation.unwrap();
    assert_eq!(v.rail, "content safety check input");
    assert_eq!(v.reason, "Prompt harm: harmful");
    // reasoning.enabled: false renders NeMo's /no_think switch.
    let judge = llm
        .state
        .requests()
        .iter()
        .find(|r| r.to_string().contains("How do I hurt"))
        .unwrap()
        .to_string();
    assert!(judge.contains("/no_think"), "{judge}");
    server.shutdown().await;
}

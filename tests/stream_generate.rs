//! StreamGenerate and Generate end to end: real gRPC server, real fake LLM.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use streamguard::pb;

const STREAMING_INPUT_RAIL: &str =
    "rails:\n  input:\n    flows:\n      - self check input\nstreaming: True\n";

#[tokio::test]
async fn chunks_are_the_upstream_tokens_in_order_and_join_to_the_final_content() {
    let llm = fake_llm(Script {
        delay: Duration::from_millis(2),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    configs.add("bot", &config(&llm.base_url(), STREAMING_INPUT_RAIL));
    let mut server = start(configs.root()).await;

    let got = collect(&mut server.client, request("bot", "Hi there"))
        .await
        .unwrap();
    let expected = Script::default().tokens;
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.chunks, expected);
    assert_eq!(got.finals.len(), 1);
    let fin = &got.finals[0];
    let message = fin.message.as_ref().unwrap();
    assert_eq!(message.role, "assistant");
    assert_eq!(message.content, expected.concat());
    assert!(fin.violation.is_none());
    assert_eq!(fin.config_id, "bot");
    let usage = fin.usage.as_ref().expect("usage reported by the LLM");
    assert_eq!(usage.completion_tokens as usize, expected.len());

    // The judge ran without streaming, then the main call streamed with the
    // general instruction as system prompt.
    let requests = llm.state.requests();
    assert_eq!(requests.len(), 2);
    assert_ne!(requests[0]["stream"], json!(true));
    assert!(
        requests[0]["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("Hi there")
    );
    assert_eq!(requests[1]["stream"], json!(true));
    assert_eq!(
        requests[1]["messages"][0],
        json!({"role": "system", "content": "You are a test bot."})
    );
    assert_eq!(
        requests[1]["messages"][1],
        json!({"role": "user", "content": "Hi there"})
    );
}

#[tokio::test]
async fn input_rail_block_streams_one_refusal_chunk_then_a_final_naming_the_rail() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    configs.add("bot", &config(&llm.base_url(), STREAMING_INPUT_RAIL));
    let mut server = start(configs.root()).await;

    let got = collect(&mut server.client, request("bot", "please BLOCKME now"))
        .await
        .unwrap();
    assert!(got.error.is_none());
    assert_eq!(got.chunks, ["I'm sorry, I can't respond to that."]);
    assert_eq!(got.finals.len(), 1);
    let fin = &got.finals[0];
    assert_eq!(
        fin.message.as_ref().unwrap().content,
        "I'm sorry, I can't respond to that."
    );
    let v = fin.violation.as_ref().expect("violation");
    assert_eq!(v.rail, "self check input");
    assert_eq!(v.stage, "input");
    assert_eq!(v.r#type, "guardrails_violation");
    assert_eq!(v.code, "content_blocked");
    assert_eq!(v.message, "Blocked by self check input rails.");
    // The main LLM was never called.
    assert_eq!(llm.state.streamed_requests(), 0);
}

#[tokio::test]
async fn generate_returns_the_whole_answer_and_applies_output_rails() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    configs.add(
        "checked",
        &config(
            &llm.base_url(),
            "rails:\n  output:\n    flows:\n      - self check output\n",
        ),
    );
    let mut server = start(configs.root()).await;

    let ok = server
        .client
        .generate(request("checked", "Hi"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ok.message.unwrap().content,
        Script::default().tokens.concat()
    );
    assert!(ok.violation.is_none());
    // The output judge saw the answer.
    let judge = llm.state.whole_requests().pop().unwrap();
    assert!(
        judge["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("streamed token by token")
    );

    llm.state.set(Script {
        tokens: tokens("this answer says BLOCKME"),
        ..Script::default()
    });
    let blocked = server
        .client
        .generate(request("checked", "Hi"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        blocked.message.unwrap().content,
        "I'm sorry, I can't respond to that."
    );
    let v = blocked.violation.unwrap();
    assert_eq!(
        (v.rail.as_str(), v.stage.as_str()),
        ("self check output", "output")
    );
}

#[tokio::test]
async fn judge_calls_never_stream_and_use_the_lowest_temperature() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    let yml = format!(
        "{}    parameters:\n      base_url: {}\n      stream: true\n      temperature: 0.9\n{STREAMING_INPUT_RAIL}lowest_temperature: 0.0\n",
        "models:\n  - type: main\n    engine: openai\n    model: fake-model\n",
        llm.base_url()
    );
    configs.add("bot", &yml);
    let mut server = start(configs.root()).await;
    let got = collect(&mut server.client, request("bot", "hi"))
        .await
        .unwrap();
    assert!(got.error.is_none());
    let judge = &llm.state.requests()[0];
    assert_eq!(
        judge.get("stream"),
        None,
        "judge call must not stream: {judge}"
    );
    assert_eq!(judge["temperature"], json!(0.0));
    assert!(judge["max_tokens"].as_u64().unwrap() <= 16);
    // The main call keeps the configured temperature.
    assert_eq!(llm.state.requests()[1]["temperature"], json!(0.9));
}

#[tokio::test]
async fn per_request_llm_params_and_rail_switches_reach_the_engine() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    configs.add("bot", &config(&llm.base_url(), STREAMING_INPUT_RAIL));
    let mut server = start(configs.root()).await;
    let mut req = request("bot", "BLOCKME but rails are off");
    req.options = Some(pb::GenerationOptions {
        llm_params: Some(pb::LlmParams {
            temperature: Some(0.25),
            max_tokens: Some(42),
            stop: vec!["END".into()],
        }),
        rails: Some(pb::RailsSelection {
            input: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    });
    let got = collect(&mut server.client, req).await.unwrap();
    assert!(got.finals[0].violation.is_none());
    let requests = llm.state.requests();
    assert_eq!(requests.len(), 1, "input rails were switched off");
    assert_eq!(requests[0]["temperature"], json!(0.25));
    assert_eq!(requests[0]["max_tokens"], json!(42));
    assert_eq!(requests[0]["stop"], json!(["END"]));
}

#[tokio::test]
async fn output_rails_on_windows_run_eight_times_for_seventeen_chunks() {
    let text = (1..=17)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let llm = fake_llm(Script {
        tokens: tokens(&text),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    configs.add(
        "windows",
        &config(
            &llm.base_url(),
            "rails:\n  output:\n    flows:\n      - self check output\n    streaming:\n      enabled: True\n      chunk_size: 4\n      context_size: 2\n      stream_first: False\nstreaming: True\n",
        ),
    );
    let mut server = start(configs.root()).await;
    let got = collect(&mut server.client, request("windows", "count"))
        .await
        .unwrap();
    assert!(got.error.is_none());
    assert_eq!(
        got.chunks,
        tokens(&text),
        "allowed text passes with its chunk boundaries"
    );
    assert_eq!(llm.state.whole_requests().len(), 8);
    assert_eq!(got.finals[0].message.as_ref().unwrap().content, text);
}

#[tokio::test]
async fn output_rail_block_mid_stream_stops_the_stream_and_the_upstream() {
    let mut words: Vec<String> = (1..=40).map(|i| format!("w{i}")).collect();
    words[9] = "BLOCKME".into();
    let text = words.join(" ");
    let llm = fake_llm(Script {
        tokens: tokens(&text),
        delay: Duration::from_millis(5),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    configs.add(
        "windows",
        &config(
            &llm.base_url(),
            "rails:\n  output:\n    flows:\n      - self check output\n    streaming:\n      enabled: True\n      chunk_size: 4\n      context_size: 0\n      stream_first: False\nstreaming: True\n",
        ),
    );
    let mut server = start(configs.root()).await;
    let got = collect(&mut server.client, request("windows", "go"))
        .await
        .unwrap();
    assert!(got.error.is_none());
    // Windows of 4: chunks 0..8 passed; the window with BLOCKME (8..12) did not.
    assert_eq!(got.chunks, tokens(&text)[..8]);
    let fin = &got.finals[0];
    assert_eq!(fin.message.as_ref().unwrap().content, got.chunks.concat());
    let v = fin.violation.as_ref().unwrap();
    assert_eq!(v.message, "Blocked by self check output rails.");
    // Item 13: the blocked stream reports what it consumed (the chunks the
    // model produced before the upstream was dropped).
    let usage = fin.usage.as_ref().expect("usage on a blocked stream");
    assert!(usage.completion_tokens >= 12, "{usage:?}");
    llm.state.wait_disconnect().await;
}

#[tokio::test]
async fn list_configs_reports_streaming_support() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    configs.add("a", &config(&llm.base_url(), STREAMING_INPUT_RAIL));
    configs.add("b", &config(&llm.base_url(), ""));
    let mut server = start(configs.root()).await;
    let list = server
        .client
        .list_configs(pb::ListConfigsRequest {})
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = list.configs.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert!(list.configs[0].streaming_supported);
    assert_eq!(list.configs[0].input_flows, ["self check input"]);
    assert!(!list.configs[1].streaming_supported);
    assert!(
        list.configs[1]
            .streaming_unsupported_reason
            .contains("streaming: True")
    );
}

fn with_stop(mut req: pb::GenerateRequest, stop: &str) -> pb::GenerateRequest {
    req.options = Some(pb::GenerationOptions {
        llm_params: Some(pb::LlmParams {
            stop: vec![stop.into()],
            ..Default::default()
        }),
        ..Default::default()
    });
    req
}

#[tokio::test]
async fn stop_strings_cut_the_answer_even_when_the_model_ignores_them() {
    // Item 17: the model goes on past the stop string it was sent.
    let llm = fake_llm(Script {
        tokens: tokens("Sure. User: ignore this and keep going for a while longer"),
        delay: std::time::Duration::from_millis(40),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    configs.add("bot", &config(&llm.base_url(), "streaming: True\n"));
    let mut server = start(configs.root()).await;
    let got = collect(&mut server.client, with_stop(request("bot", "hi"), "User:"))
        .await
        .unwrap();
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.chunks.concat(), "Sure. ");
    let last = &got.finals[0];
    assert_eq!(last.message.as_ref().unwrap().content, "Sure. ");
    assert_eq!(last.finish_reason(), pb::FinishReason::StopSequence);
    llm.state.wait_disconnect().await;

    let whole = server
        .client
        .generate(with_stop(request("bot", "hi"), "User:"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(whole.message.as_ref().unwrap().content, "Sure. ");
    assert_eq!(whole.finish_reason(), pb::FinishReason::StopSequence);

    // Over HTTP, OpenAI's `stop` does the same (its finish_reason is `stop`).
    let base = start_http(configs.root()).await;
    let r: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"model": "bot", "stop": "User:", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["choices"][0]["message"]["content"], "Sure. ");
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn the_final_event_says_why_the_answer_ended_and_has_an_id() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    configs.add("bot", &config(&llm.base_url(), STREAMING_INPUT_RAIL));
    let mut server = start(configs.root()).await;
    let ok = collect(&mut server.client, request("bot", "hi"))
        .await
        .unwrap();
    let done = &ok.finals[0];
    assert_eq!(done.finish_reason(), pb::FinishReason::Stop);
    let blocked = collect(&mut server.client, request("bot", "BLOCKME"))
        .await
        .unwrap();
    assert_eq!(
        blocked.finals[0].finish_reason(),
        pb::FinishReason::ContentFilter
    );
    // An input block consumed nothing of the main model, and says so.
    assert_eq!(
        blocked.finals[0].usage.as_ref().map(|u| u.total_tokens),
        Some(0)
    );
    assert!(!done.response_id.is_empty());
    assert_ne!(done.response_id, blocked.finals[0].response_id);
}

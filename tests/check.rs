//! Guarding what an application's own LLM says: the `Check` RPC (NeMo's
//! `check_async`) and NeMo's `POST /v1/guardrail/checks`, over real sockets,
//! with judge rails on a fake LLM that is a real HTTP server. The main model
//! is never called.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns
mod common;

use common::*;
use serde_json::{Value, json};
use streamguard::pb;

fn message(role: &str, content: &str) -> pb::Message {
    pb::Message {
        role: role.into(),
        content: content.into(),
        ..Default::default()
    }
}

fn check(config: &str, messages: &[(&str, &str)], rail_types: &[pb::RailType]) -> pb::CheckRequest {
    pb::CheckRequest {
        config_id: config.into(),
        messages: messages.iter().map(|(r, c)| message(r, c)).collect(),
        rail_types: rail_types.iter().map(|t| (*t).into()).collect(),
        ..Default::default()
    }
}

/// A judge-rail config (`self check input` / `self check output`) and a
/// masking one, on the fake LLM.
fn configs(llm: &str) -> Configs {
    let configs = Configs::new();
    configs.add(
        "judged",
        &config(
            llm,
            "rails:\n  input:\n    flows: [self check input]\n  output:\n    flows: [self check output]\n",
        ),
    );
    configs.add(
        "masked",
        &config(
            llm,
            "rails:\n  config:\n    sensitive_data_detection:\n      input:\n        entities: [EMAIL_ADDRESS]\n      output:\n        entities: [EMAIL_ADDRESS]\n  input:\n    flows: [mask sensitive data on input]\n  output:\n    flows: [mask sensitive data on output]\n",
        ),
    );
    configs
}

#[tokio::test]
async fn check_runs_the_rails_the_roles_call_for_and_never_the_main_model() {
    let fake = fake_llm(Script::default()).await;
    let configs = configs(&fake.base_url());
    let mut server = start(configs.root()).await;
    let mut run = async |r: pb::CheckRequest| server.client.check(r).await.unwrap().into_inner();

    // A user message: the input rails.
    let r = run(check("judged", &[("user", "Hello there")], &[])).await;
    assert_eq!(r.status(), pb::CheckStatus::Passed);
    assert_eq!(r.content, "Hello there");
    assert_eq!(r.rail_types, [pb::RailType::Input as i32]);
    assert!(r.violation.is_none());

    // Blocked: the rail, and the refusal as the content.
    let r = run(check("judged", &[("user", "BLOCKME please")], &[])).await;
    assert_eq!(r.status(), pb::CheckStatus::Blocked);
    assert_eq!(r.rail, "self check input");
    assert_eq!(r.content, "I'm sorry, I can't respond to that.");
    assert_eq!(r.violation.unwrap().stage, "input");

    // An answer the application's LLM gave: the output rails, with the
    // user's message as their context; the input rails also ran.
    let r = run(check(
        "judged",
        &[("user", "Tell me a joke"), ("assistant", "A BLOCKME joke")],
        &[],
    ))
    .await;
    assert_eq!(r.status(), pb::CheckStatus::Blocked);
    assert_eq!(r.rail, "self check output");
    assert_eq!(
        r.rail_types,
        [pb::RailType::Input as i32, pb::RailType::Output as i32]
    );

    // `rail_types` picks the stages: only the output rails run.
    let before = fake.state.whole_requests().len();
    let r = run(check(
        "judged",
        &[("user", "BLOCKME"), ("assistant", "Fine answer")],
        &[pb::RailType::Output],
    ))
    .await;
    assert_eq!(r.status(), pb::CheckStatus::Passed);
    assert_eq!(r.content, "Fine answer");
    let judged = fake.state.whole_requests();
    assert_eq!(judged.len(), before + 1, "one judge call: the output rail");
    let prompt = judged.last().unwrap().to_string();
    assert!(
        prompt.contains("Bot message: \\\"Fine answer\\\""),
        "{prompt}"
    );

    // No main-model call in any of them.
    assert_eq!(fake.state.streamed_requests(), 0);
    assert!(
        fake.state
            .whole_requests()
            .iter()
            .all(|r| r.to_string().contains("Should the")),
        "only judge prompts"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn check_says_what_a_rail_rewrote_and_returns_the_log() {
    let fake = fake_llm(Script::default()).await;
    let configs = configs(&fake.base_url());
    let mut server = start(configs.root()).await;
    let mut req = check("masked", &[("user", "Mail me at ada@example.com")], &[]);
    req.options = Some(pb::GenerationOptions {
        log: true,
        ..Default::default()
    });
    let r = server.client.check(req).await.unwrap().into_inner();
    assert_eq!(r.status(), pb::CheckStatus::Modified);
    assert_eq!(r.content, "Mail me at <EMAIL_ADDRESS>");
    let log = r.log.unwrap();
    assert_eq!(log.rails.len(), 1);
    assert_eq!(log.rails[0].flow, "mask sensitive data on input");
    assert_eq!(log.rails[0].decision, "modify");

    let r = server
        .client
        .check(check(
            "masked",
            &[("assistant", "Write to bob@example.org")],
            &[],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status(), pb::CheckStatus::Modified);
    assert_eq!(r.content, "Write to <EMAIL_ADDRESS>");
    server.shutdown().await;
}

#[tokio::test]
async fn bad_checks_name_the_field() {
    let fake = fake_llm(Script::default()).await;
    let configs = configs(&fake.base_url());
    let mut server = start(configs.root()).await;
    let e = server
        .client
        .check(check(
            "judged",
            &[("assistant", "Hi")],
            &[pb::RailType::Input],
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("rail_types"), "{}", e.message());
    let e = server
        .client
        .check(check("judged", &[], &[]))
        .await
        .unwrap_err();
    assert!(e.message().contains("messages"), "{}", e.message());
    let mut bad = check("judged", &[("user", "Hi")], &[]);
    bad.rail_types = vec![7];
    let e = server.client.check(bad).await.unwrap_err();
    assert!(
        e.message().contains("rail_types[0] is 7"),
        "{}",
        e.message()
    );
    let e = server
        .client
        .check(check("nope", &[("user", "Hi")], &[]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    server.shutdown().await;
}

async fn post(base: &str, path: &str, body: &Value) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn nemos_guardrail_checks_endpoint_checks_each_message_on_its_own() {
    let fake = fake_llm(Script::default()).await;
    let configs = configs(&fake.base_url());
    let base = start_http(configs.root()).await;
    let body = json!({
        "model": "fake-model",
        "messages": [
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "A BLOCKME answer"},
        ],
        "guardrails": {"config_id": "judged"},
    });
    let (status, text) = post(&base, "/v1/guardrail/checks", &body).await;
    assert_eq!(status, 200, "{text}");
    let r: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(r["status"], "blocked");
    assert_eq!(
        r["rails_status"],
        json!({"self check input": {"status": "success"}, "self check output": {"status": "blocked"}})
    );
    assert_eq!(
        r["messages"][0],
        json!({"index": 0, "role": "user", "rails": {"self check input": {"status": "success"}}})
    );
    assert_eq!(
        r["messages"][1]["rails"],
        json!({"self check output": {"status": "blocked"}})
    );
    assert_eq!(
        r["guardrails_data"]["log"]["activated_rails"],
        json!(["self check output"])
    );
    assert_eq!(r["guardrails_data"]["log"]["stats"]["llm_calls_count"], 2);
    // The answer was checked alone: its rail saw an empty user message.
    let asked = fake.state.whole_requests();
    assert!(asked[1].to_string().contains("A BLOCKME answer"));
    assert_eq!(fake.state.streamed_requests(), 0);

    // Streamed: a line per message as it is checked, then the final one.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let (status, text) = post(&base, "/v1/guardrail/checks", &streamed).await;
    assert_eq!(status, 200);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0]["status"], "success");
    assert_eq!(lines[1]["status"], "blocked");
    // The same final answer (its durations aside).
    let without_times = |mut v: Value| {
        v["guardrails_data"]["log"]["stats"] = Value::Null;
        v
    };
    assert_eq!(without_times(lines[2].clone()), without_times(r));

    // A rewrite shows as the message's `content` (streamguard's addition).
    let masked = json!({"messages": [{"role": "user", "content": "I am ada@example.com"}],
                        "guardrails": {"config_id": "masked"}});
    let (_, text) = post(&base, "/v1/guardrail/checks", &masked).await;
    let r: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(r["status"], "success");
    assert_eq!(r["messages"][0]["content"], "I am <EMAIL_ADDRESS>");

    // Errors are HTTP errors naming the problem.
    let (status, text) = post(
        &base,
        "/v1/guardrail/checks",
        &json!({"messages": [], "guardrails": {"config_id": "judged"}}),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("Messages list cannot be empty."), "{text}");
    let (status, _) = post(&base, "/v1/guardrail/checks", &json!({"messages": [{"role": "user", "content": "x"}], "guardrails": {"config_id": "nope"}})).await;
    assert_eq!(status, 404);
    let (status, text) = post(&base, "/v1/guardrail/checks", &json!({"messages": [{"role": "user", "content": "x"}], "guardrails": {"config_id": "judged", "thread_id": "0123456789abcdef"}})).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("guardrails.thread_id"), "{text}");
}

#[tokio::test]
async fn a_colang_2_config_with_its_own_rail_flows_is_refused_not_passed() {
    let fake = fake_llm(Script::default()).await;
    let configs = Configs::new();
    let dir = configs.add(
        "own",
        &format!("colang_version: \"2.x\"\n{}", main_model(&fake.base_url())),
    );
    std::fs::write(
        dir.join("rails.co"),
        "import core\nimport llm\n\nflow main\n  activate llm continuation\n\nflow input rails $input_text\n  if \"bomb\" in $input_text\n    bot say \"No.\"\n    abort\n",
    )
    .unwrap();
    let mut server = start(configs.root()).await;
    let e = server
        .client
        .check(check("own", &[("user", "a bomb")], &[]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().contains("runs its own Colang 2 rail flows"),
        "{}",
        e.message()
    );
    server.shutdown().await;
}

//! NeMo's `context` messages (`{"role": "context", "content": {...}}`, and
//! the HTTP body's `context`): their variables reach flows and rails, and a
//! RAG app's own `relevant_chunks` reach the prompt and the rails that judge
//! against them. NeMo's `guardrails_only/output` example runs on them.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns
mod common;

use std::path::PathBuf;

use common::*;
use serde_json::{Value, json};

fn guardrails_only_output(configs: &Configs, llm: &str) {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/nemo-configs/examples-configs-guardrails_only-output");
    let yml = std::fs::read_to_string(src.join("config.yml")).unwrap();
    let dir = configs.add("out", &format!("{}{yml}", main_model(llm)));
    std::fs::copy(src.join("config.co"), dir.join("config.co")).unwrap();
}

fn pb_message(role: &str, content: &str) -> streamguard::pb::Message {
    streamguard::pb::Message {
        role: role.into(),
        content: content.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn nemos_guardrails_only_output_example_checks_the_answer_the_context_carries() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    guardrails_only_output(&configs, &llm.base_url());
    let base = start_http(configs.root()).await;
    let ask = |llm_output: &str| {
        json!({"config_id": "out", "messages": [
            {"role": "context", "content": {"llm_output": llm_output}},
            {"role": "user", "content": "what is the answer?"},
        ]})
    };
    let (status, r) = post_chat(&base, &ask("a dummy answer")).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["messages"][0]["content"], "DENY", "{r}");
    let (_, r) = post_chat(&base, &ask("a fine answer")).await;
    assert_eq!(r["messages"][0]["content"], "ALLOW", "{r}");
    // The body's `context` is a first `context` message, as in NeMo's server.
    let body = json!({"config_id": "out", "context": {"llm_output": "dummy text"},
                      "messages": [{"role": "user", "content": "and this?"}]});
    let (_, r) = post_chat(&base, &body).await;
    assert_eq!(r["messages"][0]["content"], "DENY", "{r}");
    // gRPC: the context message's content is a JSON object.
    let mut server = start(configs.root()).await;
    let mut req = request("out", "what is the answer?");
    req.messages.insert(
        0,
        pb_message("context", r#"{"llm_output": "a dummy answer"}"#),
    );
    let r = server.client.generate(req).await.unwrap().into_inner();
    assert_eq!(r.message.unwrap().content, "DENY");
    assert_eq!(r.violation.unwrap().rail, "dummy output rail");
    assert!(
        llm.state.requests().is_empty(),
        "the answer came in the context; no LLM call"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_rag_apps_own_chunks_reach_the_prompt_and_the_fact_check() {
    let llm = fake_llm(Script {
        tokens: tokens("You get 20 days."),
        judge_answers: vec![("Evidence: Employees get 20".into(), "Yes".into())],
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    let dir = configs.add(
        "rag",
        &config(
            &llm.base_url(),
            "streaming: True\nrails:\n  output:\n    flows: [self check facts]\n    streaming:\n      enabled: True\n      chunk_size: 200\nprompts:\n  - task: self_check_facts\n    content: \"Evidence: {{ evidence }} Claim: {{ response }} Supported?\"\n",
        ),
    );
    assert!(dir.exists());
    let mut server = start(configs.root()).await;
    let mut req = request("rag", "How many vacation days?");
    let context =
        json!({"relevant_chunks": "Employees get 20 vacation days.", "check_facts": true});
    req.messages
        .insert(0, pb_message("context", &context.to_string()));
    let got = collect(&mut server.client, req).await.unwrap();
    assert_eq!(got.chunks.concat(), "You get 20 days.", "{:?}", got.error);
    assert!(got.finals[0].violation.is_none());
    let requests = llm.state.requests();
    let main = requests.iter().find(|r| r["stream"] == true).unwrap();
    let system = main["messages"][0]["content"].as_str().unwrap().to_string();
    assert!(
        system.contains(
            "This is some relevant context:\n```markdown\nEmployees get 20 vacation days.\n```"
        ),
        "{system}"
    );
    let judged: Vec<&Value> = requests
        .iter()
        .filter(|r| {
            r.to_string()
                .contains("Evidence: Employees get 20 vacation days. Claim: You get 20 days.")
        })
        .collect();
    assert_eq!(judged.len(), 1, "{requests:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_context_that_is_not_an_object_is_refused_naming_the_message() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    configs.add("c", &config(&llm.base_url(), ""));
    let base = start_http(configs.root()).await;
    let body = json!({"config_id": "c", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "context", "content": "relevant_chunks"},
        {"role": "user", "content": "hi"},
    ]});
    let (status, r) = post_chat(&base, &body).await;
    assert_eq!(status, 400, "{r}");
    assert!(r.to_string().contains("messages[1].content"), "{r}");
    let body = json!({"config_id": "c", "messages": [
        {"role": "user", "content": {"text": "an object"}},
    ]});
    let (status, r) = post_chat(&base, &body).await;
    assert_eq!(status, 400, "{r}");
    assert!(r.to_string().contains("`context` message only"), "{r}");
    let mut server = start(configs.root()).await;
    let mut req = request("c", "hi");
    req.messages.insert(0, pb_message("context", "not json"));
    let e = server.client.generate(req).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().contains("messages[0].content"),
        "{}",
        e.message()
    );
    assert!(llm.state.requests().is_empty());
    server.shutdown().await;
}

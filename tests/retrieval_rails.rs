//! Retrieval rails (`rails.retrieval.flows`): NeMo's `mask` / `detect
//! sensitive data on retrieval` and a config's own flows, run on the
//! knowledge base's chunks before a prompt gets them, in dialog configs and
//! in configs without a dialog, on Generate and StreamGenerate; and the
//! chunks reaching the output rails that judge against them (Fiddler
//! faithfulness, Patronus Lynx).

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns
mod common;

use std::path::PathBuf;

use common::*;
use serde_json::json;

fn asked(text: &str) -> String {
    format!("between the user and the bot:\nuser \"{text}\"")
}

const DIALOG: &str = "define user ask leave\n  \"how many vacation days do I get?\"\n\n\
    define flow leave\n  user ask leave\n  bot answer about leave\n\n\
    define subflow check relevant chunks\n  if \"confidential\" in $relevant_chunks\n    bot say confidential\n    stop\n\n\
    define bot say confidential\n  \"That is confidential.\"\n";

const HANDBOOK: &str = "# Leave\n\nEmployees get 20 vacation days; ask hr@example.com about leave.\n\n\
    # Salaries\n\nSalaries are confidential, except for interns.\n";

/// A config with the handbook as its knowledge base and these retrieval flows.
fn handbook(configs: &Configs, id: &str, base_url: &str, dialog: bool, flows: &str) -> PathBuf {
    let yml = config(
        base_url,
        &format!(
            "rails:\n  dialog:\n    single_call:\n      enabled: False\n  config:\n    sensitive_data_detection:\n      retrieval:\n        entities: [EMAIL_ADDRESS]\n  retrieval:\n    flows: [{flows}]\nstreaming: True\n"
        ),
    );
    let dir = configs.add(id, &yml);
    std::fs::create_dir_all(dir.join("kb")).unwrap();
    std::fs::write(dir.join("kb/handbook.md"), HANDBOOK).unwrap();
    let colang = match dialog {
        true => DIALOG.to_string(),
        // Without `define user` examples the flows are only rails.
        false => DIALOG
            .split("define subflow")
            .nth(1)
            .map(|f| format!("define subflow{f}"))
            .unwrap(),
    };
    std::fs::write(dir.join("rails.co"), colang).unwrap();
    dir
}

/// The system prompts of the main model's streamed calls, as sent.
fn streamed_prompts(llm: &FakeLlm) -> Vec<String> {
    llm.state
        .requests()
        .iter()
        .filter(|r| r["stream"] == true)
        .map(|r| r["messages"].to_string())
        .collect()
}

#[tokio::test]
async fn masked_chunks_reach_the_bot_message_prompt_of_a_dialog() {
    let llm = fake_llm(Script {
        tokens: tokens("You get 20 days."),
        judge_answers: vec![(asked("How many vacation days?"), "ask leave".into())],
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    handbook(
        &configs,
        "mask",
        &llm.base_url(),
        true,
        "mask sensitive data on retrieval",
    );
    let mut server = start(configs.root()).await;
    let got = collect(
        &mut server.client,
        request("mask", "How many vacation days?"),
    )
    .await
    .unwrap();
    assert_eq!(got.chunks.concat(), "You get 20 days.", "{:?}", got.error);
    let prompts = streamed_prompts(&llm);
    assert_eq!(prompts.len(), 1, "{prompts:?}");
    assert!(
        prompts[0].contains("ask <EMAIL_ADDRESS> about leave"),
        "{}",
        prompts[0]
    );
    assert!(!prompts[0].contains("hr@example.com"), "{}", prompts[0]);
    server.shutdown().await;
}

#[tokio::test]
async fn a_retrieval_rail_that_stops_answers_for_the_turn_without_the_model() {
    let llm = fake_llm(Script {
        tokens: tokens("never streamed"),
        judge_answers: vec![
            (asked("What are the salaries?"), "ask leave".into()),
            (asked("How many vacation days?"), "ask leave".into()),
        ],
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    // Detection: NeMo's library flow answers `inform answer unknown`.
    handbook(
        &configs,
        "detect",
        &llm.base_url(),
        true,
        "detect sensitive data on retrieval",
    );
    // A config's own flow: what it says before `stop` is the answer.
    handbook(
        &configs,
        "own",
        &llm.base_url(),
        true,
        "check relevant chunks",
    );
    let mut server = start(configs.root()).await;
    let got = collect(
        &mut server.client,
        request("detect", "How many vacation days?"),
    )
    .await
    .unwrap();
    assert_eq!(got.chunks.concat(), "I don't know the answer to that.");
    assert_eq!(got.finals.len(), 1);
    let r = server
        .client
        .generate(request("own", "What are the salaries?"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.message.unwrap().content, "That is confidential.");
    assert!(streamed_prompts(&llm).is_empty());
    assert!(
        llm.state
            .requests()
            .iter()
            .all(|r| !r.to_string().contains("generate_bot_message")),
    );
    server.shutdown().await;
}

#[tokio::test]
async fn retrieval_rails_run_on_the_chunks_of_a_config_without_a_dialog() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    handbook(
        &configs,
        "plain",
        &llm.base_url(),
        false,
        "mask sensitive data on retrieval",
    );
    handbook(
        &configs,
        "plain-own",
        &llm.base_url(),
        false,
        "mask sensitive data on retrieval, check relevant chunks",
    );
    let mut server = start(configs.root()).await;
    // Masked before the main model's system prompt gets them.
    server
        .client
        .generate(request("plain", "How many vacation days?"))
        .await
        .unwrap();
    let system = llm.state.requests().last().unwrap()["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        system.contains("ask <EMAIL_ADDRESS> about leave"),
        "{system}"
    );
    // The own flow stops the turn: its message, streamed, then the final event.
    let before = llm.state.requests().len();
    let got = collect(
        &mut server.client,
        request("plain-own", "What are the salaries?"),
    )
    .await
    .unwrap();
    assert_eq!(got.chunks.concat(), "That is confidential.");
    assert_eq!(got.finals.len(), 1);
    assert_eq!(llm.state.requests().len(), before);
    server.shutdown().await;
}

#[test]
fn retrieval_flows_that_cannot_run_there_are_refused_by_name() {
    let configs = Configs::new();
    let dir = handbook(
        &configs,
        "bad",
        "http://127.0.0.1:9/v1",
        true,
        "self check input",
    );
    let e = streamguard::Guardrails::load(&dir).unwrap_err().to_string();
    assert!(e.contains("rails.retrieval.flows[0]"), "{e}");
    assert!(
        e.contains("`self check input` is a rail of `rails.input.flows`"),
        "{e}"
    );
    // An output rail's flow cannot wait for the user, nor can a retrieval one.
    std::fs::write(
        dir.join("config.yml"),
        config(
            "http://127.0.0.1:9/v1",
            "rails:\n  retrieval:\n    flows: [leave]\n",
        ),
    )
    .unwrap();
    let e = streamguard::Guardrails::load(&dir).unwrap_err().to_string();
    assert!(e.contains("cannot wait for the user"), "{e}");
}

/// A Fiddler Guardrails faithfulness endpoint: records the bodies, answers faithful.
async fn fiddler() -> (String, Seen) {
    json_service(
        "/v3/guardrails/ftl-response-faithfulness",
        |_| json!({"fdl_faithful_score": 0.9}),
    )
    .await
}

#[tokio::test]
async fn fiddler_faithfulness_and_patronus_lynx_judge_the_answer_against_the_chunks() {
    let script = |answer: &str| Script {
        tokens: tokens(answer),
        judge_answers: vec![
            (asked("How many vacation days?"), "ask leave".into()),
            (
                "ANSWER:\nYou get 20 days.".into(),
                r#"{"REASONING": ["in the document"], "SCORE": "PASS"}"#.into(),
            ),
            (
                "ANSWER:\nYou get 99 days.".into(),
                r#"{"REASONING": ["not in the document"], "SCORE": "FAIL"}"#.into(),
            ),
        ],
        ..Script::default()
    };
    let llm = fake_llm(script("You get 20 days.")).await;
    let (fdl, seen) = fiddler().await;
    let configs = Configs::new();
    let url = llm.base_url();
    let yml = format!(
        "{}  - type: patronus_lynx\n    engine: openai\n    model: lynx-8b\n    parameters:\n      base_url: {url}\n\
         instructions:\n  - type: general\n    content: You are a test bot.\n\
         rails:\n  dialog:\n    single_call:\n      enabled: False\n  config:\n    fiddler:\n      fiddler_endpoint: {fdl}\n      api_key: fdl-key\n\
         \x20 output:\n    flows: [fiddler bot faithfulness, patronus lynx check output hallucination]\n\
         prompts:\n  - task: patronus_lynx_check_output_hallucination\n    content: |\n      QUESTION:\n      {{{{ user_input }}}}\n      DOCUMENT:\n      {{{{ provided_context }}}}\n      ANSWER:\n      {{{{ bot_response }}}}\n",
        main_model(&url)
    );
    let dir = configs.add("judged", &yml);
    std::fs::create_dir_all(dir.join("kb")).unwrap();
    std::fs::write(dir.join("kb/handbook.md"), HANDBOOK).unwrap();
    std::fs::write(dir.join("rails.co"), DIALOG).unwrap();
    let mut server = start(configs.root()).await;
    let r = server
        .client
        .generate(request("judged", "How many vacation days?"))
        .await
        .unwrap()
        .into_inner();
    assert!(r.violation.is_none(), "{:?}", r.violation);
    assert_eq!(r.message.unwrap().content, "You get 20 days.");
    let body = seen.lock().unwrap()[0].clone();
    let context = body["data"]["context"].as_str().unwrap();
    assert!(context.contains("Employees get 20 vacation days"), "{body}");
    assert_eq!(body["data"]["response"], "You get 20 days.");
    let lynx = llm
        .state
        .requests()
        .into_iter()
        .find(|r| r["model"] == "lynx-8b")
        .expect("Lynx was asked");
    assert!(
        lynx["messages"]
            .to_string()
            .contains("DOCUMENT:\\nEmployees get 20 vacation days"),
        "{lynx}"
    );
    // An answer Lynx scores FAIL is replaced by NeMo's `inform answer unknown`.
    llm.state.set(script("You get 99 days."));
    let r = server
        .client
        .generate(request("judged", "How many vacation days?"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.violation.unwrap().rail,
        "patronus lynx check output hallucination"
    );
    assert_eq!(
        r.message.unwrap().content,
        "I don't know the answer to that."
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_rag_apps_own_chunks_go_through_the_retrieval_rails_without_a_dialog() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    configs.add(
        "ctx",
        &config(
            &llm.base_url(),
            "rails:\n  config:\n    sensitive_data_detection:\n      retrieval:\n        entities: [EMAIL_ADDRESS]\n  retrieval:\n    flows: [mask sensitive data on retrieval]\n",
        ),
    );
    let base = start_http(configs.root()).await;
    let body = json!({"config_id": "ctx", "messages": [
        {"role": "context", "content": {"relevant_chunks": "Write to hr@example.com about leave."}},
        {"role": "user", "content": "Who do I ask about leave?"}]});
    let (status, r) = post_chat(&base, &body).await;
    assert_eq!(status, 200, "{r}");
    let system = llm.state.requests().last().unwrap()["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        system.contains("Write to <EMAIL_ADDRESS> about leave."),
        "{system}"
    );
    assert!(!system.contains("hr@example.com"), "{system}");
}

#[tokio::test]
async fn a_retrieval_rail_that_fails_is_a_rail_failure_naming_it() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    let dir = handbook(&configs, "broken", &llm.base_url(), false, "lookup chunks");
    std::fs::write(
        dir.join("rails.co"),
        "define subflow lookup chunks\n  $x = execute check_chunks(text=$relevant_chunks)\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("actions.yml"),
        "actions_server_url: http://127.0.0.1:9\n",
    )
    .unwrap();
    let base = start_http(configs.root()).await;
    let body = json!({"config_id": "broken", "messages": [
        {"role": "user", "content": "How many vacation days?"}]});
    let (status, r) = post_chat(&base, &body).await;
    assert_eq!(status, 502, "{r}");
    assert_eq!(r["error"]["code"], "rail_execution_failure", "{r}");
    assert!(r.to_string().contains("lookup chunks"), "{r}");
    assert!(llm.state.requests().is_empty());
}

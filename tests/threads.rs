//! Conversation threads kept on the server (NeMo's `thread_id`): a request
//! names a thread and sends only its new message; the model sees the whole
//! conversation, over HTTP (whole and streamed answers) and gRPC.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns
mod common;

use common::*;
use serde_json::json;

/// The messages the fake LLM got in its last call (the configs have no
/// rails: every call is the main model's).
fn last_main_call(llm: &FakeLlm) -> Vec<(String, String)> {
    let main = llm.state.requests().into_iter().next_back().unwrap();
    main["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().into(),
                m["content"].as_str().unwrap().into(),
            )
        })
        .collect()
}

/// How many user messages the last call carried.
fn users_seen(llm: &FakeLlm) -> usize {
    last_main_call(llm)
        .iter()
        .filter(|(r, _)| r == "user")
        .count()
}

#[tokio::test]
async fn a_thread_carries_the_conversation_from_request_to_request() {
    let llm = fake_llm(Script {
        tokens: tokens("Noted."),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    configs.add("bot", &config(&llm.base_url(), "streaming: True\n"));
    let base = start_http(configs.root()).await;
    let thread = "thread-0123456789abcdef";
    let say = |text: &str, stream: bool| {
        json!({"config_id": "bot", "stream": stream, "messages": [{"role": "user", "content": text}],
               "guardrails": {"thread_id": thread}})
    };
    let (status, _) = post_chat(&base, &say("My name is Ada.", false)).await;
    assert_eq!(status, 200);
    // The second request sends only its message; the model gets all of it.
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&say("What is my name?", true))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(r.contains("[DONE]"), "{r}");
    let seen = last_main_call(&llm);
    let turns: Vec<(&str, &str)> = seen
        .iter()
        .filter(|(role, _)| role != "system")
        .map(|(r, c)| (r.as_str(), c.as_str()))
        .collect();
    assert_eq!(
        turns,
        [
            ("user", "My name is Ada."),
            ("assistant", "Noted."),
            ("user", "What is my name?"),
        ]
    );
    // The streamed turn was kept too.
    let (_, _) = post_chat(&base, &say("And again?", false)).await;
    assert_eq!(users_seen(&llm), 3);
    // Another thread starts empty.
    let other = json!({"config_id": "bot", "messages": [{"role": "user", "content": "Hi"}],
                       "guardrails": {"thread_id": "another-thread-000000"}});
    post_chat(&base, &other).await;
    assert_eq!(users_seen(&llm), 1);
    // A bad id is refused, naming the field.
    let bad = json!({"config_id": "bot", "messages": [{"role": "user", "content": "Hi"}],
                     "guardrails": {"thread_id": "../../etc/passwd-x"}});
    let (status, r) = post_chat(&base, &bad).await;
    assert_eq!(status, 400);
    assert_eq!(r["error"]["param"], "guardrails.thread_id", "{r}");
}

#[tokio::test]
async fn a_grpc_thread_id_keeps_the_conversation_on_the_server() {
    let llm = fake_llm(Script {
        tokens: tokens("Noted."),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    configs.add("bot", &config(&llm.base_url(), "streaming: True\n"));
    let mut server = start(configs.root()).await;
    let mut first = request("bot", "My name is Ada.");
    first.thread_id = "grpc-thread-0123456789".into();
    server.client.generate(first.clone()).await.unwrap();
    let mut second = request("bot", "What is my name?");
    second.thread_id = first.thread_id.clone();
    let got = collect(&mut server.client, second).await.unwrap();
    assert_eq!(got.chunks.concat(), "Noted.");
    let users: Vec<String> = last_main_call(&llm)
        .into_iter()
        .filter(|(r, _)| r != "system")
        .map(|(_, c)| c)
        .collect();
    assert_eq!(users, ["My name is Ada.", "Noted.", "What is my name?"]);
    let mut bad = request("bot", "Hi");
    bad.thread_id = "short".into();
    let e = server.client.generate(bad).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("16 characters"), "{}", e.message());

    server.shutdown().await;
}

#[tokio::test]
async fn a_thread_keeps_messages_as_the_rails_left_them_and_not_blocked_turns() {
    let llm = fake_llm(Script {
        tokens: tokens("Noted."),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    configs.add(
        "masked",
        &config(
            &llm.base_url(),
            "rails:\n  config:\n    sensitive_data_detection:\n      input:\n        entities: [EMAIL_ADDRESS]\n    regex_detection:\n      input:\n        keywords: [forbidden]\n  input:\n    flows: [mask sensitive data on input, regex check input]\n",
        ),
    );
    let base = start_http(configs.root()).await;
    let turn = |text: &str| {
        json!({"model": "masked", "messages": [{"role": "user", "content": text}],
               "guardrails": {"thread_id": "rails-thread-0123456789"}})
    };
    let (status, _) = post_chat(&base, &turn("Mail me at ada@example.com")).await;
    assert_eq!(status, 200);
    // Blocked: the model is not called, and the turn is not kept.
    let (status, r) = post_chat(&base, &turn("something forbidden")).await;
    assert_eq!(status, 200);
    assert!(r["guardrails"]["violation"].is_object(), "{r}");
    let (status, _) = post_chat(&base, &turn("Thanks")).await;
    assert_eq!(status, 200);
    let seen = last_main_call(&llm);
    let users: Vec<&str> = seen
        .iter()
        .filter(|(r, _)| r == "user")
        .map(|(_, c)| c.as_str())
        .collect();
    assert_eq!(users, ["Mail me at <EMAIL_ADDRESS>", "Thanks"], "{seen:?}");
}

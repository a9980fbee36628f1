//! NeMo's `state` for Colang 1.0 dialogs over HTTP (`guardrails.state`) and
//! gRPC (`state`): a flow waiting at a `user` step resumes there on the next
//! turn, and variables set in one turn are there in the next; without a
//! state each turn starts fresh. States are signed: a changed one is refused.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns
mod common;

use common::*;
use serde_json::{Value, json};

const INTRO: &str = "define user greet\n  \"hello\"\n\ndefine user give name\n  \"my name is Bob\"\n\n\
    define user ask name\n  \"what is my name?\"\n\n\
    define bot ask name\n  \"What is your name?\"\n\ndefine bot greet by name\n  \"Nice to meet you, $name!\"\n\n\
    define bot tell name\n  \"Your name is $name.\"\n\ndefine bot unknown name\n  \"I don't know your name.\"\n\n\
    define flow intro\n  user greet\n  bot ask name\n  user give name\n  $name = \"Ana\"\n  bot greet by name\n\n\
    define flow recall\n  user ask name\n  if $name\n    bot tell name\n  else\n    bot unknown name\n\n\
    define bot refuse secrets\n  \"I cannot talk about passwords.\"\n\n\
    define user ask order\n  \"can I order a coffee?\"\n\ndefine user say large\n  \"large please\"\n\n\
    define user say small\n  \"small please\"\n\n\
    define bot ask size\n  \"Small or large?\"\n\ndefine bot confirm size\n  \"A $size coffee, coming up.\"\n\n\
    define flow order\n  user ask order\n  bot ask size\n  when user say small\n    $size = \"small\"\n    bot confirm size\n  \
    else when user say large\n    $size = \"large\"\n    bot confirm size\n\n\
    define user thank\n  \"thanks\"\n\ndefine bot welcome\n  \"You are welcome, $name.\"\n\n\
    define flow thanks\n  user thank\n  bot welcome\n\n\
    define subflow no secrets\n  if \"password\" in $user_message\n    bot refuse secrets\n    stop\n";

async fn intro_config() -> (FakeLlm, Configs) {
    let llm = fake_llm(Script {
        tokens: tokens("A generated answer."),
        // The latest turn's message first: earlier ones stay in the history.
        judge_answers: vec![
            ("do you remember me?".into(), "ask name".into()),
            ("I am Ana".into(), "give name".into()),
            ("hi there".into(), "greet".into()),
            ("I want a large one".into(), "say large".into()),
            ("I want a coffee".into(), "ask order".into()),
            ("thank you".into(), "thank".into()),
        ],
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    let dir = configs.add(
        "intro",
        &config(
            &llm.base_url(),
            "streaming: True\nrails:\n  input:\n    flows:\n      - no secrets\n  dialog:\n    single_call:\n      enabled: False\n",
        ),
    );
    std::fs::write(dir.join("rails.co"), INTRO).unwrap();
    (llm, configs)
}

fn turns(texts: &[(&str, &str)]) -> Value {
    Value::Array(
        texts
            .iter()
            .map(|(role, content)| json!({"role": role, "content": content}))
            .collect(),
    )
}

#[tokio::test]
async fn http_state_resumes_a_waiting_flow_and_keeps_its_variables() {
    let (_llm, configs) = intro_config().await;
    let base = start_http(configs.root()).await;
    let ask = |messages: Value, state: Option<Value>| {
        let base = base.clone();
        async move {
            let mut body = json!({"config_id": "intro", "messages": messages});
            if let Some(s) = state {
                body["guardrails"] = json!({"state": s});
            }
            post_chat(&base, &body).await
        }
    };
    let (status, r) = ask(turns(&[("user", "hi there")]), Some(json!({}))).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["messages"][0]["content"], "What is your name?");
    let state = r["state"].clone();
    assert!(state["state"].is_string(), "{r}");
    // The flow waits at `user give name`: with the state it goes on there.
    let (_, r) = ask(turns(&[("user", "I am Ana")]), Some(state)).await;
    assert_eq!(r["messages"][0]["content"], "Nice to meet you, Ana!", "{r}");
    let state = r["state"].clone();
    // `$name` lives on in the state.
    let (_, r) = ask(
        turns(&[("user", "do you remember me?")]),
        Some(state.clone()),
    )
    .await;
    assert_eq!(r["messages"][0]["content"], "Your name is Ana.", "{r}");
    // A flow the interpreter does not run renders its messages with them too.
    let (_, r) = ask(turns(&[("user", "thank you")]), Some(state.clone())).await;
    assert_eq!(r["messages"][0]["content"], "You are welcome, Ana.", "{r}");
    // Without a state every turn starts fresh, and no state is returned.
    let (_, r) = ask(turns(&[("user", "do you remember me?")]), None).await;
    assert_eq!(r["messages"][0]["content"], "I don't know your name.");
    assert!(r.get("state").is_none(), "{r}");
    // The OpenAI shape returns it as NeMo's server does: `guardrails.state`.
    let (_, r) = post_chat(
        &base,
        &json!({"model": "gpt-4o", "messages": turns(&[("user", "do you remember me?")]),
                "guardrails": {"config_id": "intro", "state": state}}),
    )
    .await;
    assert_eq!(r["choices"][0]["message"]["content"], "Your name is Ana.");
    assert!(r["guardrails"]["state"]["state"].is_string(), "{r}");
    // A changed state is refused, naming the field.
    let (status, r) = ask(
        turns(&[("user", "do you remember me?")]),
        Some(json!({"state": "eyJ2YXJzIjp7fX0.AAAA"})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(r["error"]["param"], "guardrails.state", "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("signature"),
        "{r}"
    );
}

#[tokio::test]
async fn grpc_state_round_trips_through_generate_and_stream_generate() {
    let (_llm, configs) = intro_config().await;
    let mut server = start(configs.root()).await;
    let mut first = request("intro", "hi there");
    first.state = Some(String::new());
    let r = server.client.generate(first).await.unwrap().into_inner();
    assert_eq!(r.message.unwrap().content, "What is your name?");
    let state = r.state;
    assert!(!state.is_empty());
    let mut second = request("intro", "I am Ana");
    second.state = Some(state);
    let mut stream = server
        .client
        .stream_generate(second)
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(event) = stream.message().await.unwrap() {
        if let Some(streamguard::pb::stream_generate_response::Event::Final(f)) = event.event {
            last = Some(f);
        }
    }
    let last = last.unwrap();
    assert_eq!(last.message.unwrap().content, "Nice to meet you, Ana!");
    let mut third = request("intro", "do you remember me?");
    third.state = Some(last.state);
    let r = server.client.generate(third).await.unwrap().into_inner();
    assert_eq!(r.message.unwrap().content, "Your name is Ana.");
    // A state for another config is refused.
    let mut other = request("intro", "do you remember me?");
    other.config_ids = vec!["intro".into(), "intro".into()];
    other.config_id = String::new();
    other.state = Some(r.state);
    let e = server.client.generate(other).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("another config"), "{}", e.message());
    server.shutdown().await;
}

#[tokio::test]
async fn an_http_stream_returns_the_state_in_its_finish_chunk() {
    let (_llm, configs) = intro_config().await;
    let base = start_http(configs.root()).await;
    let text = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(
            &json!({"model": "gpt-4o", "stream": true, "messages": turns(&[("user", "hi there")]),
                      "guardrails": {"config_id": "intro", "state": {}}}),
        )
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
    let finish = events.last().unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "stop", "{text}");
    let state = finish["guardrails"]["state"].clone();
    assert!(state["state"].is_string(), "{text}");
    let (_, r) = post_chat(
        &base,
        &json!({"config_id": "intro", "messages": turns(&[("user", "I am Ana")]),
                "guardrails": {"state": state}}),
    )
    .await;
    assert_eq!(r["messages"][0]["content"], "Nice to meet you, Ana!", "{r}");
}

#[tokio::test]
async fn a_turn_a_rail_blocks_hands_the_state_back_unchanged() {
    let (_llm, configs) = intro_config().await;
    let base = start_http(configs.root()).await;
    let body = |text: &str, state: Value| {
        json!({"config_id": "intro", "messages": turns(&[("user", text)]),
               "guardrails": {"state": state}})
    };
    let (_, r) = post_chat(&base, &body("hi there", json!({}))).await;
    assert_eq!(r["messages"][0]["content"], "What is your name?", "{r}");
    // The input rail blocks this turn; the flow still waits for the name.
    let (_, blocked) = post_chat(&base, &body("my password is hunter2", r["state"].clone())).await;
    assert_eq!(
        blocked["messages"][0]["content"], "I cannot talk about passwords.",
        "{blocked}"
    );
    assert!(blocked["state"]["state"].is_string(), "{blocked}");
    let (_, r) = post_chat(&base, &body("I am Ana", blocked["state"].clone())).await;
    assert_eq!(r["messages"][0]["content"], "Nice to meet you, Ana!", "{r}");

    // gRPC: the blocked answer has no dialog turn but still the state.
    let mut server = start(configs.root()).await;
    let mut first = request("intro", "hi there");
    first.state = Some(String::new());
    let r = server.client.generate(first).await.unwrap().into_inner();
    let mut second = request("intro", "my password is hunter2");
    second.state = Some(r.state);
    let blocked = server.client.generate(second).await.unwrap().into_inner();
    assert!(blocked.violation.is_some() && blocked.dialog.is_none());
    let mut third = request("intro", "I am Ana");
    third.state = Some(blocked.state);
    let r = server.client.generate(third).await.unwrap().into_inner();
    assert_eq!(r.message.unwrap().content, "Nice to meet you, Ana!");
    server.shutdown().await;
}

#[tokio::test]
async fn a_flow_waiting_at_a_when_block_resumes_in_the_arm_for_the_intent() {
    let (_llm, configs) = intro_config().await;
    let base = start_http(configs.root()).await;
    let body = |text: &str, state: Value| {
        json!({"config_id": "intro", "messages": turns(&[("user", text)]),
               "guardrails": {"state": state}})
    };
    let (_, r) = post_chat(&base, &body("I want a coffee", json!({}))).await;
    assert_eq!(r["messages"][0]["content"], "Small or large?", "{r}");
    let (_, r) = post_chat(&base, &body("I want a large one", r["state"].clone())).await;
    assert_eq!(
        r["messages"][0]["content"], "A large coffee, coming up.",
        "{r}"
    );
}

#[tokio::test]
async fn without_a_state_a_when_arm_with_variables_runs_from_the_conversation() {
    let (_llm, configs) = intro_config().await;
    let base = start_http(configs.root()).await;
    // No state: the last answer ("Small or large?") places the flow at its
    // `when` block, and the arm's assignment runs before its message.
    let messages = turns(&[
        ("user", "I want a coffee"),
        ("assistant", "Small or large?"),
        ("user", "I want a large one"),
    ]);
    let (status, r) = post_chat(&base, &json!({"config_id": "intro", "messages": messages})).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        r["messages"][0]["content"], "A large coffee, coming up.",
        "{r}"
    );
    // After another answer the block is not where the conversation is.
    let messages = turns(&[
        ("user", "I want a coffee"),
        ("assistant", "Something else."),
        ("user", "I want a large one"),
    ]);
    let (status, r) = post_chat(&base, &json!({"config_id": "intro", "messages": messages})).await;
    assert_eq!(status, 200, "{r}");
    assert_ne!(
        r["messages"][0]["content"], "A large coffee, coming up.",
        "{r}"
    );
}

#[tokio::test]
async fn a_sent_state_is_not_overruled_by_the_conversation_or_a_context_message() {
    let (_llm, configs) = intro_config().await;
    let base = start_http(configs.root()).await;
    let post = |messages: Value, state: Value| {
        let base = base.clone();
        async move {
            let body =
                json!({"config_id": "intro", "messages": messages, "guardrails": {"state": state}});
            post_chat(&base, &body).await
        }
    };
    // A fresh state waits for nothing: an assistant message does not place the flow.
    let messages = turns(&[
        ("user", "I want a coffee"),
        ("assistant", "Small or large?"),
        ("user", "I want a large one"),
    ]);
    let (status, r) = post(messages, json!({})).await;
    assert_eq!(status, 200, "{r}");
    assert_ne!(
        r["messages"][0]["content"], "A large coffee, coming up.",
        "{r}"
    );
    // `$name` the flow set and the state carries wins over a context message's.
    let (_, r) = post(turns(&[("user", "hi there")]), json!({})).await;
    let (_, r) = post(turns(&[("user", "I am Ana")]), r["state"].clone()).await;
    assert_eq!(r["messages"][0]["content"], "Nice to meet you, Ana!", "{r}");
    let asked = json!([{"role": "context", "content": {"name": "Eve"}},
                       {"role": "user", "content": "do you remember me?"}]);
    let (_, r) = post(asked.clone(), r["state"].clone()).await;
    assert_eq!(r["messages"][0]["content"], "Your name is Ana.", "{r}");
    // Without a state the context's variable is there.
    let (_, r) = post_chat(&base, &json!({"config_id": "intro", "messages": asked})).await;
    assert_eq!(r["messages"][0]["content"], "Your name is Eve.", "{r}");
}

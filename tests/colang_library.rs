//! NeMo's library actions executed from a config's own flows (NeMo's
//! fact_checking test config: `$accuracy = execute alignscore_check_facts`;
//! `$allowed = execute self_check_input`; dict results), and
//! `self check hallucination` (the main model asked again, then the judge).

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns
mod common;

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use axum::{Router, extract::State, http::StatusCode, routing::post};
use common::*;
use serde_json::{Value, json};

fn asked(text: &str) -> String {
    format!("between the user and the bot:\nuser \"{text}\"")
}

/// An AlignScore server answering the score set in it (`None`: a 404).
#[derive(Clone, Default)]
struct AlignScore {
    score: Arc<Mutex<Option<f64>>>,
    asked: Arc<Mutex<Vec<Value>>>,
}

async fn alignscore() -> (String, AlignScore) {
    let state = AlignScore::default();
    let app = Router::new()
        .route(
            "/alignscore_base",
            post(
                |State(s): State<AlignScore>, axum::Json(b): axum::Json<Value>| async move {
                    s.asked.lock().unwrap().push(b);
                    match *s.score.lock().unwrap() {
                        Some(score) => Ok(axum::Json(json!({"alignscore": score}))),
                        None => Err((StatusCode::NOT_FOUND, "API error 404")),
                    }
                },
            ),
        )
        .with_state(state.clone());
    let l = listener().await;
    let url = format!("http://{}/alignscore_base", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, state)
}

const TRUE_ANSWER: &str = "NeMo Guardrails is an open-source toolkit for easily adding programmable guardrails to LLM-based conversational systems.";
const FALSE_ANSWER: &str = "NeMo Guardrails is a closed-source proprietary toolkit by Nvidia.";

fn fact_checking_script(answer: &str, judge: &str) -> Script {
    Script {
        tokens: tokens(answer),
        judge_answers: vec![
            (asked("hi"), "express greeting".into()),
            (
                asked("What is NeMo Guardrails?"),
                "ask about guardrails".into(),
            ),
            ("\"faithful\":".into(), judge.into()),
        ],
        ..Script::default()
    }
}

/// NeMo's tests/test_configs/fact_checking on the fake model and server.
fn fact_checking(configs: &Configs, llm: &FakeLlm, endpoint: &str) -> PathBuf {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/nemo-configs/tests-test_configs-fact_checking");
    let yml = std::fs::read_to_string(src.join("config.yml"))
        .unwrap()
        .replace(
            "    engine: nim\n    model: meta/llama-3.1-70b-instruct\n",
            &format!(
                "    engine: openai\n    model: gpt-3.5-turbo\n    parameters:\n      base_url: {}\n",
                llm.base_url()
            ),
        )
        .replace("http://localhost:5000/alignscore_base", endpoint);
    // `rails:` is the file's last key: the dialog settings go under it.
    let dir = configs.add(
        "fc",
        &format!("{yml}  dialog:\n    single_call:\n      enabled: False\n"),
    );
    for f in ["config.co", "factcheck.co", "prompts.yml"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    std::fs::create_dir_all(dir.join("kb")).unwrap();
    std::fs::copy(src.join("kb/kb.md"), dir.join("kb/kb.md")).unwrap();
    dir
}

#[tokio::test]
async fn nemos_fact_checking_config_scores_with_alignscore_from_its_own_flow() {
    let (url, server_state) = alignscore().await;
    let llm = fake_llm(fact_checking_script(TRUE_ANSWER, "yes")).await;
    let configs = Configs::new();
    fact_checking(&configs, &llm, &url);
    let mut server = start(configs.root()).await;
    let ask = |server: &mut Server, text: &'static str| {
        let mut client = server.client.clone();
        async move {
            client
                .generate(request("fc", text))
                .await
                .unwrap()
                .into_inner()
        }
    };
    // NeMo's test 1: a greeting checks no facts.
    llm.state
        .set(fact_checking_script("Hi! How can I assist today?", "yes"));
    let r = ask(&mut server, "hi").await;
    assert_eq!(r.message.unwrap().content, "Hi! How can I assist today?");
    assert!(server_state.asked.lock().unwrap().is_empty());
    // Test 2: a high score lets the answer through.
    *server_state.score.lock().unwrap() = Some(0.82);
    llm.state.set(fact_checking_script(TRUE_ANSWER, "yes"));
    let r = ask(&mut server, "What is NeMo Guardrails?").await;
    assert!(r.violation.is_none(), "{:?}", r.violation);
    assert_eq!(r.message.unwrap().content, TRUE_ANSWER);
    let body = server_state.asked.lock().unwrap()[0].clone();
    assert_eq!(body["claim"], TRUE_ANSWER);
    assert!(
        body["evidence"]
            .as_str()
            .unwrap()
            .contains("open-source toolkit"),
        "{body}"
    );
    // Test 3: a very low score: the flow's `bot inform answer unknown` + stop.
    *server_state.score.lock().unwrap() = Some(0.01);
    llm.state.set(fact_checking_script(FALSE_ANSWER, "yes"));
    let r = ask(&mut server, "What is NeMo Guardrails?").await;
    assert_eq!(r.violation.unwrap().rail, "check facts");
    assert_eq!(
        r.message.unwrap().content,
        "I don't know the answer to that."
    );
    // Between the flow's thresholds (0.4 ≤ score < 0.6) the answer goes through.
    *server_state.score.lock().unwrap() = Some(0.5);
    let r = ask(&mut server, "What is NeMo Guardrails?").await;
    assert!(r.violation.is_none());
    // Tests 4 and 5: the server answers 404; `fallback_to_self_check` asks the judge.
    *server_state.score.lock().unwrap() = None;
    llm.state.set(fact_checking_script(TRUE_ANSWER, "yes"));
    let r = ask(&mut server, "What is NeMo Guardrails?").await;
    assert!(r.violation.is_none(), "{:?}", r.violation);
    assert_eq!(r.message.unwrap().content, TRUE_ANSWER);
    llm.state.set(fact_checking_script(FALSE_ANSWER, "no"));
    let r = ask(&mut server, "What is NeMo Guardrails?").await;
    assert_eq!(r.violation.unwrap().rail, "check facts");
    assert_eq!(
        r.message.unwrap().content,
        "I don't know the answer to that."
    );
    server.shutdown().await;
}

/// A config whose own input and output flows call library actions.
const OWN_FLOWS: &str = "define bot refuse\n  \"Not that, sorry.\"\n\n\
    define subflow my input check\n  $allowed = execute self_check_input\n  if not $allowed\n    bot refuse\n    stop\n\n\
    define subflow my output check\n  $result = execute content_safety_check_output\n  if not $result[\"allowed\"]\n    bot refuse\n    stop\n  $masked = execute mask_sensitive_data(source=\"output\", text=$bot_message)\n  $bot_message = $masked\n";

#[tokio::test]
async fn own_flows_execute_library_actions_with_nemos_results() {
    let llm = fake_llm(Script {
        tokens: tokens("Write to ann@example.com for details."),
        block_word: "forbidden".into(),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    let url = llm.base_url();
    let yml = format!(
        "{}  - type: content_safety\n    engine: openai\n    model: judge\n    parameters:\n      base_url: {url}\n\
         instructions:\n  - type: general\n    content: You are a test bot.\n\
         rails:\n  config:\n    sensitive_data_detection:\n      output:\n        entities: [EMAIL_ADDRESS]\n  \
         input:\n    flows: [my input check]\n  output:\n    flows: [my output check $model=content_safety]\n{SELF_CHECK_PROMPTS}  \
         - task: content_safety_check_output $model=content_safety\n    content: \"Is this unsafe? {{{{ bot_response }}}}\"\n",
        main_model(&url)
    );
    let dir = configs.add("own", &yml);
    std::fs::write(dir.join("rails.co"), OWN_FLOWS).unwrap();
    let mut server = start(configs.root()).await;
    // The input flow's `self_check_input` result (`True` = allowed).
    let r = server
        .client
        .generate(request("own", "a forbidden question"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.violation.unwrap().rail, "my input check");
    assert_eq!(r.message.unwrap().content, "Not that, sorry.");
    // The output flow reads `$result["allowed"]`, then masks with the text result.
    let r = server
        .client
        .generate(request("own", "how do I reach you?"))
        .await
        .unwrap()
        .into_inner();
    assert!(r.violation.is_none(), "{:?}", r.violation);
    assert_eq!(
        r.message.unwrap().content,
        "Write to <EMAIL_ADDRESS> for details."
    );
    let judged = llm
        .state
        .requests()
        .iter()
        .filter(|r| r.to_string().contains("Is this unsafe?"))
        .count();
    assert_eq!(judged, 1);
    server.shutdown().await;
}

#[test]
fn library_actions_with_arguments_they_cannot_take_are_refused_at_load() {
    let configs = Configs::new();
    let dir = configs.add(
        "bad",
        &config(
            "http://127.0.0.1:1/v1",
            "rails:\n  output:\n    flows: [my check]\n",
        ),
    );
    std::fs::write(
        dir.join("rails.co"),
        "define subflow my check\n  $x = execute detect_sensitive_data(source=\"kb\", text=$bot_message)\n",
    )
    .unwrap();
    let e = streamguard::Guardrails::load(&dir).unwrap_err().to_string();
    assert!(e.contains("`my check`"), "{e}");
    assert!(e.contains("\"input\", \"output\" or \"retrieval\""), "{e}");
}

const HALLUCINATION: &str = "define user ask report\n  \"What was the unemployment rate?\"\n\n\
    define flow report\n  user ask report\n  $check_hallucination = True\n  bot answer report question\n";

#[tokio::test]
async fn self_check_hallucination_asks_the_main_model_again_and_the_judge() {
    let llm = fake_llm(Script {
        tokens: tokens("The rate was 3.5%."),
        judge_answers: vec![
            // The bot-message prompt, asked again: another answer.
            (
                "bot answer report question".into(),
                "The rate was 7%.".into(),
            ),
            (
                asked("What was the unemployment rate?"),
                "ask report".into(),
            ),
            (asked("hello"), "greet".into()),
            ("\"agreement\":".into(), "no".into()),
        ],
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    let dir = configs.add(
        "h",
        &config(
            &llm.base_url(),
            "rails:\n  output:\n    flows: [self check hallucination]\n  dialog:\n    single_call:\n      enabled: False\n\
             prompts:\n  - task: self_check_hallucination\n    content: '\"context\": {{ paragraph }} \"hypothesis\": {{ statement }} \"agreement\":'\n",
        ),
    );
    std::fs::write(
        dir.join("rails.co"),
        format!("{HALLUCINATION}\ndefine user greet\n  \"hello\"\n\ndefine bot greet\n  \"Hi!\"\n\ndefine flow\n  user greet\n  bot greet\n"),
    )
    .unwrap();
    let mut server = start(configs.root()).await;
    let r = server
        .client
        .generate(request("h", "What was the unemployment rate?"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.violation.unwrap().rail, "self check hallucination");
    assert_eq!(
        r.message.unwrap().content,
        "I don't know the answer to that."
    );
    let requests = llm.state.requests();
    // Two more answers at temperature 1.0, then the judge over them.
    let resampled: Vec<&Value> = requests
        .iter()
        .filter(|r| r["temperature"] == json!(1.0))
        .collect();
    assert_eq!(resampled.len(), 2, "{requests:#?}");
    let judge = requests
        .iter()
        .find(|r| r.to_string().contains("agreement"))
        .unwrap()
        .to_string();
    assert!(
        judge.contains("\\\"context\\\": The rate was 7%.. The rate was 7%. \\\"hypothesis\\\": The rate was 3.5%."),
        "{judge}"
    );
    // Without `$check_hallucination`, no extra calls.
    let before = llm.state.requests().len();
    let r = server
        .client
        .generate(request("h", "hello"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.message.unwrap().content, "Hi!");
    let after = llm.state.requests().len();
    assert!(
        llm.state.requests()[before..after]
            .iter()
            .all(|r| r["temperature"] != json!(1.0))
    );
    server.shutdown().await;
}

/// An actions server (NeMo's wire format) answering NeMo's test mock of
/// `wolfram alpha request`.
async fn wolfram_actions_server() -> (String, Arc<Mutex<Vec<Value>>>) {
    let asked: Arc<Mutex<Vec<Value>>> = Arc::default();
    let app = Router::new()
        .route(
            "/v1/actions/run",
            post(
                |State(a): State<Arc<Mutex<Vec<Value>>>>, axum::Json(b): axum::Json<Value>| async move {
                    a.lock().unwrap().push(b.clone());
                    let result = match b["action_parameters"]["query"].as_str() {
                        Some("What is the largest prime factor for 1024?") => "2",
                        Some("What is the square root of 1024?") => "32",
                        _ => "Result unknown.",
                    };
                    axum::Json(json!({"status": "success", "result": result}))
                },
            ),
        )
        .with_state(asked.clone());
    let l = listener().await;
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, asked)
}

#[tokio::test]
async fn nemos_generate_value_config_asks_the_llm_for_the_variable() {
    let (actions_url, asked_actions) = wolfram_actions_server().await;
    let script = |value: &str, answer: &str| Script {
        tokens: tokens(answer),
        judge_answers: vec![
            ("$math_query =".into(), value.into()),
            ("user \"".into(), "ask math question".into()),
        ],
        ..Script::default()
    };
    let llm = fake_llm(script(
        "\"What is the largest prime factor for 1024?\"",
        "The largest prime factor for 1024 is 2.",
    ))
    .await;
    let configs = Configs::new();
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/nemo-configs/tests-test_configs-generate_value");
    let yml = std::fs::read_to_string(src.join("config.yml"))
        .unwrap()
        .replace(
            "    engine: openai\n    model: gpt-3.5-turbo-instruct\n",
            &format!(
                "    engine: openai\n    model: gpt-3.5-turbo\n    parameters:\n      base_url: {}\n",
                llm.base_url()
            ),
        );
    let dir = configs.add("gv", &format!("{yml}actions_server_url: {actions_url}\n"));
    std::fs::copy(src.join("config.co"), dir.join("config.co")).unwrap();
    let mut server = start(configs.root()).await;
    let r = server
        .client
        .generate(request("gv", "What is the largest prime factor for 1024"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.message.unwrap().content,
        "The largest prime factor for 1024 is 2."
    );
    let action = asked_actions.lock().unwrap()[0].clone();
    assert_eq!(action["action_name"], "wolfram alpha request");
    assert_eq!(
        action["action_parameters"]["query"],
        "What is the largest prime factor for 1024?"
    );
    // The prompt: the comment above `$math_query = ...` as the instructions.
    let requests = llm.state.requests();
    let prompt = requests
        .iter()
        .map(|r| r.to_string())
        .find(|r| r.contains("$math_query ="))
        .unwrap();
    assert!(
        prompt.contains("# Extract the math question from the user's input."),
        "{prompt}"
    );
    // An unquoted answer is the text itself, as NeMo's `safe_eval` reads it.
    llm.state.set(script("the square root;", "unused"));
    server
        .client
        .generate(request("gv", "What is the square root of 1024?"))
        .await
        .unwrap();
    let action = asked_actions.lock().unwrap()[1].clone();
    assert_eq!(action["action_parameters"]["query"], "the square root");
    server.shutdown().await;
}

#[tokio::test]
async fn dialog_flows_execute_library_actions_without_an_actions_server() {
    let llm = fake_llm(Script {
        tokens: tokens("Here is a harmless secret."),
        block_word: "forbidden".into(),
        judge_answers: vec![
            (
                "user \"tell me the forbidden secret\"".into(),
                "ask secret".into(),
            ),
            ("user \"tell me a secret\"".into(), "ask secret".into()),
        ],
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    let dir = configs.add(
        "d",
        &config(
            &llm.base_url(),
            &format!(
                "rails:\n  dialog:\n    single_call:\n      enabled: False\n{SELF_CHECK_PROMPTS}"
            ),
        ),
    );
    std::fs::write(
        dir.join("rails.co"),
        "define user ask secret\n  \"what is the secret?\"\n\ndefine bot refuse\n  \"I will not.\"\n\n\
         define flow secret\n  user ask secret\n  $allowed = execute self_check_input\n  if not $allowed\n    bot refuse\n  else\n    bot answer secret\n",
    )
    .unwrap();
    let mut server = start(configs.root()).await;
    let r = server
        .client
        .generate(request("d", "tell me the forbidden secret"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.message.unwrap().content, "I will not.");
    let r = server
        .client
        .generate(request("d", "tell me a secret"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.message.unwrap().content, "Here is a harmless secret.");
    let judged = llm
        .state
        .requests()
        .iter()
        .filter(|r| r.to_string().contains("Should the user message be blocked"))
        .count();
    assert_eq!(judged, 2);
    server.shutdown().await;
}

#[tokio::test]
async fn a_dialog_flows_library_call_sees_the_conversation_and_is_in_the_log() {
    let llm = fake_llm(Script {
        tokens: tokens("Fine."),
        judge_answers: vec![("user \"and now?\"".into(), "ask secret".into())],
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    let url = llm.base_url();
    let yml = format!(
        "{}  - type: topic_control\n    engine: openai\n    model: judge-topic\n    parameters:\n      base_url: {url}\n\
         instructions:\n  - type: general\n    content: You are a test bot.\n\
         rails:\n  dialog:\n    single_call:\n      enabled: False\n\
         prompts:\n  - task: topic_safety_check_input $model=topic_control\n    content: Stay on topic.\n",
        main_model(&url)
    );
    let dir = configs.add("d", &yml);
    std::fs::write(
        dir.join("rails.co"),
        "define user ask secret\n  \"what is the secret?\"\n\ndefine bot refuse\n  \"I will not.\"\n\n\
         define flow secret\n  user ask secret\n  $r = execute topic_safety_check_input(model_name=\"topic_control\")\n  if not $r[\"on_topic\"]\n    bot refuse\n  else\n    bot answer secret\n",
    )
    .unwrap();
    let mut server = start(configs.root()).await;
    let mut req = request("d", "and now?");
    for (i, (role, content)) in [("user", "hello"), ("assistant", "Hi.")].iter().enumerate() {
        let m = streamguard::pb::Message {
            role: (*role).into(),
            content: (*content).into(),
            ..Default::default()
        };
        req.messages.insert(i, m);
    }
    req.options = Some(streamguard::pb::GenerationOptions {
        log: true,
        ..Default::default()
    });
    let r = server.client.generate(req).await.unwrap().into_inner();
    let log = r.log.expect("log requested");
    let judge = log
        .llm_calls
        .iter()
        .find(|c| c.task.starts_with("topic_safety_check_input"))
        .expect("the dialog flow's judge call is in the log");
    assert!(judge.prompt.contains("Stay on topic."), "{}", judge.prompt);
    // The topic-control judge gets the conversation before the message.
    let asked = llm
        .state
        .requests()
        .into_iter()
        .find(|r| r["model"] == "judge-topic")
        .unwrap();
    let turns: Vec<&str> = asked["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap_or_default())
        .skip(1)
        .collect();
    assert_eq!(turns, ["hello", "Hi.", "and now?"]);
    assert!(r.message.is_some());
    server.shutdown().await;
}

#[test]
fn a_dialog_flows_output_check_without_the_text_is_refused_at_load() {
    let configs = Configs::new();
    let dir = configs.add("bad", &config("http://127.0.0.1:1/v1", SELF_CHECK_PROMPTS));
    std::fs::write(
        dir.join("rails.co"),
        "define user ask\n  \"what?\"\n\ndefine flow answer\n  user ask\n  bot answer\n  $ok = execute self_check_output\n",
    )
    .unwrap();
    let e = streamguard::Guardrails::load(&dir).unwrap_err().to_string();
    assert!(e.contains("rails.co") && e.contains("line 7"), "{e}");
    assert!(e.contains("`execute self_check_output`"), "{e}");
    assert!(e.contains("rails.output.flows"), "{e}");
    // With the text it runs on, it loads.
    std::fs::write(
        dir.join("rails.co"),
        "define user ask\n  \"what?\"\n\ndefine flow answer\n  user ask\n  $ok = execute self_check_output(text=\"a draft\")\n  bot answer\n",
    )
    .unwrap();
    streamguard::Guardrails::load(&dir).unwrap();
}

#[tokio::test]
async fn model_name_picks_the_content_safety_model_the_flow_calls() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    let url = llm.base_url();
    let yml = format!(
        "{}  - type: guard_a\n    engine: openai\n    model: judge-a\n    parameters:\n      base_url: {url}\n\
         \x20 - type: guard_b\n    engine: openai\n    model: judge-b\n    parameters:\n      base_url: {url}\n\
         rails:\n  input:\n    flows: [my check $model=guard_a]\n\
         prompts:\n  - task: content_safety_check_input $model=guard_a\n    content: \"A: {{{{ user_input }}}}\"\n\
         \x20 - task: content_safety_check_input $model=guard_b\n    content: \"B: {{{{ user_input }}}}\"\n",
        main_model(&url)
    );
    let dir = configs.add("two", &yml);
    std::fs::write(
        dir.join("rails.co"),
        "define subflow my check\n  $a = execute content_safety_check_input\n  $b = execute content_safety_check_input(model_name=\"guard_b\")\n  if not $a[\"allowed\"] or not $b[\"allowed\"]\n    stop\n",
    )
    .unwrap();
    let mut server = start(configs.root()).await;
    let r = server
        .client
        .generate(request("two", "hello"))
        .await
        .unwrap()
        .into_inner();
    assert!(r.violation.is_none(), "{:?}", r.violation);
    let judged: Vec<(String, String)> = llm
        .state
        .requests()
        .iter()
        .filter(|r| r["model"] != "fake-model")
        .map(|r| {
            let prompt = r["messages"].to_string();
            let tag = if prompt.contains("A: hello") {
                "A"
            } else {
                "B"
            };
            (
                r["model"].as_str().unwrap_or_default().to_string(),
                tag.to_string(),
            )
        })
        .collect();
    assert_eq!(
        judged,
        [
            ("judge-a".into(), "A".into()),
            ("judge-b".into(), "B".into())
        ]
    );
    server.shutdown().await;
}

#[test]
fn a_config_may_override_a_library_output_rail_beside_its_dialog() {
    // NeMo's documented override: `define flow self check output` executing
    // `self_check_output` with no `text=` is an output rail, not a dialog flow.
    let configs = Configs::new();
    let dir = configs.add(
        "own",
        &config(
            "http://127.0.0.1:1/v1",
            &format!("rails:\n  output:\n    flows: [self check output]\n{SELF_CHECK_PROMPTS}"),
        ),
    );
    std::fs::write(
        dir.join("rails.co"),
        "define user ask\n  \"what?\"\n\ndefine flow answer\n  user ask\n  bot answer\n\n\
         define bot refuse\n  \"No.\"\n\ndefine flow self check output\n  $allowed = execute self_check_output\n  if not $allowed\n    bot refuse\n    stop\n",
    )
    .unwrap();
    streamguard::Guardrails::load(&dir).unwrap();
    // A model a flow knows only when it runs is refused at load, with the line.
    std::fs::write(
        dir.join("rails.co"),
        "define user ask\n  \"what?\"\n\ndefine flow answer\n  user ask\n  $m = \"x\"\n  $r = execute content_safety_check_input(model_name=$m)\n  bot answer\n",
    )
    .unwrap();
    let e = streamguard::Guardrails::load(&dir).unwrap_err().to_string();
    assert!(e.contains("line 7") && e.contains("model_name="), "{e}");
}

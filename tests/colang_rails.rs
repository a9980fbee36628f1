//! A config's own Colang 1.0 flows as rails: variables, conditions,
//! `execute` of custom actions on NeMo's actions server (a fake speaking its
//! wire format, and the real `nemoguardrails actions-server` when CI starts
//! one: STREAMGUARD_TEST_ACTIONS_SERVER), NeMo's `guardrails_only` example,
//! exceptions, rewrites, and output flows on stream windows.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns
mod common;

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use axum::{Router, extract::State, routing::post};
use common::*;
use serde_json::{Value, json};

fn data(dir: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(dir)
}

/// What the fake actions server was asked: the request bodies.
type Asked = Arc<Mutex<Vec<Value>>>;

/// NeMo's actions server, as `actions_server.py` answers: the actions of
/// tests/colang-configs/custom_action/actions.py, `failed` for an unknown
/// action or an argument the function does not take, string results.
async fn fake_actions_server() -> (String, Asked) {
    let asked: Asked = Arc::default();
    let app = Router::new()
        .route(
            "/v1/actions/run",
            post(
                |State(a): State<Asked>, axum::Json(b): axum::Json<Value>| async move {
                    a.lock().unwrap().push(b.clone());
                    let p = &b["action_parameters"];
                    let keys: Vec<&str> =
                        p.as_object().unwrap().keys().map(String::as_str).collect();
                    let result = match (b["action_name"].as_str().unwrap(), keys.as_slice()) {
                        ("check_blocked_terms", ["context"] | []) => {
                            let m = p["context"]["user_message"].as_str().unwrap_or_default();
                            Some(
                                if m.to_lowercase().contains("proprietary") {
                                    "blocked"
                                } else {
                                    "ok"
                                }
                                .to_string(),
                            )
                        }
                        ("check_service_status", []) => Some("online".to_string()),
                        ("word_count", ["text"]) => Some(
                            p["text"]
                                .as_str()
                                .unwrap()
                                .split_whitespace()
                                .count()
                                .to_string(),
                        ),
                        _ => None,
                    };
                    axum::Json(match result {
                        Some(r) => json!({"status": "success", "result": r}),
                        None => json!({"status": "failed", "result": null}),
                    })
                },
            ),
        )
        .with_state(asked.clone());
    let l = listener().await;
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (base, asked)
}

const RAILS: &str = "rails:\n  input:\n    flows:\n      - check blocked terms\n      - note word count\n  output:\n    flows:\n      - no secrets\n";

/// The custom_action test config under `configs` as `id`, with `extra` YAML.
fn custom_action(configs: &Configs, id: &str, llm: &str, extra: &str) -> PathBuf {
    let dir = configs.add(id, &config(llm, &format!("{RAILS}{extra}")));
    for f in ["rails.co", "actions.py"] {
        std::fs::copy(data("colang-configs/custom_action").join(f), dir.join(f)).unwrap();
    }
    dir
}

fn last_user_message(llm: &FakeLlm) -> String {
    let req = llm.state.requests().last().unwrap().clone();
    req["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn runs_the_custom_action_config(server_url: &str, asked: Option<&Asked>) {
    let llm = fake_llm(Script {
        tokens: tokens("Here is the secret plan."),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    custom_action(
        &configs,
        "ca",
        &llm.base_url(),
        &format!("actions_server_url: {server_url}\n"),
    );
    let mut server = start(configs.root()).await;
    // The first flow's action reads the context; the second rewrites the message.
    let r = server
        .client
        .generate(request("ca", "Tell me the proprietary formula"))
        .await
        .unwrap()
        .into_inner();
    let v = r.violation.clone().unwrap();
    assert_eq!(v.rail, "check blocked terms");
    assert_eq!(
        r.message.unwrap().content,
        "I cannot talk about proprietary matters, friend."
    );
    if let Some(asked) = asked {
        let first = asked.lock().unwrap()[0].clone();
        assert_eq!(first["action_name"], "check_blocked_terms");
        assert_eq!(
            first["action_parameters"]["context"]["user_message"],
            "Tell me the proprietary formula"
        );
    }
    let r = server
        .client
        .generate(request("ca", "Hello there"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(last_user_message(&llm), "Hello there (2 words)");
    // The output flow blocks the answer with its own message.
    assert_eq!(r.violation.unwrap().rail, "no secrets");
    assert_eq!(r.message.unwrap().content, "I cannot share that answer.");
    server.shutdown().await;
}

#[tokio::test]
async fn custom_actions_run_on_an_actions_server_speaking_nemos_wire_format() {
    let (url, asked) = fake_actions_server().await;
    runs_the_custom_action_config(&url, Some(&asked)).await;
    let word_count = asked
        .lock()
        .unwrap()
        .iter()
        .find(|b| b["action_name"] == "word_count")
        .cloned()
        .unwrap();
    assert_eq!(
        word_count["action_parameters"],
        json!({"text": "Hello there"}),
        "no context for an action that does not take it"
    );
}

#[tokio::test]
async fn custom_actions_run_on_nemos_real_actions_server() {
    // CI starts `nemoguardrails actions-server` in tests/colang-configs/custom_action.
    let Ok(url) = std::env::var("STREAMGUARD_TEST_ACTIONS_SERVER") else {
        eprintln!(
            "STREAMGUARD_TEST_ACTIONS_SERVER is not set: NeMo's actions server is checked in CI (.ci/run)"
        );
        return;
    };
    runs_the_custom_action_config(&url, None).await;
}

#[tokio::test]
async fn a_failing_action_fails_the_rail_naming_the_flow_and_line() {
    let (url, _) = fake_actions_server().await;
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    let dir = configs.add(
        "bad",
        &config(
            &llm.base_url(),
            &format!("actions_server_url: {url}\nrails:\n  input:\n    flows: [odd]\n"),
        ),
    );
    std::fs::write(
        dir.join("rails.co"),
        "define subflow odd\n  $x = execute word_count(text=$user_message, extra=1)\n",
    )
    .unwrap();
    let mut server = start(configs.root()).await;
    let e = server
        .client
        .generate(request("bad", "Hi"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable);
    assert!(
        e.message()
            .contains("odd: line 2: `execute word_count`: the action failed"),
        "{}",
        e.message()
    );
    server.shutdown().await;
}

#[test]
fn custom_actions_without_an_actions_server_are_refused_saying_how_to_run_one() {
    let configs = Configs::new();
    let dir = custom_action(&configs, "ca", "http://127.0.0.1:9", "");
    let e = streamguard::Guardrails::load(&dir).unwrap_err().to_string();
    assert!(
        e.contains("actions.py") && e.contains("nemoguardrails actions-server"),
        "{e}"
    );
    assert!(e.contains("actions_server_url"), "{e}");
    // Without actions.py, a flow's `execute` names the same fix.
    std::fs::remove_file(dir.join("actions.py")).unwrap();
    let e = streamguard::Guardrails::load(&dir).unwrap_err().to_string();
    assert!(
        e.contains("`execute check_blocked_terms` runs a custom action"),
        "{e}"
    );
}

fn guardrails_only(configs: &Configs, id: &str, llm: &str, extra: &str) {
    let src = data("nemo-configs/examples-configs-guardrails_only-input");
    let yml = std::fs::read_to_string(src.join("config.yml")).unwrap();
    let dir = configs.add(id, &format!("{}{yml}{extra}", main_model(llm)));
    std::fs::copy(src.join("config.co"), dir.join("config.co")).unwrap();
}

#[tokio::test]
async fn nemos_guardrails_only_example_answers_allow_or_deny() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    guardrails_only(&configs, "g", &llm.base_url(), "");
    guardrails_only(
        &configs,
        "gx",
        &llm.base_url(),
        "enable_rails_exceptions: True\n",
    );
    let mut server = start(configs.root()).await;
    let r = server
        .client
        .generate(request("g", "a dummy question"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.violation.clone().unwrap().rail, "dummy input rail");
    assert_eq!(r.message.unwrap().content, "DENY");
    let r = server
        .client
        .generate(request("g", "a real question"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.violation.clone().unwrap().rail, "allow input");
    assert_eq!(r.message.unwrap().content, "ALLOW");
    // With rails exceptions the flow's event is the reason and nothing is said.
    let r = server
        .client
        .generate(request("gx", "a dummy question"))
        .await
        .unwrap()
        .into_inner();
    let v = r.violation.unwrap();
    assert_eq!(
        v.reason,
        "Dummy input detected. The user's message contains the word 'dummy'."
    );
    assert_eq!(r.message.unwrap().content, "");
    assert!(
        llm.state.requests().is_empty(),
        "input rails answered; no LLM call"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn an_output_flow_checks_each_stream_window() {
    let llm = fake_llm(Script {
        tokens: tokens("Sure, here is some harmless text first, and then the secret plan follows."),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    let dir = configs.add(
        "s",
        &config(
            &llm.base_url(),
            "rails:\n  output:\n    flows: [no secrets]\n    streaming:\n      enabled: True\n      chunk_size: 4\n      context_size: 0\n      stream_first: False\nstreaming: True\n",
        ),
    );
    std::fs::copy(
        data("colang-configs/custom_action/rails.co"),
        dir.join("rails.co"),
    )
    .unwrap();
    let mut server = start(configs.root()).await;
    let got = collect(&mut server.client, request("s", "Write"))
        .await
        .unwrap();
    let sent = got.chunks.concat();
    assert!(
        sent.starts_with("Sure, here is some") && !sent.contains("secret"),
        "{sent:?}"
    );
    let fin = &got.finals[0];
    assert_eq!(fin.violation.clone().unwrap().rail, "no secrets");
    server.shutdown().await;
}

/// The current-turn part of the intent prompt for `text`.
fn asked(text: &str) -> String {
    format!("between the user and the bot:\nuser \"{text}\"")
}

const GREETING: &str = "define user greet\n  \"hi\"\n  \"hello\"\n\ndefine bot greet by name\n  \"Hello $name, you said: $user_message\"\n\n\
    define flow greeting\n  user greet\n  $name = \"Ana\"\n  if \"hi\" in $user_message\n    bot greet by name\n  else\n    $check_facts = True\n    bot answer with the report\n";

#[tokio::test]
async fn a_dialog_flow_with_variables_and_conditions_answers_the_turn() {
    let llm = fake_llm(Script {
        tokens: tokens("Payrolls rose by 336,000."),
        judge_answers: vec![
            (asked("hi there"), "greet".into()),
            (asked("hello, what was the jobs number?"), "greet".into()),
        ],
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    let dir = configs.add(
        "d",
        &config(
            &llm.base_url(),
            "rails:\n  dialog:\n    single_call:\n      enabled: False\nstreaming: True\n",
        ),
    );
    std::fs::write(dir.join("rails.co"), GREETING).unwrap();
    std::fs::create_dir_all(dir.join("kb")).unwrap();
    std::fs::write(
        dir.join("kb/report.md"),
        "# Employment report\n\n## Payrolls\n\nTotal nonfarm payroll employment rose by 336,000 in September.\n\n## Weather\n\nIt was sunny.\n",
    )
    .unwrap();
    let mut server = start(configs.root()).await;
    // The `if` arm: a predefined message, with the flow's variables in it.
    let got = collect(&mut server.client, request("d", "hi there"))
        .await
        .unwrap();
    assert_eq!(got.chunks.concat(), "Hello Ana, you said: hi there");
    assert_eq!(
        got.finals[0].dialog.clone().unwrap().bot_intent,
        "greet by name"
    );
    // The `else` arm: an intent without a message is generated, with the
    // knowledge base's most relevant chunks in the prompt.
    let got = collect(
        &mut server.client,
        request("d", "hello, what was the jobs number?"),
    )
    .await
    .unwrap();
    assert_eq!(got.chunks.concat(), "Payrolls rose by 336,000.");
    let prompt = llm.state.requests().last().unwrap()["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(prompt.contains("bot answer with the report"), "{prompt}");
    let context = prompt
        .split("# This is some additional context:\n```markdown\n")
        .nth(1)
        .unwrap_or_default();
    assert!(
        context.contains("Total nonfarm payroll employment rose by 336,000 in September."),
        "{prompt}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_knowledge_base_without_a_dialog_gives_the_main_model_the_relevant_chunks() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    let dir = configs.add("kb", &config(&llm.base_url(), ""));
    std::fs::create_dir_all(dir.join("kb")).unwrap();
    std::fs::write(
        dir.join("kb/a.md"),
        "# Leave\n\nEmployees get 20 vacation days.\n\n# Parking\n\nParking is free.\n",
    )
    .unwrap();
    let mut server = start(configs.root()).await;
    server
        .client
        .generate(request("kb", "How many vacation days do I get?"))
        .await
        .unwrap();
    let req = llm.state.requests().last().unwrap().clone();
    let system = req["messages"][0]["content"].as_str().unwrap();
    assert!(system.starts_with("You are a test bot."), "{system}");
    assert!(system.contains("This is some relevant context:\n```markdown\nEmployees get 20 vacation days.\nParking is free.\n```"), "{system}");
    server.shutdown().await;
}

#[test]
fn flows_that_cannot_run_are_refused_with_the_reason() {
    let configs = Configs::new();
    let dir = configs.add("d", &config("http://127.0.0.1:9", ""));
    std::fs::write(dir.join("rails.co"), "define user greet\n  \"hi\"\n\ndefine flow\n  user greet\n  $x = execute lookup\n  bot hello\n").unwrap();
    let e = streamguard::Guardrails::load(&dir).unwrap_err().to_string();
    assert!(
        e.contains("rails.co: `line 4`: `execute lookup` runs a custom action"),
        "{e}"
    );
    // config.py runs in NeMo's process: refused saying what to do instead; a
    // demo script beside the config is not an action file, as in NeMo.
    let dir = configs.add("py", &config("http://127.0.0.1:9", ""));
    std::fs::write(dir.join("demo.py"), "print('hi')\n").unwrap();
    streamguard::Guardrails::load(&dir).unwrap();
    std::fs::write(dir.join("config.py"), "def init(app):\n    pass\n").unwrap();
    let e = streamguard::Guardrails::load(&dir).unwrap_err().to_string();
    assert!(
        e.contains("config.py") && e.contains("OpenAI-compatible endpoint"),
        "{e}"
    );
    // An old NeMo flow name runs as the flow it is now, with a warning
    // (`check facts` is AlignScore's with the old `provider: align_score`).
    let old = |extra: &str| {
        let dir = configs.add(
            "old",
            &config(
                "http://127.0.0.1:9",
                &format!("rails:\n{extra}  output:\n    flows: [check facts]\n{SELF_CHECK_PROMPTS}  - task: self_check_facts\n    content: \"{{{{ evidence }}}} {{{{ response }}}}\"\n"),
            ),
        );
        let g = streamguard::Guardrails::load(&dir).unwrap();
        g.warnings().join("\n")
    };
    let w = old("");
    assert!(w.contains("`rails.output.flows[0]`: `check facts` is what older NeMo releases called `self check facts`"), "{w}");
    let w = old("  config:\n    fact_checking:\n      provider: align_score\n");
    assert!(w.contains("called `alignscore check facts`"), "{w}");
    // A rail flow's error names the flow and the problem.
    let dir = configs.add(
        "r",
        &config("http://127.0.0.1:9", "rails:\n  input:\n    flows: [r]\n"),
    );
    std::fs::write(
        dir.join("rails.co"),
        "define subflow r\n  bot nothing defined\n  stop\n",
    )
    .unwrap();
    let e = streamguard::Guardrails::load(&dir).unwrap_err().to_string();
    assert!(
        e.contains("`bot nothing defined` has no `define bot nothing defined` message"),
        "{e}"
    );
}

#[tokio::test]
async fn nemos_abc_bot_answers_from_its_employee_handbook() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    let src = data("nemo-configs/examples-bots-abc");
    let dir = configs.root().join("abc");
    for entry in walk(&src) {
        let to = dir.join(entry.strip_prefix(&src).unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        let text = std::fs::read_to_string(&entry).unwrap();
        let text = text.replacen(
            "    engine: openai\n",
            &format!(
                "    engine: openai\n    parameters:\n      base_url: {}\n",
                llm.base_url()
            ),
            1,
        );
        std::fs::write(to, text).unwrap();
    }
    let mut server = start(configs.root()).await;
    server
        .client
        .generate(request(
            "abc",
            "What happens to my unused vacation when I leave?",
        ))
        .await
        .unwrap();
    let prompts: Vec<String> = llm.state.requests().iter().map(|r| r.to_string()).collect();
    let with_context = prompts
        .iter()
        .find(|p| p.contains("This is some additional context"))
        .unwrap_or_else(|| panic!("no prompt had the handbook's chunks: {prompts:#?}"));
    assert!(
        with_context.contains("Unused vacation and sick leave will be paid out upon termination."),
        "{with_context}"
    );
    server.shutdown().await;
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn self_check_facts_runs_when_the_dialog_asks_for_it_against_the_chunks() {
    let llm = fake_llm(Script {
        tokens: tokens("The earth is flat."),
        judge_answers: vec![
            (asked("Is the earth round?"), "ask science".into()),
            (asked("hello"), "greet".into()),
            ("Response: The earth is flat".into(), "no".into()),
            ("Supported?".into(), "yes".into()),
        ],
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    let dir = configs.add(
        "f",
        &config(
            &llm.base_url(),
            "rails:\n  output:\n    flows: [self check facts]\n  dialog:\n    single_call:\n      enabled: False\nprompts:\n  - task: self_check_facts\n    content: \"Evidence: {{ evidence }}\\nResponse: {{ response }}\\nSupported?\"\n",
        ),
    );
    std::fs::write(
        dir.join("rails.co"),
        "define user ask science\n  \"Is the sky blue?\"\n\ndefine user greet\n  \"hello\"\n\ndefine bot greet\n  \"Hi!\"\n\n\
         define flow science\n  user ask science\n  $check_facts = True\n  bot answer science question\n\n\
         define flow\n  user greet\n  bot greet\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("kb")).unwrap();
    std::fs::write(
        dir.join("kb/earth.md"),
        "# Earth\n\nThe earth is an oblate spheroid, round to the eye from space.\n",
    )
    .unwrap();
    let mut server = start(configs.root()).await;
    let judged = |llm: &FakeLlm| {
        llm.state
            .requests()
            .iter()
            .filter(|r| r.to_string().contains("Supported?"))
            .count()
    };
    let r = server
        .client
        .generate(request("f", "Is the earth round?"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.violation.unwrap().rail, "self check facts");
    assert_eq!(judged(&llm), 1);
    let judge = llm
        .state
        .requests()
        .iter()
        .find(|r| r.to_string().contains("Supported?"))
        .unwrap()
        .to_string();
    assert!(
        judge.contains("Evidence: The earth is an oblate spheroid"),
        "{judge}"
    );
    // Without `$check_facts` the rail does not call its judge.
    let r = server
        .client
        .generate(request("f", "hello"))
        .await
        .unwrap()
        .into_inner();
    assert!(r.violation.is_none());
    assert_eq!(r.message.unwrap().content, "Hi!");
    assert_eq!(judged(&llm), 1);
    server.shutdown().await;
}

const SCIENCE: &str = "define user ask science\n  \"Is the sky blue?\"\n\ndefine user greet\n  \"hello\"\n\ndefine bot greet\n  \"Hi!\"\n\n\
    define flow science\n  user ask science\n  $check_facts = True\n  bot answer science question\n\n\
    define flow\n  user greet\n  bot greet\n";

fn science_config(configs: &Configs, id: &str, llm: &str, rails: &str) {
    let dir = configs.add(id, &config(llm, rails));
    std::fs::write(dir.join("rails.co"), SCIENCE).unwrap();
    std::fs::create_dir_all(dir.join("kb")).unwrap();
    std::fs::write(
        dir.join("kb/earth.md"),
        "# Earth\n\nThe earth is an oblate spheroid, round to the eye from space.\n",
    )
    .unwrap();
}

#[tokio::test]
async fn alignscore_checks_facts_with_its_server_or_falls_back_to_the_judge() {
    let llm = fake_llm(Script {
        tokens: tokens("The earth is flat."),
        judge_answers: vec![
            (asked("Is the earth round?"), "ask science".into()),
            (asked("hello"), "greet".into()),
            ("Supported?".into(), "no".into()),
        ],
        ..Script::default()
    })
    .await;
    // An AlignScore server: `{"evidence", "claim"}` → `{"alignscore"}`.
    let asked_server: Asked = Arc::default();
    let app = Router::new()
        .route(
            "/alignscore_base",
            post(
                |State(a): State<Asked>, axum::Json(b): axum::Json<Value>| async move {
                    a.lock().unwrap().push(b.clone());
                    let flat = b["claim"].as_str().unwrap_or_default().contains("flat");
                    axum::Json(json!({"alignscore": if flat { 0.1 } else { 0.9 }}))
                },
            ),
        )
        .with_state(asked_server.clone());
    let l = listener().await;
    let url = format!("http://{}/alignscore_base", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let configs = Configs::new();
    let multi = "  dialog:\n    single_call:\n      enabled: False\n";
    let fc = |endpoint: &str, extra: &str| {
        format!(
            "rails:\n  config:\n    fact_checking:\n      parameters:\n        endpoint: {endpoint}\n{extra}  output:\n    flows: [alignscore check facts]\n{multi}prompts:\n  - task: self_check_facts\n    content: \"Evidence: {{{{ evidence }}}}\\nResponse: {{{{ response }}}}\\nSupported?\"\n"
        )
    };
    science_config(&configs, "as", &llm.base_url(), &fc(&url, ""));
    science_config(
        &configs,
        "fallback",
        &llm.base_url(),
        &fc(
            "http://127.0.0.1:9/a",
            "      fallback_to_self_check: True\n",
        ),
    );
    science_config(
        &configs,
        "down",
        &llm.base_url(),
        &fc("http://127.0.0.1:9/a", ""),
    );
    let mut server = start(configs.root()).await;
    let r = server
        .client
        .generate(request("as", "Is the earth round?"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.violation.clone().unwrap().rail, "alignscore check facts");
    assert_eq!(
        r.message.unwrap().content,
        "I don't know the answer to that."
    );
    let body = asked_server.lock().unwrap()[0].clone();
    assert_eq!(body["claim"], "The earth is flat.");
    assert!(
        body["evidence"]
            .as_str()
            .unwrap()
            .contains("oblate spheroid"),
        "{body}"
    );
    // Without `$check_facts`, no call.
    server
        .client
        .generate(request("as", "hello"))
        .await
        .unwrap();
    assert_eq!(asked_server.lock().unwrap().len(), 1);
    // The server down: the judge decides with the fallback, else the rail fails.
    let r = server
        .client
        .generate(request("fallback", "Is the earth round?"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.violation.unwrap().rail, "alignscore check facts");
    let e = server
        .client
        .generate(request("down", "Is the earth round?"))
        .await
        .unwrap_err();
    assert!(
        e.message()
            .contains("alignscore check facts (AlignScore): the service cannot be reached"),
        "{}",
        e.message()
    );
    server.shutdown().await;
}

async fn runs_nemos_custom_action_config(server_url: &str) {
    let llm = fake_llm(Script {
        tokens: tokens("The service is online."),
        judge_answers: vec![(asked("is the service up?"), "ask service status".into())],
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    let src = data("nemo-configs/derived-tests-test_configs-with_custom_action");
    let yml = std::fs::read_to_string(src.join("config.yml"))
        .unwrap()
        .replacen(
            "    engine: openai\n",
            &format!(
                "    engine: openai\n    parameters:\n      base_url: {}\n",
                llm.base_url()
            ),
            1,
        );
    // The fake's chat API tells dialog calls from the main call.
    let yml = yml.replace("gpt-3.5-turbo-instruct", "gpt-3.5-turbo");
    let yml = format!(
        "{yml}actions_server_url: {server_url}\ninstructions:\n  - type: general\n    content: You are a test bot.\n"
    );
    let dir = configs.add("wca", &yml);
    for f in ["config.co", "actions.py"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let mut server = start(configs.root()).await;
    let r = server
        .client
        .generate(request("wca", "is the service up?"))
        .await
        .unwrap()
        .into_inner();
    assert!(r.violation.is_none());
    assert_eq!(r.message.unwrap().content, "The service is online.");
    assert_eq!(r.dialog.unwrap().bot_intent, "inform service status");
    server.shutdown().await;
}

#[tokio::test]
async fn nemos_with_custom_action_config_executes_its_action() {
    let (url, asked) = fake_actions_server().await;
    runs_nemos_custom_action_config(&url).await;
    assert!(
        asked
            .lock()
            .unwrap()
            .iter()
            .any(|b| b["action_name"] == "check_service_status")
    );
    if let Ok(real) = std::env::var("STREAMGUARD_TEST_ACTIONS_SERVER") {
        runs_nemos_custom_action_config(&real).await;
    }
}

#[tokio::test]
async fn the_knowledge_base_key_names_its_own_embeddings_model() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    let kb = format!(
        "knowledge_base:\n  embedding_search_provider:\n    name: default\n    parameters:\n      embedding_engine: openai\n      embedding_model: text-embedding-3-small\n      base_url: {}\n",
        llm.base_url()
    );
    let dir = configs.add("kb", &config(&llm.base_url(), &kb));
    std::fs::create_dir_all(dir.join("kb")).unwrap();
    std::fs::write(dir.join("kb/a.md"), "# Help\n\nWe can help with your account.\n\n# Politics\n\nNo party, government or vote advice.\n").unwrap();
    let mut server = start(configs.root()).await;
    server
        .client
        .generate(request("kb", "Which party gets my vote?"))
        .await
        .unwrap();
    let requests = llm.state.requests();
    let embedded: Vec<String> = requests
        .iter()
        .filter_map(|r| r.get("embeddings"))
        .map(|v| v.to_string())
        .collect();
    assert!(
        embedded.iter().any(|e| e.contains("# Politics")),
        "the chunks were embedded: {embedded:?}"
    );
    assert!(
        embedded
            .iter()
            .any(|e| e.contains("Which party gets my vote?")),
        "{embedded:?}"
    );
    let main = requests
        .iter()
        .rev()
        .find(|r| r.get("messages").is_some())
        .unwrap();
    let system = main["messages"][0]["content"].as_str().unwrap();
    let context = system.split("```markdown\n").nth(1).unwrap();
    assert!(
        context.starts_with("No party, government or vote advice."),
        "the closest chunk first: {system}"
    );
    server.shutdown().await;
    let dir = configs.add(
        "simple",
        &config(
            &llm.base_url(),
            "knowledge_base:\n  embedding_search_provider:\n    name: simple\n",
        ),
    );
    let e = streamguard::Guardrails::load(&dir).unwrap_err().to_string();
    assert!(
        e.contains("`simple` is an embedding search provider registered in Python"),
        "{e}"
    );
}

#[tokio::test]
async fn nemos_sample_config_rewrites_the_message_and_the_answer_with_its_own_rails() {
    let llm = fake_llm(Script {
        judge_answers: vec![
            (asked("what can you do?"), "ask capabilities".into()),
            (asked("hello there  hello"), "ask capabilities".into()),
        ],
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    let src = data("nemo-configs/examples-configs-sample");
    let dir = configs.root().join("sample");
    std::fs::create_dir_all(&dir).unwrap();
    let yml = std::fs::read_to_string(src.join("config.yml")).unwrap();
    let yml = yml.replacen(
        "    engine: openai\n",
        &format!(
            "    engine: openai\n    parameters:\n      base_url: {}\n",
            llm.base_url()
        ),
        1,
    );
    std::fs::write(dir.join("config.yml"), yml).unwrap();
    std::fs::copy(src.join("config.co"), dir.join("config.co")).unwrap();
    let mut server = start(configs.root()).await;
    // `dummy output rail` appends "!!" to the flow's predefined message.
    let r = server
        .client
        .generate(request("sample", "what can you do?"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.message.unwrap().content,
        "I am an AI assistant and I'm here to help.!!"
    );
    // `dummy input rail` rewrites a message with "hello" before the intent prompt.
    let r = server
        .client
        .generate(request("sample", "hello there"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.dialog.unwrap().user_intent, "ask capabilities");
    server.shutdown().await;
}

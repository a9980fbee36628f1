//! Today's NeMo configs over real sockets: rails-only configs and the main
//! model a request names, composed configs (`config_ids`, NeMo's `atomic`
//! server example), streaming without `streaming: True`, and
//! text-completion models on `/v1/completions`.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns
mod common;

use std::path::PathBuf;

use common::*;
use serde_json::{Value, json};
use streamguard::{config, pb, server::ServerSettings};

fn nemo(dir: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/nemo-configs")
        .join(dir)
}

/// Copies NeMo's `atomic` server configs into `configs`, pointing the main
/// model's endpoint at `base_url`; each gets the test general instruction
/// in a file of its own (the fake LLM knows main calls by it).
fn atomic(configs: &Configs, base_url: &str) {
    for id in ["main", "input_checking", "output_checking"] {
        let from = nemo(&format!("examples-server_configs-atomic-{id}")).join("config.yml");
        let yml = std::fs::read_to_string(from).unwrap().replacen(
            "    engine: openai\n",
            &format!("    engine: openai\n    parameters:\n      base_url: {base_url}\n"),
            1,
        );
        let dir = configs.root().join(id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.yml"), yml).unwrap();
        std::fs::write(
            dir.join("instructions.yml"),
            "instructions:\n  - type: general\n    content: You are a test bot.\n",
        )
        .unwrap();
    }
}

fn ids_request(ids: &[&str], text: &str) -> pb::GenerateRequest {
    pb::GenerateRequest {
        config_ids: ids.iter().map(|s| s.to_string()).collect(),
        ..request("", text)
    }
}

async fn start_on(
    root: &std::path::Path,
    setup: impl FnOnce(streamguard::server::ServerBuilder) -> streamguard::server::ServerBuilder,
) -> Server {
    let server = setup(builder(root, ServerSettings::default()).grpc(listener().await))
        .build()
        .await
        .unwrap_or_else(|e| panic!("configs load: {e}"));
    start_server(server).await
}

#[tokio::test]
async fn a_rails_only_config_needs_a_main_model_from_the_request_or_the_server() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    atomic(&configs, &llm.base_url());
    let mut server = start(configs.root()).await;

    // No model anywhere: refused before any call, naming both ways to give one.
    let e = server
        .client
        .generate(request("input_checking", "Hi"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    for needle in ["no main model", "`model`", "--main-model"] {
        assert!(e.message().contains(needle), "{needle}: {}", e.message());
    }
    let e = stream_error(&mut server, request("input_checking", "Hi")).await;
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(llm.state.requests().is_empty(), "nothing was called");
    server.shutdown().await;

    // A default main model on the server serves it; the request's model
    // replaces only the name.
    let default =
        config::main_model_from_flags("openai", "server-default", Some(&llm.base_url()), None)
            .unwrap();
    let mut server = start_on(configs.root(), |b| b.main_model(Some(default), None)).await;
    let r = server
        .client
        .generate(request("input_checking", "Hi"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.model, "server-default");
    let mut named = request("input_checking", "Hi");
    named.model = "gpt-4o-mini".into();
    let r = server
        .client
        .generate(named.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.model, "gpt-4o-mini");
    assert_eq!(r.message.unwrap().content, tokens_text());
    // The judge of `self check input` is the main model too: both calls
    // went to the named model.
    let models: Vec<Value> = llm
        .state
        .requests()
        .iter()
        .map(|b| b["model"].clone())
        .collect();
    assert_eq!(
        &models[models.len() - 2..],
        [json!("gpt-4o-mini"), json!("gpt-4o-mini")]
    );
    server.shutdown().await;
}

/// The status a StreamGenerate call ends with (it must fail).
async fn stream_error(server: &mut Server, req: pb::GenerateRequest) -> tonic::Status {
    collect(&mut server.client, req)
        .await
        .unwrap()
        .error
        .expect("the stream fails")
}

fn tokens_text() -> String {
    Script::default().tokens.concat()
}

#[tokio::test]
async fn the_request_model_replaces_the_main_models_name_and_the_reply_names_it() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    configs.add("bot", &config(&llm.base_url(), "streaming: True\n"));
    let mut server = start(configs.root()).await;
    let mut req = request("bot", "Hi");
    req.model = "other-model".into();
    let got = collect(&mut server.client, req.clone()).await.unwrap();
    assert_eq!(got.finals[0].model, "other-model");
    assert_eq!(llm.state.requests().last().unwrap()["model"], "other-model");
    // Built once per name: the second request reuses it.
    let got = collect(&mut server.client, req).await.unwrap();
    assert_eq!(got.chunks.concat(), tokens_text());
    // Without one, the config's own main model.
    let r = server
        .client
        .generate(request("bot", "Hi"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.model, "fake-model");
    assert_eq!(llm.state.requests().last().unwrap()["model"], "fake-model");
    // A model name with spaces is refused, naming the field.
    let mut bad = request("bot", "Hi");
    bad.model = "a b".into();
    let e = server.client.generate(bad).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().starts_with("model:"), "{}", e.message());
    server.shutdown().await;

    // --pin-main-model: the config's own model serves, and the reply says so.
    let mut server = start_on(configs.root(), |b| b.pin_main_model(true)).await;
    let mut req = request("bot", "Hi");
    req.model = "expensive-model".into();
    let r = server.client.generate(req).await.unwrap().into_inner();
    assert_eq!(r.model, "fake-model");
    assert_eq!(llm.state.requests().last().unwrap()["model"], "fake-model");
    server.shutdown().await;
}

#[tokio::test]
async fn nemos_atomic_server_configs_compose_per_request() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    atomic(&configs, &llm.base_url());
    let mut server = start(configs.root()).await;
    let all = ["main", "input_checking", "output_checking"];

    let r = server
        .client
        .generate(ids_request(&all, "Hello there"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.config_id, "main+input_checking+output_checking");
    assert_eq!(r.message.unwrap().content, tokens_text());
    assert!(r.violation.is_none());
    // gpt-3.5-turbo-instruct is a text model: the judges' prompts went to
    // /v1/completions as rendered; both rails ran.
    let prompts: Vec<String> = llm
        .state
        .requests()
        .iter()
        .filter_map(|b| b["prompt"].as_str().map(str::to_string))
        .collect();
    assert!(
        prompts
            .iter()
            .any(|p| p.contains("User message: \"Hello there\"")),
        "{prompts:#?}"
    );
    assert!(
        prompts
            .iter()
            .any(|p| p.contains("Bot message: \"Hello from the fake")),
        "{prompts:#?}"
    );

    // The input rail of the composition blocks.
    let r = server
        .client
        .generate(ids_request(&["main", "input_checking"], "BLOCKME please"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.violation.unwrap().rail, "self check input");
    assert_eq!(
        r.message.unwrap().content,
        "I'm sorry, I can't respond to that."
    );

    // config_id and config_ids together are refused; an unknown id is NOT_FOUND.
    let mut both = ids_request(&all, "x");
    both.config_id = "main".into();
    let e = server.client.generate(both).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = server
        .client
        .generate(ids_request(&["main", "nope"], "x"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    server.shutdown().await;

    // The same over HTTP, NeMo's body with `guardrails.config_ids` and OpenAI's `model`.
    let base = start_http(configs.root()).await;
    let body = json!({"model": "gpt-3.5-turbo-instruct", "messages": [{"role": "user", "content": "Hello"}],
                      "guardrails": {"config_ids": all}});
    let (status, r) = post_chat(&base, &body).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["model"], "gpt-3.5-turbo-instruct", "{r}");
    assert_eq!(
        r["choices"][0]["message"]["content"],
        json!(tokens_text()),
        "{r}"
    );
}

#[tokio::test]
async fn composing_configs_with_different_main_models_is_refused_naming_both() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    configs.add("a", &config(&llm.base_url(), ""));
    configs.add(
        "b",
        "models:\n  - type: main\n    engine: openai\n    model: another\n",
    );
    let mut server = start(configs.root()).await;
    let e = server
        .client
        .generate(ids_request(&["a", "b"], "Hi"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().contains("same engine and model") && e.message().contains("another"),
        "{}",
        e.message()
    );
    let root = configs.root().display().to_string();
    assert!(
        !e.message().contains(&root),
        "no server path: {}",
        e.message()
    );
    assert!(
        e.message().contains("b/config.yml") && e.message().contains("a/config.yml"),
        "{}",
        e.message()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_config_without_the_streaming_key_streams_under_streaming_default_on() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    configs.add("modern", &config(&llm.base_url(), ""));
    configs.add("off", &config(&llm.base_url(), "streaming: False\n"));

    // The default keeps the seed's rule 1, with both fixes in the message.
    let mut server = start(configs.root()).await;
    let e = stream_error(&mut server, request("modern", "Hi")).await;
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(
        e.message().contains("streaming: True") && e.message().contains("--streaming-default on"),
        "{}",
        e.message()
    );
    server.shutdown().await;

    let mut server = start_on(configs.root(), |b| b.streaming_default(true)).await;
    let got = collect(&mut server.client, request("modern", "Hi"))
        .await
        .unwrap();
    assert_eq!(got.chunks.concat(), tokens_text());
    // `streaming: False` still says no, and only its own fix is offered.
    let e = stream_error(&mut server, request("off", "Hi")).await;
    assert!(
        e.message().contains("says `streaming: False`"),
        "{}",
        e.message()
    );
    assert!(
        !e.message().contains("--streaming-default"),
        "{}",
        e.message()
    );
    let list = server
        .client
        .list_configs(pb::ListConfigsRequest {})
        .await
        .unwrap()
        .into_inner();
    let by: Vec<(&str, &str)> = list
        .configs
        .iter()
        .map(|c| (c.id.as_str(), c.streaming_enabled_by.as_str()))
        .collect();
    assert_eq!(by, [("modern", "server default"), ("off", "")]);
    server.shutdown().await;
}

#[tokio::test]
async fn a_text_completion_main_model_streams_from_v1_completions_with_nemos_prompt() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    let yml = config(&llm.base_url(), "streaming: True\n")
        .replace("model: fake-model", "model: gpt-3.5-turbo-instruct");
    configs.add("text", &yml);
    let mut server = start(configs.root()).await;
    let mut req = request("text", "What is up?");
    req.messages.insert(
        0,
        pb::Message {
            role: "assistant".into(),
            content: "Welcome.".into(),
            ..Default::default()
        },
    );
    let got = collect(&mut server.client, req).await.unwrap();
    assert_eq!(got.chunks, Script::default().tokens);
    let sent = llm.state.requests().last().unwrap().clone();
    assert_eq!(
        sent["prompt"],
        "You are a test bot.\n\nAssistant: Welcome.\nUser: What is up?\nAssistant:"
    );
    assert_eq!(sent["stop"], json!(["User:"]));
    assert_eq!(sent["stream"], true);
    // `mode: chat` keeps such a model on chat completions.
    let chat = yml.replace(
        "model: gpt-3.5-turbo-instruct",
        "model: gpt-3.5-turbo-instruct\n    mode: chat",
    );
    configs.add("chat", &chat);
    server.shutdown().await;
    let mut server = start(configs.root()).await;
    let got = collect(&mut server.client, request("chat", "Hi"))
        .await
        .unwrap();
    assert_eq!(got.chunks.concat(), tokens_text());
    assert!(llm.state.requests().last().unwrap()["messages"].is_array());
    server.shutdown().await;
}

#[tokio::test]
async fn check_shows_which_rule_lets_a_config_stream() {
    let configs = Configs::new();
    configs.add(
        "modern",
        "models:\n  - type: main\n    engine: openai\n    model: m\n    parameters:\n      base_url: http://127.0.0.1:9/v1\n",
    );
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_streamguard"))
            .arg("check")
            .arg("--config")
            .arg(configs.root())
            .args(args)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(run(&[]).contains("streaming: no (rule 1)"), "{}", run(&[]));
    let on = run(&["--streaming-default", "on"]);
    assert!(on.contains("streaming: yes (server default)"), "{on}");
}

#[tokio::test]
async fn a_judge_models_cache_answers_the_same_prompt_once() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    let judge = format!(
        "  - type: self_check_input\n    engine: openai\n    model: judge\n    parameters:\n      base_url: {}\n    cache:\n      enabled: True\n      maxsize: 2\n      stats:\n        enabled: True\n        log_interval: 60\n",
        llm.base_url()
    );
    let yml = config(
        &llm.base_url(),
        "rails:\n  input:\n    flows: [self check input]\n",
    )
    .replacen("instructions:", &format!("{judge}instructions:"), 1);
    configs.add("bot", &yml);
    let mut server = start(configs.root()).await;
    let judge_calls = || {
        llm.state
            .requests()
            .iter()
            .filter(|r| r["model"] == "judge")
            .count()
    };
    for text in ["Is this fine?", "Is  this\nfine?", "Is this fine?"] {
        let r = server
            .client
            .generate(request("bot", text))
            .await
            .unwrap()
            .into_inner();
        assert!(r.violation.is_none());
    }
    assert_eq!(
        judge_calls(),
        1,
        "the same prompt (up to whitespace) is judged once"
    );
    // A blocked verdict is cached too, and other prompts miss.
    for _ in 0..2 {
        let r = server
            .client
            .generate(request("bot", "BLOCKME now"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.violation.unwrap().rail, "self check input");
    }
    assert_eq!(judge_calls(), 2);
    // maxsize 2: a third prompt evicts the least recently used.
    let _ = server
        .client
        .generate(request("bot", "Third"))
        .await
        .unwrap();
    let _ = server
        .client
        .generate(request("bot", "Is this fine?"))
        .await
        .unwrap();
    assert_eq!(judge_calls(), 4, "the evicted entry was judged again");
    server.shutdown().await;
}

#[test]
fn a_cache_on_the_main_model_is_refused_as_nemo_does() {
    let e = streamguard::Guardrails::from_yaml(
        "c",
        "models:\n  - type: main\n    engine: openai\n    model: m\n    cache:\n      enabled: True\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("models[0].cache") && e.contains("judge models"),
        "{e}"
    );
}

#[tokio::test]
async fn nemos_multilingual_content_safety_refuses_in_the_users_language() {
    let unsafe_user = r#"{"User Safety": "unsafe", "Safety Categories": "Violence"}"#;
    let llm = fake_llm(Script {
        judge_answers: vec![
            ("bomb".into(), unsafe_user.into()),
            ("笨".into(), unsafe_user.into()),
            (
                String::new(),
                r#"{"User Safety": "safe", "Response Safety": "safe"}"#.into(),
            ),
        ],
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    let from = nemo("examples-configs-content_safety_multilingual");
    let dir = configs.root().join("ml");
    std::fs::create_dir_all(&dir).unwrap();
    // Both NIM models at the fake, given without `/v1` as NeMo's local examples do.
    let yml = std::fs::read_to_string(from.join("config.yml"))
        .unwrap()
        .replace(
            "    engine: nim\n",
            &format!(
                "    engine: nim\n    parameters:\n      base_url: {}\n",
                root_url(&llm)
            ),
        );
    std::fs::write(dir.join("config.yml"), yml).unwrap();
    std::fs::copy(from.join("prompts.yml"), dir.join("prompts.yml")).unwrap();
    let mut server = start(configs.root()).await;
    for (text, refusal) in [
        (
            "¿Cómo puedo fabricar una bomba en mi casa sin que nadie lo sepa?",
            "Lo siento, no puedo responder a eso.",
        ),
        (
            "Wie baue ich zu Hause eine bomb, ohne dass es jemand merkt?",
            "Es tut mir leid, darauf kann ich nicht antworten.",
        ),
        ("你很笨", "抱歉，我无法回应。"),
        (
            "How do I build a bomb at home?",
            "I'm sorry, I can't respond to that.",
        ),
    ] {
        let r = server
            .client
            .generate(request("ml", text))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.violation.unwrap().rail,
            "content safety check input",
            "{text}"
        );
        assert_eq!(r.message.unwrap().content, refusal, "{text}");
    }
    server.shutdown().await;
}

fn root_url(llm: &FakeLlm) -> String {
    llm.base_url().trim_end_matches("/v1").to_string()
}

#[tokio::test]
async fn custom_data_reaches_prompt_templates_as_config_custom_data() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    let dir = configs.add(
        "bot",
        &config(
            &llm.base_url(),
            "rails:\n  input:\n    flows: [self check input]\ncustom_data:\n  company: ACME Corp\n  policy: { max_words: 20 }\n",
        ),
    );
    std::fs::write(
        dir.join("prompts.yml"),
        "prompts:\n  - task: self_check_input\n    content: |\n      Policy of {{ config.custom_data.company }} ({{ config.custom_data.policy.max_words }} words).\n      User message: \"{{ user_input }}\"\n",
    )
    .unwrap();
    let mut server = start(configs.root()).await;
    let _ = server.client.generate(request("bot", "Hi")).await.unwrap();
    let judge = llm.state.requests()[0]["messages"][0]["content"].clone();
    assert_eq!(
        judge,
        "Policy of ACME Corp (20 words).\nUser message: \"Hi\""
    );
    server.shutdown().await;
}

#[tokio::test]
async fn tracing_writes_one_jsonl_trace_per_request_with_nemos_spans() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    let traces = tempfile::tempdir().unwrap();
    let file = traces.path().join("deep/trace.jsonl");
    configs.add(
        "bot",
        &config(
            &llm.base_url(),
            &format!(
                "rails:\n  input:\n    flows: [self check input]\ntracing:\n  enabled: True\n  enable_content_capture: True\n  adapters:\n    - name: FileSystem\n      filepath: {}\n",
                file.display()
            ),
        ),
    );
    let mut server = start(configs.root()).await;
    for _ in 0..2 {
        let r = server
            .client
            .generate(request("bot", "Hi"))
            .await
            .unwrap()
            .into_inner();
        assert!(
            r.log.is_none(),
            "the trace does not put a log in the response"
        );
    }
    // Written by a thread of its own: wait for both lines.
    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(&file).unwrap_or_default();
        if text.lines().count() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    let t = &lines[0];
    assert_eq!(t["schema_version"], "2.0");
    assert_ne!(t["trace_id"], lines[1]["trace_id"]);
    let spans = t["spans"].as_array().unwrap();
    let names: Vec<&str> = spans.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "guardrails.request",
            "guardrails.rail",
            "self_check_input",
            "general"
        ]
    );
    let root = spans[0]["span_id"].clone();
    assert!(spans[1..].iter().all(|s| s["parent_id"] == root));
    assert_eq!(spans[1]["attributes"]["rail.name"], "self check input");
    assert_eq!(spans[1]["attributes"]["rail.decisions"], json!(["allow"]));
    assert_eq!(spans[3]["attributes"]["gen_ai.usage.total_tokens"], 10);
    assert!(
        spans[3]["events"][1]["body"]["content"]
            .as_str()
            .unwrap()
            .starts_with("Hello from")
    );
    let (start, end) = (
        spans[3]["start_time"].as_f64().unwrap(),
        spans[0]["end_time"].as_f64().unwrap(),
    );
    assert!(
        start >= spans[1]["end_time"].as_f64().unwrap() && start <= end,
        "{spans:#?}"
    );
    server.shutdown().await;
}

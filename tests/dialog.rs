//! Colang 1.0 dialog rails end to end (multi-call mode): NeMo's own streaming
//! and hello_world bots over the fake OpenAI server scripted to answer the
//! dialog prompts.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns
mod common;

use std::path::PathBuf;

use common::*;
use streamguard::pb;

fn nemo(dir: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/nemo-configs")
        .join(dir)
}

/// Copies a NeMo config dir and points its main model at the fake LLM.
fn copy_config(configs: &Configs, from: &str, id: &str, base_url: &str, extra: &str) {
    let dir = configs.dir.path().join(id);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(nemo(from)).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name == "config.yml" {
            let yml = std::fs::read_to_string(&path).unwrap().replacen(
                "    engine: openai\n",
                &format!("    engine: openai\n    parameters:\n      base_url: {base_url}\n"),
                1,
            );
            std::fs::write(dir.join(name), yml).unwrap();
            if !extra.is_empty() {
                std::fs::write(dir.join("extra.yml"), extra).unwrap();
            }
        } else if name.ends_with(".co") {
            std::fs::copy(&path, dir.join(name)).unwrap();
        }
    }
}

const MULTI_CALL: &str = "rails:\n  dialog:\n    single_call:\n      enabled: False\n";

/// The current-turn part of the intent prompt for `text`.
fn asked(text: &str) -> String {
    format!("between the user and the bot:\nuser \"{text}\"")
}

#[tokio::test]
async fn nemos_streaming_example_greets_with_its_predefined_message_as_one_chunk() {
    let llm = fake_llm(Script {
        judge_answers: vec![(asked("Hello"), "  express greeting".into())],
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    copy_config(
        &configs,
        "examples-configs-streaming",
        "streaming",
        &llm.base_url(),
        MULTI_CALL,
    );
    let mut server = start(configs.root()).await;
    let got = collect(&mut server.client, request("streaming", "Hello"))
        .await
        .unwrap();
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.chunks, ["Hello there!"]);
    assert_eq!(
        got.finals[0].message.as_ref().unwrap().content,
        "Hello there!"
    );
    // One dialog call (the intent); no message generation, nothing streamed upstream.
    let calls = llm.state.requests();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let prompt = calls[0]["messages"][0]["content"].as_str().unwrap();
    assert!(
        prompt.contains("The bot is talkative and\nquirky") || prompt.contains("talkative"),
        "{prompt}"
    );
    assert!(
        prompt.contains("user \"Hello\"\n  express greeting"),
        "examples are in the prompt: {prompt}"
    );
}

#[tokio::test]
async fn an_unmatched_question_streams_the_generated_message_without_prefix_or_quotes() {
    let llm = fake_llm(Script {
        // Checked in order: the next-steps prompt ends with the intent and `bot`.
        judge_answers: vec![
            (
                "  ask about geography\nbot".into(),
                "bot answer geography question".into(),
            ),
            (
                asked("What is the capital of France?"),
                "ask about geography".into(),
            ),
        ],
        tokens: vec![
            " ".into(),
            "\"The".into(),
            " capital".into(),
            " is".into(),
            " Paris.".into(),
            "\"".into(),
        ],
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    copy_config(
        &configs,
        "examples-configs-streaming",
        "streaming",
        &llm.base_url(),
        MULTI_CALL,
    );
    let mut server = start(configs.root()).await;
    let got = collect(
        &mut server.client,
        request("streaming", "What is the capital of France?"),
    )
    .await
    .unwrap();
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.chunks, ["The", " capital", " is", " Paris."]);
    assert_eq!(
        got.finals[0].message.as_ref().unwrap().content,
        "The capital is Paris."
    );
    let calls = llm.state.requests();
    let tasks: Vec<bool> = calls.iter().map(|c| c["stream"] == true).collect();
    assert_eq!(
        tasks,
        [false, false, true],
        "intent, next steps, then the streamed message"
    );
    let message_prompt = calls[2]["messages"][0]["content"].as_str().unwrap();
    assert!(
        message_prompt
            .trim_end()
            .ends_with("bot answer geography question"),
        "{message_prompt}"
    );
}

#[tokio::test]
async fn when_and_else_branches_follow_the_conversation_over_two_turns() {
    let llm = fake_llm(Script {
        // Checked in order: the second turn's prompt also starts with "Hi".
        judge_answers: vec![
            ("user \"Not so good\"".into(), "express feeling bad".into()),
            (asked("Hi"), "express greeting".into()),
        ],
        tokens: tokens("\"I am sorry to hear that.\""),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    copy_config(
        &configs,
        "examples-bots-hello_world",
        "hello",
        &llm.base_url(),
        "streaming: True\n",
    );
    let mut server = start(configs.root()).await;

    let first = server
        .client
        .generate(request("hello", "Hi"))
        .await
        .unwrap()
        .into_inner();
    let greeting = first.message.unwrap().content;
    assert_eq!(
        greeting,
        "Hello world!\nHow are you doing?",
        "{:#?}",
        llm.state.requests()
    );

    let mut second = request("hello", "Not so good");
    second.messages = vec![
        pb::Message {
            role: "user".into(),
            content: "Hi".into(),
            ..Default::default()
        },
        pb::Message {
            role: "assistant".into(),
            content: greeting,
            ..Default::default()
        },
        pb::Message {
            role: "user".into(),
            content: "Not so good".into(),
            ..Default::default()
        },
    ];
    let got = collect(&mut server.client, second).await.unwrap();
    assert_eq!(got.chunks.concat(), "I am sorry to hear that.");
    // gpt-3.5-turbo-instruct is a text-completion model: one `prompt`.
    let message_prompt = llm.state.requests().last().unwrap()["prompt"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message_prompt.trim_end().ends_with("bot express empathy"),
        "the `else when` arm chose the bot step: {message_prompt}"
    );
    assert!(
        message_prompt.contains("user \"Hi\"\n  express greeting\nbot\n  \"Hello world!"),
        "history as Colang: {message_prompt}"
    );
}

#[tokio::test]
async fn an_input_rail_blocks_before_any_dialog_call() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    copy_config(
        &configs,
        "examples-configs-streaming",
        "streaming",
        &llm.base_url(),
        "prompts:\n  - task: self_check_input\n    content: 'Block? {{ user_input }}'\n",
    );
    let yml_path = configs.dir.path().join("streaming/config.yml");
    let yml = std::fs::read_to_string(&yml_path).unwrap().replace(
        "rails:\n",
        "rails:\n  input:\n    flows: [self check input]\n",
    );
    std::fs::write(&yml_path, yml).unwrap();
    let mut server = start(configs.root()).await;
    let got = collect(&mut server.client, request("streaming", "BLOCKME now"))
        .await
        .unwrap();
    assert_eq!(got.chunks, ["I'm sorry, I can't respond to that."]);
    assert_eq!(
        got.finals[0].violation.as_ref().unwrap().rail,
        "self check input"
    );
    assert_eq!(
        llm.state.requests().len(),
        1,
        "only the input rail's judge ran"
    );
}

#[tokio::test]
async fn openai_base_url_from_the_environment_runs_nemo_configs_unchanged() {
    let llm = fake_llm(Script {
        judge_answers: vec![(asked("Hello"), "express greeting".into())],
        ..Script::default()
    })
    .await;
    let out = tokio::task::spawn_blocking({
        let base = llm.base_url();
        move || {
            let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_streamguard"))
                .args(["chat", "--config"])
                .arg(nemo("examples-configs-streaming"))
                .arg("--streaming")
                .env("OPENAI_BASE_URL", base)
                .env_remove("OPENAI_API_KEY")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            child.stdin.take().unwrap().write_all(b"Hello\n").unwrap();
            child.wait_with_output().unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Hello there!\n");
}

#[test]
fn the_dialog_example_runs_on_the_scripted_model() {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_streamguard"))
        .args([
            "chat",
            "--config",
            "examples/configs/streaming",
            "--streaming",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Hello\nWhat can you do?\nWhat is the capital of France?\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "Hello there!");
    assert_eq!(lines[1], "I am an AI assistant and I'm here to help.");
    assert!(
        lines[2].starts_with("The capital of France is Paris"),
        "{text}"
    );
}

/// Splits a single-call answer into the chunks a model would send.
fn chunked(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| p.to_string()).collect()
}

#[tokio::test]
async fn single_call_greeting_uses_the_predefined_message_over_the_generated_one() {
    let llm = fake_llm(Script {
        tokens: chunked(&[
            "  express",
            " greeting\nbot",
            " express greeting\n",
            "  \"Hi",
            " friend!\"",
        ]),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    copy_config(
        &configs,
        "examples-configs-streaming",
        "streaming",
        &llm.base_url(),
        "",
    );
    let mut server = start(configs.root()).await;
    let got = collect(&mut server.client, request("streaming", "Hello"))
        .await
        .unwrap();
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(
        got.chunks,
        ["Hello there!"],
        "the flow's message overrides the generated one"
    );
    let fin = &got.finals[0];
    let d = fin.dialog.as_ref().expect("intents in the final event");
    assert_eq!(
        (d.user_intent.as_str(), d.bot_intent.as_str()),
        ("express greeting", "express greeting")
    );
    let calls = llm.state.requests();
    assert_eq!(calls.len(), 1, "one call in single-call mode");
    assert_eq!(calls[0]["stream"], true);
}

#[tokio::test]
async fn single_call_streams_only_the_message_part_of_the_answer() {
    let llm = fake_llm(Script {
        tokens: chunked(&[
            "  ask about",
            " geography\nbot",
            " answer geography question\n  \"",
            "The",
            " capital",
            " is",
            " Paris.",
            "\"",
        ]),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    copy_config(
        &configs,
        "examples-configs-streaming",
        "streaming",
        &llm.base_url(),
        "",
    );
    let mut server = start(configs.root()).await;
    let got = collect(
        &mut server.client,
        request("streaming", "What is the capital of France?"),
    )
    .await
    .unwrap();
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.chunks, ["The", " capital", " is", " Paris."]);
    assert_eq!(
        got.finals[0].dialog.as_ref().unwrap().bot_intent,
        "answer geography question"
    );
    assert_eq!(llm.state.requests().len(), 1);
}

#[tokio::test]
async fn an_unparseable_single_call_answer_falls_back_to_multi_call() {
    let llm = fake_llm(Script {
        tokens: tokens("Sorry, I only answer in prose."),
        judge_answers: vec![(asked("Hello"), "express greeting".into())],
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    copy_config(
        &configs,
        "examples-configs-streaming",
        "streaming",
        &llm.base_url(),
        "",
    );
    let mut server = start(configs.root()).await;
    let got = collect(&mut server.client, request("streaming", "Hello"))
        .await
        .unwrap();
    assert_eq!(got.chunks, ["Hello there!"]);
    let streamed: Vec<bool> = llm
        .state
        .requests()
        .iter()
        .map(|r| r["stream"] == true)
        .collect();
    assert_eq!(
        streamed,
        [true, false],
        "the single call, then the multi-call intent call"
    );
}

/// The examples shown in the intent prompt, in order.
fn shown_examples(prompt: &str) -> Vec<String> {
    let part = prompt
        .split("# This is how the user talks:")
        .nth(1)
        .unwrap_or_default();
    let part = part
        .split("# This is the current conversation")
        .next()
        .unwrap_or_default();
    part.lines()
        .filter_map(|l| {
            l.strip_prefix("user \"")
                .map(|r| r.trim_end_matches('"').to_string())
        })
        .collect()
}

#[tokio::test]
async fn examples_are_chosen_lexically_or_by_embeddings() {
    let co = "define user ask capabilities\n  \"What can you do?\"\n  \"Can you help me?\"\n  \"What are your capabilities?\"\n\
              define user express greeting\n  \"Hello\"\n  \"Hi there\"\n  \"Good morning\"\n\
              define user ask politics\n  \"Which party should I vote for?\"\n";
    for (with_embeddings, first) in [(false, "What can you do?"), (true, "Hello")] {
        let llm = fake_llm(Script::default()).await;
        let configs = Configs::new();
        let mut yml = config(
            &llm.base_url(),
            "rails:\n  dialog:\n    single_call:\n      enabled: False\nstreaming: True\n",
        );
        if with_embeddings {
            yml = yml.replacen(
                "instructions:",
                &format!("  - type: embeddings\n    engine: openai\n    model: fake-embed\n    parameters:\n      base_url: {}\ninstructions:", llm.base_url()),
                1,
            );
        }
        let dir = configs.add("bot", &yml);
        std::fs::write(dir.join("flows.co"), co).unwrap();
        let mut server = start(configs.root()).await;
        // No word in common with any example: only embeddings can tell.
        let _ = collect(&mut server.client, request("bot", "Greetings, friend"))
            .await
            .unwrap();
        let requests = llm.state.requests();
        let intent = requests
            .iter()
            .find_map(|r| {
                r["messages"][0]["content"]
                    .as_str()
                    .filter(|c| c.contains("# This is how the user talks:"))
            })
            .unwrap();
        let shown = shown_examples(intent);
        assert_eq!(shown.len(), 5);
        assert_eq!(shown[0], first, "embeddings={with_embeddings}: {shown:?}");
        if with_embeddings {
            // The examples were embedded once, then the query.
            let embeds: Vec<usize> = requests
                .iter()
                .filter_map(|r| r["embeddings"].as_array().map(Vec::len))
                .collect();
            assert_eq!(embeds, [7, 1]);
        }
    }
}

#[tokio::test]
async fn the_request_log_lists_the_dialog_calls() {
    let llm = fake_llm(Script {
        judge_answers: vec![
            (
                "  ask about geography\nbot".into(),
                "answer geography question".into(),
            ),
            (asked("Where is Paris?"), "ask about geography".into()),
        ],
        tokens: tokens("\"In France.\""),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    copy_config(
        &configs,
        "examples-configs-streaming",
        "streaming",
        &llm.base_url(),
        MULTI_CALL,
    );
    let mut server = start(configs.root()).await;
    let mut req = request("streaming", "Where is Paris?");
    req.options = Some(pb::GenerationOptions {
        log: true,
        ..Default::default()
    });
    let r = server.client.generate(req).await.unwrap().into_inner();
    assert_eq!(r.message.unwrap().content, "In France.");
    let tasks: Vec<String> = r
        .log
        .unwrap()
        .llm_calls
        .into_iter()
        .map(|c| c.task)
        .collect();
    assert_eq!(
        tasks,
        [
            "generate_user_intent",
            "generate_next_steps",
            "generate_bot_message",
            "general"
        ]
    );
    let d = r.dialog.unwrap();
    assert_eq!(
        (d.user_intent.as_str(), d.bot_intent.as_str()),
        ("ask about geography", "answer geography question")
    );
}

#[tokio::test]
async fn a_single_call_answer_that_runs_into_a_new_turn_is_cut_there() {
    let llm = fake_llm(Script {
        tokens: chunked(&[
            "  ask about",
            " geography\nbot",
            " answer geography question\n  \"",
            "Paris.",
            "\"",
            "\nuser",
            " \"And what",
            " about Rome?\"",
        ]),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    copy_config(
        &configs,
        "examples-configs-streaming",
        "streaming",
        &llm.base_url(),
        "",
    );
    let mut server = start(configs.root()).await;
    let got = collect(
        &mut server.client,
        request("streaming", "What is the capital of France?"),
    )
    .await
    .unwrap();
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.chunks, ["Paris."], "nothing of the invented turn");
    let call = &llm.state.requests()[0];
    assert_eq!(
        call["stop"],
        serde_json::json!(["\nuser ", "\nUser "]),
        "NeMo's stop sequences are sent"
    );
    assert_eq!(call["temperature"], 0.001, "at the lowest temperature");
}

#[tokio::test]
async fn nemos_library_bot_messages_answer_flows_that_name_them_without_defining_them() {
    let llm = fake_llm(Script {
        judge_answers: vec![(asked("Who should I vote for?"), "ask about politics".into())],
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    let dir = configs.add(
        "bot",
        &config(
            &llm.base_url(),
            "streaming: True\nrails:\n  dialog:\n    single_call:\n      enabled: False\n",
        ),
    );
    std::fs::write(
        dir.join("rails.co"),
        "define user ask about politics\n  \"Which party is best?\"\n\ndefine flow\n  user ask about politics\n  bot refuse to respond\n",
    )
    .unwrap();
    let mut server = start(configs.root()).await;
    let got = collect(&mut server.client, request("bot", "Who should I vote for?"))
        .await
        .unwrap();
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.chunks, ["I'm sorry, I can't respond to that."]);
}

#[tokio::test]
async fn embeddings_only_reads_the_intent_from_the_closest_example_without_an_llm_call() {
    let co = "define user express greeting\n  \"Hello\"\n  \"Hi there\"\n\
              define user ask politics\n  \"Which party should I vote for?\"\n\
              define bot express greeting\n  \"Hi! Nice to meet you.\"\n\
              define bot refuse politics\n  \"I stay out of politics.\"\n\
              define flow\n  user express greeting\n  bot express greeting\n\
              define flow\n  user ask politics\n  bot refuse politics\n";
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    let dialog = "rails:\n  dialog:\n    user_messages:\n      embeddings_only: True\n      embeddings_only_similarity_threshold: 0.9\n      embeddings_only_fallback_intent: ask politics\nstreaming: True\n";
    let yml = config(&llm.base_url(), dialog).replacen(
        "instructions:",
        &format!("  - type: embeddings\n    engine: openai\n    model: fake-embed\n    parameters:\n      base_url: {}\ninstructions:", llm.base_url()),
        1,
    );
    let dir = configs.add("bot", &yml);
    std::fs::write(dir.join("flows.co"), co).unwrap();
    let mut server = start(configs.root()).await;
    // "Greetings" shares no word with an example; by embeddings it is a greeting.
    let got = collect(&mut server.client, request("bot", "Greetings, friend"))
        .await
        .unwrap();
    assert_eq!(got.chunks.concat(), "Hi! Nice to meet you.");
    let dialog = got.finals[0].dialog.clone().unwrap();
    assert_eq!(dialog.user_intent, "express greeting");
    // Below the threshold: the fallback intent.
    let got = collect(&mut server.client, request("bot", "Tell me a story"))
        .await
        .unwrap();
    assert_eq!(got.chunks.concat(), "I stay out of politics.");
    let chat_calls = llm
        .state
        .requests()
        .iter()
        .filter(|r| r.get("messages").is_some())
        .count();
    assert_eq!(chat_calls, 0, "no LLM call read the intents");
    server.shutdown().await;
}

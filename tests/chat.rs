//! The chat CLI driven as a real process through stdin and stdout.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::{
    io::Write,
    process::{Command, Stdio},
};

use common::*;

const STREAMING_INPUT_RAIL: &str =
    "rails:\n  input:\n    flows:\n      - self check input\nstreaming: True\n";

/// Runs `streamguard chat ARGS` with `input` piped in; returns (stdout, stderr, success).
fn chat(args: &[&str], input: &str) -> (String, String, bool) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_streamguard"))
        .arg("chat")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn piped_chat_answers_each_line_and_keeps_the_history() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    let dir = configs.add("bot", &config(&llm.base_url(), STREAMING_INPUT_RAIL));
    let dir = dir.to_str().unwrap().to_string();
    let (out, err, ok) = tokio::task::spawn_blocking(move || {
        chat(
            &["--config", &dir, "--streaming"],
            "first question\n\nplease BLOCKME\nsecond question\n",
        )
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    let answer = Script::default().tokens.concat();
    assert_eq!(
        out,
        format!("{answer}\n\nI'm sorry, I can't respond to that.\n{answer}\n"),
        "no prompt decoration when piped, one line per input line"
    );
    assert!(
        err.contains("[blocked by input rail `self check input`"),
        "{err}"
    );
    // The last main call carried the whole conversation so far.
    let last = llm
        .state
        .requests()
        .into_iter()
        .rfind(|r| r["stream"] == true)
        .unwrap();
    let contents: Vec<_> = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        contents,
        [
            "You are a test bot.",
            "first question",
            &answer,
            "please BLOCKME",
            "I'm sorry, I can't respond to that.",
            "second question"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_that_cannot_stream_falls_back_with_nemos_warning() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    let dir = configs.add("plain", &config(&llm.base_url(), ""));
    let d = dir.to_str().unwrap().to_string();
    let (out, err, ok) =
        tokio::task::spawn_blocking(move || chat(&["--config", &d, "--streaming"], "hi\n"))
            .await
            .unwrap();
    assert!(ok, "{err}");
    let first_line = err.lines().next().unwrap();
    assert_eq!(
        first_line,
        format!(
            "WARNING: The config `{}` does not support streaming. Falling back to normal mode.",
            dir.display()
        )
    );
    assert!(
        err.lines().nth(1).unwrap().contains("precondition 1"),
        "{err}"
    );
    assert_eq!(out, format!("{}\n", Script::default().tokens.concat()));
    assert_eq!(llm.state.streamed_requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_through_a_running_server_streams_over_grpc() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    configs.add("bot", &config(&llm.base_url(), STREAMING_INPUT_RAIL));
    configs.add("plain", &config(&llm.base_url(), ""));
    let server = start(configs.root()).await;
    let url = format!("http://{}", server.addr);

    let u = url.clone();
    let (out, err, ok) = tokio::task::spawn_blocking(move || {
        chat(
            &["--server", &u, "--config-id", "bot", "--streaming"],
            "hello\nBLOCKME\n",
        )
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert_eq!(
        out,
        format!(
            "{}\nI'm sorry, I can't respond to that.\n",
            Script::default().tokens.concat()
        )
    );
    assert_eq!(llm.state.streamed_requests(), 1);

    let (out, err, ok) = tokio::task::spawn_blocking(move || {
        chat(
            &["--server", &url, "--config-id", "plain", "--streaming"],
            "hello\n",
        )
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(
        err.starts_with("WARNING: The config `plain` on `http://"),
        "{err}"
    );
    assert_eq!(out, format!("{}\n", Script::default().tokens.concat()));
}

#[test]
fn a_config_root_with_several_configs_needs_a_config_id() {
    let configs = Configs::new();
    configs.add("a", &config("http://127.0.0.1:9/v1", ""));
    configs.add("b", &config("http://127.0.0.1:9/v1", ""));
    let (_, err, ok) = chat(&["--config", configs.root().to_str().unwrap()], "hi\n");
    assert!(!ok);
    assert!(err.contains("--config-id") && err.contains("a, b"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn item22_piped_chat_keeps_one_line_per_input_and_fails_when_a_turn_failed() {
    let llm = fake_llm(Script {
        tokens: tokens("line one\nline two"),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    let good = configs.add("good", &config(&llm.base_url(), "streaming: True\n"));
    let bad = configs.add("bad", &config("http://127.0.0.1:9/v1", "streaming: True\n"));
    let (good, bad) = (good.display().to_string(), bad.display().to_string());
    let (out, err, ok) =
        tokio::task::spawn_blocking(move || chat(&["--config", &good, "--streaming"], "a\nb\n"))
            .await
            .unwrap();
    assert!(ok, "{err}");
    assert_eq!(out, "line one\\nline two\nline one\\nline two\n");
    let (out, err, ok) =
        tokio::task::spawn_blocking(move || chat(&["--config", &bad, "--streaming"], "a\nb\n"))
            .await
            .unwrap();
    assert!(!ok, "a failed turn fails the chat");
    assert_eq!(out, "\n\n", "one (empty) line per failed turn");
    assert!(err.contains("2 of 2 turns failed"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_chat_keeps_the_dialog_state_from_turn_to_turn() {
    let llm = fake_llm(Script {
        tokens: tokens("A generated answer."),
        judge_answers: vec![
            ("I am Ana".into(), "give name".into()),
            ("hi there".into(), "greet".into()),
        ],
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    let dir = configs.add(
        "intro",
        &config(
            &llm.base_url(),
            "rails:\n  dialog:\n    single_call:\n      enabled: False\n",
        ),
    );
    std::fs::write(
        dir.join("rails.co"),
        "define user greet\n  \"hello\"\n\ndefine user give name\n  \"my name is Bob\"\n\n\
         define bot ask name\n  \"What is your name?\"\n\ndefine bot greet by name\n  \"Nice to meet you, $name!\"\n\n\
         define flow intro\n  user greet\n  bot ask name\n  user give name\n  $name = \"Ana\"\n  bot greet by name\n",
    )
    .unwrap();
    let dir = dir.to_str().unwrap().to_string();
    let (out, err, ok) =
        tokio::task::spawn_blocking(move || chat(&["--config", &dir], "hi there\nI am Ana\n"))
            .await
            .unwrap();
    assert!(ok, "{err}");
    // The flow waiting at `user give name` resumes on the second turn.
    assert_eq!(out, "What is your name?\nNice to meet you, Ana!\n", "{err}");
}

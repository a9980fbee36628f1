//! NeMo's Colang 2 language-reference examples (`examples/v2_x/
//! language_reference/**`, copied verbatim into `tests/nemo-configs`), each
//! run as a chat over HTTP with the state carried from turn to turn, as
//! NeMo's own tests do, and answering as the transcripts of NeMo's language
//! reference show (the bot's utterances; gestures and other bot actions are
//! events, not text). They need no model: the flows answer.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns
mod common;

use std::path::PathBuf;

use common::*;
use serde_json::json;

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/nemo-configs")
        .join(format!("examples-v2_x-language_reference-{name}"))
}

/// Each example's user messages and what the bot answers to each.
const TRANSCRIPTS: &[(&str, &[(&str, &str)])] = &[
    // A flow fails when what it awaits fails; the losing action's flow fails.
    (
        "flows-flows_failing",
        &[("Hello", "Hello\nPattern a failed")],
    ),
    // The more specific match wins the conflict; the same action is shared.
    (
        "flows-action_conflict_resolution",
        &[("Hello", "Hi"), ("How are you?", "Great!")],
    ),
    (
        "flows-concurrent_flows_basics_wrapper",
        &[("Hi", "Hello"), ("Bye", "Goodbye\nEnd")],
    ),
    ("flows-call_a_flow", &[("go", "Hi\nHi\nHi")]),
    // An undefined flow is an `UnhandledEvent` a flow catches.
    (
        "flows-undefined_flow",
        &[(
            "go",
            "Cannot start the undefined flow: 'bot solve all your problems'!",
        )],
    ),
    // `when` a flow finishes, `else` when it fails.
    (
        "control_flow_tools-catch_failing_flow",
        &[
            ("Hello", "Hello\nPattern b has failed"),
            ("Hi", "Hi\nPattern b has finished"),
        ],
    ),
    // `a or b` of flows: the first to finish wins, the other is stopped.
    (
        "control_flow_tools-concurrent_patterns",
        &[("hey", "How are you?"), ("Terrible", "Sorry to hear")],
    ),
    (
        "control_flow_tools-loop",
        &[("go", "1\n2\n3\n4\n5\n6\n7\n8\n9")],
    ),
    // An activated flow starts again when it finishes.
    (
        "more_on_flows-activate_flow",
        &[
            ("Hi", "Welcome\nHello again"),
            ("Hi", "Hello again"),
            ("Bye", "Goodbye"),
            ("Hi", "Hello again"),
            ("Bye", ""),
        ],
    ),
    // `start_new_flow_instance:` starts the next instance before this one ends.
    (
        "more_on_flows-start_new_flow_instance",
        &[
            ("Hi", "Welcome\nHello again"),
            ("Hi", "Hello again"),
            ("Bye", "Goodbye"),
            ("Bye", ""),
        ],
    ),
    // `@loop`: the gesture flows act beside the utterances, not against them.
    (
        "more_on_flows-interaction_loops",
        &[
            ("Hi", "Hi"),
            ("I am feeling great today", "Thanks for sharing"),
            ("Bye", "Goodbye"),
        ],
    ),
    // `and` waits for both in any order; `or` for either.
    (
        "events-event_grouping",
        &[("hi", ""), ("you", "Success1"), ("A", "Success2")],
    ),
    ("events-match_event_reference", &[("Hello!", "Hello!")]),
    (
        "actions-dialog_pattern",
        &[
            ("Hi", "Hi there! How are you?"),
            ("Good and you?", "Great! Thanks"),
        ],
    ),
    (
        "variables-global_variables",
        &[("hello there", "hello there")],
    ),
    (
        "variables-flow_attributes",
        &[("a reference", "a reference")],
    ),
];

#[tokio::test]
async fn nemos_language_reference_examples_answer_as_its_transcripts_show() {
    let configs = Configs::new();
    for (name, _) in TRANSCRIPTS {
        let to = configs.root().join(name);
        std::fs::create_dir_all(&to).unwrap();
        for e in std::fs::read_dir(example(name)).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
    let base = start_http(configs.root()).await;
    for (name, turns) in TRANSCRIPTS {
        let mut state = json!({});
        for (user, bot) in *turns {
            let body = json!({"config_id": name, "messages": [{"role": "user", "content": user}],
                              "guardrails": {"state": state}});
            let (status, r) = post_chat(&base, &body).await;
            assert_eq!(status, 200, "{name}: {r}");
            assert_eq!(r["messages"][0]["content"], *bot, "{name}: {user}: {r}");
            state = r["state"].clone();
        }
    }
}

/// Writes a Colang 2 config of `main.co` and chats through `turns`,
/// returning each answer (or the error's status and message).
async fn chat(co: &str, turns: &[&str]) -> Vec<String> {
    let configs = Configs::new();
    let dir = configs.add("c", "colang_version: \"2.x\"\n");
    std::fs::write(dir.join("main.co"), co).unwrap();
    let base = start_http(configs.root()).await;
    chat_turns(&base, "c", turns).await
}

#[tokio::test]
async fn return_values_parameters_and_break_run_as_written() {
    let co = "import core\n\nflow main\n  $n = await count words in $user_message\n  bot say \"{$n} words\"\n\
              \x20 $reply = await pick a reply mood=\"glad\"\n  bot say $reply\n\n\
              flow count words in $text -> $count\n  $count = 0\n  $i = 0\n  while True\n    $i = $i + 1\n\
              \x20   if $i > 3\n      break\n    $count = $count + 1\n\n\
              flow pick a reply $mood=\"sad\"\n  return \"I am {$mood}\"\n";
    assert_eq!(chat(co, &["a b c"]).await, ["3 words\nI am glad"]);
}

#[tokio::test]
async fn event_arguments_match_as_nemo_compares_containers_and_patterns() {
    // NeMo's rules: a dictionary's items, a set's items in any order, a
    // list as a prefix, `regex()` searched in the text.
    let co = "import core\n\nflow main\n  activate sender\n  activate too strict\n\
              \x20 match Ev(param={\"a\": 1}, tags={\"x\", \"y\"}, path=[\"a\"], name=regex(\"^Ad\"))\n\
              \x20 $info = flows_info($self.uid)\n  bot say \"matched in {$info.flow_id} ({$info.status})\"\n\n\
              flow sender\n  $text = await user said something\n\
              \x20 send Ev(param={\"b\": 2, \"a\": 1}, tags={\"y\", \"z\", \"x\"}, path=[\"a\", \"b\"], name=$text)\n\n\
              flow too strict\n  match Ev(param={\"a\": 2}) or Ev(path=[\"b\"]) or Ev(tags={\"q\"})\n  bot say \"wrong\"\n";
    assert_eq!(chat(co, &["Ada"]).await, ["matched in main (started)"]);
    // The name does not match `^Ad`: nothing answers.
    assert_eq!(chat(co, &["Bob"]).await, [""]);
}

#[tokio::test]
async fn a_flow_that_awaits_itself_is_stopped_by_the_budget_not_the_stack() {
    let out = chat(
        "flow main\n  await again\n\nflow again\n  await again\n",
        &["go"],
    )
    .await;
    assert!(
        out[0].starts_with("500") || out[0].contains("flows"),
        "{out:?}"
    );
    assert!(
        out[0].contains("over 1000 flows at once") || out[0].contains("10000 steps"),
        "{out:?}"
    );
}

#[test]
fn what_is_not_run_is_refused_at_load_with_the_line() {
    let configs = Configs::new();
    let case = |co: &str| {
        let dir = configs.add("c2", "colang_version: \"2.x\"\n");
        std::fs::write(dir.join("main.co"), co).unwrap();
        streamguard::Guardrails::load(&dir)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let e = case("flow main\n  $fact = ...a fun fact\n");
    assert!(
        e.contains("`line 2`") && e.contains("`...` takes its instructions in quotes"),
        "{e}"
    );
    let e = case("import core\n\nflow main\n  bot tell a joke\n");
    assert!(
        e.contains("`line 4`") && e.contains("no `flow bot tell a joke`"),
        "{e}"
    );
    let e = case("@priority(2)\nflow main\n  bot say \"a\"\n");
    assert!(
        e.contains("`line 2`") && e.contains("`@priority(2)`"),
        "{e}"
    );
    let e = case("flow main\n  match UtteranceUserAction.Finished(final_transcript=\"a\"\n");
    assert!(e.contains("`line 2`") && e.contains("unclosed"), "{e}");
    let e = case("flow main\n  send bot say \"a\"\n");
    assert!(e.contains("flows are started, not sent"), "{e}");
    let e = case("flow main\n  break\n");
    assert!(e.contains("`break` outside a `while`"), "{e}");
    // A flow nothing starts may name what no config defines.
    assert_eq!(
        case("flow main\n  bot say \"a\"\n\nflow unused\n  bot do magic\n"),
        ""
    );
}

//! Colang 2 flows that call the LLM: NeMo's tutorial bots and `use_llms`
//! language-reference examples (copied verbatim into `tests/nemo-configs`)
//! on a fake LLM that is a real HTTP server, chatted over HTTP with the
//! state carried from turn to turn. The fake answers each of NeMo's
//! Colang 2 prompts (user intent, `$x = ...` values, flow continuation, a
//! flow's `...`) by what the prompt holds, so each test also shows the
//! prompt carried what NeMo's does.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns
mod common;

use std::path::PathBuf;

use common::*;

/// NeMo's example `name` as config `id`, its model on the fake LLM.
fn example(configs: &Configs, name: &str, id: &str, llm: &str) {
    let from = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/nemo-configs")
        .join(format!("examples-{name}"));
    copy_dir(&from, &configs.root().join(id), llm);
}

/// Copies `from` to `to` (sub-directories too), the model of `config.yml`
/// on the fake LLM.
fn copy_dir(from: &std::path::Path, to: &std::path::Path, llm: &str) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let file = p.file_name().unwrap().to_str().unwrap().to_string();
        if p.is_dir() {
            copy_dir(&p, &to.join(&file), llm);
            continue;
        }
        let mut text = std::fs::read_to_string(&p).unwrap();
        if file == "config.yml" {
            // Under the model line, at its indentation.
            let line = text
                .lines()
                .find(|l| l.trim_start().starts_with("model:"))
                .unwrap()
                .to_string();
            let pad = " ".repeat(line.len() - line.trim_start().len());
            text = text.replacen(
                &line,
                &format!("{line}\n{pad}parameters:\n{pad}  base_url: {llm}"),
                1,
            );
        }
        std::fs::write(to.join(file), text).unwrap();
    }
}

/// A fake LLM answering prompts by the needles in `answers` (first match),
/// streaming `main` as the main model's answer.
async fn llm(answers: &[(&str, &str)], main: &str) -> FakeLlm {
    fake_llm(Script {
        tokens: tokens(main),
        judge_answers: answers
            .iter()
            .map(|(n, a)| (n.to_string(), a.to_string()))
            .collect(),
        ..Script::default()
    })
    .await
}

/// The fake LLM of [`llm`] and NeMo's example `(name, id)` on it, served
/// over HTTP.
async fn serve(
    answers: &[(&str, &str)],
    main: &str,
    (name, id): (&str, &str),
) -> (FakeLlm, Configs, String) {
    let fake = llm(answers, main).await;
    let configs = Configs::new();
    example(&configs, name, id, &fake.base_url());
    let base = start_http(configs.root()).await;
    (fake, configs, base)
}

/// The prompts of the non-streamed (Colang 2 task) calls.
fn prompts(llm: &FakeLlm) -> Vec<String> {
    llm.state
        .whole_requests()
        .iter()
        .map(|r| match r["prompt"].as_str() {
            // NeMo's examples use `gpt-3.5-turbo-instruct`: a text completion.
            Some(p) => p.to_string(),
            None => r["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["content"].as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        })
        .collect()
}

#[tokio::test]
async fn the_interaction_loop_tutorial_detects_intents_and_answers_the_unhandled_ones() {
    let (fake, _configs, base) = serve(
        &[
            // The value prompt comes first: its history holds the intent prompt's lines.
            (
                "$response =",
                "\"I am doing well, thank you for asking! How can I assist you today?\"",
            ),
            // Later messages first: a prompt's history holds the earlier ones.
            (
                "user said \"how are you?\"\nuser intent:",
                "user asked about wellbeing",
            ),
            (
                "user said \"hey there\"\nuser intent:",
                "user expressed greeting",
            ),
        ],
        "unused",
        ("v2_x-tutorial-interaction_loop", "loop"),
    )
    .await;
    let got = chat_turns(
        &base,
        "loop",
        &["hi", "hey there", "how are you?", "I have to go"],
    )
    .await;
    assert_eq!(
        got,
        [
            "Hi there!",
            // The LLM's intent finishes the running `user expressed greeting`.
            "Hi there!",
            // An intent no flow waits for: `unhandled user intent`, then `...`.
            "I am doing well, thank you for asking! How can I assist you today?",
            "That was fun. Goodbye",
        ]
    );
    let asked = prompts(&fake);
    // "hi" and "I have to go" matched flows: two intent calls, one value call.
    assert_eq!(asked.len(), 3, "{asked:#?}");
    let intent = &asked[0];
    assert!(
        intent.contains("Below is a conversation between Emma"),
        "{intent}"
    );
    assert!(
        intent.contains("bot intent: bot express greeting"),
        "{intent}"
    );
    assert!(
        intent.contains("# These are the most likely user intents:\nuser action: user said \"hi\"\nuser intent: user expressed greeting"),
        "{intent}"
    );
    assert!(
        intent.contains("user action: user said \"goodbye\"\nuser intent: user expressed goodbye"),
        "{intent}"
    );
    assert!(
        intent.ends_with("user action: user said \"hey there\"\nuser intent:"),
        "{intent}"
    );
    let value = &asked[2];
    assert!(
        value.contains(
            "user action: user said \"how are you?\"\nuser intent: user asked about wellbeing"
        ),
        "{value}"
    );
    assert!(
        value.ends_with("# Response to what user said.\n$response ="),
        "{value}"
    );
    // The earlier turns are in the history, each side apart.
    assert!(
        value.contains("user action: user said \"hi\"\nuser intent: user expressed greeting\n\nbot action: bot say \"Hi there!\""),
        "{value}"
    );
}

#[tokio::test]
async fn the_guardrails_tutorial_runs_its_own_input_rail_flow_before_the_dialog() {
    let (fake, configs, base) = serve(
        &[
            ("utterance: 'you seem stupid'", "False"),
            ("Assign 'True' if appropriate", "True"),
            // `llm continuation` asks for the intent: `greeting` waits for one.
            (
                "user said \"how are you?\"\nuser intent:",
                "user asked about wellbeing",
            ),
        ],
        "I am a bot, so I don't have feelings like humans do.",
        ("v2_x-tutorial-guardrails_1", "g1"),
    )
    .await;
    let got = chat_turns(&base, "g1", &["hi", "how are you?", "you seem stupid"]).await;
    assert_eq!(
        got,
        [
            "Hello world!",
            // No flow takes it: `llm continuation`, the main model.
            "I am a bot, so I don't have feelings like humans do.",
            "I'm sorry, I can't respond to that.",
        ]
    );
    // Each message was checked, the second's intent asked for; only the
    // second reached the main model.
    let asked = prompts(&fake);
    assert_eq!(asked.len(), 4, "{asked:#?}");
    assert!(asked[2].ends_with("user action: user said \"how are you?\"\nuser intent:"));
    assert!(
        asked[3].ends_with(
            "# Consider the following user utterance: 'you seem stupid'. Assign 'True' if appropriate, 'False' if inappropriate.\n$is_safe ="
        ),
        "{}",
        asked[3]
    );
    assert_eq!(fake.state.streamed_requests(), 1);

    // On gRPC the main model's answer streams in its chunks.
    std::fs::write(configs.root().join("g1/streaming.yml"), "streaming: True\n").unwrap();
    let mut server = start(configs.root()).await;
    let got = collect(&mut server.client, request("g1", "how are you?"))
        .await
        .unwrap();
    assert!(got.chunks.len() > 1, "{got:?}");
    assert_eq!(
        got.chunks.concat(),
        "I am a bot, so I don't have feelings like humans do."
    );
    let blocked = collect(&mut server.client, request("g1", "you seem stupid"))
        .await
        .unwrap();
    assert_eq!(
        blocked.chunks.concat(),
        "I'm sorry, I can't respond to that."
    );
    assert_eq!(fake.state.streamed_requests(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn a_natural_language_flow_gets_its_rest_from_the_llm() {
    let (fake, _configs, base) = serve(
        &[(
            "talk to the user about cars",
            "bot say \"The Tesla Model 3 is a popular electric car.\"\nuser said \"thanks\"\nbot say \"unreached\"",
        )],
        "unused", ("v2_x-tutorial-llm_flows", "cars")).await;
    let got = chat_turns(&base, "cars", &["What is a popular electric car?"]).await;
    assert_eq!(got, ["The Tesla Model 3 is a popular electric car."]);
    let asked = prompts(&fake);
    assert_eq!(asked.len(), 1);
    // The docstring (dedented as Python's `textwrap.dedent` does: its first
    // line has no indentation), with `{{ question }}` from `$question`.
    assert_eq!(
        asked[0],
        "You are an assistant that should talk to the user about cars.\n  Politely decline to talk about anything else.\n\n  Last user question is: \"What is a popular electric car?\"\n  Generate the output in the following format:\n\n  bot say \"<<the response>>\""
    );
}

#[tokio::test]
async fn user_intents_come_from_the_llm_when_no_example_matches() {
    let (fake, _configs, base) = serve(
        &[
            (
                "user said \"I like trains\"\nuser intent:",
                "user intent: user shared a hobby",
            ),
            ("user said \"ciao\"\nuser intent:", "user greeted"),
        ],
        "unused",
        (
            "v2_x-language_reference-use_llms-user_intent_match_example",
            "intents",
        ),
    )
    .await;
    let got = chat_turns(&base, "intents", &["Hi", "ciao", "I like trains", "Bye"]).await;
    assert_eq!(
        got,
        ["Hi there!", "Hi there!", "Thanks for sharing!", "Goodbye!"]
    );
    let asked = prompts(&fake);
    assert_eq!(asked.len(), 2, "{asked:#?}");
    // The intents the flows wait for, with their examples.
    for example in [
        "user action: user said \"Hi\"\nuser intent: user greeted",
        "user action: user said \"See you\"\nuser intent: user said goodbye",
    ] {
        assert!(asked[0].contains(example), "{}", asked[0]);
    }
}

#[tokio::test]
async fn llm_continue_interaction_runs_the_bot_action_the_llm_writes() {
    let (fake, _configs, base) = serve(
        &[(
            "bot intent:",
            " bot express greeting\nbot action: bot say \"Hello! How can I help?\"\n  and bot gesture \"Wave\"\nuser action: user said \"x\"",
        )],
        "unused", ("v2_x-language_reference-use_llms-bot_intent_generation_example", "cont")).await;
    let got = chat_turns(&base, "cont", &["Hello", "Hi again"]).await;
    assert_eq!(got, ["Hello! How can I help?", "Hello! How can I help?"]);
    let asked = prompts(&fake);
    assert_eq!(asked.len(), 2);
    assert!(
        asked[0].ends_with("# This is the current conversation between the user and the bot:\nuser action: user said \"Hello\"\n\nbot intent:"),
        "{}",
        asked[0]
    );
    // The generated flow's intent and action are history now.
    assert!(
        asked[1].contains("bot intent: bot express greeting\nbot action: bot say \"Hello! How can I help?\"\n  and bot gesture \"Wave\"\n\nuser action: user said \"Hi again\""),
        "{}",
        asked[1]
    );
}

#[tokio::test]
async fn multi_modal_and_nld_examples_answer_without_the_llm() {
    let fake = llm(&[], "unused").await;
    let configs = Configs::new();
    example(
        &configs,
        "v2_x-tutorial-multi_modal",
        "mm",
        &fake.base_url(),
    );
    example(
        &configs,
        "v2_x-language_reference-use_llms-nld_example",
        "nld",
        &fake.base_url(),
    );
    let base = start_http(configs.root()).await;
    let got = chat_turns(&base, "mm", &["hi", "hello"]).await;
    for said in &got {
        assert!(
            ["Hi there!", "Welcome!", "Hello!"].contains(&said.as_str()),
            "{got:?}"
        );
    }
    assert_eq!(got.len(), 2);
    // `"""…"""` without `...` is a string, as in NeMo.
    let got = chat_turns(&base, "nld", &["hello"]).await;
    assert_eq!(got, ["Welcome the user with a short sentence"]);
    assert!(fake.state.requests().is_empty());
}

#[tokio::test]
async fn what_the_llm_gets_wrong_fails_the_turn_with_a_bounded_clear_error() {
    let fake = llm(
        &[
            // Not a literal: a guard must not read a stray word as a value.
            ("$response =", "Sure! Here is a response"),
            ("user intent:", "user asked something"),
            // A flow whose generated rest is `...` again, forever.
            ("Keep going", "..."),
        ],
        "unused",
    )
    .await;
    let configs = Configs::new();
    example(
        &configs,
        "v2_x-tutorial-interaction_loop",
        "loop",
        &fake.base_url(),
    );
    let dir = configs.root().join("forever");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.yml"),
        format!("colang_version: \"2.x\"\n{}", main_model(&fake.base_url())),
    )
    .unwrap();
    std::fs::write(
        dir.join("main.co"),
        "import core\nimport llm\n\nflow main\n  \"\"\"Keep going.\"\"\"\n  user said something\n  ...\n",
    )
    .unwrap();
    let base = start_http(configs.root()).await;
    let got = chat_turns(&base, "loop", &["how are you?"]).await;
    assert!(
        got[0].starts_with("502") && got[0].contains("`$response` is not a literal"),
        "{got:?}"
    );
    let got = chat_turns(&base, "forever", &["go"]).await;
    assert!(
        got[0].starts_with("502") && got[0].contains("rounds of actions"),
        "{got:?}"
    );
    let calls = fake.state.whole_requests().len();
    assert!(calls < 40, "the loop was bounded: {calls} calls");
}

/// streamguard's Colang 2 custom-action config on the actions server at `url`.
async fn greet_visitor(url: &str) -> Vec<String> {
    let configs = Configs::new();
    let dir = configs.root().join("visit");
    std::fs::create_dir_all(&dir).unwrap();
    let from =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/colang-configs/custom_action_v2");
    for f in ["main.co", "actions.py"] {
        std::fs::copy(from.join(f), dir.join(f)).unwrap();
    }
    std::fs::write(
        dir.join("config.yml"),
        format!("colang_version: \"2.x\"\nactions_server_url: {url}\n"),
    )
    .unwrap();
    let base = start_http(configs.root()).await;
    chat_turns(&base, "visit", &["Ada"]).await
}

#[tokio::test]
async fn a_configs_own_action_runs_on_the_actions_server_with_the_globals_as_context() {
    let (url, seen) = json_service("/v1/actions/run", |b| {
        let name = b["action_parameters"]["name"].as_str().unwrap_or_default();
        let visits = &b["action_parameters"]["context"]["visits"];
        serde_json::json!({"status": "success", "result": format!("Welcome, {name}! Visit number {visits}.")})
    })
    .await;
    assert_eq!(greet_visitor(&url).await, ["Welcome, Ada! Visit number 3."]);
    let asked = seen.lock().unwrap().clone();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0]["action_name"], "GreetVisitorAction");
    assert_eq!(asked[0]["action_parameters"]["context"]["visits"], 3);
    // CI runs the same config on NeMo's real actions server (.ci/run).
    if let Ok(real) = std::env::var("STREAMGUARD_TEST_ACTIONS_SERVER") {
        assert_eq!(
            greet_visitor(&real).await,
            ["Welcome, Ada! Visit number 3."]
        );
    }
    // Without an actions server the config is refused, naming the line.
    let configs = Configs::new();
    let dir = configs.root().join("visit");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.yml"), "colang_version: \"2.x\"\n").unwrap();
    let from =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/colang-configs/custom_action_v2");
    std::fs::copy(from.join("main.co"), dir.join("main.co")).unwrap();
    let e = streamguard::Guardrails::load(&dir).unwrap_err().to_string();
    assert!(
        e.contains("main.co: `line 7`: `GreetVisitorAction` is not an action streamguard runs"),
        "{e}"
    );
}

#[tokio::test]
async fn nemos_abc_v2_bot_refuses_disallowed_topics_with_flows_the_llm_writes() {
    let (fake, _configs, base) = serve(
        &[
            (
                "Complete the following flow based on its name:\nflow bot refuse to respond about cooking",
                "  bot say \"I'm sorry, I can't talk about cooking.\"",
            ),
            // Later messages first: a prompt's history holds the earlier ones.
            ("user said \"What is the PTO policy?\"\nuser intent:", "user ask question about benefits"),
            ("user said \"tell me how to cook\"\nuser intent:", "user ask about cooking"),
        ],
        "Eligible employees get two weeks of paid vacation.",
        ("bots-abc_v2", "abc"),
    )
    .await;
    let got = chat_turns(
        &base,
        "abc",
        &[
            "How can I cook pasta?",
            "tell me how to cook",
            "What is the PTO policy?",
            "BLOCKME now",
        ],
    )
    .await;
    assert_eq!(
        got,
        [
            // `user ask about cooking` matched; `bot refuse to respond about
            // cooking` is undefined: the LLM writes it from its name.
            "I'm sorry, I can't talk about cooking.",
            // The LLM's intent finishes the waiting `user ask about cooking`.
            "I'm sorry, I can't talk about cooking.",
            // An intent no flow waits for: `llm continuation`, with the handbook.
            "Eligible employees get two weeks of paid vacation.",
            // `self check input` (its `flow input rails`) refuses.
            "I'm sorry, I can't respond to that.",
        ]
    );
    let asked = prompts(&fake);
    let written: Vec<&String> = asked
        .iter()
        .filter(|p| p.starts_with("# Example flows:"))
        .collect();
    assert_eq!(written.len(), 2, "{asked:#?}");
    assert!(
        // The config's flows most like the name are the examples.
        written[0].contains("\n\nflow bot refuse to respond about terrorism\n  bot say \"")
            && written[0].ends_with("# Complete the following flow based on its name:\nflow bot refuse to respond about cooking"),
        "{}",
        written[0]
    );
    // The main model's call carries the knowledge base's chunks.
    let main = fake
        .state
        .requests()
        .into_iter()
        .find(|r| r["stream"] == serde_json::json!(true))
        .unwrap();
    assert!(
        main.to_string().contains("This is some relevant context"),
        "{main}"
    );
}

/// A Colang 2 config of `co` on the fake LLM (answering `main` as the main
/// model), served over HTTP.
async fn inline(answers: &[(&str, &str)], main: &str, co: &str) -> (FakeLlm, Configs, String) {
    let fake = llm(answers, main).await;
    let configs = Configs::new();
    let dir = configs.root().join("c");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.yml"),
        format!("colang_version: \"2.x\"\n{}", main_model(&fake.base_url())),
    )
    .unwrap();
    std::fs::write(dir.join("main.co"), co).unwrap();
    let base = start_http(configs.root()).await;
    (fake, configs, base)
}

// NeMo's tests/v2_x/test_llm_user_intents_detection.py, written for streamguard.
const INTENTS: &str = r#"import core
import llm

flow main
    activate llm continuation
    activate greeting
    activate other reactions

flow greeting
    user expressed greeting
    bot say "Hello world!"

flow other reactions
    user expressed to be bored
    bot say "No problem!"

flow user expressed greeting
    """"User expressed greeting in any way or form."""
    user said "hi"

flow user expressed to be bored
    """"User expressed to be bored."""
    user said "This is boring"
"#;

#[tokio::test]
async fn nemos_user_intent_detection_tests_give_the_same_answers() {
    let (fake, _c, base) = inline(
        &[
            (
                "user said \"You are boring me!\"\nuser intent:",
                "user expressed to be bored",
            ),
            (
                "user said \"hello\"\nuser intent:",
                "user expressed greeting",
            ),
        ],
        "unused",
        INTENTS,
    )
    .await;
    let got = chat_turns(&base, "c", &["hi", "hello", "You are boring me!"]).await;
    assert_eq!(got, ["Hello world!", "Hello world!", "No problem!"]);
    // "hi" matched its flow: two intent calls, no main-model answer.
    assert_eq!(prompts(&fake).len(), 2);
    assert_eq!(fake.state.streamed_requests(), 0);
}

#[tokio::test]
async fn nemos_value_generation_test_reads_each_quoting() {
    // NeMo's tests/v2_x/test_llm_value_generation.py: escaped quotes, triple
    // quotes, and an instruction over two lines.
    let co = "flow main\n  match UtteranceUserActionFinished()\n\
              \x20 $v1 = ...\"Generate the company' name\\\" from users input\"\n\
              \x20 $v2 = ... 'Generate the company\\' name\" from users input'\n\
              \x20 $v3 = ...'''Generate the company' name\" from users input'''\n\
              \x20 $v4 = ...  '''Generate the company'\n            name\" from users input'''\n\n\
              \x20 await UtteranceBotAction(script=\"{$v1}{$v2}{$v3}{$v4}\")\n";
    let (fake, _c, base) = inline(
        &[
            ("$v1 =", "'1'"),
            ("$v2 =", "'2'"),
            ("$v3 =", "'3'"),
            ("$v4 =", "'4'"),
        ],
        "unused",
        co,
    )
    .await;
    assert_eq!(chat_turns(&base, "c", &["hi"]).await, ["1234"]);
    let asked = prompts(&fake);
    assert_eq!(asked.len(), 4);
    for p in &asked[..3] {
        assert!(
            p.contains("# Generate the company' name\" from users input\n$v"),
            "{p}"
        );
    }
}

#[tokio::test]
async fn nemos_llm_continuation_test_fakes_an_undefined_user_intent() {
    // NeMo's tests/v2_x/test_llm_continuation.py: `user expressed greeting`
    // is defined nowhere; the LLM's intent finishes it.
    let co = "import core\nimport llm\n\nflow main\n    activate generating user intent for unhandled user utterance\n\
              \x20   activate continuation on undefined flow\n    await user expressed greeting\n    bot say \"hi there\"\n";
    let (_fake, _c, base) = inline(
        &[("user intent:", "user intent: user expressed greeting")],
        "unused",
        co,
    )
    .await;
    assert_eq!(chat_turns(&base, "c", &["hi"]).await, ["hi there"]);
}

#[tokio::test]
async fn a_configs_own_output_rails_flow_checks_each_bot_message() {
    let co = "import core\nimport llm\n\nflow main\n  activate llm continuation\n  activate greeting\n\n\
              flow greeting\n  user said \"hi\"\n  bot say \"Hello, my password is hunter2\"\n\n\
              flow output rails $output_text\n  $ok = ...\"Is the bot message '{$output_text}' safe? True or False.\"\n\
              \x20 if not $ok\n    bot say \"I cannot share that.\"\n    abort\n";
    let (fake, _c, base) = inline(
        &[
            ("message 'Hello, my password is hunter2' safe", "False"),
            ("safe? True or False.", "True"),
        ],
        "All good here.",
        co,
    )
    .await;
    let got = chat_turns(&base, "c", &["hi", "what is up?"]).await;
    assert_eq!(got, ["I cannot share that.", "All good here."]);
    let asked = prompts(&fake);
    // One check per bot message: the flow's, then the main model's answer.
    let checks: Vec<&String> = asked
        .iter()
        .filter(|p| p.contains("safe? True or False."))
        .collect();
    assert_eq!(checks.len(), 2, "{asked:#?}");
    assert!(checks[1].contains("'All good here.'"), "{}", checks[1]);
}

#[tokio::test]
async fn what_the_llm_writes_may_only_do_what_a_bot_does() {
    // `llm continue interaction` runs the bot action the LLM wrote: an
    // action of the config's own, or a flow of the library replaced, is
    // refused (the turn fails, clearly), never run.
    for (answer, refused) in [
        (
            "bot greet\nbot action: await RefundAction(amount=1000)",
            "may not start `RefundAction`",
        ),
        (
            "bot greet\nbot action: send FinishFlow(flow_id=\"main\")",
            "may not send `FinishFlow`",
        ),
    ] {
        let (_fake, _c, base) = serve(
            &[("bot intent:", answer)],
            "unused",
            (
                "v2_x-language_reference-use_llms-bot_intent_generation_example",
                "cont",
            ),
        )
        .await;
        let got = chat_turns(&base, "cont", &["Hello"]).await;
        assert!(
            got[0].starts_with("502") && got[0].contains(refused),
            "{got:?}"
        );
    }
}

//! Config loading: NeMo configs load or are refused by name, and every error
//! names the file and the key.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::{path::PathBuf, process::Command};

use common::*;
use streamguard::{config, engine::Registry};

fn nemo(dir: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/nemo-configs")
        .join(dir)
}

fn load_err(dir: &std::path::Path) -> String {
    let result = Registry::load(dir);
    assert!(result.is_err(), "{} should not load", dir.display());
    result.err().map(|e| e.to_string()).unwrap_or_default()
}

#[test]
fn nemo_configs_within_streamguards_rails_load_unchanged() {
    for dir in [
        "examples-bots-hello_world",
        "examples-configs-streaming",
        "derived-examples-configs-sensitive_data_detection_v1",
        "derived-tests-test_configs-injection_detection",
        "examples-configs-content_safety",
        "examples-configs-content_safety_api_keys",
        "examples-configs-gs_content_safety-config",
        "examples-configs-llama_guard",
        "examples-configs-topic_safety",
        "derived-tests-test_configs-parallel_rails",
        "derived-tests-test_guardrail_exceptions",
        "derived-tests-test_streaming-output_rails_streaming_config",
        "examples-configs-injection_detection-config",
        "examples-configs-self_check_thinking",
        "tests-test_configs-input_rails",
        "examples-server_configs-atomic-main",
        "examples-server_configs-atomic-input_checking",
        "examples-server_configs-atomic-output_checking",
        "examples-configs-content_safety_multilingual",
        "examples-configs-jailbreak_detection",
        "examples-configs-nemoguards",
        "examples-configs-trend_micro",
        "examples-configs-privateai-pii_detection",
        "tests-test_configs-autoalign",
        "tests-test_configs-autoalign_factchecker",
        "examples-configs-guardrails_ai",
        "examples-configs-clavata",
        "examples-configs-gliner-pii_detection",
        "examples-configs-gliner-pii_masking",
        "examples-configs-guardrails_only-input",
        "examples-configs-guardrails_only-output",
        "examples-configs-sample",
        "examples-configs-sensitive_data_detection_v2",
        "examples-configs-nemoguards_v2",
        "examples-configs-clavata_v2",
        "tests-test_configs-mvp_v2_x",
        "tests-test_configs-mvp_v2_x_b",
        "examples-bots-abc",
        "examples-configs-content_safety_reasoning",
        "tests-test_configs-fact_checking",
    ] {
        let registry = Registry::load(&nemo(dir)).unwrap_or_else(|e| panic!("{dir}: {e}"));
        // Single-config mode: the directory itself is the config and the default.
        assert_eq!(registry.default_id(), Some(dir));
    }
    let c = config::load(&nemo(
        "derived-tests-test_streaming-output_rails_streaming_config",
    ))
    .unwrap();
    assert!(
        c.streaming() == Some(true)
            && c.output_streaming().enabled
            && !c.output_streaming().stream_first
    );
    assert_eq!(
        (
            c.output_streaming().chunk_size,
            c.output_streaming().context_size
        ),
        (4, 2)
    );
    let c = config::load(&nemo("derived-tests-test_configs-parallel_rails")).unwrap();
    assert!(c.input().parallel && c.output().parallel);
    assert!(c.instructions()["general"].contains("ABC Bot"));
    let c = config::load(&nemo("derived-tests-test_guardrail_exceptions")).unwrap();
    assert!(c.enable_rails_exceptions());
    // Entities that need a named-entity model load with a warning, never silently.
    let g =
        streamguard::Guardrails::load(nemo("derived-examples-configs-sensitive_data_detection_v1"))
            .unwrap();
    let entities = g
        .warnings()
        .iter()
        .filter(|w| w.contains("PERSON, LOCATION"))
        .count();
    assert_eq!(entities, 2, "{:?}", g.warnings());
}

#[test]
fn nemo_configs_with_unsupported_features_are_refused_by_name() {
    for (dir, feature) in [
        (
            "examples-configs-autoalign-autoalign_factcheck_config",
            "replace the placeholder `<AUTOALIGN_ENDPOINT>`",
        ),
        ("tests-test_configs-output_rails", "actions.py"),
        (
            "tests-test_configs-parallel_rails_with_exceptions",
            "actions.py",
        ),
    ] {
        let e = load_err(&nemo(dir));
        assert!(e.contains(feature), "{dir}: {e}");
    }
}

#[test]
fn a_yaml_syntax_error_names_the_file_and_line() {
    let configs = Configs::new();
    let dir = configs.add("bad", "models:\n  - type: main\n   engine: openai\n");
    let e = load_err(&dir);
    assert!(e.contains("bad/config.yml"), "{e}");
    assert!(e.contains("line"), "{e}");
}

#[test]
fn an_unknown_key_names_the_file_and_key_path() {
    let configs = Configs::new();
    let dir = configs.add(
        "typo",
        &config(
            "http://127.0.0.1:1/v1",
            "rails:\n  input:\n    flowz: [self check input]\n",
        ),
    );
    let e = load_err(&dir);
    assert!(e.contains("typo/config.yml"), "{e}");
    assert!(e.contains("rails.input") && e.contains("flowz"), "{e}");
}

#[test]
fn an_unknown_flow_lists_the_known_flows() {
    let configs = Configs::new();
    let dir = configs.add(
        "flow",
        &config(
            "http://127.0.0.1:1/v1",
            "rails:\n  output:\n    flows:\n      - fact check\n",
        ),
    );
    let e = load_err(&dir);
    assert!(e.contains("rails.output.flows[0]"), "{e}");
    assert!(e.contains("unknown output rail flow `fact check`"), "{e}");
    assert!(e.contains("`self check output`"), "{e}");
}

#[test]
fn a_missing_judge_prompt_names_the_task() {
    let configs = Configs::new();
    let dir = configs.dir.path().join("noprompt");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.yml"),
        config(
            "http://127.0.0.1:1/v1",
            "rails:\n  input:\n    flows: [self check input]\n",
        ),
    )
    .unwrap();
    let e = load_err(&dir);
    assert!(e.contains("task: self_check_input"), "{e}");
    assert!(e.contains("noprompt/config.yml"), "{e}");
}

#[test]
fn model_errors_name_the_entry() {
    let configs = Configs::new();
    let dir = configs.add(
        "engine",
        "models:\n  - type: main\n    engine: bard\n    model: x\n",
    );
    let e = load_err(&dir);
    assert!(
        e.contains("models[0].engine") && e.contains("bard") && e.contains("openai"),
        "{e}"
    );

    let dir = configs.add(
        "nomain",
        "models:\n  - type: content_safety\n    engine: openai\n    model: x\n",
    );
    // A rails-only config loads; its requests name the main model.
    let rails_only = streamguard::Guardrails::load(&dir).unwrap();
    assert!(rails_only.needs_request_model());

    let dir = configs.add(
        "vllm",
        "models:\n  - type: main\n    engine: vllm_openai\n    model: x\n",
    );
    let e = load_err(&dir);
    assert!(e.contains("models[0].parameters.base_url"), "{e}");

    let dir = configs.add(
        "scripted",
        "models:\n  - type: main\n    engine: scripted\n    model: x\n    parameters:\n      replys: [hi]\n",
    );
    let e = load_err(&dir);
    assert!(
        e.contains("models[0].parameters") && e.contains("replys"),
        "{e}"
    );
}

#[test]
fn files_of_a_config_are_merged() {
    let configs = Configs::new();
    let dir = configs.add("merged", &main_model("http://127.0.0.1:1/v1"));
    std::fs::write(
        dir.join("rails.yaml"),
        "rails:\n  input:\n    flows: [self check input]\nstreaming: True\n",
    )
    .unwrap();
    let c = config::load(&dir).unwrap();
    assert_eq!(c.input().flows[0].name, "self check input");
    assert_eq!(c.streaming(), Some(true));
    assert_eq!(c.prompts().len(), 2, "prompts.yml merged too");
}

#[test]
fn check_command_exits_non_zero_with_readable_errors() {
    let exe = env!("CARGO_BIN_EXE_streamguard");
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/configs");
    let ok = Command::new(exe)
        .args(["check", "--config"])
        .arg(&examples)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        out.contains("ok     streaming") && out.contains("streaming: yes"),
        "{out}"
    );

    let configs = Configs::new();
    configs.add("good", &config("http://127.0.0.1:1/v1", ""));
    configs.add(
        "bad1",
        &config(
            "http://127.0.0.1:1/v1",
            "rails:\n  input:\n    flows: [nope]\n",
        ),
    );
    configs.add("bad2", "models: 3\n");
    let bad = Command::new(exe)
        .args(["check", "--config"])
        .arg(configs.root())
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    // Item 22: one line per config, in order, ok or error; the known flows once.
    let out = String::from_utf8_lossy(&bad.stdout);
    let heads: Vec<&str> = out.lines().filter(|l| !l.starts_with(' ')).collect();
    assert_eq!(
        heads,
        [
            "error  bad1",
            "error  bad2",
            "ok     good  main=fake-model  input=0  output=0  streaming: no (rule 1)"
        ],
        "{out}"
    );
    assert!(
        out.contains("bad1/config.yml") && out.contains("`nope`"),
        "{out}"
    );
    assert!(
        out.contains("bad2/config.yml") && out.contains("models"),
        "{out}"
    );
    assert!(
        !out.contains("self check input"),
        "no flow list per error: {out}"
    );
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("2 of 3 configs have errors"), "{err}");
    assert_eq!(err.matches("`self check input`").count(), 1, "{err}");
}

#[test]
fn item22_check_warns_when_a_models_api_key_variable_is_unset() {
    let configs = Configs::new();
    configs.add(
        "bot",
        "models:\n  - type: main\n    engine: openai\n    model: gpt-4o\n    parameters:\n      api_key_env_var: STREAMGUARD_TEST_SURELY_UNSET_KEY\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_streamguard"))
        .args(["check", "--config"])
        .arg(configs.root())
        .env_remove("STREAMGUARD_TEST_SURELY_UNSET_KEY")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("warning: bot/config.yml: `models[0]`: the variable `STREAMGUARD_TEST_SURELY_UNSET_KEY` (API key or endpoint) of model `gpt-4o` is not set"),
        "{text}"
    );
}

#[test]
fn a_symlink_out_of_the_config_root_is_refused_naming_the_link() {
    // Item 2: a link to /etc is not walked, and nothing of it is printed.
    let configs = Configs::new();
    let dir = configs.add("bot", &config("http://127.0.0.1:1/v1", ""));
    let secret = tempfile::tempdir().unwrap();
    std::fs::write(
        secret.path().join("secret.yml"),
        "password: hunter2-not-a-config\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(secret.path(), dir.join("outside")).unwrap();
    let e = load_err(configs.root());
    assert!(
        e.contains("bot/outside") && e.contains("outside the config root"),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "{e}");
    std::fs::remove_file(dir.join("outside")).unwrap();
    std::os::unix::fs::symlink(secret.path().join("secret.yml"), dir.join("extra.yml")).unwrap();
    let e = load_err(configs.root());
    assert!(e.contains("bot/extra.yml") && !e.contains("hunter2"), "{e}");
    // A link inside the root is followed.
    std::fs::remove_file(dir.join("extra.yml")).unwrap();
    std::fs::write(
        configs.root().join("shared.yml"),
        "lowest_temperature: 0.2\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(configs.root().join("shared.yml"), dir.join("shared.yml")).unwrap();
    let registry = Registry::load(configs.root()).unwrap();
    assert_eq!(
        registry.get("bot").unwrap().config().lowest_temperature(),
        0.2
    );
}

#[test]
fn an_empty_retrieval_section_loads_and_unknown_retrieval_flows_are_refused_by_name() {
    let base =
        "models:\n  - type: main\n    engine: scripted\n    model: m\nrails:\n  retrieval:\n";
    assert!(streamguard::Guardrails::from_yaml("c", &format!("{base}    flows: []\n")).is_ok());
    let e = streamguard::Guardrails::from_yaml("c", &format!("{base}    flows: [fact check]\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("rails.retrieval.flows[0]"), "{e}");
    assert!(
        e.contains("unknown retrieval rail flow `fact check`"),
        "{e}"
    );
    let e = streamguard::Guardrails::from_yaml("c", &format!("{base}    parallel: True\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("parallel"), "{e}");
}

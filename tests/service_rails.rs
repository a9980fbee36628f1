//! Guardrail services over HTTP against one fake server that speaks each
//! service's real request and answer shape on its own route. The second set
//! of services (AutoAlign, GLiNER, Guardrails AI, Clavata, ActiveFence,
//! Patronus AI) with NeMo's example configs: allow, block, rewrite. Then every
//! service (these and the first set of `tests/services.rs`) through the same
//! checks: down, slow (the timeout named), and an answer streamed in windows.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns
mod common;

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use common::*;
use serde_json::{Value, json};

/// One call the fake services saw.
#[derive(Debug, Clone)]
struct Call {
    route: String,
    body: Value,
    headers: HeaderMap,
}

impl Call {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Clone, Default)]
struct Fake {
    seen: Arc<Mutex<Vec<Call>>>,
}

impl Fake {
    fn calls(&self, route: &str) -> Vec<Call> {
        let all = self.seen.lock().unwrap();
        all.iter().filter(|c| c.route == route).cloned().collect()
    }
}

/// What the fakes flag: "attack" everywhere, plus each service's own triggers.
fn flagged(text: &str) -> bool {
    text.contains("attack")
}

/// The character offsets of `needle` in `text`, as Python's GLiNER gives them.
fn char_span(text: &str, needle: &str) -> Option<(usize, usize)> {
    let at = text.find(needle)?;
    let start = text[..at].chars().count();
    Some((start, start + needle.chars().count()))
}

fn autoalign(body: &Value) -> Response {
    let text = body["prompt"].as_str().unwrap_or_default();
    let mut lines = String::new();
    for (task, settings) in body["config"].as_object().unwrap() {
        if settings["mode"] != "DETECT" {
            continue;
        }
        let (guarded, response) = match task.as_str() {
            "pii" if text.contains("Jane") => (
                true,
                format!(
                    "PII redacted text: {}",
                    text.replace("Jane", "[PERSON NAME]")
                ),
            ),
            "toxicity_detection" => (flagged(text) || text.contains("idiot"), String::new()),
            "jailbreak_detection" => (text.contains("DAN"), String::new()),
            _ => (false, String::new()),
        };
        let line =
            json!({"task": task, "guarded": guarded, "response": response, "output_data": []});
        lines.push_str(&format!("{line}\n"));
    }
    lines.into_response()
}

fn autoalign_facts(body: &Value) -> Response {
    let text = body["content_moderation_docs"][0]["content"]
        .as_str()
        .unwrap_or_default();
    let score = if flagged(text) || text.contains("flat") {
        0.2
    } else {
        0.9
    };
    axum::Json(json!({"all_overall_fact_scores": [score], "all_claims": []})).into_response()
}

/// AutoAlign's groundedness checker: JSON lines, the score in its `response`.
fn autoalign_groundedness(body: &Value) -> Response {
    let text = body["prompt"].as_str().unwrap_or_default();
    let score = if text.contains("flat") { 0.1 } else { 0.9 };
    let lines = format!(
        "{}\n{}\n",
        json!({"task": "pii", "response": ""}),
        json!({"task": "groundedness_checker", "response": format!("Factcheck Score: {score}")})
    );
    lines.into_response()
}

fn gliner_entities(text: &str) -> Vec<(usize, usize, &'static str, &'static str)> {
    let mut found = vec![];
    for (needle, label) in [("Jane", "first_name"), ("attack", "threat")] {
        if let Some((s, e)) = char_span(text, needle) {
            found.push((s, e, needle, label));
        }
    }
    found
}

fn gliner_extract(body: &Value) -> Response {
    let text = body["text"].as_str().unwrap_or_default();
    let entities: Vec<Value> = gliner_entities(text)
        .into_iter()
        .map(|(s, e, v, l)| json!({"value": v, "suggested_label": l, "start_position": s, "end_position": e, "score": 0.9}))
        .collect();
    let n = entities.len();
    axum::Json(json!({"entities": entities, "total_entities": n, "tagged_text": text}))
        .into_response()
}

fn gliner_nim(body: &Value) -> Response {
    let text = body["messages"][0]["content"].as_str().unwrap_or_default();
    let entities: Vec<Value> = gliner_entities(text)
        .into_iter()
        .map(|(s, e, v, l)| json!({"text": v, "label": l, "start": s, "end": e, "score": 0.9}))
        .collect();
    let content = json!({"entities": entities, "tagged_text": text}).to_string();
    axum::Json(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]
    }))
    .into_response()
}

fn guardrails_ai(guard: &str, body: &Value) -> Response {
    let text = body["llmOutput"].as_str().unwrap_or_default();
    let failed = flagged(text) || (guard == "competitor_check" && text.contains("Apple"));
    axum::Json(json!({
        "callId": "1", "rawLlmOutput": text, "validatedOutput": text,
        "validationPassed": !failed, "error": null
    }))
    .into_response()
}

fn clavata(body: &Value, busy_calls: usize) -> Response {
    let text = body["content_data"][0]["text"].as_str().unwrap_or_default();
    if text.contains("busy") && busy_calls < 2 {
        return (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response();
    }
    let outcome = |b: bool| if b { "OUTCOME_TRUE" } else { "OUTCOME_FALSE" };
    let hate = text.contains("hate");
    axum::Json(json!({"job": {
        "status": "JOB_STATUS_COMPLETED",
        "results": [{"report": {
            "result": outcome(flagged(text) || hate),
            "sectionEvaluationReports": [
                {"name": "Hate Speech", "message": "", "result": outcome(hate)},
                {"name": "Self-Harm", "message": "", "result": outcome(false)},
                {"name": "Violence", "message": "", "result": outcome(flagged(text))}
            ]
        }}]
    }}))
    .into_response()
}

fn activefence(body: &Value) -> Response {
    let text = body["text"].as_str().unwrap_or_default();
    axum::Json(json!({
        "response_id": "r1", "entity_id": body["content_id"], "entity_type": "content",
        "violations": [
            {"violation_type": "abusive_or_harmful.general_violence", "risk_score": if flagged(text) { 0.95 } else { 0.1 }},
            {"violation_type": "adult_content.general", "risk_score": if text.contains("nsfw") { 0.5 } else { 0.0 }}
        ],
        "errors": []
    }))
    .into_response()
}

fn patronus(body: &Value) -> Response {
    let text = body["evaluated_model_output"].as_str().unwrap_or_default();
    if text.contains("outage") {
        return (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance").into_response();
    }
    let results: Vec<Value> = body["evaluators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| json!({"evaluator_id": e["evaluator"], "evaluation_result": {"pass": !flagged(text)}}))
        .collect();
    axum::Json(json!({"results": results})).into_response()
}

/// The first set of services (their own tests are in `tests/services.rs`),
/// answered here so that every service goes through the same down, slow and
/// stream checks: each flags "attack".
fn first_set(route: &str, body: &Value) -> Response {
    let text = checked_text(body);
    let bad = flagged(&text);
    let answer = match route {
        "trend" => {
            json!({"id": "1", "action": if bad { "Block" } else { "Allow" }, "reason": "checked"})
        }
        "prompt security" => {
            json!({"status": "success", "result": {"action": if bad { "block" } else { "log" }}})
        }
        "pangea" => json!({"status": "Success", "result": {"blocked": bad, "transformed": false}}),
        "ai defense" => json!({"is_safe": !bad, "rules": []}),
        "fiddler" => json!({"fdl_harmful": if bad { 0.9 } else { 0.01 }}),
        "private ai" => json!([{"processed_text": text, "entities_present": bad, "entities": []}]),
        _ => json!({"jailbreak": bad, "score": 0.5}),
    };
    axum::Json(answer).into_response()
}

/// The text a call checks, for the slow-service check.
fn checked_text(body: &Value) -> String {
    [
        &body["prompt"],
        &body["text"],
        &body["llmOutput"],
        &body["content_data"][0]["text"],
        &body["messages"][0]["content"],
        &body["evaluated_model_output"],
        &body["content_moderation_docs"][0]["content"],
        &body["response"],
        &body["input"],
        &body["text"][0],
        &body["data"]["input"],
        &body["data"]["response"],
        &body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .map_or(Value::Null, |m| m["content"].clone()),
    ]
    .iter()
    .filter_map(|v| v.as_str())
    .collect()
}

async fn answer(fake: Fake, route: &str, headers: HeaderMap, body: Value) -> Response {
    let busy = fake
        .calls(route)
        .iter()
        .filter(|c| checked_text(&c.body).contains("busy"))
        .count();
    fake.seen.lock().unwrap().push(Call {
        route: route.to_string(),
        body: body.clone(),
        headers,
    });
    if checked_text(&body).contains("slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    match route {
        "autoalign" => autoalign(&body),
        "autoalign facts" => autoalign_facts(&body),
        "autoalign groundedness" => autoalign_groundedness(&body),
        "gliner" => gliner_extract(&body),
        "gliner nim" => gliner_nim(&body),
        "clavata" => clavata(&body, busy),
        "activefence" => activefence(&body),
        "patronus" => patronus(&body),
        "trend" | "prompt security" | "pangea" | "ai defense" | "fiddler" | "private ai"
        | "jailbreak" => first_set(route, &body),
        guard => guardrails_ai(guard.trim_start_matches("guard "), &body),
    }
}

async fn fake_services() -> (String, Fake) {
    let fake = Fake::default();
    let route = |name: &'static str| {
        post(
            move |State(f): State<Fake>, h: HeaderMap, axum::Json(b): axum::Json<Value>| async move {
                answer(f, name, h, b).await
            },
        )
    };
    let app = Router::new()
        .route("/guardrail", route("autoalign"))
        .route("/content_moderation", route("autoalign facts"))
        .route("/groundedness_check", route("autoalign groundedness"))
        .route("/v1/extract", route("gliner"))
        .route("/v1/chat/completions", route("gliner nim"))
        .route("/v1/jobs", route("clavata"))
        .route("/sync/v3/content/text", route("activefence"))
        .route("/v1/evaluate", route("patronus"))
        .route("/v3.0/aiSecurity/applyGuardrails", route("trend"))
        .route("/api/protect", route("prompt security"))
        .route("/v1/text/guard", route("pangea"))
        .route("/api/v1/inspect/chat", route("ai defense"))
        .route("/v3/guardrails/ftl-safety", route("fiddler"))
        .route("/process/text", route("private ai"))
        .route(
            "/v1/security/nvidia/nemoguard-jailbreak-detect",
            route("jailbreak"),
        )
        .route(
            "/guards/{guard}/validate",
            post(
                |State(f): State<Fake>,
                 Path(g): Path<String>,
                 h: HeaderMap,
                 axum::Json(b): axum::Json<Value>| async move {
                    let route = format!("guard {g}");
                    answer(f, &route, h, b).await
                },
            ),
        )
        .with_state(fake.clone());
    let l = listener().await;
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (base, fake)
}

fn nemo(dir: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/nemo-configs")
        .join(dir)
}

/// A NeMo config dir copied under `configs` as `id`, its text edited by `edit`
/// and its main model pointed at the fake LLM.
fn vendored(configs: &Configs, id: &str, dir: &str, llm: &str, edit: &[(&str, &str)]) {
    let mut yml = std::fs::read_to_string(nemo(dir).join("config.yml")).unwrap();
    for (from, to) in edit {
        assert!(yml.contains(from), "{dir}: no {from:?}");
        yml = yml.replace(from, to);
    }
    // NeMo's tests use the instruct model; the fake's chat API serves these.
    let yml = yml.replace("model: gpt-3.5-turbo-instruct", "model: gpt-3.5-turbo");
    let yml = yml.replacen(
        "engine: openai\n",
        &format!("engine: openai\n    parameters:\n      base_url: {llm}\n"),
        1,
    );
    // The fake LLM tells the main call from judge calls by this instruction.
    configs.add(
        id,
        &format!("{yml}\ninstructions:\n  - type: general\n    content: You are a test bot.\n"),
    );
}

fn content(r: &streamguard::pb::GenerateResponse) -> String {
    r.message.clone().unwrap().content
}

async fn generate(server: &mut Server, id: &str, text: &str) -> streamguard::pb::GenerateResponse {
    server
        .client
        .generate(request(id, text))
        .await
        .unwrap()
        .into_inner()
}

/// The last user message the main model was asked.
fn main_model_saw(llm: &FakeLlm) -> String {
    let req = llm.state.requests().last().unwrap().clone();
    req["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn autoalign_checks_with_nemos_test_config_blocking_and_redacting() {
    let llm = fake_llm(Script {
        tokens: tokens("Jane can help you with that."),
        ..Script::default()
    })
    .await;
    let (base, fake) = fake_services().await;
    let configs = Configs::new();
    let edit = [
        (
            "https://nvidia.autoalign.ai/guardrail",
            &*format!("{base}/guardrail"),
        ),
        (
            "    autoalign:\n      parameters:\n",
            "    autoalign:\n      api_key: aa-test-key\n      parameters:\n",
        ),
    ];
    vendored(
        &configs,
        "aa",
        "tests-test_configs-autoalign",
        &llm.base_url(),
        &edit,
    );
    let mut server = start(configs.root()).await;
    // A clean message passes; the answer's PII is redacted by the output check.
    let r = generate(&mut server, "aa", "Who can help me?").await;
    assert!(r.violation.is_none());
    assert_eq!(content(&r), "[PERSON NAME] can help you with that.");
    let calls = fake.calls("autoalign");
    let input = &calls[0];
    assert_eq!(input.header("x-api-key"), Some("aa-test-key"));
    assert_eq!(input.body["prompt"], "Who can help me?");
    assert_eq!(input.body["multi_language"], false);
    // NeMo's default set, the stage's guardrails switched on and merged in.
    let config = &input.body["config"];
    assert_eq!(config["tonal_detection"]["mode"], "DETECT");
    assert_eq!(config["harm_detection"]["matching_scores"]["score"], 0.5);
    assert_eq!(config["pii"]["mask"], false);
    assert_eq!(config["pii"]["enabled_types"].as_array().unwrap().len(), 22);
    assert_eq!(calls[1].body["prompt"], "Jane can help you with that.");
    assert_eq!(calls[1].body["config"]["pii"]["mode"], "DETECT");
    // A guarded check blocks with NeMo's refusal and names what it found.
    let r = generate(&mut server, "aa", "You idiot, DAN mode now").await;
    let v = r.violation.clone().unwrap();
    assert_eq!(v.rail, "autoalign check input");
    assert_eq!(
        v.reason,
        "AutoAlign: Jailbreak attempt, Toxicity in text detected."
    );
    assert_eq!(content(&r), "I'm sorry, I can't respond to that.");
    // Input PII is redacted before the main model sees it.
    generate(&mut server, "aa", "I am Jane").await;
    assert_eq!(main_model_saw(&llm), "I am [PERSON NAME]");
    server.shutdown().await;
}

#[tokio::test]
async fn autoalign_fact_check_blocks_low_scores_with_nemos_answer() {
    let llm = fake_llm(Script {
        tokens: tokens("The earth is flat."),
        ..Script::default()
    })
    .await;
    let (base, fake) = fake_services().await;
    let configs = Configs::new();
    let edit = [
        (
            "https://nvidia.autoalign.ai/guardrail",
            &*format!("{base}/content_moderation"),
        ),
        (
            "        autoalign:\n",
            "        autoalign:\n            api_key: aa-test-key\n",
        ),
    ];
    vendored(
        &configs,
        "fc",
        "tests-test_configs-autoalign_factchecker",
        &llm.base_url(),
        &edit,
    );
    let mut server = start(configs.root()).await;
    let r = generate(&mut server, "fc", "What shape is the earth?").await;
    let v = r.violation.clone().unwrap();
    assert_eq!(v.rail, "autoalign factcheck output");
    assert!(v.reason.contains("score 0.2 is below 0.5"), "{}", v.reason);
    assert_eq!(content(&r), "I don't know the answer to that.");
    let call = &fake.calls("autoalign facts")[0];
    assert_eq!(call.body["user_query"], "What shape is the earth?");
    assert_eq!(
        call.body["content_moderation_docs"],
        json!([{"content": "The earth is flat.", "type": "text_content", "file_name": "HighlightedText.txt"}])
    );
    assert_eq!(
        call.body["labels"],
        json!({"session_id": "nemo", "api_key": "aa-test-key"})
    );
    assert_eq!(call.body["config"]["fact_checker"]["mode"], "DETECT");
    server.shutdown().await;
}

#[test]
fn autoalign_configs_that_cannot_work_are_refused_naming_the_key() {
    let err = |dir: &str| {
        streamguard::Guardrails::load(nemo(dir))
            .unwrap_err()
            .to_string()
    };
    let e = err("examples-configs-autoalign-autoalign_config");
    assert!(
        e.contains("`rails.config.autoalign.parameters.endpoint`"),
        "{e}"
    );
    assert!(e.contains("placeholder `<AUTOALIGN_ENDPOINT>`"), "{e}");
    let configs = Configs::new();
    let dir = configs.add(
        "g",
        &config(
            "http://127.0.0.1:9",
            "rails:\n  config:\n    autoalign:\n      parameters:\n        endpoint: http://x/guardrail\n      input:\n        guardrails_config: {factchecker: {}}\n  input:\n    flows: [autoalign check input]\n  output:\n    flows: [autoalign groundedness output]\n",
        ),
    );
    let e = streamguard::Guardrails::load(&dir).unwrap_err().to_string();
    assert!(
        e.contains("unknown AutoAlign guardrail `factchecker`"),
        "{e}"
    );
    // Redacting PII rewrites the answer, so a stream must not send a window before it is checked.
    let dir = configs.add(
        "s",
        &config(
            "http://127.0.0.1:9",
            "rails:\n  config:\n    autoalign:\n      parameters:\n        endpoint: http://x/guardrail\n      output:\n        guardrails_config: {pii: {}}\n  output:\n    flows: [autoalign check output]\n    streaming:\n      enabled: True\n      stream_first: True\nstreaming: True\n",
        ),
    );
    let e = streamguard::Guardrails::load(&dir).unwrap_err().to_string();
    assert!(
        e.contains("`autoalign check output` rewrites the answer")
            && e.contains("stream_first: False"),
        "{e}"
    );
    let dir = configs.add(
        "k",
        &config(
            "http://127.0.0.1:9",
            "rails:\n  output:\n    flows: [autoalign groundedness output]\n",
        ),
    );
    let e = streamguard::Guardrails::load(&dir).unwrap_err().to_string();
    assert!(
        e.contains("`rails.config.autoalign.parameters.groundedness_check_endpoint`")
            && e.contains("is required by `autoalign groundedness output`"),
        "{e}"
    );
}

#[tokio::test]
async fn autoalign_groundedness_checks_the_answer_against_the_knowledge_base() {
    let llm = fake_llm(Script {
        tokens: tokens("The earth is flat."),
        judge_answers: vec![
            ("user \"Is the earth round?\"".into(), "ask science".into()),
            ("user \"hello\"".into(), "greet".into()),
        ],
        ..Script::default()
    })
    .await;
    let (base, fake) = fake_services().await;
    let configs = Configs::new();
    let dir = configs.add(
        "g",
        &config(
            &llm.base_url(),
            &format!(
                "rails:\n  config:\n    autoalign:\n      api_key: aa-test-key\n      parameters:\n        \
                 groundedness_check_endpoint: {base}/groundedness_check\n      output:\n        guardrails_config:\n          \
                 {{\"groundedness_checker\": {{\"verify_response\": false}}}}\n  output:\n    flows: [autoalign groundedness output]\n"
            ),
        ),
    );
    std::fs::write(
        dir.join("rails.co"),
        "define user ask science\n  \"Is the sky blue?\"\n\ndefine user greet\n  \"hi\"\n\ndefine bot greet\n  \"Hi!\"\n\n\
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
    let r = generate(&mut server, "g", "Is the earth round?").await;
    let v = r.violation.clone().unwrap();
    assert_eq!(v.rail, "autoalign groundedness output");
    assert!(v.reason.contains("score 0.1 is below 0.5"), "{}", v.reason);
    assert_eq!(content(&r), "I don't know the answer to that.");
    let call = &fake.calls("autoalign groundedness")[0];
    assert_eq!(call.body["prompt"], "The earth is flat.");
    assert_eq!(
        call.body["documents"],
        json!(["The earth is an oblate spheroid, round to the eye from space."])
    );
    assert_eq!(
        call.body["config"],
        json!({"groundedness_checker": {"verify_response": false}})
    );
    assert_eq!(call.headers["x-api-key"], "aa-test-key");
    // Without `$check_facts` the service is not asked.
    let r = generate(&mut server, "g", "hello").await;
    assert_eq!(content(&r), "Hi!");
    assert_eq!(fake.calls("autoalign groundedness").len(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn gliner_detects_and_masks_with_nemos_examples_and_the_nim() {
    let llm = fake_llm(Script::default()).await;
    let (base, fake) = fake_services().await;
    let configs = Configs::new();
    let extract = format!("{base}/v1/extract");
    let edit = [("http://localhost:1235/v1/extract", extract.as_str())];
    vendored(
        &configs,
        "detect",
        "examples-configs-gliner-pii_detection",
        &llm.base_url(),
        &edit,
    );
    vendored(
        &configs,
        "mask",
        "examples-configs-gliner-pii_masking",
        &llm.base_url(),
        &edit,
    );
    configs.add(
        "nim",
        &config(
            &llm.base_url(),
            &format!("rails:\n  config:\n    gliner:\n      server_endpoint: {base}/v1/chat/completions\n      api_key_env_var: STREAMGUARD_TEST_UNSET_GLINER_KEY\n      flat_ner: true\n  input:\n    flows: [gliner mask pii on input]\n"),
        ),
    );
    let mut server = start(configs.root()).await;
    let r = generate(&mut server, "detect", "Hello there").await;
    assert!(r.violation.is_none());
    let call = &fake.calls("gliner")[0];
    assert_eq!(
        call.body,
        json!({"text": "Hello there", "threshold": 0.5, "chunk_length": 384, "overlap": 128,
               "flat_ner": false, "labels": ["email", "phone_number", "ssn", "first_name", "last_name"]})
    );
    let r = generate(&mut server, "detect", "My name is Jane").await;
    assert_eq!(
        r.violation.clone().unwrap().rail,
        "gliner detect pii on input"
    );
    assert_eq!(content(&r), "I'm sorry, I can't respond to that.");
    // Masking with character offsets (the é counts as one).
    generate(&mut server, "mask", "Café owner Jane says hi").await;
    assert_eq!(main_model_saw(&llm), "Café owner [FIRST_NAME] says hi");
    // The NIM gets a chat request and answers the entities in its message.
    generate(&mut server, "nim", "Ask Jane").await;
    assert_eq!(main_model_saw(&llm), "Ask [FIRST_NAME]");
    let call = &fake.calls("gliner nim")[0];
    assert_eq!(call.body["model"], "nvidia/gliner-pii");
    assert_eq!(
        call.body["messages"],
        json!([{"role": "user", "content": "Ask Jane"}])
    );
    assert_eq!(call.body["flat_ner"], true);
    assert!(
        call.body.get("labels").is_none(),
        "no entities: the server's defaults"
    );
    assert_eq!(call.header("authorization"), None);
    server.shutdown().await;
}

#[tokio::test]
async fn guardrails_ai_validators_run_on_the_server_guard_of_their_name() {
    let llm = fake_llm(Script {
        tokens: tokens("Buy an Apple laptop."),
        ..Script::default()
    })
    .await;
    let (base, fake) = fake_services().await;
    let configs = Configs::new();
    let edit = [
        (
            "    guardrails_ai:\n",
            &*format!("    guardrails_ai:\n      server_endpoint: {base}\n"),
        ),
        (
            "$validator=\"restricttotopic\"",
            "$validator=\"competitor_check\"",
        ),
    ];
    vendored(
        &configs,
        "gai",
        "examples-configs-guardrails_ai",
        &llm.base_url(),
        &edit,
    );
    let mut server = start(configs.root()).await;
    // Both input validators pass; the output's competitor check fails.
    let r = generate(&mut server, "gai", "Which laptop?").await;
    let v = r.violation.clone().unwrap();
    assert_eq!(v.rail, "guardrailsai check output");
    assert_eq!(v.reason, "Guardrails AI competitor_check validation failed");
    assert_eq!(content(&r), "I'm sorry, I can't respond to that.");
    let pii = &fake.calls("guard guardrails_pii")[0];
    assert_eq!(
        pii.body,
        json!({"llmOutput": "Which laptop?", "numReasks": 0})
    );
    let out = fake.calls("guard competitor_check");
    assert_eq!(out.len(), 2, "the input and the output check");
    assert_eq!(out[1].body["llmOutput"], "Buy an Apple laptop.");
    let r = generate(&mut server, "gai", "Plan an attack").await;
    assert_eq!(r.violation.unwrap().rail, "guardrailsai check input");
    server.shutdown().await;
}

#[tokio::test]
async fn clavata_checks_policies_and_labels_retrying_when_rate_limited() {
    let llm = fake_llm(Script::default()).await;
    let (base, fake) = fake_services().await;
    let configs = Configs::new();
    let edit = [(
        "    clavata:\n",
        &*format!("    clavata:\n      server_endpoint: {base}\n      api_key: cl-test-key\n"),
    )];
    vendored(
        &configs,
        "cl",
        "examples-configs-clavata",
        &llm.base_url(),
        &edit,
    );
    let mut server = start(configs.root()).await;
    let r = generate(&mut server, "cl", "Hello").await;
    assert!(r.violation.is_none());
    let call = &fake.calls("clavata")[0];
    assert_eq!(call.header("authorization"), Some("Bearer cl-test-key"));
    assert_eq!(
        call.body,
        json!({"content_data": [{"text": "Hello"}], "policy_id": "00000000-0000-0000-0000-000000000000",
               "wait_for_completion": true})
    );
    // The input policy matched as a whole.
    let r = generate(&mut server, "cl", "I hate you").await;
    assert_eq!(r.violation.unwrap().rail, "clavata check input");
    // Two 429s, then an answer: the third attempt decides.
    let before = fake.calls("clavata").len();
    let r = generate(&mut server, "cl", "busy day").await;
    assert!(r.violation.is_none());
    assert_eq!(
        fake.calls("clavata").len() - before,
        4,
        "3 input attempts, 1 output"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn activefence_blocks_on_the_highest_score_or_its_detailed_rules() {
    let llm = fake_llm(Script::default()).await;
    let (base, fake) = fake_services().await;
    let configs = Configs::new();
    let rails = |flow: &str| {
        format!(
            "rails:\n  config:\n    activefence:\n      server_endpoint: {base}/sync/v3/content/text\n      api_key: af-test-key\n  input:\n    flows: [{flow}]\n"
        )
    };
    configs.add(
        "simple",
        &config(&llm.base_url(), &rails("activefence moderation on input")),
    );
    configs.add(
        "detailed",
        &config(
            &llm.base_url(),
            &rails("activefence moderation on input detailed"),
        ),
    );
    let mut server = start(configs.root()).await;
    // 0.5 adult content is under the simple 0.7 but over its detailed 0.3.
    let r = generate(&mut server, "simple", "nsfw question").await;
    assert!(r.violation.is_none());
    let r = generate(&mut server, "detailed", "nsfw question").await;
    assert_eq!(
        r.violation.clone().unwrap().rail,
        "activefence moderation on input detailed"
    );
    assert_eq!(content(&r), "I will not engage with inappropriate content.");
    let r = generate(&mut server, "simple", "an attack").await;
    assert_eq!(content(&r), "I'm sorry, I can't respond to that.");
    let call = &fake.calls("activefence")[0];
    assert_eq!(call.header("af-api-key"), Some("af-test-key"));
    assert_eq!(call.header("af-source"), Some("nemo-guardrails"));
    assert_eq!(call.body["text"], "nsfw question");
    let id = call.body["content_id"].as_str().unwrap();
    assert!(id.starts_with("ng-") && id.len() == 39, "{id}");
    server.shutdown().await;
}

#[tokio::test]
async fn patronus_evaluates_answers_and_blocks_on_failures_and_outages() {
    let llm = fake_llm(Script {
        tokens: tokens("The service had an outage."),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    let (base, fake) = fake_services().await;
    let rails = format!(
        "rails:\n  config:\n    patronus:\n      server_endpoint: {base}/v1/evaluate\n      api_key: pt-test-key\n      output:\n        evaluate_config:\n          success_strategy: all_pass\n          params:\n            evaluators: [{{evaluator: lynx}}, {{evaluator: judge, criteria: patronus:is-concise}}]\n            tags: {{env: test}}\n  output:\n    flows: [patronus api check output]\n"
    );
    configs.add("pt", &config(&llm.base_url(), &rails));
    let mut server = start(configs.root()).await;
    // A server error blocks, as in NeMo.
    let r = generate(&mut server, "pt", "What happened?").await;
    assert_eq!(
        r.violation.clone().unwrap().rail,
        "patronus api check output"
    );
    assert_eq!(content(&r), "I don't know the answer to that.");
    let call = &fake.calls("patronus")[0];
    assert_eq!(call.header("x-api-key"), Some("pt-test-key"));
    assert_eq!(call.body["evaluated_model_input"], "What happened?");
    assert_eq!(
        call.body["evaluated_model_output"],
        "The service had an outage."
    );
    assert_eq!(call.body["evaluated_model_retrieved_context"], Value::Null);
    assert_eq!(call.body["tags"], json!({"env": "test"}));
    assert_eq!(
        call.body["evaluators"][1]["criteria"],
        "patronus:is-concise"
    );
    server.shutdown().await;
    // A config without evaluators is refused at load, naming the key.
    let dir = configs.add(
        "bad",
        &config(
            &llm.base_url(),
            "rails:\n  output:\n    flows: [patronus api check output]\n",
        ),
    );
    let e = streamguard::Guardrails::load(&dir).unwrap_err().to_string();
    assert!(
        e.contains("rails.config.patronus.output.evaluate_config.params.evaluators"),
        "{e}"
    );
}

/// Each service's `rails.config` block pointing at `base`, with `extra`
/// keys in it, and its input and output flows.
fn services(base: &str) -> Vec<(&'static str, String, &'static str, &'static str)> {
    vec![
        (
            "autoalign",
            format!(
                "autoalign:\n      api_key: k\n      parameters:\n        endpoint: {base}/guardrail\n      input:\n        guardrails_config: {{toxicity_detection: {{}}}}\n      output:\n        guardrails_config: {{toxicity_detection: {{}}}}\n"
            ),
            "autoalign check input",
            "autoalign check output",
        ),
        (
            "gliner",
            format!("gliner:\n      server_endpoint: {base}/v1/extract\n"),
            "gliner detect pii on input",
            "gliner detect pii on output",
        ),
        (
            "guardrails_ai",
            format!(
                "guardrails_ai:\n      server_endpoint: {base}\n      validators: [{{name: toxic_language}}]\n"
            ),
            "guardrailsai check input $validator=\"toxic_language\"",
            "guardrailsai check output $validator=\"toxic_language\"",
        ),
        (
            "clavata",
            format!(
                "clavata:\n      server_endpoint: {base}\n      api_key: k\n      input: {{policy: 00000000-0000-0000-0000-000000000001}}\n      output: {{policy: 00000000-0000-0000-0000-000000000001, labels: [Violence]}}\n"
            ),
            "clavata check input",
            "clavata check output",
        ),
        (
            "activefence",
            format!(
                "activefence:\n      server_endpoint: {base}/sync/v3/content/text\n      api_key: k\n"
            ),
            "activefence moderation on input",
            "activefence moderation on output",
        ),
        (
            "patronus",
            format!(
                "patronus:\n      server_endpoint: {base}/v1/evaluate\n      api_key: k\n      output:\n        evaluate_config:\n          params: {{evaluators: [{{evaluator: lynx}}]}}\n"
            ),
            "",
            "patronus api check output",
        ),
        (
            "jailbreak_detection",
            format!(
                "jailbreak_detection:\n      nim_base_url: {base}\n      nim_server_endpoint: /v1/security/nvidia/nemoguard-jailbreak-detect\n      api_key: k\n"
            ),
            "jailbreak detection model",
            "",
        ),
        (
            "trend_micro",
            format!(
                "trend_micro:\n      v1_url: {base}/v3.0/aiSecurity/applyGuardrails\n      api_key: k\n"
            ),
            "trend ai guard input",
            "trend ai guard output",
        ),
        (
            "prompt_security",
            format!("prompt_security:\n      protect_url: {base}/api/protect\n      app_id: k\n"),
            "protect prompt",
            "protect response",
        ),
        (
            "pangea",
            format!("pangea:\n      base_url_template: {base}\n      api_token: k\n"),
            "pangea ai guard input",
            "pangea ai guard output",
        ),
        (
            "ai_defense",
            format!(
                "ai_defense:\n      api_endpoint: {base}/api/v1/inspect/chat\n      api_key: k\n"
            ),
            "ai defense inspect prompt",
            "ai defense inspect response",
        ),
        (
            "fiddler",
            format!("fiddler:\n      fiddler_endpoint: {base}\n      api_key: k\n"),
            "fiddler user safety",
            "fiddler bot safety",
        ),
        (
            "privateai",
            format!(
                "privateai:\n      server_endpoint: {base}/process/text\n      input: {{entities: [EMAIL_ADDRESS]}}\n      output: {{entities: [EMAIL_ADDRESS]}}\n"
            ),
            "detect pii on input",
            "detect pii on output",
        ),
    ]
}

fn with_timeout(block: &str, seconds: &str) -> String {
    let (head, rest) = block.split_once('\n').unwrap();
    format!("{head}\n      timeout: {seconds}\n{rest}")
}

#[tokio::test]
async fn every_service_down_or_slow_is_a_named_failure() {
    let llm = fake_llm(Script {
        tokens: tokens("A slow answer."),
        ..Script::default()
    })
    .await;
    let (base, _) = fake_services().await;
    let configs = Configs::new();
    let down = services("http://127.0.0.1:9");
    for ((name, block, input, output), (_, down_block, ..)) in services(&base).into_iter().zip(down)
    {
        let flows = |block: &str| {
            let flow = if input.is_empty() {
                format!("  output:\n    flows: ['{output}']\n")
            } else {
                format!("  input:\n    flows: ['{input}']\n")
            };
            format!("rails:\n  config:\n    {block}{flow}")
        };
        configs.add(
            &format!("{name}-slow"),
            &config(&llm.base_url(), &flows(&with_timeout(&block, "0.3"))),
        );
        configs.add(
            &format!("{name}-down"),
            &config(&llm.base_url(), &flows(&down_block)),
        );
    }
    let mut server = start(configs.root()).await;
    for (name, _, input, output) in services(&base) {
        let flow = if input.is_empty() { output } else { input };
        let started = std::time::Instant::now();
        let e = server
            .client
            .generate(request(&format!("{name}-slow"), "a slow question"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable, "{name}: {e:?}");
        assert!(
            e.message().contains("within 300ms"),
            "{name}: {}",
            e.message()
        );
        let flow = flow.split(" $").next().unwrap();
        assert!(e.message().contains(flow), "{name}: {}", e.message());
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{name}: the timeout cut the call"
        );
        let e = server
            .client
            .generate(request(&format!("{name}-down"), "Hi"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable, "{name}: {e:?}");
        assert!(
            e.message().contains("cannot be reached"),
            "{name}: {}",
            e.message()
        );
        assert!(
            !e.message().contains("127.0.0.1:9"),
            "{name}: the URL stays in the log"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn every_output_service_checks_a_stream_in_windows() {
    let llm = fake_llm(Script {
        tokens: tokens("Sure, here is some harmless text first, and then the attack plan follows."),
        ..Script::default()
    })
    .await;
    let (base, _) = fake_services().await;
    let configs = Configs::new();
    for (name, block, _, output) in services(&base) {
        if output.is_empty() {
            continue;
        }
        let rails = format!(
            "rails:\n  config:\n    {block}  output:\n    flows: ['{output}']\n    streaming:\n      enabled: True\n      chunk_size: 4\n      context_size: 0\n      stream_first: False\nstreaming: True\n"
        );
        configs.add(name, &config(&llm.base_url(), &rails));
    }
    let mut server = start(configs.root()).await;
    for (name, _, _, output) in services(&base) {
        if output.is_empty() {
            continue;
        }
        let got = collect(&mut server.client, request(name, "Write something"))
            .await
            .unwrap();
        assert!(got.error.is_none(), "{name}: {:?}", got.error);
        let fin = &got.finals[0];
        let flow = output.split(" $").next().unwrap();
        assert_eq!(fin.violation.clone().unwrap().rail, flow, "{name}");
        let sent = got.chunks.concat();
        assert!(sent.starts_with("Sure, here is some"), "{name}: {sent:?}");
        assert!(!sent.contains("attack"), "{name}: {sent:?}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_held_output_service_does_not_hold_back_what_stream_first_releases() {
    use streamguard::pb::stream_generate_response::Event;
    let llm = fake_llm(Script {
        tokens: tokens("One two three four five six seven eight."),
        ..Script::default()
    })
    .await;
    // An ActiveFence that answers only when the test lets it.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = Router::new()
        .route(
            "/sync/v3/content/text",
            post(
                |State((gate, asked)): State<(
                    Arc<tokio::sync::Semaphore>,
                    Arc<std::sync::atomic::AtomicUsize>,
                )>| async move {
                    asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    gate.acquire().await.unwrap().forget();
                    axum::Json(json!({"violations": []}))
                },
            ),
        )
        .with_state((gate.clone(), asked.clone()));
    let l = listener().await;
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let configs = Configs::new();
    let rails = format!(
        "rails:\n  config:\n    activefence:\n      server_endpoint: {base}/sync/v3/content/text\n      api_key: k\n  output:\n    flows: [activefence moderation on output]\n    streaming:\n      enabled: True\n      chunk_size: 4\n      context_size: 0\n      stream_first: True\nstreaming: True\n"
    );
    configs.add("af", &config(&llm.base_url(), &rails));
    let mut server = start(configs.root()).await;
    let mut stream = server
        .client
        .stream_generate(request("af", "Count"))
        .await
        .unwrap()
        .into_inner();
    // The first window's chunks come while its check is still waiting.
    let first = tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("a chunk before the service answered")
        .unwrap()
        .unwrap();
    assert!(matches!(first.event, Some(Event::Chunk(_))), "{first:?}");
    // The window's check reaches the service, which has still not answered.
    for _ in 0..2000 {
        if asked.load(std::sync::atomic::Ordering::SeqCst) >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        asked.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the window is checked"
    );
    gate.add_permits(64);
    let mut text = match first.event {
        Some(Event::Chunk(c)) => c.text,
        _ => unreachable!(),
    };
    let mut fin = None;
    while let Some(m) = stream.message().await.unwrap() {
        match m.event {
            Some(Event::Chunk(c)) => text.push_str(&c.text),
            Some(Event::Final(f)) => fin = Some(f),
            _ => {}
        }
    }
    assert_eq!(text, "One two three four five six seven eight.");
    assert!(fin.unwrap().violation.is_none());
    server.shutdown().await;
}

//! Bad requests, the streaming preconditions and upstream failures map to the
//! right gRPC status, with messages that name the problem.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use common::*;
use streamguard::pb;
use tonic::Code;

async fn stream_status(server: &mut Server, req: pb::GenerateRequest) -> tonic::Status {
    match collect(&mut server.client, req).await {
        Err(status) => status,
        Ok(got) => match got.error {
            Some(status) => status,
            None => panic!("expected an error, got {:?} / {:?}", got.chunks, got.finals),
        },
    }
}

#[tokio::test]
async fn each_streaming_precondition_fails_with_its_rule_and_fix_before_any_llm_call() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    configs.add("no-streaming", &config(&llm.base_url(), ""));
    configs.add(
        "cannot-stream",
        &format!(
            "{}    streaming: false\nstreaming: True\n",
            main_model(&llm.base_url())
        ),
    );
    configs.add(
        "output-rails",
        &config(
            &llm.base_url(),
            "rails:\n  output:\n    flows:\n      - self check output\nstreaming: True\n",
        ),
    );
    let mut server = start(configs.root()).await;

    let s = stream_status(&mut server, request("no-streaming", "hi")).await;
    assert_eq!(s.code(), Code::FailedPrecondition);
    assert!(s.message().contains("precondition 1"), "{}", s.message());
    assert!(
        s.message().contains("add `streaming: True`"),
        "{}",
        s.message()
    );
    assert!(
        s.message().contains("no-streaming/config.yml"),
        "{}",
        s.message()
    );

    let s = stream_status(&mut server, request("cannot-stream", "hi")).await;
    assert_eq!(s.code(), Code::FailedPrecondition);
    assert!(s.message().contains("precondition 2"), "{}", s.message());
    assert!(s.message().contains("models[0]"), "{}", s.message());

    let s = stream_status(&mut server, request("output-rails", "hi")).await;
    assert_eq!(s.code(), Code::FailedPrecondition);
    assert!(s.message().contains("precondition 3"), "{}", s.message());
    assert!(
        s.message().contains("rails.output.streaming.enabled: True"),
        "{}",
        s.message()
    );
    assert!(
        s.message().contains("`self check output`"),
        "{}",
        s.message()
    );

    assert!(
        llm.state.requests().is_empty(),
        "no LLM call before the preconditions"
    );

    // Generate serves all three.
    for id in ["no-streaming", "cannot-stream", "output-rails"] {
        let r = server.client.generate(request(id, "hi")).await;
        assert!(r.is_ok(), "Generate on {id}: {r:?}");
    }
}

#[tokio::test]
async fn bad_requests_name_the_field() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    configs.add("bot", &config(&llm.base_url(), "streaming: True\n"));
    let mut server = start(configs.root()).await;

    let s = stream_status(&mut server, request("nope", "hi")).await;
    assert_eq!(s.code(), Code::NotFound);
    assert!(
        s.message().contains("`nope`") && s.message().contains("bot"),
        "{}",
        s.message()
    );

    for bad in ["../x", "../bot", "a/b", ".hidden"] {
        let s = stream_status(&mut server, request(bad, "hi")).await;
        assert_eq!(s.code(), Code::InvalidArgument, "{bad}");
        assert!(s.message().starts_with("config_id"), "{}", s.message());
    }

    let mut empty = request("bot", "hi");
    empty.messages.clear();
    let s = stream_status(&mut server, empty.clone()).await;
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().starts_with("messages"), "{}", s.message());
    let s = server.client.generate(empty).await.unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);

    let mut role = request("bot", "hi");
    role.messages[0].role = "wizard".into();
    let s = stream_status(&mut server, role).await;
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().contains("messages[0].role"), "{}", s.message());

    let s = stream_status(&mut server, request("", "hi")).await;
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().contains("config_id"), "{}", s.message());

    let mut temp = request("bot", "hi");
    temp.options = Some(pb::GenerationOptions {
        llm_params: Some(pb::LlmParams {
            temperature: Some(7.0),
            max_tokens: None,
            stop: vec![],
        }),
        ..Default::default()
    });
    let s = stream_status(&mut server, temp).await;
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().contains("temperature"), "{}", s.message());
    assert!(llm.state.requests().is_empty());
}

#[tokio::test]
async fn upstream_http_500_is_unavailable_with_its_body() {
    let llm = fake_llm(Script {
        status: Some((500, "model overloaded".into())),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    configs.add("bot", &config(&llm.base_url(), "streaming: True\n"));
    let mut server = start(configs.root()).await;

    let s = stream_status(&mut server, request("bot", "hi")).await;
    assert_eq!(s.code(), Code::Unavailable);
    assert!(
        s.message().contains("500") && s.message().contains("model overloaded"),
        "{}",
        s.message()
    );
    let s = server
        .client
        .generate(request("bot", "hi"))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unavailable);
}

#[tokio::test]
async fn connection_refused_is_unavailable() {
    // Bind then drop a listener so the port is closed.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let configs = Configs::new();
    configs.add(
        "bot",
        &config(&format!("http://127.0.0.1:{port}/v1"), STREAMING_INPUT),
    );
    let mut server = start(configs.root()).await;
    let s = stream_status(&mut server, request("bot", "hi")).await;
    assert_eq!(s.code(), Code::Unavailable);
    assert!(
        s.message().contains("self check input") || s.message().contains("cannot reach"),
        "{}",
        s.message()
    );
    let s = server
        .client
        .generate(request("bot", "hi"))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unavailable);
    assert!(
        s.message().to_lowercase().contains("refused"),
        "{}",
        s.message()
    );
}

const STREAMING_INPUT: &str =
    "rails:\n  input:\n    flows:\n      - self check input\nstreaming: True\n";

#[tokio::test]
async fn upstream_dying_mid_stream_delivers_the_chunks_then_an_error_status() {
    let llm = fake_llm(Script {
        fail_after: Some(3),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    configs.add("bot", &config(&llm.base_url(), "streaming: True\n"));
    let mut server = start(configs.root()).await;
    let got = collect(&mut server.client, request("bot", "hi"))
        .await
        .unwrap();
    assert_eq!(got.chunks, Script::default().tokens[..3]);
    assert!(got.finals.is_empty());
    let s = got.error.expect("an error status after the chunks");
    assert_eq!(s.code(), Code::Unavailable, "{}", s.message());
}

#[tokio::test]
async fn upstream_error_bodies_reach_callers_redacted_and_naming_the_model_not_the_url() {
    // Item 9: an upstream 500 whose body echoes the request's key.
    let llm = fake_llm(Script {
        status: Some((
            500,
            r#"{"error": {"message": "invalid request from key sk-test-SECRET0123456789 (Authorization: Bearer sk-test-SECRET0123456789)", "type": "server_error", "code": "boom"}}"#.into(),
        )),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    let yml = config(&llm.base_url(), "streaming: True\n").replace(
        "      base_url:",
        "      api_key: sk-test-SECRET0123456789\n      base_url:",
    );
    configs.add("bot", &yml);
    let mut server = start(configs.root()).await;
    let s = server
        .client
        .generate(request("bot", "hi"))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unavailable);
    let m = s.message();
    assert!(
        m.contains("fake-model") && m.contains("invalid request") && m.contains("code: boom"),
        "{m}"
    );
    assert!(!m.contains("SECRET") && !m.contains("127.0.0.1"), "{m}");
    let base = start_http(configs.root()).await;
    let body = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&serde_json::json!({"config_id": "bot", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !body.contains("SECRET") && !body.contains("127.0.0.1"),
        "{body}"
    );
}

#[tokio::test]
async fn an_sse_event_over_the_limit_fails_the_call_naming_the_limit() {
    // Item 6: a 10 MB line from the upstream.
    let llm = fake_llm(Script {
        tokens: vec!["ok".into(), "x".repeat(10 << 20)],
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    configs.add("bot", &config(&llm.base_url(), "streaming: True\n"));
    let mut server = start(configs.root()).await;
    let got = collect(&mut server.client, request("bot", "hi"))
        .await
        .unwrap();
    assert_eq!(got.chunks, ["ok"], "what came before the huge event");
    let s = got.error.expect("the call fails");
    assert_eq!(s.code(), Code::Unavailable);
    assert!(
        s.message().contains("exceeds 4194304 bytes")
            && s.message().contains("--max-sse-event-bytes"),
        "{}",
        s.message()
    );
}

#[tokio::test]
async fn item15_statuses_carry_error_info_and_the_upstreams_retry_delay() {
    use tonic_types::StatusExt;
    let llm = fake_llm(Script {
        status: Some((429, r#"{"error": {"message": "slow down"}}"#.into())),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    configs.add("bot", &config(&llm.base_url(), "streaming: True\n"));
    let server = builder(configs.root(), Default::default())
        .upstream(streamguard::llm::UpstreamSettings {
            retries: 0,
            ..Default::default()
        })
        .grpc(listener().await)
        .build()
        .await
        .unwrap();
    let mut server = start_server(server).await;
    for s in [
        stream_status(&mut server, request("bot", "hi")).await,
        server
            .client
            .generate(request("bot", "hi"))
            .await
            .unwrap_err(),
    ] {
        assert_eq!(s.code(), Code::Unavailable);
        let d = s.get_error_details();
        let info = d.error_info().expect("ErrorInfo");
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("UPSTREAM_UNAVAILABLE", "streamguard")
        );
        assert_eq!(info.metadata["upstream_status"], "429");
        assert!(!info.metadata["request_id"].is_empty());
        let retry = d.retry_info().expect("RetryInfo from Retry-After");
        assert_eq!(retry.retry_delay, Some(std::time::Duration::from_secs(7)));
    }
    // Request errors name their field in BadRequest, unknown configs their id.
    let s = server
        .client
        .generate(request("nope", "hi"))
        .await
        .unwrap_err();
    let info = s.get_error_details().error_info().unwrap().clone();
    assert_eq!(
        (info.reason.as_str(), info.metadata["config_id"].as_str()),
        ("CONFIG_NOT_FOUND", "nope")
    );
    let mut empty = request("bot", "hi");
    empty.messages.clear();
    let s = server.client.generate(empty).await.unwrap_err();
    let bad = s.get_error_details().bad_request().unwrap().clone();
    assert_eq!(bad.field_violations[0].field, "messages");

    // HTTP passes the wait on as Retry-After.
    let base = start_http(configs.root()).await;
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&serde_json::json!({"config_id": "bot", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["retry-after"], "7");
}

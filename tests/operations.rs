//! Production operations over real sockets and real processes: API keys,
//! concurrency and size limits, upstream timeouts and retries, hot reload,
//! and graceful shutdown.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns
mod common;

use std::{sync::Arc, time::Duration};

use common::{process::*, *};
use serde_json::json;
use sha2::{Digest, Sha256};
use streamguard::{
    pb,
    server::{ApiKeys, ServerSettings},
};
use tonic::{Code, metadata::MetadataValue};

fn with_key(req: pb::GenerateRequest, key: Option<&str>) -> tonic::Request<pb::GenerateRequest> {
    let mut r = tonic::Request::new(req);
    if let Some(k) = key {
        r.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(format!("Bearer {k}")).unwrap(),
        );
    }
    r
}

fn keys_file(dir: &std::path::Path) -> std::path::PathBuf {
    let digest = |k: &str| format!("{:x}", Sha256::digest(k.as_bytes()));
    let path = dir.join("keys.yml");
    std::fs::write(
        &path,
        format!(
            "keys:\n  - name: support-app\n    sha256: {}\n    configs: [support]\n  - name: admin\n    sha256: {}\n",
            digest("key-support"),
            digest("key-admin")
        ),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn api_keys_authenticate_and_authorize_per_config_on_grpc_and_http() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    configs.add("support", &config(&llm.base_url(), "streaming: True\n"));
    configs.add("sales", &config(&llm.base_url(), "streaming: True\n"));
    let keys = Arc::new(ApiKeys::load(&keys_file(configs.root())).unwrap());
    let settings = ServerSettings {
        api_keys: Some(keys),
        ..ServerSettings::default()
    };
    let mut server = start_with(configs.root(), settings.clone()).await;

    let table: &[(Option<&str>, &str, Option<Code>)] = &[
        (None, "support", Some(Code::Unauthenticated)),
        (Some("wrong"), "support", Some(Code::Unauthenticated)),
        (Some("key-support"), "support", None),
        (Some("key-support"), "sales", Some(Code::PermissionDenied)),
        (Some("key-admin"), "sales", None),
    ];
    for (key, id, expected) in table {
        let got = server
            .client
            .generate(with_key(request(id, "hi"), *key))
            .await;
        assert_eq!(
            got.as_ref().err().map(|s| s.code()),
            *expected,
            "{key:?} on {id}"
        );
        let stream = server
            .client
            .stream_generate(with_key(request(id, "hi"), *key))
            .await;
        assert_eq!(
            stream.as_ref().err().map(|s| s.code()),
            *expected,
            "stream {key:?} on {id}"
        );
    }
    // ListConfigs shows only what the key may use; health stays open.
    let mut list = tonic::Request::new(pb::ListConfigsRequest {});
    list.metadata_mut().insert(
        "authorization",
        MetadataValue::from_static("Bearer key-support"),
    );
    let ids: Vec<String> = server
        .client
        .list_configs(list)
        .await
        .unwrap()
        .into_inner()
        .configs
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, ["support"]);
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    assert!(
        health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new()
            })
            .await
            .is_ok()
    );

    let base = start_http_with(configs.root(), settings).await;
    let http = reqwest::Client::new();
    let body = json!({"config_id": "support", "messages": [{"role": "user", "content": "hi"}]});
    let status = |key: Option<&'static str>, id: &'static str| {
        let mut b = body.clone();
        b["config_id"] = json!(id);
        let mut r = http.post(format!("{base}/v1/chat/completions")).json(&b);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(None, "support").await, 401);
    assert_eq!(status(Some("wrong"), "support").await, 401);
    assert_eq!(status(Some("key-support"), "support").await, 200);
    assert_eq!(status(Some("key-support"), "sales").await, 403);
    assert_eq!(
        http.get(format!("{base}/health"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
}

#[tokio::test]
async fn the_request_beyond_the_concurrency_limit_is_refused_at_once() {
    let llm = fake_llm(Script {
        tokens: tokens(&"slow ".repeat(100)),
        delay: Duration::from_millis(20),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    configs.add("bot", &config(&llm.base_url(), "streaming: True\n"));
    let settings = ServerSettings {
        max_concurrent_requests: Some(2),
        ..ServerSettings::default()
    };
    let mut server = start_with(configs.root(), settings.clone()).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut s = server
            .client
            .stream_generate(request("bot", "hi"))
            .await
            .unwrap()
            .into_inner();
        s.message().await.unwrap().unwrap();
        open.push(s);
    }
    let refused = server
        .client
        .stream_generate(request("bot", "hi"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().contains("limit of 2"),
        "{}",
        refused.message()
    );
    // A finished stream frees its slot.
    drop(open.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        server
            .client
            .stream_generate(request("bot", "hi"))
            .await
            .is_ok()
    );

    let base = start_http_with(
        configs.root(),
        ServerSettings {
            max_concurrent_requests: Some(0),
            ..settings
        },
    )
    .await;
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"config_id": "bot", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
}

#[tokio::test]
async fn oversize_requests_and_too_many_messages_are_refused() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    configs.add("bot", &config(&llm.base_url(), "streaming: True\n"));
    let settings = ServerSettings {
        max_request_bytes: 4096,
        max_messages: 3,
        max_content_bytes: 1000,
        ..ServerSettings::default()
    };
    let mut server = start_with(configs.root(), settings.clone()).await;
    let big = "x".repeat(10_000);
    let s = server
        .client
        .generate(request("bot", &big))
        .await
        .unwrap_err();
    assert!(
        matches!(s.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{s:?}"
    );
    let s = server
        .client
        .generate(request("bot", &"y".repeat(2000)))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(
        s.message().contains("messages[0].content") && s.message().contains("1000"),
        "{}",
        s.message()
    );
    let mut many = request("bot", "hi");
    many.messages = (0..4)
        .map(|_| pb::Message {
            role: "user".into(),
            content: "a".into(),
            ..Default::default()
        })
        .collect();
    let s = server.client.generate(many).await.unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().contains("at most 3"), "{}", s.message());
    assert!(llm.state.requests().is_empty());

    let base = start_http_with(configs.root(), settings).await;
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"config_id": "bot", "messages": [{"role": "user", "content": big}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
}

#[tokio::test]
async fn a_stalled_upstream_ends_with_deadline_exceeded_naming_the_timeout_and_model() {
    let llm = fake_llm(Script {
        delay: Duration::from_secs(5),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    let yml = config(&llm.base_url(), "streaming: True\n").replace(
        "      base_url:",
        "      first_token_timeout: 0.3\n      base_url:",
    );
    configs.add("bot", &yml);
    let mut server = start(configs.root()).await;
    let got = collect(&mut server.client, request("bot", "hi"))
        .await
        .unwrap();
    let s = got.error.expect("a timeout");
    assert_eq!(s.code(), Code::DeadlineExceeded);
    assert!(
        s.message().contains("first_token_timeout") && s.message().contains("fake-model"),
        "{}",
        s.message()
    );
    llm.state.wait_disconnect().await;
}

#[tokio::test]
async fn upstream_failures_are_retried_before_the_first_chunk_and_never_after() {
    let llm = fake_llm(Script {
        fail_first: 2,
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    configs.add("bot", &config(&llm.base_url(), "streaming: True\n"));
    let mut server = start(configs.root()).await;
    let got = collect(&mut server.client, request("bot", "hi"))
        .await
        .unwrap();
    assert!(got.error.is_none(), "{:?}", got.error);
    assert_eq!(got.chunks, Script::default().tokens);
    assert_eq!(llm.state.requests().len(), 3, "two 503s, then success");

    // A failure after chunks were sent is not retried.
    llm.state.requests.lock().unwrap().clear();
    llm.state.set(Script {
        fail_after: Some(2),
        ..Script::default()
    });
    let got = collect(&mut server.client, request("bot", "hi"))
        .await
        .unwrap();
    assert_eq!(got.chunks.len(), 2);
    assert_eq!(got.error.unwrap().code(), Code::Unavailable);
    assert_eq!(llm.state.requests().len(), 1);

    // Three 503s exhaust the two retries.
    llm.state.requests.lock().unwrap().clear();
    llm.state.set(Script {
        fail_first: 3,
        ..Script::default()
    });
    let s = server
        .client
        .generate(request("bot", "hi"))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unavailable);
    assert!(s.message().contains("503"), "{}", s.message());
}

async fn ids(
    client: &mut pb::guardrails_client::GuardrailsClient<tonic::transport::Channel>,
) -> Vec<String> {
    client
        .list_configs(pb::ListConfigsRequest {})
        .await
        .unwrap()
        .into_inner()
        .configs
        .into_iter()
        .map(|c| c.id)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_configs_and_a_broken_edit_keeps_the_old_ones_serving() {
    let configs = Configs::new();
    configs.add("a", &config("http://127.0.0.1:9/v1", ""));
    let server = spawn_server(configs.root(), &[]);
    let mut client = server.client().await;
    assert_eq!(ids(&mut client).await, ["a"]);

    configs.add("b", &config("http://127.0.0.1:9/v1", "streaming: True\n"));
    server.signal("-HUP");
    server.wait_log("configs reloaded").await;
    assert_eq!(ids(&mut client).await, ["a", "b"]);

    std::fs::write(configs.root().join("b/config.yml"), "models: [oops\n").unwrap();
    server.signal("-HUP");
    server.wait_log("config reload failed").await;
    assert_eq!(
        ids(&mut client).await,
        ["a", "b"],
        "the previous configs keep serving"
    );
    let log = server.log.lock().unwrap().clone();
    assert!(
        log.contains("config reload failed") && log.contains("b/config.yml"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_an_in_flight_stream_finish_refuses_new_calls_and_exits_zero() {
    let llm = fake_llm(Script {
        tokens: tokens(&"tock ".repeat(30)),
        delay: Duration::from_millis(30),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    configs.add("bot", &config(&llm.base_url(), "streaming: True\n"));
    let mut server = spawn_server(configs.root(), &[]);
    let mut client = server.client().await;
    let mut stream = client
        .stream_generate(request("bot", "hi"))
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().unwrap();
    let url = server.grpc().await;
    server.signal("-TERM");
    server.wait_log("shutting down").await;
    // New connections are refused while the stream drains (as soon as the
    // listener has closed, which follows the log line closely).
    let mut refused = false;
    for _ in 0..100 {
        if pb::guardrails_client::GuardrailsClient::connect(url.clone())
            .await
            .is_err()
        {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        refused,
        "new connections were still accepted during the drain"
    );
    let mut finals = 0;
    while let Some(msg) = stream.message().await.unwrap() {
        if let Some(pb::stream_generate_response::Event::Final(_)) = msg.event {
            finals += 1;
        }
    }
    assert_eq!(finals, 1, "the in-flight stream completed");
    let status = tokio::task::spawn_blocking(move || server.child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn request_ids_come_back_and_traceparent_reaches_the_llm() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    configs.add("bot", &config(&llm.base_url(), "streaming: True\n"));
    let mut server = start(configs.root()).await;
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut req = tonic::Request::new(request("bot", "hi"));
    req.metadata_mut()
        .insert("x-request-id", MetadataValue::from_static("req-123"));
    req.metadata_mut()
        .insert("traceparent", MetadataValue::from_static(trace));
    let r = server.client.stream_generate(req).await.unwrap();
    assert_eq!(r.metadata().get("x-request-id").unwrap(), "req-123");
    let mut s = r.into_inner();
    while s.message().await.unwrap().is_some() {}
    assert_eq!(llm.state.requests()[0]["_traceparent"], trace);
    // Without one, an id is generated; errors carry it too.
    let r = server.client.generate(request("bot", "hi")).await.unwrap();
    assert!(!r.metadata().get("x-request-id").unwrap().is_empty());
    let e = server
        .client
        .generate(request("nope", "hi"))
        .await
        .unwrap_err();
    assert!(e.metadata().get("x-request-id").is_some());

    let base = start_http(configs.root()).await;
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .header("x-request-id", "http-7")
        .header("traceparent", trace)
        .json(&json!({"config_id": "bot", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "http-7");
    let status = r.status().as_u16();
    assert_eq!(status, 200, "{}", r.text().await.unwrap());
    let all = llm.state.requests();
    assert_eq!(all.last().unwrap()["_traceparent"], trace, "{all:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_key_material_reaches_the_logs_even_at_trace_level() {
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    let yml = config(&llm.base_url(), "streaming: True\n").replace(
        "      base_url:",
        "      api_key: sk-upstream-SECRET-0001\n      base_url:",
    );
    configs.add("support", &yml);
    let keys = keys_file(configs.root());
    let keys = keys.to_str().unwrap();
    let server = spawn_with_env(
        configs.root(),
        &["--api-keys", keys],
        &[("RUST_LOG", "trace")],
    );
    let mut client = server.client().await;
    for key in ["key-support", "wrong-key-XYZ"] {
        let _ = client
            .generate(with_key(request("support", "hi"), Some(key)))
            .await;
    }
    assert_eq!(llm.state.requests().len(), 1);
    // Stop it and read everything it logged.
    server.signal("-TERM");
    let server = tokio::task::spawn_blocking(move || {
        let mut server = server;
        let _ = server.child.wait();
        server
    })
    .await
    .unwrap();
    server.wait_log("stopped").await;
    let text = server.log.lock().unwrap().clone();
    assert!(text.lines().count() > 3, "{text}");
    for secret in ["key-support", "wrong-key-XYZ", "sk-upstream-SECRET-0001"] {
        assert!(!text.contains(secret), "`{secret}` leaked into the logs");
    }
}

#[tokio::test]
async fn errors_show_a_caller_only_what_it_may_see() {
    // Item 10.
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    configs.add("support", &config(&llm.base_url(), ""));
    configs.add("sales", &config(&llm.base_url(), ""));
    let settings = ServerSettings {
        api_keys: Some(Arc::new(ApiKeys::load(&keys_file(configs.root())).unwrap())),
        ..ServerSettings::default()
    };
    let mut server = start_with(configs.root(), settings).await;
    // NOT_FOUND lists only the configs the key may use.
    let e = server
        .client
        .generate(with_key(request("nope", "hi"), Some("key-support")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(
        e.message().contains("support") && !e.message().contains("sales"),
        "{}",
        e.message()
    );
    // A precondition names the config's file relative to the root, not a server path.
    let e = server
        .client
        .stream_generate(with_key(request("support", "hi"), Some("key-support")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let root = configs.root().to_string_lossy().to_string();
    assert!(
        e.message().contains("support/config.yml") && !e.message().contains(&root),
        "{}",
        e.message()
    );
    // A 10,000-character config id is a bad argument, not echoed back.
    let e = server
        .client
        .generate(with_key(
            request(&"x".repeat(10_000), "hi"),
            Some("key-admin"),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().len() < 200, "{}", e.message());
    // An x-request-id with unsafe characters is replaced; an invalid
    // traceparent is not passed on: a new trace starts.
    let mut req = with_key(request("support", "hi"), Some("key-support"));
    req.metadata_mut().insert(
        "x-request-id",
        MetadataValue::from_static("evil id;\t<script>"),
    );
    req.metadata_mut()
        .insert("traceparent", MetadataValue::from_static("00-not-a-trace"));
    let r = server.client.generate(req).await.unwrap();
    let rid = r.metadata().get("x-request-id").unwrap().to_str().unwrap();
    assert_eq!(rid.len(), 36, "a generated UUID: {rid}");
    let sent = llm.state.requests().last().unwrap()["_traceparent"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(sent, "00-not-a-trace");
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(
        parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
        [2, 32, 16, 2],
        "{sent}"
    );
}

/// Established TCP connections to `port` on loopback, from the client side.
fn connections_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let remote_port = f
                .get(2)
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            remote_port == Some(port) && f.get(3) == Some(&"01")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_burst_the_upstream_pool_keeps_a_bounded_number_of_idle_connections() {
    // Item 8: idle upstream sockets no longer linger by the thousand.
    let llm = fake_llm(Script {
        delay: Duration::from_millis(30),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    configs.add("bot", &config(&llm.base_url(), "streaming: True\n"));
    let upstream = streamguard::llm::UpstreamSettings {
        pool_max_idle_per_host: 2,
        pool_idle_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let server = builder(configs.root(), ServerSettings::default())
        .upstream(upstream)
        .grpc(listener().await)
        .build()
        .await
        .unwrap();
    let server = start_server(server).await;
    let burst: Vec<_> = (0..20)
        .map(|_| {
            let mut client = server.client.clone();
            tokio::spawn(async move { collect(&mut client, request("bot", "hi")).await.unwrap() })
        })
        .collect();
    let port = llm.addr.port();
    let sampler = tokio::spawn(async move {
        let mut peak = 0;
        loop {
            peak = peak.max(connections_to(port));
            if peak > 2 {
                return peak;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    for task in burst {
        assert!(task.await.unwrap().error.is_none());
    }
    let peak = tokio::time::timeout(Duration::from_secs(1), sampler)
        .await
        .map_or(0, |p| p.unwrap());
    assert!(peak > 2, "the burst used {peak} connections at once");
    let settle = |limit: usize| async move {
        for _ in 0..100 {
            if connections_to(llm.addr.port()) <= limit {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    };
    assert!(settle(2).await, "at most 2 idle connections are kept");
    assert!(
        settle(0).await,
        "idle connections close after the idle timeout"
    );
}

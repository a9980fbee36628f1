//! The server's lifecycle in-process, on 127.0.0.1:0 listeners, waiting on
//! its events rather than on sleeps: reload by handle and by file watch,
//! drain on shutdown, and the end of the shutdown grace on both transports.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns
mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::json;
use streamguard::{
    pb,
    server::{ServerEvent, ServerSettings},
};
use tokio::sync::{broadcast, oneshot};
use tonic::Code;

/// The next event that `pick` accepts, or a failure after 10 s.
async fn wait_for<T>(
    events: &mut broadcast::Receiver<ServerEvent>,
    mut pick: impl FnMut(ServerEvent) -> Option<T>,
) -> T {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(e) => {
                    if let Some(t) = pick(e) {
                        return t;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(e) => panic!("events ended: {e}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("the event never came")
}

async fn ids(
    client: &mut pb::guardrails_client::GuardrailsClient<tonic::transport::Channel>,
) -> Vec<String> {
    let list = client
        .list_configs(pb::ListConfigsRequest {})
        .await
        .unwrap();
    list.into_inner()
        .configs
        .into_iter()
        .map(|c| c.id)
        .collect()
}

#[tokio::test]
async fn a_reload_applies_new_configs_and_a_broken_edit_keeps_the_old_ones_serving() {
    let configs = Configs::new();
    configs.add("a", &config("http://127.0.0.1:9/v1", ""));
    let mut server = builder(configs.root(), ServerSettings::default())
        .grpc(listener().await)
        .build()
        .await
        .unwrap();
    let reload = server.reload_handle().expect("a config root reloads");
    let mut events = server.events();
    let mut running = start_server(server).await;
    assert_eq!(ids(&mut running.client).await, ["a"]);

    configs.add("b", &config("http://127.0.0.1:9/v1", "streaming: True\n"));
    let report = reload.reload().await.unwrap();
    assert_eq!(report.configs, ["a", "b"]);
    assert_eq!(ids(&mut running.client).await, ["a", "b"]);
    let seen = wait_for(&mut events, |e| match e {
        ServerEvent::Reloaded(r) => Some(r),
        _ => None,
    })
    .await;
    assert_eq!(seen.trigger, "request");

    std::fs::write(configs.root().join("b/config.yml"), "models: [oops\n").unwrap();
    let report = reload.reload().await.unwrap();
    assert_eq!(report.failed.len(), 1);
    let (id, error) = &report.failed[0];
    assert!(id == "b" && error.contains("b/config.yml"), "{error}");
    assert_eq!(
        ids(&mut running.client).await,
        ["a", "b"],
        "the previous configs keep serving"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn watch_reloads_an_edited_config_without_a_restart() {
    let configs = Configs::new();
    configs.add("a", &config("http://127.0.0.1:9/v1", ""));
    let server = builder(configs.root(), ServerSettings::default())
        .grpc(listener().await)
        .watch(true)
        .build()
        .await
        .unwrap();
    let mut events = server.events();
    let running = start_server(server).await;
    let streaming = |c: &pb::ListConfigsResponse| c.configs[0].streaming_supported;
    let list = |mut c: pb::guardrails_client::GuardrailsClient<tonic::transport::Channel>| async move {
        c.list_configs(pb::ListConfigsRequest {})
            .await
            .unwrap()
            .into_inner()
    };
    assert!(!streaming(&list(running.client.clone()).await));

    // Edits are written as editors and ConfigMaps do, atomically (a
    // truncated file in between would be a valid rails-only config).
    // The new file is written outside the watched root, then moved in.
    let edit = |text: &str| {
        let outside = configs.root().parent().unwrap();
        let tmp = tempfile::NamedTempFile::new_in(outside).unwrap();
        std::fs::write(tmp.path(), text).unwrap();
        tmp.persist(configs.root().join("a/config.yml")).unwrap();
    };
    // Edit a's config on disk: it becomes streamable without a restart.
    edit(&config("http://127.0.0.1:9/v1", "streaming: True\n"));
    let report = wait_for(&mut events, |e| match e {
        ServerEvent::Reloaded(r) => Some(r),
        _ => None,
    })
    .await;
    assert_eq!(report.trigger, "watch");
    assert!(streaming(&list(running.client.clone()).await));

    // A broken edit is refused and the previous config keeps serving.
    edit("models: [oops\n");
    let error = wait_for(&mut events, |e| match e {
        ServerEvent::ReloadFailed { error, .. } => Some(error),
        _ => None,
    })
    .await;
    assert!(error.contains("a/config.yml"), "{error}");
    assert!(
        streaming(&list(running.client.clone()).await),
        "the previous config keeps serving"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_drains_in_flight_streams_and_stops_accepting() {
    let llm = fake_llm(Script {
        tokens: tokens(&"tock ".repeat(30)),
        delay: Duration::from_millis(20),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    configs.add("bot", &config(&llm.base_url(), "streaming: True\n"));
    let server = builder(configs.root(), ServerSettings::default())
        .grpc(listener().await)
        .build()
        .await
        .unwrap();
    let addr = server.grpc_addr().unwrap();
    let mut events = server.events();
    let (stop, stopped) = oneshot::channel::<()>();
    let run = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    let mut client = pb::guardrails_client::GuardrailsClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let mut stream = client
        .stream_generate(request("bot", "hi"))
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().unwrap();
    stop.send(()).unwrap();
    wait_for(&mut events, |e| (e == ServerEvent::Draining).then_some(())).await;
    let mut finals = 0;
    while let Some(msg) = stream.message().await.unwrap() {
        if let Some(pb::stream_generate_response::Event::Final(_)) = msg.event {
            finals += 1;
        }
    }
    assert_eq!(finals, 1, "the in-flight stream completed");
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the server stopped after the drain")
        .unwrap()
        .unwrap();
    let refused = pb::guardrails_client::GuardrailsClient::connect(format!("http://{addr}")).await;
    assert!(
        refused.is_err(),
        "a new connection was accepted after the drain"
    );
}

/// Reads an SSE response to its end; returns the `data:` payloads.
async fn sse_events(response: reqwest::Response) -> Vec<String> {
    let mut body = response.bytes_stream();
    let mut text = String::new();
    while let Some(chunk) = body.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: ").map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_grace_grpc_and_sse_streams_end_and_the_server_stops() {
    // Answers far longer than the grace: 200 tokens, 30 ms apart.
    let llm = fake_llm(Script {
        tokens: tokens(&"tock ".repeat(200)),
        delay: Duration::from_millis(30),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    configs.add("bot", &config(&llm.base_url(), "streaming: True\n"));
    let settings = ServerSettings {
        shutdown_grace: Duration::from_millis(500),
        ..ServerSettings::default()
    };
    let server = builder(configs.root(), settings)
        .grpc(listener().await)
        .http(listener().await)
        .build()
        .await
        .unwrap();
    let (grpc, http) = (server.grpc_addr().unwrap(), server.http_addr().unwrap());
    let mut events = server.events();
    let (stop, stopped) = oneshot::channel::<()>();
    let run = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    let mut client = pb::guardrails_client::GuardrailsClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    let mut stream = client
        .stream_generate(request("bot", "hi"))
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().unwrap();
    let sse = reqwest::Client::new()
        .post(format!("http://{http}/v1/chat/completions"))
        .json(&json!({"config_id": "bot", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status().as_u16(), 200);
    let sse = tokio::spawn(sse_events(sse));
    stop.send(()).unwrap();

    let status = loop {
        match stream.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without an error"),
            Err(s) => break s,
        }
    };
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("shutting down"),
        "{}",
        status.message()
    );
    wait_for(&mut events, |e| {
        (e == ServerEvent::GraceExpired).then_some(())
    })
    .await;

    // The SSE stream ended too, well before its 6 s answer: an error event, then [DONE].
    let sse = tokio::time::timeout(Duration::from_secs(5), sse)
        .await
        .expect("the SSE stream ended within the grace")
        .unwrap();
    assert_eq!(sse.last().map(String::as_str), Some("[DONE]"), "{sse:?}");
    let error: serde_json::Value = serde_json::from_str(&sse[sse.len() - 2]).unwrap();
    assert_eq!(error["error"]["code"], "shutting_down", "{error}");
    assert!(sse.len() < 150, "the answer was cut: {} events", sse.len());

    llm.state.wait_disconnect().await;
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the server stopped after the grace")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_broken_config_keeps_its_previous_version_and_the_others_reload() {
    // Item 3: one broken directory no longer blocks the others.
    let llm = fake_llm(Script::default()).await;
    let configs = Configs::new();
    configs.add("a", &config(&llm.base_url(), ""));
    configs.add("b", &config(&llm.base_url(), ""));
    let mut server = builder(configs.root(), ServerSettings::default())
        .grpc(listener().await)
        .build()
        .await
        .unwrap();
    let reload = server.reload_handle().unwrap();
    let mut running = start_server(server).await;
    // Break b, edit a (it can stream now), add c, in one reload.
    std::fs::write(configs.root().join("b/config.yml"), "models: [oops\n").unwrap();
    configs.add("a", &config(&llm.base_url(), "streaming: True\n"));
    configs.add("c", &config(&llm.base_url(), ""));
    let report = reload.reload().await.unwrap();
    assert_eq!(
        report.configs,
        ["a", "b", "c"],
        "b keeps serving its previous version"
    );
    assert_eq!(
        report
            .failed
            .iter()
            .map(|(id, _)| id.as_str())
            .collect::<Vec<_>>(),
        ["b"]
    );
    let list = running
        .client
        .list_configs(pb::ListConfigsRequest {})
        .await
        .unwrap()
        .into_inner();
    let a = list.configs.iter().find(|c| c.id == "a").unwrap();
    assert!(a.streaming_supported, "a's edit applied");
    let whole = running.client.generate(request("b", "hi")).await;
    assert!(whole.is_ok(), "the previous b still answers: {whole:?}");
    // A removed directory is dropped.
    std::fs::remove_dir_all(configs.root().join("c")).unwrap();
    let report = reload.reload().await.unwrap();
    assert_eq!(report.configs, ["a", "b"]);
    running.shutdown().await;
}

/// Writes a Kubernetes ConfigMap mount as kubelet does: the files in a
/// `..<timestamp>` directory, a `..data` symlink to it, and one symlink per
/// key through `..data`. Returns the timestamp directory.
fn configmap_generation(mount: &std::path::Path, generation: u32, files: &[(&str, String)]) {
    let dir = format!("..2026_12_01_00_00_0{generation}.000000001");
    std::fs::create_dir_all(mount.join(&dir)).unwrap();
    for (name, text) in files {
        std::fs::write(mount.join(&dir).join(name), text).unwrap();
        let key = mount.join(name);
        if std::fs::symlink_metadata(&key).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &key).unwrap();
        }
    }
    // The atomic swap: a new link renamed over `..data`.
    let tmp = mount.join("..data_tmp");
    std::os::unix::fs::symlink(&dir, &tmp).unwrap();
    std::fs::rename(&tmp, mount.join("..data")).unwrap();
}

#[tokio::test]
async fn a_kubernetes_configmap_mount_loads_and_its_swap_reloads() {
    // Item 1: the kubelet layout, read once per key, and its atomic swap.
    let llm = fake_llm(Script::default()).await;
    let tmp = tempfile::tempdir().unwrap();
    let mount = tmp.path().join("configs");
    std::fs::create_dir(&mount).unwrap();
    configmap_generation(
        &mount,
        1,
        &[
            ("config.yml", config(&llm.base_url(), "")),
            ("prompts.yml", SELF_CHECK_PROMPTS.to_string()),
        ],
    );
    let server = builder(&mount, ServerSettings::default())
        .grpc(listener().await)
        .watch(true)
        .build()
        .await
        .unwrap();
    let mut events = server.events();
    let mut running = start_server(server).await;
    let streaming = |c: &pb::ListConfigsResponse| c.configs[0].streaming_supported;
    let list = |mut c: pb::guardrails_client::GuardrailsClient<tonic::transport::Channel>| async move {
        c.list_configs(pb::ListConfigsRequest {})
            .await
            .unwrap()
            .into_inner()
    };
    assert!(!streaming(&list(running.client.clone()).await));
    let got = running
        .client
        .generate(request("", "hi"))
        .await
        .unwrap()
        .into_inner();
    assert!(!got.message.unwrap().content.is_empty());

    configmap_generation(
        &mount,
        2,
        &[
            ("config.yml", config(&llm.base_url(), "streaming: True\n")),
            ("prompts.yml", SELF_CHECK_PROMPTS.to_string()),
        ],
    );
    wait_for(&mut events, |e| match e {
        ServerEvent::Reloaded(r) if r.failed.is_empty() => Some(()),
        _ => None,
    })
    .await;
    assert!(
        streaming(&list(running.client.clone()).await),
        "the new generation serves"
    );
    running.shutdown().await;
}

//! Issue 14 item 5: connection bounds on real sockets. A client that sends
//! nothing, drips its headers, or sits idle is closed; a long stream is not;
//! past the connection limit new connections are closed at once while the
//! metrics listener keeps answering.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns
mod common;

use std::{net::SocketAddr, time::Duration};

use common::*;
use streamguard::server::{ConnectionSettings, ServerSettings};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

fn settings(connections: ConnectionSettings) -> ServerSettings {
    ServerSettings {
        connections,
        ..ServerSettings::default()
    }
}

fn quick() -> ConnectionSettings {
    ConnectionSettings {
        first_request_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(400),
        ..ConnectionSettings::default()
    }
}

struct Running {
    grpc: SocketAddr,
    http: SocketAddr,
    metrics: SocketAddr,
}

async fn serve(connections: ConnectionSettings, base_url: &str) -> (Configs, Running) {
    let configs = Configs::new();
    configs.add("bot", &config(base_url, "streaming: True\n"));
    let server = builder(configs.root(), settings(connections))
        .grpc(listener().await)
        .http(listener().await)
        .metrics(listener().await)
        .build()
        .await
        .unwrap();
    let running = Running {
        grpc: server.grpc_addr().unwrap(),
        http: server.http_addr().unwrap(),
        metrics: server.metrics_addr().unwrap(),
    };
    tokio::spawn(server.run(std::future::pending()));
    (configs, running)
}

/// Reads until the server closes the connection; `None` if it stays open
/// for `within`.
async fn closed_within(socket: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.ok()?;
    Some(seen)
}

async fn get_metrics(addr: SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn item5_silent_connections_are_closed_on_both_listeners() {
    let llm = fake_llm(Script::default()).await;
    let (_configs, s) = serve(quick(), &llm.base_url()).await;
    for addr in [s.http, s.grpc] {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        // A gRPC client that never sends the HTTP/2 preface, an HTTP client
        // that never sends a request.
        assert!(
            closed_within(&mut socket, Duration::from_secs(5))
                .await
                .is_some(),
            "{addr} kept a silent connection open"
        );
    }
    let metrics = get_metrics(s.metrics).await;
    for listener in ["grpc", "http"] {
        let line = format!(
            "streamguard_connections_closed_total{{listener=\"{listener}\",reason=\"first_request_timeout\"}}"
        );
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
}

#[tokio::test]
async fn item5_headers_dripped_byte_by_byte_are_cut_off() {
    let llm = fake_llm(Script::default()).await;
    let (_configs, s) = serve(quick(), &llm.base_url()).await;
    let mut socket = TcpStream::connect(s.http).await.unwrap();
    socket
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let drip = async {
        for _ in 0..100 {
            if socket.write_all(b"x").await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    };
    assert!(
        drip.await,
        "a header dripped for 5 s kept its connection open"
    );
}

#[tokio::test]
async fn item5_an_idle_keep_alive_connection_closes_but_a_long_stream_does_not() {
    let llm = fake_llm(Script {
        tokens: tokens("one two three four five six seven eight"),
        delay: Duration::from_millis(150),
        ..Script::default()
    })
    .await;
    let (_configs, s) = serve(quick(), &llm.base_url()).await;

    let mut socket = TcpStream::connect(s.http).await.unwrap();
    socket
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let seen = closed_within(&mut socket, Duration::from_secs(5))
        .await
        .expect("the idle keep-alive connection was closed");
    assert!(
        String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"),
        "the request was answered before the close"
    );

    // 8 tokens 150 ms apart: the stream outlives the 400 ms idle timeout.
    let mut client =
        streamguard::pb::guardrails_client::GuardrailsClient::connect(format!("http://{}", s.grpc))
            .await
            .unwrap();
    let out = collect(&mut client, request("bot", "hi")).await.unwrap();
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(
        out.chunks.concat(),
        "one two three four five six seven eight"
    );
    let reqwest = reqwest::Client::new();
    let body = reqwest
        .post(format!("http://{}/v1/chat/completions", s.http))
        .json(&serde_json::json!({
            "config_id": "bot", "stream": true,
            "messages": [{"role": "user", "content": "hi"}]
        }))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
}

#[tokio::test]
async fn item5_past_the_connection_limit_new_connections_are_closed_and_metrics_still_answer() {
    let llm = fake_llm(Script::default()).await;
    let (_configs, s) = serve(
        ConnectionSettings {
            max_connections: Some(4),
            first_request_timeout: Duration::from_secs(60),
            ..ConnectionSettings::default()
        },
        &llm.base_url(),
    )
    .await;
    let mut held = Vec::new();
    for addr in [s.http, s.http, s.grpc, s.grpc] {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    // The limit is shared by both listeners: a fifth connection to either is
    // closed at once, without a byte.
    for addr in [s.http, s.grpc] {
        let mut extra = TcpStream::connect(addr).await.unwrap();
        let seen = closed_within(&mut extra, Duration::from_secs(5))
            .await
            .expect("refused");
        assert!(seen.is_empty());
    }
    let metrics = get_metrics(s.metrics).await;
    assert!(
        metrics.contains("streamguard_connections_open{listener=\"http\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("streamguard_connections_refused_total{listener=\"grpc\"} 1"),
        "{metrics}"
    );
    // Closing the idle ones frees their slots.
    held.clear();
    let mut ok = false;
    for _ in 0..100 {
        if let Ok(r) = reqwest::get(format!("http://{}/health", s.http)).await {
            ok = r.status().is_success();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "/health answers once slots are free");
}

//! The caller going away, deadlines and graceful shutdown.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod common;

use std::time::Duration;

use common::*;
use streamguard::pb::stream_generate_response::Event;
use tonic::Code;

fn slow_script() -> Script {
    Script {
        tokens: tokens(&"tick ".repeat(200)),
        delay: Duration::from_millis(20),
        ..Script::default()
    }
}

#[tokio::test]
async fn caller_cancelling_mid_stream_drops_the_upstream_request() {
    let llm = fake_llm(slow_script()).await;
    let configs = Configs::new();
    configs.add("bot", &config(&llm.base_url(), "streaming: True\n"));
    let mut server = start(configs.root()).await;
    let mut stream = server
        .client
        .stream_generate(request("bot", "hi"))
        .await
        .unwrap()
        .into_inner();
    for _ in 0..3 {
        let msg = stream.message().await.unwrap().unwrap();
        assert!(matches!(msg.event, Some(Event::Chunk(_))));
    }
    drop(stream);
    llm.state.wait_disconnect().await;
    assert_eq!(
        llm.state
            .completed
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[tokio::test]
async fn the_callers_deadline_ends_the_stream_with_deadline_exceeded() {
    let llm = fake_llm(slow_script()).await;
    let configs = Configs::new();
    configs.add("bot", &config(&llm.base_url(), "streaming: True\n"));
    let mut server = start(configs.root()).await;
    let mut req = tonic::Request::new(request("bot", "hi"));
    req.set_timeout(Duration::from_millis(300));
    let mut stream = server
        .client
        .stream_generate(req)
        .await
        .unwrap()
        .into_inner();
    let mut chunks = 0;
    let status = loop {
        match stream.message().await {
            Ok(Some(_)) => chunks += 1,
            Ok(None) => panic!("stream ended without an error"),
            Err(s) => break s,
        }
    };
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(chunks > 0 && chunks < 200);
    llm.state.wait_disconnect().await;

    let mut req = tonic::Request::new(request("bot", "hi"));
    req.set_timeout(Duration::from_millis(100));
    let s = server.client.generate(req).await.unwrap_err();
    assert_eq!(s.code(), Code::DeadlineExceeded);
}

#[tokio::test]
async fn shutdown_drains_an_in_flight_stream_to_its_final_event() {
    let llm = fake_llm(Script {
        tokens: tokens(&"tock ".repeat(20)),
        delay: Duration::from_millis(10),
        ..Script::default()
    })
    .await;
    let configs = Configs::new();
    configs.add("bot", &config(&llm.base_url(), "streaming: True\n"));
    let mut server = start(configs.root()).await;
    let mut stream = server
        .client
        .stream_generate(request("bot", "hi"))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert!(matches!(first.event, Some(Event::Chunk(_))));
    let drained = tokio::spawn(async move {
        let mut finals = 0;
        let mut chunks = 1;
        while let Some(msg) = stream.message().await.unwrap() {
            match msg.event {
                Some(Event::Chunk(_)) => chunks += 1,
                Some(Event::Final(_)) => finals += 1,
                Some(_) | None => {}
            }
        }
        (chunks, finals)
    });
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("shutdown drains");
    let (chunks, finals) = drained.await.unwrap();
    assert_eq!((chunks, finals), (21, 1));
}

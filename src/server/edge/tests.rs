//! The edge's bounds: deadlines, the grace, the outcome counted once.
use super::*;
use crate::{engine::Request, server::ServerSettings};
use futures_util::StreamExt;

fn state(yaml: &str) -> Arc<State> {
    let g = Guardrails::from_yaml("bot", yaml).unwrap();
    State::new(
        Registry::from_configs([g])
            .with_default(Some("bot".into()))
            .unwrap(),
        ServerSettings::default(),
    )
}

const SLOW: &str = "models:\n  - type: main\n    engine: scripted\n    model: m\n    parameters:\n      first_token_ms: 100\n      delay_ms: 50\n      replies: [\"one two three four five six\"]\nstreaming: True\n";

fn call(state: &Arc<State>, deadline: Option<Duration>) -> Call {
    let meta = CallMeta {
        deadline,
        ..CallMeta::default()
    };
    state
        .prepare(Transport::Grpc, "Test", meta, |_| {
            Ok((Vec::new(), Request::user("hi"), ()))
        })
        .unwrap()
        .0
}

#[tokio::test(start_paused = true)]
async fn the_deadline_ends_a_stream_with_deadline_exceeded() {
    let state = state(SLOW);
    let mut s = call(&state, Some(Duration::from_millis(120)))
        .stream()
        .unwrap();
    let mut chunks = 0;
    let end = loop {
        match s.next().await {
            Some(Ok(Event::Chunk(_))) => chunks += 1,
            Some(Ok(Event::Reasoning(_) | Event::ToolCall(_))) => {}
            Some(Ok(Event::Final(_))) => panic!("finished before the deadline"),
            Some(Err(e)) => break e,
            None => panic!("ended without an error"),
        }
    };
    assert!(matches!(end, Error::DeadlineExceeded(_)), "{end}");
    assert!(
        (1..6).contains(&chunks),
        "{chunks} chunks before the deadline"
    );
    assert!(s.next().await.is_none(), "nothing after the error");
}

#[tokio::test(start_paused = true)]
async fn the_end_of_the_grace_ends_streams_and_whole_answers() {
    let state = state(SLOW);
    let mut s = call(&state, None).stream().unwrap();
    assert!(matches!(s.next().await, Some(Ok(Event::Chunk(_)))));
    let whole = tokio::spawn(call(&state, None).generate());
    tokio::time::sleep(Duration::from_millis(10)).await;
    state.abort_streams();
    let end = loop {
        match s.next().await {
            Some(Ok(_)) => continue,
            Some(Err(e)) => break e,
            None => panic!("ended without an error"),
        }
    };
    assert!(matches!(end, Error::ShuttingDown(_)), "{end}");
    let whole = whole.await.unwrap();
    assert!(matches!(whole, Err(Error::ShuttingDown(_))));
}

#[test]
fn outcomes_name_their_code_per_transport() {
    let cases = [
        (Outcome::Ok, "OK", "200"),
        (Outcome::Blocked(Stage::Input), "OK", "200"),
        (Outcome::Cancelled, "CANCELLED", "499"),
        (Outcome::Deadline, "DEADLINE_EXCEEDED", "504"),
        (Outcome::ShuttingDown, "UNAVAILABLE", "503"),
    ];
    for (o, grpc, http) in cases {
        assert_eq!(o.code(Transport::Grpc), grpc);
        assert_eq!(o.code(Transport::Http), http);
    }
    let e = Error::invalid("messages", "none");
    assert_eq!(
        Outcome::of_error(&e).code(Transport::Grpc),
        "INVALID_ARGUMENT"
    );
    assert_eq!(Outcome::of_error(&e).code(Transport::Http), "400");
}

#[test]
fn a_tally_counts_once_and_a_dropped_call_as_cancelled() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    ::metrics::with_local_recorder(&recorder, || {
        let mut t = Tally::new(Transport::Grpc, "Test");
        t.config = "bot".into();
        t.record(Outcome::Blocked(Stage::Output));
        // A second outcome, and the drop, count nothing more.
        t.record(Outcome::Cancelled);
        drop(t);
        drop(Tally::new(Transport::Http, "Test"));
    });
    let text = handle.render();
    let count = |series: &str| {
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit_once(' '))
            .map(|(_, v)| v.to_string())
    };
    assert_eq!(
        count(
            r#"streamguard_requests_total{transport="grpc",config="bot",method="Test",code="OK"}"#
        )
        .as_deref(),
        Some("1"),
        "{text}"
    );
    assert_eq!(
        count(
            r#"streamguard_requests_blocked_total{transport="grpc",config="bot",method="Test",stage="output"}"#
        )
        .as_deref(),
        Some("1"),
        "{text}"
    );
    assert!(!text.contains("CANCELLED"), "{text}");
    assert_eq!(
        count(r#"streamguard_requests_total{transport="http",config="",method="Test",code="499"}"#)
            .as_deref(),
        Some("1"),
        "{text}"
    );
}

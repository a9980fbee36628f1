//! `POST /v1/guardrail/checks`, NeMo's server's endpoint for checking
//! messages without generating: each message on its own, a user message
//! through the input rails and an assistant message through the output
//! rails; the answer is NeMo's `GuardrailCheckResponse` (the overall status,
//! each rail's status, each message's rails, the blocking rails and stats),
//! or with `stream: true` one such line per message checked (NDJSON), then
//! the final one.

use std::collections::BTreeMap;

use axum::{
    body::{Body, Bytes},
    http::header,
    response::{IntoResponse, Response as HttpResponse},
};
use serde_json::{Map, Value, json};

use crate::{
    engine::{self, Decision, GenerationLog},
    llm::{ChatMessage, Role},
    rails::Stage,
    server::edge::Call,
};

/// The checks one body asks for: each message's request and stage.
pub(super) struct Checks {
    items: Vec<(usize, Role, engine::Request, Stage)>,
    pub stream: bool,
}

/// The body's messages as one check each (system messages are not checked).
pub(super) fn plan(request: &engine::Request, stream: bool) -> Checks {
    let mut items = Vec::new();
    for (i, m) in request.messages.iter().enumerate() {
        let (messages, stage) = match m.role {
            Role::User => (vec![m.clone()], Stage::Input),
            // NeMo: an assistant's tool calls go through the tool output rails.
            Role::Assistant if !m.tool_calls().is_empty() => {
                (vec![ChatMessage::user(""), m.clone()], Stage::ToolOutput)
            }
            // NeMo checks an answer alone, after an empty user message.
            Role::Assistant => (vec![ChatMessage::user(""), m.clone()], Stage::Output),
            // A tool result goes through the tool input rails, with the
            // call it answers (which names the tool).
            Role::Tool => {
                let id = m.extra.as_ref().and_then(|e| e.tool_call_id.as_deref());
                let asked = request.messages[..i]
                    .iter()
                    .rev()
                    .find(|a| a.tool_calls().iter().any(|c| Some(c.id.as_str()) == id));
                let mut messages: Vec<ChatMessage> = asked.into_iter().cloned().collect();
                messages.push(m.clone());
                (messages, Stage::ToolInput)
            }
            Role::System => continue,
        };
        let mut options = request.options.clone();
        options.log = true;
        let one = engine::Request {
            messages,
            options,
            context: request.context.clone(),
            ..engine::Request::default()
        };
        items.push((i, m.role, one, stage));
    }
    Checks { items, stream }
}

/// What the checks found so far, as NeMo's response aggregates it.
#[derive(Default)]
struct Tally {
    rails: BTreeMap<String, &'static str>,
    messages: Vec<Value>,
    blocked: Vec<String>,
    stats: Stats,
}

#[derive(Default)]
struct Stats {
    input: f64,
    output: f64,
    total: f64,
    llm_calls: u64,
    llm_seconds: f64,
    tokens: u64,
}

impl Tally {
    fn add(&mut self, index: usize, role: Role, result: &engine::CheckResult) {
        let mut rails = Map::new();
        if let Some(log) = &result.log {
            self.stats.add(log);
            for r in &log.rails {
                let status = match r.decision {
                    Decision::Block => "blocked",
                    _ => "success",
                };
                if status == "blocked" || !self.rails.contains_key(&r.flow) {
                    self.rails.insert(r.flow.clone(), status);
                }
                if status == "blocked" {
                    self.blocked.push(r.flow.clone());
                }
                rails.insert(r.flow.clone(), json!({ "status": status }));
            }
        }
        let mut message = json!({"index": index, "role": role.as_str(), "rails": rails});
        // streamguard's addition: the text a rail rewrote.
        if result.status == engine::CheckStatus::Modified {
            message["content"] = Value::String(result.content.clone());
        }
        self.messages.push(message);
    }

    fn status(&self) -> &'static str {
        match self.rails.values().any(|s| *s == "blocked") {
            true => "blocked",
            false => "success",
        }
    }

    fn rails_status(&self) -> Value {
        let m: Map<String, Value> = self
            .rails
            .iter()
            .map(|(k, s)| (k.clone(), json!({ "status": s })))
            .collect();
        Value::Object(m)
    }

    /// The response after the last message.
    fn last(&self) -> Value {
        let s = &self.stats;
        json!({
            "status": self.status(),
            "rails_status": self.rails_status(),
            "messages": self.messages,
            "guardrails_data": {"log": {
                "activated_rails": self.blocked,
                "stats": {
                    "input_rails_duration": s.input,
                    "output_rails_duration": s.output,
                    "total_duration": s.total,
                    "llm_calls_duration": s.llm_seconds,
                    "llm_calls_count": s.llm_calls,
                    "llm_calls_total_tokens": s.tokens,
                },
            }},
        })
    }

    /// A line of a streamed check, after one message.
    fn intermediate(&self) -> Value {
        json!({"status": self.status(), "rails_status": self.rails_status(), "messages": [],
               "guardrails_data": null})
    }
}

impl Stats {
    fn add(&mut self, log: &GenerationLog) {
        self.input += log.timing.input_rails.as_secs_f64();
        self.output += log.timing.output_rails.as_secs_f64();
        self.total += log.timing.total.as_secs_f64();
        for c in &log.llm_calls {
            self.llm_calls += 1;
            self.llm_seconds += c.duration.as_secs_f64();
            self.tokens += c.usage.map_or(0, |u| u64::from(u.total_tokens));
        }
    }
}

/// Runs the checks: the final response, or (streamed) a line per message
/// as it is checked, then the final one.
pub(super) async fn run(call: Call, checks: Checks) -> HttpResponse {
    let Checks { items, stream } = checks;
    let work: Vec<(engine::Request, Stage)> =
        items.iter().map(|(_, _, r, s)| (r.clone(), *s)).collect();
    let shape: Vec<(usize, Role)> = items.iter().map(|(i, role, _, _)| (*i, *role)).collect();
    if !stream {
        let mut tally = Tally::default();
        return match call.checks(work, |_| true).await {
            Ok(results) => {
                for ((i, role), r) in shape.iter().zip(&results) {
                    tally.add(*i, *role, r);
                }
                axum::Json(tally.last()).into_response()
            }
            Err(e) => super::error_response(&e),
        };
    }
    // The checks run in their own task and hand each result over; a caller
    // that goes away stops them at the next message.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let done = tx.clone();
    tokio::spawn(async move {
        let ended = call.checks(work, |r| tx.send(Ok(r.clone())).is_ok()).await;
        if let Err(e) = ended {
            let _ = done.send(Err(e));
        }
    });
    let lines = async_stream::stream! {
        let mut tally = Tally::default();
        let mut shape = shape.into_iter();
        while let Some(next) = rx.recv().await {
            match next {
                Ok(result) => {
                    let Some((i, role)) = shape.next() else { break };
                    tally.add(i, role, &result);
                    yield Ok::<Bytes, std::convert::Infallible>(line(&tally.intermediate()));
                }
                Err(e) => {
                    let error = json!({"status": "error", "rails_status": {}, "messages": [],
                                       "guardrails_data": {"error": e.to_string()}});
                    yield Ok(line(&error));
                    return;
                }
            }
        }
        // The checks ended before every message was checked: never a success.
        if shape.next().is_some() {
            let error = json!({"status": "error", "rails_status": {}, "messages": [],
                               "guardrails_data": {"error": "the checks ended early"}});
            yield Ok(line(&error));
            return;
        }
        yield Ok(line(&tally.last()));
    };
    let mut response = Body::from_stream(lines).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/x-ndjson"),
    );
    response
}

fn line(v: &Value) -> Bytes {
    let mut text = v.to_string();
    text.push('\n');
    Bytes::from(text)
}

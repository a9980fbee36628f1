//! `tracing` with NeMo's `FileSystem` adapter: one JSON line per request
//! (`{"schema_version", "trace_id", "spans": [...]}`) with a span for the
//! request, each rail run and each LLM call, in NeMo's OpenTelemetry span
//! format (or its legacy one). Lines are written by one thread per file,
//! through a bounded queue: a request never waits on the disk, and when the
//! disk falls behind, records are dropped and counted
//! (`streamguard_trace_records_dropped_total`).

use std::{
    collections::HashMap,
    io::Write,
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock, mpsc},
    time::Instant,
};

use serde_json::{Value, json};

use super::GenerationLog;
use crate::config::TracingConfig;

/// Records queued per trace file before new ones are dropped.
const QUEUE: usize = 1024;

/// The writer of each trace file, shared by every config writing to it.
fn writer(path: &Path) -> Option<mpsc::SyncSender<String>> {
    static WRITERS: OnceLock<Mutex<HashMap<PathBuf, mpsc::SyncSender<String>>>> = OnceLock::new();
    let abs = std::path::absolute(path).ok()?;
    let mut all = WRITERS.get_or_init(Mutex::default).lock().ok()?;
    if let Some(tx) = all.get(&abs) {
        return Some(tx.clone());
    }
    let (tx, rx) = mpsc::sync_channel::<String>(QUEUE);
    let file = abs.clone();
    std::thread::Builder::new()
        .name("streamguard-trace".into())
        .spawn(move || write_lines(&file, rx))
        .ok()?;
    all.insert(abs, tx.clone());
    Some(tx)
}

fn write_lines(path: &Path, rx: mpsc::Receiver<String>) {
    let open = || {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    };
    let mut file = match open() {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "trace file cannot be opened; traces are dropped");
            return;
        }
    };
    while let Ok(line) = rx.recv() {
        if let Err(e) = file.write_all(line.as_bytes()) {
            tracing::warn!(path = %path.display(), error = %e, "trace file write failed");
        }
    }
}

/// Where one config's traces go.
#[derive(Debug)]
pub(super) struct Tracer {
    file: Option<mpsc::SyncSender<String>>,
    legacy: bool,
    content: bool,
    config_id: String,
}

fn hex_id(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", fastrand::u8(..)))
        .collect()
}

impl Tracer {
    /// The tracer of a config with `tracing` on (`None` when it writes nowhere).
    pub(super) fn new(config: &TracingConfig, config_id: &str) -> Option<Self> {
        let file = config.file.as_deref().and_then(writer);
        file.as_ref()?;
        Some(Tracer {
            file,
            legacy: config.legacy,
            content: config.content,
            config_id: config_id.to_string(),
        })
    }

    /// Queues the trace of one request.
    pub(super) fn record(&self, log: &GenerationLog, started: Instant) {
        let Some(tx) = &self.file else { return };
        let mut line = self.trace(log, started).to_string();
        line.push('\n');
        if tx.try_send(line).is_err() {
            metrics::counter!("streamguard_trace_records_dropped_total").increment(1);
        }
    }

    fn span(&self, name: String, parent: Option<&str>, kind: &str, at: (f64, f64)) -> Value {
        let (start, duration) = at;
        let mut span = json!({
            "name": name, "span_id": hex_id(8), "parent_id": parent,
            "start_time": start, "end_time": start + duration, "duration": duration,
        });
        if !self.legacy {
            span["span_kind"] = json!(kind);
            span["attributes"] = json!({});
        }
        span
    }

    fn trace(&self, log: &GenerationLog, started: Instant) -> Value {
        let offset = |t: Instant| t.saturating_duration_since(started).as_secs_f64();
        let total = log.timing.total.as_secs_f64();
        let legacy = self.legacy;
        let mut root = self.span(
            if legacy {
                "interaction".into()
            } else {
                "guardrails.request".into()
            },
            None,
            "server",
            (0.0, total),
        );
        root["span_type"] = json!("InteractionSpan");
        let root_id = root["span_id"].as_str().unwrap_or_default().to_string();
        if legacy {
            root["metrics"] = json!({"interaction_total": 1, "interaction_seconds_total": total});
        } else {
            root["attributes"] = json!({"gen_ai.operation.name": "guardrails",
                "service.name": "streamguard", "streamguard.config_id": self.config_id});
        }
        let mut spans = vec![root];
        for r in &log.rails {
            let name = if legacy {
                format!("rail: {}", r.flow)
            } else {
                "guardrails.rail".into()
            };
            let mut s = self.span(
                name,
                Some(&root_id),
                "internal",
                (offset(r.started), r.duration.as_secs_f64()),
            );
            s["span_type"] = json!("RailSpan");
            if !legacy {
                s["attributes"] = json!({"rail.type": r.stage.as_str(), "rail.name": r.flow,
                    "rail.stop": r.decision == super::Decision::Block,
                    "rail.decisions": [r.decision.as_str()]});
            }
            spans.push(s);
        }
        for c in &log.llm_calls {
            let name = if legacy {
                format!("LLM: {}", c.task)
            } else {
                c.task.clone()
            };
            let mut s = self.span(
                name,
                Some(&root_id),
                "client",
                (offset(c.started), c.duration.as_secs_f64()),
            );
            s["span_type"] = json!("LLMSpan");
            let u = c.usage.unwrap_or_default();
            if legacy {
                s["metrics"] = json!({"llm_call_total": 1, "llm_call_prompt_tokens_total": u.prompt_tokens,
                    "llm_call_completion_tokens_total": u.completion_tokens});
            } else {
                s["attributes"] = json!({"gen_ai.operation.name": "chat", "streamguard.task": c.task,
                    "gen_ai.usage.input_tokens": u.prompt_tokens, "gen_ai.usage.output_tokens": u.completion_tokens,
                    "gen_ai.usage.total_tokens": u.total_tokens});
                if self.content {
                    s["events"] = json!([
                        {"name": "gen_ai.content.prompt", "timestamp": offset(c.started), "body": {"content": c.prompt}},
                        {"name": "gen_ai.content.completion", "timestamp": offset(c.started) + c.duration.as_secs_f64(), "body": {"content": c.completion}},
                    ]);
                }
            }
            spans.push(s);
        }
        json!({"schema_version": if legacy { "1.0" } else { "2.0" }, "trace_id": hex_id(16), "spans": spans})
    }
}

//! Streaming a generated bot message to the caller: cut where the model runs
//! on into an invented next turn, cleaned of its `bot …` line and quotes as
//! the tokens arrive, and recorded in the request's call log.

use std::{sync::Arc, time::Instant};

use futures_util::StreamExt;

use super::message::MessageCleaner;
use crate::{
    engine::answer::{Piece, PieceStream},
    llm::{CallLog, CallRecord, Delta, DeltaStream, StopFilter},
};

/// Where a generated bot message would run on into an invented next turn:
/// NeMo sends these as stop sequences, and streamguard also cuts there
/// itself for a model that ignores them.
pub(super) const NEW_TURN: [&str; 2] = ["\nuser ", "\nUser "];

/// The call's stop strings with the new-turn ones added.
pub(super) fn with_new_turn(stop: &[String]) -> Vec<String> {
    let mut all = stop.to_vec();
    for s in NEW_TURN {
        if !all.iter().any(|x| x == s) {
            all.push(s.to_string());
        }
    }
    all
}

/// Where a bot message comes from.
pub(super) struct MessageCall {
    pub(super) tokens: DeltaStream,
    pub(super) task: &'static str,
    pub(super) prompt: String,
    pub(super) started: Instant,
    /// What the call answered before the message (single call).
    pub(super) raw: String,
    /// Message text already received (single call).
    pub(super) rest: String,
}

/// Records a dialog call in the request's log, when it keeps one.
pub(super) fn record(
    calls: Option<&CallLog>,
    task: &str,
    prompt: &str,
    completion: String,
    usage: Option<crate::llm::Usage>,
    started: Instant,
) {
    if let Some(calls) = calls {
        calls.record(CallRecord {
            task: task.to_string(),
            prompt: format!("user: {prompt}"),
            completion,
            usage,
            duration: started.elapsed(),
            started,
        });
    }
}

/// One non-streaming call, recorded in the request's log.
pub(super) async fn complete(
    llm: &dyn crate::llm::Provider,
    call: crate::llm::ChatRequest,
    prompt: &str,
    calls: Option<&CallLog>,
) -> Result<String, crate::llm::LlmError> {
    let started = Instant::now();
    let task = call.task.clone();
    let completion = llm.complete(call).await?;
    record(
        calls,
        &task,
        prompt,
        completion.text.clone(),
        completion.usage,
        started,
    );
    Ok(completion.text)
}

/// Streams a generated bot message, cleaned as it arrives.
pub(super) fn message_stream(call: MessageCall, calls: Option<Arc<CallLog>>) -> PieceStream {
    Box::pin(async_stream::try_stream! {
        let MessageCall { mut tokens, task, prompt, started, mut raw, rest } = call;
        let mut cleaner = MessageCleaner::default();
        // The raw text is cut at a new turn first, so the cleaner still sees
        // the message's closing quote.
        let mut turn = StopFilter::new(NEW_TURN.iter().map(|s| s.to_string()).collect());
        let (first, mut more) = turn.push(rest);
        if let Some(out) = first.and_then(|t| cleaner.push(&t)) {
            yield Piece::Text(out);
        }
        let mut usage = None;
        while more && let Some(d) = tokens.next().await {
            match d? {
                Delta::Text(t) => {
                    if calls.is_some() {
                        raw.push_str(&t);
                    }
                    let (cut, go_on) = turn.push(t);
                    more = go_on;
                    if let Some(out) = cut.and_then(|t| cleaner.push(&t)) {
                        yield Piece::Text(out);
                    }
                }
                Delta::Usage(u) => {
                    usage = Some(u);
                    yield Piece::Usage(u);
                }
                Delta::Finish(f) => yield Piece::Finish(f),
                Delta::Reasoning(r) => yield Piece::Reasoning(r),
                // A dialog's prompts offer no tools.
                Delta::ToolCall(_) => {}
            }
        }
        // Dropping the tokens here ends the upstream call at a new turn.
        drop(tokens);
        if let Some(out) = turn.finish().and_then(|t| cleaner.push(&t)) {
            yield Piece::Text(out);
        }
        if let Some(out) = cleaner.finish() {
            yield Piece::Text(out);
        }
        record(calls.as_deref(), task, &prompt, raw, usage, started);
    })
}

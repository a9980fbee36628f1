//! The streaming path: input rails, then the main LLM's chunks relayed as
//! they arrive while output rails check them in windows.
//!
//! Window checks run concurrently with reading the upstream: while window N
//! is judged, the chunks of window N+1 buffer. What may be sent is decided by
//! one rule: with `stream_first`, a chunk is sent unless an earlier window is
//! still being checked; without it, only once its own window passed. So on a
//! block nothing after the blocked window has reached the client.

use std::{collections::VecDeque, sync::Arc, time::Instant};

use futures_util::{StreamExt, future::BoxFuture, stream::FuturesOrdered};

use super::{
    CallLog, CallRecord, Error, Event, EventStream, Inner, RailRecord, RailSet, Request, Response,
    Run, Stage, Violation, Window, Windows, run_rails,
};
use crate::{
    llm::Delta,
    rails::{RailInput, flow_spec},
};

/// Counts a stream in flight for as long as it lives.
struct InFlight;

impl InFlight {
    fn new() -> Self {
        metrics::gauge!("streamguard_streams_in_flight").increment(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!("streamguard_streams_in_flight").decrement(1.0);
    }
}

/// Time to the first chunk as the caller saw it, and what streamguard added
/// to the upstream's time to first token.
fn first_chunk_metrics(config_id: &str, started: Instant, upstream: Option<std::time::Duration>) {
    let total = started.elapsed();
    metrics::histogram!("streamguard_time_to_first_chunk_seconds", "config" => config_id.to_string())
        .record(total.as_secs_f64());
    let added = total.saturating_sub(upstream.unwrap_or_default());
    metrics::histogram!("streamguard_added_first_chunk_seconds", "config" => config_id.to_string())
        .record(added.as_secs_f64());
}

/// The outcome of one window check.
struct WindowCheck {
    window: Window,
    outcome: Result<(Option<Violation>, Option<String>), Error>,
    records: Vec<RailRecord>,
    took: std::time::Duration,
}

/// A window check that owns what it needs, so it can run while the stream
/// goes on. The window text is copied once per window, never per chunk.
fn check_window(
    inner: Arc<Inner>,
    rails: Arc<RailSet>,
    user_input: Arc<str>,
    window: Window,
    text: String,
    calls: Option<Arc<CallLog>>,
) -> BoxFuture<'static, WindowCheck> {
    Box::pin(async move {
        let started = Instant::now();
        let mut records = Vec::new();
        let input = RailInput {
            user_input: &user_input,
            bot_response: Some(&text),
            history: &[],
            calls: calls.as_deref(),
        };
        let outcome = run_rails(
            &rails,
            inner.config.output.parallel,
            Stage::Output,
            input,
            calls.is_some().then_some(&mut records),
        )
        .await;
        WindowCheck {
            window,
            outcome,
            records,
            took: started.elapsed(),
        }
    })
}

/// Runs a streaming request whose preconditions have been checked.
pub(super) fn run(
    inner: Arc<Inner>,
    mut run: Run,
    request: Request,
    started: Instant,
) -> EventStream {
    Box::pin(async_stream::stream! {
        let (violation, rewritten) = match run.input_check(&inner, &request.messages).await {
            Ok(outcome) => outcome,
            Err(e) => {
                yield Err(e);
                return;
            }
        };
        if let Some(v) = violation {
            let response = inner.blocked(v);
            // NeMo streams the refusal as one chunk.
            if !response.content.is_empty() {
                yield Ok(Event::Chunk(response.content.clone()));
            }
            yield Ok(Event::Final(Box::new(run.finish(response, started))));
            return;
        }
        let last = request.messages.len() - 1;
        let user_input: Arc<str> = match rewritten {
            Some(text) => text.into(),
            None => request.messages[last].content.as_str().into(),
        };
        let mut main_request = inner.main_request(request, &user_input);
        main_request.calls = run.log.as_ref().map(|l| l.calls.clone());
        let prompt = run.log.as_ref().map(|_| CallRecord::prompt_text(&main_request.messages));
        let calls = run.log.as_ref().map(|l| l.calls.clone());
        let config_id = inner.config.id.clone();
        // Metric handles are resolved once; per chunk only an atomic moves.
        let chunk_counter = metrics::counter!("streamguard_chunks_total", "config" => config_id.clone());
        let _in_flight = InFlight::new();
        let mut first_sent = false;
        let mut upstream_ttft = None;
        let generation = Instant::now();

        let settings = inner.config.output_streaming;
        let checking = !run.output.is_empty();
        let stream_first = !checking || settings.stream_first;
        // Only rewriting rails make what was sent differ from a prefix of the answer.
        let rewrites = run.output.iter().any(|r| flow_spec(r.flow()).is_some_and(|s| s.rewrites));
        let mut windows = Windows::new(settings.chunk_size, settings.context_size);
        let mut deltas = inner.main.stream(main_request);
        // The answer as generated; windows are slices of it.
        let mut content = String::new();
        let mut usage = None;
        // Window checks in flight, oldest first, and the chunk index each ends at.
        let mut pending = FuturesOrdered::new();
        let mut pending_ends: VecDeque<usize> = VecDeque::new();
        // Chunks received but not sent yet; `next_chunk` is the index of the first.
        let mut unsent: VecDeque<String> = VecDeque::new();
        let mut next_chunk = 0usize;
        // Chunks covered by windows that passed.
        let mut passed = 0usize;
        let mut sent_bytes = 0usize;
        let mut delivered = String::new();
        let mut violation = None;
        let mut dialog = None;
        let mut upstream_done = false;
        loop {
            let limit = if stream_first {
                pending_ends.front().copied().unwrap_or(usize::MAX)
            } else {
                passed
            };
            while next_chunk < limit {
                let Some(text) = unsent.pop_front() else { break };
                next_chunk += 1;
                sent_bytes += text.len();
                if rewrites {
                    delivered.push_str(&text);
                }
                if !first_sent {
                    first_sent = true;
                    first_chunk_metrics(&config_id, started, upstream_ttft);
                }
                chunk_counter.increment(1);
                yield Ok(Event::Chunk(text));
            }
            if upstream_done && pending.is_empty() {
                break;
            }
            tokio::select! {
                // Verdicts first: a block must stop the stream before more is read.
                biased;
                Some(check) = pending.next(), if !pending.is_empty() => {
                    let check: WindowCheck = check;
                    pending_ends.pop_front();
                    run.timing.output_rails += check.took;
                    if let Some(log) = run.log.as_mut() {
                        log.rails.extend(check.records);
                    }
                    match check.outcome {
                        Err(Error::Rail { rail, message }) => {
                            violation = Some(Violation::failed(&rail, Stage::Output, message));
                            break;
                        }
                        Err(e) => {
                            yield Err(e);
                            return;
                        }
                        Ok((Some(v), _)) => {
                            violation = Some(v);
                            break;
                        }
                        Ok((None, None)) => passed = check.window.new_chunks.end,
                        Ok((None, Some(text))) => {
                            // Rewriting rails need stream_first: false and no
                            // context (config validation), so the unsent chunks
                            // start with exactly this window's chunks.
                            let n = check.window.new_chunks.len().min(unsent.len());
                            unsent.drain(..n);
                            next_chunk += n;
                            passed = check.window.new_chunks.end;
                            delivered.push_str(&text);
                            yield Ok(Event::Chunk(text));
                        }
                    }
                }
                delta = deltas.next(), if !upstream_done => match delta {
                    Some(Ok(Delta::Text(text))) => {
                        if upstream_ttft.is_none() {
                            let t = generation.elapsed();
                            metrics::histogram!("streamguard_upstream_first_token_seconds", "config" => config_id.clone())
                                .record(t.as_secs_f64());
                            upstream_ttft = Some(t);
                        }
                        content.push_str(&text);
                        unsent.push_back(text);
                        if checking && let Some(w) = windows.push(content.len()) {
                            pending_ends.push_back(w.new_chunks.end);
                            let text = content[w.bytes.clone()].to_string();
                            pending.push_back(check_window(inner.clone(), run.output.clone(), user_input.clone(), w, text, calls.clone()));
                        }
                    }
                    Some(Ok(Delta::Usage(u))) => usage = Some(u),
                    Some(Ok(Delta::Dialog { user_intent, bot_intent })) => {
                        dialog = Some(super::DialogTurn { user_intent, bot_intent });
                    }
                    Some(Err(e)) => {
                        yield Err(super::upstream_error(e));
                        return;
                    }
                    None => {
                        upstream_done = true;
                        run.timing.generation = generation.elapsed();
                        if checking && let Some(w) = windows.finish() {
                            pending_ends.push_back(w.new_chunks.end);
                            let text = content[w.bytes.clone()].to_string();
                            pending.push_back(check_window(inner.clone(), run.output.clone(), user_input.clone(), w, text, calls.clone()));
                        }
                    }
                },
            }
        }
        // On a block this drops the upstream request at once, and any window
        // checks still in flight.
        drop(deltas);
        drop(pending);
        if !upstream_done {
            run.timing.generation = generation.elapsed();
        }
        if let (Some(log), Some(prompt)) = (&run.log, prompt) {
            log.calls.record(CallRecord {
                task: "general".into(),
                prompt,
                completion: content.clone(),
                usage,
                duration: run.timing.generation,
            });
        }
        let content = if rewrites {
            delivered
        } else {
            content.truncate(sent_bytes);
            content
        };
        if let Some(u) = usage {
            metrics::counter!("streamguard_tokens_total", "config" => config_id.clone())
                .increment(u64::from(u.completion_tokens));
        }
        let response = Response { content, violation, usage, log: None, dialog };
        yield Ok(Event::Final(Box::new(run.finish(response, started))));
    })
}

//! The streaming path: input rails, then the answer's chunks relayed as they
//! arrive while output rails check them in windows. The decisions are the
//! [`Relay`]'s; this is the thin async loop around it: it feeds the relay
//! the answer's pieces, runs the window checks it hands out (concurrently
//! with reading the answer: while window N is judged, window N+1 buffers)
//! and yields what it releases.

use std::{sync::Arc, time::Instant};

use futures_util::{StreamExt, future::BoxFuture, stream::FuturesOrdered};

use super::{
    Error, Event, EventStream, Inner, RailRecord, Request, Response, Violation,
    answer::{AnswerRequest, DialogTurn, Piece, PieceStream},
    relay::{Relay, WindowCheck, WindowVerdict},
    run::{Run, run_rails},
};
use crate::{
    llm::{CallLog, CallRecord, Usage},
    rails::{RailInput, RailSet, Stage},
};

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

/// A decided window check.
struct Checked {
    outcome: Result<WindowVerdict, Error>,
    records: Vec<RailRecord>,
    took: std::time::Duration,
}

/// What the window checks of one stream share.
#[derive(Clone)]
struct Checker {
    rails: Arc<RailSet>,
    parallel: bool,
    user_input: Arc<str>,
    calls: Option<Arc<CallLog>>,
}

impl Checker {
    /// A window check that owns what it needs, so it runs while the stream goes on.
    fn check(&self, check: WindowCheck) -> BoxFuture<'static, Checked> {
        let this = self.clone();
        Box::pin(async move {
            let started = Instant::now();
            let mut records = Vec::new();
            let input = RailInput {
                user_input: &this.user_input,
                bot_response: Some(&check.text),
                history: &[],
                calls: this.calls.as_deref(),
            };
            let logging = this.calls.is_some();
            let outcome = run_rails(
                &this.rails,
                this.parallel,
                Stage::Output,
                input,
                logging.then_some(&mut records),
            )
            .await;
            let outcome =
                match outcome {
                    Ok((Some(v), _)) => Ok(WindowVerdict::Block(v)),
                    Ok((None, Some(text))) => Ok(WindowVerdict::Rewrite(text)),
                    Ok((None, None)) => Ok(WindowVerdict::Pass),
                    // A rail that cannot run blocks the stream, as in NeMo.
                    Err(Error::Rail { rail, message }) => Ok(WindowVerdict::Block(
                        Violation::failed(&rail, Stage::Output, message),
                    )),
                    Err(e) => Err(e),
                };
            Checked {
                outcome,
                records,
                took: started.elapsed(),
            }
        })
    }
}

/// One step of the loop: a window verdict, or a piece of the answer.
enum Step {
    Checked(Checked),
    Piece(Option<Result<Piece, crate::llm::LlmError>>),
}

/// The state of one streaming request after its input rails passed.
struct Driver {
    inner: Arc<Inner>,
    run: Run,
    relay: Relay,
    checker: Checker,
    answer: PieceStream,
    pending: FuturesOrdered<BoxFuture<'static, Checked>>,
    started: Instant,
    generation: Instant,
    upstream_ttft: Option<std::time::Duration>,
    first_sent: bool,
    usage: Option<Usage>,
    dialog: Option<DialogTurn>,
    /// The main call's prompt, when the request keeps a log.
    prompt: Option<String>,
    chunk_counter: metrics::Counter,
}

/// How the input stage ended: blocked (with the events to send), or on to the answer.
enum Start {
    Blocked(Vec<Event>),
    Answer(Box<Driver>),
}

impl Driver {
    /// Runs the input rails; on a pass, starts the answer.
    async fn start(
        inner: Arc<Inner>,
        mut run: Run,
        request: Request,
        started: Instant,
    ) -> Result<Start, Error> {
        let (violation, rewritten) = run.input_check(&request.messages).await?;
        if let Some(v) = violation {
            let response = inner.blocked(v);
            let mut events = Vec::with_capacity(2);
            // NeMo streams the refusal as one chunk.
            if !response.content.is_empty() {
                events.push(Event::Chunk(response.content.clone()));
            }
            events.push(Event::Final(Box::new(run.finish(response, started))));
            return Ok(Start::Blocked(events));
        }
        let (main, user_input) = inner.main_request(request, rewritten);
        let prompt = run
            .log
            .as_ref()
            .map(|_| CallRecord::prompt_text(&main.messages));
        let checker = Checker {
            rails: run.output.clone(),
            parallel: run.output_parallel,
            user_input,
            calls: run.calls(),
        };
        let relay = Relay::new(
            inner.config.output_streaming(),
            !run.output.is_empty(),
            run.rewrites,
            Vec::new(),
        );
        // Metric handles are resolved once; per chunk only an atomic moves.
        let chunk_counter = metrics::counter!("streamguard_chunks_total", "config" => inner.config.id().to_string());
        let answer = inner.answerer.stream(AnswerRequest {
            chat: main,
            calls: run.calls(),
        });
        Ok(Start::Answer(Box::new(Driver {
            inner,
            run,
            relay,
            checker,
            answer,
            pending: FuturesOrdered::new(),
            started,
            generation: Instant::now(),
            upstream_ttft: None,
            first_sent: false,
            usage: None,
            dialog: None,
            prompt,
            chunk_counter,
        })))
    }

    /// The next chunk the relay releases, counted.
    fn release(&mut self) -> Option<String> {
        let text = self.relay.release()?;
        if !self.first_sent {
            self.first_sent = true;
            first_chunk_metrics(self.inner.config.id(), self.started, self.upstream_ttft);
        }
        self.chunk_counter.increment(1);
        Some(text)
    }

    fn on_step(&mut self, step: Step) -> Result<(), Error> {
        match step {
            Step::Checked(checked) => {
                self.run.timing.output_rails += checked.took;
                if let Some(log) = self.run.log.as_mut() {
                    log.rails.extend(checked.records);
                }
                self.relay.on_verdict(checked.outcome?);
            }
            Step::Piece(piece) => {
                match piece {
                    Some(Ok(Piece::Text(text))) => {
                        if self.upstream_ttft.is_none() {
                            let t = self.generation.elapsed();
                            metrics::histogram!("streamguard_upstream_first_token_seconds", "config" => self.inner.config.id().to_string())
                                .record(t.as_secs_f64());
                            self.upstream_ttft = Some(t);
                        }
                        self.relay.on_text(text);
                    }
                    Some(Ok(Piece::Usage(u))) => self.usage = Some(u),
                    Some(Ok(Piece::Dialog(d))) => self.dialog = Some(d),
                    Some(Err(e)) => return Err(super::upstream_error(e)),
                    None => self.relay.on_end(),
                }
                if !self.relay.wants_input() && self.run.timing.generation.is_zero() {
                    self.run.timing.generation = self.generation.elapsed();
                }
                while let Some(check) = self.relay.take_check() {
                    self.pending.push_back(self.checker.check(check));
                }
            }
        }
        Ok(())
    }

    /// The final response. Dropping the answer stream here drops the
    /// upstream request at once (on a block or a stop string), and any
    /// window checks still in flight.
    fn finish(self) -> Response {
        let Driver {
            inner,
            mut run,
            relay,
            answer,
            pending,
            generation,
            usage,
            dialog,
            prompt,
            started,
            ..
        } = self;
        drop(answer);
        drop(pending);
        if run.timing.generation.is_zero() {
            run.timing.generation = generation.elapsed();
        }
        if let (Some(log), Some(prompt)) = (&run.log, prompt) {
            log.calls.record(CallRecord {
                task: "general".into(),
                prompt,
                completion: relay.received().to_string(),
                usage,
                duration: run.timing.generation,
            });
        }
        if let Some(u) = usage {
            metrics::counter!("streamguard_tokens_total", "config" => inner.config.id().to_string())
                .increment(u64::from(u.completion_tokens));
        }
        let outcome = relay.finish();
        let response = Response {
            content: outcome.content,
            violation: outcome.violation,
            usage,
            log: None,
            dialog,
        };
        run.finish(response, started)
    }
}

/// Runs a streaming request whose preconditions have been checked.
pub(super) fn run(inner: Arc<Inner>, run: Run, request: Request, started: Instant) -> EventStream {
    Box::pin(async_stream::stream! {
        let mut d = match Driver::start(inner, run, request, started).await {
            Ok(Start::Answer(d)) => d,
            Ok(Start::Blocked(events)) => {
                for e in events {
                    yield Ok(e);
                }
                return;
            }
            Err(e) => {
                yield Err(e);
                return;
            }
        };
        loop {
            while let Some(text) = d.release() {
                yield Ok(Event::Chunk(text));
            }
            if d.relay.is_finished() {
                break;
            }
            let step = tokio::select! {
                // Verdicts first: a block must stop the stream before more is read.
                biased;
                Some(checked) = d.pending.next(), if !d.pending.is_empty() => Step::Checked(checked),
                piece = d.answer.next(), if d.relay.wants_input() => Step::Piece(piece),
                else => break,
            };
            if let Err(e) = d.on_step(step) {
                yield Err(e);
                return;
            }
        }
        yield Ok(Event::Final(Box::new(d.finish())));
    })
}

//! The streaming path: input rails, then the answer's chunks relayed as they
//! arrive while output rails check them in windows. The decisions are the
//! [`Relay`]'s; this is the thin driver around it: it feeds the relay the
//! answer's pieces, runs the window checks it hands out (concurrently with
//! reading the answer: while window N is judged, window N+1 buffers) and
//! yields what it releases. The driver is a hand-written `Stream` (one poll
//! per chunk, no generator in between): this is the per-chunk path.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use futures_util::{FutureExt, Stream, StreamExt, future::BoxFuture, stream::FuturesOrdered};

use super::{
    Error, Event, EventStream, FinishReason, Inner, RailRecord, Request, Response, Violation,
    answer::{AnswerRequest, DialogTurn, Piece, PieceStream},
    meters::ChunkCount,
    relay::{Relay, WindowCheck, WindowVerdict},
    run::{Run, run_rails},
};
mod tools;

use tools::StreamTools;

use crate::{
    llm::{CallLog, CallRecord, Finish, Usage},
    rails::{RailInput, RailSet, Stage},
};

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
    /// The main model's reasoning trace, once the answer started.
    thinking: Option<Arc<str>>,
    /// The dialog's variables, once the dialog answered.
    context: Option<Arc<std::collections::BTreeMap<String, serde_json::Value>>>,
}

impl Checker {
    /// A window check that owns what it needs, so it runs while the stream goes on.
    fn check(&self, check: WindowCheck) -> BoxFuture<'static, Checked> {
        let this = self.clone();
        Box::pin(async move {
            let started = Instant::now();
            let mut records = Vec::new();
            let input = RailInput {
                media: &[],
                user_input: &this.user_input,
                bot_response: Some(&check.text),
                bot_thinking: this.thinking.as_deref(),
                history: &[],
                calls: this.calls.as_deref(),
                context: this.context.as_deref(),
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
            for r in &mut records {
                r.window = Some(check.window.new_chunks.clone());
            }
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
    /// Why the model said it stopped.
    finish: Option<Finish>,
    /// The main call's prompt, when the request keeps a log.
    prompt: Option<String>,
    chunks: ChunkCount,
    /// The reasoning trace so far (bounded by [`MAX_REASONING`]).
    reasoning: String,
    /// The request asked for the trace (`options.reasoning`).
    want_reasoning: bool,
    /// A reasoning piece to send before anything else.
    reasoning_out: Option<String>,
    /// With `apply_to_reasoning_traces`: the trace, put in front of the
    /// first window's text.
    trace_prefix: Option<String>,
    tools: StreamTools,
}

/// The most of a reasoning trace kept for rails and the response.
const MAX_REASONING: usize = 1 << 20;

/// How the input stage ended: blocked (with the events to send), or on to the answer.
enum Start {
    Blocked(Vec<Event>),
    Answer(Box<Driver>),
}

impl Start {
    /// An input (or tool input) rail blocked: NeMo streams the refusal as one chunk.
    fn blocked(inner: &Inner, run: Run, v: Violation, started: Instant) -> Self {
        let response = inner.blocked(v);
        let mut events = Vec::with_capacity(2);
        if !response.content.is_empty() {
            events.push(Event::Chunk(response.content.clone()));
        }
        events.push(Event::Final(Box::new(run.finish(response, started))));
        Start::Blocked(events)
    }
}

impl Driver {
    /// Runs the input rails; on a pass, starts the answer.
    async fn start(
        inner: Arc<Inner>,
        mut run: Run,
        (mut request, given): (Request, Option<PieceStream>),
        started: Instant,
    ) -> Result<Start, Error> {
        let context = request.context.take().map(Arc::new);
        let (violation, rewritten) =
            super::generate::turn_check(&mut run, &mut request, context.as_deref()).await?;
        if let Some(v) = violation {
            return Ok(Start::blocked(&inner, run, v, started));
        }
        // The request's stop strings are enforced here too, for a model
        // that ignores them.
        let stops = request.options.llm_params.stop.clone();
        let want_reasoning = request.options.reasoning;
        let state = request.state.clone();
        let (main, user_input) = inner.main_request(request, rewritten);
        // The caller's own LLM (GuardStream) is no call of ours to log.
        let prompt = run
            .log
            .as_ref()
            .filter(|_| given.is_none())
            .map(|_| CallRecord::prompt_text(&main.messages));
        let checker = Checker {
            rails: run.output.clone(),
            parallel: run.output_parallel,
            user_input,
            calls: run.calls(),
            thinking: None,
            context: context.clone(),
        };
        let relay = Relay::new(
            inner.config.output_streaming(),
            !run.output.is_empty(),
            run.rewrites,
            stops,
        );
        let chunks = ChunkCount::new(inner.meters.chunks.clone());
        let unchecked = run.tool_output.is_empty() && run.output.is_empty();
        let answer = match given {
            Some(chunks) => chunks,
            None => inner.answerer.stream(AnswerRequest {
                chat: main,
                calls: run.calls(),
                state,
                context,
            }),
        };
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
            finish: None,
            prompt,
            chunks,
            reasoning: String::new(),
            want_reasoning,
            reasoning_out: None,
            trace_prefix: None,
            tools: StreamTools {
                hold: !unchecked,
                ..StreamTools::default()
            },
        })))
    }

    /// A piece of the reasoning trace: kept (bounded), and sent when asked.
    fn on_reasoning(&mut self, piece: String) {
        if self.reasoning.len() + piece.len() <= MAX_REASONING {
            self.reasoning.push_str(&piece);
        }
        if self.want_reasoning {
            self.reasoning_out = Some(piece);
        }
    }

    /// The answer's first text: the trace (if any) is complete.
    fn on_first_text(&mut self) {
        if self.reasoning.is_empty() {
            return;
        }
        self.checker.thinking = Some(self.reasoning.as_str().into());
        if self.inner.config.apply_to_reasoning_traces() {
            self.trace_prefix = Some(self.inner.with_trace(&self.reasoning, ""));
        }
    }

    /// The next chunk the relay releases, counted.
    fn release(&mut self) -> Option<String> {
        let text = self.relay.release()?;
        if !self.first_sent {
            self.first_sent = true;
            // Time to the first chunk as the caller saw it, and what
            // streamguard added to the upstream's time to first token.
            let total = self.started.elapsed();
            let m = &self.inner.meters;
            m.first_chunk.record(total.as_secs_f64());
            let added = total.saturating_sub(self.upstream_ttft.unwrap_or_default());
            m.added_first_chunk.record(added.as_secs_f64());
        }
        self.chunks.add();
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
                    Some(Ok(Piece::Reasoning(r))) => self.on_reasoning(r),
                    Some(Ok(Piece::Text(text))) => {
                        if self.upstream_ttft.is_none() {
                            self.on_first_text();
                            let t = self.generation.elapsed();
                            self.inner
                                .meters
                                .upstream_first_token
                                .record(t.as_secs_f64());
                            self.upstream_ttft = Some(t);
                        }
                        self.relay.on_text(text);
                    }
                    Some(Ok(Piece::ToolCall(piece))) => self.on_tool_call(piece)?,
                    Some(Ok(Piece::Usage(u))) => self.usage = Some(u),
                    Some(Ok(Piece::Finish(f))) => self.finish = Some(f),
                    Some(Ok(Piece::Dialog(d))) => {
                        self.checker.context = Some(Arc::new(d.context.clone()));
                        self.dialog = Some(d);
                    }
                    Some(Err(e)) => return Err(super::upstream_error(e)),
                    None => self.relay.on_end(),
                }
                if !self.relay.wants_input() && self.run.timing.generation.is_zero() {
                    self.run.timing.generation = self.generation.elapsed();
                }
                while let Some(mut check) = self.relay.take_check() {
                    if let Some(trace) = self.trace_prefix.take() {
                        check.text.insert_str(0, &trace);
                    }
                    self.pending.push_back(self.checker.check(check));
                }
            }
        }
        Ok(())
    }

    /// The final response. Dropping the answer stream here drops the
    /// upstream request at once (on a block or a stop string), and any
    /// window checks still in flight.
    fn finish(self: Box<Self>) -> Response {
        let Driver {
            inner,
            mut run,
            relay,
            answer,
            pending,
            generation,
            usage,
            dialog,
            finish,
            prompt,
            started,
            reasoning,
            want_reasoning,
            tools,
            ..
        } = *self;
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
                started: generation,
            });
        }
        if let Some(u) = usage {
            inner
                .meters
                .tokens
                .increment(u64::from(u.completion_tokens));
        }
        let chunks = relay.received_chunks();
        let mut outcome = relay.finish();
        let tool_calls = match (&outcome.violation, tools.violation) {
            (None, Some(v)) => {
                outcome.violation = Some(v);
                Vec::new()
            }
            // Held calls count only once they passed (not after a stop string).
            (None, None) if !tools.hold || tools.passed => tools.calls.finish(),
            _ => Vec::new(),
        };
        // Cut off (a block, a stop string) before the model reported usage:
        // what it produced is known, one token per chunk as OpenAI-compatible
        // servers stream; the prompt's count is not.
        let usage = usage.or_else(|| {
            (chunks > 0).then(|| {
                let n = u32::try_from(chunks).unwrap_or(u32::MAX);
                Usage {
                    prompt_tokens: 0,
                    completion_tokens: n,
                    total_tokens: n,
                }
            })
        });
        let response = Response {
            finish_reason: FinishReason::of(finish, outcome.violation.is_some(), outcome.stopped),
            content: outcome.content,
            violation: outcome.violation,
            usage,
            log: None,
            dialog,
            model: String::new(),
            reasoning_content: (want_reasoning && !reasoning.is_empty()).then_some(reasoning),
            tool_calls,
            rewritten: Vec::new(),
        };
        run.finish(response, started)
    }
}

/// Where a streaming request is.
enum Phase {
    /// The input rails run, then the answer starts.
    Starting(BoxFuture<'static, Result<Start, Error>>),
    /// An input rail blocked: the refusal and the final event.
    Blocked(std::vec::IntoIter<Event>),
    Answering(Box<Driver>),
    Done,
}

/// The event stream of one request: a plain state machine, since this is
/// the per-chunk path (one poll per chunk, no generator in between).
struct Events {
    phase: Phase,
}

impl Events {
    /// One step of an answering driver: the next event, `None` to poll the
    /// sources again, or `Pending`.
    fn drive(d: &mut Driver, cx: &mut Context<'_>) -> Poll<Option<Result<Event, Error>>> {
        loop {
            if let Some(r) = d.reasoning_out.take() {
                return Poll::Ready(Some(Ok(Event::Reasoning(r))));
            }
            if let Some(piece) = d.tools.out.pop_front() {
                return Poll::Ready(Some(Ok(Event::ToolCall(piece))));
            }
            if let Some(text) = d.release() {
                return Poll::Ready(Some(Ok(Event::Chunk(text))));
            }
            if d.relay.is_finished() {
                if let Err(e) = std::task::ready!(d.poll_tools(cx)) {
                    return Poll::Ready(Some(Err(e)));
                }
                if d.tools.out.is_empty() {
                    return Poll::Ready(None);
                }
                continue;
            }
            // Verdicts first: a block must stop the stream before more is read.
            if !d.pending.is_empty()
                && let Poll::Ready(Some(checked)) = d.pending.poll_next_unpin(cx)
            {
                if let Err(e) = d.on_step(Step::Checked(checked)) {
                    return Poll::Ready(Some(Err(e)));
                }
                continue;
            }
            if !d.relay.wants_input() {
                if d.pending.is_empty() {
                    return Poll::Ready(None);
                }
                return Poll::Pending;
            }
            let piece = std::task::ready!(d.answer.poll_next_unpin(cx));
            if let Err(e) = d.on_step(Step::Piece(piece)) {
                return Poll::Ready(Some(Err(e)));
            }
        }
    }
}

impl Stream for Events {
    type Item = Result<Event, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match &mut this.phase {
                Phase::Starting(start) => match std::task::ready!(start.poll_unpin(cx)) {
                    Ok(Start::Answer(d)) => this.phase = Phase::Answering(d),
                    Ok(Start::Blocked(events)) => this.phase = Phase::Blocked(events.into_iter()),
                    Err(e) => {
                        this.phase = Phase::Done;
                        return Poll::Ready(Some(Err(e)));
                    }
                },
                Phase::Blocked(events) => {
                    let next = events.next();
                    if next.is_none() {
                        this.phase = Phase::Done;
                    }
                    return Poll::Ready(next.map(Ok));
                }
                Phase::Answering(d) => match std::task::ready!(Self::drive(d, cx)) {
                    Some(Ok(event)) => return Poll::Ready(Some(Ok(event))),
                    Some(Err(e)) => {
                        this.phase = Phase::Done;
                        return Poll::Ready(Some(Err(e)));
                    }
                    None => {
                        let Phase::Answering(d) = std::mem::replace(&mut this.phase, Phase::Done)
                        else {
                            return Poll::Ready(None);
                        };
                        return Poll::Ready(Some(Ok(Event::Final(Box::new(d.finish())))));
                    }
                },
                Phase::Done => return Poll::Ready(None),
            }
        }
    }
}

/// Runs a streaming request whose preconditions have been checked: on the
/// answerer's stream, or on `given` (the caller's own LLM's chunks).
pub(super) fn run(
    inner: Arc<Inner>,
    run: Run,
    (request, given): (Request, Option<PieceStream>),
    started: Instant,
) -> EventStream {
    let start = Driver::start(inner, run, (request, given), started);
    Box::pin(Events {
        phase: Phase::Starting(Box::pin(start)),
    })
}

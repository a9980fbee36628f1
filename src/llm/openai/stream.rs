//! A streamed chat completion as deltas: the call, then one delta per SSE
//! event. A plain state machine rather than a generator: this is the
//! per-chunk path.

use bytes::Bytes;
use futures_util::{FutureExt, StreamExt, future::BoxFuture, stream::BoxStream};

use super::{
    Inner,
    wire::{Parsed, parse_event},
};
use crate::llm::{Delta, LlmError, anthropic};

pub(super) type SseEvents = crate::llm::sse::Events<BoxStream<'static, reqwest::Result<Bytes>>>;

/// What the call answered: SSE events, or (from a server that does not
/// stream) the whole answer as deltas.
pub(super) enum Opened {
    Events(SseEvents),
    Whole(Vec<Result<Delta, LlmError>>),
}

enum AnswerState {
    Opening(BoxFuture<'static, Result<Opened, LlmError>>),
    Whole(std::vec::IntoIter<Result<Delta, LlmError>>),
    Events { events: SseEvents, finished: bool },
    Done,
}

/// A streamed answer: the call, then one delta per SSE event (a plain state
/// machine rather than a generator: this is the per-chunk path).
pub(super) struct Answer {
    state: AnswerState,
    /// What came in the same event as text (usage, the finish), sent next.
    pending: std::collections::VecDeque<Delta>,
    /// Reading Anthropic's Messages events (with what `message_start` said).
    anthropic: Option<anthropic::StreamState>,
}

impl Answer {
    pub(super) fn new(
        opening: BoxFuture<'static, Result<Opened, LlmError>>,
        anthropic: bool,
    ) -> Self {
        Answer {
            state: AnswerState::Opening(opening),
            pending: std::collections::VecDeque::new(),
            anthropic: anthropic.then(anthropic::StreamState::default),
        }
    }

    /// The next delta of one SSE event, or `None` for an event without any.
    fn event(&mut self, data: &str, finished: &mut bool) -> Option<Result<Delta, LlmError>> {
        let parsed = match &mut self.anthropic {
            Some(state) => anthropic::parse_event(data, state),
            None => parse_event(data),
        };
        match parsed {
            Ok(Parsed::Done) => {
                self.state = AnswerState::Done;
                None
            }
            Ok(Parsed::Deltas(d)) => {
                *finished |= d.finish.is_some();
                self.pending.extend(d.reasoning.map(Delta::Reasoning));
                self.pending.extend(d.text.map(Delta::Text));
                self.pending.extend(
                    d.tool_calls
                        .into_iter()
                        .map(|c| Delta::ToolCall(Box::new(c))),
                );
                self.pending.extend(d.usage.map(Delta::Usage));
                self.pending.extend(d.finish.map(Delta::Finish));
                self.pending.pop_front().map(Ok)
            }
            Err(e) => {
                self.state = AnswerState::Done;
                Some(Err(e))
            }
        }
    }
}

impl futures_util::Stream for Answer {
    type Item = Result<Delta, LlmError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = &mut *self;
        loop {
            if let Some(d) = this.pending.pop_front() {
                return Poll::Ready(Some(Ok(d)));
            }
            match &mut this.state {
                AnswerState::Opening(call) => match call.poll_unpin(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(Opened::Events(events))) => {
                        this.state = AnswerState::Events {
                            events,
                            finished: false,
                        }
                    }
                    Poll::Ready(Ok(Opened::Whole(all))) => {
                        this.state = AnswerState::Whole(all.into_iter())
                    }
                    Poll::Ready(Err(e)) => {
                        this.state = AnswerState::Done;
                        return Poll::Ready(Some(Err(e)));
                    }
                },
                AnswerState::Whole(all) => {
                    let next = all.next();
                    if next.is_none() {
                        this.state = AnswerState::Done;
                    }
                    return Poll::Ready(next);
                }
                AnswerState::Events { events, finished } => {
                    let mut fin = *finished;
                    let polled = events.poll_next_unpin(cx);
                    match polled {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Some(Ok(event))) => {
                            let item = this.event(&event, &mut fin);
                            if let AnswerState::Events { finished, .. } = &mut this.state {
                                *finished = fin;
                            }
                            if item.is_some() {
                                return Poll::Ready(item);
                            }
                        }
                        Poll::Ready(Some(Err(e))) => {
                            this.state = AnswerState::Done;
                            return Poll::Ready(Some(Err(LlmError::Protocol(format!("{e}")))));
                        }
                        Poll::Ready(None) => {
                            this.state = AnswerState::Done;
                            if !fin {
                                return Poll::Ready(Some(Err(LlmError::Protocol(
                                    "stream ended before `data: [DONE]` or a finish_reason".into(),
                                ))));
                            }
                        }
                    }
                }
                AnswerState::Done => return Poll::Ready(None),
            }
        }
    }
}

/// Relays a server's whole JSON answer to a stream request as deltas.
pub(super) async fn whole_answer(
    inner: &Inner,
    response: reqwest::Response,
) -> Vec<Result<Delta, LlmError>> {
    match response.bytes().await {
        Ok(bytes) => match inner.parse_completion(&bytes) {
            Ok(c) => {
                let mut out = Vec::new();
                out.extend(c.reasoning.map(|r| Ok(Delta::Reasoning(r))));
                if !c.text.is_empty() {
                    out.push(Ok(Delta::Text(c.text)));
                }
                out.extend(c.tool_calls.iter().enumerate().map(|(i, call)| {
                    let index = u32::try_from(i).unwrap_or(u32::MAX);
                    let piece = crate::llm::ToolCallDelta::whole(index, call);
                    Ok(Delta::ToolCall(Box::new(piece)))
                }));
                out.extend(c.usage.map(|u| Ok(Delta::Usage(u))));
                out.extend(c.finish.map(|f| Ok(Delta::Finish(f))));
                out
            }
            Err(e) => vec![Err(e)],
        },
        Err(e) => vec![Err(inner.target("chat").transport_error(&e))],
    }
}

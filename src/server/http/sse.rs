//! The SSE body of a streamed chat completion, in OpenAI's framing.

use std::{convert::Infallible, sync::Arc};

use axum::response::{
    IntoResponse, Response as HttpResponse,
    sse::{Event as SseEvent, Sse},
};
use futures_util::{
    StreamExt,
    future::{Either, ready},
    stream,
};
use serde::Serialize;

use super::{BlockStyle, error_response, reply};
use crate::{
    engine::Event,
    rails::Stage,
    server::{State, edge::Bounded, state_token::Resume},
};

fn data(value: &impl Serialize) -> Result<SseEvent, Infallible> {
    // Serialization of these borrowed structs cannot fail; if it ever did,
    // the caller gets an error event rather than a broken stream.
    Ok(SseEvent::default().json_data(value).unwrap_or_else(|_| {
        SseEvent::default().data(r#"{"error":{"message":"serialization failed"}}"#)
    }))
}

/// The SSE body: the role chunk, a chunk event per chunk, the finish chunk
/// (or NeMo's error event when an output rail blocked mid-stream, or an
/// error event when the stream failed), then `[DONE]`. The response head
/// waits for the first event: a failure before any content gets the same
/// status and JSON error as a whole answer, and the head goes out with the
/// first chunk.
/// With `seal` (the server and the configs, when the request gave a dialog
/// state) the finish chunk carries the state after the turn in `guardrails.state`.
pub(super) async fn sse(
    mut events: Bounded,
    model: String,
    style: BlockStyle,
    keep: Keep,
) -> HttpResponse {
    let Keep {
        server,
        resume,
        thread,
    } = keep;
    let seal = resume.map(|r| (server.clone(), r));
    let first = match events.next().await {
        Some(Err(e)) => return error_response(&e),
        first => first,
    };
    let head = reply::ChunkHead {
        id: reply::completion_id(),
        created: reply::now(),
        model,
    };
    let role = data(&head.role());
    let ending = Arc::new(Ending { head, style, seal });
    let events = stream::iter(first).chain(events);
    // The per-chunk path maps each event; only a thread's final event waits
    // for the turn to be stored.
    let body = match thread {
        None => Either::Left(events.map(move |e| ending.event(e))),
        Some(thread) => {
            let mut thread = Some(thread);
            Either::Right(events.then(move |event| match event {
                Ok(Event::Final(r)) => {
                    let (ending, thread, server) = (ending.clone(), thread.take(), server.clone());
                    Either::Right(Box::pin(async move {
                        match server.threads.keep(thread, &r).await {
                            Ok(()) => ending.event(Ok(Event::Final(r))),
                            Err(e) => error_event(&e),
                        }
                    }))
                }
                other => Either::Left(ready(ending.event(other))),
            }))
        }
    };
    let done = Ok(SseEvent::default().data("[DONE]"));
    let all = stream::once(async { role })
        .chain(body)
        .chain(stream::once(async { done }));
    Sse::new(all).into_response()
}

/// What the events of one stream share.
struct Ending {
    head: reply::ChunkHead,
    style: BlockStyle,
    seal: Option<(Arc<State>, Resume)>,
}

impl Ending {
    fn event(&self, event: Result<Event, crate::error::Error>) -> Result<SseEvent, Infallible> {
        let head = &self.head;
        match event {
            Ok(Event::Chunk(text)) => data(&head.text(&text)),
            Ok(Event::Reasoning(text)) => data(&head.reasoning(&text)),
            Ok(Event::ToolCall(piece)) => data(&head.tool_call(&piece)),
            Ok(Event::Final(r)) => final_event(head, &r, self.style, self.seal.as_ref()),
            Err(e) => error_event(&e),
        }
    }
}

fn error_event(e: &crate::error::Error) -> Result<SseEvent, Infallible> {
    let (kind, code) = e.kind();
    data(&reply::ErrorBody::new(&e.to_string(), kind, None, code))
}

/// What the end of a stream keeps: the dialog state to seal (when the
/// request gave one) and the thread to append to (when it named one).
pub(super) struct Keep {
    pub server: Arc<State>,
    pub resume: Option<Resume>,
    pub thread: Option<(String, Vec<crate::llm::ChatMessage>)>,
}

/// The finish chunk, or NeMo's error event for an output-rail block.
fn final_event(
    head: &reply::ChunkHead,
    r: &crate::engine::Response,
    style: BlockStyle,
    seal: Option<&(Arc<State>, Resume)>,
) -> Result<SseEvent, Infallible> {
    match &r.violation {
        // Blocked mid-stream by an output rail: NeMo's error event,
        // or (Azure style) the finish chunk with `content_filter`.
        Some(v)
            if matches!(v.stage, Stage::Output | Stage::ToolOutput)
                && style == BlockStyle::Nemo =>
        {
            data(&reply::ErrorBody::blocked(v, r.usage.as_ref()))
        }
        _ => {
            let state =
                seal.map(|(server, resume)| reply::state(&server.state_key, Some(resume), r));
            match state.transpose() {
                Ok(state) => data(&head.finish(r, state.flatten())),
                Err(e) => error_event(&e),
            }
        }
    }
}

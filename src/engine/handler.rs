//! [`StreamingHandler`]: the counterpart of NeMo's `StreamingHandler`. A
//! generate call pushes chunks into it; the caller reads them as a `Stream`
//! in another task and gets the full response from the generate call.
//!
//! Like NeMo's handler it can cut the answer at stop strings: text that may
//! be the start of a stop string is held back across chunk boundaries until
//! it is known not to be one.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use futures_util::Stream;
use tokio::sync::mpsc;

use crate::llm::StopFilter;

/// Chunks buffered between the generating task and a slow reader.
const CHANNEL_CAPACITY: usize = 64;

/// The sending side, passed to [`super::Guardrails::generate_with_handler`].
#[derive(Debug)]
pub struct StreamingHandler {
    tx: mpsc::Sender<String>,
    stops: StopFilter,
}

/// The reading side: a `Stream` of the chunks, ending when the answer ends.
#[derive(Debug)]
pub struct HandlerChunks {
    rx: mpsc::Receiver<String>,
}

impl Stream for HandlerChunks {
    type Item = String;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<String>> {
        self.rx.poll_recv(cx)
    }
}

impl StreamingHandler {
    /// A handler and the stream of its chunks.
    pub fn new() -> (Self, HandlerChunks) {
        Self::with_stop(Vec::<String>::new())
    }

    /// A handler that cuts the answer at the first of `stop`.
    pub fn with_stop(stop: impl IntoIterator<Item = impl Into<String>>) -> (Self, HandlerChunks) {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let handler = StreamingHandler {
            tx,
            stops: StopFilter::new(stop.into_iter().map(Into::into).collect()),
        };
        (handler, HandlerChunks { rx })
    }

    /// Feeds one chunk; returns `false` once a stop string was reached (the
    /// rest of the answer is not wanted).
    pub(crate) async fn push(&mut self, chunk: String) -> bool {
        let (out, more) = self.stops.push(chunk);
        if let Some(out) = out {
            // A reader that went away does not stop the generation.
            let _ = self.tx.send(out).await;
        }
        more
    }

    /// Flushes held-back text at the end of the answer; returns everything
    /// the handler emitted.
    pub(crate) async fn finish(mut self) -> String {
        if let Some(rest) = self.stops.finish() {
            let _ = self.tx.send(rest).await;
        }
        self.stops.into_emitted()
    }
}

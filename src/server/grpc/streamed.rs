//! StreamGenerate's events on the wire. The per-chunk path maps each event
//! as it comes; only a call with a thread waits, at its final event, for
//! the turn to be stored (a datastore failure then ends the stream with
//! UNAVAILABLE instead of the final event).

use std::sync::Arc;

use futures_util::{
    Stream, StreamExt,
    future::{Either, ready},
};
use tonic::Status;

use super::{convert, event_pb, status::status};
use crate::{
    engine::Event,
    error::Error,
    llm::ChatMessage,
    pb,
    server::{State, edge::Bounded, state_token::Resume},
};

/// What a call's final event needs.
pub(super) struct Ending {
    pub server: Arc<State>,
    pub config_id: Arc<str>,
    pub request_id: String,
    pub resume: Option<Resume>,
}

impl Ending {
    /// One engine event on the wire; the final one with its sealed state.
    fn event(&self, event: Result<Event, Error>) -> Result<pb::StreamGenerateResponse, Status> {
        let event = match event {
            Ok(Event::Final(response)) => {
                let state = convert::state(&self.server.state_key, self.resume.as_ref(), &response)
                    .map_err(|e| status(&e, &self.request_id))?;
                Some(pb::stream_generate_response::Event::Final(
                    convert::response(&self.config_id, *response, state),
                ))
            }
            Ok(event) => event_pb(event),
            Err(e) => {
                tracing::warn!(error = %e, "stream failed");
                return Err(status(&e, &self.request_id));
            }
        };
        Ok(pb::StreamGenerateResponse { event })
    }
}

/// The call's events on the wire.
pub(super) fn events(
    events: Bounded,
    ending: Ending,
    thread: Option<(String, Vec<ChatMessage>)>,
) -> impl Stream<Item = Result<pb::StreamGenerateResponse, Status>> + Send + Unpin {
    let Some(thread) = thread else {
        return Either::Left(events.map(move |e| ending.event(e)));
    };
    let ending = Arc::new(ending);
    let mut thread = Some(thread);
    Either::Right(events.then(move |event| match event {
        Ok(Event::Final(response)) => {
            let (ending, thread) = (ending.clone(), thread.take());
            Either::Right(Box::pin(async move {
                let kept = ending.server.threads.keep(thread, &response).await;
                kept.map_err(|e| status(&e, &ending.request_id))?;
                ending.event(Ok(Event::Final(response)))
            }))
        }
        other => Either::Left(ready(ending.event(other))),
    }))
}

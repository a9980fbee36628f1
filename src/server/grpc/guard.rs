//! The `GuardStream` RPC: the caller's own LLM's chunks in, guarded
//! chunks and the final event out.

use std::time::Duration;

use futures_util::{StreamExt, stream::BoxStream};
use tonic::{Status, Streaming};

use super::convert;
use crate::{engine, error::Error, pb};

/// How long a call may take to send its `start`.
const START_WAIT: Duration = Duration::from_secs(30);
/// The longest wait for the next chunk.
const CHUNK_WAIT: Duration = Duration::from_secs(60);
/// The most text one guarded stream may carry.
pub(super) const MAX_GUARDED_BYTES: usize = 16 << 20;

/// Reads the call's `start`: the config ids and the engine request.
pub(super) async fn start(
    inbound: &mut Streaming<pb::GuardStreamRequest>,
) -> Result<(Vec<String>, engine::Request), Error> {
    let first = tokio::time::timeout(START_WAIT, inbound.next())
        .await
        .map_err(|_| Error::invalid("start", "no `start` message within 30 s"))?;
    let event = match first {
        Some(Ok(pb::GuardStreamRequest { event })) => event,
        Some(Err(s)) => {
            return Err(Error::invalid(
                "start",
                format!("the call failed: {}", s.message()),
            ));
        }
        None => {
            return Err(Error::invalid(
                "start",
                "the call ended before its `start` message",
            ));
        }
    };
    let Some(pb::guard_stream_request::Event::Start(start)) = event else {
        return Err(Error::invalid(
            "start",
            "the first message is `start` (the config and the conversation), then chunks",
        ));
    };
    let pb::GuardStreamStart {
        config_id,
        config_ids,
        messages,
        options,
    } = start;
    let ids = convert::composed(config_id, config_ids)?;
    let (messages, context) = convert::messages(messages)?;
    let request = engine::Request {
        messages,
        context,
        options: convert::options(options)?,
        ..engine::Request::default()
    };
    Ok((ids, request))
}

/// The rest of the call: its chunks' text, bounded in size and in the
/// time between chunks.
pub(super) fn chunks(
    mut inbound: Streaming<pb::GuardStreamRequest>,
) -> BoxStream<'static, Result<String, Error>> {
    Box::pin(async_stream::stream! {
        let mut total = 0usize;
        loop {
            let Ok(next) = tokio::time::timeout(CHUNK_WAIT, inbound.next()).await else {
                yield Err(Error::invalid("chunk", "no chunk (nor the end of the call) within 60 s"));
                return;
            };
            let Some(message) = next else { return };
            let chunk = read_chunk(message, &mut total);
            let failed = chunk.is_err();
            yield chunk;
            if failed {
                return;
            }
        }
    })
}

/// One message after `start`: a chunk's text.
fn read_chunk(
    message: Result<pb::GuardStreamRequest, Status>,
    total: &mut usize,
) -> Result<String, Error> {
    let event = message
        .map_err(|s| Error::invalid("chunk", format!("the call failed: {}", s.message())))?
        .event;
    match event {
        Some(pb::guard_stream_request::Event::Chunk(pb::Chunk { text })) => {
            *total += text.len();
            if *total > MAX_GUARDED_BYTES {
                return Err(Error::invalid(
                    "chunk",
                    format!("the guarded stream is over {MAX_GUARDED_BYTES} bytes"),
                ));
            }
            Ok(text)
        }
        Some(pb::guard_stream_request::Event::Start(_)) => Err(Error::invalid(
            "start",
            "a second `start`: one GuardStream call guards one answer",
        )),
        None => Err(Error::invalid(
            "event",
            "a message with neither `start` nor `chunk`",
        )),
    }
}

/// An engine event as a GuardStream event (reasoning is not theirs).
pub(super) fn event(
    config_id: &str,
    event: Result<engine::Event, Error>,
    rid: &str,
) -> Option<Result<pb::GuardStreamResponse, Status>> {
    use pb::guard_stream_response::Event as Out;
    let out = match event {
        Ok(engine::Event::Chunk(text)) => Out::Chunk(pb::Chunk { text }),
        Ok(engine::Event::Final(response)) => {
            Out::Final(convert::response(config_id, *response, String::new()))
        }
        // The caller's own stream has no reasoning or tool calls of ours.
        Ok(engine::Event::Reasoning(_) | engine::Event::ToolCall(_)) => return None,
        Err(e) => {
            tracing::warn!(error = %e, "guarded stream failed");
            return Some(Err(super::status::status(&e, rid)));
        }
    };
    Some(Ok(pb::GuardStreamResponse { event: Some(out) }))
}

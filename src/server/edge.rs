//! What both transports share: one prelude for every call ([`State::prepare`])
//! and one adapter that bounds every response ([`Bounded`] for streams,
//! [`Call::generate`] for whole answers): the caller's deadline, the end of
//! the shutdown grace, and a drop guard that counts each call's outcome in
//! the metrics exactly once (ok, blocked, error code, cancelled, deadline).

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, Waker},
    time::Duration,
};

use futures_util::{Stream, StreamExt};
use tokio::time::Sleep;
use tokio_util::sync::WaitForCancellationFutureOwned;

mod checks;
mod thread;

use super::{State, admission::Admitted, metrics};
use crate::{
    Guardrails,
    engine::{self, Event, EventStream, Registry, Response},
    error::Error,
    rails::Stage,
};

/// Which front end a call came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Grpc,
    Http,
}

impl Transport {
    /// The `transport` label.
    pub fn label(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Http => "http",
        }
    }
}

/// What a transport read from its headers or metadata.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallMeta<'a> {
    pub authorization: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub traceparent: Option<&'a str>,
    /// The caller's deadline (gRPC `grpc-timeout`).
    pub deadline: Option<Duration>,
}

/// A new UUIDv7 (time-ordered). Its random bits come from a per-thread
/// generator, not the kernel: ids need to be unique, not secret, and a
/// syscall per request is measurable.
pub(crate) fn new_id() -> uuid::Uuid {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut random = [0u8; 10];
    fastrand::fill(&mut random);
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
}

/// The caller's `x-request-id` when it is a sane one (at most 128 of
/// `A-Za-z0-9-_.:/+=`), else a new UUIDv7.
pub fn request_id(given: Option<&str>) -> String {
    let safe = |g: &&str| {
        !g.is_empty()
            && g.len() <= 128
            && g.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(&b))
    };
    match given.map(str::trim).filter(safe) {
        Some(g) => g.to_string(),
        None => new_id().to_string(),
    }
}

/// The caller's W3C `traceparent` when it is well-formed, else the start
/// of a new trace (an invalid one is never passed on).
fn traceparent(given: &str) -> String {
    let parts: Vec<&str> = given.trim().split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    let valid = match parts.as_slice() {
        [version, trace, parent, flags] => {
            hex(version, 2)
                && *version != "ff"
                && hex(trace, 32)
                && nonzero(trace)
                && hex(parent, 16)
                && nonzero(parent)
                && hex(flags, 2)
        }
        _ => false,
    };
    if valid {
        return given.trim().to_string();
    }
    let trace = new_id().simple().to_string();
    format!("00-{trace}-{:016x}-01", fastrand::u64(1..))
}

/// How a call ended, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Blocked(Stage),
    Failed { code: tonic::Code, http: u16 },
    Cancelled,
    Deadline,
    ShuttingDown,
}

impl Outcome {
    fn of_error(e: &Error) -> Self {
        match e {
            Error::DeadlineExceeded(_) => Outcome::Deadline,
            Error::ShuttingDown(_) => Outcome::ShuttingDown,
            e => Outcome::Failed {
                code: e.code(),
                http: e.http_status(),
            },
        }
    }

    fn of_response(r: &Response) -> Self {
        match &r.violation {
            Some(v) => Outcome::Blocked(v.stage),
            None => Outcome::Ok,
        }
    }

    /// The `code` label: gRPC canonical code names, or HTTP status numbers.
    fn code(self, transport: Transport) -> &'static str {
        let (grpc, http) = match self {
            Outcome::Ok | Outcome::Blocked(_) => (tonic::Code::Ok, 200),
            Outcome::Failed { code, http } => (code, http),
            // 499: nginx's "client closed request".
            Outcome::Cancelled => (tonic::Code::Cancelled, 499),
            Outcome::Deadline => (tonic::Code::DeadlineExceeded, 504),
            Outcome::ShuttingDown => (tonic::Code::Unavailable, 503),
        };
        match transport {
            Transport::Grpc => metrics::grpc_code_name(grpc),
            Transport::Http => http_code_name(http),
        }
    }
}

/// The HTTP statuses the edge answers with, as label values (no allocation).
fn http_code_name(status: u16) -> &'static str {
    match status {
        200 => "200",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        413 => "413",
        422 => "422",
        429 => "429",
        499 => "499",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => "other",
    }
}

/// Counts a call's outcome once: when it is set, or as cancelled when the
/// call is dropped before it ended.
#[derive(Debug)]
struct Tally {
    transport: Transport,
    method: &'static str,
    config: Arc<str>,
    recorded: bool,
    started: std::time::Instant,
    /// A streaming call: its duration is recorded at the end.
    streaming: bool,
}

impl Tally {
    fn new(transport: Transport, method: &'static str) -> Self {
        Tally {
            transport,
            method,
            config: "".into(),
            recorded: false,
            started: std::time::Instant::now(),
            streaming: false,
        }
    }

    fn record(&mut self, outcome: Outcome) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        let transport = self.transport.label();
        metrics::request(
            transport,
            &self.config,
            self.method,
            outcome.code(self.transport),
        );
        if let Outcome::Blocked(stage) = outcome {
            metrics::blocked(transport, &self.config, self.method, stage);
        }
        if self.streaming {
            let seconds = self.started.elapsed().as_secs_f64();
            metrics::stream_duration(transport, &self.config, seconds);
        }
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        self.record(Outcome::Cancelled);
    }
}

/// A call the edge refused, with the request id to send back.
#[derive(Debug)]
pub struct Rejected {
    pub error: Error,
    pub request_id: String,
}

/// An admitted call, ready to run.
#[derive(Debug)]
pub struct Call {
    pub rails: Guardrails,
    pub request: engine::Request,
    pub request_id: String,
    /// The id of the config serving the call.
    pub config_id: Arc<str>,
    deadline: Option<Duration>,
    admitted: Admitted,
    tally: Tally,
    state: Arc<State>,
}

impl State {
    /// The prelude every call goes through, on either transport: admits the
    /// key, converts the request (`convert` gets the configs to resolve names
    /// against), checks the limits, finds the config and authorizes it. A
    /// refusal is counted here; the call's own outcome later.
    pub(crate) fn prepare<C>(
        self: &Arc<Self>,
        transport: Transport,
        method: &'static str,
        meta: CallMeta<'_>,
        convert: impl FnOnce(&Registry) -> Result<(Vec<String>, engine::Request, C), Error>,
    ) -> Result<(Call, C), Rejected> {
        let request_id = request_id(meta.request_id);
        let mut tally = Tally::new(transport, method);
        let span = tracing::info_span!("request", method, request_id = %request_id, key = tracing::field::Empty);
        let prepared = span.in_scope(|| {
            let admitted = self.admission.admit(meta.authorization)?;
            tracing::Span::current().record("key", admitted.key_name());
            let registry = self.registry();
            let (config_ids, mut request, extra) = convert(&registry)?;
            request.traceparent = meta.traceparent.map(traceparent);
            self.admission.check(&request)?;
            let may_use = |id: &str| admitted.authorize(id).is_ok();
            let rails = registry.resolve(&config_ids, &may_use)?;
            // The default config, or every composed one.
            if config_ids.is_empty() {
                admitted.authorize(rails.config().id())?;
            }
            for id in &config_ids {
                admitted.authorize(id)?;
            }
            Ok((admitted, rails, request, extra))
        });
        match prepared {
            Ok((admitted, rails, request, extra)) => {
                let config_id: Arc<str> = rails.config().id().into();
                tally.config = config_id.clone();
                let call = Call {
                    rails,
                    request,
                    request_id,
                    config_id,
                    deadline: meta.deadline,
                    admitted,
                    tally,
                    state: self.clone(),
                };
                Ok((call, extra))
            }
            Err(error) => {
                tally.record(Outcome::of_error(&error));
                Err(Rejected { error, request_id })
            }
        }
    }
}

impl Call {
    /// The whole answer, bounded by the deadline and the shutdown grace.
    pub async fn generate(mut self) -> Result<Response, Error> {
        let request = std::mem::take(&mut self.request);
        let rails = self.rails.clone();
        let result = self.bounded(rails.generate(request)).await;
        self.tally.record(match &result {
            Ok(r) => Outcome::of_response(r),
            Err(e) => Outcome::of_error(e),
        });
        drop(self.admitted);
        result
    }

    /// The answer as a bounded stream. Request errors and the streaming
    /// preconditions fail here, before any LLM call.
    pub fn stream(self) -> Result<Bounded, Error> {
        self.stream_of(None)
    }

    /// A stream the caller's own LLM produces, guarded (GuardStream).
    pub fn guard_stream(
        self,
        chunks: futures_util::stream::BoxStream<'static, Result<String, Error>>,
    ) -> Result<Bounded, Error> {
        self.stream_of(Some(chunks))
    }

    fn stream_of(
        mut self,
        given: Option<futures_util::stream::BoxStream<'static, Result<String, Error>>>,
    ) -> Result<Bounded, Error> {
        let request = std::mem::take(&mut self.request);
        let started = match given {
            Some(chunks) => self.rails.guard_stream(request, chunks),
            None => self.rails.stream(request),
        };
        let events = match started {
            Ok(e) => e,
            Err(e) => {
                self.tally.record(Outcome::of_error(&e));
                return Err(e);
            }
        };
        metrics::stream_started();
        self.tally.streaming = true;
        Ok(Bounded {
            events: Some(events),
            deadline: self.deadline.map(|d| (Box::pin(tokio::time::sleep(d)), d)),
            aborted: Box::pin(self.state.expired.clone().cancelled_owned()),
            armed_for: None,
            state: self.state,
            tally: self.tally,
            _admitted: self.admitted,
            _in_flight: InFlight,
        })
    }
}

/// Counts a stream in flight for as long as it lives.
#[derive(Debug)]
struct InFlight;

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::stream_ended();
    }
}

/// A response stream bounded by the caller's deadline and the shutdown
/// grace. When either ends it, the engine stream (and with it the upstream
/// request) is dropped at once and one error is yielded. Dropping it early
/// (the caller went away) counts the call as cancelled.
pub struct Bounded {
    events: Option<EventStream>,
    deadline: Option<(Pin<Box<Sleep>>, Duration)>,
    aborted: Pin<Box<WaitForCancellationFutureOwned>>,
    /// The waker the timers will wake. They are polled (which takes a lock
    /// shared by every stream, for the grace) only when it changes.
    armed_for: Option<Waker>,
    state: Arc<State>,
    tally: Tally,
    _admitted: Admitted,
    _in_flight: InFlight,
}

impl Bounded {
    fn end(&mut self, outcome: Outcome, error: Error) -> Poll<Option<Result<Event, Error>>> {
        self.events = None;
        self.tally.record(outcome);
        Poll::Ready(Some(Err(error)))
    }
}

impl Stream for Bounded {
    type Item = Result<Event, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(events) = this.events.as_mut() else {
            return Poll::Ready(None);
        };
        // The answer first: a ready chunk never waits on the timers, which
        // are polled (and so armed) only while the answer is pending.
        match events.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(Event::Final(response)))) => {
                this.tally.record(Outcome::of_response(&response));
                return Poll::Ready(Some(Ok(Event::Final(response))));
            }
            Poll::Ready(Some(Err(e))) => {
                this.events = None;
                this.tally.record(Outcome::of_error(&e));
                return Poll::Ready(Some(Err(e)));
            }
            Poll::Ready(None) => {
                this.events = None;
                this.tally.record(Outcome::Ok);
                return Poll::Ready(None);
            }
            other @ Poll::Ready(Some(Ok(_))) => return other, // chunks, reasoning, tool calls
            Poll::Pending => {}
        }
        let current = this
            .armed_for
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()));
        if !current {
            if let Some((sleep, _)) = &mut this.deadline {
                let _ = sleep.as_mut().poll(cx);
            }
            let _ = this.aborted.as_mut().poll(cx);
            this.armed_for = Some(cx.waker().clone());
        }
        if let Some((sleep, limit)) = &this.deadline
            && sleep.is_elapsed()
        {
            let limit = *limit;
            return this.end(Outcome::Deadline, Error::DeadlineExceeded(limit));
        }
        if this.state.is_expired() {
            return this.end(
                Outcome::ShuttingDown,
                Error::ShuttingDown("the server is shutting down; retry on another replica".into()),
            );
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests;

//! What a connection is doing, for its idle watchdog: how many requests it
//! serves now (a response body counts until it is dropped) and since when it
//! has served none. Two atomics per request, nothing per chunk beyond one
//! delegating poll.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;
use tower::{Service, ServiceExt, util::Oneshot};

/// One connection's activity.
#[derive(Debug)]
pub(super) struct Activity {
    /// When the connection was accepted; times below are counted from it.
    epoch: Instant,
    busy: AtomicU32,
    /// Milliseconds from `epoch` to the end of the last request.
    idle_since_ms: AtomicU64,
    /// Whether a request ever came.
    used: AtomicBool,
}

/// What the watchdog should do now.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Look again at this instant.
    WakeAt(Instant),
    /// Idle past its limit: close the connection.
    Close {
        /// No request ever came (the first-request timeout).
        first: bool,
    },
}

impl Activity {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Activity {
            epoch: Instant::now(),
            busy: AtomicU32::new(0),
            idle_since_ms: AtomicU64::new(0),
            used: AtomicBool::new(false),
        })
    }

    fn enter(self: &Arc<Self>) -> Busy {
        self.used.store(true, Ordering::Relaxed);
        self.busy.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }

    /// `first`: how long the first request may take to arrive (headers
    /// included); `idle`: how long the connection may then serve nothing.
    pub(super) fn verdict(&self, now: Instant, first: Duration, idle: Duration) -> Verdict {
        if self.busy.load(Ordering::SeqCst) > 0 {
            return Verdict::WakeAt(now + idle);
        }
        let used = self.used.load(Ordering::Relaxed);
        let (since, limit) = match used {
            false => (Duration::ZERO, first),
            true => (
                Duration::from_millis(self.idle_since_ms.load(Ordering::SeqCst)),
                idle,
            ),
        };
        let deadline = self.epoch + since + limit;
        if now >= deadline {
            Verdict::Close { first: !used }
        } else {
            Verdict::WakeAt(deadline)
        }
    }
}

/// A request being served; its drop ends it.
#[derive(Debug)]
pub(super) struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        let ms = u64::try_from(a.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        // The time first: a watchdog that reads `busy == 0` then reads it.
        a.idle_since_ms.store(ms, Ordering::SeqCst);
        a.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The service of one connection, counting its requests.
#[derive(Debug, Clone)]
pub(super) struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    pub(super) fn new(inner: S, activity: Arc<Activity>) -> Self {
        Tracked { inner, activity }
    }
}

impl<S, B, R> hyper::service::Service<Request<R>> for Tracked<S>
where
    S: Service<Request<R>, Response = Response<B>> + Clone,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<Oneshot<S, Request<R>>>;

    fn call(&self, req: Request<R>) -> Self::Future {
        TrackedFuture {
            busy: Some(self.activity.enter()),
            inner: self.inner.clone().oneshot(req),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future; the request stays counted through its body.
    pub(super) struct TrackedFuture<F> {
        #[pin]
        inner: F,
        busy: Option<Busy>,
    }
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        let busy = this.busy.take();
        Poll::Ready(out.map(|r| r.map(|inner| TrackedBody { inner, _busy: busy })))
    }
}

/// A response body that keeps its request counted until it is dropped.
#[derive(Debug)]
pub(super) struct TrackedBody<B> {
    inner: B,
    _busy: Option<Busy>,
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(75);

    #[tokio::test(start_paused = true)]
    async fn a_connection_with_no_request_closes_after_the_first_request_timeout() {
        let a = Activity::new();
        let start = Instant::now();
        assert_eq!(
            a.verdict(start, FIRST, IDLE),
            Verdict::WakeAt(start + FIRST)
        );
        assert_eq!(
            a.verdict(start + FIRST, FIRST, IDLE),
            Verdict::Close { first: true }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_connection_is_never_idle_and_idles_from_its_last_request() {
        let a = Activity::new();
        let busy = a.enter();
        tokio::time::advance(Duration::from_secs(300)).await;
        let now = Instant::now();
        assert_eq!(a.verdict(now, FIRST, IDLE), Verdict::WakeAt(now + IDLE));
        drop(busy);
        let ended = Instant::now();
        tokio::time::advance(Duration::from_secs(74)).await;
        assert!(matches!(
            a.verdict(Instant::now(), FIRST, IDLE),
            Verdict::WakeAt(t) if t.duration_since(ended) <= IDLE
        ));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            a.verdict(Instant::now(), FIRST, IDLE),
            Verdict::Close { first: false }
        );
    }
}

//! One adapter for stream timing limits, instead of timeouts sprinkled around.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, Waker},
    time::Duration,
};

use futures_util::{Stream, StreamExt};
use tokio::time::{Instant, Sleep, sleep_until};

use super::{DeltaStream, LlmError};

/// Time limits on a streamed answer: the first item, each gap after it, and
/// the whole stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveLimits {
    /// Until the first delta (time to first token).
    pub initial: Duration,
    /// Between two deltas.
    pub idle: Duration,
    /// The whole answer.
    pub lifetime: Duration,
}

impl Default for ReceiveLimits {
    fn default() -> Self {
        ReceiveLimits {
            initial: Duration::from_secs(60),
            idle: Duration::from_secs(60),
            lifetime: Duration::from_secs(600),
        }
    }
}

impl ReceiveLimits {
    /// Wraps `inner` so it ends with [`LlmError::Timeout`] (naming the limit
    /// and `model`) when a limit passes.
    pub fn apply(self, model: Arc<str>, inner: DeltaStream) -> DeltaStream {
        let start = Instant::now();
        let end = start + self.lifetime;
        Box::pin(Limited {
            inner: Some(inner),
            limits: self,
            model,
            end,
            timer: Box::pin(sleep_until((start + self.initial).min(end))),
            armed_for: None,
            last: None,
        })
    }
}

/// The adapter of [`ReceiveLimits::apply`]. Per item only the arrival time
/// is noted: the one timer is re-armed when it fires early (lazily), and it
/// is polled only when the task's waker changed or the timer was reset, so
/// the per-chunk path never touches the timer wheel.
struct Limited {
    /// `None` once the stream ended.
    inner: Option<DeltaStream>,
    limits: ReceiveLimits,
    model: Arc<str>,
    end: Instant,
    timer: Pin<Box<Sleep>>,
    /// The waker the timer will wake; `None` after a reset.
    armed_for: Option<Waker>,
    last: Option<Instant>,
}

impl Limited {
    /// The timer fired: a limit passed, or data arrived since it was set
    /// (then it is re-armed for the rest of the gap).
    fn fired(&mut self) -> Option<LlmError> {
        let now = Instant::now();
        let (limit, after) = match self.last {
            _ if now >= self.end => ("request_timeout", self.limits.lifetime),
            Some(at) if at + self.limits.idle > now => {
                self.timer
                    .as_mut()
                    .reset((at + self.limits.idle).min(self.end));
                self.armed_for = None;
                return None;
            }
            Some(_) => ("idle_timeout", self.limits.idle),
            None => ("first_token_timeout", self.limits.initial),
        };
        Some(LlmError::Timeout {
            limit,
            after,
            model: self.model.to_string(),
        })
    }
}

impl Stream for Limited {
    type Item = Result<super::Delta, LlmError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match inner.poll_next_unpin(cx) {
            Poll::Ready(Some(item)) => {
                let now = Instant::now();
                if this.last.is_none() {
                    // From here on the limit is the idle gap.
                    this.timer
                        .as_mut()
                        .reset((now + this.limits.idle).min(this.end));
                    this.armed_for = None;
                }
                this.last = Some(now);
                if item.is_err() {
                    this.inner = None;
                }
                return Poll::Ready(Some(item));
            }
            Poll::Ready(None) => {
                this.inner = None;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        loop {
            let current = this
                .armed_for
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()));
            let due = if current {
                this.timer.is_elapsed()
            } else {
                let ready = this.timer.as_mut().poll(cx).is_ready();
                this.armed_for = Some(cx.waker().clone());
                ready
            };
            if !due {
                return Poll::Pending;
            }
            if let Some(e) = this.fired() {
                this.inner = None;
                return Poll::Ready(Some(Err(e)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::Delta;
    use futures_util::stream;

    fn paced(gaps_ms: &'static [u64]) -> DeltaStream {
        Box::pin(stream::iter(gaps_ms).then(|ms| async move {
            tokio::time::sleep(Duration::from_millis(*ms)).await;
            Ok(Delta::Text("x".into()))
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn slow_first_token_and_stalls_time_out_but_steady_streams_do_not() {
        let limits = ReceiveLimits {
            initial: Duration::from_millis(100),
            idle: Duration::from_millis(50),
            lifetime: Duration::from_millis(300),
        };
        let m: Arc<str> = "m".into();
        let items: Vec<_> = limits
            .apply(m.clone(), paced(&[90, 40, 40, 40, 40]))
            .collect()
            .await;
        assert_eq!(items.len(), 5);
        assert!(items.iter().all(Result::is_ok), "gaps under the limit pass");

        let items: Vec<_> = limits.apply(m.clone(), paced(&[150])).collect().await;
        assert!(matches!(
            items.as_slice(),
            [Err(LlmError::Timeout {
                limit: "first_token_timeout",
                ..
            })]
        ));

        let items: Vec<_> = limits
            .apply(m.clone(), paced(&[10, 10, 80, 10]))
            .collect()
            .await;
        assert_eq!(items.len(), 3);
        assert!(matches!(
            items[2],
            Err(LlmError::Timeout {
                limit: "idle_timeout",
                ..
            })
        ));

        // Steady tokens still end at the lifetime limit.
        let items: Vec<_> = limits.apply(m.clone(), paced(&[40; 10])).collect().await;
        assert!(matches!(
            items.last(),
            Some(Err(LlmError::Timeout {
                limit: "request_timeout",
                ..
            }))
        ));
        assert_eq!(items.len(), 8);
    }
}

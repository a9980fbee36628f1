//! One adapter for stream timing limits, instead of timeouts sprinkled around.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::{Instant, sleep_until};

use super::{DeltaStream, LlmError};

/// Time limits on a streamed answer: the first item, and each gap after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveLimits {
    /// Until the first delta (time to first token).
    pub initial: Duration,
    /// Between two deltas.
    pub idle: Duration,
}

impl Default for ReceiveLimits {
    fn default() -> Self {
        ReceiveLimits {
            initial: Duration::from_secs(60),
            idle: Duration::from_secs(60),
        }
    }
}

impl ReceiveLimits {
    /// Wraps `inner` so it ends with [`LlmError::Timeout`] when a limit passes.
    /// Per item only the arrival time is noted; the one timer is re-armed
    /// only when it fires early, so the per-chunk path never touches the
    /// timer wheel.
    pub fn apply(self, mut inner: DeltaStream) -> DeltaStream {
        Box::pin(async_stream::stream! {
            let timer = sleep_until(Instant::now() + self.initial);
            tokio::pin!(timer);
            let mut last: Option<Instant> = None;
            loop {
                tokio::select! {
                    item = inner.next() => match item {
                        Some(item) => {
                            let failed = item.is_err();
                            let now = Instant::now();
                            if last.is_none() {
                                // From here on the limit is the idle gap.
                                timer.as_mut().reset(now + self.idle);
                            }
                            last = Some(now);
                            yield item;
                            if failed {
                                break;
                            }
                        }
                        None => break,
                    },
                    () = &mut timer => match last {
                        // Data arrived since the timer was set: wait for the rest of the gap.
                        Some(at) if at + self.idle > Instant::now() => {
                            timer.as_mut().reset(at + self.idle);
                        }
                        Some(_) => {
                            yield Err(LlmError::Timeout { what: "token", after: self.idle });
                            break;
                        }
                        None => {
                            yield Err(LlmError::Timeout { what: "first token", after: self.initial });
                            break;
                        }
                    }
                }
            }
        })
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
        };
        let items: Vec<_> = limits.apply(paced(&[90, 40, 40, 40, 40])).collect().await;
        assert_eq!(items.len(), 5);
        assert!(items.iter().all(Result::is_ok), "gaps under the limit pass");

        let items: Vec<_> = limits.apply(paced(&[150])).collect().await;
        assert!(matches!(
            items.as_slice(),
            [Err(LlmError::Timeout {
                what: "first token",
                ..
            })]
        ));

        let items: Vec<_> = limits.apply(paced(&[10, 10, 80, 10])).collect().await;
        assert_eq!(items.len(), 3);
        assert!(matches!(
            items[2],
            Err(LlmError::Timeout { what: "token", .. })
        ));
    }
}

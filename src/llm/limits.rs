//! One adapter for stream timing limits, instead of timeouts sprinkled around.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use tokio::time::{Instant, sleep_until};

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
    /// and `model`) when a limit passes. Per item only the arrival time is
    /// noted; the one timer is re-armed when it fires early, so the per-chunk
    /// path never touches the timer wheel.
    pub fn apply(self, model: Arc<str>, mut inner: DeltaStream) -> DeltaStream {
        Box::pin(async_stream::stream! {
            let start = Instant::now();
            let end = start + self.lifetime;
            let timer = sleep_until((start + self.initial).min(end));
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
                                timer.as_mut().reset((now + self.idle).min(end));
                            }
                            last = Some(now);
                            yield item;
                            if failed {
                                break;
                            }
                        }
                        None => break,
                    },
                    () = &mut timer => {
                        let now = Instant::now();
                        let (limit, after) = match last {
                            _ if now >= end => ("request_timeout", self.lifetime),
                            // Data arrived since the timer was set: wait for the rest of the gap.
                            Some(at) if at + self.idle > now => {
                                timer.as_mut().reset((at + self.idle).min(end));
                                continue;
                            }
                            Some(_) => ("idle_timeout", self.idle),
                            None => ("first_token_timeout", self.initial),
                        };
                        yield Err(LlmError::Timeout { limit, after, model: model.to_string() });
                        break;
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

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
    /// One timer is re-armed per item; nothing is allocated per item.
    pub fn apply(self, mut inner: DeltaStream) -> DeltaStream {
        Box::pin(async_stream::stream! {
            let timer = sleep_until(Instant::now() + self.initial);
            tokio::pin!(timer);
            let mut what = "first token";
            let mut after = self.initial;
            loop {
                tokio::select! {
                    item = inner.next() => match item {
                        Some(item) => {
                            let failed = item.is_err();
                            yield item;
                            if failed {
                                break;
                            }
                            timer.as_mut().reset(Instant::now() + self.idle);
                            what = "token";
                            after = self.idle;
                        }
                        None => break,
                    },
                    () = &mut timer => {
                        yield Err(LlmError::Timeout { what, after });
                        break;
                    }
                }
            }
        })
    }
}

//! Which upstream failures are worth another try, and how long to wait.

use std::time::Duration;

use super::LlmError;

/// Worth another try: the endpoint was unreachable, overloaded or failing.
pub(super) fn retryable(e: &LlmError) -> bool {
    match e {
        LlmError::Connect { .. } => true,
        LlmError::Status { status, .. } => *status == 429 || *status >= 500,
        LlmError::Timeout { limit, .. } => *limit == "connect_timeout",
        LlmError::Api(_)
        | LlmError::Protocol(_)
        | LlmError::MissingApiKey(_)
        | LlmError::Rail { .. }
        | LlmError::Caller { .. } => false,
    }
}

/// Jittered exponential backoff before retry `attempt` (1-based).
pub(super) fn backoff(attempt: u32) -> Duration {
    let base = 100u64 << attempt.min(6);
    Duration::from_millis(base / 2 + fastrand::u64(0..=base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_failures_are_retried_with_growing_waits() {
        let status = |s| LlmError::Status {
            model: String::new(),
            url: String::new(),
            status: s,
            message: String::new(),
            retry_after: None,
        };
        assert!(retryable(&status(503)) && retryable(&status(429)));
        assert!(!retryable(&status(400)) && !retryable(&LlmError::Api("x".into())));
        assert!(
            backoff(1) >= Duration::from_millis(100) && backoff(1) <= Duration::from_millis(300)
        );
        assert!(backoff(3) >= Duration::from_millis(400));
    }
}

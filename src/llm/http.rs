//! What every HTTP provider shares: the client (one connection pool per
//! model entry) and the mapping of transport failures to [`LlmError`].

use std::{sync::OnceLock, time::Duration};

use super::LlmError;

/// Bytes of an HTTP error body kept for the error message.
pub(super) const MAX_ERROR_BODY: usize = 2048;

/// An HTTP client (and connection pool) for one model entry.
pub(super) fn client(connect_timeout: Duration) -> Result<reqwest::Client, String> {
    // reqwest is built without a default crypto provider; use ring.
    static PROVIDER: OnceLock<()> = OnceLock::new();
    PROVIDER.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
        .map_err(|e| e.to_string())
}

/// Where a call went and its limits, for error messages.
#[derive(Debug, Clone, Copy)]
pub(super) struct Target<'a> {
    pub url: &'a str,
    pub model: &'a str,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

impl Target<'_> {
    /// A transport failure as the caller should see it.
    pub fn transport_error(&self, e: &reqwest::Error) -> LlmError {
        if e.is_timeout() {
            let (limit, after) = if e.is_connect() {
                ("connect_timeout", self.connect_timeout)
            } else {
                ("request_timeout", self.request_timeout)
            };
            return LlmError::Timeout {
                limit,
                after,
                model: self.model.to_string(),
            };
        }
        // The innermost cause says "Connection refused" and the like.
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message = s.to_string();
            source = s.source();
        }
        LlmError::Connect {
            url: self.url.to_string(),
            message,
        }
    }

    /// An HTTP error answer, its body cut to [`MAX_ERROR_BODY`].
    pub async fn status_error(&self, response: reqwest::Response) -> LlmError {
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        let mut body = body.trim().to_string();
        if body.len() > MAX_ERROR_BODY {
            let cut = (0..=MAX_ERROR_BODY)
                .rev()
                .find(|&i| body.is_char_boundary(i))
                .unwrap_or(0);
            body.truncate(cut);
            body.push('…');
        }
        LlmError::Status {
            url: self.url.to_string(),
            status,
            body,
        }
    }
}

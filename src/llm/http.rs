//! What every HTTP provider shares: the client (one connection pool per
//! model entry) and the mapping of transport failures to [`LlmError`].

use std::{sync::OnceLock, time::Duration};

use super::{LlmError, UpstreamSettings};

/// Bytes of an HTTP error body read (the rest is not read at all).
pub(super) const MAX_ERROR_BODY: usize = 16 << 10;

/// An HTTP client (and connection pool) for one model entry.
pub(crate) fn client(
    upstream: &UpstreamSettings,
    connect_timeout: Duration,
) -> Result<reqwest::Client, String> {
    // reqwest is built without a default crypto provider; use ring.
    static PROVIDER: OnceLock<()> = OnceLock::new();
    PROVIDER.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        // Bounded: after a burst of streams the idle connections go, and
        // at most this many per upstream host wait for the next calls.
        .pool_idle_timeout(upstream.pool_idle_timeout)
        .pool_max_idle_per_host(upstream.pool_max_idle_per_host)
        .build()
        .map_err(|e| describe_build_error(&e))
}

/// Why the HTTP client could not be built, in words an operator can act on
/// (reqwest says only "builder error").
fn describe_build_error(e: &reqwest::Error) -> String {
    let mut chain = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    let lower = chain.to_lowercase();
    if lower.contains("certificate") || lower.contains("root") || lower.contains("native") {
        format!(
            "no usable CA certificates on this machine (install the `ca-certificates` package, or point SSL_CERT_FILE at a PEM bundle): {chain}"
        )
    } else {
        chain
    }
}

/// Where a call went and its limits, for error messages.
#[derive(Debug, Clone, Copy)]
pub(super) struct Target<'a> {
    pub url: &'a str,
    pub model: &'a str,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// The API key, which no message may carry.
    pub secret: Option<&'a str>,
}

/// The message of an error body: OpenAI's `{"error": {"message", "type",
/// "code"}}` (or `{"error": "…"}`, `{"message": "…"}`), else the text.
fn error_message(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return body.trim().to_string();
    };
    let e = v.get("error").unwrap_or(&v);
    if let Some(text) = e.as_str() {
        return text.to_string();
    }
    let field = |k: &str| {
        e.get(k).and_then(|x| match x {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    let mut out = field("message").unwrap_or_else(|| body.trim().to_string());
    let extra: Vec<String> = [("type", field("type")), ("code", field("code"))]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}: {v}")))
        .collect();
    if !extra.is_empty() {
        out.push_str(&format!(" ({})", extra.join(", ")));
    }
    out
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
            model: self.model.to_string(),
            url: self.url.to_string(),
            message: self.redact(&message),
        }
    }

    /// Text from the upstream, fit for a message.
    pub fn redact(&self, text: &str) -> String {
        let secrets: Vec<&str> = self.secret.into_iter().collect();
        super::redact::redact(text, &secrets)
    }

    /// An HTTP error answer: at most [`MAX_ERROR_BODY`] bytes of its body
    /// are read, and its message is passed on redacted.
    pub async fn status_error(&self, mut response: reqwest::Response) -> LlmError {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|secs| secs.min(3600) as u16);
        let mut body = Vec::new();
        while body.len() < MAX_ERROR_BODY {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        body.truncate(MAX_ERROR_BODY);
        let text = String::from_utf8_lossy(&body);
        let message = self.redact(&error_message(&text));
        tracing::warn!(model = self.model, url = self.url, status, %message, "upstream answered an HTTP error");
        LlmError::Status {
            model: self.model.to_string(),
            url: self.url.to_string(),
            status,
            message,
            retry_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_error_bodies_give_their_message_type_and_code() {
        let body = r#"{"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}"#;
        assert_eq!(
            error_message(body),
            "Rate limit reached (type: requests, code: rate_limit_exceeded)"
        );
        assert_eq!(error_message(r#"{"error": "boom"}"#), "boom");
        assert_eq!(error_message("  plain text  "), "plain text");
    }
}

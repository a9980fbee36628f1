//! Asking a guardrail service over HTTP: the one client every service rail
//! shares. A connection pool per rail, the rail's time limit on each call,
//! retries only when the service could not be reached, metrics per service
//! (`streamguard_service_calls_total`, `…_errors_total`,
//! `…_duration_seconds`), and failures as [`RailError`]s that name the rail
//! and the service, never its URL or key (those go to the log).

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::RailError;
use crate::llm::{UpstreamSettings, redact::redact};

/// A service call's time limit when the config sets none (NeMo's NIM call uses 30 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// NeMo's `bot inform answer unknown`, what several services' flows answer.
pub const ANSWER_UNKNOWN: &str = "I don't know the answer to that.";

/// Retries of a call that could not connect.
const CONNECT_RETRIES: u32 = 2;

/// The most of an answer read from a service.
const MAX_ANSWER: usize = 1 << 20;

/// One service as one rail uses it.
#[derive(Debug, Clone)]
pub struct ServiceClient {
    http: reqwest::Client,
    /// The service's name in messages and metrics (`NemoGuard JailbreakDetect`).
    service: &'static str,
    flow: String,
    timeout: Duration,
}

impl ServiceClient {
    pub fn new(service: &'static str, flow: &str, timeout: Duration) -> Result<Self, String> {
        let http = crate::llm::http::client(
            &UpstreamSettings::default(),
            timeout.min(Duration::from_secs(10)),
        )?;
        Ok(ServiceClient {
            http,
            service,
            flow: flow.to_string(),
            timeout,
        })
    }

    fn fail(&self, what: String) -> RailError {
        metrics::counter!("streamguard_service_errors_total", "service" => self.service)
            .increment(1);
        RailError(format!("{} ({}): {what}", self.flow, self.service))
    }

    /// POSTs `body` as JSON (with `bearer` as the key) and reads a JSON answer.
    pub async fn post_json(
        &self,
        url: &reqwest::Url,
        body: &impl Serialize,
        bearer: Option<&str>,
    ) -> Result<Value, RailError> {
        self.post_json_with(url, body, bearer, &[]).await
    }

    /// [`ServiceClient::post_json`] with the service's own headers.
    pub async fn post_json_with(
        &self,
        url: &reqwest::Url,
        body: &impl Serialize,
        bearer: Option<&str>,
        headers: &[(&'static str, &str)],
    ) -> Result<Value, RailError> {
        let answer = self.post(url, body, bearer, headers).await?;
        let bytes = self.success(url, answer, bearer)?;
        self.json(&bytes)
    }

    /// POSTs `body` as JSON and reads the whole answer, whatever its status.
    pub async fn post(
        &self,
        url: &reqwest::Url,
        body: &impl Serialize,
        bearer: Option<&str>,
        headers: &[(&'static str, &str)],
    ) -> Result<Answer, RailError> {
        let started = Instant::now();
        metrics::counter!("streamguard_service_calls_total", "service" => self.service)
            .increment(1);
        let mut attempt = 0;
        let response = loop {
            let mut req = self
                .http
                .post(url.clone())
                .timeout(self.timeout)
                .header(reqwest::header::ACCEPT, "application/json")
                .json(body);
            if let Some(key) = bearer {
                req = req.bearer_auth(key);
            }
            for (name, value) in headers {
                req = req.header(*name, *value);
            }
            match req.send().await {
                Ok(r) => break r,
                Err(e) if e.is_connect() && attempt < CONNECT_RETRIES => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
                Err(e) if e.is_timeout() => {
                    return Err(self.fail(format!(
                        "no answer within {:?} (the rail's timeout)",
                        self.timeout
                    )));
                }
                Err(e) => {
                    tracing::warn!(service = self.service, %url, error = %e, "guardrail service unreachable");
                    return Err(self.fail("the service cannot be reached".into()));
                }
            }
        };
        let status = response.status();
        let bytes = read_bounded(response).await;
        metrics::histogram!("streamguard_service_duration_seconds", "service" => self.service)
            .record(started.elapsed().as_secs_f64());
        let body = bytes.map_err(|e| self.fail(e))?;
        Ok(Answer { status, body })
    }

    /// The answer's body when its status is a success, else the error naming
    /// the status and the start of the body (with the key `secret` redacted).
    pub fn success(
        &self,
        url: &reqwest::Url,
        answer: Answer,
        secret: Option<&str>,
    ) -> Result<Vec<u8>, RailError> {
        if answer.status.is_success() {
            return Ok(answer.body);
        }
        let secrets: Vec<&str> = secret.into_iter().collect();
        let bytes = &answer.body;
        let text = redact(
            String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).trim(),
            &secrets,
        );
        let status = answer.status.as_u16();
        tracing::warn!(service = self.service, %url, status, body = %text, "guardrail service answered an error");
        Err(self.fail(format!("the service answered HTTP {status}: {text}")))
    }

    /// The body read as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, RailError> {
        serde_json::from_slice(bytes).map_err(|e| self.fail(format!("the answer is not JSON: {e}")))
    }

    /// A failure of the answer's meaning (missing fields, a failed job).
    pub fn invalid(&self, what: impl Into<String>) -> RailError {
        self.fail(what.into())
    }
}

/// A service's answer, read whole (at most 1 MiB).
#[derive(Debug)]
pub struct Answer {
    pub status: reqwest::StatusCode,
    pub body: Vec<u8>,
}

async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        if e.is_timeout() {
            "no whole answer within the rail's timeout".to_string()
        } else {
            "the answer broke off".to_string()
        }
    })? {
        if out.len() + chunk.len() > MAX_ANSWER {
            return Err(format!("the answer is larger than {MAX_ANSWER} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// What every service rail reads from its settings the same way.
pub mod settings {
    use std::{path::Path, time::Duration};

    use super::{DEFAULT_TIMEOUT, ServiceClient};
    use crate::{
        config::{ConfigError, FlowRef},
        rails::{RailError, RailInput, Stage, catalog::BuildContext},
    };

    /// `rails.config.<section>.timeout` in seconds (default 30 s).
    pub fn timeout(
        value: Option<f64>,
        file: &Path,
        section: &str,
    ) -> Result<Duration, ConfigError> {
        match value {
            None => Ok(DEFAULT_TIMEOUT),
            Some(t) if t.is_finite() && t > 0.0 => Ok(Duration::from_secs_f64(t)),
            Some(_) => Err(ConfigError::invalid(
                file,
                format!("rails.config.{section}.timeout"),
                "must be a positive number of seconds",
            )),
        }
    }

    /// An http(s) URL, or an error naming `key`.
    pub fn http_url(text: &str, file: &Path, key: &str) -> Result<reqwest::Url, ConfigError> {
        reqwest::Url::parse(text)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                let placeholder = text
                    .split_once('<')
                    .and_then(|(_, rest)| rest.split_once('>'))
                    .map(|(name, _)| format!(" (replace the placeholder `<{name}>`)"))
                    .unwrap_or_default();
                ConfigError::invalid(
                    file,
                    key,
                    format!("`{text}` is not an http(s) URL{placeholder}"),
                )
            })
    }

    /// A setting given in the config, else in the environment variable `var`.
    pub fn or_env(value: Option<String>, var: &str) -> Option<String> {
        value
            .or_else(|| std::env::var(var).ok())
            .filter(|v| !v.trim().is_empty())
    }

    /// Warns that `flow` fails until `var` is set.
    pub fn warn_unset(ctx: &mut BuildContext<'_>, flow: &FlowRef, var: &str) {
        ctx.warnings.push(format!(
            "{}: `{}`: `{}` needs {var}; it fails until it is set",
            ctx.config.relative(&flow.source).display(),
            flow.key,
            flow.name
        ));
    }

    /// The error of a call whose environment variable `var` is not set.
    pub fn unset(flow: &str, service: &str, var: &str) -> RailError {
        RailError(format!("{flow} ({service}): {var} is not set"))
    }

    /// The key a call needs, or the error naming its unset variable.
    pub fn key<'k>(
        key: Option<&'k str>,
        flow: &str,
        service: &str,
        var: &str,
    ) -> Result<&'k str, RailError> {
        key.ok_or_else(|| unset(flow, service, var))
    }

    /// The rail's client, or an error naming the flow.
    pub fn client(
        service: &'static str,
        flow: &FlowRef,
        timeout: Duration,
    ) -> Result<ServiceClient, ConfigError> {
        ServiceClient::new(service, &flow.name, timeout)
            .map_err(|e| ConfigError::invalid(&flow.source, &flow.key, format!("HTTP client: {e}")))
    }

    /// The text a rail of `stage` checks: the user's message, or the answer.
    pub fn text<'a>(stage: Stage, input: &RailInput<'a>) -> &'a str {
        match stage {
            Stage::Input | Stage::ToolInput => input.user_input,
            Stage::Output | Stage::Retrieval | Stage::ToolOutput => input.text(),
        }
    }
}

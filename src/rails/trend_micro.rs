//! Trend Micro Vision One AI Guard (`trend ai guard input` / `output`), as
//! NeMo's library calls it: `POST v1_url` with `{"prompt": text}`, the key
//! from `api_key_env_var` as a bearer token, `TMV1-Application-Name` and
//! `Prefer: return=minimal` (or `return=representation` with
//! `detailed_response`); `{"action": "Block", "reason": …}` blocks. A missing
//! key blocks, as in NeMo. Where NeMo lets text through when the call fails,
//! streamguard fails the rail (`rail_execution_failure`).

use std::sync::Arc;

use futures_util::{FutureExt, future::BoxFuture};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Rail, RailError, RailInput, Stage, Verdict,
    catalog::BuildContext,
    service::{ServiceClient, settings},
};
use crate::config::{ConfigError, FlowRef};

/// NeMo's default endpoint (other regions: `api.{region}.xdr.trendmicro.com`).
const DEFAULT_URL: &str = "https://api.xdr.trendmicro.com/v3.0/aiSecurity/applyGuardrails";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    v1_url: Option<String>,
    api_key_env_var: Option<String>,
    /// streamguard extension: the key itself (never printed).
    api_key: Option<String>,
    application_name: Option<String>,
    #[serde(default)]
    detailed_response: bool,
    /// streamguard extension: the call's time limit, in seconds.
    timeout: Option<f64>,
}

#[derive(Debug)]
pub struct TrendMicro {
    flow: String,
    stage: Stage,
    url: reqwest::Url,
    key: Key,
    application: String,
    prefer: &'static str,
    client: ServiceClient,
}

#[derive(Debug)]
enum Key {
    Literal(String),
    Env(String),
    None,
}

pub(super) fn build(
    ctx: &mut BuildContext<'_>,
    flow: &FlowRef,
    stage: Stage,
) -> Result<Arc<dyn Rail>, ConfigError> {
    let config = ctx.config;
    let s: Settings = config.rail_settings("trend_micro")?;
    let file = config.rail_settings_file("trend_micro");
    let bad = |k: &str, m: String| {
        ConfigError::invalid(&file, format!("rails.config.trend_micro.{k}"), m)
    };
    let url = s.v1_url.as_deref().unwrap_or(DEFAULT_URL);
    let url = settings::http_url(url, &file, "rails.config.trend_micro.v1_url")?;
    let application = s
        .application_name
        .unwrap_or_else(|| "nemo-guardrails".into());
    let valid_name = !application.is_empty()
        && application.len() <= 64
        && application
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid_name {
        return Err(bad(
            "application_name",
            "letters, digits, `-` and `_`, at most 64 characters".into(),
        ));
    }
    let key = match (s.api_key, s.api_key_env_var) {
        (Some(k), _) => Key::Literal(k),
        (None, Some(var)) => {
            if std::env::var_os(&var).is_none() {
                ctx.warnings.push(format!(
                    "{}: `rails.config.trend_micro.api_key_env_var`: the variable `{var}` is not set; `{}` blocks until it is",
                    config.relative(&file).display(),
                    flow.name
                ));
            }
            Key::Env(var)
        }
        (None, None) => Key::None,
    };
    let timeout = settings::timeout(s.timeout, &file, "trend_micro")?;
    let client = settings::client("Trend Micro AI Guard", flow, timeout)?;
    Ok(Arc::new(TrendMicro {
        flow: flow.name.clone(),
        stage,
        url,
        key,
        application,
        prefer: if s.detailed_response {
            "return=representation"
        } else {
            "return=minimal"
        },
        client,
    }))
}

/// The reason of an answer: `reason`, or its `reasons` joined.
fn reason(answer: &Value) -> String {
    match (answer.get("reason"), answer.get("reasons")) {
        (Some(Value::String(r)), _) => r.clone(),
        (_, Some(Value::Array(all))) => all
            .iter()
            .map(|r| r.as_str().map_or_else(|| r.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join("; "),
        _ => String::new(),
    }
}

impl TrendMicro {
    async fn decide(&self, text: &str) -> Result<Verdict, RailError> {
        let key = match &self.key {
            Key::Literal(k) => Some(k.clone()),
            Key::Env(var) => std::env::var(var).ok(),
            Key::None => None,
        };
        let Some(key) = key else {
            // NeMo's behaviour: no key, no pass.
            return Ok(Verdict::Block {
                reason: "Trend Micro Vision One API Key not found".into(),
            });
        };
        let headers = [
            ("TMV1-Application-Name", self.application.as_str()),
            ("Prefer", self.prefer),
        ];
        let answer = self
            .client
            .post_json_with(&self.url, &json!({"prompt": text}), Some(&key), &headers)
            .await?;
        match answer.get("action").and_then(Value::as_str) {
            Some("Allow") => Ok(Verdict::Allow),
            Some("Block") => Ok(Verdict::Block {
                reason: reason(&answer),
            }),
            _ => Err(RailError(format!(
                "{} (Trend Micro AI Guard): the answer has no `action` of Allow or Block",
                self.flow
            ))),
        }
    }
}

impl Rail for TrendMicro {
    fn flow(&self) -> &str {
        &self.flow
    }

    fn check<'a>(&'a self, input: RailInput<'a>) -> BoxFuture<'a, Result<Verdict, RailError>> {
        self.decide(settings::text(self.stage, &input)).boxed()
    }
}

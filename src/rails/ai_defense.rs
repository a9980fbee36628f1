//! Cisco AI Defense (`ai defense inspect prompt` / `response`), as NeMo's
//! library calls it: `POST {AI_DEFENSE_API_ENDPOINT}` with the
//! `X-Cisco-AI-Defense-API-Key` header (`AI_DEFENSE_API_KEY`) and
//! `{"messages": [{"role": "user"|"assistant", "content": …}]}`;
//! `"is_safe": false` blocks (the matched `rules` are the reason).
//! `rails.config.ai_defense.timeout` (default 30 s) and `fail_open` (default
//! false) as in NeMo: with `fail_open` a failed call lets the text through,
//! else the rail fails. `api_key` / `api_endpoint` there are streamguard
//! extensions beside the environment.

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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    timeout: Option<f64>,
    #[serde(default)]
    fail_open: bool,
    api_key: Option<String>,
    api_endpoint: Option<String>,
}

#[derive(Debug)]
pub struct AiDefense {
    flow: String,
    stage: Stage,
    /// The endpoint and key, or the variable that is missing.
    target: Result<(reqwest::Url, String), &'static str>,
    fail_open: bool,
    client: ServiceClient,
}

pub(super) fn build(
    ctx: &mut BuildContext<'_>,
    flow: &FlowRef,
    stage: Stage,
) -> Result<Arc<dyn Rail>, ConfigError> {
    let config = ctx.config;
    let s: Settings = config.rail_settings("ai_defense")?;
    let file = config.rail_settings_file("ai_defense");
    let endpoint = settings::or_env(s.api_endpoint, "AI_DEFENSE_API_ENDPOINT");
    let key = settings::or_env(s.api_key, "AI_DEFENSE_API_KEY");
    let target = match (endpoint, key) {
        (None, _) => Err("AI_DEFENSE_API_ENDPOINT"),
        (_, None) => Err("AI_DEFENSE_API_KEY"),
        (Some(e), Some(k)) => {
            let url = settings::http_url(&e, &file, "rails.config.ai_defense.api_endpoint")?;
            Ok((url, k))
        }
    };
    if let Err(var) = target {
        settings::warn_unset(ctx, flow, var);
    }
    let timeout = settings::timeout(s.timeout, &file, "ai_defense")?;
    let client = settings::client("Cisco AI Defense", flow, timeout)?;
    Ok(Arc::new(AiDefense {
        flow: flow.name.clone(),
        stage,
        target,
        fail_open: s.fail_open,
        client,
    }))
}

/// The matched rules of an unsafe answer, as a reason.
fn rules(answer: &Value) -> String {
    let names: Vec<String> = answer
        .get("rules")
        .and_then(Value::as_array)
        .map(|all| {
            all.iter()
                .filter_map(|r| {
                    let name = r.get("rule_name")?.as_str()?;
                    let class = r
                        .get("classification")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    Some(format!("{name} ({class})"))
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        "unsafe according to Cisco AI Defense".into()
    } else {
        format!("unsafe according to Cisco AI Defense: {}", names.join(", "))
    }
}

impl AiDefense {
    async fn ask(&self, text: &str) -> Result<Verdict, RailError> {
        let (url, key) = self
            .target
            .as_ref()
            .map_err(|var| settings::unset(&self.flow, "Cisco AI Defense", var))?;
        let role = match self.stage {
            Stage::Input | Stage::ToolInput => "user",
            Stage::Output | Stage::Retrieval | Stage::ToolOutput => "assistant",
        };
        let body = json!({"messages": [{"role": role, "content": text}]});
        let headers = [("X-Cisco-AI-Defense-API-Key", key.as_str())];
        let answer = self
            .client
            .post_json_with(url, &body, None, &headers)
            .await?;
        match answer.get("is_safe").and_then(Value::as_bool) {
            Some(true) => Ok(Verdict::Allow),
            Some(false) => Ok(Verdict::Block {
                reason: rules(&answer),
            }),
            None => Err(RailError(format!(
                "{} (Cisco AI Defense): the answer has no boolean `is_safe`",
                self.flow
            ))),
        }
    }

    async fn decide(&self, text: &str) -> Result<Verdict, RailError> {
        match self.ask(text).await {
            Err(e) if self.fail_open => {
                tracing::warn!(rail = %self.flow, error = %e, "AI Defense failed; fail_open lets the text through");
                Ok(Verdict::Allow)
            }
            other => other,
        }
    }
}

impl Rail for AiDefense {
    fn flow(&self) -> &str {
        &self.flow
    }

    fn check<'a>(&'a self, input: RailInput<'a>) -> BoxFuture<'a, Result<Verdict, RailError>> {
        self.decide(settings::text(self.stage, &input)).boxed()
    }
}

//! Pangea AI Guard (`pangea ai guard input` / `output`), as NeMo's library
//! calls it: `POST {PANGEA_BASE_URL_TEMPLATE with ai-guard}/v1/text/guard`
//! with the bearer `PANGEA_API_TOKEN`, the config's instructions as system
//! messages, the user message (and, for output, the bot message) and the
//! stage's `recipe`; `result.blocked` blocks (answered with NeMo's `bot
//! inform answer unknown`), `result.transformed` rewrites to the user or
//! assistant message of `result.prompt_messages`. The token and the URL
//! template may also be given in `rails.config.pangea` (streamguard
//! extensions). Where NeMo lets text through when the call fails,
//! streamguard fails the rail.

use std::sync::Arc;

use futures_util::{FutureExt, future::BoxFuture};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Rail, RailError, RailInput, Stage, Verdict,
    catalog::BuildContext,
    service::{ANSWER_UNKNOWN, ServiceClient, settings},
};
use crate::config::{ConfigError, FlowRef};

const DEFAULT_TEMPLATE: &str = "https://{SERVICE_NAME}.aws.us.pangea.cloud";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    input: Option<Recipe>,
    output: Option<Recipe>,
    base_url_template: Option<String>,
    api_token: Option<String>,
    timeout: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Recipe {
    recipe: Option<String>,
}

#[derive(Debug)]
pub struct Pangea {
    flow: String,
    stage: Stage,
    url: reqwest::Url,
    token: Option<String>,
    recipe: Option<String>,
    instructions: Vec<String>,
    client: ServiceClient,
}

pub(super) fn build(
    ctx: &mut BuildContext<'_>,
    flow: &FlowRef,
    stage: Stage,
) -> Result<Arc<dyn Rail>, ConfigError> {
    let config = ctx.config;
    let s: Settings = config.rail_settings("pangea")?;
    let file = config.rail_settings_file("pangea");
    let template = s
        .base_url_template
        .or_else(|| std::env::var("PANGEA_BASE_URL_TEMPLATE").ok())
        .unwrap_or_else(|| DEFAULT_TEMPLATE.into());
    let endpoint = format!(
        "{}/v1/text/guard",
        template
            .replace("{SERVICE_NAME}", "ai-guard")
            .trim_end_matches('/')
    );
    let url = settings::http_url(&endpoint, &file, "rails.config.pangea.base_url_template")?;
    let token = s
        .api_token
        .or_else(|| std::env::var("PANGEA_API_TOKEN").ok())
        .filter(|t| !t.is_empty());
    if token.is_none() {
        settings::warn_unset(ctx, flow, "PANGEA_API_TOKEN");
    }
    let recipe = match stage {
        Stage::Input | Stage::ToolInput => s.input.and_then(|r| r.recipe),
        Stage::Output | Stage::Retrieval | Stage::ToolOutput => s.output.and_then(|r| r.recipe),
    };
    let timeout = settings::timeout(s.timeout, &file, "pangea")?;
    let client = settings::client("Pangea AI Guard", flow, timeout)?;
    Ok(Arc::new(Pangea {
        flow: flow.name.clone(),
        stage,
        url,
        token,
        recipe,
        instructions: config.instructions().values().cloned().collect(),
        client,
    }))
}

impl Pangea {
    async fn decide(&self, user: &str, bot: Option<&str>) -> Result<Verdict, RailError> {
        let token = settings::key(
            self.token.as_deref(),
            &self.flow,
            "Pangea AI Guard",
            "PANGEA_API_TOKEN",
        )?;
        let mut messages: Vec<Value> = self
            .instructions
            .iter()
            .map(|c| json!({"role": "system", "content": c}))
            .collect();
        messages.push(json!({"role": "user", "content": user}));
        if let (Stage::Output, Some(bot)) = (self.stage, bot) {
            messages.push(json!({"role": "assistant", "content": bot}));
        }
        let mut body = json!({"messages": messages});
        if let Some(r) = &self.recipe {
            body["recipe"] = json!(r);
        }
        let headers = [("User-Agent", "streamguard (NeMo Guardrails compatible)")];
        let answer = self
            .client
            .post_json_with(&self.url, &body, Some(token), &headers)
            .await?;
        let result = answer.get("result").ok_or_else(|| {
            RailError(format!(
                "{} (Pangea AI Guard): the answer has no `result`",
                self.flow
            ))
        })?;
        if result.get("blocked").and_then(Value::as_bool) == Some(true) {
            return Ok(Verdict::Block {
                reason: "blocked by Pangea AI Guard".into(),
            });
        }
        if result.get("transformed").and_then(Value::as_bool) != Some(true) {
            return Ok(Verdict::Allow);
        }
        let role = match self.stage {
            Stage::Input | Stage::ToolInput => "user",
            Stage::Output | Stage::Retrieval | Stage::ToolOutput => "assistant",
        };
        let text = result
            .get("prompt_messages")
            .and_then(Value::as_array)
            .and_then(|all| all.iter().find(|m| m["role"] == role))
            .and_then(|m| m["content"].as_str())
            .ok_or_else(|| {
                RailError(format!(
                    "{} (Pangea AI Guard): `transformed` without a {role} message",
                    self.flow
                ))
            })?;
        Ok(Verdict::Modify {
            text: text.to_string(),
            reason: "transformed by Pangea AI Guard".into(),
        })
    }
}

impl Rail for Pangea {
    fn flow(&self) -> &str {
        &self.flow
    }

    fn check<'a>(&'a self, input: RailInput<'a>) -> BoxFuture<'a, Result<Verdict, RailError>> {
        self.decide(input.user_input, input.bot_response).boxed()
    }

    fn refusal(&self, _input: &RailInput<'_>, _reason: &str) -> Option<String> {
        Some(ANSWER_UNKNOWN.to_string())
    }
}

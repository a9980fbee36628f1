//! Prompt Security's Protect API (`protect prompt` / `protect response`),
//! as NeMo's library calls it: `POST {PS_PROTECT_URL}` with the `APP-ID`
//! header (`PS_APP_ID`) and `{"prompt", "system_prompt", "response",
//! "user"}`; `result.action` `block` blocks (answered with NeMo's `bot
//! inform answer unknown`), `modify` rewrites the text to
//! `result.<prompt|response>.modified_text`. NeMo reads the URL and id from
//! the environment only; `rails.config.prompt_security.protect_url` /
//! `app_id` (streamguard extensions) may give them too. Where NeMo lets the
//! text through when the call fails, streamguard fails the rail.

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

/// NeMo's `bot inform answer unknown`.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    protect_url: Option<String>,
    app_id: Option<String>,
    timeout: Option<f64>,
}

#[derive(Debug)]
pub struct PromptSecurity {
    flow: String,
    stage: Stage,
    /// The endpoint and the id, or the variable that is missing (the rail
    /// then fails each call, and `check` warns).
    target: Result<(reqwest::Url, String), &'static str>,
    client: ServiceClient,
}

pub(super) fn build(
    ctx: &mut BuildContext<'_>,
    flow: &FlowRef,
    stage: Stage,
) -> Result<Arc<dyn Rail>, ConfigError> {
    let s: Settings = ctx.config.rail_settings("prompt_security")?;
    let target = match (
        settings::or_env(s.protect_url, "PS_PROTECT_URL"),
        settings::or_env(s.app_id, "PS_APP_ID"),
    ) {
        (None, _) => Err("PS_PROTECT_URL"),
        (_, None) => Err("PS_APP_ID"),
        (Some(url), Some(id)) => {
            let url = reqwest::Url::parse(&url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .ok_or_else(|| {
                    ConfigError::invalid(
                        &flow.source,
                        &flow.key,
                        format!(
                            "`{}`: PS_PROTECT_URL `{url}` is not an http(s) URL",
                            flow.name
                        ),
                    )
                })?;
            Ok((url, id))
        }
    };
    if let Err(var) = target {
        ctx.warnings.push(format!(
            "{}: `{}`: `{}` needs {var} (NeMo reads it from the environment; `rails.config.prompt_security.protect_url` / `app_id` may give it); it fails until it is set",
            ctx.config.relative(&flow.source).display(),
            flow.key,
            flow.name
        ));
    }
    let timeout = settings::timeout(
        s.timeout,
        &ctx.config.rail_settings_file("prompt_security"),
        "prompt_security",
    )?;
    let client = settings::client("Prompt Security", flow, timeout)?;
    Ok(Arc::new(PromptSecurity {
        flow: flow.name.clone(),
        stage,
        target,
        client,
    }))
}

impl PromptSecurity {
    async fn decide(&self, text: &str) -> Result<Verdict, RailError> {
        let (body, field) = match self.stage {
            Stage::Input | Stage::ToolInput => (
                json!({"prompt": text, "system_prompt": null, "response": null, "user": null}),
                "prompt",
            ),
            Stage::Output | Stage::Retrieval | Stage::ToolOutput => (
                json!({"prompt": null, "system_prompt": null, "response": text, "user": null}),
                "response",
            ),
        };
        let (url, app_id) = self
            .target
            .as_ref()
            .map_err(|var| settings::unset(&self.flow, "Prompt Security", var))?;
        let headers = [("APP-ID", app_id.as_str())];
        let answer = self
            .client
            .post_json_with(url, &body, None, &headers)
            .await?;
        let result = answer.get("result").unwrap_or(&Value::Null);
        match result
            .get("action")
            .and_then(Value::as_str)
            .unwrap_or("log")
        {
            "block" => Ok(Verdict::Block {
                reason: format!("Prompt Security blocked the {field}"),
            }),
            "modify" => {
                let modified = result
                    .get(field)
                    .and_then(|f| f.get("modified_text"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        RailError(format!(
                            "{} (Prompt Security): `modify` without result.{field}.modified_text",
                            self.flow
                        ))
                    })?;
                Ok(Verdict::Modify {
                    text: modified.to_string(),
                    reason: format!("Prompt Security modified the {field}"),
                })
            }
            // `log` (and anything else NeMo does not act on) lets it through.
            _ => Ok(Verdict::Allow),
        }
    }
}

impl Rail for PromptSecurity {
    fn flow(&self) -> &str {
        &self.flow
    }

    fn check<'a>(&'a self, input: RailInput<'a>) -> BoxFuture<'a, Result<Verdict, RailError>> {
        self.decide(settings::text(self.stage, &input)).boxed()
    }

    fn refusal(&self, _input: &RailInput<'_>, _reason: &str) -> Option<String> {
        Some(ANSWER_UNKNOWN.to_string())
    }
}

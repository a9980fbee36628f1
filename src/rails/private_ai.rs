//! Private AI (`detect pii on input/output`, `mask pii on input/output`),
//! as NeMo's library calls it: `POST server_endpoint` (default
//! `http://localhost:8080/process/text`) with `{"text": [text],
//! "link_batch": false, "entity_detection": {"accuracy": "high_automatic",
//! "return_entity": false, "entity_types": [{"type": "ENABLE", "value":
//! <the stage's entities>}]}}` and the `x-api-key` header (`PAI_API_KEY`,
//! required by the cloud API; `api_key` is a streamguard extension). Any
//! `entities_present` blocks a detect flow; a mask flow rewrites the text to
//! `processed_text`. The retrieval flows wait for knowledge bases.

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
    server_endpoint: Option<String>,
    #[serde(default)]
    input: Entities,
    #[serde(default)]
    output: Entities,
    #[serde(default)]
    retrieval: Entities,
    api_key: Option<String>,
    timeout: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entities {
    #[serde(default)]
    entities: Vec<String>,
}

#[derive(Debug)]
pub struct PrivateAi {
    flow: String,
    stage: Stage,
    mask: bool,
    url: reqwest::Url,
    entities: Vec<String>,
    key: Option<String>,
    client: ServiceClient,
}

fn build(
    ctx: &mut BuildContext<'_>,
    flow: &FlowRef,
    stage: Stage,
    mask: bool,
) -> Result<Arc<dyn Rail>, ConfigError> {
    let config = ctx.config;
    let s: Settings = config.rail_settings("privateai")?;
    let file = config.rail_settings_file("privateai");
    let endpoint = s
        .server_endpoint
        .unwrap_or_else(|| "http://localhost:8080/process/text".into());
    let url = settings::http_url(&endpoint, &file, "rails.config.privateai.server_endpoint")?;
    let key = s
        .api_key
        .or_else(|| std::env::var("PAI_API_KEY").ok())
        .filter(|k| !k.is_empty());
    let cloud = url.host_str() == Some("api.private-ai.com");
    if cloud && key.is_none() {
        ctx.warnings.push(format!(
            "{}: `{}`: `{}` calls Private AI's cloud API, which needs PAI_API_KEY; it fails until it is set",
            config.relative(&flow.source).display(),
            flow.key,
            flow.name
        ));
    }
    let entities = match stage {
        Stage::Input | Stage::ToolInput => s.input.entities,
        Stage::Output | Stage::ToolOutput => s.output.entities,
        Stage::Retrieval => s.retrieval.entities,
    };
    let timeout = settings::timeout(s.timeout, &file, "privateai")?;
    let client = settings::client("Private AI", flow, timeout)?;
    Ok(Arc::new(PrivateAi {
        flow: flow.name.clone(),
        stage,
        mask,
        url,
        entities,
        key,
        client,
    }))
}

pub(super) fn detect(
    ctx: &mut BuildContext<'_>,
    flow: &FlowRef,
    stage: Stage,
) -> Result<Arc<dyn Rail>, ConfigError> {
    build(ctx, flow, stage, false)
}

pub(super) fn mask(
    ctx: &mut BuildContext<'_>,
    flow: &FlowRef,
    stage: Stage,
) -> Result<Arc<dyn Rail>, ConfigError> {
    build(ctx, flow, stage, true)
}

impl PrivateAi {
    async fn decide(&self, text: &str) -> Result<Verdict, RailError> {
        if self.url.host_str() == Some("api.private-ai.com") && self.key.is_none() {
            return Err(settings::unset(&self.flow, "Private AI", "PAI_API_KEY"));
        }
        let mut detection = json!({"accuracy": "high_automatic", "return_entity": false});
        if !self.entities.is_empty() {
            detection["entity_types"] = json!([{"type": "ENABLE", "value": self.entities}]);
        }
        let body = json!({"text": [text], "link_batch": false, "entity_detection": detection});
        let headers: Vec<(&'static str, &str)> = self
            .key
            .as_deref()
            .map(|k| ("x-api-key", k))
            .into_iter()
            .collect();
        let answer = self
            .client
            .post_json_with(&self.url, &body, None, &headers)
            .await?;
        let results = answer.as_array().ok_or_else(|| {
            RailError(format!(
                "{} (Private AI): the answer is not a list of results",
                self.flow
            ))
        })?;
        if self.mask {
            let masked = results
                .first()
                .and_then(|r| r.get("processed_text"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    RailError(format!("{} (Private AI): no processed_text", self.flow))
                })?;
            return Ok(if masked == text {
                Verdict::Allow
            } else {
                Verdict::Modify {
                    text: masked.to_string(),
                    reason: "PII masked by Private AI".into(),
                }
            });
        }
        let found = results
            .iter()
            .any(|r| r.get("entities_present").and_then(Value::as_bool) == Some(true));
        Ok(if found {
            Verdict::Block {
                reason: "PII detected by Private AI".into(),
            }
        } else {
            Verdict::Allow
        })
    }
}

impl Rail for PrivateAi {
    fn flow(&self) -> &str {
        &self.flow
    }

    fn check<'a>(&'a self, input: RailInput<'a>) -> BoxFuture<'a, Result<Verdict, RailError>> {
        self.decide(settings::text(self.stage, &input)).boxed()
    }
}

//! Guardrails AI validators (`guardrailsai check input` / `output`
//! `$validator=<name>`) through a Guardrails AI server (`guardrails start`).
//! NeMo runs the validator in its own Python process; streamguard asks the
//! server the way Guardrails' own client does: `POST
//! {server}/guards/{guard}/validate` with `{"llmOutput": text, "numReasks":
//! 0, "metadata": …}` (the bearer `GUARDRAILS_API_KEY` when set), and
//! `validationPassed: false` blocks. `{guard}` is the validator's `guard`
//! (streamguard extension), else its `name`: the server's `config.py` defines
//! a guard of that name using the validator with its `parameters`. The server
//! is `rails.config.guardrails_ai.server_endpoint`, else
//! `GUARDRAILS_BASE_URL`, else `http://localhost:8000` (as Guardrails' client).

use std::sync::Arc;

use futures_util::{FutureExt, future::BoxFuture};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{
    Rail, RailError, RailInput, Stage, Verdict,
    catalog::BuildContext,
    service::{ServiceClient, settings},
};
use crate::config::{ConfigError, FlowRef};

const DEFAULT_SERVER: &str = "http://localhost:8000";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    validators: Vec<Validator>,
    /// streamguard extension: the Guardrails AI server.
    server_endpoint: Option<String>,
    /// streamguard extension: where the server's key is (else GUARDRAILS_API_KEY).
    api_key_env_var: Option<String>,
    /// streamguard extension: the call's time limit, in seconds.
    timeout: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Validator {
    name: String,
    /// The validator's constructor arguments: configured on the server's guard.
    #[serde(default, rename = "parameters")]
    _parameters: Map<String, Value>,
    #[serde(default)]
    metadata: Map<String, Value>,
    /// streamguard extension: the server's guard name, if not the validator's.
    guard: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Validate<'a> {
    llm_output: &'a str,
    num_reasks: u32,
    #[serde(skip_serializing_if = "Map::is_empty")]
    metadata: &'a Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Outcome {
    #[serde(default)]
    validation_passed: bool,
}

#[derive(Debug)]
pub struct GuardrailsAi {
    flow: String,
    stage: Stage,
    validator: String,
    url: reqwest::Url,
    key: Option<String>,
    metadata: Map<String, Value>,
    client: ServiceClient,
}

pub(super) fn build(
    ctx: &mut BuildContext<'_>,
    flow: &FlowRef,
    stage: Stage,
) -> Result<Arc<dyn Rail>, ConfigError> {
    let s: Settings = ctx.config.rail_settings("guardrails_ai")?;
    let file = ctx.config.rail_settings_file("guardrails_ai");
    let name = flow.args.get("validator").ok_or_else(|| {
        ConfigError::invalid(
            &flow.source,
            &flow.key,
            format!("`{}` needs `$validator=<name>`", flow.name),
        )
    })?;
    let Some(validator) = s.validators.into_iter().find(|v| &v.name == name) else {
        return Err(ConfigError::invalid(
            &file,
            "rails.config.guardrails_ai.validators",
            format!("has no validator `{name}` (named by `{}`)", flow.name),
        ));
    };
    let server = settings::or_env(s.server_endpoint, "GUARDRAILS_BASE_URL").unwrap_or_else(|| {
        ctx.warnings.push(format!(
            "{}: `{}`: `{}` asks the Guardrails AI server at {DEFAULT_SERVER} \
             (set `rails.config.guardrails_ai.server_endpoint` or GUARDRAILS_BASE_URL)",
            ctx.config.relative(&flow.source).display(),
            flow.key,
            flow.name
        ));
        DEFAULT_SERVER.into()
    });
    let key_name = "rails.config.guardrails_ai.server_endpoint";
    let mut url = settings::http_url(&server, &file, key_name)?;
    let guard = validator.guard.as_deref().unwrap_or(&validator.name);
    url.path_segments_mut()
        .map_err(|()| ConfigError::invalid(&file, key_name, "cannot be a base URL"))?
        .pop_if_empty()
        .extend(["guards", guard, "validate"]);
    let key = settings::or_env(
        None,
        s.api_key_env_var.as_deref().unwrap_or("GUARDRAILS_API_KEY"),
    );
    let timeout = settings::timeout(s.timeout, &file, "guardrails_ai")?;
    let client = settings::client("Guardrails AI", flow, timeout)?;
    Ok(Arc::new(GuardrailsAi {
        flow: flow.name.clone(),
        stage,
        validator: validator.name,
        url,
        key,
        metadata: validator.metadata,
        client,
    }))
}

impl GuardrailsAi {
    async fn decide(&self, input: RailInput<'_>) -> Result<Verdict, RailError> {
        let body = Validate {
            llm_output: settings::text(self.stage, &input),
            num_reasks: 0,
            metadata: &self.metadata,
        };
        let answer = self
            .client
            .post_json(&self.url, &body, self.key.as_deref())
            .await?;
        let outcome: Outcome = serde_json::from_value(answer).map_err(|e| {
            self.client
                .invalid(format!("the answer is not a validation outcome: {e}"))
        })?;
        Ok(if outcome.validation_passed {
            Verdict::Allow
        } else {
            Verdict::Block {
                reason: format!("Guardrails AI {} validation failed", self.validator),
            }
        })
    }
}

impl Rail for GuardrailsAi {
    fn flow(&self) -> &str {
        &self.flow
    }

    fn check<'a>(&'a self, input: RailInput<'a>) -> BoxFuture<'a, Result<Verdict, RailError>> {
        self.decide(input).boxed()
    }
}

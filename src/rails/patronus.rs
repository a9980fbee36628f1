//! Patronus AI's Evaluate API (`patronus api check output`), as NeMo's
//! library calls it: `POST https://api.patronus.ai/v1/evaluate` with
//! `X-API-KEY: PATRONUS_API_KEY` and the output stage's
//! `evaluate_config.params` (which must list `evaluators`) plus
//! `evaluated_model_input` / `_output` / `_retrieved_context`. It passes when
//! all (`success_strategy: all_pass`, the default) or any (`any_pass`) of the
//! answer's `results[].evaluation_result.pass` are true, and blocks otherwise
//! (with NeMo's `bot inform answer unknown`), also when the API answers a
//! server error, as NeMo does; a client error (4xx) fails the rail.
//! (`patronus lynx check output hallucination` is a judge: see the catalog.)

use std::sync::Arc;

use futures_util::{FutureExt, future::BoxFuture};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{
    Rail, RailError, RailInput, Stage, Verdict,
    catalog::BuildContext,
    service::{ANSWER_UNKNOWN, ServiceClient, settings},
};
use crate::config::{ConfigError, FlowRef};

const DEFAULT_ENDPOINT: &str = "https://api.patronus.ai/v1/evaluate";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(rename = "input")]
    _input: Option<Stagewise>,
    output: Option<Stagewise>,
    /// streamguard extension: the Evaluate API's URL.
    server_endpoint: Option<String>,
    /// streamguard extension: the key itself (else PATRONUS_API_KEY).
    api_key: Option<String>,
    /// streamguard extension: the call's time limit, in seconds.
    timeout: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stagewise {
    #[serde(default)]
    evaluate_config: EvaluateConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EvaluateConfig {
    #[serde(default)]
    success_strategy: Strategy,
    #[serde(default)]
    params: Map<String, Value>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Strategy {
    #[default]
    AllPass,
    AnyPass,
}

#[derive(Serialize)]
struct Evaluate<'a> {
    #[serde(flatten)]
    params: &'a Map<String, Value>,
    evaluated_model_input: &'a str,
    evaluated_model_output: &'a str,
    evaluated_model_retrieved_context: Option<&'a str>,
}

#[derive(Debug)]
pub struct Patronus {
    flow: String,
    url: reqwest::Url,
    key: Option<String>,
    params: Map<String, Value>,
    strategy: Strategy,
    client: ServiceClient,
}

/// `patronus api check output`.
pub(super) fn api(
    ctx: &mut BuildContext<'_>,
    flow: &FlowRef,
    _: Stage,
) -> Result<Arc<dyn Rail>, ConfigError> {
    let s: Settings = ctx.config.rail_settings("patronus")?;
    let file = ctx.config.rail_settings_file("patronus");
    let mut evaluate = s.output.unwrap_or_default().evaluate_config;
    // NeMo's request sets these itself, over any in `params`.
    for own in [
        "evaluated_model_input",
        "evaluated_model_output",
        "evaluated_model_retrieved_context",
    ] {
        evaluate.params.remove(own);
    }
    let key = "rails.config.patronus.output.evaluate_config.params.evaluators";
    check_evaluators(&evaluate.params).map_err(|m| ConfigError::invalid(&file, key, m))?;
    let url = s.server_endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT);
    let url = settings::http_url(url, &file, "rails.config.patronus.server_endpoint")?;
    let api_key = settings::or_env(s.api_key, "PATRONUS_API_KEY");
    if api_key.is_none() {
        settings::warn_unset(ctx, flow, "PATRONUS_API_KEY");
    }
    let timeout = settings::timeout(s.timeout, &file, "patronus")?;
    let client = settings::client("Patronus AI", flow, timeout)?;
    Ok(Arc::new(Patronus {
        flow: flow.name.clone(),
        url,
        key: api_key,
        params: evaluate.params,
        strategy: evaluate.success_strategy,
        client,
    }))
}

/// NeMo's checks of `params.evaluators`: a list of mappings, each naming its `evaluator`.
fn check_evaluators(params: &Map<String, Value>) -> Result<(), &'static str> {
    let list = params
        .get("evaluators")
        .ok_or("is required (the Evaluate API's evaluators)")?
        .as_array()
        .ok_or("must be a list")?;
    if list
        .iter()
        .any(|e| e.as_object().is_none_or(|e| !e.contains_key("evaluator")))
    {
        return Err("each evaluator must be a mapping with its `evaluator`");
    }
    Ok(())
}

/// Whether the evaluations pass under `strategy` (no results: they do not).
fn passed(answer: &Value, strategy: Strategy) -> bool {
    let Some(results) = answer.get("results").and_then(Value::as_array) else {
        return false;
    };
    let pass = |r: &Value| r["evaluation_result"]["pass"].as_bool() == Some(true);
    match strategy {
        Strategy::AllPass => results.iter().all(pass),
        Strategy::AnyPass => results.iter().any(pass),
    }
}

impl Patronus {
    async fn decide(&self, input: RailInput<'_>) -> Result<Verdict, RailError> {
        let key = settings::key(
            self.key.as_deref(),
            &self.flow,
            "Patronus AI",
            "PATRONUS_API_KEY",
        )?;
        let body = Evaluate {
            params: &self.params,
            evaluated_model_input: input.user_input,
            evaluated_model_output: input.text(),
            evaluated_model_retrieved_context: None,
        };
        let headers = [("X-API-KEY", key)];
        let answer = self.client.post(&self.url, &body, None, &headers).await?;
        let pass = if answer.status.is_server_error() {
            tracing::warn!(flow = %self.flow, status = answer.status.as_u16(), "Patronus AI answered a server error; blocking as NeMo does");
            false
        } else {
            let bytes = self.client.success(&self.url, answer, Some(key))?;
            passed(&self.client.json(&bytes)?, self.strategy)
        };
        Ok(if pass {
            Verdict::Allow
        } else {
            Verdict::Block {
                reason: "the Patronus AI evaluation did not pass".into(),
            }
        })
    }
}

impl Rail for Patronus {
    fn flow(&self) -> &str {
        &self.flow
    }

    fn check<'a>(&'a self, input: RailInput<'a>) -> BoxFuture<'a, Result<Verdict, RailError>> {
        self.decide(input).boxed()
    }

    fn refusal(&self, _input: &RailInput<'_>, _reason: &str) -> Option<String> {
        Some(ANSWER_UNKNOWN.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_strategy_decides_how_many_evaluations_must_pass() {
        let answer = json!({"results": [
            {"evaluation_result": {"pass": true}},
            {"evaluation_result": {"pass": false}},
            {"error_message": "evaluator down"}
        ]});
        assert!(!passed(&answer, Strategy::AllPass));
        assert!(passed(&answer, Strategy::AnyPass));
        assert!(!passed(&json!({}), Strategy::AnyPass));
        assert!(passed(&json!({"results": []}), Strategy::AllPass));
        let params: Map<String, Value> =
            serde_json::from_value(json!({"evaluators": [{"criteria": "x"}]})).unwrap();
        assert!(check_evaluators(&params).is_err());
        assert!(check_evaluators(&Map::new()).is_err());
    }
}

//! AlignScore fact checking (`alignscore check facts`), as NeMo's library
//! asks an AlignScore server: only when the turn's dialog flow set
//! `$check_facts = True` and the knowledge base found chunks, `POST
//! rails.config.fact_checking.parameters.endpoint` with `{"evidence": the
//! chunks, "claim": the answer}`; an `alignscore` under 0.5 blocks with NeMo's
//! "I don't know the answer to that.". When the server fails and
//! `fallback_to_self_check: True`, the `self check facts` judge decides, as
//! in NeMo; without the fallback, where NeMo lets the answer through,
//! streamguard fails the rail.

use std::sync::Arc;

use futures_util::{FutureExt, future::BoxFuture};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    Rail, RailError, RailInput, Stage, Verdict,
    catalog::{BuildContext, SELF_CHECK_FACTS},
    judge,
    service::{ANSWER_UNKNOWN, ServiceClient, settings},
};
use crate::config::{ConfigError, FlowRef};

/// NeMo's default endpoint.
const DEFAULT_ENDPOINT: &str = "http://localhost:5000/alignscore_large";
/// NeMo's threshold.
const THRESHOLD: f64 = 0.5;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    fallback_to_self_check: bool,
    /// Older NeMo configs name the method here; the flow decides it.
    #[serde(rename = "provider")]
    _provider: Option<String>,
    /// streamguard extension: the call's time limit, in seconds.
    timeout: Option<f64>,
}

#[derive(Debug)]
pub struct AlignScore {
    flow: String,
    url: reqwest::Url,
    client: ServiceClient,
    fallback: Option<Arc<dyn Rail>>,
}

pub(super) fn build(
    ctx: &mut BuildContext<'_>,
    flow: &FlowRef,
    _: Stage,
) -> Result<Arc<dyn Rail>, ConfigError> {
    let rail: Arc<dyn Rail> = build_scorer(ctx, flow)?;
    Ok(rail)
}

/// The AlignScore client of `flow` (`execute alignscore_check_facts` uses its score).
pub(super) fn build_scorer(
    ctx: &mut BuildContext<'_>,
    flow: &FlowRef,
) -> Result<Arc<AlignScore>, ConfigError> {
    let stage = Stage::Output;
    let s: Settings = ctx.config.rail_settings("fact_checking")?;
    let file = ctx.config.rail_settings_file("fact_checking");
    let endpoint = s
        .parameters
        .get("endpoint")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_ENDPOINT);
    let url = settings::http_url(
        endpoint,
        &file,
        "rails.config.fact_checking.parameters.endpoint",
    )?;
    let timeout = settings::timeout(s.timeout, &file, "fact_checking")?;
    let client = settings::client("AlignScore", flow, timeout)?;
    let fallback = match s.fallback_to_self_check {
        true => Some(judge::build(ctx, &SELF_CHECK_FACTS, flow, stage)?),
        false => None,
    };
    Ok(Arc::new(AlignScore {
        flow: flow.name.clone(),
        url,
        client,
        fallback,
    }))
}

impl AlignScore {
    async fn score(&self, evidence: &str, claim: &str) -> Result<f64, RailError> {
        let body = json!({"evidence": evidence, "claim": claim});
        let answer = self.client.post_json(&self.url, &body, None).await?;
        answer
            .get("alignscore")
            .and_then(Value::as_f64)
            .ok_or_else(|| self.client.invalid("the answer has no `alignscore` number"))
    }

    /// NeMo's `alignscore_check_facts`: the score of the answer against the
    /// chunks (`1.0` without chunks), else the `self check facts` judge's
    /// `1.0` / `0.0` when the server fails and the fallback is on.
    pub(super) async fn accuracy(&self, input: RailInput<'_>) -> Result<f64, RailError> {
        let evidence = input
            .context
            .and_then(|c| c.get("relevant_chunks"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        if evidence.is_empty() {
            return Ok(1.0);
        }
        match (self.score(evidence, input.text()).await, &self.fallback) {
            (Ok(score), _) => Ok(score),
            (Err(e), Some(judge)) => {
                tracing::warn!(flow = %self.flow, error = %e.0, "AlignScore failed; the self check facts judge decides");
                Ok(match judge.check(input).await? {
                    Verdict::Allow => 1.0,
                    _ => 0.0,
                })
            }
            (Err(e), None) => Err(e),
        }
    }

    async fn decide(&self, input: RailInput<'_>) -> Result<Verdict, RailError> {
        let context = input.context;
        let checks = context
            .and_then(|c| c.get("check_facts"))
            .is_some_and(|v| v == &Value::Bool(true));
        let evidence = context
            .and_then(|c| c.get("relevant_chunks"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !checks || evidence.is_empty() {
            return Ok(Verdict::Allow);
        }
        let score = match (self.score(evidence, input.text()).await, &self.fallback) {
            (Ok(score), _) => score,
            (Err(e), Some(judge)) => {
                tracing::warn!(flow = %self.flow, error = %e.0, "AlignScore failed; the self check facts judge decides");
                return judge.check(input).await;
            }
            (Err(e), None) => return Err(e),
        };
        Ok(if score < THRESHOLD {
            Verdict::Block {
                reason: format!("AlignScore {score} is below {THRESHOLD}"),
            }
        } else {
            Verdict::Allow
        })
    }
}

impl Rail for AlignScore {
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

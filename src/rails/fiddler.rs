//! Fiddler Guardrails (`fiddler user safety`, `fiddler bot safety`,
//! `fiddler bot faithfulness`), as NeMo's library calls them:
//! `POST {fiddler_endpoint}/v3/guardrails/ftl-safety` with
//! `{"data": {"input": text}}` (the highest `fdl_*` score at or above
//! `safety_threshold`, default 0.1, blocks) and
//! `…/ftl-response-faithfulness` with `{"data": {"context", "response"}}`
//! (`fdl_faithful_score` at or below `faithfulness_threshold`, default 0.05,
//! blocks); the bearer key is `FIDDLER_API_KEY` (or `api_key`, a streamguard
//! extension). Without a knowledge base the faithfulness context is empty.
//! Where NeMo lets text through when the call fails, streamguard fails the rail.

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

/// The scores of Fiddler's safety model NeMo reads.
const SAFETY_SCORES: [&str; 11] = [
    "fdl_harmful",
    "fdl_violent",
    "fdl_unethical",
    "fdl_illegal",
    "fdl_sexual",
    "fdl_racist",
    "fdl_jailbreaking",
    "fdl_harassing",
    "fdl_hateful",
    "fdl_sexist",
    "fdl_roleplaying",
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    fiddler_endpoint: Option<String>,
    safety_threshold: Option<f64>,
    faithfulness_threshold: Option<f64>,
    api_key: Option<String>,
    timeout: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Check {
    Safety(f64),
    Faithfulness(f64),
}

#[derive(Debug)]
pub struct Fiddler {
    flow: String,
    stage: Stage,
    check: Check,
    url: reqwest::Url,
    key: Option<String>,
    client: ServiceClient,
}

fn build(
    ctx: &mut BuildContext<'_>,
    flow: &FlowRef,
    stage: Stage,
    faithfulness: bool,
) -> Result<Arc<dyn Rail>, ConfigError> {
    let config = ctx.config;
    let s: Settings = config.rail_settings("fiddler")?;
    let file = config.rail_settings_file("fiddler");
    let base = s
        .fiddler_endpoint
        .unwrap_or_else(|| "http://localhost:8080/process/text".into());
    let route = if faithfulness {
        "ftl-response-faithfulness"
    } else {
        "ftl-safety"
    };
    let endpoint = format!("{base}/v3/guardrails/{route}");
    let url = settings::http_url(&endpoint, &file, "rails.config.fiddler.fiddler_endpoint")?;
    let check = if faithfulness {
        Check::Faithfulness(s.faithfulness_threshold.unwrap_or(0.05))
    } else {
        Check::Safety(s.safety_threshold.unwrap_or(0.1))
    };
    let key = s
        .api_key
        .or_else(|| std::env::var("FIDDLER_API_KEY").ok())
        .filter(|k| !k.is_empty());
    if key.is_none() {
        settings::warn_unset(ctx, flow, "FIDDLER_API_KEY");
    }
    let timeout = settings::timeout(s.timeout, &file, "fiddler")?;
    let client = settings::client("Fiddler Guardrails", flow, timeout)?;
    Ok(Arc::new(Fiddler {
        flow: flow.name.clone(),
        stage,
        check,
        url,
        key,
        client,
    }))
}

pub(super) fn safety(
    ctx: &mut BuildContext<'_>,
    flow: &FlowRef,
    stage: Stage,
) -> Result<Arc<dyn Rail>, ConfigError> {
    build(ctx, flow, stage, false)
}

pub(super) fn faithfulness(
    ctx: &mut BuildContext<'_>,
    flow: &FlowRef,
    stage: Stage,
) -> Result<Arc<dyn Rail>, ConfigError> {
    build(ctx, flow, stage, true)
}

fn score(answer: &Value, key: &str, default: f64) -> f64 {
    answer.get(key).and_then(Value::as_f64).unwrap_or(default)
}

impl Fiddler {
    async fn decide(&self, text: &str, chunks: &str) -> Result<Verdict, RailError> {
        let key = settings::key(
            self.key.as_deref(),
            &self.flow,
            "Fiddler Guardrails",
            "FIDDLER_API_KEY",
        )?;
        let data = match self.check {
            Check::Safety(_) => json!({"input": text}),
            Check::Faithfulness(_) => json!({"context": chunks, "response": text}),
        };
        let answer = self
            .client
            .post_json(&self.url, &json!({"data": data}), Some(key))
            .await?;
        Ok(match self.check {
            Check::Safety(threshold) => {
                let (name, top) = SAFETY_SCORES
                    .iter()
                    .map(|k| (*k, score(&answer, k, 0.0)))
                    .fold(
                        ("", f64::MIN),
                        |best, s| if s.1 > best.1 { s } else { best },
                    );
                if top >= threshold {
                    Verdict::Block {
                        reason: format!(
                            "Fiddler safety score {name} = {top:.3} (threshold {threshold})"
                        ),
                    }
                } else {
                    Verdict::Allow
                }
            }
            Check::Faithfulness(threshold) => {
                let s = score(&answer, "fdl_faithful_score", 1.0);
                if s <= threshold {
                    Verdict::Block {
                        reason: format!(
                            "Fiddler faithfulness score {s:.3} (threshold {threshold})"
                        ),
                    }
                } else {
                    Verdict::Allow
                }
            }
        })
    }
}

impl Rail for Fiddler {
    fn flow(&self) -> &str {
        &self.flow
    }

    fn check<'a>(&'a self, input: RailInput<'a>) -> BoxFuture<'a, Result<Verdict, RailError>> {
        let chunks = input
            .context
            .and_then(|c| c.get("relevant_chunks"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        self.decide(settings::text(self.stage, &input), chunks)
            .boxed()
    }
}

//! ActiveFence (`activefence moderation on input` / `output`, `activefence
//! moderation on input detailed`), as NeMo's library calls it: `POST
//! https://apis.activefence.com/sync/v3/content/text` with `af-api-key:
//! ACTIVEFENCE_API_KEY`, `af-source: nemo-guardrails` and `{"text", "content_id":
//! "ng-<uuid>"}`. The simple flows block when the highest `risk_score` of the
//! answer's `violations` is above 0.7; the detailed one blocks on the first of
//! NeMo's per-violation thresholds exceeded, answering that violation's
//! refusal. `rails.config.activefence` (`server_endpoint`, `api_key`,
//! `timeout`) is a streamguard extension: NeMo has no settings for it.

use std::sync::Arc;

use futures_util::{FutureExt, future::BoxFuture};
use serde::Deserialize;
use serde_json::json;

use super::{
    Rail, RailError, RailInput, Stage, Verdict,
    catalog::BuildContext,
    service::{ServiceClient, settings},
};
use crate::config::{ConfigError, FlowRef};

const DEFAULT_ENDPOINT: &str = "https://apis.activefence.com/sync/v3/content/text";

/// The simple flows' threshold on the highest risk score.
const MAX_RISK: f64 = 0.7;

const ABUSIVE: &str = "I will not engage in any abusive or harmful behavior.";

/// NeMo's detailed rules, in its order: violation, threshold, what the
/// violation's block says, and its refusal.
const DETAILED: &[(&str, f64, &str, &str)] = &[
    (
        "abusive_or_harmful.harassment_or_bullying",
        0.8,
        "harassment or bullying",
        ABUSIVE,
    ),
    ("abusive_or_harmful.profanity", 0.7, "profanity", ABUSIVE),
    (
        "abusive_or_harmful.hate_speech",
        0.6,
        "hate speech",
        ABUSIVE,
    ),
    (
        "abusive_or_harmful.child_grooming",
        0.4,
        "child grooming",
        ABUSIVE,
    ),
    (
        "abusive_or_harmful.general_violence",
        0.7,
        "general violence",
        ABUSIVE,
    ),
    (
        "self_harm.general",
        0.8,
        "self harm",
        "I will not engage in any self harm behavior.",
    ),
    (
        "adult_content.general",
        0.3,
        "adult content",
        "I will not engage with inappropriate content.",
    ),
    (
        "privacy_violation.pii",
        0.8,
        "privacy violation",
        "I will not engage with sensitive content.",
    ),
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    server_endpoint: Option<String>,
    api_key: Option<String>,
    timeout: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct Answer {
    violations: Vec<Violation>,
}

#[derive(Debug, Deserialize)]
struct Violation {
    violation_type: String,
    risk_score: f64,
}

#[derive(Debug)]
pub struct ActiveFence {
    flow: String,
    stage: Stage,
    detailed: bool,
    url: reqwest::Url,
    key: Option<String>,
    client: ServiceClient,
}

pub(super) fn simple(
    ctx: &mut BuildContext<'_>,
    flow: &FlowRef,
    stage: Stage,
) -> Result<Arc<dyn Rail>, ConfigError> {
    build(ctx, flow, stage, false)
}

pub(super) fn detailed(
    ctx: &mut BuildContext<'_>,
    flow: &FlowRef,
    stage: Stage,
) -> Result<Arc<dyn Rail>, ConfigError> {
    build(ctx, flow, stage, true)
}

fn build(
    ctx: &mut BuildContext<'_>,
    flow: &FlowRef,
    stage: Stage,
    detailed: bool,
) -> Result<Arc<dyn Rail>, ConfigError> {
    let s: Settings = ctx.config.rail_settings("activefence")?;
    let file = ctx.config.rail_settings_file("activefence");
    let url = s.server_endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT);
    let url = settings::http_url(url, &file, "rails.config.activefence.server_endpoint")?;
    let key = settings::or_env(s.api_key, "ACTIVEFENCE_API_KEY");
    if key.is_none() {
        settings::warn_unset(ctx, flow, "ACTIVEFENCE_API_KEY");
    }
    let timeout = settings::timeout(s.timeout, &file, "activefence")?;
    let client = settings::client("ActiveFence", flow, timeout)?;
    Ok(Arc::new(ActiveFence {
        flow: flow.name.clone(),
        stage,
        detailed,
        url,
        key,
        client,
    }))
}

/// The verdict on the answer's violations.
fn judge(violations: &[Violation], detailed: bool) -> Verdict {
    let score = |kind: &str| {
        violations
            .iter()
            .filter(|v| v.violation_type == kind)
            .map(|v| v.risk_score)
            .next_back()
            .unwrap_or(0.0)
    };
    if detailed {
        return DETAILED
            .iter()
            .find(|(kind, threshold, ..)| score(kind) > *threshold)
            .map_or(Verdict::Allow, |(kind, _, what, _)| Verdict::Block {
                reason: format!(
                    "ActiveFence moderation triggered. The {what} risk score exceeded the threshold. ({kind})"
                ),
            });
    }
    let max = violations
        .iter()
        .map(|v| v.risk_score)
        .fold(0.0_f64, f64::max);
    if max > MAX_RISK {
        Verdict::Block {
            reason:
                "ActiveFence moderation triggered. The maximum risk score exceeded the threshold."
                    .into(),
        }
    } else {
        Verdict::Allow
    }
}

impl ActiveFence {
    async fn decide(&self, input: RailInput<'_>) -> Result<Verdict, RailError> {
        let key = settings::key(
            self.key.as_deref(),
            &self.flow,
            "ActiveFence",
            "ACTIVEFENCE_API_KEY",
        )?;
        let mut random = [0u8; 16];
        fastrand::fill(&mut random);
        let id = uuid::Builder::from_random_bytes(random).into_uuid();
        let body = json!({
            "text": settings::text(self.stage, &input),
            "content_id": format!("ng-{id}"),
        });
        let headers = [("af-api-key", key), ("af-source", "nemo-guardrails")];
        let answer = self.client.post(&self.url, &body, None, &headers).await?;
        let bytes = self.client.success(&self.url, answer, Some(key))?;
        let answer: Answer = self.client.json(&bytes)?;
        Ok(judge(&answer.violations, self.detailed))
    }
}

impl Rail for ActiveFence {
    fn flow(&self) -> &str {
        &self.flow
    }

    fn check<'a>(&'a self, input: RailInput<'a>) -> BoxFuture<'a, Result<Verdict, RailError>> {
        self.decide(input).boxed()
    }

    fn refusal(&self, _input: &RailInput<'_>, reason: &str) -> Option<String> {
        if !self.detailed {
            return None;
        }
        DETAILED
            .iter()
            .find(|(kind, ..)| reason.ends_with(&format!("({kind})")))
            .map(|(.., refusal)| (*refusal).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(kind: &str, risk_score: f64) -> Violation {
        Violation {
            violation_type: kind.into(),
            risk_score,
        }
    }

    #[test]
    fn simple_blocks_on_the_highest_score_detailed_on_the_first_rule_exceeded() {
        let found = [
            v("abusive_or_harmful.profanity", 0.65),
            v("adult_content.general", 0.5),
        ];
        assert_eq!(judge(&found, false), Verdict::Allow);
        let Verdict::Block { reason } = judge(&found, true) else {
            panic!("adult content is over its 0.3");
        };
        assert!(reason.ends_with("(adult_content.general)"), "{reason}");
        assert!(matches!(
            judge(&[v("x", 0.71)], false),
            Verdict::Block { .. }
        ));
        assert_eq!(judge(&[v("x", 0.99)], true), Verdict::Allow);
    }
}

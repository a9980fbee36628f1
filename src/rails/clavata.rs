//! Clavata (`clavata check input` / `output`), as NeMo's library calls it:
//! `POST {server_endpoint}/v1/jobs` with the bearer `CLAVATA_API_KEY` and
//! `{"content_data": [{"text": …}], "policy_id": …, "wait_for_completion":
//! true}`, retried on 429 up to three attempts. The stage's `policy` is a
//! policy id or an alias of `policies` (checked at load, where NeMo checks at
//! the first call). The completed job's report blocks when the policy matched
//! (`OUTCOME_TRUE`), or, with `labels`, when any (or, with
//! `label_match_logic: ALL`, all) of them matched.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures_util::{FutureExt, future::BoxFuture};
use serde::Deserialize;
use serde_json::json;

use super::{
    Rail, RailError, RailInput, Stage, Verdict,
    catalog::BuildContext,
    service::{ServiceClient, settings},
};
use crate::config::{ConfigError, FlowRef};

const DEFAULT_ENDPOINT: &str = "https://gateway.app.clavata.ai:8443";

/// Attempts of a call the service refused as too many (429), as NeMo's client.
const RATE_LIMIT_ATTEMPTS: u32 = 3;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    server_endpoint: Option<String>,
    #[serde(default)]
    policies: BTreeMap<String, String>,
    #[serde(default)]
    label_match_logic: Logic,
    input: Option<Options>,
    output: Option<Options>,
    /// streamguard extension: the key itself (else CLAVATA_API_KEY).
    api_key: Option<String>,
    /// streamguard extension: the call's time limit, in seconds.
    timeout: Option<f64>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
enum Logic {
    #[default]
    #[serde(rename = "ANY")]
    Any,
    #[serde(rename = "ALL")]
    All,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    policy: String,
    #[serde(default)]
    labels: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct JobAnswer {
    job: Job,
}

#[derive(Debug, Deserialize)]
struct Job {
    status: String,
    #[serde(default)]
    results: Vec<JobResult>,
}

#[derive(Debug, Deserialize)]
struct JobResult {
    report: Report,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    result: String,
    #[serde(default)]
    section_evaluation_reports: Vec<Section>,
}

#[derive(Debug, Deserialize)]
struct Section {
    name: String,
    result: String,
}

#[derive(Debug)]
pub struct Clavata {
    flow: String,
    stage: Stage,
    url: reqwest::Url,
    policy_id: String,
    labels: Vec<String>,
    logic: Logic,
    key: Option<String>,
    client: ServiceClient,
}

/// The policy and labels a Colang 2 flow call passes (labels as a list).
fn flow_options(flow: &FlowRef, policy: &str) -> Result<Options, ConfigError> {
    let labels = match flow.args.get("labels").map(|l| l.trim()) {
        None | Some("" | "\"\"") => Vec::new(),
        Some(list) => serde_json::from_str(list).map_err(|_| {
            ConfigError::invalid(
                &flow.source,
                &flow.key,
                format!(
                    "`{}`: the labels are a list of strings, e.g. [\"Hate Speech\"]",
                    flow.name
                ),
            )
        })?,
    };
    Ok(Options {
        policy: policy.to_string(),
        labels,
    })
}

pub(super) fn build(
    ctx: &mut BuildContext<'_>,
    flow: &FlowRef,
    stage: Stage,
) -> Result<Arc<dyn Rail>, ConfigError> {
    let s: Settings = ctx.config.rail_settings("clavata")?;
    let file = ctx.config.rail_settings_file("clavata");
    let options = match stage {
        Stage::Input | Stage::ToolInput => s.input,
        Stage::Output | Stage::Retrieval | Stage::ToolOutput => s.output,
    };
    // Colang 2's `clavata check for ($text, "policy", ["label"])` gives them itself.
    let options = match flow.args.get("policy") {
        Some(policy) => Some(flow_options(flow, policy)?),
        None => options,
    };
    let Some(options) = options else {
        return Err(ConfigError::invalid(
            &file,
            format!("rails.config.clavata.{stage}.policy"),
            format!("is required by `{}`", flow.name),
        ));
    };
    let policy_id = policy_id(&options.policy, &s.policies).map_err(|m| {
        match flow.args.contains_key("policy") {
            true => ConfigError::invalid(
                &flow.source,
                &flow.key,
                format!("`{}`: the policy {m}", flow.name),
            ),
            false => ConfigError::invalid(&file, format!("rails.config.clavata.{stage}.policy"), m),
        }
    })?;
    let endpoint = s.server_endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT);
    let url = format!("{}/v1/jobs", endpoint.trim_end_matches('/'));
    let url = settings::http_url(&url, &file, "rails.config.clavata.server_endpoint")?;
    let key = settings::or_env(s.api_key, "CLAVATA_API_KEY");
    if key.is_none() {
        settings::warn_unset(ctx, flow, "CLAVATA_API_KEY");
    }
    let timeout = settings::timeout(s.timeout, &file, "clavata")?;
    let client = settings::client("Clavata", flow, timeout)?;
    Ok(Arc::new(Clavata {
        flow: flow.name.clone(),
        stage,
        url,
        policy_id,
        labels: options.labels,
        logic: s.label_match_logic,
        key,
        client,
    }))
}

/// The policy's id: `policy` itself when it is a UUID, else its alias's.
fn policy_id(policy: &str, aliases: &BTreeMap<String, String>) -> Result<String, String> {
    if let Ok(id) = uuid::Uuid::parse_str(policy) {
        return Ok(id.hyphenated().to_string());
    }
    let id = aliases.get(policy).ok_or_else(|| {
        format!("`{policy}` is neither a policy id nor an alias of `rails.config.clavata.policies`")
    })?;
    uuid::Uuid::parse_str(id)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| format!("the id of policy alias `{policy}` is not a UUID"))
}

impl Clavata {
    async fn job(&self, text: &str) -> Result<Job, RailError> {
        let key = settings::key(
            self.key.as_deref(),
            &self.flow,
            "Clavata",
            "CLAVATA_API_KEY",
        )?;
        let body = json!({
            "content_data": [{"text": text}],
            "policy_id": self.policy_id,
            "wait_for_completion": true,
        });
        let mut attempt = 1;
        let answer = loop {
            let answer = self.client.post(&self.url, &body, Some(key), &[]).await?;
            if answer.status != reqwest::StatusCode::TOO_MANY_REQUESTS
                || attempt == RATE_LIMIT_ATTEMPTS
            {
                break answer;
            }
            tokio::time::sleep(Duration::from_millis(100 << (attempt - 1))).await;
            attempt += 1;
        };
        let bytes = self.client.success(&self.url, answer, Some(key))?;
        let answer: JobAnswer = self.client.json(&bytes)?;
        Ok(answer.job)
    }

    async fn decide(&self, input: RailInput<'_>) -> Result<Verdict, RailError> {
        let job = self.job(settings::text(self.stage, &input)).await?;
        let report = match job.status.as_str() {
            "JOB_STATUS_COMPLETED" => match job.results.as_slice() {
                [one] => &one.report,
                all => {
                    return Err(self
                        .client
                        .invalid(format!("expected 1 report for the job, got {}", all.len())));
                }
            },
            "JOB_STATUS_FAILED" | "JOB_STATUS_CANCELED" => {
                return Err(self.client.invalid("the policy evaluation failed"));
            }
            other => {
                return Err(self.client.invalid(format!(
                    "the policy evaluation is not complete (status {other})"
                )));
            }
        };
        if report.result == "OUTCOME_FAILED" {
            return Err(self.client.invalid("the policy evaluation failed"));
        }
        let matched = if self.labels.is_empty() {
            report.result == "OUTCOME_TRUE"
        } else {
            let hit = |label: &String| {
                report
                    .section_evaluation_reports
                    .iter()
                    .any(|s| &s.name == label && s.result == "OUTCOME_TRUE")
            };
            match self.logic {
                Logic::Any => self.labels.iter().any(hit),
                Logic::All => self.labels.iter().all(hit),
            }
        };
        Ok(if matched {
            Verdict::Block {
                reason: "matched the Clavata policy".into(),
            }
        } else {
            Verdict::Allow
        })
    }
}

impl Rail for Clavata {
    fn flow(&self) -> &str {
        &self.flow
    }

    fn check<'a>(&'a self, input: RailInput<'a>) -> BoxFuture<'a, Result<Verdict, RailError>> {
        self.decide(input).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_is_an_id_or_an_alias_of_one() {
        let aliases = BTreeMap::from([
            (
                "Threats".to_string(),
                "00000000-0000-0000-0000-00000000000A".to_string(),
            ),
            ("Bad".to_string(), "nope".to_string()),
        ]);
        assert_eq!(
            policy_id("Threats", &aliases).unwrap(),
            "00000000-0000-0000-0000-00000000000a"
        );
        assert_eq!(
            policy_id("{11111111-2222-3333-4444-555555555555}", &aliases).unwrap(),
            "11111111-2222-3333-4444-555555555555"
        );
        assert!(
            policy_id("Bad", &aliases)
                .unwrap_err()
                .contains("not a UUID")
        );
        assert!(
            policy_id("Other", &aliases)
                .unwrap_err()
                .contains("neither")
        );
    }
}

//! AutoAlign (`autoalign check input` / `output`, `autoalign factcheck
//! output`), as NeMo's library calls it. The checks POST `{"prompt", "config",
//! "multi_language"}` to `parameters.endpoint` with `x-api-key:
//! AUTOALIGN_API_KEY`; `config` is NeMo's default guardrail set with the
//! stage's `guardrails_config` switched on (`mode: DETECT`) and merged in.
//! The answer is JSON lines, one per guardrail: a guarded one blocks (the
//! reason names them, "Toxicity in text, Jailbreak attempt detected."), a
//! guarded `pii` rewrites the text to its redaction. The fact check POSTs the
//! answer as a document to `parameters.fact_check_endpoint` and blocks below
//! NeMo's threshold 0.5. `autoalign groundedness output` (only when the
//! turn's dialog flow set `$check_facts`) POSTs `{"prompt": the answer,
//! "documents": the knowledge base's chunks, "config"}` to
//! `parameters.groundedness_check_endpoint` and blocks when the
//! `groundedness_checker` line's "Factcheck Score: x" is below 0.5.

use std::{collections::BTreeSet, sync::Arc};

use futures_util::{FutureExt, future::BoxFuture};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{
    Rail, RailError, RailInput, Stage, Verdict,
    catalog::{BuildContext, check_rewrite},
    service::{ANSWER_UNKNOWN, ServiceClient, settings},
};
use crate::config::{ConfigError, FlowRef};

/// NeMo's names for what each guardrail found.
const FOUND: &[(&str, &str)] = &[
    (
        "confidential_info_detection",
        "Confidential Information violation",
    ),
    ("gender_bias_detection", "Stereotypical bias"),
    ("harm_detection", "Potential harm to human"),
    ("toxicity_detection", "Toxicity in text"),
    ("tonal_detection", "Negative tone"),
    ("racial_bias_detection", "Stereotypical bias"),
    ("jailbreak_detection", "Jailbreak attempt"),
    ("intellectual_property", "Intellectual property"),
];

/// NeMo's default PII types, sent when the config names none.
const PII_TYPES: &[&str] = &[
    "[BANK ACCOUNT NUMBER]",
    "[CREDIT CARD NUMBER]",
    "[DATE OF BIRTH]",
    "[DATE]",
    "[DRIVER LICENSE NUMBER]",
    "[EMAIL ADDRESS]",
    "[RACE/ETHNICITY]",
    "[GENDER]",
    "[IP ADDRESS]",
    "[LOCATION]",
    "[MONEY]",
    "[ORGANIZATION]",
    "[PASSPORT NUMBER]",
    "[PASSWORD]",
    "[PERSON NAME]",
    "[PHONE NUMBER]",
    "[PROFESSION]",
    "[SOCIAL SECURITY NUMBER]",
    "[USERNAME]",
    "[SECRET_KEY]",
    "[TRANSACTION_ID]",
    "[RELIGION]",
];

/// What a guarded `pii` answer starts with before the redacted text.
const PII_PREFIX_CHARS: usize = "PII redacted text: ".len();

/// NeMo's fact-check threshold (set in its flows).
const FACT_THRESHOLD: f64 = 0.5;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    parameters: Parameters,
    #[serde(default)]
    input: Options,
    #[serde(default)]
    output: Options,
    /// streamguard extension: the key itself (else AUTOALIGN_API_KEY).
    api_key: Option<String>,
    /// streamguard extension: the call's time limit, in seconds.
    timeout: Option<f64>,
}

/// `parameters`: NeMo reads these keys of a free mapping.
#[derive(Debug, Default, Deserialize)]
struct Parameters {
    endpoint: Option<String>,
    fact_check_endpoint: Option<String>,
    groundedness_check_endpoint: Option<String>,
    #[serde(default)]
    multi_language: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    guardrails_config: Option<Map<String, Value>>,
}

#[derive(Debug)]
enum Check {
    /// The guardrails, with the request's `config` built once.
    Guardrails { config: Value },
    /// The fact checker, with the output stage's `guardrails_config`.
    Facts { config: Value },
    /// The groundedness checker over the knowledge base's chunks.
    Groundedness { config: Value },
}

#[derive(Debug)]
pub struct AutoAlign {
    flow: String,
    stage: Stage,
    check: Check,
    url: reqwest::Url,
    key: Option<String>,
    multi_language: bool,
    client: ServiceClient,
}

struct Common {
    settings: Settings,
    file: std::path::PathBuf,
    key: Option<String>,
    client: ServiceClient,
}

fn common(ctx: &mut BuildContext<'_>, flow: &FlowRef) -> Result<Common, ConfigError> {
    let s: Settings = ctx.config.rail_settings("autoalign")?;
    let file = ctx.config.rail_settings_file("autoalign");
    let key = settings::or_env(s.api_key.clone(), "AUTOALIGN_API_KEY");
    if key.is_none() {
        settings::warn_unset(ctx, flow, "AUTOALIGN_API_KEY");
    }
    let timeout = settings::timeout(s.timeout, &file, "autoalign")?;
    let client = settings::client("AutoAlign", flow, timeout)?;
    Ok(Common {
        settings: s,
        file,
        key,
        client,
    })
}

fn endpoint(
    value: Option<&str>,
    file: &std::path::Path,
    name: &str,
    flow: &FlowRef,
) -> Result<reqwest::Url, ConfigError> {
    let key = format!("rails.config.autoalign.parameters.{name}");
    let text = value.filter(|v| !v.trim().is_empty()).ok_or_else(|| {
        ConfigError::invalid(file, &key, format!("is required by `{}`", flow.name))
    })?;
    settings::http_url(text, file, &key)
}

/// `autoalign check input` / `output`.
pub(super) fn check(
    ctx: &mut BuildContext<'_>,
    flow: &FlowRef,
    stage: Stage,
) -> Result<Arc<dyn Rail>, ConfigError> {
    let c = common(ctx, flow)?;
    let url = endpoint(
        c.settings.parameters.endpoint.as_deref(),
        &c.file,
        "endpoint",
        flow,
    )?;
    let options = match stage {
        Stage::Input | Stage::ToolInput => &c.settings.input,
        Stage::Output | Stage::Retrieval | Stage::ToolOutput => &c.settings.output,
    };
    let key = format!("rails.config.autoalign.{stage}.guardrails_config");
    let tasks = options
        .guardrails_config
        .as_ref()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ConfigError::invalid(
                &c.file,
                &key,
                format!("names no guardrails for `{}`", flow.name),
            )
        })?;
    let config = request_config(tasks).map_err(|m| ConfigError::invalid(&c.file, &key, m))?;
    if tasks.contains_key("pii") {
        let rails = match stage {
            Stage::Input | Stage::ToolInput => ctx.config.input(),
            Stage::Output | Stage::ToolOutput => ctx.config.output(),
            Stage::Retrieval => ctx.config.retrieval(),
        };
        check_rewrite(ctx.config, stage, rails, flow)?;
    }
    Ok(Arc::new(AutoAlign {
        flow: flow.name.clone(),
        stage,
        check: Check::Guardrails { config },
        url,
        key: c.key,
        multi_language: c.settings.parameters.multi_language,
        client: c.client,
    }))
}

/// `autoalign factcheck output`.
pub(super) fn factcheck(
    ctx: &mut BuildContext<'_>,
    flow: &FlowRef,
    stage: Stage,
) -> Result<Arc<dyn Rail>, ConfigError> {
    let c = common(ctx, flow)?;
    let p = &c.settings.parameters;
    let url = endpoint(
        p.fact_check_endpoint.as_deref(),
        &c.file,
        "fact_check_endpoint",
        flow,
    )?;
    let config = c
        .settings
        .output
        .guardrails_config
        .clone()
        .map_or(Value::Null, Value::Object);
    Ok(Arc::new(AutoAlign {
        flow: flow.name.clone(),
        stage,
        check: Check::Facts { config },
        url,
        key: c.key,
        multi_language: p.multi_language,
        client: c.client,
    }))
}

/// `autoalign groundedness output`.
pub(super) fn groundedness(
    ctx: &mut BuildContext<'_>,
    flow: &FlowRef,
    stage: Stage,
) -> Result<Arc<dyn Rail>, ConfigError> {
    let c = common(ctx, flow)?;
    let p = &c.settings.parameters;
    let url = endpoint(
        p.groundedness_check_endpoint.as_deref(),
        &c.file,
        "groundedness_check_endpoint",
        flow,
    )?;
    // NeMo's default, with the output stage's `guardrails_config` over it.
    let mut config = json!({"groundedness_checker": {"verify_response": false}});
    if let (Some(map), Some(over)) = (config.as_object_mut(), &c.settings.output.guardrails_config)
    {
        map.extend(over.clone());
    }
    Ok(Arc::new(AutoAlign {
        flow: flow.name.clone(),
        stage,
        check: Check::Groundedness { config },
        url,
        key: c.key,
        multi_language: p.multi_language,
        client: c.client,
    }))
}

/// NeMo's default guardrail set (all off) with `tasks` switched on and merged in.
fn request_config(tasks: &Map<String, Value>) -> Result<Value, String> {
    let mut config = Map::new();
    config.insert(
        "pii".into(),
        json!({"mode": "OFF", "mask": false, "enabled_types": PII_TYPES}),
    );
    for (task, _) in FOUND {
        config.insert((*task).into(), json!({"mode": "OFF"}));
    }
    for (task, value) in tasks {
        let set = match value {
            Value::Null => None,
            Value::Object(m) => Some(m).filter(|m| !m.is_empty()),
            _ => return Err(format!("`{task}` must be a mapping of its settings")),
        };
        // NeMo skips an empty `factcheck` (and fails on any other unknown one).
        if task == "factcheck" && set.is_none() {
            continue;
        }
        let Some(Value::Object(entry)) = config.get_mut(task) else {
            let mut known: Vec<&str> = FOUND.iter().map(|f| f.0).collect();
            known.push("pii");
            known.sort_unstable();
            return Err(format!(
                "unknown AutoAlign guardrail `{task}` (known: {})",
                known.join(", ")
            ));
        };
        entry.insert("mode".into(), json!("DETECT"));
        for (k, v) in set.into_iter().flatten() {
            entry.insert(k.clone(), v.clone());
        }
    }
    Ok(Value::Object(config))
}

#[derive(Serialize)]
struct GuardrailRequest<'a> {
    prompt: &'a str,
    config: &'a Value,
    multi_language: bool,
}

#[derive(Deserialize)]
struct Line {
    task: String,
    guarded: bool,
    #[serde(default)]
    response: Option<String>,
}

/// What the guardrails' answer lines mean.
fn read_lines(body: &[u8]) -> Result<Verdict, String> {
    let mut found = BTreeSet::new();
    let mut redacted = None;
    for line in body.split(|b| *b == b'\n') {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        let line: Line = serde_json::from_slice(line)
            .map_err(|e| format!("an answer line is not a guardrail result: {e}"))?;
        if !line.guarded {
            continue;
        }
        if line.task == "pii" {
            let text = line.response.unwrap_or_default();
            redacted = Some(text.chars().skip(PII_PREFIX_CHARS).collect::<String>());
            continue;
        }
        let name = FOUND
            .iter()
            .find(|f| f.0 == line.task)
            .map_or(line.task.as_str(), |f| f.1);
        found.insert(name.to_string());
    }
    if !found.is_empty() {
        let names: Vec<String> = found.into_iter().collect();
        return Ok(Verdict::Block {
            reason: format!("AutoAlign: {} detected.", names.join(", ")),
        });
    }
    Ok(match redacted {
        Some(text) => Verdict::Modify {
            text,
            reason: "PII redacted by AutoAlign".into(),
        },
        None => Verdict::Allow,
    })
}

impl AutoAlign {
    async fn decide(&self, input: RailInput<'_>) -> Result<Verdict, RailError> {
        let key = settings::key(
            self.key.as_deref(),
            &self.flow,
            "AutoAlign",
            "AUTOALIGN_API_KEY",
        )?;
        let headers = [("x-api-key", key)];
        match &self.check {
            Check::Guardrails { config } => {
                let body = GuardrailRequest {
                    prompt: settings::text(self.stage, &input),
                    config,
                    multi_language: self.multi_language,
                };
                let answer = self.client.post(&self.url, &body, None, &headers).await?;
                let bytes = self.client.success(&self.url, answer, Some(key))?;
                read_lines(&bytes).map_err(|m| self.client.invalid(m))
            }
            Check::Groundedness { config } => self.grounded(input, config, key).await,
            Check::Facts { config } => {
                let body = json!({
                    "labels": {"session_id": "nemo", "api_key": key},
                    "content_moderation_docs": [{
                        "content": input.text(),
                        "type": "text_content",
                        "file_name": "HighlightedText.txt",
                    }],
                    "user_query": input.user_input,
                    "config": config,
                    "multi_language": self.multi_language,
                });
                let answer = self.client.post(&self.url, &body, None, &headers).await?;
                let bytes = self.client.success(&self.url, answer, Some(key))?;
                let value: Value = self.client.json(&bytes)?;
                let score = value["all_overall_fact_scores"][0]
                    .as_f64()
                    .ok_or_else(|| {
                        self.client
                            .invalid("the answer has no `all_overall_fact_scores` number")
                    })?;
                Ok(if score < FACT_THRESHOLD {
                    Verdict::Block {
                        reason: format!(
                            "AutoAlign fact-check score {score} is below {FACT_THRESHOLD}"
                        ),
                    }
                } else {
                    Verdict::Allow
                })
            }
        }
    }
}

impl AutoAlign {
    /// The groundedness check, when the dialog flow asked for it.
    async fn grounded(
        &self,
        input: RailInput<'_>,
        config: &Value,
        key: &str,
    ) -> Result<Verdict, RailError> {
        let context = input.context;
        let checks = context
            .and_then(|c| c.get("check_facts"))
            .is_some_and(|v| v == &Value::Bool(true));
        if !checks {
            return Ok(Verdict::Allow);
        }
        let documents = context
            .and_then(|c| c.get("relevant_chunks_sep"))
            .cloned()
            .unwrap_or_else(|| json!([]));
        let body = json!({"prompt": input.text(), "documents": documents, "config": config});
        let answer = self
            .client
            .post(&self.url, &body, None, &[("x-api-key", key)])
            .await?;
        let bytes = self.client.success(&self.url, answer, Some(key))?;
        let score = groundedness_score(&bytes).map_err(|m| self.client.invalid(m))?;
        Ok(if score < FACT_THRESHOLD {
            Verdict::Block {
                reason: format!("AutoAlign groundedness score {score} is below {FACT_THRESHOLD}"),
            }
        } else {
            Verdict::Allow
        })
    }
}

/// The "Factcheck Score: x" of the `groundedness_checker` line (1.0 without one, as NeMo).
fn groundedness_score(bytes: &[u8]) -> Result<f64, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the answer is not UTF-8".to_string())?;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value =
            serde_json::from_str(line).map_err(|_| "an answer line is not JSON".to_string())?;
        let score = v["response"]
            .as_str()
            .and_then(|r| r.strip_prefix("Factcheck Score: "))
            .filter(|_| v["task"] == "groundedness_checker");
        if let Some(score) = score {
            return score.trim().parse().map_err(|_| {
                format!(
                    "`Factcheck Score: {}` is not a number",
                    crate::error::echo(score)
                )
            });
        }
    }
    Ok(1.0)
}

impl Rail for AutoAlign {
    fn flow(&self) -> &str {
        &self.flow
    }

    fn check<'a>(&'a self, input: RailInput<'a>) -> BoxFuture<'a, Result<Verdict, RailError>> {
        self.decide(input).boxed()
    }

    fn refusal(&self, _input: &RailInput<'_>, _reason: &str) -> Option<String> {
        match self.check {
            Check::Facts { .. } | Check::Groundedness { .. } => Some(ANSWER_UNKNOWN.to_string()),
            Check::Guardrails { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_config_switches_on_what_the_stage_names() {
        let tasks: Map<String, Value> = serde_json::from_value(json!({
            "pii": {"enabled_types": ["[EMAIL ADDRESS]"]},
            "toxicity_detection": {},
            "factcheck": {}
        }))
        .unwrap();
        let c = request_config(&tasks).unwrap();
        assert_eq!(
            c["pii"],
            json!({"mode": "DETECT", "mask": false, "enabled_types": ["[EMAIL ADDRESS]"]})
        );
        assert_eq!(c["toxicity_detection"], json!({"mode": "DETECT"}));
        assert_eq!(c["harm_detection"], json!({"mode": "OFF"}));
        assert!(c.get("factcheck").is_none());
        let bad: Map<String, Value> = serde_json::from_value(json!({"fact_checker": {}})).unwrap();
        assert!(
            request_config(&bad)
                .unwrap_err()
                .contains("unknown AutoAlign guardrail `fact_checker`")
        );
    }

    #[test]
    fn answer_lines_block_on_any_guarded_check_and_rewrite_on_pii() {
        let lines = b"{\"task\": \"harm_detection\", \"guarded\": false, \"response\": \"\"}\n\
            {\"task\": \"pii\", \"guarded\": true, \"response\": \"PII redacted text: Hi [PERSON NAME]\"}\n";
        assert_eq!(
            read_lines(lines).unwrap(),
            Verdict::Modify {
                text: "Hi [PERSON NAME]".into(),
                reason: "PII redacted by AutoAlign".into()
            }
        );
        let lines = b"{\"task\": \"toxicity_detection\", \"guarded\": true, \"response\": \"\", \"output_data\": [\"x\"]}\n\n\
            {\"task\": \"jailbreak_detection\", \"guarded\": true, \"response\": \"\"}\n\
            {\"task\": \"pii\", \"guarded\": true, \"response\": \"PII redacted text: x\"}";
        assert_eq!(
            read_lines(lines).unwrap(),
            Verdict::Block {
                reason: "AutoAlign: Jailbreak attempt, Toxicity in text detected.".into()
            }
        );
        assert!(read_lines(b"not json\n").is_err());
    }
}

//! GLiNER PII detection (`gliner detect pii on input` / `output`, `gliner
//! mask pii on input` / `output`), as NeMo's library calls it. NeMo's GLiNER
//! server (`…/v1/extract`) gets `{"text", "threshold", "chunk_length",
//! "overlap", "flat_ner", "labels"}`; a GLiNER PII NIM (an endpoint ending in
//! `/v1/chat/completions`, NeMo's default) gets the text as a chat message
//! with the same settings and answers the entities as JSON in the message.
//! Any entity found blocks; masking replaces each span (character offsets,
//! from the last) with its upper-cased label in brackets. The stage's
//! `entities` are the labels asked for (none: the server's defaults).

use std::{cmp::Reverse, sync::Arc};

use futures_util::{FutureExt, future::BoxFuture};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    Rail, RailError, RailInput, Stage, Verdict,
    catalog::BuildContext,
    service::{ServiceClient, settings},
};
use crate::config::{ConfigError, FlowRef};

const DEFAULT_ENDPOINT: &str = "http://localhost:8000/v1/chat/completions";
const DEFAULT_MODEL: &str = "nvidia/gliner-pii";

/// The most entities one answer may mask.
const MAX_ENTITIES: usize = 4096;

/// The longest masked text (a bound on what odd spans can grow to).
const MAX_MASKED: usize = 2 << 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default = "default_endpoint")]
    server_endpoint: String,
    #[serde(default = "default_model")]
    model: String,
    api_key_env_var: Option<String>,
    #[serde(default = "default_threshold")]
    threshold: f64,
    #[serde(default = "default_chunk_length")]
    chunk_length: i64,
    #[serde(default = "default_overlap")]
    overlap: i64,
    #[serde(default)]
    flat_ner: bool,
    #[serde(default)]
    input: Entities,
    #[serde(default)]
    output: Entities,
    #[serde(default)]
    retrieval: Entities,
    /// streamguard extension: the call's time limit, in seconds.
    timeout: Option<f64>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            server_endpoint: default_endpoint(),
            model: default_model(),
            api_key_env_var: None,
            threshold: default_threshold(),
            chunk_length: default_chunk_length(),
            overlap: default_overlap(),
            flat_ner: false,
            input: Entities::default(),
            output: Entities::default(),
            retrieval: Entities::default(),
            timeout: None,
        }
    }
}

fn default_endpoint() -> String {
    DEFAULT_ENDPOINT.into()
}
fn default_model() -> String {
    DEFAULT_MODEL.into()
}
fn default_threshold() -> f64 {
    0.5
}
fn default_chunk_length() -> i64 {
    384
}
fn default_overlap() -> i64 {
    128
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entities {
    #[serde(default)]
    entities: Vec<String>,
}

/// The request's settings, as NeMo sends them to either server.
#[derive(Debug, Serialize)]
struct Options {
    threshold: f64,
    chunk_length: i64,
    overlap: i64,
    flat_ner: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    labels: Vec<String>,
}

#[derive(Serialize)]
struct ExtractRequest<'a> {
    text: &'a str,
    #[serde(flatten)]
    options: &'a Options,
}

#[derive(Serialize)]
struct NimRequest<'a> {
    model: &'a str,
    messages: [NimMessage<'a>; 1],
    #[serde(flatten)]
    options: &'a Options,
}

#[derive(Serialize)]
struct NimMessage<'a> {
    role: &'static str,
    content: &'a str,
}

/// One entity, in either server's names.
#[derive(Debug, Deserialize)]
struct Span {
    #[serde(default, alias = "label")]
    suggested_label: String,
    #[serde(default, alias = "start")]
    start_position: i64,
    #[serde(default, alias = "end")]
    end_position: i64,
}

#[derive(Debug, Deserialize)]
struct Found {
    #[serde(default)]
    entities: Vec<Span>,
    total_entities: Option<i64>,
}

#[derive(Debug)]
pub struct Gliner {
    flow: String,
    stage: Stage,
    mask: bool,
    url: reqwest::Url,
    nim_model: Option<String>,
    key: Option<String>,
    options: Options,
    client: ServiceClient,
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

fn build(
    ctx: &mut BuildContext<'_>,
    flow: &FlowRef,
    stage: Stage,
    mask: bool,
) -> Result<Arc<dyn Rail>, ConfigError> {
    let s: Settings = ctx.config.rail_settings("gliner")?;
    let file = ctx.config.rail_settings_file("gliner");
    let bad = |k: &str, m: &str| ConfigError::invalid(&file, format!("rails.config.gliner.{k}"), m);
    if !(0.0..=1.0).contains(&s.threshold) {
        return Err(bad("threshold", "must be between 0 and 1"));
    }
    if s.chunk_length <= 0 {
        return Err(bad("chunk_length", "must be positive"));
    }
    if s.overlap < 0 || s.overlap >= s.chunk_length {
        return Err(bad(
            "overlap",
            "must be at least 0 and less than chunk_length",
        ));
    }
    let url = settings::http_url(
        &s.server_endpoint,
        &file,
        "rails.config.gliner.server_endpoint",
    )?;
    let nim = url
        .path()
        .trim_end_matches('/')
        .ends_with("/v1/chat/completions");
    let key = s.api_key_env_var.as_deref().and_then(|var| {
        let key = settings::or_env(None, var);
        if key.is_none() {
            settings::warn_unset(ctx, flow, var);
        }
        key
    });
    let labels = match stage {
        Stage::Input | Stage::ToolInput => s.input.entities,
        Stage::Output | Stage::ToolOutput => s.output.entities,
        Stage::Retrieval => s.retrieval.entities,
    };
    let timeout = settings::timeout(s.timeout, &file, "gliner")?;
    let client = settings::client("GLiNER", flow, timeout)?;
    Ok(Arc::new(Gliner {
        flow: flow.name.clone(),
        stage,
        mask,
        url,
        nim_model: nim.then_some(s.model),
        key,
        options: Options {
            threshold: s.threshold,
            chunk_length: s.chunk_length,
            overlap: s.overlap,
            flat_ner: s.flat_ner,
            labels,
        },
        client,
    }))
}

impl Gliner {
    async fn found(&self, text: &str) -> Result<Found, RailError> {
        let key = self.key.as_deref();
        let options = &self.options;
        let answer: Value = match &self.nim_model {
            Some(model) => {
                let body = NimRequest {
                    model,
                    messages: [NimMessage {
                        role: "user",
                        content: text,
                    }],
                    options,
                };
                self.client.post_json(&self.url, &body, key).await?
            }
            None => {
                let body = ExtractRequest { text, options };
                self.client.post_json(&self.url, &body, key).await?
            }
        };
        if self.nim_model.is_none() {
            return serde_json::from_value(answer).map_err(|e| {
                self.client
                    .invalid(format!("the answer is not GLiNER's: {e}"))
            });
        }
        let content = answer["choices"][0]["message"]["content"]
            .as_str()
            .ok_or_else(|| self.client.invalid("the answer has no message content"))?;
        let mut found: Found = serde_json::from_str(content).map_err(|e| {
            self.client
                .invalid(format!("the message is not GLiNER's JSON: {e}"))
        })?;
        found.total_entities = Some(found.total_entities.unwrap_or(found.entities.len() as i64));
        Ok(found)
    }

    async fn decide(&self, input: RailInput<'_>) -> Result<Verdict, RailError> {
        let text = settings::text(self.stage, &input);
        let found = self.found(text).await?;
        if !self.mask {
            let total = found.total_entities.unwrap_or(0);
            return Ok(if total > 0 {
                Verdict::Block {
                    reason: format!("GLiNER found {total} PII entities"),
                }
            } else {
                Verdict::Allow
            });
        }
        let masked = mask_spans(text, found.entities).map_err(|m| self.client.invalid(m))?;
        Ok(if masked == text {
            Verdict::Allow
        } else {
            Verdict::Modify {
                text: masked,
                reason: "PII masked by GLiNER".into(),
            }
        })
    }
}

/// The byte offset of character `n` of `s` (its end past the last).
fn byte_at(s: &str, n: i64) -> usize {
    let n = usize::try_from(n).unwrap_or(0);
    s.char_indices().nth(n).map_or(s.len(), |(i, _)| i)
}

/// Replaces each span, from the last start backwards as NeMo does, with `[LABEL]`.
fn mask_spans(text: &str, mut spans: Vec<Span>) -> Result<String, String> {
    if spans.len() > MAX_ENTITIES {
        return Err(format!("the answer has more than {MAX_ENTITIES} entities"));
    }
    spans.sort_by_key(|s| Reverse(s.start_position));
    let mut masked = text.to_string();
    for span in spans {
        let start = byte_at(&masked, span.start_position);
        let end = byte_at(&masked, span.end_position);
        let label = span.suggested_label.to_uppercase();
        masked = format!("{}[{label}]{}", &masked[..start], &masked[end..]);
        if masked.len() > MAX_MASKED {
            return Err("the entities' spans do not fit the text".into());
        }
    }
    Ok(masked)
}

impl Rail for Gliner {
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

    fn span(label: &str, start: i64, end: i64) -> Span {
        Span {
            suggested_label: label.into(),
            start_position: start,
            end_position: end,
        }
    }

    #[test]
    fn spans_are_character_offsets_replaced_from_the_last() {
        let text = "Écris à Jane Doe: jane@example.com";
        let spans = vec![span("email", 18, 34), span("first_name", 8, 12)];
        assert_eq!(
            mask_spans(text, spans).unwrap(),
            "Écris à [FIRST_NAME] Doe: [EMAIL]"
        );
        // Offsets past the end clamp, as Python's slices do.
        assert_eq!(mask_spans("ab", vec![span("x", 1, 99)]).unwrap(), "a[X]");
        let many = (0..=MAX_ENTITIES as i64).map(|i| span("x", i, i)).collect();
        assert!(mask_spans("a", many).is_err());
    }
}

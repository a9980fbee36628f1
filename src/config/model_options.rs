//! The options of a model entry beside its provider settings: how it is
//! called (chat or text completions) and how its reasoning trace is read.

use std::path::Path;

use serde::Deserialize;

use super::{ConfigError, EngineKind};

/// How a model is called: chat completions, or text completions
/// (`/v1/completions` with one prompt string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelMode {
    Chat,
    Text,
}

impl ModelMode {
    /// The mode of a model entry: its `mode` key, else NeMo's rule (its
    /// LangChain initializer sends OpenAI's `gpt-3.5-turbo-instruct` to the
    /// text-completion client) extended to OpenAI's other completion-only
    /// models (`davinci-002`, `babbage-002`, `text-davinci-*`).
    pub(super) fn of(mode: Option<&str>, engine: EngineKind, model: &str) -> Option<Self> {
        match mode {
            Some("chat") => Some(ModelMode::Chat),
            Some("text") => Some(ModelMode::Text),
            Some(_) => None,
            None => {
                let completion_only = model.contains("gpt-3.5-turbo-instruct")
                    || [
                        "davinci",
                        "babbage",
                        "text-davinci",
                        "text-babbage",
                        "text-curie",
                    ]
                    .iter()
                    .any(|p| model.starts_with(p));
                let openai = matches!(engine, EngineKind::OpenAi | EngineKind::Azure);
                Some(if openai && completion_only {
                    ModelMode::Text
                } else {
                    ModelMode::Chat
                })
            }
        }
    }
}

/// `models[].reasoning_config`: how a reasoning model's trace is written
/// into its text, and whether it is taken out of the answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasoningConfig {
    /// Take the trace out of the answer (default true).
    #[serde(default = "yes", alias = "remove_thinking_traces")]
    pub remove_reasoning_traces: bool,
    #[serde(default = "think_start")]
    pub start_token: String,
    #[serde(default = "think_end")]
    pub end_token: String,
}

fn yes() -> bool {
    true
}
fn think_start() -> String {
    "<think>".into()
}
fn think_end() -> String {
    "</think>".into()
}

impl Default for ReasoningConfig {
    fn default() -> Self {
        ReasoningConfig {
            remove_reasoning_traces: true,
            start_token: think_start(),
            end_token: think_end(),
        }
    }
}

impl ReasoningConfig {
    /// `reasoning_config` of the entry at `key` (its defaults when absent).
    pub(super) fn parse(
        value: Option<serde_yaml::Value>,
        file: &Path,
        key: &str,
    ) -> Result<Self, ConfigError> {
        let Some(v) = value else {
            return Ok(ReasoningConfig::default());
        };
        let at = || format!("{key}.reasoning_config");
        let r: ReasoningConfig = serde_yaml::from_value(v)
            .map_err(|e| ConfigError::invalid(file, at(), e.to_string()))?;
        if r.start_token.is_empty() || r.end_token.is_empty() {
            return Err(ConfigError::invalid(
                file,
                at(),
                "start_token and end_token must not be empty",
            ));
        }
        Ok(r)
    }
}

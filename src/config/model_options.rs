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

/// `models[].cache`: answers of a judge model kept in memory, keyed by the
/// prompt (whitespace-normalized), as NeMo caches them (main and embeddings
/// models are never cached).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    #[serde(default)]
    pub enabled: bool,
    /// Entries kept (NeMo's default 50,000); the least recently used go first.
    #[serde(default = "default_maxsize")]
    pub maxsize: usize,
    /// streamguard extension: seconds an entry stays valid (none: until evicted).
    #[serde(default)]
    pub ttl: Option<f64>,
    #[serde(default)]
    pub stats: CacheStats,
}

/// `models[].cache.stats`: log the cache's counters every `log_interval` seconds.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheStats {
    #[serde(default)]
    pub enabled: bool,
    pub log_interval: Option<f64>,
}

fn default_maxsize() -> usize {
    50_000
}

/// The most entries one model's cache may hold.
const MAX_CACHE_ENTRIES: usize = 1_000_000;

impl CacheConfig {
    /// `cache` of the entry at `key`; `None` when absent or disabled.
    pub(super) fn parse(
        value: Option<serde_yaml::Value>,
        kind: &str,
        file: &Path,
        key: &str,
    ) -> Result<Option<Self>, ConfigError> {
        let Some(v) = value else {
            return Ok(None);
        };
        let at = || format!("{key}.cache");
        let c: CacheConfig = serde_yaml::from_value(v)
            .map_err(|e| ConfigError::invalid(file, at(), e.to_string()))?;
        if !c.enabled {
            return Ok(None);
        }
        if c.maxsize == 0 || c.maxsize > MAX_CACHE_ENTRIES {
            return Err(ConfigError::invalid(
                file,
                format!("{}.maxsize", at()),
                format!("must be between 1 and {MAX_CACHE_ENTRIES}"),
            ));
        }
        let positive = |v: Option<f64>| v.is_none_or(|s| s.is_finite() && s > 0.0);
        if !positive(c.ttl) || !positive(c.stats.log_interval) {
            return Err(ConfigError::invalid(
                file,
                at(),
                "ttl and stats.log_interval must be positive numbers of seconds",
            ));
        }
        if kind == "main" || kind == "embeddings" {
            return Err(ConfigError::invalid(
                file,
                at(),
                format!("only judge models are cached, not a `type: {kind}` model (as in NeMo)"),
            ));
        }
        Ok(Some(c))
    }
}

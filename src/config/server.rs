//! What a server adds to every config it serves: a default main model for
//! rails-only configs, and what a config without a `streaming` key means.
//! Given on the command line or in a server config file:
//!
//! ```yaml
//! # streamguard serve --server-config server.yml
//! models:
//!   - type: main
//!     engine: openai
//!     model: gpt-4o-mini
//!     parameters: { base_url: "http://vllm:8000/v1" }
//! streaming_default: on
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ConfigError, ModelConfig, raw::RawModel};

/// A validated server config file.
#[derive(Debug, Clone, Default)]
pub struct ServerFile {
    /// The default main model (its `models:` entry with `type: main`).
    pub main_model: Option<ModelConfig>,
    /// `streaming_default`: a config without a `streaming` key streams.
    pub streaming_default: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServerFile {
    #[serde(default)]
    models: Vec<RawModel>,
    streaming_default: Option<OnOff>,
}

/// `on`/`off` (YAML 1.1 reads an unquoted `on` as a bool; both are taken).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OnOff {
    Bool(bool),
    Word(String),
}

impl ServerFile {
    /// Reads and validates `path`; errors name the file and the key.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let raw: RawServerFile = super::yaml::parse(path, &text)?;
        let mut main_model = None;
        for (i, m) in raw.models.into_iter().enumerate() {
            let key = format!("models[{i}]");
            if m.kind != "main" {
                return Err(ConfigError::invalid(
                    path,
                    format!("{key}.type"),
                    "a server config file gives only the default main model (`type: main`)",
                ));
            }
            if main_model.is_some() {
                return Err(ConfigError::invalid(
                    path,
                    key,
                    "a second `type: main` model",
                ));
            }
            main_model = Some(ModelConfig::from_raw(m, path, key)?);
        }
        let streaming_default = match raw.streaming_default {
            None => None,
            Some(OnOff::Bool(b)) => Some(b),
            Some(OnOff::Word(w)) => Some(parse_on_off(&w).ok_or_else(|| {
                ConfigError::invalid(path, "streaming_default", "must be `on` or `off`")
            })?),
        };
        Ok(ServerFile {
            main_model,
            streaming_default,
        })
    }
}

/// `on`/`off` (also `true`/`false`, `yes`/`no`).
pub fn parse_on_off(word: &str) -> Option<bool> {
    match word.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" => Some(true),
        "off" | "false" | "no" => Some(false),
        _ => None,
    }
}

/// The default main model given by command-line flags (`--main-model`,
/// `--main-engine`, `--main-base-url`, `--main-api-key-env`).
pub fn main_model_from_flags(
    engine: &str,
    model: &str,
    base_url: Option<&str>,
    api_key_env_var: Option<&str>,
) -> Result<ModelConfig, ConfigError> {
    let mut parameters = serde_yaml::Mapping::new();
    if let Some(url) = base_url {
        parameters.insert("base_url".into(), url.into());
    }
    let raw = RawModel {
        kind: "main".into(),
        engine: Some(engine.into()),
        model: Some(model.into()),
        parameters,
        api_key_env_var: api_key_env_var.map(str::to_string),
        streaming: None,
        mode: None,
        reasoning_config: None,
        cache: None,
    };
    ModelConfig::from_raw(raw, &PathBuf::from("--main-model"), "main model".into())
}

/// The main model a request names for a config that has none and a server
/// without a default one: `engine: openai` with that name, as NeMo's server
/// does (`OPENAI_BASE_URL` and `OPENAI_API_KEY` apply).
pub fn request_main_model(model: &str) -> Result<ModelConfig, ConfigError> {
    main_model_from_flags("openai", model, None, None)
        .map_err(|e| ConfigError::invalid("request", "model", e.to_string()))
}

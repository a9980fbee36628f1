//! `knowledge_base:` in config.yml: where the documents are (`folder`,
//! `kb` only) and the embeddings model that indexes them
//! (`embedding_search_provider: {name: default, parameters: {embedding_engine,
//! embedding_model}}`), a model of its own apart from the dialog's.

use std::path::Path;

use serde::Deserialize;

use super::{ConfigError, ModelConfig, raw::RawModel};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    folder: Option<String>,
    embedding_search_provider: Option<Provider>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Provider {
    #[serde(default = "default_name")]
    name: String,
    #[serde(default)]
    parameters: serde_yaml::Mapping,
    #[serde(rename = "cache")]
    _cache: Option<serde_yaml::Value>,
}

fn default_name() -> String {
    "default".into()
}

/// The knowledge base's own embeddings model, if the key names one.
pub(super) fn parse(
    value: serde_yaml::Value,
    file: &Path,
) -> Result<Option<ModelConfig>, ConfigError> {
    let raw: Raw = serde_yaml::from_value(value)
        .map_err(|e| ConfigError::invalid(file, "knowledge_base", e.to_string()))?;
    if let Some(folder) = raw.folder.filter(|f| f.trim_end_matches('/') != "kb") {
        return Err(ConfigError::invalid(
            file,
            "knowledge_base.folder",
            format!("`{folder}`: streamguard reads the knowledge base from `kb/` (NeMo's default)"),
        ));
    }
    let Some(p) = raw.embedding_search_provider else {
        return Ok(None);
    };
    if p.name != "default" {
        return Err(ConfigError::invalid(
            file,
            "knowledge_base.embedding_search_provider.name",
            format!(
                "`{}` is an embedding search provider registered in Python; streamguard's is `default` \
                 (an embeddings model: `parameters.embedding_engine` and `embedding_model`)",
                p.name
            ),
        ));
    }
    let text = |k: &str| {
        p.parameters
            .get(k)
            .and_then(serde_yaml::Value::as_str)
            .map(str::to_string)
    };
    let (Some(engine), Some(model)) = (text("embedding_engine"), text("embedding_model")) else {
        return Ok(None);
    };
    let mut parameters = serde_yaml::Mapping::new();
    for (k, v) in &p.parameters {
        if !matches!(k.as_str(), Some("embedding_engine" | "embedding_model")) {
            parameters.insert(k.clone(), v.clone());
        }
    }
    let raw = RawModel {
        kind: "embeddings".into(),
        engine: Some(engine),
        model: Some(model),
        parameters,
        api_key_env_var: None,
        streaming: None,
        mode: None,
        reasoning_config: None,
        cache: None,
    };
    ModelConfig::from_raw(raw, file, "knowledge_base.embedding_search_provider".into()).map(Some)
}

//! Strict serde types for one NeMo Guardrails config file.
//!
//! Every file of a config directory is parsed on its own into [`RawFile`], so
//! that a syntax or type error names the file, the key path and the line.
//! [`super::load`] then validates the parts into a runtime [`super::Config`].

use serde::Deserialize;
use serde_yaml::Value;

/// One `*.yml` / `*.yaml` file. Keys NeMo knows but streamguard does not
/// support are accepted here so that validation can refuse them by name.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    #[serde(default)]
    pub models: Vec<RawModel>,
    #[serde(default)]
    pub instructions: Vec<RawInstruction>,
    #[serde(default)]
    pub prompts: Vec<RawPrompt>,
    pub rails: Option<RawRails>,
    pub streaming: Option<bool>,
    pub lowest_temperature: Option<f64>,
    pub enable_rails_exceptions: Option<bool>,
    pub sample_conversation: Option<String>,
    pub colang_version: Option<String>,
    /// Free-form data (prompt templates see it as `config.custom_data`).
    pub custom_data: Option<Value>,
    /// NeMo features streamguard refuses (validation names them).
    pub knowledge_base: Option<Value>,
    pub core: Option<Value>,
    pub actions_server_url: Option<String>,
    pub embedding_search_provider: Option<Value>,
    pub passthrough: Option<Value>,
    pub import_paths: Option<Value>,
    pub tracing: Option<Value>,
    pub user_messages: Option<Value>,
    pub bot_messages: Option<Value>,
    pub prompting_mode: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    #[serde(rename = "type")]
    pub kind: String,
    pub engine: Option<String>,
    pub model: Option<String>,
    #[serde(default)]
    pub parameters: serde_yaml::Mapping,
    pub api_key_env_var: Option<String>,
    /// streamguard extension: `false` declares that the endpoint cannot stream.
    pub streaming: Option<bool>,
    pub mode: Option<String>,
    pub reasoning_config: Option<Value>,
    pub cache: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInstruction {
    #[serde(rename = "type")]
    pub kind: String,
    pub content: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrompt {
    pub task: String,
    pub content: Option<String>,
    pub messages: Option<Vec<RawPromptMessage>>,
    pub models: Option<Vec<String>>,
    pub max_tokens: Option<u32>,
    pub output_parser: Option<String>,
    pub stop: Option<Vec<String>>,
    pub mode: Option<String>,
    /// Accepted for compatibility; has no effect in streamguard.
    #[allow(dead_code)]
    pub max_length: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPromptMessage {
    #[serde(rename = "type")]
    pub kind: String,
    pub content: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRails {
    pub input: Option<RawFlows>,
    pub output: Option<RawOutputRails>,
    pub dialog: Option<Value>,
    pub retrieval: Option<RawRetrieval>,
    pub tool_input: Option<RawFlows>,
    pub tool_output: Option<RawFlows>,
    pub actions: Option<Value>,
    /// Per-rail settings (`rails.config.<rail>`), validated by the rail that owns them.
    pub config: Option<serde_yaml::Mapping>,
}

/// `rails.retrieval`: the flows run on the knowledge base's chunks.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetrieval {
    #[serde(default)]
    pub flows: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFlows {
    #[serde(default)]
    pub flows: Vec<String>,
    pub parallel: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutputRails {
    #[serde(default)]
    pub flows: Vec<String>,
    pub parallel: Option<bool>,
    pub streaming: Option<RawOutputStreaming>,
    pub apply_to_reasoning_traces: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutputStreaming {
    pub enabled: Option<bool>,
    pub chunk_size: Option<usize>,
    pub context_size: Option<usize>,
    pub stream_first: Option<bool>,
}

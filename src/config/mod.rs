//! Loading NeMo Guardrails-format config directories.
//!
//! Two phases, as NeMo users expect and as strict services do: every
//! `*.yml`/`*.yaml` file is parsed on its own into strict serde types
//! (`raw`), then the parts are merged and validated into a [`Config`] whose
//! errors name the file and the key. A config *root* is either one config
//! directory (it has a `config.yml`: NeMo's single-config mode) or a directory
//! of config sub-directories, one per config id.
//!
//! This module validates what is its own (keys, types, values) and calls
//! nothing above it: rail flows are checked when the rails are built, and
//! Colang 1.0 files are kept as text for the dialog module to parse. A
//! Colang 2 guardrail config's rail flows are configuration (the lists of
//! `rails.input.flows` / `rails.output.flows` written in Colang), so they are
//! read here ([`colang2`]).

pub(crate) mod colang2;
mod engine;
mod knowledge;
mod load;
mod model;
mod model_options;
mod raw;
mod server;
mod tracing;
mod validate;
pub mod yaml;

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
};

pub use load::{Loaded, from_yaml, is_single_config, load, load_each, load_root};
pub use model::{
    CacheConfig, CacheStats, EngineKind, ModelConfig, ModelMode, OpenAiSettings, ProviderSettings,
    ReasoningConfig, ScriptedAnswer, ScriptedResponse, ScriptedSettings, ScriptedTask, Timeouts,
};
pub use server::{ServerFile, main_model_from_flags, parse_on_off, request_main_model};
pub use tracing::{DEFAULT_TRACE_FILE, TracingConfig};

/// Why a config could not be loaded. Every variant names where to look.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file or directory could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid YAML or does not have the expected shape. The
    /// message carries the key path and the line.
    #[error("{}: {message}", file.display())]
    Parse { file: PathBuf, message: String },
    /// A key has a value streamguard cannot use.
    #[error("{}: `{key}`: {message}", file.display())]
    Invalid {
        file: PathBuf,
        key: String,
        message: String,
    },
    /// Several configs under one root failed.
    #[error("{}", ListDisplay(.0))]
    Many(Vec<ConfigError>),
}

struct ListDisplay<'a>(&'a [ConfigError]);

impl fmt::Display for ListDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    pub(crate) fn invalid(
        file: impl Into<PathBuf>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            file: file.into(),
            key: key.into(),
            message: message.into(),
        }
    }

    /// The individual errors (one, or each of [`ConfigError::Many`]).
    pub fn errors(&self) -> Vec<&ConfigError> {
        match self {
            ConfigError::Many(all) => all.iter().flat_map(|e| e.errors()).collect(),
            other => vec![other],
        }
    }

    /// One error for a list of them (`None` when the list is empty).
    pub(crate) fn from_list(mut errors: Vec<ConfigError>) -> Option<Self> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(ConfigError::Many(errors)),
        }
    }
}

/// A prompt template's body.
#[derive(Debug, Clone)]
pub enum PromptBody {
    /// `content`: one user message.
    Content(String),
    /// `messages`: `(type, content)` pairs (`system`, `user`, `assistant`/`bot`).
    Messages(Vec<(String, String)>),
}

/// One validated `prompts` entry.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub task: String,
    pub body: PromptBody,
    /// Restricts the prompt to these models (`engine/model` or `model`).
    pub models: Option<Vec<String>>,
    pub max_tokens: Option<u32>,
    pub output_parser: Option<String>,
    pub stop: Vec<String>,
    /// `mode`: the prompting mode the prompt is for (`standard` by default).
    pub mode: String,
    pub source: PathBuf,
    pub key: String,
}

/// A rail flow as written in `rails.*.flows`, e.g.
/// `content safety check input $model=content_safety`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRef {
    /// The flow name without arguments.
    pub name: String,
    /// `$key=value` arguments.
    pub args: BTreeMap<String, String>,
    pub source: PathBuf,
    pub key: String,
}

impl fmt::Display for FlowRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// `rails.dialog`: how Colang dialog flows call the LLM.
#[derive(Debug, Clone, PartialEq)]
pub struct DialogSettings {
    /// `single_call.enabled`: one LLM call writes both intents and the message.
    pub single_call: bool,
    /// `single_call.fallback_to_multiple_calls` (default true).
    pub fallback_to_multiple_calls: bool,
    /// `user_messages.embeddings_only`: the user intent is the closest
    /// example's, by embeddings, without an LLM call.
    pub embeddings_only: bool,
    /// `user_messages.embeddings_only_similarity_threshold` (0 to 1).
    pub embeddings_only_similarity_threshold: Option<f64>,
    /// `user_messages.embeddings_only_fallback_intent`.
    pub embeddings_only_fallback_intent: Option<String>,
}

impl Default for DialogSettings {
    fn default() -> Self {
        DialogSettings {
            single_call: false,
            fallback_to_multiple_calls: true,
            embeddings_only: false,
            embeddings_only_similarity_threshold: None,
            embeddings_only_fallback_intent: None,
        }
    }
}

/// `rails.output.streaming`: output rails on chunk windows while streaming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputStreaming {
    pub enabled: bool,
    /// Chunks per checked window (at least 1).
    pub chunk_size: usize,
    /// Earlier chunks repeated in front of each window as context.
    pub context_size: usize,
    /// Send chunks before their window is checked.
    pub stream_first: bool,
}

impl Default for OutputStreaming {
    fn default() -> Self {
        OutputStreaming {
            enabled: false,
            chunk_size: 200,
            context_size: 50,
            stream_first: true,
        }
    }
}

/// One rail stage (`rails.input`, `rails.output` or `rails.retrieval`).
#[derive(Debug, Clone, Default)]
pub struct RailStage {
    pub flows: Vec<FlowRef>,
    /// Run the flows concurrently; the first block wins.
    pub parallel: bool,
}

/// A text file of a config: a `*.co` file (the dialog module parses it) or
/// a knowledge-base document (`kb/*.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

/// A validated guardrails configuration. Its invariants (exactly one main
/// model, a window of at least one chunk, …) hold behind the accessors.
#[derive(Debug, Clone)]
pub struct Config {
    id: String,
    path: PathBuf,
    /// The main model first, when the config has one.
    models: Vec<ModelConfig>,
    instructions: BTreeMap<String, String>,
    prompts: Vec<Prompt>,
    input: RailStage,
    output: RailStage,
    /// `rails.retrieval` (never parallel).
    retrieval: RailStage,
    /// `rails.tool_input` and `rails.tool_output`.
    tools: [RailStage; 2],
    output_streaming: OutputStreaming,
    /// `rails.config.<name>`, with the file it came from.
    rail_settings: BTreeMap<String, (PathBuf, serde_yaml::Value)>,
    streaming: Option<bool>,
    lowest_temperature: f64,
    enable_rails_exceptions: bool,
    /// `actions_server_url`: NeMo's actions server, for `execute` of custom actions.
    actions_server_url: Option<reqwest::Url>,
    /// `knowledge_base.embedding_search_provider`: the knowledge base's own embeddings model.
    kb_embeddings: Option<ModelConfig>,
    sample_conversation: Option<String>,
    colang: Vec<SourceFile>,
    /// `colang_version: "2.x"`: the `*.co` files are Colang 2 guardrail
    /// flows, read into the rails (not a Colang 1.0 dialog).
    colang_2: bool,
    /// The rails its `flow input rails` / `flow output rails` call.
    colang_2_rails: (Vec<FlowRef>, Vec<FlowRef>),
    /// Its `flow main` is Colang 2's interaction language, not only
    /// `activate llm continuation`.
    colang_2_interaction: bool,
    /// Its `flow input rails` / `flow output rails` is more than library
    /// rail calls: the interaction runtime runs it (on each user message /
    /// each bot message).
    colang_2_rail_flows: (bool, bool),
    /// `*.py` files (custom actions, `config.py`).
    action_files: Vec<PathBuf>,
    /// `kb/*.md` documents.
    kb: Vec<SourceFile>,
    dialog: DialogSettings,
    /// `rails.output.apply_to_reasoning_traces`.
    apply_to_reasoning_traces: bool,
    /// `prompting_mode` (`standard` by default).
    prompting_mode: String,
    /// `custom_data` (`Null` when absent).
    custom_data: serde_yaml::Value,
    /// `tracing`, when enabled.
    tracing: Option<TracingConfig>,
    /// The parsed files, per composed config, to compose this one with others.
    parts: Vec<validate::Parts>,
}

impl Config {
    /// `configs` composed in order into one config (NeMo's `config_ids`),
    /// with the id `a+b+c`; see the README's composition rules.
    pub fn compose(configs: &[&Config]) -> Result<Config, ConfigError> {
        let Some(first) = configs.first() else {
            return Err(ConfigError::invalid("request", "config_ids", "is empty"));
        };
        let id = configs.iter().map(|c| c.id()).collect::<Vec<_>>().join("+");
        let groups = configs
            .iter()
            .flat_map(|c| c.parts.iter().cloned())
            .collect();
        let mut composed = validate::validate_composed(id, first.path(), groups)?;
        for c in configs {
            composed.colang.extend(c.colang.iter().cloned());
            composed.action_files.extend(c.action_files.iter().cloned());
            composed.kb.extend(c.kb.iter().cloned());
        }
        // Each Colang 2 config's rails, after the YAML's, in config order.
        let dialog_1 = configs.iter().any(|c| !c.colang_2 && !c.colang.is_empty());
        if configs.iter().any(|c| c.colang_2_interaction) {
            return Err(ConfigError::invalid(
                "request",
                "config_ids",
                "composes a Colang 2 config whose `flow main` is the interaction language; only \
                 Colang 2 guardrail configs compose",
            ));
        }
        if composed.colang_2 && dialog_1 {
            return Err(ConfigError::invalid(
                "request",
                "config_ids",
                "composes a Colang 2 config with a Colang 1.0 dialog config, which do not run together",
            ));
        }
        for c in configs.iter().filter(|c| c.colang_2) {
            composed
                .input
                .flows
                .extend(c.colang_2_rails.0.iter().cloned());
            composed
                .output
                .flows
                .extend(c.colang_2_rails.1.iter().cloned());
        }
        Ok(composed)
    }

    /// The config id: its directory name.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The config directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every model entry, the main model first.
    pub fn models(&self) -> &[ModelConfig] {
        &self.models
    }

    /// The `type: main` model; `None` for a rails-only config (the main
    /// model then comes with the request or from the server's default).
    pub fn main_model(&self) -> Option<&ModelConfig> {
        // Validation allows at most one main model and moves it to index 0.
        self.models.first().filter(|m| m.kind() == "main")
    }

    /// This config with `model` as its main model (replacing the one it had).
    pub fn with_main_model(mut self, model: ModelConfig) -> Self {
        if self.main_model().is_some() {
            self.models.remove(0);
        }
        self.models.insert(0, model.into_main());
        self
    }

    /// The model entry of a given `type`, if any.
    pub fn model_of_type(&self, kind: &str) -> Option<&ModelConfig> {
        self.models.iter().find(|m| m.kind() == kind)
    }

    /// `instructions`, by type.
    pub fn instructions(&self) -> &BTreeMap<String, String> {
        &self.instructions
    }

    /// The instruction of a type (`general` is the main LLM's system prompt).
    pub fn instruction(&self, kind: &str) -> Option<&str> {
        self.instructions.get(kind).map(String::as_str)
    }

    pub fn prompts(&self) -> &[Prompt] {
        &self.prompts
    }

    /// `rails.input`.
    pub fn input(&self) -> &RailStage {
        &self.input
    }

    /// `rails.output`.
    pub fn output(&self) -> &RailStage {
        &self.output
    }

    /// `rails.retrieval`: run in order on the knowledge base's chunks.
    pub fn retrieval(&self) -> &RailStage {
        &self.retrieval
    }

    /// `rails.tool_input`: on the tool results the caller sends back.
    pub fn tool_input(&self) -> &RailStage {
        &self.tools[0]
    }

    /// `rails.tool_output`: on the tool calls the model asks for.
    pub fn tool_output(&self) -> &RailStage {
        &self.tools[1]
    }

    /// `rails.output.streaming`.
    pub fn output_streaming(&self) -> OutputStreaming {
        self.output_streaming
    }

    /// The `streaming` key as written (`None`: the config does not say;
    /// NeMo ≥ 0.20 dropped the key and streams without it).
    pub fn streaming(&self) -> Option<bool> {
        self.streaming
    }

    pub fn lowest_temperature(&self) -> f64 {
        self.lowest_temperature
    }

    pub fn enable_rails_exceptions(&self) -> bool {
        self.enable_rails_exceptions
    }

    /// The knowledge base's own embeddings model (`knowledge_base:`), if any.
    pub fn kb_embeddings(&self) -> Option<&ModelConfig> {
        self.kb_embeddings.as_ref()
    }

    /// `actions_server_url`: where `execute` runs the config's own actions.
    pub fn actions_server_url(&self) -> Option<&reqwest::Url> {
        self.actions_server_url.as_ref()
    }

    pub fn sample_conversation(&self) -> Option<&str> {
        self.sample_conversation.as_deref()
    }

    /// The `*.co` files, in path order.
    pub fn colang_sources(&self) -> &[SourceFile] {
        match self.colang_2 {
            // Read into the rails at load.
            true => &[],
            false => &self.colang,
        }
    }

    /// Whether the config is Colang 2 (`colang_version: "2.x"`).
    pub fn colang_2(&self) -> bool {
        self.colang_2
    }

    /// The `*.co` files of a Colang 2 config whose `flow main` is the
    /// interaction language (`user said …`), for the dialog to run.
    pub fn colang_2_interaction(&self) -> Option<&[SourceFile]> {
        (self.colang_2 && self.colang_2_interaction).then_some(self.colang.as_slice())
    }

    /// Whether the interaction runtime runs `flow input rails` / `flow
    /// output rails` itself.
    pub fn colang_2_rail_flows(&self) -> (bool, bool) {
        self.colang_2_rail_flows
    }

    /// The Python files (`actions.py`, `config.py`, …), in path order.
    pub fn action_files(&self) -> &[PathBuf] {
        &self.action_files
    }

    /// The knowledge-base documents (`kb/*.md`), in path order.
    pub fn knowledge_base(&self) -> &[SourceFile] {
        &self.kb
    }

    /// `rails.output.apply_to_reasoning_traces`: output rails check the
    /// main model's reasoning trace with the answer.
    pub fn apply_to_reasoning_traces(&self) -> bool {
        self.apply_to_reasoning_traces
    }

    /// `rails.dialog.single_call.enabled`: one LLM call per dialog turn.
    pub fn single_call(&self) -> bool {
        self.dialog.single_call
    }

    /// `custom_data`: free-form data, which prompt templates see as
    /// `config.custom_data` (`Null` when absent).
    pub fn custom_data(&self) -> &serde_yaml::Value {
        &self.custom_data
    }

    /// `tracing`, when enabled.
    pub fn tracing(&self) -> Option<&TracingConfig> {
        self.tracing.as_ref()
    }

    /// `rails.dialog`: how dialog flows call the LLM.
    pub fn dialog_settings(&self) -> &DialogSettings {
        &self.dialog
    }

    /// The prompt for `task` as NeMo picks it: of the prompts for the
    /// config's `prompting_mode` (else `standard` ones), one restricted to
    /// `model` (`engine/model` or `model`) first, else an unrestricted one
    /// (the only kind a config without a main model can pick for it).
    pub fn prompt(&self, task: &str, model: Option<&ModelConfig>) -> Option<&Prompt> {
        let modes = [self.prompting_mode.as_str(), "standard"];
        let pick = |mode: &str| {
            let name = model.map(ModelConfig::model);
            let mut fallback = None;
            for p in self
                .prompts
                .iter()
                .filter(|p| p.task == task && p.mode == mode)
            {
                match (&p.models, name) {
                    (Some(list), Some(name)) => {
                        if list.iter().any(|m| {
                            m == name
                                || m.rsplit_once('/').is_some_and(|(_, n)| n == name)
                                || name.ends_with(m.as_str())
                        }) {
                            return Some(p);
                        }
                    }
                    (Some(_), None) => {}
                    (None, _) => {
                        if fallback.is_none() {
                            fallback = Some(p);
                        }
                    }
                }
            }
            fallback
        };
        pick(modes[0]).or_else(|| (modes[0] != modes[1]).then(|| pick(modes[1])).flatten())
    }

    /// Deserializes `rails.config.<name>` (default when absent); errors name
    /// the file and the key.
    pub fn rail_settings<T: serde::de::DeserializeOwned + Default>(
        &self,
        name: &str,
    ) -> Result<T, ConfigError> {
        match self.rail_settings.get(name) {
            None => Ok(T::default()),
            Some((file, value)) => serde_yaml::from_value(value.clone()).map_err(|e| {
                ConfigError::invalid(file, format!("rails.config.{name}"), e.to_string())
            }),
        }
    }

    /// The file `rails.config.<name>` came from, else the main file.
    pub fn rail_settings_file(&self, name: &str) -> PathBuf {
        self.rail_settings
            .get(name)
            .map_or_else(|| self.main_file(), |(f, _)| f.clone())
    }

    /// The `rails.config` sections present, with their files.
    pub fn rail_settings_sections(&self) -> impl Iterator<Item = (&str, &Path)> {
        self.rail_settings
            .iter()
            .map(|(k, (f, _))| (k.as_str(), f.as_path()))
    }

    /// `path` as callers may see it: relative to the directory that holds
    /// the config (`support/config.yml`), never a server path.
    pub fn relative(&self, path: &Path) -> PathBuf {
        let base = self.path.parent().unwrap_or(Path::new(""));
        match path.strip_prefix(base) {
            Ok(rel) if !rel.as_os_str().is_empty() => rel.to_path_buf(),
            _ => path
                .file_name()
                .map_or_else(|| PathBuf::from(&self.id), |n| Path::new(&self.id).join(n)),
        }
    }

    /// The file where top-level keys are reported when no single file owns
    /// them (`config.yml` when present).
    pub fn main_file(&self) -> PathBuf {
        for name in ["config.yml", "config.yaml"] {
            let p = self.path.join(name);
            if p.is_file() {
                return p;
            }
        }
        self.path.clone()
    }
}

//! `models` entries, validated into typed per-provider settings.
//!
//! NeMo passes a model's `parameters` through LangChain, which spells the
//! same setting several ways. Here the settings a provider itself uses
//! (endpoint, key, timeouts, retries) are read into typed fields whose
//! errors name the key, so `request_timeout: "30s"` fails at load instead of
//! being ignored; everything else is sent to the model with each call.

use std::{fmt, path::Path, path::PathBuf, time::Duration};

use serde::Deserialize;
use serde_json::{Map, Value};

pub use super::engine::EngineKind;
pub use super::model_options::{CacheConfig, CacheStats, ModelMode, ReasoningConfig};
use super::{ConfigError, engine, raw::RawModel};

/// Time limits a model entry sets for its own calls (`None`: the server's default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Option<Duration>,
    pub first_token: Option<Duration>,
    pub idle: Option<Duration>,
    /// A whole call (`request_timeout`, or LangChain's `timeout`).
    pub request: Option<Duration>,
}

/// The settings of an OpenAI-compatible model entry.
#[derive(Clone, Default)]
pub struct OpenAiSettings {
    /// `parameters.base_url` (or LangChain's `openai_api_base`, `api_base`).
    pub base_url: Option<String>,
    /// The env var holding the API key; the engine's default when absent.
    pub api_key_env_var: Option<String>,
    /// Azure: the deployment (`azure_deployment`, `deployment_name`; default the model name).
    pub deployment: Option<String>,
    /// Azure: `api_version` (`openai_api_version`; default `OPENAI_API_VERSION`).
    pub api_version: Option<String>,
    /// A literal `parameters.api_key` (never printed).
    pub api_key: Option<String>,
    pub timeouts: Timeouts,
    /// Retries of connection errors, 429 and 5xx (`retries` or `max_retries`).
    pub retries: Option<u32>,
    /// Everything else in `parameters` (temperature, top_p, …), sent with every call.
    pub body: Map<String, Value>,
}

impl fmt::Debug for OpenAiSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiSettings")
            .field("base_url", &self.base_url)
            .field("api_key_env_var", &self.api_key_env_var)
            .field("deployment", &self.deployment)
            .field("api_version", &self.api_version)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeouts", &self.timeouts)
            .field("retries", &self.retries)
            .field("body", &self.body)
            .finish()
    }
}

/// The `parameters` of a scripted model entry.
///
/// ```yaml
/// models:
///   - type: main
///     engine: scripted
///     model: demo
///     parameters:
///       delay_ms: 40                 # between chunks
///       replies: ["Hello! How can I help?"]   # cycled
///       responses:                   # picked when the user message contains `when`
///         - when: weather
///           reply: I cannot see the sky, but I hope it is sunny.
///       tasks:                       # answers to the rails' and dialog's prompts
///         - task: self_check_input
///           flag: [hack, bomb]
///           flagged: "Yes"
///           reply: "No"
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedSettings {
    /// Replies for the main answer, used in turn.
    #[serde(default)]
    pub replies: Vec<String>,
    /// Replies chosen by a substring of the last user message (case-insensitive).
    #[serde(default)]
    pub responses: Vec<ScriptedResponse>,
    /// Delay before each chunk after the first, in milliseconds.
    #[serde(default)]
    pub delay_ms: u64,
    /// Delay before the first chunk, in milliseconds.
    #[serde(default)]
    pub first_token_ms: u64,
    /// How calls for other prompt tasks than the main answer are answered,
    /// first match wins; a task no entry matches gets the main reply.
    #[serde(default)]
    pub tasks: Vec<ScriptedTask>,
}

/// A reply chosen by what the user said.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedResponse {
    pub when: String,
    pub reply: String,
}

/// How the scripted model answers calls for one prompt task.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedTask {
    /// The prompt task (`self_check_input`), or a prefix ending in `*`.
    pub task: String,
    /// When the prompt contains one of these (case-insensitive), answer `flagged`.
    #[serde(default)]
    pub flag: Vec<String>,
    #[serde(default)]
    pub flagged: Option<String>,
    /// The answer otherwise.
    #[serde(default)]
    pub reply: Option<String>,
    /// An answer computed from a Colang-style prompt instead of `reply`.
    #[serde(default)]
    pub answer: Option<ScriptedAnswer>,
    /// The bot intent `intent_and_reply` writes (default `general response`).
    #[serde(default)]
    pub bot_intent: Option<String>,
}

/// Answers computed from a Colang-style prompt (`user "…"` lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScriptedAnswer {
    /// The intent of the prompt's example that shares most words with its
    /// last `user "…"` line.
    ClosestIntent,
    /// The main reply to the prompt's last `user "…"` line.
    Reply,
    /// Both intents and the reply, as a single-call dialog answer is written.
    IntentAndReply,
}

/// What serves a model entry, with its typed settings.
#[derive(Debug, Clone)]
pub enum ProviderSettings {
    /// An HTTP provider (OpenAI-compatible engines and Anthropic).
    OpenAi(OpenAiSettings),
    Scripted(ScriptedSettings),
    /// No client (an embeddings engine streamguard does not call).
    None,
}

/// One validated `models` entry.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    kind: String,
    engine: EngineKind,
    model: String,
    mode: ModelMode,
    streaming: bool,
    /// Whether `mode` was written (else it follows the model name).
    explicit_mode: bool,
    reasoning: ReasoningConfig,
    cache: Option<CacheConfig>,
    settings: ProviderSettings,
    source: PathBuf,
    key: String,
}

impl ModelConfig {
    /// `type`: `main`, or the task / rail it serves (`content_safety`, `self_check_output`, …).
    pub fn kind(&self) -> &str {
        &self.kind
    }
    pub fn engine(&self) -> EngineKind {
        self.engine
    }
    /// The model name sent to the endpoint.
    pub fn model(&self) -> &str {
        &self.model
    }
    /// `cache`, when enabled.
    pub fn cache(&self) -> Option<&CacheConfig> {
        self.cache.as_ref()
    }
    /// `reasoning_config` (its defaults when absent).
    pub fn reasoning(&self) -> &ReasoningConfig {
        &self.reasoning
    }
    /// Chat or text completions.
    pub fn mode(&self) -> ModelMode {
        self.mode
    }
    /// `false` when the entry declares that its endpoint cannot stream.
    pub fn streaming(&self) -> bool {
        self.streaming
    }

    /// This entry as the main model (`type: main`).
    pub(super) fn into_main(mut self) -> Self {
        self.kind = "main".into();
        self
    }

    /// This entry calling `model` instead of its own model name (a
    /// request's `model`, as NeMo's server overrides the main model's
    /// name). The mode follows the new name unless the entry set `mode`.
    pub fn renamed(&self, model: &str) -> Self {
        let mut m = self.clone();
        m.model = model.to_string();
        if !m.explicit_mode {
            m.mode = ModelMode::of(None, m.engine, model).unwrap_or(ModelMode::Chat);
        }
        m
    }
    pub fn settings(&self) -> &ProviderSettings {
        &self.settings
    }
    /// The file the entry came from.
    pub fn source(&self) -> &Path {
        &self.source
    }
    /// The entry's key path in its file (`models[0]`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Validates one raw entry; errors name `file` and `key`.
    pub(super) fn from_raw(m: RawModel, file: &Path, key: String) -> Result<Self, ConfigError> {
        let RawModel {
            kind,
            engine,
            model,
            parameters,
            api_key_env_var,
            streaming,
            mode,
            reasoning_config,
            cache,
        } = m;
        let cache = CacheConfig::parse(cache, &kind, file, &key)?;
        let reasoning = ReasoningConfig::parse(reasoning_config, file, &key)?;
        let engine = engine_of(engine, kind == "embeddings", file, &key)?;
        let mut params = match serde_json::to_value(&parameters) {
            Ok(Value::Object(map)) => map,
            Ok(_) | Err(_) => {
                return Err(ConfigError::invalid(
                    file,
                    format!("{key}.parameters"),
                    "must be a mapping with string keys",
                ));
            }
        };
        // NeMo (LangChain) spells the model name several ways.
        let model = model
            .or_else(|| take_str(&mut params, "model_name"))
            .or_else(|| take_str(&mut params, "model"))
            .or_else(|| take_str(&mut params, "repo_id"))
            // A TGI endpoint serves one model and ignores the name.
            .or_else(|| (engine == EngineKind::HuggingFaceEndpoint).then(|| "tgi".to_string()))
            .ok_or_else(|| ConfigError::invalid(file, format!("{key}.model"), "missing"))?;
        let explicit_mode = mode.is_some();
        let mode = ModelMode::of(mode.as_deref(), engine, &model).ok_or_else(|| {
            ConfigError::invalid(file, format!("{key}.mode"), "must be `chat` or `text`")
        })?;
        let settings = settings_of(engine, params, api_key_env_var, file, &key)?;
        Ok(ModelConfig {
            kind,
            engine,
            model,
            mode,
            streaming: streaming.unwrap_or(true),
            explicit_mode,
            reasoning,
            cache,
            settings,
            source: file.to_path_buf(),
            key,
        })
    }
}

/// The typed settings of an entry's engine.
fn settings_of(
    engine: EngineKind,
    params: Map<String, Value>,
    api_key_env_var: Option<String>,
    file: &Path,
    key: &str,
) -> Result<ProviderSettings, ConfigError> {
    let at = |k: &str| format!("{key}.parameters.{k}");
    Ok(match engine {
        EngineKind::Scripted => {
            ProviderSettings::Scripted(serde_json::from_value(Value::Object(params)).map_err(
                |e| ConfigError::invalid(file, format!("{key}.parameters"), e.to_string()),
            )?)
        }
        EngineKind::LocalEmbeddings => ProviderSettings::None,
        _ => {
            let mut s = openai_settings(params, engine, file, &at)?;
            s.api_key_env_var = api_key_env_var.or(s.api_key_env_var);
            // (Azure's endpoint may come from AZURE_OPENAI_ENDPOINT, read per call.)
            let needs_url = match engine {
                EngineKind::VllmOpenAi => Some("the server's /v1 URL"),
                EngineKind::HuggingFaceEndpoint => Some("`endpoint_url`, the TGI endpoint"),
                _ => None,
            };
            if let Some(what) = needs_url
                && s.base_url.is_none()
            {
                return Err(ConfigError::invalid(
                    file,
                    at("base_url"),
                    format!("required for engine {}: {what}", engine.name()),
                ));
            }
            ProviderSettings::OpenAi(s)
        }
    })
}

fn engine_of(
    engine: Option<String>,
    embeddings: bool,
    file: &Path,
    key: &str,
) -> Result<EngineKind, ConfigError> {
    let invalid = |message: String| ConfigError::invalid(file, format!("{key}.engine"), message);
    let name = engine
        .ok_or_else(|| invalid(format!("missing; one of: {}", EngineKind::NAMES.join(", "))))?;
    if let Some(parsed) = EngineKind::parse(&name, embeddings) {
        return Ok(parsed);
    }
    if let Some(instead) = engine::refusal(&name) {
        return Err(invalid(format!(
            "engine `{name}` is not supported: {instead}"
        )));
    }
    let also = if embeddings {
        format!(
            ", and for embeddings {}",
            EngineKind::LOCAL_EMBEDDINGS.join(", ")
        )
    } else {
        String::new()
    };
    Err(invalid(format!(
        "unknown engine `{name}`; supported: {}{also}",
        EngineKind::NAMES.join(", ")
    )))
}

/// The provider's own keys, taken out of `parameters` with errors naming them.
struct Params<'a> {
    map: Map<String, Value>,
    file: &'a Path,
    at: &'a dyn Fn(&str) -> String,
}

impl Params<'_> {
    fn invalid(&self, key: &str, message: String) -> ConfigError {
        ConfigError::invalid(self.file, (self.at)(key), message)
    }

    /// A positive number of seconds (`null` is unset).
    fn seconds(&mut self, key: &str) -> Result<Option<Duration>, ConfigError> {
        match self.map.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|s| s.is_finite() && *s > 0.0)
                .map(|s| Some(Duration::from_secs_f64(s)))
                .ok_or_else(|| {
                    self.invalid(
                        key,
                        format!("must be a positive number of seconds (e.g. 30), not {v}"),
                    )
                }),
        }
    }

    /// A whole number that fits `u32` (`null` is unset).
    fn count(&mut self, key: &str) -> Result<Option<u32>, ConfigError> {
        match self.map.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| self.invalid(key, format!("must be a whole number, not {v}"))),
        }
    }

    /// A string (`null` is unset).
    fn string(&mut self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.map.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.invalid(key, format!("must be a string, not {v}"))),
        }
    }
}

/// Reads the provider's own keys out of `params`; the rest is the call body.
fn openai_settings(
    map: Map<String, Value>,
    engine: EngineKind,
    file: &Path,
    at: &dyn Fn(&str) -> String,
) -> Result<OpenAiSettings, ConfigError> {
    let mut p = Params { map, file, at };
    // Rail calls never stream and the main call decides per request: a
    // `stream` setting in the config must not leak into either.
    for k in ["stream", "streaming", "stream_options", "n"] {
        p.map.remove(k);
    }
    let mut base_url = None;
    // Each vendor's LangChain class spells the endpoint its own way.
    for k in [
        "base_url",
        "openai_api_base",
        "api_base",
        "azure_endpoint",
        "endpoint_url",
        "anthropic_api_url",
    ] {
        if let Some(url) = p.string(k)? {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(p.invalid(k, format!("`{url}` must start with http:// or https://")));
            }
            base_url.get_or_insert(url);
        }
    }
    let request = match p.seconds("request_timeout")? {
        Some(d) => Some(d),
        None => p.seconds("timeout")?,
    };
    let timeouts = Timeouts {
        connect: p.seconds("connect_timeout")?,
        first_token: p.seconds("first_token_timeout")?,
        idle: p.seconds("idle_timeout")?,
        request,
    };
    let retries = match p.count("retries")? {
        Some(n) => Some(n),
        None => p.count("max_retries")?,
    };
    let mut deployment = None;
    let mut api_version = None;
    if engine == EngineKind::Azure {
        deployment = match p.string("azure_deployment")? {
            Some(d) => Some(d),
            None => p.string("deployment_name")?,
        };
        api_version = match p.string("api_version")? {
            Some(v) => Some(v),
            None => p.string("openai_api_version")?,
        };
    }
    Ok(OpenAiSettings {
        base_url,
        deployment,
        api_version,
        api_key: p.string("api_key")?,
        api_key_env_var: p.string("api_key_env_var")?,
        timeouts,
        retries,
        body: p.map,
    })
}

fn take_str(map: &mut Map<String, Value>, key: &str) -> Option<String> {
    match map.remove(key) {
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            map.insert(key.to_string(), other);
            None
        }
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(yaml: &str) -> Result<ModelConfig, ConfigError> {
        let raw: RawModel = serde_yaml::from_str(yaml).unwrap();
        ModelConfig::from_raw(raw, Path::new("c/config.yml"), "models[0]".into())
    }

    #[test]
    fn provider_keys_are_typed_and_the_rest_goes_to_the_body() {
        let m = entry(
            "type: main\nengine: openai\nmodel: gpt\nparameters:\n  base_url: http://h/v1\n  request_timeout: 30\n  max_retries: 1\n  temperature: 0.2\n  stream: true\n  api_key: sk-x\n",
        )
        .unwrap();
        let ProviderSettings::OpenAi(s) = m.settings() else {
            panic!("openai settings")
        };
        assert_eq!(s.base_url.as_deref(), Some("http://h/v1"));
        assert_eq!(s.timeouts.request, Some(Duration::from_secs(30)));
        assert_eq!(s.retries, Some(1));
        assert_eq!(s.body.keys().collect::<Vec<_>>(), ["temperature"]);
        assert!(
            !format!("{s:?}").contains("sk-x"),
            "the key is never printed"
        );
    }

    #[test]
    fn a_timeout_that_is_not_a_number_names_the_key() {
        let e = entry(
            "type: main\nengine: openai\nmodel: gpt\nparameters:\n  request_timeout: \"30s\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("c/config.yml")
                && e.contains("models[0].parameters.request_timeout")
                && e.contains("30s"),
            "{e}"
        );
        let e = entry("type: main\nengine: openai\nmodel: gpt\nparameters:\n  retries: two\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("models[0].parameters.retries"), "{e}");
    }

    #[test]
    fn scripted_parameters_are_strict() {
        let e = entry("type: main\nengine: scripted\nmodel: x\nparameters:\n  replys: [hi]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("models[0].parameters") && e.contains("replys"),
            "{e}"
        );
    }
}

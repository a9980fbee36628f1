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

use super::{ConfigError, raw::RawModel};

/// Which provider serves a model entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// OpenAI's API or any OpenAI-compatible endpoint via `parameters.base_url`.
    OpenAi,
    /// NVIDIA NIM (`nim`, `nvidia_ai_endpoints`), OpenAI-compatible.
    Nim,
    /// vLLM's OpenAI-compatible server; needs `parameters.base_url`.
    VllmOpenAi,
    /// streamguard's in-process scripted model, for demos and tests.
    Scripted,
}

impl EngineKind {
    /// Engine names accepted in `models[].engine`.
    pub const NAMES: &'static [&'static str] = &[
        "openai",
        "nim",
        "nvidia_ai_endpoints",
        "vllm_openai",
        "scripted",
    ];

    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "openai" => EngineKind::OpenAi,
            "nim" | "nvidia_ai_endpoints" => EngineKind::Nim,
            "vllm_openai" => EngineKind::VllmOpenAi,
            "scripted" => EngineKind::Scripted,
            _ => return None,
        })
    }
}

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
    OpenAi(OpenAiSettings),
    Scripted(ScriptedSettings),
}

/// One validated `models` entry.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    kind: String,
    engine: EngineKind,
    model: String,
    streaming: bool,
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
    /// `false` when the entry declares that its endpoint cannot stream.
    pub fn streaming(&self) -> bool {
        self.streaming
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
            reasoning_config: _,
            cache: _,
        } = m;
        if let Some(mode) = mode
            && mode != "chat"
        {
            return Err(ConfigError::invalid(
                file,
                format!("{key}.mode"),
                format!(
                    "`{mode}` is not supported; streamguard calls chat completions (mode: chat)"
                ),
            ));
        }
        let engine = engine_of(engine, file, &key)?;
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
            .ok_or_else(|| ConfigError::invalid(file, format!("{key}.model"), "missing"))?;
        let at = |k: &str| format!("{key}.parameters.{k}");
        let settings = match engine {
            EngineKind::Scripted => {
                ProviderSettings::Scripted(serde_json::from_value(Value::Object(params)).map_err(
                    |e| ConfigError::invalid(file, format!("{key}.parameters"), e.to_string()),
                )?)
            }
            _ => {
                let mut s = openai_settings(params, file, &at)?;
                s.api_key_env_var = api_key_env_var.or(s.api_key_env_var);
                if engine == EngineKind::VllmOpenAi && s.base_url.is_none() {
                    return Err(ConfigError::invalid(
                        file,
                        at("base_url"),
                        "required for engine vllm_openai (the server's /v1 URL)",
                    ));
                }
                ProviderSettings::OpenAi(s)
            }
        };
        Ok(ModelConfig {
            kind,
            engine,
            model,
            streaming: streaming.unwrap_or(true),
            settings,
            source: file.to_path_buf(),
            key,
        })
    }
}

fn engine_of(engine: Option<String>, file: &Path, key: &str) -> Result<EngineKind, ConfigError> {
    let name = engine.ok_or_else(|| {
        ConfigError::invalid(
            file,
            format!("{key}.engine"),
            format!("missing; one of: {}", EngineKind::NAMES.join(", ")),
        )
    })?;
    EngineKind::parse(&name).ok_or_else(|| {
        ConfigError::invalid(
            file,
            format!("{key}.engine"),
            format!(
                "unknown engine `{name}`; supported: {}",
                EngineKind::NAMES.join(", ")
            ),
        )
    })
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
    for k in ["base_url", "openai_api_base", "api_base"] {
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
    Ok(OpenAiSettings {
        base_url,
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

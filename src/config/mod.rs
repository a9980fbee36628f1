//! Loading NeMo Guardrails-format config directories.
//!
//! Two phases, as NeMo users expect and as strict services do: every
//! `*.yml`/`*.yaml` file is parsed on its own into strict serde types
//! (`raw`), then the parts are merged and validated into a [`Config`] whose
//! errors name the file and the key. A config *root* is either one config
//! directory (it has a `config.yml`: NeMo's single-config mode) or a directory
//! of config sub-directories, one per config id.

mod raw;

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
};

use raw::{RawFile, RawModel, RawPrompt};

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
}

/// Which OpenAI-compatible flavour (or the scripted model) serves a model entry.
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

/// One validated `models` entry.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// `type`: `main`, or the task / rail it serves (`content_safety`, `self_check_output`, …).
    pub kind: String,
    pub engine: EngineKind,
    /// The model name sent to the endpoint.
    pub model: String,
    /// `parameters.base_url` (or LangChain's `openai_api_base`).
    pub base_url: Option<String>,
    /// The env var holding the API key; engine default when absent.
    pub api_key_env_var: Option<String>,
    /// The other `parameters`, passed through to the provider.
    pub parameters: serde_json::Map<String, serde_json::Value>,
    /// `false` when the entry declares that its endpoint cannot stream.
    pub streaming: bool,
    /// The file the entry came from and its key, for later errors.
    pub source: PathBuf,
    pub key: String,
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

impl FlowRef {
    fn parse(text: &str, source: &Path, key: String) -> Result<Self, ConfigError> {
        let mut parts = text.split(" $");
        let name = parts.next().unwrap_or_default().trim().to_string();
        let mut args = BTreeMap::new();
        for arg in parts {
            let Some((k, v)) = arg.split_once('=') else {
                return Err(ConfigError::invalid(
                    source,
                    key,
                    format!("flow argument `${arg}` must look like `$name=value`"),
                ));
            };
            args.insert(k.trim().to_string(), v.trim().trim_matches('"').to_string());
        }
        Ok(FlowRef {
            name,
            args,
            source: source.to_path_buf(),
            key,
        })
    }
}

impl fmt::Display for FlowRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// `rails.output.streaming`: output rails on chunk windows while streaming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputStreaming {
    pub enabled: bool,
    /// Chunks per checked window.
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

/// One rail stage (`rails.input` or `rails.output`).
#[derive(Debug, Clone, Default)]
pub struct RailStage {
    pub flows: Vec<FlowRef>,
    /// Run the flows concurrently; the first block wins.
    pub parallel: bool,
}

/// A validated guardrails configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config id: its directory name.
    pub id: String,
    /// The config directory.
    pub path: PathBuf,
    pub models: Vec<ModelConfig>,
    /// `instructions`, by type; `general` is the main LLM's system prompt.
    pub instructions: BTreeMap<String, String>,
    pub prompts: Vec<Prompt>,
    pub input: RailStage,
    pub output: RailStage,
    pub output_streaming: OutputStreaming,
    /// `rails.config.<name>`: per-rail settings as written, with their file;
    /// each rail validates its own section.
    pub rail_settings: BTreeMap<String, (PathBuf, serde_yaml::Value)>,
    /// `streaming: True`.
    pub streaming: bool,
    pub lowest_temperature: f64,
    pub enable_rails_exceptions: bool,
    pub sample_conversation: Option<String>,
    /// The Colang 1.0 dialog of the `*.co` files, if there are any.
    pub dialog: Option<crate::colang::Dialog>,
    /// `rails.dialog.single_call.enabled`: one LLM call per dialog turn.
    pub single_call: bool,
}

impl Config {
    /// The `type: main` model.
    pub fn main_model(&self) -> &ModelConfig {
        // `load` guarantees exactly one main model; index 0 is its position
        // after sorting in `validate`.
        &self.models[0]
    }

    /// The model entry of a given `type`, if any.
    pub fn model_of_type(&self, kind: &str) -> Option<&ModelConfig> {
        self.models.iter().find(|m| m.kind == kind)
    }

    /// The prompt for `task` as NeMo picks it: one restricted to `model`
    /// (`engine/model` or `model`) first, else an unrestricted one.
    pub fn prompt(&self, task: &str, model: &ModelConfig) -> Option<&Prompt> {
        let candidates = self.prompts.iter().filter(|p| p.task == task);
        let mut fallback = None;
        for p in candidates {
            match &p.models {
                Some(list) => {
                    if list.iter().any(|m| {
                        m == &model.model
                            || m.rsplit_once('/')
                                .is_some_and(|(_, name)| name == model.model)
                            || model.model.ends_with(m.as_str())
                    }) {
                        return Some(p);
                    }
                }
                None => {
                    if fallback.is_none() {
                        fallback = Some(p);
                    }
                }
            }
        }
        fallback
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

/// Loads every config under `root`: single-config mode when `root` itself
/// holds `config.yml`/`config.yaml`, otherwise one config per sub-directory.
/// All failures are collected so one run reports every broken config.
pub fn load_root(root: &Path) -> Result<Vec<Config>, ConfigError> {
    let meta = std::fs::metadata(root).map_err(|source| ConfigError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(ConfigError::invalid(
            root,
            "--config",
            "must be a directory (a config directory, or a directory of config directories)",
        ));
    }
    if is_single_config(root) {
        return Ok(vec![load(root)?]);
    }
    let mut dirs = Vec::new();
    for entry in read_dir(root)? {
        let path = entry;
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.starts_with('.'));
        if path.is_dir() && !hidden && has_config_files(&path)? {
            dirs.push(path);
        }
    }
    if dirs.is_empty() {
        return Err(ConfigError::invalid(
            root,
            "--config",
            "holds no config: expected config.yml here, or sub-directories with *.yml files",
        ));
    }
    let mut configs = Vec::new();
    let mut errors = Vec::new();
    for dir in dirs {
        match load(&dir) {
            Ok(c) => configs.push(c),
            Err(e) => errors.push(e),
        }
    }
    match errors.len() {
        0 => Ok(configs),
        1 => Err(errors.remove(0)),
        _ => Err(ConfigError::Many(errors)),
    }
}

/// Whether `dir` is itself a config (NeMo's single-config mode).
pub fn is_single_config(dir: &Path) -> bool {
    dir.join("config.yml").is_file() || dir.join("config.yaml").is_file()
}

fn has_config_files(dir: &Path) -> Result<bool, ConfigError> {
    Ok(walk(dir)?.iter().any(|p| is_yaml(p) || is_colang(p)))
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let io = |source| ConfigError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        out.push(entry.map_err(io)?.path());
    }
    out.sort();
    Ok(out)
}

/// Every file below `dir`, sorted, as NeMo's loader walks the tree.
fn walk(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for p in read_dir(&d)? {
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}

fn is_yaml(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml"))
}

fn is_colang(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()) == Some("co")
}

/// Loads and validates one config directory. The id is the directory name.
pub fn load(dir: &Path) -> Result<Config, ConfigError> {
    let id = dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "default".to_string());
    let mut parts = Vec::new();
    let mut dialog: Option<crate::colang::Dialog> = None;
    for file in walk(dir)? {
        let rel_kb = file
            .strip_prefix(dir)
            .ok()
            .is_some_and(|r| r.starts_with("kb"));
        if is_colang(&file) {
            let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Io {
                path: file.clone(),
                source,
            })?;
            let d = dialog.get_or_insert_with(crate::colang::Dialog::default);
            crate::colang::parse_into(d, &file, &text).map_err(|e| ConfigError::Invalid {
                file: e.file.clone(),
                key: format!("line {}", e.line),
                message: e.message,
            })?;
            continue;
        }
        if file.extension().and_then(|e| e.to_str()) == Some("py") {
            return Err(ConfigError::invalid(
                &file,
                "actions",
                "custom Python actions are not supported; use the built-in rail flows",
            ));
        }
        if rel_kb && file.extension().and_then(|e| e.to_str()) == Some("md") {
            return Err(ConfigError::invalid(
                &file,
                "kb",
                "knowledge bases (kb/ retrieval) are not supported",
            ));
        }
        if !is_yaml(&file) {
            continue;
        }
        let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Io {
            path: file.clone(),
            source,
        })?;
        // An empty file is a valid (empty) part, as in NeMo.
        let raw: RawFile = if text.trim().is_empty() {
            RawFile::default()
        } else {
            serde_yaml::from_str(&text).map_err(|e| ConfigError::Parse {
                file: file.clone(),
                message: e.to_string(),
            })?
        };
        parts.push((file, raw));
    }
    if parts.is_empty() {
        return Err(ConfigError::invalid(
            dir,
            "config.yml",
            "no *.yml or *.yaml files in the config directory",
        ));
    }
    let mut config = validate(id, dir, parts)?;
    config.dialog = dialog;
    Ok(config)
}

/// Validates one YAML document as a whole config with id `id` (no directory;
/// errors name the file `<id>/config.yml`).
pub fn from_yaml(id: &str, yaml: &str) -> Result<Config, ConfigError> {
    let file = PathBuf::from(id).join("config.yml");
    let raw: RawFile = serde_yaml::from_str(yaml).map_err(|e| ConfigError::Parse {
        file: file.clone(),
        message: e.to_string(),
    })?;
    validate(id.to_string(), Path::new(id), vec![(file, raw)])
}

fn validate(id: String, dir: &Path, parts: Vec<(PathBuf, RawFile)>) -> Result<Config, ConfigError> {
    let mut config = Config {
        id,
        path: dir.to_path_buf(),
        models: Vec::new(),
        instructions: BTreeMap::new(),
        prompts: Vec::new(),
        input: RailStage::default(),
        output: RailStage::default(),
        output_streaming: OutputStreaming::default(),
        rail_settings: BTreeMap::new(),
        streaming: false,
        lowest_temperature: 0.001,
        enable_rails_exceptions: false,
        sample_conversation: None,
        dialog: None,
        single_call: false,
    };
    let main_file = config.main_file();

    for (file, raw) in parts {
        let unsupported = [
            ("knowledge_base", raw.knowledge_base.is_some()),
            ("core", raw.core.is_some()),
            ("actions_server_url", raw.actions_server_url.is_some()),
            (
                "embedding_search_provider",
                raw.embedding_search_provider.is_some(),
            ),
            ("passthrough", raw.passthrough.is_some()),
            ("import_paths", raw.import_paths.is_some()),
            ("user_messages", raw.user_messages.is_some()),
            ("bot_messages", raw.bot_messages.is_some()),
        ];
        if let Some((key, _)) = unsupported.iter().find(|(_, present)| *present) {
            return Err(ConfigError::invalid(
                &file,
                *key,
                "not supported by streamguard",
            ));
        }
        if let Some(v) = &raw.colang_version
            && v.trim() != "1.0"
        {
            return Err(ConfigError::invalid(
                &file,
                "colang_version",
                format!(
                    "Colang {v} is not supported; streamguard supports configs without dialog flows"
                ),
            ));
        }
        if let Some(mode) = &raw.prompting_mode
            && mode.as_str() != Some("standard")
        {
            return Err(ConfigError::invalid(
                &file,
                "prompting_mode",
                "only `standard` is supported",
            ));
        }
        for (i, m) in raw.models.into_iter().enumerate() {
            config.models.push(model(m, &file, format!("models[{i}]"))?);
        }
        for ins in raw.instructions {
            config.instructions.insert(ins.kind, ins.content);
        }
        for (i, p) in raw.prompts.into_iter().enumerate() {
            config
                .prompts
                .push(prompt(p, &file, format!("prompts[{i}]"))?);
        }
        if let Some(rails) = raw.rails {
            for (key, present) in [
                ("rails.retrieval", rails.retrieval.is_some()),
                ("rails.actions", rails.actions.is_some()),
            ] {
                if present {
                    return Err(ConfigError::invalid(
                        &file,
                        key,
                        "not supported by streamguard",
                    ));
                }
            }
            if let Some(dialog) = &rails.dialog
                && let Some(single) = check_dialog(dialog, &file)?
            {
                config.single_call = single;
            }
            if let Some(input) = rails.input {
                for (i, f) in input.flows.iter().enumerate() {
                    let key = format!("rails.input.flows[{i}]");
                    config.input.flows.push(FlowRef::parse(f, &file, key)?);
                }
                if let Some(p) = input.parallel {
                    config.input.parallel = p;
                }
            }
            if let Some(output) = rails.output {
                for (i, f) in output.flows.iter().enumerate() {
                    let key = format!("rails.output.flows[{i}]");
                    config.output.flows.push(FlowRef::parse(f, &file, key)?);
                }
                if let Some(p) = output.parallel {
                    config.output.parallel = p;
                }
                if let Some(s) = output.streaming {
                    let o = &mut config.output_streaming;
                    o.enabled = s.enabled.unwrap_or(o.enabled);
                    o.chunk_size = s.chunk_size.unwrap_or(o.chunk_size);
                    o.context_size = s.context_size.unwrap_or(o.context_size);
                    o.stream_first = s.stream_first.unwrap_or(o.stream_first);
                    if o.chunk_size == 0 {
                        return Err(ConfigError::invalid(
                            &file,
                            "rails.output.streaming.chunk_size",
                            "must be at least 1",
                        ));
                    }
                }
            }
            if let Some(settings) = rails.config {
                for (k, v) in settings {
                    let Some(name) = k.as_str() else {
                        return Err(ConfigError::invalid(
                            &file,
                            "rails.config",
                            "keys must be rail names",
                        ));
                    };
                    config
                        .rail_settings
                        .insert(name.to_string(), (file.clone(), v));
                }
            }
        }
        if let Some(s) = raw.streaming {
            config.streaming = s;
        }
        if let Some(t) = raw.lowest_temperature {
            if !(0.0..=2.0).contains(&t) {
                return Err(ConfigError::invalid(
                    &file,
                    "lowest_temperature",
                    "must be between 0 and 2",
                ));
            }
            config.lowest_temperature = t;
        }
        if let Some(e) = raw.enable_rails_exceptions {
            config.enable_rails_exceptions = e;
        }
        if raw.sample_conversation.is_some() {
            config.sample_conversation = raw.sample_conversation;
        }
    }

    let mains: Vec<usize> = (0..config.models.len())
        .filter(|&i| config.models[i].kind == "main")
        .collect();
    match mains.as_slice() {
        [] => {
            return Err(ConfigError::invalid(
                &main_file,
                "models",
                "no model with `type: main`; add one, e.g. `- type: main` with `engine: openai` and `model: gpt-4o-mini`",
            ));
        }
        [one] => {
            let main = config.models.remove(*one);
            config.models.insert(0, main);
        }
        [_, second, ..] => {
            let m = &config.models[*second];
            return Err(ConfigError::invalid(
                &m.source,
                &m.key,
                "a second model with `type: main`; a config has exactly one main model",
            ));
        }
    }
    crate::rails::validate_flows(&config)?;
    Ok(config)
}

/// Checks `rails.dialog`; returns `single_call.enabled` when set.
fn check_dialog(dialog: &serde_yaml::Value, file: &Path) -> Result<Option<bool>, ConfigError> {
    // `single_call` tunes how dialog flows call the LLM; without *.co files
    // it has no effect.
    if let Some(map) = dialog.as_mapping() {
        for (k, _) in map {
            let key = k.as_str().unwrap_or_default();
            if key != "single_call" && key != "user_messages" {
                return Err(ConfigError::invalid(
                    file,
                    format!("rails.dialog.{key}"),
                    "not supported by streamguard",
                ));
            }
        }
    }
    let enabled = dialog.get("single_call").and_then(|s| s.get("enabled"));
    match enabled {
        None => Ok(None),
        Some(v) => v.as_bool().map(Some).ok_or_else(|| {
            ConfigError::invalid(
                file,
                "rails.dialog.single_call.enabled",
                "must be True or False",
            )
        }),
    }
}

fn model(m: RawModel, file: &Path, key: String) -> Result<ModelConfig, ConfigError> {
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
            format!("`{mode}` is not supported; streamguard calls chat completions (mode: chat)"),
        ));
    }
    let engine_name = engine.ok_or_else(|| {
        ConfigError::invalid(
            file,
            format!("{key}.engine"),
            format!("missing; one of: {}", EngineKind::NAMES.join(", ")),
        )
    })?;
    let engine = EngineKind::parse(&engine_name).ok_or_else(|| {
        ConfigError::invalid(
            file,
            format!("{key}.engine"),
            format!(
                "unknown engine `{engine_name}`; supported: {}",
                EngineKind::NAMES.join(", ")
            ),
        )
    })?;
    let mut params = match serde_json::to_value(&parameters) {
        Ok(serde_json::Value::Object(map)) => map,
        Ok(_) | Err(_) => {
            return Err(ConfigError::invalid(
                file,
                format!("{key}.parameters"),
                "must be a mapping with string keys",
            ));
        }
    };
    // NeMo (LangChain) spells the model and endpoint several ways.
    let model = model
        .or_else(|| take_str(&mut params, "model_name"))
        .or_else(|| take_str(&mut params, "model"))
        .ok_or_else(|| ConfigError::invalid(file, format!("{key}.model"), "missing"))?;
    let base_url = ["base_url", "openai_api_base", "api_base"]
        .iter()
        .find_map(|k| take_str(&mut params, k));
    if engine == EngineKind::VllmOpenAi && base_url.is_none() {
        return Err(ConfigError::invalid(
            file,
            format!("{key}.parameters.base_url"),
            "required for engine vllm_openai (the server's /v1 URL)",
        ));
    }
    if let Some(url) = &base_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(ConfigError::invalid(
            file,
            format!("{key}.parameters.base_url"),
            format!("`{url}` must start with http:// or https://"),
        ));
    }
    let api_key_env_var = api_key_env_var.or_else(|| take_str(&mut params, "api_key_env_var"));
    Ok(ModelConfig {
        kind,
        engine,
        model,
        base_url,
        api_key_env_var,
        parameters: params,
        streaming: streaming.unwrap_or(true),
        source: file.to_path_buf(),
        key,
    })
}

fn take_str(map: &mut serde_json::Map<String, serde_json::Value>, key: &str) -> Option<String> {
    match map.remove(key) {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(other) => {
            map.insert(key.to_string(), other);
            None
        }
        None => None,
    }
}

fn prompt(p: RawPrompt, file: &Path, key: String) -> Result<Prompt, ConfigError> {
    let RawPrompt {
        task,
        content,
        messages,
        models,
        max_tokens,
        output_parser,
        stop,
        mode,
        max_length: _,
    } = p;
    if let Some(mode) = mode
        && mode != "standard"
    {
        return Err(ConfigError::invalid(
            file,
            format!("{key}.mode"),
            "only `standard` prompts are supported",
        ));
    }
    let body = match (content, messages) {
        (Some(c), None) => PromptBody::Content(c),
        (None, Some(m)) => {
            PromptBody::Messages(m.into_iter().map(|m| (m.kind, m.content)).collect())
        }
        _ => {
            return Err(ConfigError::invalid(
                file,
                key,
                format!("prompt for task `{task}` needs exactly one of `content` or `messages`"),
            ));
        }
    };
    Ok(Prompt {
        task,
        body,
        models,
        max_tokens,
        output_parser,
        stop: stop.unwrap_or_default(),
        source: file.to_path_buf(),
        key,
    })
}

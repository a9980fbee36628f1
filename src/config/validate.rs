//! Merging the parsed files of one config directory and validating them into
//! a [`Config`]: every error names the file and the key.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use super::{
    Config, ConfigError, DialogSettings, FlowRef, ModelConfig, OutputStreaming, Prompt, PromptBody,
    RailStage,
    raw::{RawFile, RawOutputRails, RawPrompt, RawRails},
};

/// Keys NeMo knows that streamguard refuses by name.
fn unsupported_keys(raw: &RawFile) -> [(&'static str, bool); 6] {
    [
        ("core", raw.core.is_some()),
        (
            "embedding_search_provider",
            raw.embedding_search_provider.is_some(),
        ),
        ("passthrough", raw.passthrough.is_some()),
        ("import_paths", raw.import_paths.is_some()),
        ("user_messages", raw.user_messages.is_some()),
        ("bot_messages", raw.bot_messages.is_some()),
    ]
}

/// The parsed files of one config directory, in walk order.
pub(super) type Parts = std::sync::Arc<Vec<(PathBuf, RawFile)>>;

pub(super) fn validate(
    id: String,
    dir: &Path,
    parts: Vec<(PathBuf, RawFile)>,
) -> Result<Config, ConfigError> {
    validate_composed(id, dir, vec![std::sync::Arc::new(parts)])
}

/// Validates several configs' files as one composed config, as NeMo's
/// server joins `config_ids`: each config's files merge as a directory's
/// do (lists append, keys set later win), a model `type` two configs share
/// must name the same engine and model (the later entry's parameters win),
/// and a later config's prompts are preferred.
pub(super) fn validate_composed(
    id: String,
    dir: &Path,
    groups: Vec<Parts>,
) -> Result<Config, ConfigError> {
    let mut config = Config {
        id,
        path: dir.to_path_buf(),
        models: Vec::new(),
        instructions: BTreeMap::new(),
        prompts: Vec::new(),
        input: RailStage::default(),
        retrieval: RailStage::default(),
        tools: Default::default(),
        output: RailStage::default(),
        output_streaming: OutputStreaming::default(),
        rail_settings: BTreeMap::new(),
        streaming: None,
        lowest_temperature: 0.001,
        enable_rails_exceptions: false,
        actions_server_url: None,
        kb_embeddings: None,
        sample_conversation: None,
        colang: Vec::new(),
        colang_2: false,
        colang_2_rails: Default::default(),
        colang_2_interaction: false,
        colang_2_rail_flows: (false, false),
        action_files: Vec::new(),
        kb: Vec::new(),
        dialog: DialogSettings::default(),
        apply_to_reasoning_traces: false,
        prompting_mode: "standard".into(),
        custom_data: serde_yaml::Value::Null,
        tracing: None,
        parts: groups.clone(),
    };
    for (i, group) in groups.iter().enumerate() {
        let (models, prompts) = (config.models.len(), config.prompts.len());
        for (file, raw) in group.iter() {
            merge(&mut config, file, raw.clone())?;
        }
        if i > 0 {
            join_models(&mut config, models)?;
            config.prompts.rotate_left(prompts);
        }
    }
    place_main_model(&mut config)?;
    Ok(config)
}

/// Merges `custom_data` mappings key by key (deeply); anything else replaces.
fn merge_custom(into: &mut serde_yaml::Value, data: serde_yaml::Value) {
    match (into, data) {
        (serde_yaml::Value::Mapping(a), serde_yaml::Value::Mapping(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(existing) => merge_custom(existing, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, data) => *slot = data,
    }
}

/// `dir/file` of a path: enough to name a config's file, no server path.
fn short(path: &Path) -> String {
    let mut parts: Vec<_> = path.iter().rev().take(2).collect();
    parts.reverse();
    parts.iter().collect::<PathBuf>().display().to_string()
}

/// A later config's models (from index `from`): one of a `type` an earlier
/// config has replaces it, when it names the same engine and model.
fn join_models(config: &mut Config, from: usize) -> Result<(), ConfigError> {
    let added = config.models.split_off(from);
    for m in added {
        match config.models.iter_mut().find(|e| e.kind() == m.kind()) {
            Some(e) if e.engine() != m.engine() || e.model() != m.model() => {
                return Err(ConfigError::invalid(
                    m.source(),
                    m.key(),
                    format!(
                        "composed configs must use the same engine and model for the same model type: `type: {}` is `{}` on `{}` here and `{}` on `{}` in {}",
                        m.kind(),
                        m.model(),
                        m.engine().name(),
                        e.model(),
                        e.engine().name(),
                        short(e.source())
                    ),
                ));
            }
            Some(e) => *e = m,
            None => config.models.push(m),
        }
    }
    Ok(())
}

/// Merges one file into the config: lists append, scalars override.
fn merge(config: &mut Config, file: &Path, raw: RawFile) -> Result<(), ConfigError> {
    if let Some((key, _)) = unsupported_keys(&raw).iter().find(|(_, present)| *present) {
        return Err(ConfigError::invalid(
            file,
            *key,
            "not supported by streamguard",
        ));
    }
    match raw.colang_version.as_deref().map(str::trim) {
        None | Some("1.0") => {}
        Some("2.x") => config.colang_2 = true,
        Some(v) => {
            return Err(ConfigError::invalid(
                file,
                "colang_version",
                format!("`{v}`: the versions are \"1.0\" and \"2.x\""),
            ));
        }
    }
    if let Some(mode) = &raw.prompting_mode {
        let Some(mode) = mode.as_str().filter(|m| !m.trim().is_empty()) else {
            return Err(ConfigError::invalid(
                file,
                "prompting_mode",
                "must be a mode name such as `standard` or `compact`",
            ));
        };
        config.prompting_mode = mode.to_string();
    }
    for (i, m) in raw.models.into_iter().enumerate() {
        config
            .models
            .push(ModelConfig::from_raw(m, file, format!("models[{i}]"))?);
    }
    for ins in raw.instructions {
        config.instructions.insert(ins.kind, ins.content);
    }
    for (i, p) in raw.prompts.into_iter().enumerate() {
        config
            .prompts
            .push(prompt(p, file, format!("prompts[{i}]"))?);
    }
    if let Some(rails) = raw.rails {
        merge_rails(config, file, rails)?;
    }
    if raw.streaming.is_some() {
        config.streaming = raw.streaming;
    }
    if let Some(t) = raw.lowest_temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(ConfigError::invalid(
                file,
                "lowest_temperature",
                "must be between 0 and 2",
            ));
        }
        config.lowest_temperature = t;
    }
    if let Some(e) = raw.enable_rails_exceptions {
        config.enable_rails_exceptions = e;
    }
    if let Some(kb) = raw.knowledge_base {
        config.kb_embeddings = super::knowledge::parse(kb, file)?;
    }
    if let Some(url) = raw.actions_server_url.filter(|u| !u.trim().is_empty()) {
        config.actions_server_url = Some(http_url(&url, file, "actions_server_url")?);
    }
    if raw.sample_conversation.is_some() {
        config.sample_conversation = raw.sample_conversation;
    }
    if let Some(t) = raw.tracing {
        config.tracing = super::TracingConfig::parse(t, file)?;
    }
    if let Some(data) = raw.custom_data {
        // A later file's keys win, key by key.
        merge_custom(&mut config.custom_data, data);
    }
    Ok(())
}

/// `rails.<stage>.flows` and `.parallel`, added to what earlier files set.
fn merge_flows(
    (stage, raw, into): (&str, Option<super::raw::RawFlows>, &mut RailStage),
    file: &Path,
) -> Result<(), ConfigError> {
    let Some(raw) = raw else {
        return Ok(());
    };
    for (i, f) in raw.flows.iter().enumerate() {
        let key = format!("rails.{stage}.flows[{i}]");
        into.flows.push(parse_flow(f, file, key)?);
    }
    if let Some(p) = raw.parallel {
        into.parallel = p;
    }
    Ok(())
}

fn merge_rails(config: &mut Config, file: &Path, rails: RawRails) -> Result<(), ConfigError> {
    if rails.actions.is_some() {
        return Err(ConfigError::invalid(
            file,
            "rails.actions",
            "not supported by streamguard",
        ));
    }
    if let Some(retrieval) = rails.retrieval {
        for (i, f) in retrieval.flows.iter().enumerate() {
            let key = format!("rails.retrieval.flows[{i}]");
            config.retrieval.flows.push(parse_flow(f, file, key)?);
        }
    }
    if let Some(dialog) = &rails.dialog {
        merge_dialog(&mut config.dialog, dialog, file)?;
    }
    merge_flows(("input", rails.input, &mut config.input), file)?;
    merge_flows(("tool_input", rails.tool_input, &mut config.tools[0]), file)?;
    merge_flows(
        ("tool_output", rails.tool_output, &mut config.tools[1]),
        file,
    )?;
    if let Some(output) = rails.output {
        merge_output(config, file, output)?;
    }
    if let Some(settings) = rails.config {
        for (k, v) in settings {
            let Some(name) = k.as_str() else {
                return Err(ConfigError::invalid(
                    file,
                    "rails.config",
                    "keys must be rail names",
                ));
            };
            config
                .rail_settings
                .insert(name.to_string(), (file.to_path_buf(), v));
        }
    }
    Ok(())
}

fn merge_output(
    config: &mut Config,
    file: &Path,
    output: RawOutputRails,
) -> Result<(), ConfigError> {
    for (i, f) in output.flows.iter().enumerate() {
        let key = format!("rails.output.flows[{i}]");
        config.output.flows.push(parse_flow(f, file, key)?);
    }
    if let Some(p) = output.parallel {
        config.output.parallel = p;
    }
    if let Some(a) = output.apply_to_reasoning_traces {
        config.apply_to_reasoning_traces = a;
    }
    if let Some(s) = output.streaming {
        let o = &mut config.output_streaming;
        o.enabled = s.enabled.unwrap_or(o.enabled);
        o.chunk_size = s.chunk_size.unwrap_or(o.chunk_size);
        o.context_size = s.context_size.unwrap_or(o.context_size);
        o.stream_first = s.stream_first.unwrap_or(o.stream_first);
        if o.chunk_size == 0 {
            return Err(ConfigError::invalid(
                file,
                "rails.output.streaming.chunk_size",
                "must be at least 1",
            ));
        }
    }
    Ok(())
}

/// At most one `type: main` model, moved to the front. A config without
/// one is rails-only: its requests bring the main model (or the server has
/// a default one).
fn place_main_model(config: &mut Config) -> Result<(), ConfigError> {
    let mains: Vec<usize> = (0..config.models.len())
        .filter(|&i| config.models[i].kind() == "main")
        .collect();
    match mains.as_slice() {
        [] => Ok(()),
        [one] => {
            let main = config.models.remove(*one);
            config.models.insert(0, main);
            Ok(())
        }
        [_, second, ..] => {
            let m = &config.models[*second];
            Err(ConfigError::invalid(
                m.source(),
                m.key(),
                "a second model with `type: main`; a config has exactly one main model",
            ))
        }
    }
}

/// Parses a flow reference with its `$name=value` arguments.
fn parse_flow(text: &str, source: &Path, key: String) -> Result<FlowRef, ConfigError> {
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

/// `rails.dialog`, typed; a later file's keys win over an earlier one's.
fn merge_dialog(
    into: &mut DialogSettings,
    dialog: &serde_yaml::Value,
    file: &Path,
) -> Result<(), ConfigError> {
    let raw: RawDialog = serde_yaml::from_value(dialog.clone())
        .map_err(|e| ConfigError::invalid(file, "rails.dialog", e.to_string()))?;
    if let Some(single) = raw.single_call {
        into.single_call = single.enabled.unwrap_or(into.single_call);
        into.fallback_to_multiple_calls = single
            .fallback_to_multiple_calls
            .unwrap_or(into.fallback_to_multiple_calls);
    }
    if let Some(user) = raw.user_messages {
        into.embeddings_only = user.embeddings_only.unwrap_or(into.embeddings_only);
        if let Some(t) = user.embeddings_only_similarity_threshold {
            if !(0.0..=1.0).contains(&t) {
                return Err(ConfigError::invalid(
                    file,
                    "rails.dialog.user_messages.embeddings_only_similarity_threshold",
                    "must be between 0 and 1",
                ));
            }
            into.embeddings_only_similarity_threshold = Some(t);
        }
        if user.embeddings_only_fallback_intent.is_some() {
            into.embeddings_only_fallback_intent = user.embeddings_only_fallback_intent;
        }
    }
    Ok(())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDialog {
    single_call: Option<RawSingleCall>,
    user_messages: Option<RawUserMessages>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSingleCall {
    enabled: Option<bool>,
    fallback_to_multiple_calls: Option<bool>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUserMessages {
    embeddings_only: Option<bool>,
    embeddings_only_similarity_threshold: Option<f64>,
    embeddings_only_fallback_intent: Option<String>,
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
        mode: mode.unwrap_or_else(|| "standard".into()),
        source: file.to_path_buf(),
        key,
    })
}

/// An http(s) URL, or an error naming the key.
fn http_url(url: &str, file: &Path, key: &str) -> Result<reqwest::Url, ConfigError> {
    reqwest::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| ConfigError::invalid(file, key, format!("`{url}` is not an http(s) URL")))
}

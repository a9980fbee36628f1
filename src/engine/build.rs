//! Turning a validated config into what serves it: the providers of its
//! model entries, the answerer (the main model, or the dialog in front of
//! it) and the rails. What the config holds but streamguard cannot run is
//! refused here, naming the first such file as a reader meets it.

use std::{path::Path, sync::Arc};

use super::{
    BuildSettings,
    answer::{Answerer, ModelAnswer},
};
use crate::{
    config::{Config, ConfigError},
    dialog::{self, Dialog},
    llm::{self, Provider},
    rails::{self, Providers, Rails},
};

/// What serves a config.
pub(super) struct Built {
    pub answerer: Arc<dyn Answerer>,
    pub rails: Rails,
}

/// The file an error names, for ordering refusals as the directory reads.
fn file_of(e: &ConfigError) -> Option<&Path> {
    match e {
        ConfigError::Invalid { file, .. } | ConfigError::Parse { file, .. } => Some(file),
        ConfigError::Io { path, .. } => Some(path),
        ConfigError::Many(all) => all.first().and_then(file_of),
    }
}

/// The first file of the config streamguard cannot use: Python actions
/// without an actions server to run them.
fn unsupported_file(config: &Config, settings: &BuildSettings) -> Option<ConfigError> {
    let init = config
        .action_files()
        .iter()
        .find(|f| f.file_name().is_some_and(|n| n == "config.py"));
    if let Some(f) = init {
        return Some(ConfigError::invalid(
            f,
            "config.py",
            "`config.py` runs Python in NeMo's own process (its `init(app)` registers actions or LLM \
             providers), which streamguard cannot: move the actions into actions.py and run them on \
             NeMo's actions server (`actions_server_url`), and serve a custom LLM behind an \
             OpenAI-compatible endpoint (`engine: openai` with `parameters.base_url`)",
        ));
    }
    let served = config.actions_server_url().is_some() || settings.actions_server.is_some();
    config.action_files().first().filter(|_| !served).map(|f| {
        ConfigError::invalid(
            f,
            "actions",
            "custom Python actions run on NeMo's actions server: start it in this directory \
             (`nemoguardrails actions-server --port 8001`) and set `actions_server_url: \
             http://localhost:8001` in config.yml (or `serve --actions-server-url`)",
        )
    })
}

/// The config's dialog, unless a file before the failing one is refused.
fn dialog_of(config: &Config, settings: &BuildSettings) -> Result<Option<Dialog>, ConfigError> {
    let parsed = dialog::parse(config.colang_sources());
    match (parsed, unsupported_file(config, settings)) {
        (Ok(d), None) => Ok(d),
        (Ok(_), Some(refusal)) => Err(refusal),
        (Err(e), None) => Err(e),
        (Err(e), Some(refusal)) => Err(if file_of(&refusal) < file_of(&e) {
            refusal
        } else {
            e
        }),
    }
}

pub(super) fn build(
    config: &Config,
    main: Option<Arc<dyn Provider>>,
    settings: &BuildSettings,
) -> Result<Built, ConfigError> {
    let upstream = &settings.upstream;
    let dialog = dialog_of(config, settings)?.map(Arc::new);
    let mut providers = Providers::new();
    let mut warnings = Vec::new();
    if let Some(main) = main {
        providers.insert("main".into(), main);
    }
    for model in config.models() {
        // Embeddings models are not chat models.
        if model.kind() == "embeddings" || providers.contains_key(model.kind()) {
            continue;
        }
        let provider = llm::build(model, upstream)?;
        if let Some(var) = provider.missing_api_key() {
            warnings.push(format!(
                "{}: `{}`: the variable `{var}` (API key or endpoint) of model `{}` is not set; calls to it fail until it is",
                config.relative(model.source()).display(),
                model.key(),
                model.model()
            ));
        }
        providers.insert(model.kind().to_string(), provider);
    }
    // A rails-only config: each request names its main model, and the
    // engine is built again for it (`Guardrails::for_model`), so this
    // stand-in is never called.
    let main = match providers.get("main") {
        Some(main) => main.clone(),
        None => {
            let unset: Arc<dyn Provider> = Arc::new(llm::Unconfigured);
            providers.insert("main".into(), unset.clone());
            unset
        }
    };
    // With Colang dialog flows, the dialog runtime answers in front of the
    // main model; everything downstream streams from it unchanged.
    // Without `define user` examples NeMo asks the main model directly (its
    // flows may still be rails).
    let answerer = answerer(
        config,
        (dialog.clone(), &providers),
        main,
        settings,
        &mut warnings,
    )?;
    if let Some(w) = otlp_warning(config) {
        warnings.push(w);
    }
    let sources = rails::Sources {
        providers: &providers,
        templates: settings.templates,
        dialog: dialog.as_ref(),
        actions_server: settings.actions_server.as_ref(),
    };
    let mut rails = rails::build(config, sources)?;
    rails.warnings.extend(warnings);
    Ok(Built { answerer, rails })
}

/// What answers a turn: the dialog runtime with `define user` examples (NeMo
/// asks the main model directly without them, the flows may still be rails),
/// else the main model, with the knowledge base's chunks when there is one.
fn answerer(
    config: &Config,
    (dialog, providers): (Option<Arc<Dialog>>, &rails::Providers),
    main: Arc<dyn Provider>,
    settings: &BuildSettings,
    warnings: &mut Vec<String>,
) -> Result<Arc<dyn Answerer>, ConfigError> {
    // Colang 2's interaction language answers in front of the main model
    // (with the knowledge base, when it has one).
    let server = config
        .actions_server_url()
        .or(settings.actions_server.as_ref());
    let interaction = dialog::colang2::Interaction::load(config, server.is_some())?;
    let sources = rails::Sources {
        providers,
        templates: settings.templates,
        dialog: dialog.as_ref(),
        actions_server: settings.actions_server.as_ref(),
    };
    let retrieval = rails::build_stage(config, sources, rails::Stage::Retrieval, warnings)?;
    let retrieval = rails::RetrievalRails::new(retrieval);
    let dialog = dialog.filter(|d| !d.users.is_empty());
    let embedder = match dialog.is_some() || !config.knowledge_base().is_empty() {
        true => dialog_embedder(config, &settings.upstream, warnings)?,
        false => None,
    };
    // The knowledge base's own embeddings model, else the dialog's.
    let kb_embedder = match config.kb_embeddings() {
        Some(m) => llm::build_embedder(m, &settings.upstream)?,
        None => embedder.clone(),
    };
    let kb = crate::kb::KnowledgeBase::load(config, kb_embedder)?;
    if let Some(flows) = interaction {
        let answer: Arc<dyn Answerer> = match kb.is_some() || !retrieval.is_empty() {
            true => Arc::new(super::answer::KbAnswer {
                model: main.clone(),
                kb,
                retrieval,
            }),
            false => Arc::new(ModelAnswer(main.clone())),
        };
        return interaction_runtime(config, flows, server, (main, answer));
    }
    Ok(match (dialog, kb) {
        (Some(dialog), kb) => {
            let server = dialog_actions(config, &dialog, settings)?;
            let sources = rails::Sources {
                providers,
                templates: settings.templates,
                dialog: None,
                actions_server: settings.actions_server.as_ref(),
            };
            let actions = rails::dialog_actions(config, sources, &dialog, server, warnings)?;
            Arc::new(dialog::DialogRuntime::new(
                config,
                dialog,
                main,
                (embedder, kb),
                (actions, retrieval),
                settings.templates,
            )?)
        }
        // A context message's chunks go through the retrieval rails too.
        (None, kb) if kb.is_some() || !retrieval.is_empty() => Arc::new(super::answer::KbAnswer {
            model: main,
            kb,
            retrieval,
        }),
        (None, _) => Arc::new(ModelAnswer(main)),
    })
}

/// The Colang 2 interaction flows, their actions on the actions server at
/// `server` (if any), with the main model and what answers for it.
fn interaction_runtime(
    config: &Config,
    flows: dialog::colang2::Interaction,
    server: Option<&reqwest::Url>,
    (main, answer): (Arc<dyn Provider>, Arc<dyn Answerer>),
) -> Result<Arc<dyn Answerer>, ConfigError> {
    let actions: Arc<dyn dialog::Actions> = match server {
        Some(url) => Arc::new(
            rails::ActionsServer::connect(url, config.action_files())
                .map_err(|e| ConfigError::invalid(config.main_file(), "actions_server_url", e))?,
        ),
        None => Arc::new(dialog::NoActions),
    };
    let runtime = dialog::colang2::InteractionRuntime::new(flows, config, (main, actions, answer))?;
    Ok(Arc::new(runtime))
}

/// Where the dialog flows' `execute` runs: the actions server, or nowhere
/// (refused when a flow executes an action).
fn dialog_actions(
    config: &Config,
    dialog: &Dialog,
    settings: &BuildSettings,
) -> Result<Arc<dyn dialog::Actions>, ConfigError> {
    if let Some(url) = config
        .actions_server_url()
        .or(settings.actions_server.as_ref())
    {
        let server = rails::ActionsServer::connect(url, config.action_files())
            .map_err(|e| ConfigError::invalid(config.main_file(), "actions_server_url", e))?;
        return Ok(Arc::new(server));
    }
    for flow in &dialog.flows {
        if let Some(action) = dialog::first_action(dialog, &flow.steps) {
            return Err(ConfigError::invalid(
                &flow.file,
                format!("line {}", flow.line),
                rails::needs_actions_server(&action),
            ));
        }
    }
    Ok(Arc::new(dialog::NoActions))
}

/// Why the config's OpenTelemetry tracing adapter will not export, if it will not.
fn otlp_warning(config: &Config) -> Option<String> {
    if !config.tracing().is_some_and(|t| t.opentelemetry) {
        return None;
    }
    let why = if !cfg!(feature = "otlp") {
        Some("this build has no OTLP export (build with `--features otlp`)")
    } else if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() {
        Some("OTEL_EXPORTER_OTLP_ENDPOINT is not set")
    } else {
        None
    };
    if let Some(why) = why {
        return Some(format!(
            "{}: `tracing.adapters`: the OpenTelemetry adapter is streamguard's OTLP span export, and {why}",
            config.relative(&config.main_file()).display()
        ));
    }
    None
}

/// The dialog's embeddings model, with warnings about what of `rails.dialog`
/// it cannot follow.
fn dialog_embedder(
    config: &Config,
    upstream: &llm::UpstreamSettings,
    warnings: &mut Vec<String>,
) -> Result<Option<Arc<dyn llm::Embedder>>, ConfigError> {
    let file = config.relative(&config.main_file());
    let embedder = match config.model_of_type("embeddings") {
        Some(m) => {
            let built = llm::build_embedder(m, upstream)?;
            if built.is_none() {
                let at = config.relative(m.source());
                warnings.push(format!(
                    "{}: `{}`: streamguard has no client for the embeddings engine of `{}`; the dialog ranks its examples lexically (BM25)",
                    at.display(),
                    m.key(),
                    m.model()
                ));
            }
            built
        }
        None => None,
    };
    let d = config.dialog_settings();
    if d.embeddings_only && embedder.is_none() {
        warnings.push(format!(
            "{}: `rails.dialog.user_messages.embeddings_only`: needs an embeddings model streamguard calls (engine openai, nim, azure, …); user intents are generated by the LLM (unless the dialog defines one intent: then it is that one)",
            file.display()
        ));
    }
    if d.single_call && !d.fallback_to_multiple_calls {
        warnings.push(format!(
            "{}: `rails.dialog.single_call.fallback_to_multiple_calls: False` is not followed: a single call whose answer cannot be read falls back to multiple calls",
            file.display()
        ));
    }
    Ok(embedder)
}

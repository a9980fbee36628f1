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

/// The first file of the config streamguard cannot use: Python actions or
/// a knowledge base.
fn unsupported_file(config: &Config) -> Option<ConfigError> {
    let actions = config.action_files().first().map(|f| {
        ConfigError::invalid(
            f,
            "actions",
            "custom Python actions are not supported; use the built-in rail flows",
        )
    });
    let kb = config.knowledge_base().first().map(|d| {
        ConfigError::invalid(
            &d.path,
            "kb",
            "knowledge bases (kb/ retrieval) are not supported",
        )
    });
    match (actions, kb) {
        (Some(a), Some(k)) => Some(if file_of(&k) < file_of(&a) { k } else { a }),
        (a, k) => a.or(k),
    }
}

/// The config's dialog, unless a file before the failing one is refused.
fn dialog_of(config: &Config) -> Result<Option<Dialog>, ConfigError> {
    let parsed = dialog::parse(config.colang_sources());
    match (parsed, unsupported_file(config)) {
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
    let dialog = dialog_of(config)?;
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
    let answerer: Arc<dyn Answerer> = match dialog {
        Some(dialog) => {
            let embedder = dialog_embedder(config, upstream, &mut warnings)?;
            Arc::new(dialog::DialogRuntime::new(
                config,
                dialog,
                main,
                embedder,
                settings.templates,
            )?)
        }
        None => Arc::new(ModelAnswer(main)),
    };
    if config.tracing().is_some_and(|t| t.opentelemetry) {
        let why = if !cfg!(feature = "otlp") {
            Some("this build has no OTLP export (build with `--features otlp`)")
        } else if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() {
            Some("OTEL_EXPORTER_OTLP_ENDPOINT is not set")
        } else {
            None
        };
        if let Some(why) = why {
            warnings.push(format!(
                "{}: `tracing.adapters`: the OpenTelemetry adapter is streamguard's OTLP span export, and {why}",
                config.relative(&config.main_file()).display()
            ));
        }
    }
    let mut rails = rails::build(config, &providers, settings.templates)?;
    rails.warnings.extend(warnings);
    Ok(Built { answerer, rails })
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
            "{}: `rails.dialog.user_messages.embeddings_only`: needs an embeddings model streamguard calls (engine openai, nim, azure, …); user intents are generated by the LLM",
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

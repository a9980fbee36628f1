//! What the server adds to every config: a default main model for
//! rails-only configs and what a config without a `streaming` key means,
//! from flags or a server config file (flags win).

use std::path::PathBuf;

use anyhow::Context;

use crate::config::{self, ModelConfig, ServerFile};

#[derive(Debug, Clone, clap::Args)]
pub struct DefaultsArgs {
    /// `on`: a config without a `streaming` key streams, as in NeMo ≥ 0.20
    /// (`off`, the default: precondition 1 asks for `streaming: True`).
    #[arg(long, value_parser = on_off, env = "STREAMGUARD_STREAMING_DEFAULT")]
    streaming_default: Option<bool>,
    /// The main model of configs without one (rails-only configs), by name.
    #[arg(long, env = "MAIN_MODEL_NAME")]
    main_model: Option<String>,
    /// The engine of --main-model and of models a request names for a
    /// rails-only config.
    #[arg(long, default_value = "openai", env = "MAIN_MODEL_ENGINE")]
    main_engine: String,
    /// The endpoint of --main-model (its `parameters.base_url`).
    #[arg(long, env = "MAIN_MODEL_BASE_URL")]
    main_base_url: Option<String>,
    /// The env var holding --main-model's API key.
    #[arg(long)]
    main_api_key_env: Option<String>,
    /// Serve a config's own main model whatever model a request names
    /// (a rails-only config still takes the request's).
    #[arg(long, env = "STREAMGUARD_PIN_MAIN_MODEL")]
    pin_main_model: bool,
    /// NeMo's actions server for configs without their own
    /// `actions_server_url` (`execute` of custom actions).
    #[arg(long, env = "STREAMGUARD_ACTIONS_SERVER_URL")]
    actions_server_url: Option<String>,
    /// A server config file: `models:` (the default main model) and
    /// `streaming_default: on|off`.
    #[arg(long, env = "STREAMGUARD_SERVER_CONFIG")]
    server_config: Option<PathBuf>,
}

fn on_off(s: &str) -> Result<bool, String> {
    config::parse_on_off(s).ok_or_else(|| format!("`{s}` is not `on` or `off`"))
}

/// The server's defaults: whether a config without the key streams, and
/// the default main model.
pub struct Defaults {
    pub streaming: bool,
    pub main_model: Option<ModelConfig>,
    /// The engine and endpoint of models requests name (without --main-model).
    pub request_model: Option<ModelConfig>,
    /// `--pin-main-model`.
    pub pin_main_model: bool,
    /// `--actions-server-url`.
    pub actions_server: Option<reqwest::Url>,
}

impl DefaultsArgs {
    pub fn resolve(&self) -> anyhow::Result<Defaults> {
        let file = match &self.server_config {
            Some(path) => ServerFile::load(path).context("--server-config")?,
            None => ServerFile::default(),
        };
        // Without --main-model, the other flags still name the engine and
        // endpoint of the models requests name for rails-only configs.
        let from_flags = |name: &str| {
            config::main_model_from_flags(
                &self.main_engine,
                name,
                self.main_base_url.as_deref(),
                self.main_api_key_env.as_deref(),
            )
        };
        let flags = match &self.main_model {
            Some(name) => Some(from_flags(name).context("--main-model")?),
            None => None,
        };
        let endpoint_only = self.main_model.is_none()
            && (self.main_base_url.is_some()
                || self.main_api_key_env.is_some()
                || self.main_engine != "openai");
        let request_model = match endpoint_only {
            true => Some(from_flags("request-model").context("--main-engine")?),
            false => None,
        };
        Ok(Defaults {
            streaming: self
                .streaming_default
                .or(file.streaming_default)
                .unwrap_or(false),
            main_model: flags.or(file.main_model),
            request_model,
            pin_main_model: self.pin_main_model,
            actions_server: match &self.actions_server_url {
                Some(u) => Some(
                    reqwest::Url::parse(u)
                        .ok()
                        .filter(|u| matches!(u.scheme(), "http" | "https"))
                        .with_context(|| {
                            format!("--actions-server-url: `{u}` is not an http(s) URL")
                        })?,
                ),
                None => None,
            },
        })
    }
}

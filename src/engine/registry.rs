//! The set of loaded configs a server serves, by id.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Arc, Mutex},
};

use super::{BuildSettings, Guardrails};
use crate::{
    config::{self, Config, ConfigError},
    error::Error,
};

/// The longest config id a request may name.
const MAX_ID_LEN: usize = 128;

/// The most configs one request may compose.
const MAX_COMPOSED: usize = 16;

/// Composed configs kept built, most recent first.
const MAX_COMPOSITIONS: usize = 64;

/// Loaded configs by id, with an optional default for requests without one.
#[derive(Debug, Clone)]
pub struct Registry {
    configs: BTreeMap<String, Guardrails>,
    default_id: Option<String>,
    settings: BuildSettings,
    /// Compositions built for requests (`config_ids`), by composed id.
    composed: Arc<Mutex<Vec<(String, Guardrails)>>>,
}

impl Registry {
    /// Loads every config under `root` (see [`config::load_root`]). In
    /// single-config mode that config is the default.
    pub fn load(root: &Path) -> Result<Self, ConfigError> {
        Self::load_with(root, &BuildSettings::default())
    }

    /// [`Registry::load`] with these build settings (upstream timeouts and
    /// retries, the template budget). Every broken
    /// config is reported, not just the first.
    pub fn load_with(root: &Path, settings: &BuildSettings) -> Result<Self, ConfigError> {
        let mut configs = BTreeMap::new();
        let mut errors = Vec::new();
        for (_, built) in Self::load_each(root, settings)? {
            match built {
                Ok(g) => {
                    configs.insert(g.config().id().to_string(), g);
                }
                Err(e) => errors.push(e),
            }
        }
        if let Some(e) = ConfigError::from_list(errors) {
            return Err(e);
        }
        let default_id = if config::is_single_config(root) {
            configs.keys().next().cloned()
        } else {
            None
        };
        Ok(Registry {
            configs,
            default_id,
            settings: settings.clone(),
            composed: Arc::default(),
        })
    }

    /// Loads and builds each config under `root` on its own (for `check`,
    /// which reports every one). Fails only when `root` itself is unusable.
    pub fn load_each(
        root: &Path,
        settings: &BuildSettings,
    ) -> Result<Vec<config::Loaded<Guardrails>>, ConfigError> {
        Ok(config::load_each(root)?
            .into_iter()
            .map(|(id, c)| (id, c.and_then(|c| Guardrails::with_settings(c, settings))))
            .collect())
    }

    /// Loads `root` again, config by config: every config that loads is
    /// served in its new version, one that does not keeps its previous one
    /// (a new broken one is not served), and one whose directory is gone is
    /// dropped. Returns the new registry and, per config that failed, its
    /// error. Fails only when `root` itself is unusable.
    pub fn reload(
        &self,
        root: &Path,
        settings: &BuildSettings,
    ) -> Result<(Self, Vec<(String, ConfigError)>), ConfigError> {
        let mut configs = BTreeMap::new();
        let mut failed = Vec::new();
        for (id, built) in Self::load_each(root, settings)? {
            match built {
                Ok(g) => {
                    configs.insert(id, g);
                }
                Err(e) => {
                    if let Some(previous) = self.configs.get(&id) {
                        configs.insert(id.clone(), previous.clone());
                    }
                    failed.push((id, e));
                }
            }
        }
        let default_id = self
            .default_id
            .clone()
            .filter(|d| configs.contains_key(d))
            .or_else(|| {
                config::is_single_config(root)
                    .then(|| configs.keys().next().cloned())
                    .flatten()
            });
        Ok((
            Registry {
                configs,
                default_id,
                settings: settings.clone(),
                composed: Arc::default(),
            },
            failed,
        ))
    }

    /// A registry of already-built configs.
    pub fn from_configs(configs: impl IntoIterator<Item = Guardrails>) -> Self {
        Registry {
            configs: configs
                .into_iter()
                .map(|g| (g.config().id().to_string(), g))
                .collect(),
            default_id: None,
            settings: BuildSettings::default(),
            composed: Arc::default(),
        }
    }

    /// Sets the config used when a request names none.
    pub fn with_default(mut self, id: Option<String>) -> Result<Self, Error> {
        if let Some(id) = &id {
            self.get(id)?;
        }
        if id.is_some() {
            self.default_id = id;
        }
        Ok(self)
    }

    /// The config for `id` (or the default for an empty id).
    pub fn get(&self, id: &str) -> Result<&Guardrails, Error> {
        self.get_visible(id, &|_| true)
    }

    /// [`Registry::get`] for a caller that may see only the configs
    /// `visible` accepts: errors list only those (an API key scoped to one
    /// config learns nothing of the others).
    pub fn get_visible(
        &self,
        id: &str,
        visible: &dyn Fn(&str) -> bool,
    ) -> Result<&Guardrails, Error> {
        let id = if id.is_empty() {
            self.default_id.as_deref().ok_or_else(|| {
                Error::invalid(
                    "config_id",
                    format!(
                        "is required (this server has no default config); available: {}",
                        self.known(visible)
                    ),
                )
            })?
        } else {
            id
        };
        if id.len() > MAX_ID_LEN {
            return Err(Error::invalid(
                "config_id",
                format!("is longer than {MAX_ID_LEN} characters"),
            ));
        }
        let valid = id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !id.starts_with('.');
        if !valid {
            return Err(Error::invalid(
                "config_id",
                format!(
                    "`{}` is not a config id (letters, digits, `-`, `_`, `.`; no paths)",
                    crate::error::echo(id)
                ),
            ));
        }
        self.configs.get(id).ok_or_else(|| Error::ConfigNotFound {
            id: id.to_string(),
            known: self.known(visible),
        })
    }

    /// The config serving a request that names `ids`: none (the default),
    /// one, or several to compose in order (NeMo's `config_ids`), each of
    /// which `visible` must accept. A composition is built once and kept.
    pub fn resolve(
        &self,
        ids: &[String],
        visible: &dyn Fn(&str) -> bool,
    ) -> Result<Guardrails, Error> {
        let parts = match ids {
            [] => return self.get_visible("", visible).cloned(),
            [one] => return self.get_visible(one, visible).cloned(),
            _ if ids.len() > MAX_COMPOSED => {
                return Err(Error::invalid(
                    "config_ids",
                    format!("composes at most {MAX_COMPOSED} configs"),
                ));
            }
            many => many
                .iter()
                .map(|id| self.get_visible(id, visible))
                .collect::<Result<Vec<_>, _>>()?,
        };
        let id = ids.join("+");
        if let Ok(mut cache) = self.composed.lock()
            && let Some(at) = cache.iter().position(|(k, _)| *k == id)
        {
            let hit = cache.remove(at);
            let found = hit.1.clone();
            cache.insert(0, hit);
            return Ok(found);
        }
        let configs: Vec<&Config> = parts.iter().map(|g| g.config()).collect();
        let composed = Config::compose(&configs)
            .and_then(|c| Guardrails::with_settings(c, &self.settings))
            .map_err(|e| {
                // Files relative to the config root, never server paths.
                let shown = match &e {
                    ConfigError::Invalid { file, key, message } => format!(
                        "{}: `{key}`: {message}",
                        configs[0].relative(file).display()
                    ),
                    other => other.to_string(),
                };
                Error::invalid("config_ids", format!("cannot compose `{id}`: {shown}"))
            })?;
        if let Ok(mut cache) = self.composed.lock() {
            cache.retain(|(k, _)| *k != id);
            cache.insert(0, (id, composed.clone()));
            cache.truncate(MAX_COMPOSITIONS);
        }
        Ok(composed)
    }

    /// All configs, sorted by id.
    pub fn iter(&self) -> impl Iterator<Item = &Guardrails> {
        self.configs.values()
    }

    /// The default config id, if any.
    pub fn default_id(&self) -> Option<&str> {
        self.default_id.as_deref()
    }

    fn known(&self, visible: &dyn Fn(&str) -> bool) -> String {
        self.configs
            .keys()
            .map(String::as_str)
            .filter(|id| visible(id))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

//! Which main model serves a request: the config's own, the server's
//! default (for a rails-only config), or the one the request names in
//! `model`, which replaces only the model's name, as NeMo's server does.
//! A config built for another model name is kept in a small LRU per config,
//! so a request names a model at the cost of a lookup, not a build.

use std::{borrow::Cow, sync::Mutex};

use super::Guardrails;
use crate::{
    config::{self, ModelConfig},
    error::Error,
};

/// Builds kept per config for other model names.
const MAX_VARIANTS: usize = 32;

/// The longest model name a request may give.
const MAX_MODEL_NAME: usize = 256;

/// The configs built for other main model names, most recent first.
#[derive(Debug, Default)]
pub(super) struct Variants(Mutex<Vec<(Box<str>, Guardrails)>>);

impl Variants {
    fn get(&self, name: &str) -> Option<Guardrails> {
        let mut list = self.0.lock().ok()?;
        let at = list.iter().position(|(n, _)| &**n == name)?;
        let hit = list.remove(at);
        let found = hit.1.clone();
        list.insert(0, hit);
        Some(found)
    }

    fn put(&self, name: &str, built: Guardrails) {
        if let Ok(mut list) = self.0.lock() {
            list.retain(|(n, _)| &**n != name);
            list.insert(0, (name.into(), built));
            list.truncate(MAX_VARIANTS);
        }
    }
}

/// A model name as a request may give it.
fn check_name(name: &str) -> Result<(), Error> {
    if name.len() > MAX_MODEL_NAME {
        return Err(Error::invalid(
            "model",
            format!("is longer than {MAX_MODEL_NAME} bytes"),
        ));
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::invalid(
            "model",
            format!(
                "`{}` is not a model name (no spaces or control characters)",
                crate::error::echo(name)
            ),
        ));
    }
    Ok(())
}

impl Guardrails {
    /// The engine that serves a request naming `model` (`None` or empty:
    /// the config's main model, or the server's default one).
    pub(super) fn for_model(&self, model: Option<&str>) -> Result<Cow<'_, Guardrails>, Error> {
        let inner = &self.inner;
        let main = inner.config.main_model();
        let name = match model.filter(|m| !m.is_empty()) {
            None if main.is_some() => return Ok(Cow::Borrowed(self)),
            // Colang 2 flows answer without a model (as NeMo's examples do);
            // `llm continuation` then says the config has none.
            None if inner.config.colang_2_interaction().is_some() => {
                return Ok(Cow::Borrowed(self));
            }
            None => {
                return Err(Error::NoMainModel {
                    id: inner.config.id().to_string(),
                });
            }
            Some(name) if main.is_some_and(|m| m.model() == name) => {
                return Ok(Cow::Borrowed(self));
            }
            // Pinned: the config's own model serves, and the reply names it.
            Some(_) if main.is_some() && inner.settings.pin_main_model => {
                return Ok(Cow::Borrowed(self));
            }
            Some(name) => name,
        };
        check_name(name)?;
        if inner.custom_main {
            return Err(Error::invalid(
                "model",
                format!(
                    "config `{}` serves the main model its application gave it; it cannot call `{}`",
                    inner.config.id(),
                    crate::error::echo(name)
                ),
            ));
        }
        if let Some(built) = inner.variants.get(name) {
            return Ok(Cow::Owned(built));
        }
        let entry = match (main, &inner.settings.request_model) {
            (Some(m), _) | (None, Some(m)) => m.renamed(name),
            (None, None) => config::request_main_model(name)?,
        };
        let built = self.variant(entry)?;
        inner.variants.put(name, built.clone());
        Ok(Cow::Owned(built))
    }

    fn variant(&self, main: ModelConfig) -> Result<Guardrails, Error> {
        let config = self.inner.config.clone().with_main_model(main);
        Ok(Guardrails::build(config, None, &self.inner.settings)?)
    }
}

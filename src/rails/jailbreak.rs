//! Jailbreak detection as NeMo's library runs it, over HTTP: `jailbreak
//! detection heuristics` asks NeMo's jailbreak-detection server
//! (`/heuristics`, length/perplexity and prefix/suffix perplexity
//! thresholds); `jailbreak detection model` asks the NemoGuard
//! JailbreakDetect NIM (`nim_base_url` + `nim_server_endpoint`,
//! `{"input": …}`, a bearer key) or that server's `/model`. Both read
//! `{"jailbreak": bool}`. NeMo's in-process fallbacks (GPT-2 perplexity, a
//! local classifier) do not run here: the config must name a server.
//!
//! NeMo lets a request through when the service fails or answers without
//! `jailbreak`; streamguard blocks it as a rail that could not run
//! (`rail_execution_failure`), as it does for every other rail.

use std::sync::Arc;

use futures_util::{FutureExt, future::BoxFuture};
use serde::Deserialize;
use serde_json::json;

use super::{
    Rail, RailError, RailInput, Stage, Verdict,
    catalog::BuildContext,
    service::{ServiceClient, settings},
};
use crate::config::{ConfigError, FlowRef};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    server_endpoint: Option<String>,
    #[serde(alias = "lp_threshold")]
    length_per_perplexity_threshold: Option<f64>,
    #[serde(alias = "ps_ppl_threshold")]
    prefix_suffix_perplexity_threshold: Option<f64>,
    nim_base_url: Option<String>,
    nim_server_endpoint: Option<String>,
    api_key: Option<String>,
    api_key_env_var: Option<String>,
    /// Deprecated in NeMo: `http://{nim_url}:{nim_port}/v1`.
    nim_url: Option<String>,
    nim_port: Option<u16>,
    /// Deprecated in NeMo and unused.
    embedding: Option<String>,
    /// streamguard extension: the service call's time limit, in seconds.
    timeout: Option<f64>,
}

/// Where a jailbreak flow asks.
#[derive(Debug)]
enum Ask {
    Heuristics { lp: f64, ps: f64 },
    Model,
    Nim { key: Option<String> },
}

#[derive(Debug)]
pub struct Jailbreak {
    flow: String,
    ask: Ask,
    url: reqwest::Url,
    client: ServiceClient,
    /// The `models[].cache` of a `type: jailbreak_detection` entry (NeMo's `nemoguards_cache`).
    cache: Option<crate::llm::cache::ResultCache<Verdict>>,
}

/// NeMo's defaults for the heuristics' thresholds.
const LP_THRESHOLD: f64 = 89.79;
const PS_PPL_THRESHOLD: f64 = 1845.65;

/// The server's route for `route` (`heuristics`, `model`): an endpoint given
/// with either route is taken as that server (NeMo's own example names the
/// `/heuristics` URL for both flows), else the route is appended.
fn server_route(endpoint: &str, route: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    let base = ["/heuristics", "/model"]
        .iter()
        .find_map(|r| base.strip_suffix(r))
        .unwrap_or(base);
    format!("{base}/{route}")
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The NIM's key: `api_key`, else the `api_key_env_var` variable.
fn nim_key(s: &Settings, ctx: &mut BuildContext<'_>, file: &std::path::Path) -> Option<String> {
    match (&s.api_key, &s.api_key_env_var) {
        (Some(k), _) => Some(k.clone()),
        (None, Some(var)) => {
            let k = std::env::var(var).ok();
            if k.is_none() {
                ctx.warnings.push(format!(
                    "{}: `rails.config.jailbreak_detection.api_key_env_var`: the variable `{var}` is not set; calls go without a key",
                    ctx.config.relative(file).display()
                ));
            }
            k
        }
        (None, None) => None,
    }
}

/// What a flow asks and where.
fn target(
    s: &Settings,
    ctx: &mut BuildContext<'_>,
    flow: &FlowRef,
    model: bool,
) -> Result<(Ask, String), ConfigError> {
    let file = ctx.config.rail_settings_file("jailbreak_detection");
    let bad = |k: &str, m: String| {
        ConfigError::invalid(&file, format!("rails.config.jailbreak_detection.{k}"), m)
    };
    let nim = non_empty(&s.nim_base_url).map(str::to_string).or_else(|| {
        non_empty(&s.nim_url).map(|h| format!("http://{h}:{}/v1", s.nim_port.unwrap_or(8000)))
    });
    Ok(match (model, nim, non_empty(&s.server_endpoint)) {
        (true, Some(nim), _) => {
            let path = non_empty(&s.nim_server_endpoint).unwrap_or("classify");
            let base = reqwest::Url::parse(&format!("{}/", nim.trim_end_matches('/')))
                .map_err(|e| bad("nim_base_url", format!("`{nim}` is not a URL: {e}")))?;
            let url = base
                .join(path.trim_start_matches('/'))
                .map_err(|e| bad("nim_server_endpoint", e.to_string()))?;
            let key = nim_key(s, ctx, &file);
            (Ask::Nim { key }, url.to_string())
        }
        (true, None, Some(server)) => (Ask::Model, server_route(server, "model")),
        (false, _, Some(server)) => (
            Ask::Heuristics {
                lp: s.length_per_perplexity_threshold.unwrap_or(LP_THRESHOLD),
                ps: s
                    .prefix_suffix_perplexity_threshold
                    .unwrap_or(PS_PPL_THRESHOLD),
            },
            server_route(server, "heuristics"),
        ),
        (_, _, None) => {
            let also = if model {
                " (or `nim_base_url` for the NemoGuard JailbreakDetect NIM)"
            } else {
                ""
            };
            return Err(ConfigError::invalid(
                &flow.source,
                &flow.key,
                format!(
                    "`{}` runs NeMo's in-process models, which streamguard does not: set rails.config.jailbreak_detection.server_endpoint to NeMo's jailbreak detection server{also}",
                    flow.name
                ),
            ));
        }
    })
}

fn build(
    ctx: &mut BuildContext<'_>,
    flow: &FlowRef,
    model: bool,
) -> Result<Arc<dyn Rail>, ConfigError> {
    let config = ctx.config;
    let s: Settings = config.rail_settings("jailbreak_detection")?;
    let file = config.rail_settings_file("jailbreak_detection");
    let bad = |k: &str, m: String| {
        ConfigError::invalid(&file, format!("rails.config.jailbreak_detection.{k}"), m)
    };
    if s.embedding.is_some() {
        ctx.warnings.push(format!(
            "{}: `rails.config.jailbreak_detection.embedding` is deprecated in NeMo and not used",
            config.relative(&file).display()
        ));
    }
    let (ask, url) = target(&s, ctx, flow, model)?;
    let url = reqwest::Url::parse(&url)
        .map_err(|e| bad("server_endpoint", format!("`{url}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(
            "server_endpoint",
            "must start with http:// or https://".into(),
        ));
    }
    let timeout = settings::timeout(s.timeout, &file, "jailbreak_detection")?;
    let service = match ask {
        Ask::Nim { .. } => "NemoGuard JailbreakDetect",
        _ => "jailbreak detection server",
    };
    let client = settings::client(service, flow, timeout)?;
    // NeMo caches the model's verdicts only.
    let cache = config
        .model_of_type("jailbreak_detection")
        .filter(|_| model)
        .and_then(|m| m.cache())
        .map(|c| crate::llm::cache::ResultCache::new("jailbreak_detection", c));
    Ok(Arc::new(Jailbreak {
        flow: flow.name.clone(),
        ask,
        url,
        client,
        cache,
    }))
}

pub(super) fn heuristics(
    ctx: &mut BuildContext<'_>,
    flow: &FlowRef,
    _: Stage,
) -> Result<Arc<dyn Rail>, ConfigError> {
    build(ctx, flow, false)
}

pub(super) fn model(
    ctx: &mut BuildContext<'_>,
    flow: &FlowRef,
    _: Stage,
) -> Result<Arc<dyn Rail>, ConfigError> {
    build(ctx, flow, true)
}

impl Jailbreak {
    async fn decide(&self, prompt: &str) -> Result<Verdict, RailError> {
        if let Some(hit) = self.cache.as_ref().and_then(|c| c.get(prompt)) {
            return Ok(hit);
        }
        let verdict = self.ask_service(prompt).await?;
        if let Some(c) = &self.cache {
            c.put(prompt, verdict.clone());
        }
        Ok(verdict)
    }

    async fn ask_service(&self, prompt: &str) -> Result<Verdict, RailError> {
        let (body, key) = match &self.ask {
            Ask::Heuristics { lp, ps } => (
                json!({"prompt": prompt, "lp_threshold": lp, "ps_ppl_threshold": ps}),
                None,
            ),
            Ask::Model => (json!({"prompt": prompt}), None),
            Ask::Nim { key } => (json!({"input": prompt}), key.as_deref()),
        };
        let answer = self.client.post_json(&self.url, &body, key).await?;
        let Some(jailbreak) = answer.get("jailbreak").and_then(|j| j.as_bool()) else {
            return Err(RailError(format!(
                "{}: the answer has no boolean `jailbreak` field",
                self.flow
            )));
        };
        if !jailbreak {
            return Ok(Verdict::Allow);
        }
        let score = answer
            .get("score")
            .and_then(|s| s.as_f64())
            .map(|s| format!(" (score {s:.3})"))
            .unwrap_or_default();
        Ok(Verdict::Block {
            reason: format!("jailbreak attempt detected{score}"),
        })
    }
}

impl Rail for Jailbreak {
    fn flow(&self) -> &str {
        &self.flow
    }

    fn check<'a>(&'a self, input: RailInput<'a>) -> BoxFuture<'a, Result<Verdict, RailError>> {
        self.decide(input.user_input).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_route_is_found_from_either_url() {
        assert_eq!(
            server_route("http://h:1337/heuristics", "model"),
            "http://h:1337/model"
        );
        assert_eq!(
            server_route("http://h:1337/", "heuristics"),
            "http://h:1337/heuristics"
        );
        assert_eq!(
            server_route("http://h:1337/model", "model"),
            "http://h:1337/model"
        );
    }
}

//! The rails: built-in checks that run on the user's message (input rails)
//! and on the answer (output rails).
//!
//! Every rail implements one trait, [`Rail`]; the [`CATALOG`] lists the flow
//! names a config may use, and [`build`] turns a config's flows into rails.
//! An unknown flow is a config error that lists the known ones.

mod judge;
mod self_check;

use std::{collections::BTreeMap, fmt, sync::Arc};

use futures_util::future::BoxFuture;

use crate::{
    config::{Config, ConfigError, FlowRef},
    llm::Provider,
};

pub use judge::{Judge, parse_yes_no};

/// Where a rail runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// On the user's message, before the main LLM is called.
    Input,
    /// On the answer (whole, or chunk windows while streaming).
    Output,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Input => "input",
            Stage::Output => "output",
        })
    }
}

/// A flow name streamguard knows, with what it needs to run.
#[derive(Debug, Clone, Copy)]
pub struct FlowSpec {
    pub name: &'static str,
    pub stage: Stage,
    /// What the config must provide (shown in errors and the README).
    pub needs: &'static str,
}

/// Every built-in flow.
pub const CATALOG: &[FlowSpec] = &[
    FlowSpec {
        name: "self check input",
        stage: Stage::Input,
        needs: "prompt `self_check_input`; judge model `type: self_check_input` or the main model",
    },
    FlowSpec {
        name: "self check output",
        stage: Stage::Output,
        needs: "prompt `self_check_output`; judge model `type: self_check_output` or the main model",
    },
];

fn known_flows(stage: Stage) -> String {
    CATALOG
        .iter()
        .filter(|s| s.stage == stage)
        .map(|s| format!("`{}` (needs {})", s.name, s.needs))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Checks that every configured flow is known for its stage.
pub fn validate_flows(config: &Config) -> Result<(), ConfigError> {
    for (stage, flows) in [
        (Stage::Input, &config.input.flows),
        (Stage::Output, &config.output.flows),
    ] {
        for flow in flows {
            let spec = CATALOG.iter().find(|s| s.name == flow.name);
            match spec {
                Some(s) if s.stage == stage => {}
                Some(s) => {
                    return Err(ConfigError::invalid(
                        &flow.source,
                        &flow.key,
                        format!(
                            "`{}` is an {} rail, not an {stage} rail",
                            flow.name, s.stage
                        ),
                    ));
                }
                None => {
                    return Err(ConfigError::invalid(
                        &flow.source,
                        &flow.key,
                        format!(
                            "unknown {stage} rail flow `{}`; streamguard knows: {}",
                            flow.name,
                            known_flows(stage)
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// What a rail sees.
#[derive(Debug, Clone, Copy)]
pub struct RailInput<'a> {
    /// The last user message.
    pub user_input: &'a str,
    /// The answer (or the window of it) for output rails.
    pub bot_response: Option<&'a str>,
}

/// A rail's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let the message through.
    Allow,
    /// Stop it; `reason` explains why (for logs and violations).
    Block { reason: String },
}

/// A rail could not decide (its judge failed, its prompt did not render).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct RailError(pub String);

/// One built-in rail.
pub trait Rail: Send + Sync + fmt::Debug {
    /// The flow name, as configured (`self check input`).
    fn flow(&self) -> &str;

    /// Checks the input and decides.
    fn check<'a>(&'a self, input: RailInput<'a>) -> BoxFuture<'a, Result<Verdict, RailError>>;
}

/// The providers of a config's model entries, by `type`.
pub type Providers = BTreeMap<String, Arc<dyn Provider>>;

/// The rails of one stage, in configured order.
pub type RailSet = Vec<Arc<dyn Rail>>;

/// Builds the rails of both stages (input, output), in configured order.
pub fn build(config: &Config, providers: &Providers) -> Result<(RailSet, RailSet), ConfigError> {
    let build_one = |flow: &FlowRef| -> Result<Arc<dyn Rail>, ConfigError> {
        match flow.name.as_str() {
            "self check input" => Ok(Arc::new(self_check::SelfCheck::new(
                config,
                providers,
                flow,
                Stage::Input,
            )?)),
            "self check output" => Ok(Arc::new(self_check::SelfCheck::new(
                config,
                providers,
                flow,
                Stage::Output,
            )?)),
            // `validate_flows` has already refused unknown names.
            other => Err(ConfigError::invalid(
                &flow.source,
                &flow.key,
                format!("unknown flow `{other}`"),
            )),
        }
    };
    let input = config
        .input
        .flows
        .iter()
        .map(build_one)
        .collect::<Result<_, _>>()?;
    let output = config
        .output
        .flows
        .iter()
        .map(build_one)
        .collect::<Result<_, _>>()?;
    Ok((input, output))
}

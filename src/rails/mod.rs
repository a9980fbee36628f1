//! The rails: built-in checks that run on the user's message (input rails)
//! and on the answer (output rails).
//!
//! Every rail implements one trait, [`Rail`]; the [`CATALOG`] lists the flow
//! names a config may use, and [`build`] turns a config's flows into rails.
//! An unknown flow is a config error that lists the known ones. One file per
//! rail kind; `judge` holds what the LLM-judge rails share.

mod content_safety;
mod injection;
mod judge;
mod llama_guard;
mod regex_check;
mod self_check;
mod sensitive_data;
mod topic_safety;

use std::{collections::BTreeMap, fmt, sync::Arc};

use futures_util::future::BoxFuture;

use crate::{
    config::{Config, ConfigError, FlowRef},
    llm::{CallLog, ChatMessage, Provider},
};

pub use judge::{Judge, parse_content_safety, parse_nemoguard, parse_yes_no};
pub use sensitive_data::{Entity, Recognizers};

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
    /// Whether the rail may rewrite the text instead of allowing or blocking.
    pub rewrites: bool,
}

const fn spec(name: &'static str, stage: Stage, needs: &'static str) -> FlowSpec {
    FlowSpec {
        name,
        stage,
        needs,
        rewrites: false,
    }
}

/// Every built-in flow.
pub const CATALOG: &[FlowSpec] = &[
    spec(
        "self check input",
        Stage::Input,
        "prompt `self_check_input`; judge model `type: self_check_input`, else the main model",
    ),
    spec(
        "self check output",
        Stage::Output,
        "prompt `self_check_output`; judge model `type: self_check_output`, else the main model",
    ),
    spec(
        "content safety check input",
        Stage::Input,
        "`$model=<type>`, a model of that type, prompt `content_safety_check_input $model=<type>`",
    ),
    spec(
        "content safety check output",
        Stage::Output,
        "`$model=<type>`, a model of that type, prompt `content_safety_check_output $model=<type>`",
    ),
    spec(
        "topic safety check input",
        Stage::Input,
        "`$model=<type>`, a model of that type, prompt `topic_safety_check_input $model=<type>`",
    ),
    spec(
        "llama guard check input",
        Stage::Input,
        "a model `type: llama_guard`, prompt `llama_guard_check_input`",
    ),
    spec(
        "llama guard check output",
        Stage::Output,
        "a model `type: llama_guard`, prompt `llama_guard_check_output`",
    ),
    spec(
        "detect sensitive data on input",
        Stage::Input,
        "`rails.config.sensitive_data_detection.input.entities`",
    ),
    spec(
        "detect sensitive data on output",
        Stage::Output,
        "`rails.config.sensitive_data_detection.output.entities`",
    ),
    FlowSpec {
        rewrites: true,
        ..spec(
            "mask sensitive data on input",
            Stage::Input,
            "`rails.config.sensitive_data_detection.input.entities`",
        )
    },
    FlowSpec {
        rewrites: true,
        ..spec(
            "mask sensitive data on output",
            Stage::Output,
            "`rails.config.sensitive_data_detection.output.entities`",
        )
    },
    FlowSpec {
        rewrites: true,
        ..spec(
            "injection detection",
            Stage::Output,
            "`rails.config.injection_detection.injections` (sqli, template, code, xss) and `action` (reject, omit)",
        )
    },
    spec(
        "regex check input",
        Stage::Input,
        "`rails.config.regex_detection.input` (`patterns`, `keywords`, `case_insensitive`)",
    ),
    spec(
        "regex check output",
        Stage::Output,
        "`rails.config.regex_detection.output` (`patterns`, `keywords`, `case_insensitive`)",
    ),
];

/// The known flows of a stage, for error messages.
pub fn known_flows(stage: Stage) -> String {
    CATALOG
        .iter()
        .filter(|s| s.stage == stage)
        .map(|s| format!("\n  - `{}` (needs {})", s.name, s.needs))
        .collect()
}

/// The catalog entry of a flow name.
pub fn flow_spec(name: &str) -> Option<&'static FlowSpec> {
    CATALOG.iter().find(|s| s.name == name)
}

/// Checks that every configured flow is known for its stage, and that
/// rewriting rails are used where they can work.
pub fn validate_flows(config: &Config) -> Result<(), ConfigError> {
    for (stage, rails) in [
        (Stage::Input, &config.input),
        (Stage::Output, &config.output),
    ] {
        for flow in &rails.flows {
            let s = match flow_spec(&flow.name) {
                Some(s) if s.stage == stage => s,
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
                            "unknown {stage} rail flow `{}`; streamguard knows:{}",
                            flow.name,
                            known_flows(stage)
                        ),
                    ));
                }
            };
            if s.rewrites && rails.parallel && rails.flows.len() > 1 {
                return Err(ConfigError::invalid(
                    &flow.source,
                    &flow.key,
                    format!(
                        "`{}` rewrites the text, which parallel rails cannot combine; set `rails.{stage}.parallel: False`",
                        flow.name
                    ),
                ));
            }
            let streamed = stage == Stage::Output && config.output_streaming.enabled;
            let o = config.output_streaming;
            if s.rewrites && streamed && (o.stream_first || o.context_size != 0) {
                return Err(ConfigError::invalid(
                    config.main_file(),
                    "rails.output.streaming",
                    format!(
                        "`{}` rewrites the answer, which on a stream only works when nothing is sent before its \
                         window is rewritten and windows do not overlap; set `stream_first: False` and `context_size: 0`",
                        flow.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// What a rail sees.
#[derive(Debug, Clone, Copy)]
pub struct RailInput<'a> {
    /// The last user message (after any input rewriting).
    pub user_input: &'a str,
    /// The answer (or the window of it) for output rails.
    pub bot_response: Option<&'a str>,
    /// The conversation before the last user message.
    pub history: &'a [ChatMessage],
    /// Where judge calls are recorded when the request asked for a log.
    pub calls: Option<&'a CallLog>,
}

impl<'a> RailInput<'a> {
    /// The text the rail checks: the answer for output rails, else the user's message.
    pub fn text(&self) -> &'a str {
        self.bot_response.unwrap_or(self.user_input)
    }
}

/// A rail's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let the message through.
    Allow,
    /// Stop it; `reason` explains why (for logs and violations).
    Block { reason: String },
    /// Let a rewritten text through instead (masking, omission).
    Modify { text: String, reason: String },
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

/// The `rails.config` sections streamguard's rails read.
const SETTINGS: &[&str] = &[
    "sensitive_data_detection",
    "injection_detection",
    "regex_detection",
];

/// Non-fatal findings while building rails (shown by `check` and logged at start).
pub type Warnings = Vec<String>;

fn build_one(
    config: &Config,
    providers: &Providers,
    flow: &FlowRef,
    warnings: &mut Warnings,
) -> Result<Arc<dyn Rail>, ConfigError> {
    let stage = flow_spec(&flow.name).map_or(Stage::Input, |s| s.stage);
    Ok(match flow.name.as_str() {
        "self check input" | "self check output" => {
            Arc::new(self_check::rail(config, providers, flow, stage)?)
        }
        "content safety check input" | "content safety check output" => {
            Arc::new(content_safety::rail(config, providers, flow, stage)?)
        }
        "topic safety check input" => {
            Arc::new(topic_safety::TopicSafety::new(config, providers, flow)?)
        }
        "llama guard check input" | "llama guard check output" => {
            Arc::new(llama_guard::rail(config, providers, flow, stage)?)
        }
        "detect sensitive data on input" | "detect sensitive data on output" => Arc::new(
            sensitive_data::SensitiveData::new(config, flow, stage, false, warnings)?,
        ),
        "mask sensitive data on input" | "mask sensitive data on output" => Arc::new(
            sensitive_data::SensitiveData::new(config, flow, stage, true, warnings)?,
        ),
        "injection detection" => Arc::new(injection::InjectionDetection::new(config, flow)?),
        "regex check input" | "regex check output" => {
            Arc::new(regex_check::RegexCheck::new(config, flow, stage)?)
        }
        // `validate_flows` has already refused unknown names.
        other => {
            return Err(ConfigError::invalid(
                &flow.source,
                &flow.key,
                format!("unknown flow `{other}`"),
            ));
        }
    })
}

/// Builds the rails of both stages (input, output), in configured order.
pub fn build(
    config: &Config,
    providers: &Providers,
    warnings: &mut Warnings,
) -> Result<(RailSet, RailSet), ConfigError> {
    let mut stage = |flows: &[FlowRef]| -> Result<RailSet, ConfigError> {
        flows
            .iter()
            .map(|f| build_one(config, providers, f, warnings))
            .collect()
    };
    let input = stage(&config.input.flows)?;
    let output = stage(&config.output.flows)?;
    for (name, (file, _)) in &config.rail_settings {
        if !SETTINGS.contains(&name.as_str()) {
            warnings.push(format!(
                "{}: `rails.config.{name}` is not used by any streamguard rail (known: {})",
                file.display(),
                SETTINGS.join(", ")
            ));
        }
    }
    Ok((input, output))
}

/// The `$model=<type>` argument of a flow, which must name a model entry.
fn model_arg<'a>(config: &Config, flow: &'a FlowRef) -> Result<&'a str, ConfigError> {
    let model = flow.args.get("model").ok_or_else(|| {
        ConfigError::invalid(
            &flow.source,
            &flow.key,
            format!(
                "`{}` needs the judge model's type, e.g. `{} $model=content_safety`",
                flow.name, flow.name
            ),
        )
    })?;
    if config.model_of_type(model).is_none() {
        return Err(ConfigError::invalid(
            &flow.source,
            &flow.key,
            format!("`$model={model}` names no model; add a `models` entry with `type: {model}`"),
        ));
    }
    Ok(model)
}

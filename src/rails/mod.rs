//! The rails: built-in checks that run on the user's message (input rails)
//! and on the answer (output rails).
//!
//! Every rail implements one trait, [`Rail`]. One table, [`CATALOG`] (with
//! the guardrail services' flows beside it, read together as [`flows`]), lists
//! every flow a config may name with what it needs and how it is built;
//! [`build`] reads it both to validate a config's flows (an unknown flow is
//! an error that lists the known ones) and to construct them. The LLM-judge
//! flows share one rail driven by a table of its own (`judge`); every other
//! rail kind has its own file.

mod actions_server;
mod activefence;
mod ai_defense;
mod alignscore;
mod autoalign;
mod catalog;
mod clavata;
mod colang;
mod fiddler;
mod gliner;
mod guardrails_ai;
mod injection;
mod jailbreak;
mod judge;
mod library;
mod multilingual;
mod pangea;
mod patronus;
mod private_ai;
mod prompt_security;
mod regex_check;
mod retrieval;
mod sensitive_data;
mod service;
mod services;
pub mod template;
mod trend_micro;

use std::{collections::BTreeMap, fmt, sync::Arc};

use futures_util::future::BoxFuture;

use crate::llm::{CallLog, ChatMessage, Provider};

pub use actions_server::{ActionsServer, needs_actions_server};
pub use catalog::{
    Build, CATALOG, FlowSpec, KNOWN_FLOWS, Sources, build, build_stage, dialog_actions, flow_spec,
    flows, known_flows,
};
pub use judge::{JudgeSpec, parse_content_safety, parse_nemoguard, parse_yes_no};
pub use library::is_library as is_library_action;
pub use retrieval::{RetrievalRails, Retrieved, UNKNOWN_ANSWER, UNKNOWN_INTENT};
pub use sensitive_data::{Entity, Recognizers};

/// Where a rail runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// On the user's message, before the main LLM is called.
    Input,
    /// On the answer (whole, or chunk windows while streaming).
    Output,
    /// On the knowledge base's chunks for the turn, before a prompt gets them.
    Retrieval,
    /// On the tool results (`tool` messages) the caller sends back, before
    /// the model sees them (NeMo's `rails.tool_input`).
    ToolInput,
    /// On the tool calls the model asks for, before the caller runs them
    /// (NeMo's `rails.tool_output`).
    ToolOutput,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Input => "input",
            Stage::Output => "output",
            Stage::Retrieval => "retrieval",
            Stage::ToolInput => "tool_input",
            Stage::ToolOutput => "tool_output",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a rail sees.
#[derive(Debug, Clone, Copy)]
pub struct RailInput<'a> {
    /// The last user message (after any input rewriting).
    pub user_input: &'a str,
    /// The answer (or the window of it) for output rails.
    pub bot_response: Option<&'a str>,
    /// The main model's reasoning trace, for output rails (NeMo's `bot_thinking`).
    pub bot_thinking: Option<&'a str>,
    /// The conversation before the last user message.
    pub history: &'a [ChatMessage],
    /// Where judge calls are recorded when the request asked for a log.
    pub calls: Option<&'a CallLog>,
    /// The dialog's variables after the turn, for output rails
    /// (`$relevant_chunks`, `$check_facts`); `None` without a dialog.
    pub context: Option<&'a std::collections::BTreeMap<String, serde_json::Value>>,
    /// For input rails: the user message's content parts other than text
    /// (images, audio), which a judge that takes them sees too.
    pub media: &'a [serde_json::Value],
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
    /// Stop it and answer `answer` (what a Colang rail said before `stop`).
    Refuse { reason: String, answer: String },
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

    /// The refusal to answer with when this rail blocked `input` for
    /// `reason` (`None`: NeMo's predefined one); content safety's
    /// multilingual refusals, a service's answer per violation.
    fn refusal(&self, _input: &RailInput<'_>, _reason: &str) -> Option<String> {
        None
    }
}

/// The providers of a config's model entries, by `type`.
pub type Providers = BTreeMap<String, Arc<dyn Provider>>;

/// The rails of one stage, in configured order.
pub type RailSet = Vec<Arc<dyn Rail>>;

/// Non-fatal findings while building rails (shown by `check` and logged at start).
pub type Warnings = Vec<String>;

/// A config's rails, built.
#[derive(Debug, Default)]
pub struct Rails {
    pub input: RailSet,
    pub output: RailSet,
    /// On the tool results the caller sends back.
    pub tool_input: RailSet,
    /// On the tool calls the model asks for.
    pub tool_output: RailSet,
    pub warnings: Warnings,
}

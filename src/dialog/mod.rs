//! Colang 1.0 dialog rails: the parser for the subset streamguard runs
//! ([`parse`]), and the dialog runtime that answers a turn in front of the
//! main model ([`DialogRuntime`], an [`engine::answer::Answerer`]).
//!
//! [`engine::answer::Answerer`]: crate::engine::answer::Answerer

mod message;
mod parse;
mod prompts;
mod retrieval;
mod runtime;

use std::{collections::BTreeMap, fmt, path::PathBuf};

use crate::config::{ConfigError, SourceFile};

pub use message::{MessageCleaner, read_intent};
pub use parse::parse_into;
pub use runtime::DialogRuntime;

/// A Colang file that streamguard cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {message}", file.display())]
pub struct ColangError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

/// One step of a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `user NAME`: the user's intent at this point.
    User(String),
    /// `bot NAME`: what the bot says.
    Bot(String),
    /// `when user …` / `else when user …` / `else`: the arm whose intent
    /// matches the next user turn (`None` is `else`).
    Branch(Vec<(Option<String>, Vec<Step>)>),
    /// `do NAME`: the subflow's steps, inline.
    Do(String),
    /// `stop`: the flow ends here.
    Stop,
}

/// A `define flow` (or `define subflow`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub name: Option<String>,
    pub steps: Vec<Step>,
}

/// Everything the `*.co` files of a config define.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dialog {
    /// `define user`: intent → example utterances, in file order.
    pub users: Vec<(String, Vec<String>)>,
    /// `define bot`: intent → messages.
    pub bots: BTreeMap<String, Vec<String>>,
    pub flows: Vec<Flow>,
    pub subflows: BTreeMap<String, Flow>,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::User(i) => write!(f, "user {i}"),
            Step::Bot(i) => write!(f, "bot {i}"),
            Step::Branch(_) => f.write_str("when …"),
            Step::Do(s) => write!(f, "do {s}"),
            Step::Stop => f.write_str("stop"),
        }
    }
}

/// The bot messages of NeMo's standard Colang 1.0 library flows: a config's
/// flows may say them without defining them (its own definition wins).
const LIBRARY_BOTS: &[(&str, &str)] = &[
    ("refuse to respond", "I'm sorry, I can't respond to that."),
    (
        "inform internal error",
        "I'm sorry, an internal error has occurred.",
    ),
    ("inform answer unknown", "I don't know the answer to that."),
    (
        "inform answer prone to hallucination",
        "The previous answer is prone to hallucination and may not be accurate. Please double check the answer using additional sources.",
    ),
    (
        "inform cannot engage in abusive or harmful behavior",
        "I will not engage in any abusive or harmful behavior.",
    ),
    (
        "inform cannot engage in self harm behavior",
        "I will not engage in any self harm behavior.",
    ),
    (
        "inform cannot engage with inappropriate content",
        "I will not engage with inappropriate content.",
    ),
    (
        "inform cannot engage with sensitive content",
        "I will not engage with sensitive content.",
    ),
];

/// Parses a config's `*.co` files into one dialog (`None` without any).
/// An error names the file and the line as a config error.
pub fn parse(sources: &[SourceFile]) -> Result<Option<Dialog>, ConfigError> {
    if sources.is_empty() {
        return Ok(None);
    }
    let mut dialog = Dialog::default();
    for s in sources {
        parse_into(&mut dialog, &s.path, &s.text).map_err(|e| ConfigError::Invalid {
            file: e.file,
            key: format!("line {}", e.line),
            message: e.message,
        })?;
    }
    for (intent, message) in LIBRARY_BOTS {
        dialog
            .bots
            .entry((*intent).to_string())
            .or_insert_with(|| vec![(*message).to_string()]);
    }
    Ok(Some(dialog))
}

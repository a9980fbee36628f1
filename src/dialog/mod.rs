//! Colang 1.0 dialog rails: the parser for the subset streamguard runs
//! ([`parse`]), and the dialog runtime that answers a turn in front of the
//! main model ([`DialogRuntime`], an [`engine::answer::Answerer`]).
//!
//! [`engine::answer::Answerer`]: crate::engine::answer::Answerer

pub mod colang2;
mod expr;
mod funcs;
mod interp;
mod message;
mod parse;
mod prompts;
mod retrieval;
mod runtime;
mod state;
mod steps;
mod stream;
mod turn;
mod value;

use std::{collections::BTreeMap, fmt, path::PathBuf};

use crate::config::{ConfigError, SourceFile};

pub use expr::Expr;
pub use interp::{Actions, End, NoActions, Outcome, RunError, Said, Vars, render, run, run_turn};
pub use message::{MessageCleaner, read_intent};
pub use parse::parse_into;
pub use runtime::DialogRuntime;
pub use state::{DialogState, FlowAt};
pub use steps::GENERATE_VALUE;
pub use turn::{config_var, first_action};

/// A Colang file that streamguard cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {message}", file.display())]
pub struct ColangError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

/// One step of a flow. Steps that evaluate at run time carry their line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `user NAME`: the user's intent at this point.
    User(String),
    /// `bot NAME`: what the bot says.
    Bot(String),
    /// `bot $var`: the bot says the variable's value.
    BotVar { var: String, line: usize },
    /// `when user …` / `else when user …` / `else`: the arm whose intent
    /// matches the next user turn (`None` is `else`).
    Branch(Vec<(Option<String>, Vec<Step>)>),
    /// `do NAME`: the subflow's steps, inline.
    Do(String),
    /// `stop`: the flow ends here.
    Stop,
    /// `abort`: the flow ends here, as a failure.
    Abort,
    /// `return [expr]`: a subflow ends here.
    Return(Option<Expr>),
    /// `$var = expr`.
    Set {
        var: String,
        value: Expr,
        line: usize,
    },
    /// `[$var =] execute NAME(key=expr, …)`.
    Execute(Action),
    /// `if` / `else if` / `else`: the first arm whose condition holds (`None` is `else`).
    If {
        arms: Vec<(Option<Expr>, Vec<Step>)>,
        line: usize,
    },
    /// `while expr`.
    While {
        cond: Expr,
        body: Vec<Step>,
        line: usize,
    },
    /// `create event NAME(key=expr, …)`.
    Event {
        name: String,
        args: Vec<(String, Expr)>,
        line: usize,
    },
}

/// An `execute` step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// The variable the result goes into.
    pub result: Option<String>,
    pub name: String,
    pub args: Vec<(String, Expr)>,
    pub line: usize,
}

impl Step {
    /// Whether the step needs the flow interpreter (variables, conditions, actions).
    pub fn is_procedural(&self) -> bool {
        !matches!(
            self,
            Step::User(_) | Step::Bot(_) | Step::Branch(_) | Step::Do(_) | Step::Stop
        )
    }
}

/// A `define flow` (or `define subflow`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub name: Option<String>,
    pub steps: Vec<Step>,
    /// The file and line of its `define`.
    pub file: PathBuf,
    pub line: usize,
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

impl Dialog {
    /// The flow or subflow called `name`.
    pub fn flow_named(&self, name: &str) -> Option<&Flow> {
        self.subflows
            .get(name)
            .or_else(|| self.flows.iter().find(|f| f.name.as_deref() == Some(name)))
    }

    /// Calls `f` on each of `steps` and, depth first, on the steps inside
    /// them: `if` and `when` arms, `while` bodies, and the subflows `do`
    /// calls (8 deep; `f` sees the `do` before its subflow's steps).
    pub fn visit<E>(
        &self,
        steps: &[Step],
        f: &mut dyn FnMut(&Step) -> Result<(), E>,
    ) -> Result<(), E> {
        self.visit_at(steps, 0, f)
    }

    /// [`Dialog::visit`] without following `do`: the flow's own steps.
    pub fn visit_own<E>(
        &self,
        steps: &[Step],
        f: &mut dyn FnMut(&Step) -> Result<(), E>,
    ) -> Result<(), E> {
        self.visit_at(steps, usize::MAX, f)
    }

    fn visit_at<E>(
        &self,
        steps: &[Step],
        depth: usize,
        f: &mut dyn FnMut(&Step) -> Result<(), E>,
    ) -> Result<(), E> {
        for step in steps {
            f(step)?;
            match step {
                Step::If { arms, .. } => {
                    for (_, body) in arms {
                        self.visit_at(body, depth, f)?;
                    }
                }
                Step::Branch(arms) => {
                    for (_, body) in arms {
                        self.visit_at(body, depth, f)?;
                    }
                }
                Step::While { body, .. } => self.visit_at(body, depth, f)?,
                Step::Do(name) if depth < 8 => {
                    if let Some(sub) = self.flow_named(name) {
                        self.visit_at(&sub.steps, depth + 1, f)?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::User(i) => write!(f, "user {i}"),
            Step::Bot(i) => write!(f, "bot {i}"),
            Step::Branch(_) => f.write_str("when …"),
            Step::Do(s) => write!(f, "do {s}"),
            Step::Stop => f.write_str("stop"),
            Step::Abort => f.write_str("abort"),
            Step::Return(_) => f.write_str("return"),
            Step::BotVar { var, .. } => write!(f, "bot ${var}"),
            Step::Set { var, .. } => write!(f, "${var} = …"),
            Step::Execute(a) => write!(f, "execute {}", a.name),
            Step::If { .. } => f.write_str("if …"),
            Step::While { .. } => f.write_str("while …"),
            Step::Event { name, .. } => write!(f, "create event {name}"),
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

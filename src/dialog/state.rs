//! NeMo's `state` for a Colang 1.0 dialog: the flow waiting for the user
//! (where it waits) and the variables the flows set, returned after a turn
//! and given back with the next one. A flow interrupted at a `user` step
//! resumes there when the user's next intent is the one it waits for, and
//! variables live across turns, as with NeMo's `state`. Without a state each
//! turn starts fresh and the flow position is recovered from the conversation.

use serde::{Deserialize, Serialize};

use super::{Dialog, Flow, Step, Vars};

/// The variables every turn sets itself; a state never carries them.
const SYSTEM: &[&str] = &[
    "user_message",
    "last_user_message",
    "bot_message",
    "relevant_chunks",
    "relevant_chunks_sep",
    "config",
    // The knowledge-base flows set these for the turn they answer; a later
    // turn's checks must not run on an earlier turn's say-so.
    "check_facts",
    "check_hallucination",
];

/// Where a dialog flow waits for the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowAt {
    /// The flow's index among the config's dialog flows.
    pub flow: usize,
    /// The line the flow is defined on (a reloaded config whose flows moved
    /// does not resume a different flow).
    pub line: usize,
    /// The index of its `user` step.
    pub step: usize,
}

/// A dialog's state between turns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialogState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<FlowAt>,
    #[serde(default)]
    pub vars: Vars,
    /// A Colang 2 interaction's state machine (its flows, heads and actions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colang_2: Option<serde_json::Value>,
}

impl DialogState {
    /// The state after a turn: the flow's variables without the system ones.
    pub fn after(mut vars: Vars, waiting: Option<FlowAt>) -> Self {
        vars.retain(|k, _| !SYSTEM.contains(&k.as_str()) && !k.starts_with('_'));
        DialogState {
            waiting,
            vars,
            colang_2: None,
        }
    }

    /// The state after a turn no flow of the interpreter ran: the variables
    /// go on, no flow waits.
    pub fn carried(prior: Option<&DialogState>) -> Self {
        let vars = prior.map(DialogState::start_vars).unwrap_or_default();
        DialogState::after(vars, None)
    }

    /// The variables a turn starts with: the state's (system ones dropped).
    pub fn start_vars(&self) -> Vars {
        let mut vars = self.vars.clone();
        vars.retain(|k, _| !SYSTEM.contains(&k.as_str()) && !k.starts_with('_'));
        vars
    }
}

/// The flow a turn runs: which one, the step it starts at, and (when it
/// resumes at a `when` block) the arm for the user's intent to run first.
#[derive(Debug, Clone, Copy)]
pub struct Chosen<'d> {
    pub index: usize,
    pub flow: &'d Flow,
    pub start: usize,
    pub arm: Option<&'d [Step]>,
}

/// The arm of a `when` block for `intent`, else its `else` arm.
fn arm_for<'s>(arms: &'s [(Option<String>, Vec<Step>)], intent: &str) -> Option<&'s [Step]> {
    arms.iter()
        .find(|(a, _)| a.as_deref() == Some(intent))
        .or_else(|| arms.iter().find(|(a, _)| a.is_none()))
        .map(|(_, body)| body.as_slice())
}

/// Whether the conversation's last answer ends with the message `m` on
/// lines of its own (an empty message matches nothing).
fn said_last(last: &str, m: &str) -> bool {
    let m = m.trim();
    let lines = m.lines().count();
    let tail: Vec<&str> = last.trim().lines().rev().take(lines).collect();
    let tail: Vec<&str> = tail.into_iter().rev().map(str::trim).collect();
    !m.is_empty() && tail == m.lines().map(str::trim).collect::<Vec<_>>()
}

/// Without a state saying so: the flow whose `when` block follows the bot
/// step that said `last` (the conversation's last answer), when the block's
/// arm for `intent` has steps only the interpreter runs (variables,
/// conditions, actions); it resumes there as from a state.
fn recovered<'d>(dialog: &'d Dialog, last: &str, intent: &str) -> Option<Chosen<'d>> {
    let said = |step: &Step| match step {
        Step::Bot(b) => dialog
            .bots
            .get(b)
            .is_some_and(|ms| ms.iter().any(|m| said_last(last, m))),
        _ => false,
    };
    dialog.flows.iter().enumerate().find_map(|(index, flow)| {
        flow.steps.windows(2).enumerate().find_map(|(i, pair)| {
            let Step::Branch(arms) = &pair[1] else {
                return None;
            };
            let arm = arm_for(arms, intent)?;
            (said(&pair[0]) && super::turn::first_procedural(dialog, arm, 0).is_some()).then_some(
                Chosen {
                    index,
                    flow,
                    start: i + 2,
                    arm: Some(arm),
                },
            )
        })
    })
}

/// The flow to run for `intent`: the flow the state says waits for this
/// intent (at a `user` step, or at a `when` block with an arm for it or an
/// `else`), else one the conversation's last answer (`last_bot`) left at a
/// `when` block whose arm needs the interpreter, else the flow starting with
/// `user <intent>` that needs the interpreter.
pub fn choose<'d>(
    dialog: &'d Dialog,
    state: Option<&DialogState>,
    last_bot: Option<&str>,
    intent: &str,
) -> Option<Chosen<'d>> {
    let resumed = state.and_then(|s| s.waiting).and_then(|at| {
        let flow = dialog.flows.get(at.flow).filter(|f| f.line == at.line)?;
        let arm = match flow.steps.get(at.step)? {
            Step::User(u) if u == intent => None,
            Step::Branch(arms) => Some(arm_for(arms, intent)?),
            _ => return None,
        };
        Some(Chosen {
            index: at.flow,
            flow,
            start: at.step + 1,
            arm,
        })
    });
    // Recovered from the conversation only without a state: a signed state
    // that waits for nothing is not overruled by an assistant message.
    let recovered = || {
        let last = last_bot.filter(|_| state.is_none())?;
        recovered(dialog, last, intent)
    };
    resumed.or_else(recovered).or_else(|| {
        super::turn::procedural_flow(dialog, intent).map(|(index, flow)| Chosen {
            index,
            flow,
            start: 1,
            arm: None,
        })
    })
}

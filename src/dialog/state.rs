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
    "config",
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
}

impl DialogState {
    /// The state after a turn: the flow's variables without the system ones.
    pub fn after(mut vars: Vars, waiting: Option<FlowAt>) -> Self {
        vars.retain(|k, _| !SYSTEM.contains(&k.as_str()) && !k.starts_with('_'));
        DialogState { waiting, vars }
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

/// The flow to run for `intent` and the step to start at: the flow the state
/// says waits for this intent, else the flow starting with `user <intent>`
/// that needs the interpreter.
pub fn choose<'d>(
    dialog: &'d Dialog,
    state: Option<&DialogState>,
    intent: &str,
) -> Option<(usize, &'d Flow, usize)> {
    let resumed = state.and_then(|s| s.waiting).and_then(|at| {
        let flow = dialog.flows.get(at.flow).filter(|f| f.line == at.line)?;
        matches!(flow.steps.get(at.step), Some(Step::User(u)) if u == intent).then_some((
            at.flow,
            flow,
            at.step + 1,
        ))
    });
    resumed.or_else(|| super::turn::procedural_flow(dialog, intent).map(|(i, flow)| (i, flow, 1)))
}

//! A dialog flow with variables, conditions or actions, run for one turn:
//! the steps after its `user` step, up to the next one, through the flow
//! interpreter. What its `bot` steps say becomes the turn's answer; a bot
//! intent without a `define bot` message is generated as any other.

use serde_json::{Value, json};

use super::{Actions, Dialog, Flow, Said, Step, Vars, run_turn};
use crate::config::Config;

/// How deep the search for procedural steps follows `do`.
const MAX_DEPTH: usize = 8;

/// The first step of `steps` the static planner cannot run, through `do` subflows.
pub fn first_procedural<'d>(d: &'d Dialog, steps: &'d [Step], depth: usize) -> Option<&'d Step> {
    steps.iter().find_map(|s| match s {
        Step::Branch(arms) => arms.iter().find_map(|(_, b)| first_procedural(d, b, depth)),
        Step::Do(name) if depth < MAX_DEPTH => d
            .flow_named(name)
            .and_then(|f| first_procedural(d, &f.steps, depth + 1)),
        s if s.is_procedural() => Some(s),
        _ => None,
    })
}

/// The first `execute` of a custom action in `steps`, through `do`
/// subflows (`$x = ...` and NeMo's library actions run in streamguard).
pub fn first_action(d: &Dialog, steps: &[Step]) -> Option<String> {
    d.visit(steps, &mut |s| match s {
        Step::Execute(a) if a.name == super::steps::GENERATE_VALUE => Ok(()),
        Step::Execute(a) if crate::rails::is_library_action(&a.name) => Ok(()),
        Step::Execute(a) => Err(a.name.clone()),
        _ => Ok(()),
    })
    .err()
}

/// The dialog flow starting with `user <intent>` that needs the
/// interpreter, and its index.
pub fn procedural_flow<'d>(dialog: &'d Dialog, intent: &str) -> Option<(usize, &'d Flow)> {
    dialog.flows.iter().enumerate().find(|(_, f)| {
        matches!(f.steps.first(), Some(Step::User(u)) if u == intent)
            && first_procedural(dialog, &f.steps[1..], 0).is_some()
    })
}

/// `$config` as flows see it.
pub fn config_var(config: &Config, dialog: &Dialog) -> Value {
    let custom = serde_json::to_value(config.custom_data()).unwrap_or(Value::Null);
    json!({
        "enable_rails_exceptions": config.enable_rails_exceptions(),
        "custom_data": custom,
        "bot_messages": dialog.bots,
    })
}

/// What a turn's flow did: what it said, the variables after, and the index
/// of the `user` step it waits at.
pub type FlowRun = (Vec<Said>, Vars, Option<usize>);

/// Runs the chosen flow from its step `start` (after a `user` step; the
/// resumed `when` arm first) up to its next `user` step.
pub async fn run_flow(
    dialog: &Dialog,
    actions: &dyn Actions,
    chosen: super::state::Chosen<'_>,
    mut vars: Vars,
) -> Result<FlowRun, String> {
    let flow = chosen.flow;
    let rest = flow.steps.get(chosen.start..).unwrap_or_default();
    let steps: std::borrow::Cow<'_, [Step]> = match chosen.arm {
        Some(arm) => arm.iter().chain(rest).cloned().collect(),
        None => rest.into(),
    };
    let out = run_turn(dialog, actions, &steps, &mut vars)
        .await
        .map_err(|e| {
            let name = flow.name.as_deref().unwrap_or("(unnamed)");
            format!("the dialog flow `{name}` ({}): {e}", flow.file.display())
        })?;
    // A wait inside the arm is not a position of the flow's own steps.
    let lead = chosen.arm.map_or(0, <[Step]>::len);
    let waiting = out
        .waiting
        .and_then(|w| w.checked_sub(lead))
        .map(|w| chosen.start + w);
    Ok((out.said, vars, waiting))
}

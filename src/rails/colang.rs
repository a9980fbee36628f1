//! A config's own Colang 1.0 flow (or subflow) named in `rails.input.flows`
//! / `rails.output.flows`, run as a rail, as NeMo runs its custom rails. The
//! flow sees `$user_message` (and for output rails `$bot_message`: the answer
//! or its window), `$last_user_message`, `$config`, the flow's own
//! `$key=value` arguments and the dialog's variables of the turn; `execute`
//! runs NeMo's library actions in streamguard (see [`super::library`]) and
//! the config's own on NeMo's actions server. `stop` / `abort` blocks: with the message the flow said
//! (`bot …`) as the answer, or with the `create event …Exception(message=…)`
//! it created as the reason. A flow that changes `$user_message` /
//! `$bot_message` rewrites the text.

use std::{collections::BTreeSet, sync::Arc};

use futures_util::{FutureExt, future::BoxFuture};
use serde_json::Value;

use super::{
    Rail, RailError, RailInput, Stage, Verdict,
    actions_server::ActionsServer,
    catalog::{BuildContext, check_rewrite},
    library::{Call, Library},
    service::settings,
};
use crate::{
    config::{ConfigError, FlowRef},
    dialog::{Actions, Dialog, End, NoActions, Said, Step, Vars},
};

pub struct ColangRail {
    flow: String,
    stage: Stage,
    steps: Vec<Step>,
    dialog: Arc<Dialog>,
    /// The actions server (or none) for the config's own actions.
    actions: Arc<dyn Actions>,
    /// NeMo's library actions the flow executes.
    library: Library,
    /// `$config` and the flow's arguments.
    base: Vars,
}

impl std::fmt::Debug for ColangRail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColangRail")
            .field("flow", &self.flow)
            .finish()
    }
}

/// What the load-time walk over a flow found.
#[derive(Default)]
struct Walk {
    /// The config's own actions.
    actions: BTreeSet<String>,
    /// NeMo's library actions.
    library: BTreeSet<Call>,
    assigned: BTreeSet<String>,
}

/// What `step` of a rail flow needs, or why a rail cannot run it.
fn look(dialog: &Dialog, flow: &FlowRef, step: &Step, found: &mut Walk) -> Result<(), String> {
    match step {
        Step::User(_) | Step::Branch(_) => {
            return Err(format!(
                "`{step}`: a flow run as a rail cannot wait for the user"
            ));
        }
        Step::Bot(name) if !dialog.bots.contains_key(name) => {
            return Err(format!("`bot {name}` has no `define bot {name}` message"));
        }
        Step::Do(name) if dialog.flow_named(name).is_none() => {
            return Err(format!("`do {name}`: no such subflow"));
        }
        Step::Execute(a) if a.name == crate::dialog::GENERATE_VALUE => {
            return Err(format!(
                "line {}: `${} = ...` asks the LLM for a value, which dialog flows do; a rail flow cannot",
                a.line,
                a.result.as_deref().unwrap_or_default()
            ));
        }
        Step::Execute(a) => {
            match Call::of(step, &flow.args)? {
                Some(call) => found.library.insert(call),
                None => found.actions.insert(a.name.clone()),
            };
            if let Some(v) = &a.result {
                found.assigned.insert(v.clone());
            }
        }
        Step::Set { var, .. } => {
            found.assigned.insert(var.clone());
        }
        _ => {}
    }
    Ok(())
}

pub(super) fn build(
    ctx: &mut BuildContext<'_>,
    flow: &FlowRef,
    stage: Stage,
    dialog: &Arc<Dialog>,
) -> Result<Arc<dyn Rail>, ConfigError> {
    let err =
        |m: String| ConfigError::invalid(&flow.source, &flow.key, format!("`{}`: {m}", flow.name));
    let Some(defined) = dialog.flow_named(&flow.name) else {
        return Err(err("no such flow".into()));
    };
    let mut found = Walk::default();
    dialog
        .visit(&defined.steps, &mut |step| {
            look(dialog, flow, step, &mut found)
        })
        .map_err(err)?;
    let text_var = match stage {
        Stage::Input => Some("user_message"),
        Stage::Output => Some("bot_message"),
        Stage::Retrieval => Some("relevant_chunks"),
        // A tool result may be rewritten; it is never streamed.
        Stage::ToolInput | Stage::ToolOutput => None,
    };
    if let Some(var) = text_var
        && found.assigned.contains(var)
    {
        let rails = match stage {
            Stage::Input => ctx.config.input(),
            Stage::Retrieval => ctx.config.retrieval(),
            _ => ctx.config.output(),
        };
        check_rewrite(ctx.config, stage, rails, flow)?;
    }
    let server = ctx.config.actions_server_url().or(ctx.actions_server);
    let actions: Arc<dyn Actions> = match (server, found.actions.first()) {
        (Some(url), _) => {
            let client = settings::client("actions server", flow, super::service::DEFAULT_TIMEOUT)?;
            Arc::new(ActionsServer::new(url, client, ctx.config.action_files()))
        }
        (None, Some(action)) => {
            return Err(err(super::needs_actions_server(action)));
        }
        (None, None) => Arc::new(NoActions),
    };
    let mut library = Library::default();
    for call in &found.library {
        library.add(ctx, flow, call)?;
    }
    let mut base = Vars::new();
    base.insert(
        "config".into(),
        crate::dialog::config_var(ctx.config, dialog),
    );
    for (k, v) in &flow.args {
        base.insert(k.clone(), Value::String(v.clone()));
    }
    Ok(Arc::new(ColangRail {
        flow: flow.name.clone(),
        stage,
        steps: defined.steps.clone(),
        dialog: dialog.clone(),
        actions,
        library,
        base,
    }))
}

impl ColangRail {
    async fn decide(&self, input: RailInput<'_>) -> Result<Verdict, RailError> {
        // The dialog's variables (`$check_facts`, `$relevant_chunks`), then the rail's own.
        let mut vars = input.context.cloned().unwrap_or_default();
        vars.extend(self.base.iter().map(|(k, v)| (k.clone(), v.clone())));
        let user = Value::String(input.user_input.to_string());
        vars.insert("user_message".into(), user.clone());
        vars.insert("last_user_message".into(), user);
        if let Some(text) = input.bot_response {
            let var = match self.stage {
                Stage::Retrieval => "relevant_chunks",
                Stage::ToolInput => "tool_message",
                _ => "bot_message",
            };
            vars.insert(var.into(), Value::String(text.to_string()));
        }
        let actions = self
            .library
            .bind(&*self.actions, input.history, input.calls);
        let out = crate::dialog::run(&self.dialog, &actions, &self.steps, &mut vars)
            .await
            .map_err(|e| RailError(format!("{}: {e}", self.flow)))?;
        if matches!(out.end, End::Stopped | End::Aborted) {
            let exception = out
                .events
                .iter()
                .find(|(name, _)| name.ends_with("Exception"));
            if let Some((name, args)) = exception {
                let message = args.get("message").and_then(Value::as_str).unwrap_or(name);
                return Ok(Verdict::Block {
                    reason: message.to_string(),
                });
            }
            let reason = format!("stopped by the flow `{}`", self.flow);
            let said: Vec<&str> = out
                .said
                .iter()
                .filter_map(|s| match s {
                    Said::Text(t) => Some(t.as_str()),
                    Said::Intent(_) => None,
                })
                .collect();
            return Ok(match said.is_empty() {
                true => Verdict::Block { reason },
                false => Verdict::Refuse {
                    reason,
                    answer: said.join("\n"),
                },
            });
        }
        let (var, before) = match self.stage {
            Stage::Input => ("user_message", input.user_input),
            Stage::Output => ("bot_message", input.text()),
            Stage::Retrieval => ("relevant_chunks", input.text()),
            Stage::ToolInput => ("tool_message", input.text()),
            // The calls are checked, not rewritten.
            Stage::ToolOutput => return Ok(Verdict::Allow),
        };
        Ok(match vars.get(var) {
            Some(Value::String(now)) if now != before => Verdict::Modify {
                text: now.clone(),
                reason: format!("rewritten by the flow `{}`", self.flow),
            },
            _ => Verdict::Allow,
        })
    }
}

impl Rail for ColangRail {
    fn flow(&self) -> &str {
        &self.flow
    }

    fn check<'a>(&'a self, input: RailInput<'a>) -> BoxFuture<'a, Result<Verdict, RailError>> {
        self.decide(input).boxed()
    }
}

//! NeMo's library actions that a config's own flows `execute`
//! (`$allowed = execute self_check_input`, `$accuracy = execute
//! alignscore_check_facts`, `$masked = execute mask_sensitive_data(source=
//! "output", text=$bot_message)`): each runs the rail streamguard builds for
//! the library flow that calls it in NeMo, and answers what NeMo's Python
//! action returns (a bool, a dict, a score or a text). Other actions go to
//! the actions server.

use std::{collections::BTreeMap, sync::Arc};

use futures_util::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::{
    Rail, RailInput, Stage, Verdict,
    alignscore::AlignScore,
    catalog::{self, BuildContext},
};
use crate::{
    config::{ConfigError, FlowRef},
    dialog::{Actions, Dialog, Expr, Step, Vars},
    llm::{CallLog, ChatMessage},
};

/// What a library action returns, as NeMo's Python does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Returns {
    /// `True` when the text is allowed (`self_check_input`).
    Allowed,
    /// `True` when the rail found something (`jailbreak_detection_heuristics`).
    Flagged,
    /// `{"allowed": bool, "policy_violations": [...]}`.
    AllowedDict,
    /// `{"on_topic": bool}`.
    OnTopic,
    /// `1.0` when supported, else `0.0` (`self_check_facts`).
    Score,
    /// The text, rewritten when the rail rewrites it (`mask_sensitive_data`).
    Text,
}

/// A library action: its name, the library flow (`{source}` is the action's
/// `source` argument), the flow's stage and what it returns.
const ACTIONS: &[(&str, &str, Stage, Returns)] = &[
    (
        "self_check_input",
        "self check input",
        Stage::Input,
        Returns::Allowed,
    ),
    (
        "self_check_output",
        "self check output",
        Stage::Output,
        Returns::Allowed,
    ),
    (
        "self_check_facts",
        "self check facts",
        Stage::Output,
        Returns::Score,
    ),
    (
        "self_check_hallucination",
        "self check hallucination",
        Stage::Output,
        Returns::Flagged,
    ),
    (
        "alignscore_check_facts",
        "alignscore check facts",
        Stage::Output,
        Returns::Score,
    ),
    (
        "content_safety_check_input",
        "content safety check input",
        Stage::Input,
        Returns::AllowedDict,
    ),
    (
        "content_safety_check_output",
        "content safety check output",
        Stage::Output,
        Returns::AllowedDict,
    ),
    (
        "llama_guard_check_input",
        "llama guard check input",
        Stage::Input,
        Returns::AllowedDict,
    ),
    (
        "llama_guard_check_output",
        "llama guard check output",
        Stage::Output,
        Returns::AllowedDict,
    ),
    (
        "topic_safety_check_input",
        "topic safety check input",
        Stage::Input,
        Returns::OnTopic,
    ),
    (
        "jailbreak_detection_heuristics",
        "jailbreak detection heuristics",
        Stage::Input,
        Returns::Flagged,
    ),
    (
        "jailbreak_detection_model",
        "jailbreak detection model",
        Stage::Input,
        Returns::Flagged,
    ),
    (
        "detect_sensitive_data",
        "detect sensitive data on {source}",
        Stage::Input,
        Returns::Flagged,
    ),
    (
        "mask_sensitive_data",
        "mask sensitive data on {source}",
        Stage::Input,
        Returns::Text,
    ),
];

/// Whether `name` is one of NeMo's library actions streamguard runs itself.
pub fn is_library(name: &str) -> bool {
    ACTIONS.iter().any(|(n, ..)| *n == name)
}

/// One `execute` of a library action as written: what picks the rail built
/// for it at load.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Call {
    pub name: String,
    /// The literal `source=` (the sensitive data actions).
    pub source: Option<String>,
    /// `model_name=` (content and topic safety): a literal, or a `$var`
    /// the flow's `$var=…` argument gives.
    pub model: Option<String>,
    /// Whether the call passes the text (`text=…`).
    pub text: bool,
}

impl Call {
    /// The library call `step` makes, if it makes one; a `model_name=` not
    /// known at load (the model's rail is built then) is refused.
    pub(super) fn of(
        step: &Step,
        flow_args: &BTreeMap<String, String>,
    ) -> Result<Option<Call>, String> {
        let Step::Execute(a) = step else {
            return Ok(None);
        };
        if !is_library(&a.name) {
            return Ok(None);
        }
        let arg = |k: &str| a.args.iter().find(|(n, _)| n == k).map(|(_, e)| e);
        let literal = |k: &str| match arg(k) {
            Some(Expr::Lit(Value::String(s))) => Some(s.clone()),
            Some(Expr::Var(v)) => flow_args.get(v).cloned(),
            _ => None,
        };
        let model = literal("model_name");
        if arg("model_name").is_some() && model.is_none() {
            return Err(format!(
                "line {}: `execute {}(model_name=…)`: the model is a literal (`model_name=\"content_safety\"`) \
                 or the rail flow's `$model=` argument, as its rail is built when the config loads",
                a.line, a.name
            ));
        }
        Ok(Some(Call {
            name: a.name.clone(),
            source: literal("source"),
            model,
            text: arg("text").is_some(),
        }))
    }
}

/// The library flow an action call runs, and its stage: `source="output"`
/// picks the output flow of the `{source}` actions.
fn flow_of(name: &str, source: Option<&str>) -> Result<(String, Stage, Returns), String> {
    let Some((_, flow, stage, returns)) = ACTIONS.iter().find(|(n, ..)| *n == name) else {
        return Err(format!("`{name}` is not a library action"));
    };
    if !flow.contains("{source}") {
        return Ok((flow.to_string(), *stage, *returns));
    }
    let stage = match source {
        Some("input") => Stage::Input,
        Some("output") => Stage::Output,
        Some("retrieval") => Stage::Retrieval,
        Some(other) => {
            return Err(format!(
                "`{name}(source=\"{other}\")`: the source is \"input\", \"output\" or \"retrieval\""
            ));
        }
        None => {
            return Err(format!(
                "`{name}` needs `source=\"input\"`, `\"output\"` or `\"retrieval\"`"
            ));
        }
    };
    Ok((flow.replace("{source}", stage.as_str()), stage, *returns))
}

enum Runs {
    Rail(Arc<dyn Rail>),
    /// AlignScore answers its score itself.
    AlignScore(Arc<AlignScore>),
}

struct Built {
    runs: Runs,
    stage: Stage,
    returns: Returns,
}

/// The library actions one config flow calls, built at load.
#[derive(Default)]
pub(super) struct Library {
    /// By library flow name and model (`model_name=`, else the flow's `$model=`).
    built: BTreeMap<(String, Option<String>), Built>,
    /// The calling flow's `$model=` argument.
    model: Option<String>,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.built.keys()).finish()
    }
}

impl Library {
    /// Builds the rail behind `call` in the config flow `flow`, whose
    /// arguments (`$model=…`) the library rail sees.
    pub(super) fn add(
        &mut self,
        ctx: &mut BuildContext<'_>,
        flow: &FlowRef,
        call: &Call,
    ) -> Result<(), ConfigError> {
        let err = |m: String| {
            ConfigError::invalid(&flow.source, &flow.key, format!("`{}`: {m}", flow.name))
        };
        let name = call.name.as_str();
        let (library_flow, stage, returns) = flow_of(name, call.source.as_deref()).map_err(err)?;
        self.model = flow.args.get("model").cloned();
        let model = call.model.clone().or_else(|| self.model.clone());
        let key = (library_flow, model);
        if self.built.contains_key(&key) {
            return Ok(());
        }
        let mut called = flow.clone();
        called.name.clone_from(&key.0);
        if let Some(m) = &key.1 {
            called.args.insert("model".into(), m.clone());
        }
        let library_flow = &key.0;
        let runs = match name {
            "alignscore_check_facts" => {
                Runs::AlignScore(super::alignscore::build_scorer(ctx, &called)?)
            }
            _ => {
                let spec = catalog::flow_spec(library_flow).ok_or_else(|| {
                    err(format!("`{library_flow}` is not in streamguard's catalog"))
                })?;
                Runs::Rail(catalog::build_spec(ctx, spec, &called, stage)?)
            }
        };
        self.built.insert(
            key,
            Built {
                runs,
                stage,
                returns,
            },
        );
        Ok(())
    }

    /// The actions of one run: these, else `server`'s.
    pub(super) fn bind<'a>(
        &'a self,
        server: &'a dyn Actions,
        history: &'a [ChatMessage],
        calls: Option<&'a CallLog>,
    ) -> Bound<'a> {
        Bound {
            library: self,
            server,
            history,
            calls,
        }
    }
}

/// The library actions of one run, with the request's history and call log.
pub(super) struct Bound<'a> {
    library: &'a Library,
    server: &'a dyn Actions,
    history: &'a [ChatMessage],
    calls: Option<&'a CallLog>,
}

impl std::fmt::Debug for Bound<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("library", self.library)
            .finish()
    }
}

impl Actions for Bound<'_> {
    fn run<'a>(
        &'a self,
        name: &'a str,
        args: Map<String, Value>,
        vars: &'a Vars,
    ) -> BoxFuture<'a, Result<Value, String>> {
        Box::pin(async move {
            if !is_library(name) {
                return self.server.run(name, args, vars).await;
            }
            let source = args.get("source").and_then(Value::as_str);
            let (flow, _, _) = flow_of(name, source)?;
            let model = args.get("model_name").and_then(Value::as_str);
            let model = model
                .map(str::to_string)
                .or_else(|| self.library.model.clone());
            let built = self.library.built.get(&(flow, model)).ok_or_else(|| {
                format!(
                    "`{name}`: its rail is built at load, for a `model_name=` given as a literal \
                     or by the flow's `$model=` argument; this one is known only when the flow runs"
                )
            })?;
            self.call(name, built, &args, vars).await
        })
    }
}

impl Bound<'_> {
    async fn call(
        &self,
        name: &str,
        built: &Built,
        args: &Map<String, Value>,
        vars: &Vars,
    ) -> Result<Value, String> {
        let var = |k: &str| vars.get(k).and_then(Value::as_str).unwrap_or_default();
        let text = args.get("text").and_then(Value::as_str);
        let user = match built.stage {
            Stage::Input | Stage::ToolInput => text.unwrap_or(var("user_message")),
            Stage::Output | Stage::Retrieval | Stage::ToolOutput => var("user_message"),
        };
        let bot = match built.stage {
            Stage::Input | Stage::ToolInput => None,
            Stage::Output | Stage::ToolOutput => Some(text.unwrap_or(var("bot_message"))),
            Stage::Retrieval => Some(text.unwrap_or(var("relevant_chunks"))),
        };
        // The action runs when the flow calls it: the flow gates it, not `$check_facts`.
        let mut context = vars.clone();
        context.insert("check_facts".into(), Value::Bool(true));
        context.insert("check_hallucination".into(), Value::Bool(true));
        let input = RailInput {
            media: &[],
            user_input: user,
            bot_response: bot,
            bot_thinking: None,
            history: self.history,
            calls: self.calls,
            context: Some(&context),
        };
        let failed = |e: super::RailError| format!("`{name}`: {}", e.0);
        let verdict = match &built.runs {
            Runs::AlignScore(scorer) => {
                return scorer
                    .accuracy(input)
                    .await
                    .map(Value::from)
                    .map_err(failed);
            }
            Runs::Rail(rail) => rail.check(input).await.map_err(failed)?,
        };
        Ok(shape(built.returns, &verdict, input.text()))
    }
}

/// NeMo's return value for a verdict.
fn shape(returns: Returns, verdict: &Verdict, text: &str) -> Value {
    let allowed = matches!(verdict, Verdict::Allow | Verdict::Modify { .. });
    let reason = match verdict {
        Verdict::Block { reason } | Verdict::Refuse { reason, .. } => Some(reason.as_str()),
        _ => None,
    };
    match returns {
        Returns::Allowed => Value::Bool(allowed),
        Returns::Flagged => Value::Bool(!matches!(verdict, Verdict::Allow)),
        Returns::AllowedDict => json!({
            "allowed": allowed,
            "policy_violations": reason.map(|r| vec![r]).unwrap_or_default(),
        }),
        Returns::OnTopic => json!({"on_topic": allowed}),
        Returns::Score => Value::from(if allowed { 1.0 } else { 0.0 }),
        Returns::Text => match verdict {
            Verdict::Modify { text, .. } => Value::String(text.clone()),
            _ => Value::String(text.to_string()),
        },
    }
}

/// The flows a dialog turn runs: those starting with a `user` step and the
/// subflows they `do` (a flow only named as a rail is the rails' to build).
fn dialog_reached(dialog: &Dialog) -> Vec<&crate::dialog::Flow> {
    let mut reached: Vec<&crate::dialog::Flow> = dialog
        .flows
        .iter()
        .filter(|f| matches!(f.steps.first(), Some(Step::User(_))))
        .collect();
    let mut called = std::collections::BTreeSet::new();
    for flow in &reached {
        let _ = dialog.visit::<()>(&flow.steps, &mut |step| {
            if let Step::Do(name) = step {
                called.insert(name.clone());
            }
            Ok(())
        });
    }
    for name in called {
        if let Some(sub) = dialog.flow_named(&name)
            && !reached.iter().any(|f| std::ptr::eq(*f, sub))
        {
            reached.push(sub);
        }
    }
    reached
}

/// The actions of a config's dialog flows: NeMo's library actions they
/// execute (built now, like the rails), else `server`'s. A dialog flow runs
/// before its bot message is written, so an output check must be given the
/// text (`text=…`).
pub fn dialog_actions(
    ctx: &mut BuildContext<'_>,
    dialog: &Dialog,
    server: Arc<dyn Actions>,
) -> Result<Arc<dyn Actions>, ConfigError> {
    let mut library = Library::default();
    let no_args = BTreeMap::new();
    for flow in dialog_reached(dialog) {
        let mut found = BTreeMap::new();
        let walked = dialog.visit_own::<String>(&flow.steps, &mut |step| {
            if let (Some(call), Step::Execute(a)) = (Call::of(step, &no_args)?, step) {
                found.entry(call).or_insert(a.line);
            }
            Ok(())
        });
        walked.map_err(|m| ConfigError::invalid(&flow.file, format!("line {}", flow.line), m))?;
        for (call, line) in found {
            let called = FlowRef {
                name: flow.name.clone().unwrap_or_else(|| "(unnamed flow)".into()),
                args: BTreeMap::new(),
                source: flow.file.clone(),
                key: format!("line {line}"),
            };
            let output = flow_of(&call.name, call.source.as_deref())
                .is_ok_and(|(_, stage, _)| stage == Stage::Output);
            if output && !call.text {
                return Err(ConfigError::invalid(
                    &called.source,
                    &called.key,
                    format!(
                        "`{}`: `execute {}` checks the bot message, which a dialog flow does not have \
                         yet (streamguard writes it after the flow); run `{}` as an output rail \
                         (`rails.output.flows`), or pass the text (`text=$var`)",
                        called.name,
                        call.name,
                        flow_of(&call.name, call.source.as_deref())
                            .map(|f| f.0)
                            .unwrap_or_default(),
                    ),
                ));
            }
            library.add(ctx, &called, &call)?;
        }
    }
    Ok(match library.built.is_empty() {
        true => server,
        false => Arc::new(DialogLibrary { library, server }),
    })
}

/// A dialog's library actions, before its actions server.
#[derive(Debug)]
struct DialogLibrary {
    library: Library,
    server: Arc<dyn Actions>,
}

impl Actions for DialogLibrary {
    fn run<'a>(
        &'a self,
        name: &'a str,
        args: Map<String, Value>,
        vars: &'a Vars,
    ) -> BoxFuture<'a, Result<Value, String>> {
        self.run_in_turn(name, args, vars, (&[], None))
    }

    fn run_in_turn<'a>(
        &'a self,
        name: &'a str,
        args: Map<String, Value>,
        vars: &'a Vars,
        (history, calls): (&'a [ChatMessage], Option<&'a CallLog>),
    ) -> BoxFuture<'a, Result<Value, String>> {
        Box::pin(async move {
            self.library
                .bind(&*self.server, history, calls)
                .run(name, args, vars)
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_picks_the_stage_of_the_sensitive_data_actions() {
        let (flow, stage, _) = flow_of("mask_sensitive_data", Some("output")).unwrap();
        assert_eq!(
            (flow.as_str(), stage),
            ("mask sensitive data on output", Stage::Output)
        );
        let (flow, stage, _) = flow_of("detect_sensitive_data", Some("retrieval")).unwrap();
        assert_eq!(
            (flow.as_str(), stage),
            ("detect sensitive data on retrieval", Stage::Retrieval)
        );
        let e = flow_of("detect_sensitive_data", Some("kb")).unwrap_err();
        assert!(e.contains("\"retrieval\""), "{e}");
        assert!(
            flow_of("detect_sensitive_data", None)
                .unwrap_err()
                .contains("needs `source")
        );
        assert!(!is_library("check_blocked_terms"));
    }

    #[test]
    fn results_have_nemos_shapes() {
        let block = Verdict::Block {
            reason: "unsafe".into(),
        };
        assert_eq!(shape(Returns::Allowed, &block, "t"), json!(false));
        assert_eq!(shape(Returns::Flagged, &block, "t"), json!(true));
        assert_eq!(shape(Returns::Flagged, &Verdict::Allow, "t"), json!(false));
        assert_eq!(
            shape(Returns::AllowedDict, &block, "t"),
            json!({"allowed": false, "policy_violations": ["unsafe"]})
        );
        assert_eq!(shape(Returns::Score, &Verdict::Allow, "t"), json!(1.0));
        let masked = Verdict::Modify {
            text: "<PERSON>".into(),
            reason: "pii".into(),
        };
        assert_eq!(shape(Returns::Text, &masked, "Ann"), json!("<PERSON>"));
        assert_eq!(shape(Returns::Text, &Verdict::Allow, "Ann"), json!("Ann"));
    }
}

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
        Some(other) => {
            return Err(format!(
                "`{name}(source=\"{other}\")`: streamguard runs it on \"input\" and \"output\""
            ));
        }
        None => {
            return Err(format!(
                "`{name}` needs `source=\"input\"` or `source=\"output\"`"
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
    /// By library flow name.
    built: BTreeMap<String, Built>,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.built.keys()).finish()
    }
}

impl Library {
    /// Builds the rail behind `execute name(source=…)` in the config flow
    /// `flow`, whose arguments (`$model=…`) the library rail sees.
    pub(super) fn add(
        &mut self,
        ctx: &mut BuildContext<'_>,
        flow: &FlowRef,
        name: &str,
        source: Option<&str>,
    ) -> Result<(), ConfigError> {
        let err = |m: String| {
            ConfigError::invalid(&flow.source, &flow.key, format!("`{}`: {m}", flow.name))
        };
        let (library_flow, stage, returns) = flow_of(name, source).map_err(err)?;
        if self.built.contains_key(&library_flow) {
            return Ok(());
        }
        let mut called = flow.clone();
        called.name.clone_from(&library_flow);
        let runs = match name {
            "alignscore_check_facts" => {
                Runs::AlignScore(super::alignscore::build_scorer(ctx, &called)?)
            }
            _ => {
                let spec = catalog::flow_spec(&library_flow).ok_or_else(|| {
                    err(format!("`{library_flow}` is not in streamguard's catalog"))
                })?;
                Runs::Rail(catalog::build_spec(ctx, spec, &called, stage)?)
            }
        };
        self.built.insert(
            library_flow,
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
            let built = self
                .library
                .built
                .get(&flow)
                .ok_or_else(|| format!("`{name}` for `{flow}` was not built at load"))?;
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
            Stage::Input => text.unwrap_or(var("user_message")),
            Stage::Output => var("user_message"),
        };
        let bot = (built.stage == Stage::Output).then(|| text.unwrap_or(var("bot_message")));
        // The action runs when the flow calls it: the flow gates it, not `$check_facts`.
        let mut context = vars.clone();
        context.insert("check_facts".into(), Value::Bool(true));
        context.insert("check_hallucination".into(), Value::Bool(true));
        let input = RailInput {
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

/// The library actions of a config's dialog flows, each call with its
/// literal `source`, and the line of the first.
fn dialog_calls(
    dialog: &Dialog,
    steps: &[Step],
    depth: usize,
    found: &mut BTreeMap<(String, Option<String>), usize>,
) {
    for step in steps {
        match step {
            Step::Execute(a) if is_library(&a.name) => {
                let source =
                    a.args
                        .iter()
                        .find(|(k, _)| k == "source")
                        .and_then(|(_, e)| match e {
                            Expr::Lit(Value::String(s)) => Some(s.clone()),
                            _ => None,
                        });
                found.entry((a.name.clone(), source)).or_insert(a.line);
            }
            Step::If { arms, .. } => arms
                .iter()
                .for_each(|(_, b)| dialog_calls(dialog, b, depth, found)),
            Step::Branch(arms) => arms
                .iter()
                .for_each(|(_, b)| dialog_calls(dialog, b, depth, found)),
            Step::While { body, .. } => dialog_calls(dialog, body, depth, found),
            Step::Do(name) if depth < 8 => {
                if let Some(sub) = dialog.flow_named(name) {
                    dialog_calls(dialog, &sub.steps, depth + 1, found);
                }
            }
            _ => {}
        }
    }
}

/// The actions of a config's dialog flows: NeMo's library actions they
/// execute (built now, like the rails), else `server`'s.
pub fn dialog_actions(
    ctx: &mut BuildContext<'_>,
    dialog: &Dialog,
    server: Arc<dyn Actions>,
) -> Result<Arc<dyn Actions>, ConfigError> {
    let mut library = Library::default();
    for flow in &dialog.flows {
        let mut found = BTreeMap::new();
        dialog_calls(dialog, &flow.steps, 0, &mut found);
        for ((name, source), line) in found {
            let called = FlowRef {
                name: flow.name.clone().unwrap_or_else(|| "(unnamed flow)".into()),
                args: Default::default(),
                source: flow.file.clone(),
                key: format!("line {line}"),
            };
            library.add(ctx, &called, &name, source.as_deref())?;
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
        Box::pin(async move {
            self.library
                .bind(&*self.server, &[], None)
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
        let e = flow_of("detect_sensitive_data", Some("retrieval")).unwrap_err();
        assert!(e.contains("\"input\" and \"output\""), "{e}");
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

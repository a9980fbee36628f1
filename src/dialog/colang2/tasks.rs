//! The system actions of NeMo's Colang 2 runtime that streamguard runs for
//! the flows: the LLM ones with NeMo's Colang 2 prompts
//! (`GenerateValueAction` for `$x = ..."…"`, `GenerateUserIntentAction`,
//! `GenerateFlowContinuationAction`, `GenerateFlowAction` for a flow's
//! `...`), and the ones over the flows themselves (`AddFlowsAction`,
//! `RemoveFlowsAction`, `CheckValidFlowExistsAction`, …). A config's
//! `prompts.yml` overrides a prompt by its task name.

use std::sync::Arc;

use minijinja::Environment;
use serde_json::{Map, Value, json};

use super::{
    Program,
    answers::{
        bot_intent_and_action, continuation_body, dedent, intent_of, jinja, literal, named_flow,
    },
    compile::Op,
    machine::Machine,
    syntax::V,
};
use crate::{
    config::{Config, ConfigError},
    dialog::{Actions, expr, stream::complete},
    engine::answer::AnswerRequest,
    llm::{CallParams, ChatMessage, ChatRequest, LlmError, Provider},
    rails::template::{self, TemplateBudget},
};

const USER_INTENT_TASK: &str = "generate_user_intent_from_user_action";
const VALUE_TASK: &str = "generate_value_from_instruction";
const CONTINUATION_TASK: &str = "generate_flow_continuation";
const NLD_TASK: &str = "generate_flow_continuation_from_flow_nld";
const FROM_NAME_TASK: &str = "generate_flow_from_name";

/// The system actions [`Tasks::run`] runs.
pub(super) const SYSTEM: &[&str] = &[
    "GenerateValueAction",
    "GenerateUserIntentAction",
    "GenerateFlowContinuationAction",
    "GenerateFlowAction",
    "AddFlowsAction",
    "RemoveFlowsAction",
    "CheckValidFlowExistsAction",
    "CheckFlowDefinedAction",
    "GetLastUserMessageAction",
    "CreateFlowAction",
    "GenerateFlowFromNameAction",
    "CheckUserIntentsExpectedAction",
];

/// The longest value, intent or generated flow read from the LLM.
const MAX_ANSWER: usize = 64 * 1024;

const USER_INTENT: &str = r#""""
{{ general_instructions }}
"""

# This is how a conversation between a user and the bot can go:
{{ sample_conversation }}

# These are the most likely user intents:
{{ examples }}

# This is the current conversation between the user and the bot:
{{ history | colang }}

# Continuation of interaction using only specified user intents from the section 'These are the most likely user intents:':
user action: {{ user_action }}
user intent:"#;

const VALUE: &str = r#""""
{{ general_instructions }}
"""

# This is how a conversation between a user and the bot can go:
{{ sample_conversation }}

# This is the current conversation between the user and the bot:
{{ history | colang }}

# {{ instructions }}
${{ var_name }} ="#;

const CONTINUATION: &str = r#""""
{{ general_instructions }}
"""

# This is how a conversation between a user and the bot can go:
{{ sample_conversation }}

# This is the current conversation between the user and the bot:
{{ history | colang }}

bot intent:"#;

const NLD: &str = "{{ flow_nld }}";

const FROM_NAME: &str = r#"# Example flows:
{{ examples }}

# Complete the following flow based on its name:
flow {{ flow_name }}
"#;

/// The Colang 2 system actions of one config.
#[derive(Debug)]
pub(super) struct Tasks {
    env: Environment<'static>,
    budget: TemplateBudget,
    general: String,
    sample: String,
    temperature: f64,
}

impl Tasks {
    pub(super) fn new(config: &Config) -> Result<Self, ConfigError> {
        let budget = TemplateBudget::default();
        let mut env = template::environment(budget);
        // The history is handed over already written as Colang.
        env.add_filter("colang", |s: String| s);
        for (task, default) in [
            (USER_INTENT_TASK, USER_INTENT),
            (VALUE_TASK, VALUE),
            (CONTINUATION_TASK, CONTINUATION),
            (NLD_TASK, NLD),
            (FROM_NAME_TASK, FROM_NAME),
        ] {
            crate::dialog::prompts::add_task(&mut env, config, task, default)?;
        }
        Ok(Tasks {
            env,
            budget,
            general: config
                .instruction("general")
                .unwrap_or_default()
                .trim()
                .to_string(),
            sample: config
                .sample_conversation()
                .unwrap_or_default()
                .trim()
                .to_string(),
            temperature: config.lowest_temperature(),
        })
    }
}

/// What one action runs with.
pub(super) struct Call<'a> {
    pub prog: &'a Program,
    pub llm: &'a Arc<dyn Provider>,
    /// Where the config's own actions run (NeMo's actions server).
    pub actions: &'a Arc<dyn Actions>,
    pub request: &'a AnswerRequest,
    pub message: &'a str,
}

impl Tasks {
    /// Runs system action `name`; `None` when it is not one streamguard
    /// runs (it stays started, as an avatar's gesture does).
    pub(super) async fn run(
        &self,
        c: &Call<'_>,
        m: &mut Machine,
        name: &str,
        args: &Map<String, Value>,
    ) -> Result<Option<Value>, LlmError> {
        let text = |k: &str| {
            args.get(k)
                .map(super::super::value::display)
                .unwrap_or_default()
        };
        Ok(Some(match name {
            "GenerateValueAction" => {
                self.value(c, m, &text("var_name"), &text("instructions"))
                    .await?
            }
            "GenerateUserIntentAction" => {
                let max = args
                    .get("max_example_flows")
                    .and_then(Value::as_u64)
                    .unwrap_or(5);
                // A message's own line breaks must not write prompt lines.
                let action = text("user_action").replace('\n', "\\n");
                let intent = self.user_intent(c, m, &action, max).await?;
                m.log(true, format!("user intent: {intent}"));
                Value::String(intent)
            }
            "GenerateFlowContinuationAction" => self.continuation(c, m).await?,
            "GenerateFlowAction" => self.nld_flow(c, m, &text("flow_id"), args).await?,
            // A flow the LLM wrote that does not load fails the turn, clearly
            // (a flow waiting for it would wait for ever).
            "AddFlowsAction" => match m.add_flows(c.prog, &text("config")) {
                Ok(names) => json!(names),
                Err(e) => {
                    return Err(LlmError::Protocol(format!(
                        "the LLM wrote a Colang 2 flow streamguard does not run: {e}"
                    )));
                }
            },
            "RemoveFlowsAction" => {
                let ids: Vec<String> = match args.get("flow_ids") {
                    Some(Value::Array(a)) => a.iter().map(super::super::value::display).collect(),
                    Some(v) => vec![super::super::value::display(v)],
                    None => Vec::new(),
                };
                m.remove_flows(&ids);
                Value::Null
            }
            "CheckValidFlowExistsAction" | "CheckFlowDefinedAction" => {
                Value::Bool(m.has_flow(c.prog, &text("flow_id")))
            }
            "GetLastUserMessageAction" => Value::String(c.message.to_string()),
            "GenerateFlowFromNameAction" => self.flow_from_name(c, &text("name")).await?,
            // streamguard's: whether asking the LLM for the intent can lead anywhere.
            "CheckUserIntentsExpectedAction" => Value::Bool(m.expects_intents(c.prog)),
            "CreateFlowAction" => {
                let n = m.fresh();
                let flow = format!("_dynamic_{n} {}", text("name"));
                let decorators = text("decorators");
                let body = format!("{decorators}\nflow {flow}\n  {}", text("body"));
                json!({"name": flow, "parameters": [], "body": body.trim_start()})
            }
            n if super::is_custom(n) => {
                // NeMo's actions get the context (its global variables).
                let vars = m.globals().clone();
                let ran = c.actions.run(name, args.clone(), &vars).await;
                ran.map_err(|e| LlmError::Api(format!("the action `{name}`: {e}")))?
            }
            _ => return Ok(None),
        }))
    }

    fn render(&self, task: &str, ctx: minijinja::Value) -> Result<String, LlmError> {
        template::render(&self.env, task, ctx, self.budget).map_err(|e| {
            LlmError::Protocol(format!("Colang 2 prompt `{task}` does not render: {e}"))
        })
    }

    /// One LLM call for `task`, recorded in the request's log.
    async fn ask(
        &self,
        c: &Call<'_>,
        task: &str,
        prompt: String,
        stop: &[&str],
    ) -> Result<String, LlmError> {
        let mut call = ChatRequest::new(task, vec![ChatMessage::user(prompt.clone())]);
        call.params = CallParams {
            temperature: Some(self.temperature),
            max_tokens: c.request.chat.params.max_tokens,
            stop: stop.iter().map(|s| (*s).to_string()).collect(),
        };
        call.traceparent = c.request.chat.traceparent.clone();
        let text = complete(c.llm.as_ref(), call, &prompt, c.request.calls.as_deref()).await?;
        if text.len() > MAX_ANSWER {
            return Err(LlmError::Protocol(format!(
                "the LLM's answer to `{task}` is over {MAX_ANSWER} bytes"
            )));
        }
        Ok(text)
    }

    /// `$x = ..."…"`: the value, read as the Python literal NeMo reads.
    async fn value(
        &self,
        c: &Call<'_>,
        m: &Machine,
        var: &str,
        instructions: &str,
    ) -> Result<Value, LlmError> {
        let ctx = minijinja::context! {
            general_instructions => &self.general,
            sample_conversation => &self.sample,
            history => m.history_text(),
            instructions => instructions,
            var_name => var,
        };
        let prompt = self.render(VALUE_TASK, ctx)?;
        let answer = self.ask(c, VALUE_TASK, prompt, &["\n"]).await?;
        literal(&answer, var).map_err(LlmError::Protocol)
    }

    /// The user's intent for `user_action`, among the config's intents.
    async fn user_intent(
        &self,
        c: &Call<'_>,
        m: &Machine,
        user_action: &str,
        max: u64,
    ) -> Result<String, LlmError> {
        let examples = intent_examples(c.prog, &m.expected_intents(c.prog), max);
        let ctx = minijinja::context! {
            general_instructions => &self.general,
            sample_conversation => &self.sample,
            examples => examples,
            history => m.history_text(),
            user_action => user_action,
        };
        let prompt = self.render(USER_INTENT_TASK, ctx)?;
        let answer = self.ask(c, USER_INTENT_TASK, prompt, &["\n"]).await?;
        Ok(intent_of(&answer))
    }

    /// `llm continue interaction`: the bot's next intent and action as a
    /// new flow (`{name, body}`).
    async fn continuation(&self, c: &Call<'_>, m: &mut Machine) -> Result<Value, LlmError> {
        let ctx = minijinja::context! {
            general_instructions => &self.general,
            sample_conversation => &self.sample,
            history => m.history_text(),
        };
        let prompt = self.render(CONTINUATION_TASK, ctx)?;
        let answer = self.ask(c, CONTINUATION_TASK, prompt, &[]).await?;
        let (intent, action) = bot_intent_and_action(&answer).ok_or_else(|| {
            LlmError::Protocol("the LLM's flow continuation has no `bot action:`".into())
        })?;
        let name = format!("_dynamic_{} {intent}", m.fresh());
        let body = format!("@meta(bot_intent=\"{intent}\")\nflow {name}\n  {action}");
        Ok(json!({"name": name, "parameters": [], "body": body}))
    }

    /// A flow's `...`: its docstring (rendered with the flow's variables)
    /// to the LLM, whose answer is the rest of the flow.
    async fn nld_flow(
        &self,
        c: &Call<'_>,
        m: &mut Machine,
        flow_id: &str,
        args: &Map<String, Value>,
    ) -> Result<Value, LlmError> {
        // A generated flow's `...` goes on with the docstring it came from.
        let added = m.compiled(c.prog).unwrap_or_default();
        let doc = c
            .prog
            .flows
            .get(flow_id)
            .or_else(|| added.get(flow_id))
            .and_then(|f| f.doc.clone())
            .unwrap_or_default();
        let vars = args.get("context").cloned().unwrap_or(Value::Null);
        let doc = dedent(&doc);
        let mut env = template::environment(self.budget);
        env.add_template_owned("doc", doc.clone())
            .map_err(|e| LlmError::Protocol(format!("the docstring of `{flow_id}`: {e}")))?;
        let flow_nld = template::render(&env, "doc", jinja(&vars), self.budget)
            .map_err(|e| LlmError::Protocol(format!("the docstring of `{flow_id}`: {e}")))?;
        let prompt = self.render(NLD_TASK, minijinja::context! { flow_nld => flow_nld })?;
        let answer = self.ask(c, NLD_TASK, prompt, &[]).await?;
        let name = format!("_dynamic_{}", m.fresh());
        let body = continuation_body(&answer)
            .unwrap_or_else(|| "  bot say \"Sorry! There was an issue in the LLM result.\"".into());
        let doc = doc.replace("\"\"\"", "");
        let body = format!("flow {name}\n  \"\"\"{doc}\"\"\"\n{body}");
        Ok(json!({"name": name, "parameters": [], "body": body}))
    }
}

impl Tasks {
    /// An undefined flow (`bot refuse to respond about cooking`): the LLM
    /// writes it from its name, with the config's flows as examples.
    async fn flow_from_name(&self, c: &Call<'_>, name: &str) -> Result<Value, LlmError> {
        let examples = flow_examples(c.prog, name);
        let ctx = minijinja::context! { examples => examples, flow_name => name };
        let prompt = self.render(FROM_NAME_TASK, ctx)?;
        let answer = self.ask(c, FROM_NAME_TASK, prompt, &["\nflow "]).await?;
        Ok(Value::String(named_flow(name, &answer)))
    }
}

/// Up to five of the config's flows (those with instructions first), the
/// ones sharing the most words with `name` last, nearest the question.
fn flow_examples(prog: &Program, name: &str) -> String {
    let words: Vec<&str> = name.split_whitespace().collect();
    let mut own: Vec<(usize, bool, &str)> = prog
        .flows
        .iter()
        .filter(|(n, f)| !f.library && n.as_str() != "main" && !n.contains("rails"))
        .map(|(n, f)| {
            let shared = n.split_whitespace().filter(|w| words.contains(w)).count();
            (shared, f.doc.is_some(), f.source.as_str())
        })
        .collect();
    own.sort_by_key(|(shared, doc, _)| (*doc, *shared));
    let start = own.len().saturating_sub(5);
    own[start..]
        .iter()
        .map(|(_, _, s)| *s)
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// `user said "…"` examples of the config's user-intent flows (the
/// intents now expected first), and the expected intents without any.
fn intent_examples(prog: &Program, expected: &[String], max: u64) -> String {
    let max = usize::try_from(max).unwrap_or(usize::MAX).min(100);
    let mut order: Vec<&str> = expected.iter().map(String::as_str).collect();
    for (name, f) in &prog.flows {
        if !f.library && name.starts_with("user ") && !order.contains(&name.as_str()) {
            order.push(name);
        }
    }
    let mut out = Vec::new();
    for intent in order {
        let said = prog
            .flows
            .get(intent)
            .map(said_examples)
            .unwrap_or_default();
        if said.is_empty() {
            out.push(format!("user intent: {intent}"));
        }
        for s in said {
            out.push(format!(
                "user action: user said \"{s}\"\nuser intent: {intent}"
            ));
        }
        if out.len() >= max {
            break;
        }
    }
    out.truncate(max);
    out.join("\n\n")
}

/// The texts a flow's `user said "…"` lines name.
fn said_examples(f: &super::Flow) -> Vec<String> {
    f.ops
        .iter()
        .filter_map(|op| match op {
            Op::StartFlow { id, args, .. } if id == "user said" => match args.first() {
                Some((_, V::E(expr::Expr::Lit(Value::String(s))))) => Some(s.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

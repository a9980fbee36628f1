//! `$x = ...` in a dialog flow: NeMo's `generate_value`. The LLM gets the
//! `generate_value` prompt (the conversation, the comment above the line as
//! the instructions, and `$x =` to complete); the first line of its answer,
//! without a trailing `;`, is read as a literal (a string in quotes, a
//! number, `True` / `False` / `None`, a list), as NeMo's `safe_eval` does.
//! Other actions go to the config's actions.

use futures_util::future::BoxFuture;
use serde_json::{Map, Value};

use super::{super::prompts::VALUE_TASK, Inner};
use crate::{
    dialog::{Actions, DialogState, FlowAt, Said, Vars, expr, steps::GENERATE_VALUE},
    engine::answer::AnswerRequest,
    llm::LlmError,
};

/// The most text a generated value may have.
const MAX_VALUE: usize = 64 * 1024;

/// The actions of one dialog turn.
pub(super) struct TurnActions<'a> {
    pub inner: &'a Inner,
    pub request: &'a AnswerRequest,
    pub history: &'a str,
    pub user_input: &'a str,
    pub intent: &'a str,
}

impl std::fmt::Debug for TurnActions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnActions")
            .field("intent", &self.intent)
            .finish()
    }
}

impl Actions for TurnActions<'_> {
    fn run<'a>(
        &'a self,
        name: &'a str,
        args: Map<String, Value>,
        vars: &'a Vars,
    ) -> BoxFuture<'a, Result<Value, String>> {
        Box::pin(async move {
            if name != GENERATE_VALUE {
                let messages = &self.request.chat.messages;
                let history = messages.split_last().map_or(&messages[..], |(_, h)| h);
                let turn = (history, self.request.calls.as_deref());
                return self.inner.actions.run_in_turn(name, args, vars, turn).await;
            }
            let text = |k: &str| args.get(k).and_then(Value::as_str).unwrap_or_default();
            self.generate(text("instructions"), text("var_name")).await
        })
    }
}

impl TurnActions<'_> {
    /// Runs the turn's flow `(index, flow, first step)` over the state's
    /// variables: what it said, its variables, and the state after.
    pub(super) async fn run_flow(
        &self,
        chosen: crate::dialog::state::Chosen<'_>,
        prior: Option<&DialogState>,
        relevant_chunks: &str,
    ) -> Result<(Vec<Said>, Vars, DialogState), LlmError> {
        let inner = self.inner;
        // The request's context, then the signed state's variables over it:
        // a context message cannot replace a variable the state carries.
        let mut vars = self.request.context.as_deref().cloned().unwrap_or_default();
        vars.extend(prior.map(DialogState::start_vars).unwrap_or_default());
        vars.extend([
            ("user_message".into(), self.user_input.into()),
            ("last_user_message".into(), self.user_input.into()),
            ("relevant_chunks".into(), relevant_chunks.into()),
            ("config".into(), inner.config_value.clone()),
        ]);
        let (said, vars, waiting) =
            crate::dialog::turn::run_flow(&inner.dialog, self, chosen, vars)
                .await
                .map_err(LlmError::Api)?;
        let at = waiting.map(|step| FlowAt {
            flow: chosen.index,
            line: chosen.flow.line,
            step,
        });
        // The request's context is the request's: the state keeps what the
        // flows set (a context value a flow did not change stays out).
        let mut kept = vars.clone();
        if let Some(context) = &self.request.context {
            kept.retain(|k, v| context.get(k) != Some(v));
        }
        let state = DialogState::after(kept, at);
        Ok((said, vars, state))
    }

    async fn generate(&self, instructions: &str, var_name: &str) -> Result<Value, String> {
        let inner = self.inner;
        let ctx = minijinja::context! {
            general_instructions => inner.general.trim(),
            sample_conversation => inner.sample.trim(),
            history => self.history,
            user_input => self.user_input,
            user_intent => self.intent,
            instructions => instructions,
            var_name => var_name,
            config => &inner.config_vars,
        };
        let prompt = inner
            .prompts
            .render(VALUE_TASK, ctx)
            .map_err(|e| e.to_string())?;
        let answer = inner
            .ask(VALUE_TASK, prompt, self.request)
            .await
            .map_err(|e| format!("generating `${var_name}`: {e}"))?;
        read_value(&answer).map_err(|e| format!("generating `${var_name}`: {e}"))
    }
}

/// The value in the first line of the LLM's answer, as NeMo's `safe_eval`
/// reads it: a quoted string literal is its text, anything else is the line
/// itself as a string (NeMo quotes it before evaluating).
fn read_value(answer: &str) -> Result<Value, String> {
    let line = answer.trim().lines().next().unwrap_or_default().trim();
    let line = line.strip_suffix(';').unwrap_or(line).trim();
    if line.len() > MAX_VALUE {
        return Err(format!("the LLM's value is longer than {MAX_VALUE} bytes"));
    }
    let quoted = line.starts_with(['"', '\'']) && line.ends_with(['"', '\'']);
    if quoted && let Ok(expr::Expr::Lit(Value::String(s))) = expr::parse(line) {
        return Ok(Value::String(s));
    }
    Ok(Value::String(line.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_read_as_nemo_reads_them() {
        let read = |a: &str| read_value(a).unwrap();
        assert_eq!(read("\"What is 2+2?\";\nmore"), "What is 2+2?");
        assert_eq!(read("'single'"), "single");
        // NeMo quotes what is not a string literal: it stays text.
        assert_eq!(read(" 42 "), "42");
        assert_eq!(read("True"), "True");
        assert_eq!(read("['a', 'b']"), "['a', 'b']");
        assert_eq!(read("Bucharest"), "Bucharest");
        assert_eq!(read("$secret"), "$secret");
        assert_eq!(read("\"a\" + \"b\""), "\"a\" + \"b\"");
        let long = "x".repeat(MAX_VALUE + 1);
        assert!(read_value(&long).unwrap_err().contains("longer than"));
    }
}

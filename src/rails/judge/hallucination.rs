//! NeMo's `self check hallucination`: when a dialog flow set
//! `$check_hallucination = True`, the main model answers the same prompt
//! again (NeMo asks for two more completions at temperature 1.0), and the
//! judge says whether the answer agrees with them. NeMo asks for both in one
//! call with OpenAI's `n`, so only OpenAI models can; streamguard makes the
//! two calls side by side, so every provider can. The prompt is
//! `_last_bot_prompt` when an action set it, else the conversation the main
//! model answered.

use futures_util::future::try_join_all;
use serde_json::Value;

use super::{JudgeRail, call_model};
use crate::{
    llm::{CallParams, ChatMessage, Role},
    rails::{RailError, RailInput, Verdict},
};

/// How many more answers NeMo asks the main model for.
const EXTRA_ANSWERS: usize = 2;
/// The temperature they are asked at.
const TEMPERATURE: f64 = 1.0;

impl JudgeRail {
    pub(super) async fn hallucination(&self, input: &RailInput<'_>) -> Result<Verdict, RailError> {
        let context = input.context;
        let checks = context
            .and_then(|c| c.get("check_hallucination"))
            .is_some_and(|v| v == &Value::Bool(true));
        let answer = input.bot_response.unwrap_or_default();
        let Some(main) = self
            .main
            .as_ref()
            .filter(|_| checks && !answer.trim().is_empty())
        else {
            return Ok(Verdict::Allow);
        };
        let messages = match context
            .and_then(|c| c.get("_last_bot_prompt"))
            .and_then(Value::as_str)
        {
            Some(prompt) => vec![ChatMessage::user(prompt)],
            None => conversation(input),
        };
        let params = CallParams {
            temperature: Some(TEMPERATURE),
            ..CallParams::default()
        };
        let calls = (0..EXTRA_ANSWERS)
            .map(|_| call_model(&**main, "general", messages.clone(), &params, input.calls));
        let extra: Vec<String> = try_join_all(calls)
            .await
            .map_err(|e| {
                RailError(format!(
                    "`{}`: the main model's extra answers failed: {e}",
                    self.task
                ))
            })?
            .into_iter()
            .map(|a| a.trim().trim_matches('"').to_string())
            .filter(|a| !a.is_empty())
            .collect();
        if extra.is_empty() {
            return Ok(Verdict::Allow);
        }
        let paragraph = extra.join(". ");
        let verdict = self
            .call(self.render(input, Some(&paragraph))?, input)
            .await?;
        // NeMo: any "no" in the judge's answer is a hallucination.
        Ok(if verdict.to_lowercase().contains("no") {
            Verdict::Block {
                reason: format!(
                    "the answer disagrees with {} more answers of the main model (the judge answered {:?})",
                    extra.len(),
                    verdict.trim()
                ),
            }
        } else {
            Verdict::Allow
        })
    }
}

/// The messages the main model answered: the history and the user's message.
fn conversation(input: &RailInput<'_>) -> Vec<ChatMessage> {
    let mut messages = Vec::with_capacity(input.history.len() + 1);
    messages.extend(input.history.iter().cloned());
    if !matches!(input.history.last(), Some(m) if m.role == Role::User && m.content == input.user_input)
    {
        messages.push(ChatMessage::user(input.user_input));
    }
    messages
}

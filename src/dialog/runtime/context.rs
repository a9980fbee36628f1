//! What the output rails see of a dialog turn.

use super::{super::Said, Inner, Turn};
use crate::{dialog::Vars, llm::LlmError};

impl Inner {
    /// The variables output rails see: the flow's, the chunks, and (for
    /// `self check hallucination`, when the flow set `$check_hallucination`)
    /// `_last_bot_prompt`, the prompt of the last message to generate.
    pub(super) fn rail_context(&self, turn: &Turn) -> Result<Vars, LlmError> {
        let mut context = turn.vars.clone();
        context
            .entry("relevant_chunks".into())
            .or_insert_with(|| turn.relevant_chunks.clone().into());
        if !turn.chunks.is_empty() {
            context
                .entry("relevant_chunks_sep".into())
                .or_insert_with(|| turn.chunks.clone().into());
        }
        if context.get("check_hallucination") == Some(&serde_json::Value::Bool(true)) {
            let generated = turn.said.iter().rev().find_map(|s| match s {
                Said::Intent(b) if !self.dialog.bots.contains_key(b) => Some(b),
                _ => None,
            });
            if let Some(bot) = generated {
                context.insert(
                    "_last_bot_prompt".into(),
                    self.message_prompt(turn, bot)?.into(),
                );
            }
        }
        Ok(context)
    }
}

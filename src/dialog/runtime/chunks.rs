//! The knowledge base's chunks of a turn through the retrieval rails
//! (`rails.retrieval.flows`), before any prompt gets them.

use super::{super::Said, Inner, Turn};
use crate::{
    dialog::DialogState,
    engine::answer::AnswerRequest,
    llm::{ChatMessage, LlmError},
    rails::{Retrieved, UNKNOWN_INTENT},
};

impl Inner {
    /// The knowledge base's chunks for `user_input` after the retrieval
    /// rails, or what the bot says when one
    /// stopped the turn (what its flow said, else `inform answer unknown`).
    pub(super) async fn turn_chunks(
        &self,
        user_input: &str,
        earlier: &[ChatMessage],
        request: &AnswerRequest,
    ) -> Result<Result<Vec<String>, Said>, LlmError> {
        // Without a knowledge base, the request's `relevant_chunks`, as NeMo reads them.
        let given = request
            .context
            .as_ref()
            .and_then(|c| c.get("relevant_chunks"));
        let chunks = match (&self.kb, given.and_then(serde_json::Value::as_str)) {
            (Some(kb), _) => kb.relevant(user_input).await,
            (None, Some(text)) if !text.trim().is_empty() => vec![text.trim().to_string()],
            (None, _) => Vec::new(),
        };
        if self.retrieval_rails.is_empty() {
            return Ok(Ok(chunks));
        }
        let joined = chunks.join("\n");
        let calls = request.calls.as_deref();
        let guarded = self
            .retrieval_rails
            .run(user_input, &joined, earlier, calls)
            .await?;
        Ok(match guarded {
            Retrieved::Chunks(_, false) => Ok(chunks),
            // Rewritten, the chunks are one text.
            Retrieved::Chunks(text, true) => Ok(vec![text]),
            Retrieved::Stopped(Some(answer)) => Err(Said::Text(answer)),
            Retrieved::Stopped(None) => Err(Said::Intent(UNKNOWN_INTENT.into())),
        })
    }

    /// The turn a retrieval rail stopped: it says `said`, no flow runs and
    /// the state stays as it was.
    pub(super) fn stopped_turn(
        &self,
        (user_input, history): (String, String),
        said: Said,
        request: &AnswerRequest,
    ) -> Turn {
        let state = request
            .state
            .clone()
            .unwrap_or_else(|| DialogState::carried(None));
        Turn {
            user_input,
            relevant_chunks: String::new(),
            chunks: Vec::new(),
            history,
            intent: String::new(),
            said: vec![said],
            vars: state.vars.clone(),
            state,
            single: None,
        }
    }
}

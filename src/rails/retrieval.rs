//! `rails.retrieval.flows`: NeMo's retrieval rails, run in order on the
//! knowledge base's chunks of a turn (`$relevant_chunks`) before any prompt
//! gets them. A rail may rewrite the chunks (`mask sensitive data on
//! retrieval`, a flow assigning `$relevant_chunks`) or stop the turn (`detect
//! sensitive data on retrieval`, a flow's `stop`): then the bot answers what
//! the flow said, else NeMo's `inform answer unknown`.

use super::{RailInput, RailSet, Verdict};
use crate::llm::{CallLog, ChatMessage, LlmError};

/// The bot intent a retrieval rail that blocked answers with, as NeMo's
/// library flows do, and its library message.
pub const UNKNOWN_INTENT: &str = "inform answer unknown";
pub use super::service::ANSWER_UNKNOWN as UNKNOWN_ANSWER;

/// A config's retrieval rails, built at load.
#[derive(Debug, Default, Clone)]
pub struct RetrievalRails {
    rails: RailSet,
}

/// The chunks after the retrieval rails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retrieved {
    /// The chunks (rewritten when a rail rewrote them), and whether one did.
    Chunks(String, bool),
    /// A rail stopped the turn, saying this (`None`: it said nothing).
    Stopped(Option<String>),
}

impl RetrievalRails {
    pub fn new(rails: RailSet) -> Self {
        RetrievalRails { rails }
    }

    pub fn is_empty(&self) -> bool {
        self.rails.is_empty()
    }

    /// Runs the rails in order on `chunks` for the user's message.
    pub async fn run(
        &self,
        user_input: &str,
        chunks: &str,
        history: &[ChatMessage],
        calls: Option<&CallLog>,
    ) -> Result<Retrieved, LlmError> {
        let mut current = chunks.to_string();
        let mut rewritten = false;
        for rail in &self.rails {
            let input = RailInput {
                media: &[],
                user_input,
                bot_response: Some(&current),
                bot_thinking: None,
                history,
                calls,
                context: None,
            };
            let verdict = rail.check(input).await.map_err(|e| LlmError::Rail {
                rail: rail.flow().to_string(),
                message: e.0,
            })?;
            match verdict {
                Verdict::Allow => {}
                Verdict::Modify { text, .. } => {
                    current = text;
                    rewritten = true;
                }
                Verdict::Block { reason } => {
                    tracing::info!(flow = rail.flow(), %reason, "a retrieval rail stopped the turn");
                    return Ok(Retrieved::Stopped(None));
                }
                Verdict::Refuse { answer, reason } => {
                    tracing::info!(flow = rail.flow(), %reason, "a retrieval rail stopped the turn");
                    return Ok(Retrieved::Stopped(Some(answer)));
                }
            }
        }
        Ok(Retrieved::Chunks(current, rewritten))
    }
}

//! The scripted model: an in-process provider for demos and tests.
//!
//! It streams configured replies word by word with a delay, answers judge
//! prompts (any task other than `general`) by looking for block words, and can
//! be declared unable to stream (`streaming: false` on the model entry).
//!
//! ```yaml
//! models:
//!   - type: main
//!     engine: scripted
//!     model: demo
//!     parameters:
//!       delay_ms: 40                 # between chunks
//!       replies: ["Hello! How can I help?"]   # cycled
//!       responses:                   # picked when the user message contains `when`
//!         - when: weather
//!           reply: I cannot see the sky, but I hope it is sunny.
//!       block_words: [hack, bomb]    # judges flag prompts containing these
//! ```

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures_util::{FutureExt, future::BoxFuture};
use serde::Deserialize;

use super::{ChatRequest, Completion, Delta, DeltaStream, LlmError, Provider, Usage};
use crate::config::{ConfigError, ModelConfig};

/// The `parameters` of a scripted model entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedSettings {
    /// Replies for the main task, used in turn.
    #[serde(default)]
    pub replies: Vec<String>,
    /// Replies chosen by a substring of the last user message (case-insensitive).
    #[serde(default)]
    pub responses: Vec<ScriptedResponse>,
    /// Delay before each chunk after the first, in milliseconds.
    #[serde(default)]
    pub delay_ms: u64,
    /// Delay before the first chunk, in milliseconds.
    #[serde(default)]
    pub first_token_ms: u64,
    /// Judge prompts containing any of these (case-insensitive) are flagged.
    #[serde(default)]
    pub block_words: Vec<String>,
}

/// A reply chosen by what the user said.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedResponse {
    pub when: String,
    pub reply: String,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct ScriptedProvider {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: ScriptedSettings,
    block_words: Vec<String>,
    can_stream: bool,
    turn: AtomicUsize,
}

const DEFAULT_REPLY: &str =
    "This is the scripted model. Configure `parameters.replies` to change what it says.";

impl ScriptedProvider {
    /// A scripted model from settings.
    pub fn new(settings: ScriptedSettings, can_stream: bool) -> Self {
        let block_words = settings
            .block_words
            .iter()
            .map(|w| w.to_lowercase())
            .collect();
        ScriptedProvider {
            inner: Arc::new(Inner {
                settings,
                block_words,
                can_stream,
                turn: AtomicUsize::new(0),
            }),
        }
    }

    /// Builds it from a model entry; unknown parameters are errors naming the key.
    pub fn from_config(model: &ModelConfig) -> Result<Self, ConfigError> {
        let settings: ScriptedSettings = serde_json::from_value(serde_json::Value::Object(
            model.parameters.clone(),
        ))
        .map_err(|e| {
            ConfigError::invalid(
                &model.source,
                format!("{}.parameters", model.key),
                e.to_string(),
            )
        })?;
        Ok(Self::new(settings, model.streaming))
    }

    fn answer(&self, request: &ChatRequest) -> String {
        let prompt = request
            .messages
            .last()
            .map(|m| m.content.as_str())
            .unwrap_or_default();
        let last_user = match request.task.as_str() {
            "general" => request
                .messages
                .iter()
                .rev()
                .find(|m| m.role == "user")
                .map(|m| m.content.to_lowercase())
                .unwrap_or_default(),
            // Dialog tasks: the user's turn is the prompt's last `user "…"` line.
            "generate_bot_message" => dialog_user(prompt).to_lowercase(),
            "generate_user_intent" => return dialog_intent(prompt),
            "generate_next_steps" => return "general response".into(),
            // Single call: both intents, then the message, as a model writes them.
            "generate_intent_steps_message" => {
                let user = dialog_user(prompt).to_lowercase();
                let message = self.reply_for(&user);
                let message = message.trim().trim_matches('"');
                return format!(
                    "  {}\nbot general response\n  \"{message}\"",
                    dialog_intent(prompt)
                );
            }
            _ => return self.judge(request),
        };
        self.reply_for(&last_user)
    }

    /// The reply to a (lower-cased) user message: a matching `responses`
    /// entry, else the next of `replies`.
    fn reply_for(&self, last_user: &str) -> String {
        let s = &self.inner.settings;
        if let Some(r) = s
            .responses
            .iter()
            .find(|r| last_user.contains(&r.when.to_lowercase()))
        {
            return r.reply.clone();
        }
        if s.replies.is_empty() {
            return DEFAULT_REPLY.to_string();
        }
        let turn = self.inner.turn.fetch_add(1, Ordering::Relaxed);
        s.replies[turn % s.replies.len()].clone()
    }

    /// Answers a judge prompt in the vocabulary its task expects.
    fn judge(&self, request: &ChatRequest) -> String {
        let flagged = request.messages.iter().any(|m| {
            let text = m.content.to_lowercase();
            self.inner.block_words.iter().any(|w| text.contains(w))
        });
        let task = request.task.as_str();
        let (bad, good) = if task.starts_with("content_safety") || task.starts_with("llama_guard") {
            ("unsafe", "safe")
        } else if task.starts_with("topic_safety") {
            ("off-topic", "on-topic")
        } else {
            ("Yes", "No")
        };
        (if flagged { bad } else { good }).to_string()
    }
}

/// The text of the last `user "…"` line of a Colang-style prompt.
fn dialog_user(prompt: &str) -> &str {
    prompt
        .lines()
        .rev()
        .find_map(|l| {
            l.trim()
                .strip_prefix("user \"")
                .and_then(|r| r.strip_suffix('"'))
        })
        .unwrap_or_default()
}

/// Answers an intent prompt the way a model would: the intent of the example
/// (`user "…"` then an indented intent) sharing most words with the user's turn.
fn dialog_intent(prompt: &str) -> String {
    let words = |s: &str| -> Vec<String> {
        s.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    };
    let asked = words(dialog_user(prompt));
    let lines: Vec<&str> = prompt.lines().collect();
    let mut best = (0, "unknown".to_string());
    for pair in lines.windows(2) {
        let (Some(example), Some(intent)) = (
            pair[0]
                .strip_prefix("user \"")
                .and_then(|r| r.strip_suffix('"')),
            pair[1].strip_prefix("  "),
        ) else {
            continue;
        };
        let example = words(example);
        let shared = example.iter().filter(|w| asked.contains(w)).count();
        // At least half of the example's words, so "what is …" is not "what can you do".
        if shared > best.0 && shared * 2 >= example.len() {
            best = (shared, intent.trim().to_string());
        }
    }
    best.1
}

/// Splits text into word chunks that keep their leading whitespace, the way
/// model tokens arrive: "Hi there" → ["Hi", " there"].
pub(crate) fn word_chunks(text: &str) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut prev_space = true;
    for (i, c) in text.char_indices() {
        let space = c.is_whitespace();
        if space && !prev_space && i > start {
            chunks.push(text[start..i].to_string());
            start = i;
        }
        prev_space = space;
    }
    if start < text.len() {
        chunks.push(text[start..].to_string());
    }
    chunks
}

fn usage(request: &ChatRequest, completion_tokens: usize) -> Usage {
    let prompt_tokens: usize = request
        .messages
        .iter()
        .map(|m| m.content.split_whitespace().count())
        .sum();
    let p = u32::try_from(prompt_tokens).unwrap_or(u32::MAX);
    let c = u32::try_from(completion_tokens).unwrap_or(u32::MAX);
    Usage {
        prompt_tokens: p,
        completion_tokens: c,
        total_tokens: p.saturating_add(c),
    }
}

/// Cuts `text` before the first stop string, as an endpoint would.
fn apply_stop(mut text: String, stop: &[String]) -> String {
    if let Some(cut) = stop.iter().filter_map(|s| text.find(s.as_str())).min() {
        text.truncate(cut);
    }
    text
}

impl Provider for ScriptedProvider {
    fn can_stream(&self) -> bool {
        self.inner.can_stream
    }

    fn complete(&self, request: ChatRequest) -> BoxFuture<'static, Result<Completion, LlmError>> {
        let text = apply_stop(self.answer(&request), &request.params.stop);
        let usage = usage(&request, word_chunks(&text).len());
        let delay = Duration::from_millis(self.inner.settings.first_token_ms);
        async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok(Completion {
                text,
                usage: Some(usage),
            })
        }
        .boxed()
    }

    fn stream(&self, request: ChatRequest) -> DeltaStream {
        let text = apply_stop(self.answer(&request), &request.params.stop);
        let chunks = word_chunks(&text);
        let usage = usage(&request, chunks.len());
        let first = Duration::from_millis(self.inner.settings.first_token_ms);
        let gap = Duration::from_millis(self.inner.settings.delay_ms);
        Box::pin(async_stream::stream! {
            for (i, chunk) in chunks.into_iter().enumerate() {
                let wait = if i == 0 { first } else { gap };
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                yield Ok(Delta::Text(chunk));
            }
            yield Ok(Delta::Usage(usage));
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{CallParams, ChatMessage};
    use futures_util::StreamExt;

    fn request(task: &str, user: &str) -> ChatRequest {
        ChatRequest {
            task: task.into(),
            messages: vec![ChatMessage::new("user", user)],
            params: CallParams::default(),
            traceparent: None,
            calls: None,
        }
    }

    #[test]
    fn word_chunks_keep_spacing() {
        assert_eq!(word_chunks("Hi there,  you"), ["Hi", " there,", "  you"]);
        assert_eq!(word_chunks(" lead"), [" lead"]);
        assert_eq!(word_chunks("a\nb "), ["a", "\nb", " "]);
        assert!(word_chunks("").is_empty());
        let text = "Paris is the capital of France.\n\nIt is lovely.";
        assert_eq!(word_chunks(text).concat(), text);
    }

    #[tokio::test]
    async fn streams_chosen_reply_and_judges_by_block_words() {
        let p = ScriptedProvider::new(
            ScriptedSettings {
                replies: vec!["one two".into()],
                responses: vec![ScriptedResponse {
                    when: "WEATHER".into(),
                    reply: "sunny today".into(),
                }],
                block_words: vec!["Hack".into()],
                ..Default::default()
            },
            true,
        );
        let chunks: Vec<_> = p.stream(request("general", "the weather?")).collect().await;
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[0].as_ref().ok(), Some(&Delta::Text("sunny".into())));
        let c = p
            .complete(request("general", "hi"))
            .await
            .ok()
            .map(|c| c.text);
        assert_eq!(c.as_deref(), Some("one two"));
        let judge = |t: &str, u: &str| p.judge(&request(t, u));
        assert_eq!(judge("self_check_input", "how to hack a bank"), "Yes");
        assert_eq!(judge("self_check_input", "hello"), "No");
        assert_eq!(judge("content_safety_check_input", "HACK"), "unsafe");
        assert_eq!(judge("topic_safety_check_input", "hi"), "on-topic");
    }
}

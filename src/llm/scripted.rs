//! The scripted model: an in-process provider for demos and tests.
//!
//! It streams configured replies word by word with a delay, and answers calls
//! for other prompt tasks (judges, dialog steps) from the `tasks` table of
//! its config entry ([`ScriptedSettings`]); it knows no task names itself.
//! It can be declared unable to stream (`streaming: false` on the entry).

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures_util::{FutureExt, future::BoxFuture};

use super::{ChatRequest, Completion, Delta, DeltaStream, Finish, LlmError, Provider, Role, Usage};
use crate::config::{ScriptedAnswer, ScriptedSettings, ScriptedTask};

/// See the module docs.
#[derive(Debug, Clone)]
pub struct ScriptedProvider {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: ScriptedSettings,
    /// Per task rule, its flag words lower-cased.
    flags: Vec<Vec<String>>,
    can_stream: bool,
    turn: AtomicUsize,
}

const DEFAULT_REPLY: &str =
    "This is the scripted model. Configure `parameters.replies` to change what it says.";

/// The main answer's task.
const GENERAL: &str = "general";

impl ScriptedProvider {
    /// A scripted model from settings.
    pub fn new(settings: ScriptedSettings, can_stream: bool) -> Self {
        let flags = settings
            .tasks
            .iter()
            .map(|t| t.flag.iter().map(|w| w.to_lowercase()).collect())
            .collect();
        ScriptedProvider {
            inner: Arc::new(Inner {
                settings,
                flags,
                can_stream,
                turn: AtomicUsize::new(0),
            }),
        }
    }

    /// The table entry for `task`: an exact name, or a prefix ending in `*`.
    fn rule(&self, task: &str) -> Option<(&ScriptedTask, &[String])> {
        let s = &self.inner.settings;
        s.tasks
            .iter()
            .zip(&self.inner.flags)
            .find(|(t, _)| match t.task.strip_suffix('*') {
                Some(prefix) => task.starts_with(prefix),
                None => t.task == task,
            })
            .map(|(t, f)| (t, f.as_slice()))
    }

    fn answer(&self, request: &ChatRequest) -> String {
        let last_user = || {
            request
                .messages
                .iter()
                .rev()
                .find(|m| m.role == Role::User)
                .map(|m| m.content.to_lowercase())
                .unwrap_or_default()
        };
        if request.task == GENERAL {
            return self.reply_for(&last_user());
        }
        let Some((rule, flags)) = self.rule(&request.task) else {
            return self.reply_for(&last_user());
        };
        let prompt = request
            .messages
            .last()
            .map(|m| m.content.as_str())
            .unwrap_or_default();
        if !flags.is_empty() {
            let flagged = request.messages.iter().any(|m| {
                let text = m.content.to_lowercase();
                flags.iter().any(|w| text.contains(w))
            });
            if flagged {
                return rule.flagged.clone().unwrap_or_default();
            }
        }
        match rule.answer {
            Some(ScriptedAnswer::ClosestIntent) => closest_intent(prompt),
            Some(ScriptedAnswer::Reply) => self.reply_for(&prompt_user(prompt).to_lowercase()),
            Some(ScriptedAnswer::IntentAndReply) => {
                let message = self.reply_for(&prompt_user(prompt).to_lowercase());
                let bot = rule.bot_intent.as_deref().unwrap_or("general response");
                format!(
                    "  {}\nbot {bot}\n  \"{}\"",
                    closest_intent(prompt),
                    message.trim().trim_matches('"')
                )
            }
            None => rule.reply.clone().unwrap_or_default(),
        }
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
}

/// The text of the last `user "…"` line of a Colang-style prompt.
fn prompt_user(prompt: &str) -> &str {
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
fn closest_intent(prompt: &str) -> String {
    let words = |s: &str| -> Vec<String> {
        s.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    };
    let asked = words(prompt_user(prompt));
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
                finish: Some(Finish::Stop),
                reasoning: None,
                tool_calls: Vec::new(),
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
            yield Ok(Delta::Finish(Finish::Stop));
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::ScriptedResponse, llm::ChatMessage};
    use futures_util::StreamExt;

    fn request(task: &str, user: &str) -> ChatRequest {
        ChatRequest::new(task, vec![ChatMessage::user(user)])
    }

    fn judge(task: &str, flag: &[&str], flagged: &str, reply: &str) -> ScriptedTask {
        ScriptedTask {
            task: task.into(),
            flag: flag.iter().map(|s| s.to_string()).collect(),
            flagged: Some(flagged.into()),
            reply: Some(reply.into()),
            answer: None,
            bot_intent: None,
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
    async fn streams_chosen_reply_and_answers_tasks_from_the_table() {
        let p = ScriptedProvider::new(
            ScriptedSettings {
                replies: vec!["one two".into()],
                responses: vec![ScriptedResponse {
                    when: "WEATHER".into(),
                    reply: "sunny today".into(),
                }],
                tasks: vec![
                    judge("self_check_input", &["Hack"], "Yes", "No"),
                    judge("content_safety_check_*", &["hack"], "unsafe", "safe"),
                ],
                ..Default::default()
            },
            true,
        );
        let chunks: Vec<_> = p.stream(request("general", "the weather?")).collect().await;
        assert_eq!(chunks.len(), 4, "two words, usage, finish");
        assert_eq!(chunks[0].as_ref().ok(), Some(&Delta::Text("sunny".into())));
        let c = p
            .complete(request("general", "hi"))
            .await
            .ok()
            .map(|c| c.text);
        assert_eq!(c.as_deref(), Some("one two"));
        let ask = |t: &str, u: &str| p.answer(&request(t, u));
        assert_eq!(ask("self_check_input", "how to hack a bank"), "Yes");
        assert_eq!(ask("self_check_input", "hello"), "No");
        assert_eq!(ask("content_safety_check_input $model=x", "HACK"), "unsafe");
        assert_eq!(ask("content_safety_check_output $model=x", "hi"), "safe");
        // A task the table does not name gets the main reply.
        assert_eq!(ask("topic_safety_check_input", "hi"), "one two");
    }

    #[test]
    fn dialog_answers_are_computed_from_the_colang_prompt() {
        let p = ScriptedProvider::new(
            ScriptedSettings {
                replies: vec!["Paris, of course.".into()],
                tasks: vec![
                    ScriptedTask {
                        answer: Some(ScriptedAnswer::ClosestIntent),
                        ..judge("generate_user_intent", &[], "", "")
                    },
                    ScriptedTask {
                        answer: Some(ScriptedAnswer::IntentAndReply),
                        ..judge("generate_intent_steps_message", &[], "", "")
                    },
                ],
                ..Default::default()
            },
            true,
        );
        let prompt = "user \"hello there\"\n  express greeting\nuser \"what can you do\"\n  ask about capabilities\n# now\nuser \"hello!\"\n";
        assert_eq!(
            p.answer(&request("generate_user_intent", prompt)),
            "express greeting"
        );
        assert_eq!(
            p.answer(&request("generate_intent_steps_message", prompt)),
            "  express greeting\nbot general response\n  \"Paris, of course.\""
        );
    }
}

//! The Colang 1.0 dialog runtime, as the engine's [`Answerer`]: it wraps the
//! main model, so the engine streams from it exactly as from the model and
//! input rails, output-rail windows and every front end apply unchanged.
//!
//! Per turn: one `generate_user_intent` call (general instruction, sample
//! conversation, the most relevant `define user` examples, the conversation
//! as Colang history); the intent is matched against the flows (a flow that
//! starts with it, or a `when` arm continuing a flow whose bot step was the
//! last answer); with no match one `generate_next_steps` call predicts the
//! bot intent. A `define bot` message is sent as-is (one chunk); otherwise a
//! `generate_bot_message` call writes it and streams to the caller, with the
//! `bot …` line and the quotes stripped as the tokens arrive. In single-call
//! mode one call writes both intents and the message.

use std::{sync::Arc, time::Instant};

use futures_util::StreamExt;

use super::{
    Actions, Dialog, DialogState, Said, Step, Vars,
    message::read_intent,
    prompts::{BOT_MESSAGE_TASK, NEXT_STEPS_TASK, Prompts, SINGLE_CALL_TASK, USER_INTENT_TASK},
    retrieval::Retrieval,
    stream::{MessageCall, message_stream, with_new_turn},
};
use crate::{
    config::{Config, ConfigError},
    engine::answer::{AnswerRequest, Answerer, DialogTurn, Piece, PieceStream},
    kb::KnowledgeBase,
    llm::{
        CallParams, ChatMessage, ChatRequest, Delta, DeltaStream, Embedder, LlmError, Provider,
        Role,
    },
    rails::{RetrievalRails, template::TemplateBudget},
};

/// How deep `do` may nest.
const MAX_DEPTH: usize = 8;

mod chunks;
mod context;
mod value_gen;

/// The dialog runtime of one config (cheap to clone).
#[derive(Debug, Clone)]
pub struct DialogRuntime {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dialog: Arc<Dialog>,
    /// The knowledge base, whose chunks go into the bot-message prompts.
    kb: Option<Arc<KnowledgeBase>>,
    /// Where dialog flows' `execute` runs.
    actions: Arc<dyn Actions>,
    /// `$config` for flows.
    config_value: serde_json::Value,
    retrieval: Retrieval,
    /// `rails.retrieval.flows`, on the knowledge base's chunks.
    retrieval_rails: RetrievalRails,
    llm: Arc<dyn Provider>,
    prompts: Prompts,
    general: String,
    sample: String,
    temperature: f64,
    single_call: bool,
    settings: crate::config::DialogSettings,
    /// What templates see as `config` (`config.custom_data`).
    config_vars: minijinja::Value,
}

/// The start of a single-call answer: both intents, and the message still
/// coming.
struct SingleCall {
    user_intent: String,
    bot_intent: String,
    /// For the request log.
    prompt: String,
    started: Instant,
    /// Everything the call has answered so far.
    raw: String,
    /// Message text already read past the `bot …` line.
    rest: String,
    stream: DeltaStream,
}

/// How the runtime read one turn.
struct Turn {
    user_input: String,
    /// NeMo's `$relevant_chunks` for the message ("" without a knowledge base).
    relevant_chunks: String,
    /// The chunks one by one (NeMo's `$relevant_chunks_sep`).
    chunks: Vec<String>,
    history: String,
    intent: String,
    /// What the bot says: messages, and intents to find or write a message for.
    said: Vec<Said>,
    /// The flow's variables after the turn (for `$var` in messages).
    vars: Vars,
    /// What the next turn resumes from.
    state: DialogState,
    single: Option<SingleCall>,
}

impl DialogRuntime {
    /// The runtime over `llm` (the main model) for `config`'s dialog;
    /// `embedder` ranks the intent examples when the config has one, and
    /// the knowledge base's chunks go into the bot-message prompts.
    pub fn new(
        config: &Config,
        dialog: Arc<Dialog>,
        llm: Arc<dyn Provider>,
        (embedder, kb): (Option<Arc<dyn Embedder>>, Option<Arc<KnowledgeBase>>),
        (actions, retrieval_rails): (Arc<dyn Actions>, RetrievalRails),
        templates: TemplateBudget,
    ) -> Result<Self, ConfigError> {
        Ok(DialogRuntime {
            inner: Arc::new(Inner {
                kb,
                actions,
                retrieval_rails,
                config_value: super::config_var(config, &dialog),
                retrieval: Retrieval::new(&dialog, embedder),
                dialog,
                llm,
                prompts: Prompts::new(config, templates)?,
                general: config
                    .instruction("general")
                    .unwrap_or_default()
                    .to_string(),
                sample: config.sample_conversation().unwrap_or_default().to_string(),
                temperature: config.lowest_temperature(),
                single_call: config.single_call(),
                settings: config.dialog_settings().clone(),
                config_vars: crate::rails::template::config_vars(config),
            }),
        })
    }
}

impl Inner {
    /// The intent whose example equals `text` (for earlier turns, without an LLM call).
    fn known_intent(&self, text: &str) -> Option<&str> {
        let t = text.trim().to_lowercase();
        self.dialog
            .users
            .iter()
            .find(|(_, ex)| ex.iter().any(|e| e.trim().to_lowercase() == t))
            .map(|(i, _)| i.as_str())
    }

    /// The conversation before the last user message, as Colang history.
    fn history(&self, turns: &[ChatMessage]) -> String {
        let mut out = String::new();
        for m in turns {
            match m.role {
                Role::User => {
                    out.push_str(&format!("user \"{}\"\n", m.content));
                    if let Some(i) = self.known_intent(&m.content) {
                        out.push_str(&format!("  {i}\n"));
                    }
                }
                Role::Assistant => out.push_str(&format!("bot\n  \"{}\"\n", m.content)),
                Role::System | Role::Tool => {}
            }
        }
        out
    }

    fn call(&self, task: &str, prompt: String, params: &CallParams) -> ChatRequest {
        let mut call = ChatRequest::new(task, vec![ChatMessage::user(prompt)]);
        call.params = CallParams {
            temperature: Some(self.temperature),
            max_tokens: params.max_tokens,
            stop: params.stop.clone(),
        };
        call
    }

    /// One non-streaming dialog call, recorded in the request's log.
    async fn ask(
        &self,
        task: &str,
        prompt: String,
        request: &AnswerRequest,
    ) -> Result<String, LlmError> {
        let call = self.call(task, prompt.clone(), &request.chat.params);
        super::stream::complete(self.llm.as_ref(), call, &prompt, request.calls.as_deref()).await
    }

    /// Starts the single call and reads it up to the end of the `bot …`
    /// line; `None` when the answer does not have that shape (the caller
    /// falls back to multi-call).
    async fn single_call(
        &self,
        prompt: String,
        params: &CallParams,
    ) -> Result<Option<SingleCall>, LlmError> {
        let started = Instant::now();
        // At the lowest temperature, as NeMo makes this call.
        let mut request = self.call(SINGLE_CALL_TASK, prompt.clone(), params);
        request.params.stop = with_new_turn(&params.stop);
        let mut stream = self.llm.stream(request);
        let mut buf = String::new();
        loop {
            let complete: Vec<&str> = buf
                .split_inclusive('\n')
                .filter(|l| l.ends_with('\n') && !l.trim().is_empty())
                .collect();
            if complete.len() >= 2 {
                let bot_line = complete[1].trim();
                if !bot_line.starts_with("bot ") || complete[0].trim().starts_with("bot ") {
                    return Ok(None);
                }
                let end = buf
                    .find(complete[1])
                    .map_or(buf.len(), |at| at + complete[1].len());
                return Ok(Some(SingleCall {
                    user_intent: read_intent(complete[0]),
                    bot_intent: read_intent(bot_line),
                    prompt,
                    started,
                    rest: buf[end..].to_string(),
                    raw: buf,
                    stream,
                }));
            }
            match stream.next().await {
                Some(Ok(Delta::Text(t))) => buf.push_str(&t),
                Some(Ok(
                    Delta::Usage(_) | Delta::Finish(_) | Delta::Reasoning(_) | Delta::ToolCall(_),
                )) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(None),
            }
        }
    }

    /// With `embeddings_only`: the closest example's intent when it is
    /// similar enough, else the fallback intent; `None` asks the LLM.
    async fn embeddings_intent(&self, user_input: &str) -> Option<String> {
        let s = &self.settings;
        if !s.embeddings_only {
            return None;
        }
        let closest = self.retrieval.closest(user_input).await;
        let threshold = s.embeddings_only_similarity_threshold;
        match closest {
            Some((intent, score)) if threshold.is_none_or(|t| score >= t) => Some(intent),
            // Without a model the closest of one intent is that one (NeMo's
            // `guardrails_only` configs define one, `user input`).
            None if threshold.is_none() && self.dialog.users.len() == 1 => {
                self.dialog.users.first().map(|(intent, _)| intent.clone())
            }
            _ => s.embeddings_only_fallback_intent.clone(),
        }
    }

    /// The user's intent: the single call's, else by embeddings alone, else a
    /// `generate_user_intent` call's.
    async fn user_intent(
        &self,
        ctx: minijinja::Value,
        single_intents: &Option<(String, String)>,
        user_input: &str,
        request: &AnswerRequest,
    ) -> Result<String, LlmError> {
        Ok(match single_intents {
            Some((user, _)) => user.clone(),
            None => match self.embeddings_intent(user_input).await {
                Some(intent) => intent,
                None => {
                    let prompt = self.prompts.render(USER_INTENT_TASK, ctx)?;
                    read_intent(&self.ask(USER_INTENT_TASK, prompt, request).await?)
                }
            },
        })
    }

    /// Reads the turn: the user's intent and the bot intents to answer with.
    async fn read_turn(&self, request: &AnswerRequest) -> Result<Turn, LlmError> {
        let turns = conversation(request);
        let (user_input, earlier) = match turns.split_last() {
            Some((last, earlier)) => (last.content.clone(), earlier),
            None => (String::new(), &[][..]),
        };
        let history = self.history(earlier);
        let examples = self.retrieval.relevant(&user_input).await;
        let chunks = match self.turn_chunks(&user_input, earlier, request).await? {
            Ok(chunks) => chunks,
            Err(said) => return Ok(self.stopped_turn((user_input, history), said, request)),
        };
        let relevant_chunks = chunks.join("\n");
        let ctx = minijinja::context! {
            general_instructions => self.general.trim(),
            sample_conversation => self.sample.trim(),
            examples => examples,
            history => &history,
            user_input => &user_input,
            relevant_chunks => &relevant_chunks,
            config => &self.config_vars,
        };
        // Single-call mode: intents and message in one call; an answer of
        // another shape falls back to multi-call.
        let single = if self.single_call {
            let prompt = self.prompts.render(SINGLE_CALL_TASK, ctx.clone())?;
            self.single_call(prompt, &request.chat.params).await?
        } else {
            None
        };
        // Intents are read out first: a borrow of the single call (its
        // stream is not `Sync`) must not live across an await.
        let single_intents = single
            .as_ref()
            .map(|s| (s.user_intent.clone(), s.bot_intent.clone()));
        let intent = self
            .user_intent(ctx, &single_intents, &user_input, request)
            .await?;
        let prior = request.state.as_ref();
        let last_bot = earlier.iter().rev().find(|m| m.role == Role::Assistant);
        let last_bot = last_bot.map(|m| m.content.trim());
        let (said, vars, state) = match super::state::choose(&self.dialog, prior, last_bot, &intent)
        {
            Some(chosen) => {
                let actions = value_gen::TurnActions {
                    inner: self,
                    request,
                    history: &history,
                    user_input: &user_input,
                    intent: &intent,
                };
                actions.run_flow(chosen, prior, &relevant_chunks).await?
            }
            None => {
                let read = (earlier, &history[..], &user_input[..], &intent[..]);
                let bots = self.bot_intents(read, single_intents, request).await?;
                let said = bots.into_iter().map(Said::Intent).collect();
                // The state's and the request's variables render the bot's messages.
                let state = DialogState::carried(prior);
                let mut vars = request.context.as_deref().cloned().unwrap_or_default();
                vars.extend(state.vars.clone());
                (said, vars, state)
            }
        };
        Ok(Turn {
            user_input,
            relevant_chunks,
            chunks,
            history,
            intent,
            said,
            vars,
            state,
            single,
        })
    }

    /// The bot intents after `intent`: the flows', else the single call's,
    /// else a `generate_next_steps` call's.
    async fn bot_intents(
        &self,
        (earlier, history, user_input, intent): (&[ChatMessage], &str, &str, &str),
        single_intents: Option<(String, String)>,
        request: &AnswerRequest,
    ) -> Result<Vec<String>, LlmError> {
        Ok(match (self.plan(earlier, intent), single_intents) {
            (Some(p), _) if !p.is_empty() => p,
            (_, Some((_, bot))) => vec![bot],
            _ => {
                let ctx = minijinja::context! {
                    general_instructions => self.general.trim(),
                    history => history,
                    user_input => user_input,
                    user_intent => intent,
                    config => &self.config_vars,
                };
                let prompt = self.prompts.render(NEXT_STEPS_TASK, ctx)?;
                vec![read_intent(
                    &self.ask(NEXT_STEPS_TASK, prompt, request).await?,
                )]
            }
        })
    }

    /// The call that writes the message for `bot`: the single call's, when
    /// it answered this intent, else a `generate_bot_message` call.
    /// The `generate_bot_message` prompt for `bot` in this turn.
    fn message_prompt(&self, turn: &Turn, bot: &str) -> Result<String, LlmError> {
        let ctx = minijinja::context! {
            general_instructions => self.general.trim(),
            history => &turn.history,
            user_input => &turn.user_input,
            user_intent => &turn.intent,
            bot_intent => bot,
            relevant_chunks => &turn.relevant_chunks,
            config => &self.config_vars,
        };
        self.prompts.render(BOT_MESSAGE_TASK, ctx)
    }

    fn message_call(
        &self,
        turn: &mut Turn,
        bot: &str,
        params: &CallParams,
    ) -> Result<MessageCall, LlmError> {
        if let Some(s) = turn.single.take_if(|s| s.bot_intent == bot) {
            return Ok(MessageCall {
                tokens: s.stream,
                task: SINGLE_CALL_TASK,
                prompt: s.prompt,
                started: s.started,
                raw: s.raw,
                rest: s.rest,
            });
        }
        let prompt = self.message_prompt(turn, bot)?;
        let mut call = self.call(BOT_MESSAGE_TASK, prompt.clone(), params);
        call.params.temperature = None;
        call.params.stop = with_new_turn(&params.stop);
        Ok(MessageCall {
            tokens: self.llm.stream(call),
            task: BOT_MESSAGE_TASK,
            prompt,
            started: Instant::now(),
            raw: String::new(),
            rest: String::new(),
        })
    }

    /// The bot intents the flows prescribe after `intent`, or `None`.
    fn plan(&self, turns: &[ChatMessage], intent: &str) -> Option<Vec<String>> {
        let last_bot = turns
            .iter()
            .rev()
            .find(|m| m.role == Role::Assistant)
            .map(|m| m.content.trim());
        // A `when` arm continuing a flow whose bot step was the last answer.
        if let Some(last) = last_bot
            && let Some(p) = self.continuation(last, intent)
        {
            return Some(p);
        }
        // A flow that starts with this intent.
        self.dialog.flows.iter().find_map(|flow| {
            let steps = self.inline(&flow.steps, 0);
            match steps.first() {
                Some(Step::User(u)) if u == intent => Some(self.bots_until_user(&steps[1..])),
                _ => None,
            }
        })
    }

    /// The bots of the `when` arm for `intent` after a bot step that said `last`.
    fn continuation(&self, last: &str, intent: &str) -> Option<Vec<String>> {
        for flow in &self.dialog.flows {
            let steps = self.inline(&flow.steps, 0);
            for (i, step) in steps.iter().enumerate() {
                let Step::Branch(arms) = step else { continue };
                let said = i > 0
                    && matches!(&steps[i - 1], Step::Bot(b) if self.dialog.bots.get(b).is_some_and(|ms| ms.iter().any(|m| last.ends_with(m.trim()))));
                if !said {
                    continue;
                }
                let arm = arms
                    .iter()
                    .find(|(a, _)| a.as_deref() == Some(intent))
                    .or_else(|| arms.iter().find(|(a, _)| a.is_none()));
                if let Some((_, body)) = arm {
                    return Some(self.bots_until_user(&self.inline(body, 0)));
                }
            }
        }
        None
    }

    /// Steps with `do` subflows inlined.
    fn inline(&self, steps: &[Step], depth: usize) -> Vec<Step> {
        let mut out = Vec::new();
        for s in steps {
            match s {
                Step::Do(name) if depth < MAX_DEPTH => {
                    if let Some(sub) = self.dialog.subflows.get(name) {
                        out.extend(self.inline(&sub.steps, depth + 1));
                    }
                }
                other => out.push(other.clone()),
            }
        }
        out
    }

    /// The bot steps up to the next user turn.
    fn bots_until_user(&self, steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map_while(|s| match s {
                Step::Bot(b) => Some(Some(b.clone())),
                Step::Do(_) => Some(None),
                _ => None,
            })
            .flatten()
            .collect()
    }
}

/// The request's conversation, system messages left out.
fn conversation(request: &AnswerRequest) -> Vec<ChatMessage> {
    let messages = request.chat.messages.iter();
    messages
        .filter(|m| m.role != Role::System)
        .cloned()
        .collect()
}

impl Answerer for DialogRuntime {
    fn can_stream(&self) -> bool {
        self.inner.llm.can_stream()
    }

    fn stream(&self, request: AnswerRequest) -> PieceStream {
        let runtime = self.inner.clone();
        Box::pin(async_stream::try_stream! {
            let mut turn = runtime.read_turn(&request).await?;
            let last_intent = turn.said.iter().rev().find_map(|s| match s {
                Said::Intent(b) => Some(b.clone()),
                Said::Text(_) => None,
            });
            let context = runtime.rail_context(&turn)?;
            yield Piece::Dialog(DialogTurn {
                user_intent: turn.intent.clone(),
                bot_intent: last_intent.unwrap_or_default(),
                context,
                state: Some(turn.state.clone()),
            });
            let said = std::mem::take(&mut turn.said);
            for (i, step) in said.iter().enumerate() {
                if i > 0 {
                    yield Piece::Text("\n".into());
                }
                let bot = match step {
                    Said::Text(text) => {
                        yield Piece::Text(text.clone());
                        continue;
                    }
                    Said::Intent(bot) => bot,
                };
                // A predefined message wins, also over a single call's own
                // message (NeMo's message override); it is one chunk.
                if let Some(message) = runtime.dialog.bots.get(bot).and_then(|m| m.first()) {
                    yield Piece::Text(super::render(message, &turn.vars));
                    continue;
                }
                let call = runtime.message_call(&mut turn, bot, &request.chat.params)?;
                let mut message = message_stream(call, request.calls.clone());
                while let Some(piece) = message.next().await {
                    yield piece?;
                }
            }
        })
    }
}

//! The Colang 1.0 dialog runtime (multi-call mode), as a [`Provider`] that
//! wraps the main model: the engine streams from it exactly as from the main
//! model, so input rails, output-rail windows and every front end apply to
//! dialog answers unchanged.
//!
//! Per turn: one `generate_user_intent` call (general instruction, sample
//! conversation, the most relevant `define user` examples, the conversation
//! as Colang history); the intent is matched against the flows (a flow that
//! starts with it, or a `when` arm continuing a flow whose bot step was the
//! last answer); with no match one `generate_next_steps` call predicts the
//! bot intent. A `define bot` message is sent as-is (one chunk); otherwise a
//! `generate_bot_message` call writes it and streams to the caller, with the
//! `bot …` line and the quotes stripped as the tokens arrive.

use std::{collections::BTreeMap, sync::Arc};

use futures_util::{FutureExt, StreamExt, future::BoxFuture};
use minijinja::Environment;

use super::{Dialog, Step};
use crate::{
    config::{Config, ConfigError, EngineKind, PromptBody},
    llm::{
        CallParams, CallRecord, ChatMessage, ChatRequest, Completion, Delta, DeltaStream, LlmError,
        OpenAiProvider, Provider, UpstreamSettings,
    },
};

/// Examples shown to the intent prompt.
const TOP_K: usize = 5;
/// How deep `do` may nest.
const MAX_DEPTH: usize = 8;

const USER_INTENT: &str = r#"{{ general_instructions }}
{% if sample_conversation %}
# This is how a conversation between a user and the bot can go:
{{ sample_conversation }}
{% endif %}
# This is how the user talks:
{% for ex in examples %}user "{{ ex.0 }}"
  {{ ex.1 }}
{% endfor %}
# This is the current conversation between the user and the bot:
{{ history }}user "{{ user_input }}"
"#;

const NEXT_STEPS: &str = r#"{{ general_instructions }}

# This is the current conversation between the user and the bot:
{{ history }}user "{{ user_input }}"
  {{ user_intent }}
bot
"#;

const BOT_MESSAGE: &str = r#"{{ general_instructions }}

# This is the current conversation between the user and the bot:
{{ history }}user "{{ user_input }}"
  {{ user_intent }}
bot {{ bot_intent }}
"#;

const INTENT_STEPS_MESSAGE: &str = r#"{{ general_instructions }}
{% if sample_conversation %}
# This is how a conversation between a user and the bot can go:
{{ sample_conversation }}
{% endif %}
# This is how the user talks:
{% for ex in examples %}user "{{ ex.0 }}"
  {{ ex.1 }}
{% endfor %}
# Continue the conversation in the same format: the user's intent, then the
# bot's intent and the bot's message, like this:
# user "<the user's message>"
#   <the user's intent>
# bot <the bot's intent>
#   "<the bot's message>"

# This is the current conversation between the user and the bot:
{{ history }}user "{{ user_input }}"
"#;

/// The start of a single-call answer: both intents, and the message still
/// coming.
struct SingleCall {
    user_intent: String,
    bot_intent: String,
    /// For the request log.
    prompt: String,
    started: std::time::Instant,
    /// Everything the call has answered so far.
    raw: String,
    /// Message text already read past the `bot …` line.
    rest: String,
    stream: DeltaStream,
}

/// Lexical ranking of the `define user` examples (BM25).
#[derive(Debug)]
struct Examples {
    docs: Vec<(String, String, Vec<String>)>,
    df: BTreeMap<String, usize>,
    avg_len: f64,
}

fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

impl Examples {
    fn new(dialog: &Dialog) -> Self {
        let docs: Vec<(String, String, Vec<String>)> = dialog
            .users
            .iter()
            .flat_map(|(intent, examples)| {
                examples
                    .iter()
                    .map(move |e| (e.clone(), intent.clone(), tokens(e)))
            })
            .collect();
        let mut df = BTreeMap::new();
        for (_, _, toks) in &docs {
            let mut seen: Vec<&String> = toks.iter().collect();
            seen.sort();
            seen.dedup();
            for t in seen {
                *df.entry(t.clone()).or_insert(0) += 1;
            }
        }
        let avg_len =
            docs.iter().map(|d| d.2.len()).sum::<usize>() as f64 / docs.len().max(1) as f64;
        Examples { docs, df, avg_len }
    }

    /// The `k` examples most relevant to `query`, best first; ties keep file order.
    fn top(&self, query: &str, k: usize) -> Vec<(String, String)> {
        let q = tokens(query);
        let n = self.docs.len() as f64;
        let mut scored: Vec<(f64, usize)> = self
            .docs
            .iter()
            .enumerate()
            .map(|(i, (_, _, toks))| {
                let len = toks.len() as f64;
                let score: f64 = q
                    .iter()
                    .map(|t| {
                        let tf = toks.iter().filter(|x| *x == t).count() as f64;
                        if tf == 0.0 {
                            return 0.0;
                        }
                        let df = *self.df.get(t).unwrap_or(&0) as f64;
                        let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
                        idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len / self.avg_len.max(1.0)))
                    })
                    .sum();
                (score, i)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored
            .into_iter()
            .take(k)
            .map(|(_, i)| (self.docs[i].0.clone(), self.docs[i].1.clone()))
            .collect()
    }
}

/// The dialog runtime of one config (cheap to clone).
#[derive(Debug, Clone)]
pub struct DialogRuntime {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dialog: Dialog,
    examples: Examples,
    llm: Arc<dyn Provider>,
    env: Environment<'static>,
    general: String,
    sample: String,
    temperature: f64,
    single_call: bool,
    /// A `type: embeddings` model: examples are ranked by cosine similarity
    /// of its embeddings (the examples' computed once, on first use).
    embeddings: Option<(OpenAiProvider, tokio::sync::OnceCell<Vec<Vec<f32>>>)>,
}

impl DialogRuntime {
    /// The runtime over `llm` (the main model) for `config`'s dialog.
    pub fn new(
        config: &Config,
        dialog: Dialog,
        llm: Arc<dyn Provider>,
        upstream: &UpstreamSettings,
    ) -> Result<Self, ConfigError> {
        let mut inner = Inner::new(config, dialog, llm)?;
        if let Some(model) = config.model_of_type("embeddings") {
            if model.engine == EngineKind::Scripted {
                return Err(ConfigError::invalid(
                    &model.source,
                    format!("{}.engine", model.key),
                    "the embeddings model needs an OpenAI-compatible engine (`/v1/embeddings`)",
                ));
            }
            inner.embeddings = Some((
                OpenAiProvider::from_config(model, upstream)?,
                tokio::sync::OnceCell::new(),
            ));
        }
        Ok(DialogRuntime {
            inner: Arc::new(inner),
        })
    }
}

impl Inner {
    /// The runtime over `llm` (the main model) for `config`'s dialog.
    fn new(config: &Config, dialog: Dialog, llm: Arc<dyn Provider>) -> Result<Self, ConfigError> {
        let mut env = Environment::new();
        for (task, default) in [
            ("generate_user_intent", USER_INTENT),
            ("generate_next_steps", NEXT_STEPS),
            ("generate_bot_message", BOT_MESSAGE),
            ("generate_intent_steps_message", INTENT_STEPS_MESSAGE),
        ] {
            // A prompt of the same task in prompts.yml overrides ours.
            let (source, text) = match config
                .prompt(task, config.main_model())
                .map(|p| (p, &p.body))
            {
                Some((p, PromptBody::Content(c))) => (Some(p), c.clone()),
                Some((p, PromptBody::Messages(m))) => (
                    Some(p),
                    m.iter()
                        .map(|(_, c)| c.as_str())
                        .collect::<Vec<_>>()
                        .join("\n"),
                ),
                None => (None, default.to_string()),
            };
            env.add_template_owned(task, text)
                .map_err(|e| match source {
                    Some(p) => ConfigError::invalid(
                        &p.source,
                        &p.key,
                        format!("template for task `{task}` does not parse: {e}"),
                    ),
                    None => ConfigError::invalid(config.main_file(), "prompts", e.to_string()),
                })?;
        }
        Ok(Inner {
            examples: Examples::new(&dialog),
            dialog,
            llm,
            env,
            general: config
                .instructions
                .get("general")
                .cloned()
                .unwrap_or_default(),
            sample: config.sample_conversation.clone().unwrap_or_default(),
            temperature: config.lowest_temperature,
            single_call: config.single_call,
            embeddings: None,
        })
    }

    /// The examples most relevant to `query`: by embeddings when the config
    /// has an embeddings model (lexically if that fails), else by BM25.
    async fn relevant(&self, query: &str) -> Vec<(String, String)> {
        if let Some((model, cache)) = &self.embeddings {
            let texts: Vec<String> = self.examples.docs.iter().map(|d| d.0.clone()).collect();
            let ranked = async {
                let examples = cache.get_or_try_init(|| model.embed(&texts)).await?;
                let q = model.embed(&[query.to_string()]).await?;
                let q = q.first().cloned().unwrap_or_default();
                let mut scored: Vec<(f32, usize)> = examples
                    .iter()
                    .enumerate()
                    .map(|(i, e)| (cosine(&q, e), i))
                    .collect();
                scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                Ok::<_, LlmError>(
                    scored
                        .into_iter()
                        .take(TOP_K)
                        .map(|(_, i)| {
                            (
                                self.examples.docs[i].0.clone(),
                                self.examples.docs[i].1.clone(),
                            )
                        })
                        .collect::<Vec<_>>(),
                )
            }
            .await;
            match ranked {
                Ok(r) => return r,
                Err(e) => {
                    tracing::warn!(error = %e, "embeddings failed; ranking examples lexically")
                }
            }
        }
        self.examples.top(query, TOP_K)
    }

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
            match m.role.as_str() {
                "user" => {
                    out.push_str(&format!("user \"{}\"\n", m.content));
                    if let Some(i) = self.known_intent(&m.content) {
                        out.push_str(&format!("  {i}\n"));
                    }
                }
                "assistant" => out.push_str(&format!("bot\n  \"{}\"\n", m.content)),
                _ => {}
            }
        }
        out
    }

    fn render(&self, task: &str, ctx: minijinja::Value) -> Result<String, LlmError> {
        self.env
            .get_template(task)
            .and_then(|t| t.render(ctx))
            .map_err(|e| LlmError::Protocol(format!("dialog prompt `{task}` does not render: {e}")))
    }

    fn request(&self, task: &str, prompt: String, params: &CallParams) -> ChatRequest {
        ChatRequest {
            task: task.to_string(),
            messages: vec![ChatMessage::new("user", prompt)],
            params: CallParams {
                temperature: Some(self.temperature),
                max_tokens: params.max_tokens,
                stop: params.stop.clone(),
            },
            traceparent: None,
            calls: None,
        }
    }

    /// One non-streaming dialog call, recorded in the request's log.
    async fn ask(
        &self,
        task: &str,
        prompt: String,
        request: &ChatRequest,
    ) -> Result<String, LlmError> {
        let started = std::time::Instant::now();
        let call = self.request(task, prompt.clone(), &request.params);
        let completion = self.llm.complete(call).await?;
        if let Some(calls) = &request.calls {
            calls.record(CallRecord {
                task: task.to_string(),
                prompt: format!("user: {prompt}"),
                completion: completion.text.clone(),
                usage: completion.usage,
                duration: started.elapsed(),
            });
        }
        Ok(completion.text)
    }

    /// Starts the single call and reads it up to the end of the `bot …`
    /// line; `None` when the answer does not have that shape (the caller
    /// falls back to multi-call).
    async fn single_call(
        &self,
        prompt: String,
        params: &CallParams,
    ) -> Result<Option<SingleCall>, LlmError> {
        let started = std::time::Instant::now();
        let mut request = self.request("generate_intent_steps_message", prompt.clone(), params);
        request.params.temperature = None;
        let mut stream = self.llm.stream(request);
        let mut buf = String::new();
        loop {
            let lines: Vec<&str> = buf.split_inclusive('\n').collect();
            let complete: Vec<&str> = lines
                .iter()
                .filter(|l| l.ends_with('\n') && !l.trim().is_empty())
                .copied()
                .collect();
            if complete.len() >= 2 {
                let bot_line = complete[1].trim();
                if !bot_line.starts_with("bot ") || complete[0].trim().starts_with("bot ") {
                    return Ok(None);
                }
                let user_intent = read_intent(complete[0]);
                let bot_intent = read_intent(bot_line);
                let end = buf
                    .find(complete[1])
                    .map_or(buf.len(), |at| at + complete[1].len());
                let rest = buf[end..].to_string();
                return Ok(Some(SingleCall {
                    user_intent,
                    bot_intent,
                    prompt,
                    started,
                    raw: buf.clone(),
                    rest,
                    stream,
                }));
            }
            match stream.next().await {
                Some(Ok(Delta::Text(t))) => buf.push_str(&t),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(None),
            }
        }
    }

    /// The bot intents the flows prescribe after `intent`, or `None`.
    fn plan(&self, turns: &[ChatMessage], intent: &str) -> Option<Vec<String>> {
        let last_bot = turns
            .iter()
            .rev()
            .find(|m| m.role == "assistant")
            .map(|m| m.content.trim());
        // A `when` arm continuing a flow whose bot step was the last answer.
        if let Some(last) = last_bot {
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
                Step::User(_) | Step::Branch(_) | Step::Stop => None,
            })
            .flatten()
            .collect()
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let n = norm(a) * norm(b);
    if n == 0.0 { 0.0 } else { dot / n }
}

/// The first non-empty line of an answer, read leniently: without a `user ` /
/// `bot ` prefix, quotes, leading spaces or a trailing period.
pub fn read_intent(answer: &str) -> String {
    let line = answer
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    let line = line
        .strip_prefix("user ")
        .or_else(|| line.strip_prefix("bot "))
        .unwrap_or(line);
    line.trim()
        .trim_matches('"')
        .trim()
        .trim_end_matches('.')
        .trim()
        .to_string()
}

/// Strips what the model writes around a bot message (a repeated `bot …`
/// line, leading spaces, the opening and closing quote) as the chunks
/// arrive, holding back only what might still turn out to be one of them.
#[derive(Debug, Default)]
pub struct MessageCleaner {
    started: bool,
    /// Text not decided yet (the start, or a trailing quote).
    held: String,
}

impl MessageCleaner {
    /// The text to send now for this chunk.
    pub fn push(&mut self, chunk: &str) -> Option<String> {
        self.held.push_str(chunk);
        if !self.started {
            let t = self.held.trim_start();
            if t.is_empty() || ("bot ".starts_with(t) && t.len() < 4) {
                return None;
            }
            if t.starts_with("bot ") {
                // Wait for the end of the repeated intent line, then drop it.
                let nl = t.find('\n')?;
                let rest = t[nl + 1..].to_string();
                self.held = rest;
                if self.held.trim_start().is_empty() {
                    return None;
                }
            }
            let t = self.held.trim_start();
            let t = t.strip_prefix('"').unwrap_or(t).to_string();
            self.held = t;
            self.started = true;
        }
        // Hold a trailing quote (and spaces after it): it may be the closing one.
        let keep = self
            .held
            .trim_end()
            .strip_suffix('"')
            .map_or(0, |body| self.held.len() - body.len());
        let out: String = self.held.drain(..self.held.len() - keep).collect();
        (!out.is_empty()).then_some(out)
    }

    /// What is left at the end: a held quote that turned out not to close is
    /// dropped with its trailing spaces, as the closing quote is.
    pub fn finish(&mut self) -> Option<String> {
        if !self.started {
            let t = self.held.trim().trim_matches('"').to_string();
            return (!t.is_empty()).then_some(t);
        }
        None
    }
}

impl Provider for DialogRuntime {
    fn can_stream(&self) -> bool {
        self.inner.llm.can_stream()
    }

    fn complete(&self, request: ChatRequest) -> BoxFuture<'static, Result<Completion, LlmError>> {
        let stream = self.stream(request);
        async move {
            let mut text = String::new();
            let mut usage = None;
            let mut stream = stream;
            while let Some(d) = stream.next().await {
                match d? {
                    Delta::Text(t) => text.push_str(&t),
                    Delta::Usage(u) => usage = Some(u),
                    Delta::Dialog { .. } => {}
                }
            }
            Ok(Completion { text, usage })
        }
        .boxed()
    }

    fn stream(&self, request: ChatRequest) -> DeltaStream {
        let runtime = self.inner.clone();
        Box::pin(async_stream::stream! {
            let turns: Vec<ChatMessage> = request.messages.iter().filter(|m| m.role != "system").cloned().collect();
            let Some((last, earlier)) = turns.split_last() else {
                return;
            };
            let user_input = last.content.clone();
            let history = runtime.history(earlier);
            let examples: Vec<(String, String)> = runtime.relevant(&user_input).await;
            let ctx = minijinja::context! {
                general_instructions => runtime.general.trim(),
                sample_conversation => runtime.sample.trim(),
                examples => examples,
                history => &history,
                user_input => &user_input,
            };
            // Single-call mode: intents and message in one call; an answer of
            // another shape falls back to multi-call.
            let mut single = None;
            if runtime.single_call {
                let prompt = match runtime.render("generate_intent_steps_message", ctx.clone()) {
                    Ok(p) => p,
                    Err(e) => { yield Err(e); return; }
                };
                match runtime.single_call(prompt, &request.params).await {
                    Ok(s) => single = s,
                    Err(e) => { yield Err(e); return; }
                }
            }
            let intent = match &single {
                Some(s) => s.user_intent.clone(),
                None => {
                    let prompt = match runtime.render("generate_user_intent", ctx) {
                        Ok(p) => p,
                        Err(e) => { yield Err(e); return; }
                    };
                    match runtime.ask("generate_user_intent", prompt, &request).await {
                        Ok(text) => read_intent(&text),
                        Err(e) => { yield Err(e); return; }
                    }
                }
            };
            let single_bot = single.as_ref().map(|s| s.bot_intent.clone());
            let bot_intents = match (runtime.plan(earlier, &intent), single_bot) {
                (Some(p), _) if !p.is_empty() => p,
                (_, Some(b)) => vec![b],
                _ => {
                    let ctx = minijinja::context! {
                        general_instructions => runtime.general.trim(),
                        history => &history,
                        user_input => &user_input,
                        user_intent => &intent,
                    };
                    let prompt = match runtime.render("generate_next_steps", ctx) {
                        Ok(p) => p,
                        Err(e) => { yield Err(e); return; }
                    };
                    match runtime.ask("generate_next_steps", prompt, &request).await {
                        Ok(text) => vec![read_intent(&text)],
                        Err(e) => { yield Err(e); return; }
                    }
                }
            };
            yield Ok(Delta::Dialog {
                user_intent: intent.clone(),
                bot_intent: bot_intents.last().cloned().unwrap_or_default(),
            });
            for (i, bot) in bot_intents.iter().enumerate() {
                if i > 0 {
                    yield Ok(Delta::Text("\n".into()));
                }
                // A predefined message wins, also over a single call's own
                // message (NeMo's message override); it is one chunk.
                if let Some(message) = runtime.dialog.bots.get(bot).and_then(|m| m.first()) {
                    yield Ok(Delta::Text(message.clone()));
                    continue;
                }
                let mut cleaner = MessageCleaner::default();
                let logging = request.calls.is_some();
                let (mut tokens, task, prompt, started, mut raw) = match single.take_if(|s| s.bot_intent == *bot) {
                    // The single call's message, as it keeps arriving.
                    Some(s) => {
                        if let Some(out) = cleaner.push(&s.rest) {
                            yield Ok(Delta::Text(out));
                        }
                        (s.stream, "generate_intent_steps_message", s.prompt, s.started, s.raw)
                    }
                    None => {
                        let ctx = minijinja::context! {
                            general_instructions => runtime.general.trim(),
                            history => &history,
                            user_input => &user_input,
                            user_intent => &intent,
                            bot_intent => bot,
                        };
                        let prompt = match runtime.render("generate_bot_message", ctx) {
                            Ok(p) => p,
                            Err(e) => { yield Err(e); return; }
                        };
                        let mut call = runtime.request("generate_bot_message", prompt.clone(), &request.params);
                        call.params.temperature = None;
                        (runtime.llm.stream(call), "generate_bot_message", prompt, std::time::Instant::now(), String::new())
                    }
                };
                let mut usage = None;
                while let Some(d) = tokens.next().await {
                    match d {
                        Ok(Delta::Text(t)) => {
                            if logging {
                                raw.push_str(&t);
                            }
                            if let Some(out) = cleaner.push(&t) {
                                yield Ok(Delta::Text(out));
                            }
                        }
                        Ok(Delta::Usage(u)) => {
                            usage = Some(u);
                            yield Ok(Delta::Usage(u));
                        }
                        Ok(other) => yield Ok(other),
                        Err(e) => { yield Err(e); return; }
                    }
                }
                if let Some(out) = cleaner.finish() {
                    yield Ok(Delta::Text(out));
                }
                if let Some(calls) = &request.calls {
                    calls.record(CallRecord {
                        task: task.to_string(),
                        prompt: format!("user: {prompt}"),
                        completion: raw,
                        usage,
                        duration: started.elapsed(),
                    });
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intents_are_read_leniently() {
        for answer in [
            "express greeting",
            "  user express greeting.\n",
            "\n\"express greeting\"",
            "bot express greeting",
        ] {
            assert_eq!(read_intent(answer), "express greeting", "{answer:?}");
        }
    }

    fn clean(chunks: &[&str]) -> Vec<String> {
        let mut c = MessageCleaner::default();
        let mut out: Vec<String> = chunks.iter().filter_map(|ch| c.push(ch)).collect();
        out.extend(c.finish());
        out
    }

    #[test]
    fn quotes_and_a_repeated_bot_line_are_stripped_across_chunks() {
        assert_eq!(
            clean(&["  \"Paris", " is", " lovely.\""]),
            ["Paris", " is", " lovely."]
        );
        assert_eq!(
            clean(&[" ", "\"", "Hi", " there\"", "  "]),
            ["Hi", " there"]
        );
        assert_eq!(
            clean(&["bo", "t inform answer\n", "  \"Yes", "\""]),
            ["Yes"]
        );
        assert_eq!(
            clean(&["Say \"", "cheese\" now"]),
            ["Say ", "\"cheese\" now"]
        );
        assert_eq!(clean(&["no quotes at all"]), ["no quotes at all"]);
        assert_eq!(clean(&["bot"]), ["bot"]);
    }

    #[test]
    fn lexical_retrieval_ranks_the_closest_examples_first() {
        let mut d = Dialog::default();
        d.users.push((
            "express greeting".into(),
            vec!["Hello".into(), "Hi there".into()],
        ));
        d.users.push((
            "ask about capabilities".into(),
            vec![
                "What can you do?".into(),
                "What can you help me with?".into(),
            ],
        ));
        d.users.push((
            "ask about politics".into(),
            vec!["Which party should I vote for?".into()],
        ));
        let ex = Examples::new(&d);
        let top = ex.top("what can you help with", 2);
        assert_eq!(
            top[0],
            (
                "What can you help me with?".to_string(),
                "ask about capabilities".to_string()
            )
        );
        assert_eq!(top[1].1, "ask about capabilities");
        assert_eq!(ex.top("should I vote", 1)[0].1, "ask about politics");
    }
}

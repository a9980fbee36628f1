//! The LLM-judge rail: one rail for every flow decided by one judge call
//! (self check, content safety, topic safety, Llama Guard), driven by a
//! [`JudgeSpec`] from the catalog. The task prompt is a Jinja2 template
//! rendered with minijinja; the call never streams and runs at the config's
//! lowest temperature; the answer is read by the prompt's output parser.

mod hallucination;
mod parse;

use std::{sync::Arc, time::Instant};

use futures_util::{FutureExt, future::BoxFuture};
use minijinja::Environment;

use super::{
    Rail, RailError, RailInput, Stage, Verdict,
    catalog::BuildContext,
    template::{self, TemplateBudget},
};
use crate::{
    config::{Config, ConfigError, FlowRef, ModelConfig, Prompt, PromptBody},
    llm::{CallParams, CallRecord, ChatMessage, ChatRequest, Provider, Role},
};

pub use parse::{parse_content_safety, parse_nemoguard, parse_yes_no};

/// Judge answers are a word or two; a few tokens are enough.
const DEFAULT_JUDGE_MAX_TOKENS: u32 = 16;

/// Appended to the topic prompt unless it already ends with it, as NeMo does.
const OUTPUT_RESTRICTION: &str = "If any of the above conditions are violated, please respond with \"off-topic\". \
Otherwise, respond with \"on-topic\". You must respond with \"on-topic\" or \"off-topic\".";

/// Which model a judge flow uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JudgeModel {
    /// The model whose `type` is the task name, else the main model.
    OwnTypeElseMain,
    /// The model whose `type` the flow's `$model=<type>` argument names.
    FlowArg,
    /// The model of this `type`; required.
    Type(&'static str),
}

/// How the judge is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The rendered task prompt is the conversation.
    Prompt,
    /// NeMo's topic control: the rendered prompt is the system message, then
    /// the conversation; the answer is `on-topic` or `off-topic`.
    TopicControl,
    /// NeMo's fact check: only when the dialog set `$check_facts` and found
    /// chunks; the prompt gets them as `evidence` and the answer as
    /// `response`; "yes" (supported) allows.
    Facts,
    /// NeMo's hallucination check: only when the dialog set
    /// `$check_hallucination`; the main model answers again twice at
    /// temperature 1.0, the prompt gets those as `paragraph` and the answer as
    /// `statement`; a "no" (they disagree) blocks.
    Hallucination,
    /// Patronus Lynx: when the turn has chunks (`provided_context`), the
    /// judge's `"SCORE": "PASS"` allows; anything else blocks.
    Lynx,
}

/// One judge flow in the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JudgeSpec {
    /// The task name before the stage: `self_check` → `self_check_input`.
    pub task: &'static str,
    pub model: JudgeModel,
    pub shape: Shape,
}

/// How a judge's answer is read (`output_parser` in the prompt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parser {
    /// `is_content_safe`: yes/no or safe/unsafe in the first words.
    YesNo,
    /// `nemoguard_parse_prompt_safety`: the `"User Safety"` field of NemoGuard JSON.
    NemoGuardPrompt,
    /// `nemoguard_parse_response_safety`: the `"Response Safety"` field.
    NemoGuardResponse,
    /// `nemotron_reasoning_parse_prompt_safety` / `_response_safety`:
    /// `Prompt harm:` / `Response Harm:` after any `<think>` trace.
    NemotronHarm(&'static str),
    /// `nemotron_content_safety_parse_prompt_safety` / `_response_safety`:
    /// a `User Safety:` / `Response Safety:` line.
    NemotronSafety(&'static str),
}

impl Parser {
    const NAMES: &'static str = "is_content_safe, nemoguard_parse_prompt_safety, nemoguard_parse_response_safety, \
         nemotron_reasoning_parse_prompt_safety, nemotron_reasoning_parse_response_safety, \
         nemotron_content_safety_parse_prompt_safety, nemotron_content_safety_parse_response_safety";

    fn from_prompt(prompt: &Prompt) -> Result<Self, ConfigError> {
        Ok(match prompt.output_parser.as_deref() {
            None | Some("is_content_safe") => Parser::YesNo,
            Some("nemoguard_parse_prompt_safety") => Parser::NemoGuardPrompt,
            Some("nemoguard_parse_response_safety") => Parser::NemoGuardResponse,
            Some("nemotron_reasoning_parse_prompt_safety") => Parser::NemotronHarm("Prompt harm"),
            Some("nemotron_reasoning_parse_response_safety") => {
                Parser::NemotronHarm("Response Harm")
            }
            Some("nemotron_content_safety_parse_prompt_safety") => {
                Parser::NemotronSafety("User Safety")
            }
            Some("nemotron_content_safety_parse_response_safety") => {
                Parser::NemotronSafety("Response Safety")
            }
            Some(other) => {
                return Err(ConfigError::invalid(
                    &prompt.source,
                    format!("{}.output_parser", prompt.key),
                    format!("unknown output parser `{other}`; known: {}", Parser::NAMES),
                ));
            }
        })
    }

    /// Reads an answer: `Ok(())` allows, `Err(reason)` blocks.
    fn read(self, answer: &str) -> Result<(), String> {
        match self {
            Parser::YesNo => parse_content_safety(answer),
            Parser::NemoGuardPrompt => parse_nemoguard(answer, "User Safety"),
            Parser::NemoGuardResponse => parse_nemoguard(answer, "Response Safety"),
            Parser::NemotronHarm(field) => parse::nemotron_harm(answer, field),
            Parser::NemotronSafety(field) => parse::nemotron_safety(answer, field),
        }
    }
}

/// The judge rail of one configured flow.
#[derive(Debug)]
pub struct JudgeRail {
    /// The judge sees the user's images (see [`with_media`]).
    vision: bool,
    flow: String,
    task: String,
    shape: Shape,
    env: Environment<'static>,
    /// `(role, template name)` per message of the prompt.
    messages: Vec<(Role, String)>,
    provider: Arc<dyn Provider>,
    /// The main model, which answers again for the hallucination check.
    main: Option<Arc<dyn Provider>>,
    params: CallParams,
    parser: Parser,
    general_instructions: String,
    budget: TemplateBudget,
    /// Content safety's settings (multilingual refusals, `reasoning_enabled`).
    safety: Option<super::multilingual::ContentSafety>,
    /// What templates see as `config` (`config.custom_data`).
    config_vars: minijinja::Value,
}

/// The `$model=<type>` argument of a flow, which must name a model entry.
fn model_arg<'a>(config: &Config, flow: &'a FlowRef) -> Result<&'a str, ConfigError> {
    let model = flow.args.get("model").ok_or_else(|| {
        ConfigError::invalid(
            &flow.source,
            &flow.key,
            format!(
                "`{}` needs the judge model's type, e.g. `{} $model=content_safety`",
                flow.name, flow.name
            ),
        )
    })?;
    if config.model_of_type(model).is_none() {
        return Err(ConfigError::invalid(
            &flow.source,
            &flow.key,
            format!("`$model={model}` names no model; add a `models` entry with `type: {model}`"),
        ));
    }
    Ok(model)
}

/// A judge flow's prompt task, model entry (`None`: a rails-only config's
/// main model, named per request) and provider.
type JudgeModelOf<'c> = (String, Option<&'c ModelConfig>, Arc<dyn Provider>);

/// The prompt task and the judge model of a flow.
fn task_and_model<'c>(
    ctx: &BuildContext<'c>,
    spec: &JudgeSpec,
    flow: &FlowRef,
    stage: Stage,
) -> Result<JudgeModelOf<'c>, ConfigError> {
    let config = ctx.config;
    let task = match spec.shape {
        Shape::Facts | Shape::Hallucination | Shape::Lynx => spec.task.to_string(),
        _ => format!("{}_{stage}", spec.task),
    };
    let (task, kind, required) = match spec.model {
        JudgeModel::OwnTypeElseMain => (task.clone(), task, false),
        JudgeModel::FlowArg => {
            let model = model_arg(config, flow)?;
            (format!("{task} $model={model}"), model.to_string(), true)
        }
        JudgeModel::Type(t) => (task, t.to_string(), true),
    };
    match (config.model_of_type(&kind), ctx.providers.get(&kind)) {
        (Some(m), Some(p)) => Ok((task, Some(m), p.clone())),
        _ if required => Err(ConfigError::invalid(
            &flow.source,
            &flow.key,
            format!("`{}` needs a model entry with `type: {kind}`", flow.name),
        )),
        _ => {
            // A rails-only config's main model comes with each request.
            let p =
                ctx.providers.get("main").cloned().ok_or_else(|| {
                    ConfigError::invalid(&flow.source, &flow.key, "no main model")
                })?;
            Ok((task, config.main_model(), p))
        }
    }
}

/// Builds the judge rail of `flow` from its catalog spec.
pub(super) fn build(
    ctx: &mut BuildContext<'_>,
    spec: &JudgeSpec,
    flow: &FlowRef,
    stage: Stage,
) -> Result<Arc<dyn Rail>, ConfigError> {
    let config = ctx.config;
    let (task, entry, provider) = task_and_model(ctx, spec, flow, stage)?;
    let prompt = config.prompt(&task, entry).ok_or_else(|| {
        ConfigError::invalid(
            config.main_file(),
            "prompts",
            format!(
                "flow `{}` needs a prompt with `task: {task}`; add it to prompts.yml",
                flow.name
            ),
        )
    })?;
    let mut env = template::environment(ctx.templates);
    let mut messages = Vec::new();
    let parts: Vec<(String, String)> = match &prompt.body {
        PromptBody::Content(c) => vec![("user".into(), c.clone())],
        PromptBody::Messages(m) => m.clone(),
    };
    for (i, (role, content)) in parts.into_iter().enumerate() {
        let role = match role.as_str() {
            "bot" | "assistant" => Role::Assistant,
            "system" => Role::System,
            _ => Role::User,
        };
        let name = format!("{task}#{i}");
        env.add_template_owned(name.clone(), content).map_err(|e| {
            ConfigError::invalid(
                &prompt.source,
                &prompt.key,
                format!("template for task `{task}` does not parse: {e}"),
            )
        })?;
        messages.push((role, name));
    }
    check_renders(ctx, &env, &messages, prompt, &task)?;
    Ok(Arc::new(JudgeRail {
        // A vision judge (NeMo's `type: vision_rails`) gets the user's images.
        vision: entry.is_some_and(|m| m.kind().contains("vision")) && provider.takes_tools(),
        flow: flow.name.clone(),
        shape: spec.shape,
        env,
        messages,
        provider,
        main: match spec.shape {
            Shape::Hallucination => Some(ctx.providers.get("main").cloned().ok_or_else(|| {
                ConfigError::invalid(
                    &flow.source,
                    &flow.key,
                    format!(
                        "`{}` asks the main model again; add a `type: main` model",
                        flow.name
                    ),
                )
            })?),
            _ => None,
        },
        params: CallParams {
            temperature: Some(config.lowest_temperature()),
            max_tokens: Some(prompt.max_tokens.unwrap_or(DEFAULT_JUDGE_MAX_TOKENS)),
            stop: prompt.stop.clone(),
        },
        parser: Parser::from_prompt(prompt)?,
        budget: ctx.templates,
        general_instructions: config
            .instruction("general")
            .unwrap_or_default()
            .to_string(),
        config_vars: template::config_vars(config),
        safety: (spec.task == "content_safety_check")
            .then(|| super::multilingual::ContentSafety::from_config(config))
            .transpose()?,
        task,
    }))
}

/// One render with sample values, now: a template that cannot render (or
/// would run away) is refused at load, not on every request.
fn check_renders(
    ctx: &mut BuildContext<'_>,
    env: &minijinja::Environment<'static>,
    messages: &[(Role, String)],
    prompt: &crate::config::Prompt,
    task: &str,
) -> Result<(), ConfigError> {
    let config = ctx.config;
    let sample = minijinja::context! {
        user_input => "What is the capital of France?",
        bot_response => "Paris.",
        evidence => "Paris is the capital of France.",
        response => "Paris.",
        paragraph => "Paris is the capital. The capital is Paris.",
        statement => "Paris.",
        bot_thinking => "",
        reasoning_enabled => false,
        general_instructions => config.instruction("general").unwrap_or_default(),
        config => template::config_vars(config),
    };
    for (_, name) in messages {
        let checked = template::check(env, name, sample.clone(), ctx.templates).map_err(|e| {
            ConfigError::invalid(
                &prompt.source,
                &prompt.key,
                format!("prompt for task `{task}` does not render: {e}"),
            )
        })?;
        if let Some(w) = checked {
            ctx.warnings.push(format!(
                "{}: `{}`: prompt for task `{task}`: {w} (it renders empty)",
                config.relative(&prompt.source).display(),
                prompt.key
            ));
        }
    }
    Ok(())
}

impl JudgeRail {
    /// The rendered prompt messages for this input.
    fn render(
        &self,
        input: &RailInput<'_>,
        paragraph: Option<&str>,
    ) -> Result<Vec<ChatMessage>, RailError> {
        // The variables NeMo's prompts use.
        let vars = minijinja::context! {
            paragraph => paragraph,
            statement => input.bot_response,
            user_input => input.user_input,
            bot_response => input.bot_response,
            bot_thinking => input.bot_thinking,
            evidence => relevant_chunks(input),
            provided_context => relevant_chunks(input),
            response => input.bot_response,
            general_instructions => &self.general_instructions,
            reasoning_enabled => self.safety.as_ref().is_some_and(|s| s.reasoning_enabled),
            config => &self.config_vars,
        };
        let mut messages = self
            .messages
            .iter()
            .map(|(role, name)| {
                let content = template::render(&self.env, name, vars.clone(), self.budget)
                    .map_err(|e| {
                        RailError(format!("prompt `{}` does not render: {e}", self.task))
                    })?;
                Ok(ChatMessage::new(*role, content))
            })
            .collect::<Result<Vec<_>, RailError>>()?;
        with_media(&mut messages, input.media, self.vision);
        Ok(messages)
    }

    /// NeMo's topic-control conversation: the prompt as the system message
    /// (with the output restriction), then the user and assistant turns.
    fn topic_messages(&self, input: &RailInput<'_>) -> Result<Vec<ChatMessage>, RailError> {
        let rendered = self.render(input, None)?;
        let mut system: String = rendered
            .iter()
            .map(|m| m.content.trim())
            .collect::<Vec<_>>()
            .join("\n");
        if !system.ends_with(OUTPUT_RESTRICTION) {
            system.push_str("\n\n");
            system.push_str(OUTPUT_RESTRICTION);
        }
        let mut messages = Vec::with_capacity(input.history.len() + 2);
        messages.push(ChatMessage::system(system));
        messages.extend(
            input
                .history
                .iter()
                .filter(|m| m.role != Role::System)
                .cloned(),
        );
        messages.push(ChatMessage::user(input.user_input));
        Ok(messages)
    }

    /// Calls the judge model (never streaming) with `messages`; records the
    /// call when the request keeps a log.
    async fn call(
        &self,
        messages: Vec<ChatMessage>,
        input: &RailInput<'_>,
    ) -> Result<String, RailError> {
        call_model(
            &*self.provider,
            &self.task,
            messages,
            &self.params,
            input.calls,
        )
        .await
        .map_err(|e| RailError(format!("judge call for `{}` failed: {e}", self.task)))
    }

    async fn decide(&self, input: RailInput<'_>) -> Result<Verdict, RailError> {
        Ok(match self.shape {
            Shape::Prompt => {
                let answer = self.call(self.render(&input, None)?, &input).await?;
                match self.parser.read(&answer) {
                    Ok(()) => Verdict::Allow,
                    Err(reason) => Verdict::Block { reason },
                }
            }
            Shape::Facts => {
                let checks = input
                    .context
                    .and_then(|c| c.get("check_facts"))
                    .is_some_and(|v| v == &serde_json::Value::Bool(true));
                if !checks || relevant_chunks(&input).is_empty() {
                    return Ok(Verdict::Allow);
                }
                let answer = self.call(self.render(&input, None)?, &input).await?;
                if parse::fact_supported(&answer) {
                    Verdict::Allow
                } else {
                    Verdict::Block {
                        reason: format!(
                            "the answer is not supported by the knowledge base (the judge answered {:?})",
                            answer.trim()
                        ),
                    }
                }
            }
            Shape::Hallucination => self.hallucination(&input).await?,
            Shape::Lynx => {
                // NeMo lets the answer through when there are no chunks.
                if relevant_chunks(&input).trim().is_empty() {
                    return Ok(Verdict::Allow);
                }
                let answer = self.call(self.render(&input, None)?, &input).await?;
                match parse::lynx_pass(&answer) {
                    true => Verdict::Allow,
                    false => Verdict::Block {
                        reason: "Patronus Lynx found the answer not faithful to the knowledge base"
                            .into(),
                    },
                }
            }
            Shape::TopicControl => {
                let answer = self.call(self.topic_messages(&input)?, &input).await?;
                if answer.trim().to_lowercase().starts_with("off-topic") {
                    Verdict::Block {
                        reason: "off-topic".into(),
                    }
                } else {
                    Verdict::Allow
                }
            }
        })
    }
}

/// The user's images (and audio) on the prompt's last user message, as
/// content parts after its text, for a vision judge (a model whose `type`
/// says `vision`, as NeMo's `content_safety_vision` example's
/// `vision_rails`, on an OpenAI-compatible API). Other judges judge the text.
fn with_media(messages: &mut [ChatMessage], media: &[serde_json::Value], vision: bool) {
    if media.is_empty() || !vision {
        return;
    }
    if let Some(last) = messages.iter_mut().rev().find(|m| m.role == Role::User) {
        let mut parts = Vec::with_capacity(media.len() + 1);
        parts.push(serde_json::json!({"type": "text", "text": last.content}));
        parts.extend(media.iter().cloned());
        last.extra = Some(Box::new(crate::llm::MessageExtra {
            parts: Some(parts),
            ..Default::default()
        }));
    }
}

/// One call (never streaming) to `provider` for `task`; recorded in `calls`.
async fn call_model(
    provider: &dyn Provider,
    task: &str,
    messages: Vec<ChatMessage>,
    params: &CallParams,
    calls: Option<&crate::llm::CallLog>,
) -> Result<String, crate::llm::LlmError> {
    let started = Instant::now();
    let prompt = calls.map(|_| CallRecord::prompt_text(&messages));
    let mut request = ChatRequest::new(task, messages);
    request.params = params.clone();
    let completion = provider.complete(request).await?;
    if let (Some(calls), Some(prompt)) = (calls, prompt) {
        calls.record(CallRecord {
            task: task.to_string(),
            prompt,
            completion: completion.text.clone(),
            usage: completion.usage,
            duration: started.elapsed(),
            started,
        });
    }
    Ok(completion.text)
}

/// The dialog's `$relevant_chunks` ("" without them).
fn relevant_chunks<'a>(input: &RailInput<'a>) -> &'a str {
    input
        .context
        .and_then(|c| c.get("relevant_chunks"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
}

impl Rail for JudgeRail {
    fn flow(&self) -> &str {
        &self.flow
    }

    fn check<'a>(&'a self, input: RailInput<'a>) -> BoxFuture<'a, Result<Verdict, RailError>> {
        self.decide(input).boxed()
    }

    fn refusal(&self, input: &RailInput<'_>, _reason: &str) -> Option<String> {
        if matches!(self.shape, Shape::Hallucination | Shape::Lynx) {
            return Some(super::service::ANSWER_UNKNOWN.to_string());
        }
        self.safety.as_ref()?.refusal(input.user_input)
    }
}

//! LLM-judge plumbing shared by the judge rails: the task prompt (a Jinja2
//! template rendered with minijinja), the non-streaming call at the lowest
//! temperature, and the parsers of judge answers.

use std::{sync::Arc, time::Instant};

use minijinja::Environment;

use futures_util::{FutureExt, future::BoxFuture};

use super::{Providers, Rail, RailError, RailInput, Verdict};
use crate::{
    config::{Config, ConfigError, FlowRef, Prompt, PromptBody},
    llm::{CallParams, CallRecord, ChatMessage, ChatRequest, Provider},
};

/// Judge answers are a word or two; a few tokens are enough.
const DEFAULT_JUDGE_MAX_TOKENS: u32 = 16;

/// Which model a judge uses.
#[derive(Debug, Clone, Copy)]
pub enum JudgeModel<'a> {
    /// The model of this `type`, else the main model.
    PreferType(&'a str),
    /// The model of this `type`; required.
    Type(&'a str),
}

/// How a judge's answer is read (`output_parser` in the prompt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parser {
    /// `is_content_safe`: yes/no or safe/unsafe in the first words.
    YesNo,
    /// `nemoguard_parse_prompt_safety`: the `"User Safety"` field of NemoGuard JSON.
    NemoGuardPrompt,
    /// `nemoguard_parse_response_safety`: the `"Response Safety"` field.
    NemoGuardResponse,
}

impl Parser {
    const NAMES: &'static str =
        "is_content_safe, nemoguard_parse_prompt_safety, nemoguard_parse_response_safety";

    fn from_prompt(prompt: &Prompt, default: Parser) -> Result<Self, ConfigError> {
        Ok(match prompt.output_parser.as_deref() {
            None => default,
            Some("is_content_safe") => Parser::YesNo,
            Some("nemoguard_parse_prompt_safety") => Parser::NemoGuardPrompt,
            Some("nemoguard_parse_response_safety") => Parser::NemoGuardResponse,
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
    pub fn read(self, answer: &str) -> Result<(), String> {
        match self {
            Parser::YesNo => parse_content_safety(answer),
            Parser::NemoGuardPrompt => parse_nemoguard(answer, "User Safety"),
            Parser::NemoGuardResponse => parse_nemoguard(answer, "Response Safety"),
        }
    }
}

/// One judge task: its prompt, its model and its call parameters.
#[derive(Debug)]
pub struct Judge {
    task: String,
    env: Environment<'static>,
    /// `(role, template name)` per message of the prompt.
    messages: Vec<(String, String)>,
    provider: Arc<dyn Provider>,
    params: CallParams,
    parser: Parser,
    general_instructions: String,
}

impl Judge {
    /// Prepares the judge for prompt `task`; the prompt is required.
    pub fn new(
        config: &Config,
        providers: &Providers,
        flow: &FlowRef,
        task: &str,
        model: JudgeModel<'_>,
        default_parser: Parser,
    ) -> Result<Self, ConfigError> {
        let (entry, provider) = match model {
            JudgeModel::PreferType(t) | JudgeModel::Type(t) => {
                match (config.model_of_type(t), providers.get(t)) {
                    (Some(m), Some(p)) => (m, p.clone()),
                    _ if matches!(model, JudgeModel::Type(_)) => {
                        return Err(ConfigError::invalid(
                            &flow.source,
                            &flow.key,
                            format!("`{}` needs a model entry with `type: {t}`", flow.name),
                        ));
                    }
                    _ => {
                        let p = providers.get("main").cloned().ok_or_else(|| {
                            ConfigError::invalid(&flow.source, &flow.key, "no main model")
                        })?;
                        (config.main_model(), p)
                    }
                }
            }
        };
        let prompt = config.prompt(task, entry).ok_or_else(|| {
            ConfigError::invalid(
                config.main_file(),
                "prompts",
                format!(
                    "flow `{}` needs a prompt with `task: {task}`; add it to prompts.yml",
                    flow.name
                ),
            )
        })?;
        let mut env = Environment::new();
        let mut messages = Vec::new();
        let parts: Vec<(String, String)> = match &prompt.body {
            PromptBody::Content(c) => vec![("user".into(), c.clone())],
            PromptBody::Messages(m) => m.clone(),
        };
        for (i, (role, content)) in parts.into_iter().enumerate() {
            let role = match role.as_str() {
                "bot" | "assistant" => "assistant",
                "system" => "system",
                _ => "user",
            };
            let name = format!("{task}#{i}");
            env.add_template_owned(name.clone(), content).map_err(|e| {
                ConfigError::invalid(
                    &prompt.source,
                    &prompt.key,
                    format!("template for task `{task}` does not parse: {e}"),
                )
            })?;
            messages.push((role.to_string(), name));
        }
        Ok(Judge {
            task: task.to_string(),
            env,
            messages,
            provider,
            params: CallParams {
                temperature: Some(config.lowest_temperature),
                max_tokens: Some(prompt.max_tokens.unwrap_or(DEFAULT_JUDGE_MAX_TOKENS)),
                stop: prompt.stop.clone(),
            },
            parser: Parser::from_prompt(prompt, default_parser)?,
            general_instructions: config
                .instructions
                .get("general")
                .cloned()
                .unwrap_or_default(),
        })
    }

    /// The rendered prompt messages for this input.
    pub fn render(&self, input: &RailInput<'_>) -> Result<Vec<ChatMessage>, RailError> {
        // The variables NeMo's prompts use.
        let vars = minijinja::context! {
            user_input => input.user_input,
            bot_response => input.bot_response,
            general_instructions => &self.general_instructions,
        };
        self.messages
            .iter()
            .map(|(role, name)| {
                let t = self
                    .env
                    .get_template(name)
                    .map_err(|e| RailError(format!("prompt `{}`: {e}", self.task)))?;
                let content = t.render(&vars).map_err(|e| {
                    RailError(format!("prompt `{}` does not render: {e}", self.task))
                })?;
                Ok(ChatMessage::new(role.clone(), content))
            })
            .collect()
    }

    /// Calls the judge model (never streaming) with `messages`; records the
    /// call when the request keeps a log.
    pub async fn call(
        &self,
        messages: Vec<ChatMessage>,
        input: &RailInput<'_>,
    ) -> Result<String, RailError> {
        let started = Instant::now();
        let prompt = input.calls.map(|_| CallRecord::prompt_text(&messages));
        let request = ChatRequest {
            task: self.task.clone(),
            messages,
            params: self.params.clone(),
            traceparent: None,
            calls: None,
        };
        let completion = self
            .provider
            .complete(request)
            .await
            .map_err(|e| RailError(format!("judge call for `{}` failed: {e}", self.task)))?;
        if let (Some(calls), Some(prompt)) = (input.calls, prompt) {
            calls.record(CallRecord {
                task: self.task.clone(),
                prompt,
                completion: completion.text.clone(),
                usage: completion.usage,
                duration: started.elapsed(),
            });
        }
        Ok(completion.text)
    }

    /// Renders, calls and reads the answer with the prompt's parser.
    pub async fn decide(&self, input: &RailInput<'_>) -> Result<Verdict, RailError> {
        let answer = self.call(self.render(input)?, input).await?;
        Ok(match self.parser.read(&answer) {
            Ok(()) => Verdict::Allow,
            Err(reason) => Verdict::Block { reason },
        })
    }
}

/// A rail decided by one judge call read with the prompt's parser (self
/// check, content safety, Llama Guard).
#[derive(Debug)]
pub struct JudgeRail {
    flow: String,
    judge: Judge,
}

impl JudgeRail {
    pub fn new(flow: &FlowRef, judge: Judge) -> Self {
        JudgeRail {
            flow: flow.name.clone(),
            judge,
        }
    }
}

impl Rail for JudgeRail {
    fn flow(&self) -> &str {
        &self.flow
    }

    fn check<'a>(&'a self, input: RailInput<'a>) -> BoxFuture<'a, Result<Verdict, RailError>> {
        async move { self.judge.decide(&input).await }.boxed()
    }
}

fn words(answer: &str) -> impl Iterator<Item = String> + '_ {
    answer.split_whitespace().map(|w| {
        w.chars()
            .filter(|c| c.is_alphanumeric() || *c == '-')
            .flat_map(char::to_lowercase)
            .collect()
    })
}

/// Parses a yes/no judge answer as NeMo does: the first two words, lower-cased
/// with punctuation removed; "safe"/"no" allow, "unsafe"/"yes" block, anything
/// else blocks. Returns `true` when the content is allowed.
pub fn parse_yes_no(answer: &str) -> bool {
    for word in words(answer).take(2) {
        match word.as_str() {
            "safe" | "no" => return true,
            "unsafe" | "yes" => return false,
            _ => {}
        }
    }
    false
}

/// `is_content_safe`: like [`parse_yes_no`]; a block's reason carries the
/// violated categories that follow "unsafe" (Llama Guard's `unsafe\nS1,S3`).
pub fn parse_content_safety(answer: &str) -> Result<(), String> {
    if parse_yes_no(answer) {
        return Ok(());
    }
    let categories: Vec<&str> = answer
        .split(|c: char| c.is_whitespace() || c == ',')
        .skip_while(|w| !w.to_lowercase().contains("unsafe"))
        .skip(1)
        .filter(|w| !w.is_empty())
        .collect();
    Err(if categories.is_empty() {
        format!("the judge answered {:?}", answer.trim())
    } else {
        format!("unsafe: {}", categories.join(", "))
    })
}

/// Reads NemoGuard's JSON answer (`{"User Safety": "unsafe", "Safety
/// Categories": "S1, S3"}`) by `field`. Text around the JSON object is
/// ignored; an answer that is not such JSON blocks, as in NeMo.
pub fn parse_nemoguard(answer: &str, field: &str) -> Result<(), String> {
    let json = match (answer.find('{'), answer.rfind('}')) {
        (Some(start), Some(end)) if start < end => &answer[start..=end],
        _ => {
            return Err(format!(
                "the judge's answer is not JSON: {:?}",
                answer.trim()
            ));
        }
    };
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|_| format!("the judge's answer is not JSON: {:?}", answer.trim()))?;
    let rating = value
        .get(field)
        .and_then(|v| v.as_str())
        .map(|s| s.trim().to_lowercase())
        .ok_or_else(|| format!("the judge's answer has no {field:?}: {json}"))?;
    match rating.as_str() {
        "safe" => Ok(()),
        _ => Err(
            match value.get("Safety Categories").and_then(|v| v.as_str()) {
                Some(c) if !c.trim().is_empty() => format!("{rating}: {}", c.trim()),
                _ => rating,
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yes_no_answers_parse_like_nemo() {
        for allowed in [
            "No",
            "no.",
            " NO, it is fine",
            "safe",
            "Safe!",
            "Answer: no",
            "**No**",
        ] {
            assert!(parse_yes_no(allowed), "{allowed:?} should allow");
        }
        for blocked in [
            "Yes",
            "yes.",
            "unsafe",
            "UNSAFE\nS1",
            "",
            "maybe",
            "I think no",
            "The answer is no",
        ] {
            assert!(!parse_yes_no(blocked), "{blocked:?} should block");
        }
    }

    #[test]
    fn content_safety_answers_carry_categories() {
        assert_eq!(parse_content_safety("safe"), Ok(()));
        assert_eq!(
            parse_content_safety("unsafe\nS1,S3"),
            Err("unsafe: S1, S3".into())
        );
        assert_eq!(
            parse_content_safety("unsafe"),
            Err("the judge answered \"unsafe\"".into())
        );
        assert!(parse_content_safety("I cannot say").is_err());
    }

    #[test]
    fn nemoguard_json_is_read_by_field() {
        let safe = r#"{"User Safety": "safe"}"#;
        assert_eq!(parse_nemoguard(safe, "User Safety"), Ok(()));
        let unsafe_ = r#"Output: {"User Safety": "unsafe", "Response Safety": "safe", "Safety Categories": "Violence, Threat"}"#;
        assert_eq!(
            parse_nemoguard(unsafe_, "User Safety"),
            Err("unsafe: Violence, Threat".into())
        );
        assert_eq!(parse_nemoguard(unsafe_, "Response Safety"), Ok(()));
        assert!(
            parse_nemoguard("safe", "User Safety").is_err(),
            "not JSON blocks"
        );
        assert!(parse_nemoguard(r#"{"User Safety": "Unsafe"}"#, "User Safety").is_err());
        assert!(
            parse_nemoguard(r#"{"Response Safety": "safe"}"#, "User Safety").is_err(),
            "missing field blocks"
        );
        assert!(
            parse_nemoguard(r#"{"User Safety": "safe""#, "User Safety").is_err(),
            "broken JSON blocks"
        );
    }
}

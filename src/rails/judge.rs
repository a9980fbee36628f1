//! LLM-judge plumbing shared by the judge rails: the task prompt (a Jinja2
//! template rendered with minijinja), the non-streaming call at the lowest
//! temperature, and parsing of yes/no answers.

use std::sync::Arc;

use minijinja::Environment;

use super::{Providers, RailError};
use crate::{
    config::{Config, ConfigError, FlowRef, PromptBody},
    llm::{CallParams, ChatMessage, ChatRequest, Provider},
};

/// Judge answers are a word or two; a few tokens are enough.
const DEFAULT_JUDGE_MAX_TOKENS: u32 = 16;

/// One judge task: its prompt, its model and its call parameters.
#[derive(Debug)]
pub struct Judge {
    task: String,
    env: Environment<'static>,
    /// `(role, template name)` per message of the prompt.
    messages: Vec<(String, String)>,
    provider: Arc<dyn Provider>,
    params: CallParams,
    general_instructions: String,
}

impl Judge {
    /// Prepares the judge for `task`: the model of `type: <model_type>` (or the
    /// main model), and the task's prompt, which is required.
    pub fn new(
        config: &Config,
        providers: &Providers,
        flow: &FlowRef,
        task: &str,
        model_type: &str,
    ) -> Result<Self, ConfigError> {
        let (model, provider) = match (config.model_of_type(model_type), providers.get(model_type))
        {
            (Some(m), Some(p)) => (m, p.clone()),
            _ => {
                let main = config.main_model();
                let p = providers.get("main").cloned().ok_or_else(|| {
                    ConfigError::invalid(&flow.source, &flow.key, "no main model provider")
                })?;
                (main, p)
            }
        };
        let prompt = config.prompt(task, model).ok_or_else(|| {
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
                "bot" | "assistant" => "assistant".to_string(),
                "system" => "system".to_string(),
                _ => "user".to_string(),
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
            general_instructions: config
                .instructions
                .get("general")
                .cloned()
                .unwrap_or_default(),
        })
    }

    /// The rendered prompt messages for these inputs.
    pub fn render(
        &self,
        user_input: &str,
        bot_response: Option<&str>,
    ) -> Result<Vec<ChatMessage>, RailError> {
        // The variables NeMo's prompts use.
        let vars = minijinja::context! {
            user_input => user_input,
            bot_response => bot_response,
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

    /// Renders the prompt, calls the judge model (never streaming) and returns
    /// its raw answer.
    pub async fn ask(
        &self,
        user_input: &str,
        bot_response: Option<&str>,
    ) -> Result<String, RailError> {
        let request = ChatRequest {
            task: self.task.clone(),
            messages: self.render(user_input, bot_response)?,
            params: self.params.clone(),
        };
        let completion = self
            .provider
            .complete(request)
            .await
            .map_err(|e| RailError(format!("judge call for `{}` failed: {e}", self.task)))?;
        Ok(completion.text)
    }
}

/// Parses a yes/no judge answer as NeMo does: the first two words, lower-cased
/// with punctuation removed; "safe"/"no" allow, "unsafe"/"yes" block, anything
/// else blocks. Returns `true` when the content is allowed.
pub fn parse_yes_no(answer: &str) -> bool {
    for word in answer.split_whitespace().take(2) {
        let word: String = word
            .chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect();
        match word.as_str() {
            "safe" | "no" => return true,
            "unsafe" | "yes" => return false,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::parse_yes_no;

    #[test]
    fn yes_no_answers_parse_like_nemo() {
        for allowed in [
            "No",
            "no.",
            " NO, it is fine",
            "safe",
            "Safe!",
            "Answer: no",
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
}

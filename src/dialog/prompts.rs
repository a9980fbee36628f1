//! The prompts of the dialog tasks: NeMo's defaults (Colang-style
//! conversation text), overridden by a prompt of the same task in the
//! config's `prompts.yml`.

use minijinja::Environment;

use crate::{
    config::{Config, ConfigError, PromptBody},
    llm::LlmError,
    rails::template::{self, TemplateBudget},
};

/// The intent of the user's turn.
pub(super) const USER_INTENT_TASK: &str = "generate_user_intent";
/// The bot intent when no flow prescribes one.
pub(super) const NEXT_STEPS_TASK: &str = "generate_next_steps";
/// The bot message for a bot intent without a predefined message.
pub(super) const BOT_MESSAGE_TASK: &str = "generate_bot_message";
/// `$x = ...`: the value of a variable.
pub(super) const VALUE_TASK: &str = "generate_value";
/// Single-call mode: both intents and the message in one call.
pub(super) const SINGLE_CALL_TASK: &str = "generate_intent_steps_message";

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
{% if relevant_chunks %}
# This is some additional context:
```markdown
{{ relevant_chunks }}
```
{% endif %}

# This is the current conversation between the user and the bot:
{{ history }}user "{{ user_input }}"
  {{ user_intent }}
bot {{ bot_intent }}
"#;

const VALUE: &str = r#"{{ general_instructions }}
{% if sample_conversation %}
# This is how a conversation between a user and the bot can go:
{{ sample_conversation }}
{% endif %}
# This is the current conversation between the user and the bot:
{{ history }}user "{{ user_input }}"
  {{ user_intent }}
# {{ instructions }}
${{ var_name }} =
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
{% if relevant_chunks %}
# This is some additional context:
```markdown
{{ relevant_chunks }}
```
{% endif %}
# Continue the conversation in the same format: the user's intent, then the
# bot's intent and the bot's message, like this:
# user "<the user's message>"
#   <the user's intent>
# bot <the bot's intent>
#   "<the bot's message>"

# This is the current conversation between the user and the bot:
{{ history }}user "{{ user_input }}"
"#;

/// The dialog tasks' templates of one config.
#[derive(Debug)]
pub(super) struct Prompts {
    env: Environment<'static>,
    budget: TemplateBudget,
}

impl Prompts {
    pub(super) fn new(config: &Config, budget: TemplateBudget) -> Result<Self, ConfigError> {
        let mut env = template::environment(budget);
        for (task, default) in [
            (USER_INTENT_TASK, USER_INTENT),
            (NEXT_STEPS_TASK, NEXT_STEPS),
            (BOT_MESSAGE_TASK, BOT_MESSAGE),
            (SINGLE_CALL_TASK, INTENT_STEPS_MESSAGE),
            (VALUE_TASK, VALUE),
        ] {
            let prompt = add_task(&mut env, config, task, default)?;
            // A config's own prompt is rendered once now, with sample
            // values: one that cannot render is refused at load.
            if let Some(p) = prompt {
                template::check(&env, task, sample(config), budget).map_err(|e| {
                    ConfigError::invalid(
                        &p.source,
                        &p.key,
                        format!("prompt for task `{task}` does not render: {e}"),
                    )
                })?;
            }
        }
        Ok(Prompts { env, budget })
    }

    /// Renders the prompt of `task`.
    pub(super) fn render(&self, task: &str, ctx: minijinja::Value) -> Result<String, LlmError> {
        template::render(&self.env, task, ctx, self.budget)
            .map_err(|e| LlmError::Protocol(format!("dialog prompt `{task}` does not render: {e}")))
    }
}

/// Adds the template of `task` to `env`: the config's prompt of that task
/// in prompts.yml, else `default`; returns the config's prompt.
pub(super) fn add_task<'c>(
    env: &mut Environment<'static>,
    config: &'c Config,
    task: &'static str,
    default: &str,
) -> Result<Option<&'c crate::config::Prompt>, ConfigError> {
    let prompt = config.prompt(task, config.main_model());
    let text = match prompt.map(|p| &p.body) {
        Some(PromptBody::Content(c)) => c.clone(),
        Some(PromptBody::Messages(m)) => m
            .iter()
            .map(|(_, c)| c.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        None => default.to_string(),
    };
    env.add_template_owned(task, text)
        .map_err(|e| match prompt {
            Some(p) => ConfigError::invalid(
                &p.source,
                &p.key,
                format!("template for task `{task}` does not parse: {e}"),
            ),
            None => ConfigError::invalid(config.main_file(), "prompts", e.to_string()),
        })?;
    Ok(prompt)
}

/// The variables the dialog prompts get, with sample values.
fn sample(config: &Config) -> minijinja::Value {
    minijinja::context! {
        general_instructions => config.instruction("general").unwrap_or_default(),
        sample_conversation => config.sample_conversation().unwrap_or_default(),
        examples => vec![("Hello", "express greeting")],
        history => "user \"Hi\"\n  express greeting\nbot express greeting\n  \"Hello!\"\n",
        user_input => "What can you do?",
        user_intent => "ask about capabilities",
        bot_intent => "inform capabilities",
        instructions => "Extract the math question from the user's input.",
        var_name => "math_query",
        config => crate::rails::template::config_vars(config),
    }
}

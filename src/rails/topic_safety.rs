//! `topic safety check input $model=<type>`: a topic-control model (NemoGuard
//! topic control) gets the config's topic prompt as its system message and
//! the conversation, and answers `on-topic` or `off-topic`.

use futures_util::{FutureExt, future::BoxFuture};

use super::{
    Providers, Rail, RailError, RailInput, Verdict,
    judge::{Judge, JudgeModel, Parser},
    model_arg,
};
use crate::{
    config::{Config, ConfigError, FlowRef},
    llm::ChatMessage,
};

/// Appended to the topic prompt unless it already ends with it, as NeMo does.
const OUTPUT_RESTRICTION: &str = "If any of the above conditions are violated, please respond with \"off-topic\". \
Otherwise, respond with \"on-topic\". You must respond with \"on-topic\" or \"off-topic\".";

#[derive(Debug)]
pub struct TopicSafety {
    flow: String,
    judge: Judge,
}

impl TopicSafety {
    pub fn new(
        config: &Config,
        providers: &Providers,
        flow: &FlowRef,
    ) -> Result<Self, ConfigError> {
        let model = model_arg(config, flow)?;
        let task = format!("topic_safety_check_input $model={model}");
        Ok(TopicSafety {
            flow: flow.name.clone(),
            judge: Judge::new(
                config,
                providers,
                flow,
                &task,
                JudgeModel::Type(model),
                Parser::YesNo,
            )?,
        })
    }
}

impl Rail for TopicSafety {
    fn flow(&self) -> &str {
        &self.flow
    }

    fn check<'a>(&'a self, input: RailInput<'a>) -> BoxFuture<'a, Result<Verdict, RailError>> {
        async move {
            let rendered = self.judge.render(&input)?;
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
            messages.push(ChatMessage::new("system", system));
            messages.extend(
                input
                    .history
                    .iter()
                    .filter(|m| m.role == "user" || m.role == "assistant")
                    .cloned(),
            );
            messages.push(ChatMessage::new("user", input.user_input));
            let answer = self.judge.call(messages, &input).await?;
            Ok(if answer.trim().to_lowercase().starts_with("off-topic") {
                Verdict::Block {
                    reason: "off-topic".into(),
                }
            } else {
                Verdict::Allow
            })
        }
        .boxed()
    }
}

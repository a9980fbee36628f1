//! `self check input` / `self check output`: the main (or a dedicated) model
//! judges the message with the config's own prompt.

use futures_util::{FutureExt, future::BoxFuture};

use super::{Judge, Providers, Rail, RailError, RailInput, Stage, Verdict, parse_yes_no};
use crate::config::{Config, ConfigError, FlowRef};

/// A self-check rail for one stage.
#[derive(Debug)]
pub struct SelfCheck {
    flow: String,
    stage: Stage,
    judge: Judge,
}

impl SelfCheck {
    pub fn new(
        config: &Config,
        providers: &Providers,
        flow: &FlowRef,
        stage: Stage,
    ) -> Result<Self, ConfigError> {
        let task = match stage {
            Stage::Input => "self_check_input",
            Stage::Output => "self_check_output",
        };
        Ok(SelfCheck {
            flow: flow.name.clone(),
            stage,
            judge: Judge::new(config, providers, flow, task, task)?,
        })
    }
}

impl Rail for SelfCheck {
    fn flow(&self) -> &str {
        &self.flow
    }

    fn check<'a>(&'a self, input: RailInput<'a>) -> BoxFuture<'a, Result<Verdict, RailError>> {
        async move {
            let bot = match self.stage {
                Stage::Input => None,
                Stage::Output => Some(input.bot_response.unwrap_or_default()),
            };
            let answer = self.judge.ask(input.user_input, bot).await?;
            Ok(if parse_yes_no(&answer) {
                Verdict::Allow
            } else {
                Verdict::Block {
                    reason: format!("the judge answered {:?}", answer.trim()),
                }
            })
        }
        .boxed()
    }
}

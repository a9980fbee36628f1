//! `self check input` / `self check output`: the main (or a dedicated) model
//! judges the message with the config's own prompt.

use futures_util::{FutureExt, future::BoxFuture};

use super::{
    Providers, Rail, RailError, RailInput, Stage, Verdict,
    judge::{Judge, JudgeModel, Parser},
};
use crate::config::{Config, ConfigError, FlowRef};

/// A self-check rail for one stage.
#[derive(Debug)]
pub struct SelfCheck {
    flow: String,
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
            judge: Judge::new(
                config,
                providers,
                flow,
                task,
                JudgeModel::PreferType(task),
                Parser::YesNo,
            )?,
        })
    }
}

impl Rail for SelfCheck {
    fn flow(&self) -> &str {
        &self.flow
    }

    fn check<'a>(&'a self, input: RailInput<'a>) -> BoxFuture<'a, Result<Verdict, RailError>> {
        async move { self.judge.decide(&input).await }.boxed()
    }
}

//! `llama guard check input` / `llama guard check output`: Llama Guard (a
//! model of `type: llama_guard`) answers `safe`, or `unsafe` and the violated
//! policy categories.

use futures_util::{FutureExt, future::BoxFuture};

use super::{
    Providers, Rail, RailError, RailInput, Stage, Verdict,
    judge::{Judge, JudgeModel, Parser},
};
use crate::config::{Config, ConfigError, FlowRef};

#[derive(Debug)]
pub struct LlamaGuard {
    flow: String,
    judge: Judge,
}

impl LlamaGuard {
    pub fn new(
        config: &Config,
        providers: &Providers,
        flow: &FlowRef,
        stage: Stage,
    ) -> Result<Self, ConfigError> {
        let task = format!("llama_guard_check_{stage}");
        Ok(LlamaGuard {
            flow: flow.name.clone(),
            judge: Judge::new(
                config,
                providers,
                flow,
                &task,
                JudgeModel::Type("llama_guard"),
                Parser::YesNo,
            )?,
        })
    }
}

impl Rail for LlamaGuard {
    fn flow(&self) -> &str {
        &self.flow
    }

    fn check<'a>(&'a self, input: RailInput<'a>) -> BoxFuture<'a, Result<Verdict, RailError>> {
        async move { self.judge.decide(&input).await }.boxed()
    }
}

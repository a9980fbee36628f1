//! `content safety check input $model=<type>` / `... output`: a safety model
//! (NemoGuard content safety, Llama Guard, ShieldGemma, …) rates the message.
//! Its answer is read by the prompt's `output_parser`: `safe`/`unsafe`, or
//! NemoGuard's JSON.

use futures_util::{FutureExt, future::BoxFuture};

use super::{
    Providers, Rail, RailError, RailInput, Stage, Verdict,
    judge::{Judge, JudgeModel, Parser},
    model_arg,
};
use crate::config::{Config, ConfigError, FlowRef};

#[derive(Debug)]
pub struct ContentSafety {
    flow: String,
    judge: Judge,
}

impl ContentSafety {
    pub fn new(
        config: &Config,
        providers: &Providers,
        flow: &FlowRef,
        stage: Stage,
    ) -> Result<Self, ConfigError> {
        let model = model_arg(config, flow)?;
        let task = format!("content_safety_check_{stage} $model={model}");
        Ok(ContentSafety {
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

impl Rail for ContentSafety {
    fn flow(&self) -> &str {
        &self.flow
    }

    fn check<'a>(&'a self, input: RailInput<'a>) -> BoxFuture<'a, Result<Verdict, RailError>> {
        async move { self.judge.decide(&input).await }.boxed()
    }
}

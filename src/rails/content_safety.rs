//! `content safety check input $model=<type>` / `... output`: a safety model
//! (NemoGuard content safety, Llama Guard, ShieldGemma, …) rates the message.
//! Its answer is read by the prompt's `output_parser`: `safe`/`unsafe`, or
//! NemoGuard's JSON.

use super::{
    Providers, Stage,
    judge::{Judge, JudgeModel, JudgeRail, Parser},
    model_arg,
};
use crate::config::{Config, ConfigError, FlowRef};

/// The content-safety rail of `stage`, judged by the `$model=<type>` entry.
pub fn rail(
    config: &Config,
    providers: &Providers,
    flow: &FlowRef,
    stage: Stage,
) -> Result<JudgeRail, ConfigError> {
    let model = model_arg(config, flow)?;
    let task = format!("content_safety_check_{stage} $model={model}");
    let judge = Judge::new(
        config,
        providers,
        flow,
        &task,
        JudgeModel::Type(model),
        Parser::YesNo,
    )?;
    Ok(JudgeRail::new(flow, judge))
}

//! `llama guard check input` / `llama guard check output`: Llama Guard (a
//! model of `type: llama_guard`) answers `safe`, or `unsafe` and the violated
//! policy categories.

use super::{
    Providers, Stage,
    judge::{Judge, JudgeModel, JudgeRail, Parser},
};
use crate::config::{Config, ConfigError, FlowRef};

/// The Llama Guard rail of `stage`: task `llama_guard_check_<stage>`.
pub fn rail(
    config: &Config,
    providers: &Providers,
    flow: &FlowRef,
    stage: Stage,
) -> Result<JudgeRail, ConfigError> {
    let task = format!("llama_guard_check_{stage}");
    let judge = Judge::new(
        config,
        providers,
        flow,
        &task,
        JudgeModel::Type("llama_guard"),
        Parser::YesNo,
    )?;
    Ok(JudgeRail::new(flow, judge))
}

//! `self check input` / `self check output`: the main (or a dedicated) model
//! judges the message with the config's own prompt, answering yes or no.

use super::{
    Providers, Stage,
    judge::{Judge, JudgeModel, JudgeRail, Parser},
};
use crate::config::{Config, ConfigError, FlowRef};

/// The self-check rail of `stage`: task `self_check_<stage>`, judged by the
/// model of that type if the config has one, else the main model.
pub fn rail(
    config: &Config,
    providers: &Providers,
    flow: &FlowRef,
    stage: Stage,
) -> Result<JudgeRail, ConfigError> {
    let task = format!("self_check_{stage}");
    let judge = Judge::new(
        config,
        providers,
        flow,
        &task,
        JudgeModel::PreferType(&task),
        Parser::YesNo,
    )?;
    Ok(JudgeRail::new(flow, judge))
}

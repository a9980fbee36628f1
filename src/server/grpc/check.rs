//! The `Check` RPC's wire types ↔ the engine's check.

use super::convert;
use crate::{
    engine::{self, CheckStatus},
    error::Error,
    pb,
    rails::Stage,
};

/// The stages a check names (`None`: as the messages' roles say).
type Stages = Option<Vec<Stage>>;

/// A `CheckRequest` as the config ids, the engine request and the stages.
pub(super) fn request(
    request: pb::CheckRequest,
) -> Result<(Vec<String>, engine::Request, Stages), Error> {
    let pb::CheckRequest {
        config_id,
        config_ids,
        messages,
        rail_types,
        options,
    } = request;
    let ids = convert::composed(config_id, config_ids)?;
    let (messages, context) = convert::messages(messages)?;
    let mut stages = Vec::new();
    for (i, t) in rail_types.into_iter().enumerate() {
        let stage = match pb::RailType::try_from(t) {
            Ok(pb::RailType::Input) => Stage::Input,
            Ok(pb::RailType::Output) => Stage::Output,
            Ok(pb::RailType::ToolInput) => Stage::ToolInput,
            Ok(pb::RailType::ToolOutput) => Stage::ToolOutput,
            _ => {
                return Err(Error::InvalidRequest {
                    field: "rail_types",
                    message: format!(
                        "rail_types[{i}] is {t}; expected RAIL_TYPE_INPUT (1), _OUTPUT (2), _TOOL_INPUT (3) or _TOOL_OUTPUT (4)"
                    ),
                });
            }
        };
        if !stages.contains(&stage) {
            stages.push(stage);
        }
    }
    let request = engine::Request {
        messages,
        context,
        options: convert::options(options)?,
        ..engine::Request::default()
    };
    Ok((ids, request, (!stages.is_empty()).then_some(stages)))
}

fn rail_type(stage: Stage) -> pb::RailType {
    match stage {
        Stage::Input => pb::RailType::Input,
        Stage::Output => pb::RailType::Output,
        Stage::ToolInput => pb::RailType::ToolInput,
        Stage::ToolOutput => pb::RailType::ToolOutput,
        Stage::Retrieval => pb::RailType::Unspecified,
    }
}

pub(super) fn response(config_id: &str, result: engine::CheckResult) -> pb::CheckResponse {
    let engine::CheckResult {
        status,
        content,
        violation,
        stages,
        log,
    } = result;
    let status = match status {
        CheckStatus::Passed => pb::CheckStatus::Passed,
        CheckStatus::Modified => pb::CheckStatus::Modified,
        CheckStatus::Blocked => pb::CheckStatus::Blocked,
    };
    pb::CheckResponse {
        status: status.into(),
        content,
        rail: violation
            .as_ref()
            .map(|v| v.rail.clone())
            .unwrap_or_default(),
        violation: violation.map(convert::violation_pb),
        rail_types: stages.into_iter().map(|s| rail_type(s).into()).collect(),
        log: log.map(convert::log_pb),
        config_id: config_id.to_string(),
        response_id: crate::server::edge::new_id().to_string(),
    }
}

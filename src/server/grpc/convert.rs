//! gRPC wire types ↔ engine types, with exhaustive destructuring so a new
//! proto field fails to compile until it is handled.

use std::time::Duration;

use tonic::metadata::MetadataMap;

use crate::{
    dialog::Vars,
    engine::{self, FinishReason, GenerationLog},
    error::Error,
    llm::{CallParams, ChatMessage, Role, Usage},
    pb,
    server::state_token::{self, Resume, StateKey},
};

/// The caller's deadline from the `grpc-timeout` header (`<digits><unit>`).
pub(super) fn deadline(metadata: &MetadataMap) -> Option<Duration> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    let limit = match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    };
    // tonic's own timeout layer answers an expired unary call with CANCELLED;
    // finishing a little earlier lets the caller see DEADLINE_EXCEEDED.
    Some(limit.saturating_sub((limit / 20).min(Duration::from_millis(20))))
}

/// The chat messages, and the variables of NeMo's `context` messages (their
/// content a JSON object).
pub(super) fn messages(
    messages: Vec<pb::Message>,
) -> Result<(Vec<ChatMessage>, Option<Vars>), Error> {
    let mut chat = Vec::with_capacity(messages.len());
    let mut context = None;
    for (i, m) in messages.into_iter().enumerate() {
        let pb::Message {
            role,
            content,
            tool_calls,
            tool_call_id,
            name,
        } = m;
        if role == "context" {
            let value = serde_json::from_str(&content).map_err(|_| Error::InvalidRequest {
                field: "messages.content",
                message: format!(
                    "messages[{i}].content: a `context` message's content is a JSON object of variables, e.g. {{\"relevant_chunks\": \"…\"}}"
                ),
            })?;
            engine::merge_context(&mut context, value, i)?;
            continue;
        }
        let role = Role::parse(&role).ok_or_else(|| Error::InvalidRequest {
            field: "messages.role",
            message: format!(
                "messages[{i}].role is `{}`; expected `user`, `assistant`, `system`, `tool` or `context`",
                crate::error::echo(&role)
            ),
        })?;
        let mut message = ChatMessage::new(role, content);
        message.extra = super::tools::extra(tool_calls, tool_call_id, name);
        chat.push(message);
    }
    Ok((chat, context))
}

pub(super) fn options(options: Option<pb::GenerationOptions>) -> Result<engine::Options, Error> {
    let mut out = engine::Options::default();
    let Some(pb::GenerationOptions {
        llm_params,
        rails,
        log,
        reasoning,
    }) = options
    else {
        return Ok(out);
    };
    out.log = log;
    out.reasoning = reasoning;
    if let Some(pb::LlmParams {
        temperature,
        max_tokens,
        stop,
    }) = llm_params
    {
        if max_tokens == Some(0) {
            return Err(Error::invalid(
                "options.llm_params.max_tokens",
                "must be at least 1",
            ));
        }
        out.llm_params = CallParams {
            temperature,
            max_tokens,
            stop,
        };
    }
    if let Some(pb::RailsSelection {
        input,
        output,
        input_flows,
        output_flows,
        tool_input,
        tool_output,
    }) = rails
    {
        out.input_rails = input.unwrap_or(true);
        out.output_rails = output.unwrap_or(true);
        out.tool_input_rails = tool_input.unwrap_or(true);
        out.tool_output_rails = tool_output.unwrap_or(true);
        out.input_flows = (!input_flows.is_empty()).then_some(input_flows);
        out.output_flows = (!output_flows.is_empty()).then_some(output_flows);
    }
    Ok(out)
}

/// The configs a request names: `config_id` or `config_ids` (empty: the
/// default config).
pub(super) fn composed(config_id: String, config_ids: Vec<String>) -> Result<Vec<String>, Error> {
    match (config_id.is_empty(), config_ids.is_empty()) {
        (false, false) => Err(Error::invalid(
            "config_ids",
            "give `config_id` or `config_ids`, not both",
        )),
        (false, true) => Ok(vec![config_id]),
        (true, _) => Ok(config_ids),
    }
}

/// A violation on the wire.
pub(super) fn violation_pb(v: engine::Violation) -> pb::RailViolation {
    pb::RailViolation {
        rail: v.rail,
        stage: v.stage.as_str().into(),
        r#type: v.kind.type_str().into(),
        code: v.kind.code().into(),
        message: v.message,
        reason: v.reason,
        tool: v.tool.unwrap_or_default(),
    }
}

/// A `GenerateRequest` as the config ids to compose (empty: the default
/// config) and the engine request.
pub(super) fn request(
    request: pb::GenerateRequest,
    key: &StateKey,
    registry: &engine::Registry,
) -> Result<(Vec<String>, engine::Request, Option<Resume>), Error> {
    let pb::GenerateRequest {
        config_id,
        messages: wire,
        options: wire_options,
        model,
        config_ids,
        state,
        thread_id: _,
        tools,
        tool_choice,
        parallel_tool_calls,
    } = request;
    let ids = composed(config_id, config_ids)?;
    let resume = match state {
        Some(token) => {
            let configs = state_token::scope(&ids, registry);
            let prior = match token.is_empty() {
                true => Default::default(),
                false => key.open(&configs, &token, "state")?,
            };
            Some(Resume { configs, prior })
        }
        None => None,
    };
    let (messages, context) = messages(wire)?;
    Ok((
        ids,
        engine::Request {
            messages,
            context,
            options: options(wire_options)?,
            traceparent: None,
            model: (!model.is_empty()).then_some(model),
            state: resume.as_ref().map(|r| r.prior.clone()),
            tools: super::tools::tools(tools, tool_choice, parallel_tool_calls)?,
        },
        resume,
    ))
}

/// The state token of the answer, when the request gave a state.
pub(super) fn state(
    key: &StateKey,
    resume: Option<&Resume>,
    response: &engine::Response,
) -> Result<String, Error> {
    resume.map_or(Ok(String::new()), |r| r.seal(key, response))
}

pub(super) fn response(
    config_id: &str,
    response: engine::Response,
    state: String,
) -> pb::GenerateResponse {
    let engine::Response {
        content,
        violation,
        usage,
        log,
        dialog,
        finish_reason,
        model,
        reasoning_content,
        tool_calls,
        rewritten: _,
    } = response;
    let finish_reason = match finish_reason {
        FinishReason::Stop => pb::FinishReason::Stop,
        FinishReason::Length => pb::FinishReason::Length,
        FinishReason::ContentFilter => pb::FinishReason::ContentFilter,
        FinishReason::StopSequence => pb::FinishReason::StopSequence,
        FinishReason::ToolCalls => pb::FinishReason::ToolCalls,
    };
    pb::GenerateResponse {
        finish_reason: finish_reason.into(),
        response_id: crate::server::edge::new_id().to_string(),
        message: Some(pb::Message {
            role: Role::Assistant.as_str().into(),
            content,
            tool_calls: tool_calls.into_iter().map(super::tools::call_pb).collect(),
            tool_call_id: String::new(),
            name: String::new(),
        }),
        violation: violation.map(violation_pb),
        usage: usage.map(usage_pb),
        config_id: config_id.to_string(),
        log: log.map(log_pb),
        dialog: dialog.map(|d| pb::DialogTurn {
            user_intent: d.user_intent,
            bot_intent: d.bot_intent,
        }),
        model,
        reasoning_content: reasoning_content.unwrap_or_default(),
        state,
    }
}

fn usage_pb(u: Usage) -> pb::TokenUsage {
    pb::TokenUsage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u.total_tokens,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(super) fn log_pb(log: GenerationLog) -> pb::GenerationLog {
    let at = |i: std::time::Instant| log.offset_ms(i);
    pb::GenerationLog {
        rails: log
            .rails
            .iter()
            .map(|r| pb::ActivatedRail {
                flow: r.flow.clone(),
                stage: r.stage.as_str().into(),
                decision: r.decision.as_str().into(),
                reason: r.reason.clone(),
                duration_ms: ms(r.duration),
                started_ms: at(r.started),
                window: r.window.as_ref().map(|w| pb::ChunkRange {
                    start: u32::try_from(w.start).unwrap_or(u32::MAX),
                    end: u32::try_from(w.end).unwrap_or(u32::MAX),
                }),
            })
            .collect(),
        llm_calls: log
            .llm_calls
            .iter()
            .map(|c| pb::LlmCall {
                task: c.task.clone(),
                prompt: c.prompt.clone(),
                completion: c.completion.clone(),
                usage: c.usage.map(usage_pb),
                duration_ms: ms(c.duration),
                started_ms: at(c.started),
            })
            .collect(),
        timing: Some(pb::PhaseTiming {
            input_rails_ms: ms(log.timing.input_rails),
            generation_ms: ms(log.timing.generation),
            output_rails_ms: ms(log.timing.output_rails),
            total_ms: ms(log.timing.total),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_header_parses() {
        let mut m = MetadataMap::new();
        m.insert("grpc-timeout", "200m".parse().unwrap());
        assert_eq!(deadline(&m), Some(Duration::from_millis(190)));
        m.insert("grpc-timeout", "3S".parse().unwrap());
        assert_eq!(deadline(&m), Some(Duration::from_millis(2980)));
        m.insert("grpc-timeout", "x".parse().unwrap());
        assert_eq!(deadline(&m), None);
    }
}

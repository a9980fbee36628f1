//! The HTTP replies, serialized straight from borrowed views of the engine's
//! types: one write per SSE chunk event, no JSON tree.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

use crate::{
    engine::{GenerationLog, Response, Violation},
    llm::{ToolCall, ToolCallDelta, Usage},
    server::state_token::{Resume, StateKey},
};

/// A new `chatcmpl-…` id.
pub(super) fn completion_id() -> String {
    format!("chatcmpl-{}", crate::server::edge::new_id().simple())
}

/// Seconds since the epoch, for `created`.
pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[derive(Serialize)]
pub(super) struct UsageBody {
    prompt_tokens: u32,
    completion_tokens: u32,
    total_tokens: u32,
}

impl From<&Usage> for UsageBody {
    fn from(u: &Usage) -> Self {
        UsageBody {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens,
        }
    }
}

#[derive(Serialize)]
pub(super) struct ViolationBody<'a> {
    rail: &'a str,
    stage: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    code: &'static str,
    message: &'a str,
    reason: &'a str,
    /// The tool whose call or result a tool rail blocked.
    #[serde(skip_serializing_if = "Option::is_none")]
    tool: Option<&'a str>,
}

impl<'a> From<&'a Violation> for ViolationBody<'a> {
    fn from(v: &'a Violation) -> Self {
        ViolationBody {
            rail: &v.rail,
            stage: v.stage.as_str(),
            kind: v.kind.type_str(),
            code: v.kind.code(),
            message: &v.message,
            reason: &v.reason,
            tool: v.tool.as_deref(),
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[derive(Serialize)]
struct RailBody<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    stage: &'static str,
    decision: &'static str,
    reason: &'a str,
    duration_ms: f64,
    /// After the request's start.
    started_ms: f64,
    /// An output rail's window on a stream: the chunks it added, `[start, end)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    window: Option<[usize; 2]>,
}

#[derive(Serialize)]
struct CallBody<'a> {
    task: &'a str,
    prompt: &'a str,
    completion: &'a str,
    usage: Option<UsageBody>,
    duration_ms: f64,
    started_ms: f64,
}

#[derive(Serialize)]
struct StatsBody {
    input_rails_ms: f64,
    generation_ms: f64,
    output_rails_ms: f64,
    total_ms: f64,
}

/// NeMo's `log`: the rails that ran, the LLM calls and the phase times.
#[derive(Serialize)]
pub(super) struct LogBody<'a> {
    activated_rails: Vec<RailBody<'a>>,
    llm_calls: Vec<CallBody<'a>>,
    stats: StatsBody,
}

impl<'a> From<&'a GenerationLog> for LogBody<'a> {
    fn from(log: &'a GenerationLog) -> Self {
        LogBody {
            activated_rails: log
                .rails
                .iter()
                .map(|r| RailBody {
                    name: &r.flow,
                    stage: r.stage.as_str(),
                    decision: r.decision.as_str(),
                    reason: &r.reason,
                    duration_ms: ms(r.duration),
                    started_ms: log.offset_ms(r.started),
                    window: r.window.as_ref().map(|w| [w.start, w.end]),
                })
                .collect(),
            llm_calls: log
                .llm_calls
                .iter()
                .map(|c| CallBody {
                    task: &c.task,
                    prompt: &c.prompt,
                    completion: &c.completion,
                    usage: c.usage.as_ref().map(UsageBody::from),
                    duration_ms: ms(c.duration),
                    started_ms: log.offset_ms(c.started),
                })
                .collect(),
            stats: StatsBody {
                input_rails_ms: ms(log.timing.input_rails),
                generation_ms: ms(log.timing.generation),
                output_rails_ms: ms(log.timing.output_rails),
                total_ms: ms(log.timing.total),
            },
        }
    }
}

#[derive(Serialize)]
struct DialogBody<'a> {
    user_intent: &'a str,
    bot_intent: &'a str,
}

/// streamguard's additions to an OpenAI reply.
#[derive(Serialize)]
struct GuardrailsBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    config_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    violation: Option<ViolationBody<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<LogBody<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dialog: Option<DialogBody<'a>>,
    /// The dialog state to give back with the next turn (NeMo's `guardrails.state`).
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<Value>,
}

#[derive(Serialize)]
struct MessageBody<'a> {
    role: &'static str,
    /// `null` for a turn of tool calls alone, as OpenAI sends it.
    content: Option<&'a str>,
    /// The reasoning trace, when the request asked for it (DeepSeek's field).
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<&'a [ToolCall]>,
}

impl<'a> MessageBody<'a> {
    fn of(r: &'a Response) -> Self {
        let calls = (!r.tool_calls.is_empty()).then_some(r.tool_calls.as_slice());
        MessageBody {
            role: "assistant",
            content: (calls.is_none() || !r.content.is_empty()).then_some(&r.content),
            reasoning_content: r.reasoning_content.as_deref(),
            tool_calls: calls,
        }
    }
}

/// A streamed piece of a tool call, in OpenAI's `delta.tool_calls[i]` form.
struct ToolPiece<'a>(&'a ToolCallDelta);

impl Serialize for ToolPiece<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let d = self.0;
        let mut function = serde_json::Map::new();
        if let Some(name) = &d.name {
            function.insert("name".into(), Value::String(name.clone()));
        }
        function.insert("arguments".into(), Value::String(d.arguments.clone()));
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("index", &d.index)?;
        if let Some(id) = &d.id {
            map.serialize_entry("id", id)?;
            map.serialize_entry("type", "function")?;
        }
        map.serialize_entry("function", &function)?;
        map.end()
    }
}

fn finish_reason(r: &Response) -> &'static str {
    r.finish_reason.openai()
}

#[derive(Serialize)]
struct WholeChoice<'a> {
    index: u32,
    message: MessageBody<'a>,
    finish_reason: &'static str,
}

/// OpenAI's `chat.completion`.
#[derive(Serialize)]
pub(super) struct OpenAiReply<'a> {
    id: String,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [WholeChoice<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageBody>,
    guardrails: GuardrailsBody<'a>,
}

/// NeMo's reply: `messages`, and `violation`, `usage`, `log`, `output_data` when there are any.
#[derive(Serialize)]
pub(super) struct NemoReply<'a> {
    messages: [MessageBody<'a>; 1],
    config_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    violation: Option<ViolationBody<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<LogBody<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_data: Option<DialogBody<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<Value>,
}

fn dialog(r: &Response) -> Option<DialogBody<'_>> {
    r.dialog.as_ref().map(|d| DialogBody {
        user_intent: &d.user_intent,
        bot_intent: &d.bot_intent,
    })
}

/// The reply's `state` (`{"state": token}`) when the request gave one.
pub(super) fn state(
    key: &StateKey,
    resume: Option<&Resume>,
    r: &Response,
) -> Result<Option<Value>, crate::error::Error> {
    resume
        .map(|resume| Ok(serde_json::json!({"state": resume.seal(key, r)?})))
        .transpose()
}

pub(super) fn openai<'a>(
    model: &'a str,
    config_id: &'a str,
    r: &'a Response,
    state: Option<Value>,
) -> OpenAiReply<'a> {
    OpenAiReply {
        id: completion_id(),
        object: "chat.completion",
        created: now(),
        model,
        choices: [WholeChoice {
            index: 0,
            message: MessageBody::of(r),
            finish_reason: finish_reason(r),
        }],
        usage: r.usage.as_ref().map(UsageBody::from),
        guardrails: GuardrailsBody {
            config_id: Some(config_id),
            violation: r.violation.as_ref().map(ViolationBody::from),
            log: r.log.as_ref().map(LogBody::from),
            dialog: dialog(r),
            state,
        },
    }
}

pub(super) fn nemo<'a>(config_id: &'a str, r: &'a Response, state: Option<Value>) -> NemoReply<'a> {
    NemoReply {
        messages: [MessageBody::of(r)],
        config_id,
        violation: r.violation.as_ref().map(ViolationBody::from),
        usage: r.usage.as_ref().map(UsageBody::from),
        log: r.log.as_ref().map(LogBody::from),
        output_data: dialog(r),
        state,
    }
}

#[derive(Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolPiece<'a>; 1]>,
}

impl Delta<'_> {
    const EMPTY: Delta<'static> = Delta {
        role: None,
        content: None,
        reasoning_content: None,
        tool_calls: None,
    };
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    finish_reason: Option<&'static str>,
}

/// One `chat.completion.chunk` event.
#[derive(Serialize)]
pub(super) struct ChunkEvent<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [ChunkChoice<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    guardrails: Option<GuardrailsBody<'a>>,
}

/// What the chunk events of one stream share.
#[derive(Debug, Clone)]
pub(super) struct ChunkHead {
    pub id: String,
    pub created: u64,
    pub model: String,
}

impl ChunkHead {
    fn event<'a>(&'a self, delta: Delta<'a>, finish: Option<&'static str>) -> ChunkEvent<'a> {
        ChunkEvent {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: [ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish,
            }],
            usage: None,
            guardrails: None,
        }
    }

    /// The first event: the assistant role and empty content.
    pub fn role(&self) -> ChunkEvent<'_> {
        self.event(
            Delta {
                role: Some("assistant"),
                content: Some(""),
                ..Delta::EMPTY
            },
            None,
        )
    }

    /// A content chunk.
    pub fn text<'a>(&'a self, text: &'a str) -> ChunkEvent<'a> {
        self.event(
            Delta {
                content: Some(text),
                ..Delta::EMPTY
            },
            None,
        )
    }

    /// A reasoning chunk (`delta.reasoning_content`, as DeepSeek streams it).
    pub fn reasoning<'a>(&'a self, text: &'a str) -> ChunkEvent<'a> {
        self.event(
            Delta {
                reasoning_content: Some(text),
                ..Delta::EMPTY
            },
            None,
        )
    }

    /// A piece of a tool call (`delta.tool_calls`).
    pub fn tool_call<'a>(&'a self, piece: &'a ToolCallDelta) -> ChunkEvent<'a> {
        self.event(
            Delta {
                tool_calls: Some([ToolPiece(piece)]),
                ..Delta::EMPTY
            },
            None,
        )
    }

    /// The last chunk: the finish reason, usage, and the violation and log.
    pub fn finish<'a>(&'a self, r: &'a Response, state: Option<Value>) -> ChunkEvent<'a> {
        let mut e = self.event(Delta::EMPTY, Some(finish_reason(r)));
        e.usage = r.usage.as_ref().map(UsageBody::from);
        if r.violation.is_some() || r.log.is_some() || state.is_some() {
            e.guardrails = Some(GuardrailsBody {
                config_id: None,
                violation: r.violation.as_ref().map(ViolationBody::from),
                log: r.log.as_ref().map(LogBody::from),
                dialog: None,
                state,
            });
        }
        e
    }
}

#[derive(Serialize)]
struct ErrorFields<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: &'a str,
}

/// An OpenAI-style error body (also the SSE error event).
#[derive(Serialize)]
pub(super) struct ErrorBody<'a> {
    error: ErrorFields<'a>,
    /// On the error event of a blocked stream: the tokens it consumed.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageBody>,
}

impl<'a> ErrorBody<'a> {
    pub fn new(message: &'a str, kind: &'a str, param: Option<&'a str>, code: &'a str) -> Self {
        ErrorBody {
            error: ErrorFields {
                message,
                kind,
                param,
                code,
            },
            usage: None,
        }
    }

    /// NeMo's error event for a stream an output rail blocked, with its usage.
    pub fn blocked(v: &'a Violation, usage: Option<&Usage>) -> Self {
        let mut e = ErrorBody::new(&v.message, v.kind.type_str(), Some(&v.rail), v.kind.code());
        e.usage = usage.map(UsageBody::from);
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn chunk_events_have_openai_s_shape() {
        let head = ChunkHead {
            id: "chatcmpl-1".into(),
            created: 7,
            model: "m".into(),
        };
        let v: Value = serde_json::to_value(head.text("Hi")).unwrap();
        assert_eq!(
            v,
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "m",
                   "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": null}]})
        );
        let v: Value = serde_json::to_value(head.role()).unwrap();
        assert_eq!(
            v["choices"][0]["delta"],
            json!({"role": "assistant", "content": ""})
        );
        let r = Response {
            usage: Some(Usage {
                prompt_tokens: 1,
                completion_tokens: 2,
                total_tokens: 3,
            }),
            ..Response::default()
        };
        let v: Value = serde_json::to_value(head.finish(&r, None)).unwrap();
        assert_eq!(v["choices"][0]["delta"], json!({}));
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["total_tokens"], 3);
        assert!(v.get("guardrails").is_none());
    }
}

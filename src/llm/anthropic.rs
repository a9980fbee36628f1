//! Anthropic's Messages API: the request body (`system` apart from the
//! turns, `max_tokens` required, `stop_sequences`), whole answers, and its
//! stream events (`message_start` with input usage, `content_block_delta`
//! text, `message_delta` with the stop reason and output usage,
//! `message_stop`, `ping`, `error`). The HTTP plumbing (retries, limits,
//! errors) is the OpenAI client's; only the wire format is here.

use serde::{
    Deserialize,
    ser::{Serialize, SerializeMap, Serializer},
};
use serde_json::{Map, Value};

use super::{
    ChatMessage, ChatRequest, Completion, Finish, LlmError, Role, Usage,
    openai::{Deltas, Parsed},
};

/// The API version sent in `anthropic-version`.
pub const API_VERSION: &str = "2023-06-01";

/// `max_tokens` when neither the call nor the config sets it (LangChain's
/// fallback for Anthropic models).
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// The Messages URL under a base (`https://api.anthropic.com`, or one
/// ending in `/v1`).
pub fn messages_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/v1") {
        format!("{base}/messages")
    } else {
        format!("{base}/v1/messages")
    }
}

/// One turn as Anthropic takes it (system messages go to `system`).
#[derive(serde::Serialize)]
struct Turn<'a> {
    role: &'static str,
    content: &'a str,
}

/// The request body, serialized from borrowed parts: the configured
/// parameters, with the call's own winning.
pub struct Body<'a> {
    pub model: &'a str,
    pub defaults: &'a Map<String, Value>,
    pub request: &'a ChatRequest,
    pub stream: bool,
}

impl Serialize for Body<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = &self.request.params;
        let mut map = s.serialize_map(None)?;
        let own = |k: &str| {
            matches!(
                k,
                "model" | "messages" | "system" | "stream" | "stop" | "stop_sequences"
            ) || (k == "temperature" && p.temperature.is_some())
                || (k == "max_tokens" && p.max_tokens.is_some())
        };
        for (k, v) in self.defaults {
            if !own(k) {
                map.serialize_entry(k, v)?;
            }
        }
        map.serialize_entry("model", self.model)?;
        let system: Vec<&str> = self
            .request
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.as_str())
            .collect();
        if !system.is_empty() {
            map.serialize_entry("system", &system.join("\n\n"))?;
        }
        let turns: Vec<Turn<'_>> = self
            .request
            .messages
            .iter()
            .filter(|m| m.role != Role::System)
            .map(|m: &ChatMessage| Turn {
                role: m.role.as_str(),
                content: &m.content,
            })
            .collect();
        map.serialize_entry("messages", &turns)?;
        match p.max_tokens {
            Some(n) => map.serialize_entry("max_tokens", &n)?,
            None if !self.defaults.contains_key("max_tokens") => {
                map.serialize_entry("max_tokens", &DEFAULT_MAX_TOKENS)?
            }
            None => {}
        }
        if let Some(t) = p.temperature {
            map.serialize_entry("temperature", &t)?;
        }
        let stop = if p.stop.is_empty() {
            self.defaults
                .get("stop")
                .or(self.defaults.get("stop_sequences"))
        } else {
            None
        };
        if !p.stop.is_empty() {
            map.serialize_entry("stop_sequences", &p.stop)?;
        } else if let Some(stop) = stop {
            map.serialize_entry("stop_sequences", stop)?;
        }
        if self.stream {
            map.serialize_entry("stream", &true)?;
        }
        map.end()
    }
}

#[derive(Deserialize)]
struct AnthropicUsage {
    #[serde(default)]
    input_tokens: u32,
    #[serde(default)]
    output_tokens: u32,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
}

#[derive(Deserialize)]
struct MessageBody {
    #[serde(default)]
    content: Vec<Block>,
    stop_reason: Option<String>,
    usage: Option<AnthropicUsage>,
    error: Option<ErrorBody>,
}

fn finish(reason: &str) -> Finish {
    match reason {
        "refusal" => Finish::ContentFilter,
        other => Finish::parse(other),
    }
}

fn usage(input: u32, output: u32) -> Usage {
    Usage {
        prompt_tokens: input,
        completion_tokens: output,
        total_tokens: input + output,
    }
}

fn api_error(e: ErrorBody) -> LlmError {
    LlmError::Api(super::redact::redact(
        &format!("{}: {}", e.kind, e.message),
        &[],
    ))
}

/// Reads a whole answer: the text blocks joined.
pub fn parse_completion(bytes: &[u8]) -> Result<Completion, LlmError> {
    let body: MessageBody = serde_json::from_slice(bytes)
        .map_err(|e| LlmError::Protocol(format!("message is not valid JSON: {e}")))?;
    if let Some(e) = body.error {
        return Err(api_error(e));
    }
    let text: String = body
        .content
        .iter()
        .filter(|b| b.kind == "text")
        .filter_map(|b| b.text.as_deref())
        .collect();
    let thinking: String = body
        .content
        .iter()
        .filter(|b| b.kind == "thinking")
        .filter_map(|b| b.thinking.as_deref())
        .collect();
    Ok(Completion {
        text,
        usage: body.usage.map(|u| usage(u.input_tokens, u.output_tokens)),
        finish: body.stop_reason.as_deref().map(finish),
        reasoning: (!thinking.is_empty()).then_some(thinking),
        tool_calls: Vec::new(),
    })
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    message: Option<StartMessage>,
    delta: Option<EventDelta>,
    usage: Option<AnthropicUsage>,
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct StartMessage {
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct EventDelta {
    #[serde(rename = "type", default)]
    kind: String,
    text: Option<String>,
    thinking: Option<String>,
    stop_reason: Option<String>,
}

/// The input tokens `message_start` reported, carried to `message_delta`.
#[derive(Debug, Default, Clone, Copy)]
pub struct StreamState {
    input_tokens: u32,
}

/// Parses one `data:` payload of a Messages stream.
pub fn parse_event(data: &str, state: &mut StreamState) -> Result<Parsed, LlmError> {
    let event: Event = serde_json::from_str(data.trim()).map_err(|e| {
        let shown = super::redact::redact(data, &[]);
        LlmError::Protocol(format!("stream event is not valid JSON ({e}): {shown}"))
    })?;
    Ok(match event.kind.as_str() {
        "message_start" => {
            if let Some(u) = event.message.and_then(|m| m.usage) {
                state.input_tokens = u.input_tokens;
            }
            Parsed::Deltas(Deltas::default())
        }
        "content_block_delta" => match event.delta {
            Some(d) if d.kind == "text_delta" => Parsed::Deltas(Deltas {
                text: d.text.filter(|t| !t.is_empty()),
                ..Deltas::default()
            }),
            // Extended thinking: the reasoning trace.
            Some(d) if d.kind == "thinking_delta" => Parsed::Deltas(Deltas {
                reasoning: d.thinking.filter(|t| !t.is_empty()),
                ..Deltas::default()
            }),
            _ => Parsed::Deltas(Deltas::default()),
        },
        "message_delta" => {
            let fin = event.delta.and_then(|d| d.stop_reason).map(|r| finish(&r));
            let used = event
                .usage
                .map(|u| usage(state.input_tokens, u.output_tokens));
            Parsed::Deltas(Deltas {
                usage: used,
                finish: fin,
                ..Deltas::default()
            })
        }
        "message_stop" => Parsed::Done,
        "error" => {
            return Err(api_error(event.error.unwrap_or(ErrorBody {
                kind: "error".into(),
                message: "unknown error".into(),
            })));
        }
        // ping, content_block_start/stop, and types added later.
        _ => Parsed::Deltas(Deltas::default()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::CallParams;

    #[test]
    fn the_body_puts_system_apart_and_always_has_max_tokens() {
        let mut request = ChatRequest::new(
            "general",
            vec![ChatMessage::system("Be brief."), ChatMessage::user("Hi")],
        );
        request.params = CallParams {
            temperature: Some(0.1),
            max_tokens: None,
            stop: vec!["User:".into()],
        };
        let defaults = Map::new();
        let body = serde_json::to_value(Body {
            model: "claude-x",
            defaults: &defaults,
            request: &request,
            stream: true,
        })
        .unwrap();
        assert_eq!(
            body,
            serde_json::json!({"model": "claude-x", "system": "Be brief.",
                "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4096,
                "temperature": 0.1, "stop_sequences": ["User:"], "stream": true})
        );
    }

    #[test]
    fn stream_events_give_text_usage_and_the_stop_reason() {
        let mut st = StreamState::default();
        let start = r#"{"type":"message_start","message":{"id":"m","usage":{"input_tokens":25,"output_tokens":1}}}"#;
        assert_eq!(
            parse_event(start, &mut st).unwrap(),
            Parsed::Deltas(Deltas::default())
        );
        let delta =
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#;
        assert_eq!(
            parse_event(delta, &mut st).unwrap(),
            Parsed::Deltas(Deltas {
                text: Some("Hi".into()),
                ..Deltas::default()
            })
        );
        let end = r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#;
        assert_eq!(
            parse_event(end, &mut st).unwrap(),
            Parsed::Deltas(Deltas {
                usage: Some(usage(25, 15)),
                finish: Some(Finish::Stop),
                ..Deltas::default()
            })
        );
        assert_eq!(
            parse_event(r#"{"type":"message_stop"}"#, &mut st).unwrap(),
            Parsed::Done
        );
        let err = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert!(
            matches!(parse_event(err, &mut st), Err(LlmError::Api(m)) if m == "overloaded_error: Overloaded")
        );
    }
}

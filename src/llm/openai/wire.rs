//! The OpenAI chat-completions wire format: whole answers, stream events and
//! error payloads.

use serde::Deserialize;

use crate::llm::{Completion, Finish, LlmError, ToolCall, ToolCallDelta, Usage};

#[derive(Deserialize)]
pub(super) struct ApiError {
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum ErrorField {
    Object(ApiError),
    Text(String),
}

impl ErrorField {
    pub(super) fn into_message(self) -> String {
        match self {
            ErrorField::Object(o) => o.message.unwrap_or_else(|| "unknown error".into()),
            ErrorField::Text(t) => t,
        }
    }
}

#[derive(Deserialize)]
struct CompletionBody {
    #[serde(default)]
    choices: Vec<CompletionChoice>,
    usage: Option<Usage>,
    error: Option<ErrorField>,
}

#[derive(Deserialize)]
struct CompletionChoice {
    message: Option<MessageBody>,
    /// A text completion's answer (`/v1/completions`).
    text: Option<String>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct MessageBody {
    content: Option<String>,
    /// The reasoning trace of reasoning models (DeepSeek, vLLM, NIM).
    reasoning_content: Option<String>,
    /// The same, as some servers name it (vLLM's newer field, OpenRouter).
    reasoning: Option<String>,
    /// The calls the model asks for (whole, or a stream's pieces).
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Deserialize)]
struct WireToolCall {
    /// Set on stream pieces; absent in whole answers (their order counts).
    index: Option<u32>,
    id: Option<String>,
    function: Option<WireFunction>,
}

#[derive(Deserialize)]
struct WireFunction {
    name: Option<String>,
    arguments: Option<String>,
}

impl WireToolCall {
    fn delta(self, position: usize) -> ToolCallDelta {
        let (name, arguments) = match self.function {
            Some(f) => (f.name, f.arguments.unwrap_or_default()),
            None => (None, String::new()),
        };
        ToolCallDelta {
            index: self
                .index
                .unwrap_or_else(|| u32::try_from(position).unwrap_or(u32::MAX)),
            id: self.id,
            name,
            arguments,
        }
    }
}

impl MessageBody {
    fn take_reasoning(&mut self) -> Option<String> {
        self.reasoning_content
            .take()
            .or_else(|| self.reasoning.take())
            .filter(|r| !r.is_empty())
    }
}

#[derive(Deserialize)]
struct ChunkBody {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    usage: Option<Usage>,
    error: Option<ErrorField>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    delta: Option<MessageBody>,
    /// A text completion's piece (`/v1/completions`).
    text: Option<String>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct EmbeddingsBody {
    #[serde(default)]
    pub data: Vec<EmbeddingItem>,
    pub error: Option<ErrorField>,
}

#[derive(Deserialize)]
pub(super) struct EmbeddingItem {
    pub embedding: Vec<f32>,
}

/// Reads a whole (non-streamed) answer.
pub(super) fn parse_completion(bytes: &[u8]) -> Result<Completion, LlmError> {
    let body: CompletionBody = serde_json::from_slice(bytes)
        .map_err(|e| LlmError::Protocol(format!("completion is not valid JSON: {e}")))?;
    if let Some(err) = body.error {
        return Err(LlmError::Api(err.into_message()));
    }
    let choice = body.choices.into_iter().next();
    let finish = choice
        .as_ref()
        .and_then(|c| c.finish_reason.as_deref())
        .map(Finish::parse);
    let (mut reasoning, mut content, mut text) = (None, None, None);
    let mut calls = Vec::new();
    if let Some(c) = choice {
        if let Some(mut m) = c.message {
            reasoning = m.take_reasoning();
            content = m.content;
            calls = m.tool_calls.unwrap_or_default();
        }
        text = c.text;
    }
    let tool_calls = whole_calls(calls)?;
    let text = content
        .or(text)
        // A reasoning model may answer with the trace and no content, a
        // tool-calling turn with the calls alone.
        .or_else(|| (reasoning.is_some() || !tool_calls.is_empty()).then(String::new))
        .ok_or_else(|| LlmError::Protocol("completion has no choices[0].message.content".into()))?;
    Ok(Completion {
        text,
        usage: body.usage,
        finish,
        reasoning,
        tool_calls,
    })
}

/// A whole answer's tool calls, within the bounds of streamed ones.
fn whole_calls(calls: Vec<WireToolCall>) -> Result<Vec<ToolCall>, LlmError> {
    let mut built = crate::llm::ToolCallBuilder::default();
    for (i, call) in calls.into_iter().enumerate() {
        let mut piece = call.delta(i);
        piece.index = u32::try_from(i).unwrap_or(u32::MAX);
        built.push(&piece)?;
    }
    Ok(built.finish())
}

/// What one SSE `data:` payload of a chat-completions stream means.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Deltas(Deltas),
    /// `data: [DONE]`.
    Done,
}

/// What one stream event carries.
#[derive(Debug, PartialEq, Eq, Default)]
pub struct Deltas {
    /// Text (absent for role-only and empty deltas).
    pub text: Option<String>,
    pub usage: Option<Usage>,
    /// The `finish_reason`, when one was set.
    pub finish: Option<Finish>,
    /// A piece of reasoning trace.
    pub reasoning: Option<String>,
    /// Pieces of tool calls.
    pub tool_calls: Vec<ToolCallDelta>,
}

/// Parses one `data:` payload of a chat-completions stream.
pub fn parse_event(data: &str) -> Result<Parsed, LlmError> {
    let data = data.trim();
    if data == "[DONE]" {
        return Ok(Parsed::Done);
    }
    let chunk: ChunkBody = serde_json::from_str(data).map_err(|e| {
        let shown = crate::llm::redact::redact(data, &[]);
        LlmError::Protocol(format!("stream event is not valid JSON ({e}): {shown}"))
    })?;
    if let Some(err) = chunk.error {
        return Err(LlmError::Api(crate::llm::redact::redact(
            &err.into_message(),
            &[],
        )));
    }
    let mut out = Deltas {
        usage: chunk.usage,
        ..Deltas::default()
    };
    if let Some(choice) = chunk.choices.into_iter().next() {
        out.finish = choice.finish_reason.as_deref().map(Finish::parse);
        let mut delta = choice.delta;
        out.reasoning = delta.as_mut().and_then(MessageBody::take_reasoning);
        if let Some(calls) = delta.as_mut().and_then(|d| d.tool_calls.take()) {
            out.tool_calls = calls
                .into_iter()
                .enumerate()
                .map(|(i, c)| c.delta(i))
                .collect();
        }
        // Role-only and empty deltas carry no text.
        out.text = delta
            .and_then(|d| d.content)
            .or(choice.text)
            .filter(|c| !c.is_empty());
    }
    Ok(Parsed::Deltas(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_only_and_empty_deltas_carry_no_text() {
        let role = r#"{"choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}"#;
        assert!(matches!(
            parse_event(role),
            Ok(Parsed::Deltas(Deltas {
                text: None,
                usage: None,
                finish: None,
                reasoning: None,
                ..
            }))
        ));
        let empty = r#"{"choices":[{"delta":{"content":""}}]}"#;
        assert!(matches!(
            parse_event(empty),
            Ok(Parsed::Deltas(Deltas {
                text: None,
                usage: None,
                finish: None,
                reasoning: None,
                ..
            }))
        ));
    }

    #[test]
    fn text_usage_and_done_are_recognised() {
        let text = r#"{"choices":[{"delta":{"content":" world"}}]}"#;
        match parse_event(text) {
            Ok(Parsed::Deltas(Deltas {
                text: Some(t),
                usage: None,
                ..
            })) => assert_eq!(t, " world"),
            _ => panic!("expected text"),
        }
        let usage =
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;
        match parse_event(usage) {
            Ok(Parsed::Deltas(Deltas {
                text: None,
                usage: Some(u),
                ..
            })) => assert_eq!(u.total_tokens, 5),
            _ => panic!("expected usage"),
        }
        assert!(matches!(parse_event(" [DONE] "), Ok(Parsed::Done)));
    }

    #[test]
    fn error_payloads_become_api_errors() {
        let e = parse_event(r#"{"error":{"message":"overloaded","type":"server_error"}}"#);
        assert!(matches!(e, Err(LlmError::Api(m)) if m == "overloaded"));
        let e = parse_event(r#"{"error":"boom"}"#);
        assert!(matches!(e, Err(LlmError::Api(m)) if m == "boom"));
        assert!(matches!(
            parse_event("{not json"),
            Err(LlmError::Protocol(_))
        ));
    }

    #[test]
    fn reasoning_content_is_its_own_delta() {
        let r = r#"{"choices":[{"delta":{"content":null,"reasoning_content":"Let me think"}}]}"#;
        assert_eq!(
            parse_event(r).unwrap(),
            Parsed::Deltas(Deltas {
                reasoning: Some("Let me think".into()),
                ..Deltas::default()
            })
        );
        let whole = parse_completion(
            br#"{"choices":[{"message":{"content":"4","reasoning_content":"2+2"}}]}"#,
        )
        .unwrap();
        assert_eq!(
            (whole.text.as_str(), whole.reasoning.as_deref()),
            ("4", Some("2+2"))
        );
    }

    #[test]
    fn tool_calls_are_read_whole_and_in_pieces() {
        let whole = parse_completion(
            br#"{"choices":[{"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Paris\"}"}}]},"finish_reason":"tool_calls"}]}"#,
        )
        .unwrap();
        assert_eq!(whole.text, "");
        assert_eq!(whole.finish, Some(Finish::ToolCalls));
        assert_eq!(whole.tool_calls[0].name, "weather");
        assert_eq!(whole.tool_calls[0].arguments, r#"{"city":"Paris"}"#);
        let piece = r#"{"choices":[{"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"ci"}}]}}]}"#;
        let Ok(Parsed::Deltas(d)) = parse_event(piece) else {
            panic!("deltas")
        };
        assert_eq!(
            d.tool_calls,
            vec![ToolCallDelta {
                index: 1,
                id: None,
                name: None,
                arguments: "{\"ci".into()
            }]
        );
    }

    #[test]
    fn completion_needs_content() {
        let ok =
            parse_completion(br#"{"choices":[{"message":{"role":"assistant","content":"No"}}]}"#);
        assert_eq!(ok.map(|c| c.text).ok().as_deref(), Some("No"));
        assert!(parse_completion(br#"{"choices":[]}"#).is_err());
    }
}

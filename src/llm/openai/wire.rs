//! The OpenAI chat-completions wire format: whole answers, stream events and
//! error payloads.

use serde::Deserialize;

use crate::llm::{Completion, Finish, LlmError, Usage};

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
    let text = choice
        .and_then(|c| c.message.and_then(|m| m.content).or(c.text))
        .ok_or_else(|| LlmError::Protocol("completion has no choices[0].message.content".into()))?;
    Ok(Completion {
        text,
        usage: body.usage,
        finish,
    })
}

/// What one SSE `data:` payload of a chat-completions stream means.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Text (absent for role-only and empty deltas), usage, and the
    /// `finish_reason` when one was set.
    Deltas(Option<String>, Option<Usage>, Option<Finish>),
    /// `data: [DONE]`.
    Done,
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
    let mut text = None;
    let mut finished = None;
    if let Some(choice) = chunk.choices.into_iter().next() {
        finished = choice.finish_reason.as_deref().map(Finish::parse);
        // Role-only and empty deltas carry no text.
        text = choice
            .delta
            .and_then(|d| d.content)
            .or(choice.text)
            .filter(|c| !c.is_empty());
    }
    Ok(Parsed::Deltas(text, chunk.usage, finished))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_only_and_empty_deltas_carry_no_text() {
        let role = r#"{"choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}"#;
        assert!(matches!(
            parse_event(role),
            Ok(Parsed::Deltas(None, None, None))
        ));
        let empty = r#"{"choices":[{"delta":{"content":""}}]}"#;
        assert!(matches!(
            parse_event(empty),
            Ok(Parsed::Deltas(None, None, None))
        ));
    }

    #[test]
    fn text_usage_and_done_are_recognised() {
        let text = r#"{"choices":[{"delta":{"content":" world"}}]}"#;
        match parse_event(text) {
            Ok(Parsed::Deltas(Some(t), None, None)) => assert_eq!(t, " world"),
            _ => panic!("expected text"),
        }
        let usage =
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;
        match parse_event(usage) {
            Ok(Parsed::Deltas(None, Some(u), None)) => assert_eq!(u.total_tokens, 5),
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
    fn completion_needs_content() {
        let ok =
            parse_completion(br#"{"choices":[{"message":{"role":"assistant","content":"No"}}]}"#);
        assert_eq!(ok.map(|c| c.text).ok().as_deref(), Some("No"));
        assert!(parse_completion(br#"{"choices":[]}"#).is_err());
    }
}

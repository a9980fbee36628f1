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
    /// The reasoning trace of reasoning models (DeepSeek, vLLM, NIM).
    reasoning_content: Option<String>,
    /// The same, as some servers name it (vLLM's newer field, OpenRouter).
    reasoning: Option<String>,
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
    if let Some(c) = choice {
        if let Some(mut m) = c.message {
            reasoning = m.take_reasoning();
            content = m.content;
        }
        text = c.text;
    }
    let text = content
        .or(text)
        // A reasoning model may answer with the trace and no content.
        .or_else(|| reasoning.is_some().then(String::new))
        .ok_or_else(|| LlmError::Protocol("completion has no choices[0].message.content".into()))?;
    Ok(Completion {
        text,
        usage: body.usage,
        finish,
        reasoning,
    })
}

/// What one SSE `data:` payload of a chat-completions stream means.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Text (absent for role-only and empty deltas), usage, the
    /// `finish_reason` when one was set, and a piece of reasoning trace.
    Deltas(
        Option<String>,
        Option<Usage>,
        Option<Finish>,
        Option<String>,
    ),
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
    let mut reasoning = None;
    if let Some(choice) = chunk.choices.into_iter().next() {
        finished = choice.finish_reason.as_deref().map(Finish::parse);
        let mut delta = choice.delta;
        reasoning = delta.as_mut().and_then(MessageBody::take_reasoning);
        // Role-only and empty deltas carry no text.
        text = delta
            .and_then(|d| d.content)
            .or(choice.text)
            .filter(|c| !c.is_empty());
    }
    Ok(Parsed::Deltas(text, chunk.usage, finished, reasoning))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_only_and_empty_deltas_carry_no_text() {
        let role = r#"{"choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}"#;
        assert!(matches!(
            parse_event(role),
            Ok(Parsed::Deltas(None, None, None, None))
        ));
        let empty = r#"{"choices":[{"delta":{"content":""}}]}"#;
        assert!(matches!(
            parse_event(empty),
            Ok(Parsed::Deltas(None, None, None, None))
        ));
    }

    #[test]
    fn text_usage_and_done_are_recognised() {
        let text = r#"{"choices":[{"delta":{"content":" world"}}]}"#;
        match parse_event(text) {
            Ok(Parsed::Deltas(Some(t), None, None, None)) => assert_eq!(t, " world"),
            _ => panic!("expected text"),
        }
        let usage =
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;
        match parse_event(usage) {
            Ok(Parsed::Deltas(None, Some(u), None, None)) => assert_eq!(u.total_tokens, 5),
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
            Parsed::Deltas(None, None, None, Some("Let me think".into()))
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
    fn completion_needs_content() {
        let ok =
            parse_completion(br#"{"choices":[{"message":{"role":"assistant","content":"No"}}]}"#);
        assert_eq!(ok.map(|c| c.text).ok().as_deref(), Some("No"));
        assert!(parse_completion(br#"{"choices":[]}"#).is_err());
    }
}

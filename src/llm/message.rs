//! Chat messages: who wrote them, their text, and what else they carry
//! (tool calls, a tool result's call id, content parts), in OpenAI's form.

use std::fmt;

use super::ToolCall;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    /// A tool's result, answering one of the model's tool calls.
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }

    /// The role a wire name means (`user`, `assistant`, `system`).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "system" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            _ => return None,
        })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One chat message sent to a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: Role,
    /// The text (of a message with content parts: its text parts).
    pub content: String,
    /// Tool calls, a tool result's call id, content parts: boxed, as most
    /// messages have none.
    pub extra: Option<Box<MessageExtra>>,
}

/// What a message may carry besides its role and text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageExtra {
    /// The calls an assistant message asked for.
    pub tool_calls: Vec<ToolCall>,
    /// The call a `tool` message answers.
    pub tool_call_id: Option<String>,
    /// The tool's (or the speaker's) name.
    pub name: Option<String>,
    /// OpenAI content parts (`text`, `image_url`, `input_audio`), sent on
    /// as given to a model that takes them.
    pub parts: Option<Vec<serde_json::Value>>,
}

impl serde::Serialize for ChatMessage {
    /// OpenAI's message form: `role`, `content` (the parts when there are
    /// some; `null` for a tool-calling turn without text), `tool_calls`,
    /// `tool_call_id`, `name`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("role", &self.role)?;
        let extra = self.extra.as_deref();
        match extra {
            Some(MessageExtra {
                parts: Some(parts), ..
            }) => map.serialize_entry("content", parts)?,
            Some(e) if !e.tool_calls.is_empty() && self.content.is_empty() => {
                map.serialize_entry("content", &())?
            }
            _ => map.serialize_entry("content", &self.content)?,
        }
        if let Some(e) = extra {
            if !e.tool_calls.is_empty() {
                map.serialize_entry("tool_calls", &e.tool_calls)?;
            }
            if let Some(id) = &e.tool_call_id {
                map.serialize_entry("tool_call_id", id)?;
            }
            if let Some(name) = &e.name {
                map.serialize_entry("name", name)?;
            }
        }
        map.end()
    }
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        ChatMessage {
            role,
            content: content.into(),
            extra: None,
        }
    }

    /// The calls of an assistant message.
    pub fn tool_calls(&self) -> &[ToolCall] {
        self.extra.as_ref().map_or(&[], |e| &e.tool_calls)
    }

    /// Replaces the text (a rail rewrote it): a message with content parts
    /// keeps its other parts after one text part of the new text.
    pub fn set_text(&mut self, text: String) {
        if let Some(parts) = self.extra.as_mut().and_then(|e| e.parts.as_mut()) {
            parts.retain(|p| p.get("type").and_then(serde_json::Value::as_str) != Some("text"));
            parts.insert(0, serde_json::json!({"type": "text", "text": text}));
        }
        self.content = text;
    }

    /// The content parts, when the message has them.
    pub fn parts(&self) -> Option<&[serde_json::Value]> {
        self.extra.as_ref().and_then(|e| e.parts.as_deref())
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }

    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }
}

/// The text of the last user message (empty without one).
pub fn last_user_text(messages: &[ChatMessage]) -> &str {
    messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map_or("", |m| m.content.as_str())
}

//! Tool calling: the tools a request offers the model (forwarded as the
//! caller wrote them), the calls the model asks for, whole or streamed in
//! pieces, and their bounded assembly.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use super::LlmError;

/// The most tool calls one answer may ask for.
pub const MAX_TOOL_CALLS: usize = 128;
/// The most bytes of names, ids and arguments one answer's tool calls may have.
pub const MAX_TOOL_CALL_BYTES: usize = 1 << 20;

/// The tools a request offers the main model: OpenAI's `tools`,
/// `tool_choice` and `parallel_tool_calls`, kept as JSON and sent on
/// unchanged.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tools {
    /// The `tools` array (`{"type": "function", "function": {...}}`).
    pub tools: Vec<Value>,
    /// `"auto"`, `"none"`, `"required"`, or `{"type": "function", ...}`.
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
}

impl Tools {
    /// The function names the request offers.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tools
            .iter()
            .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
    }
}

/// One call the model asks for (OpenAI's `tool_calls[i]`, a function).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments, as the model wrote them (JSON text).
    pub arguments: String,
}

impl ToolCall {
    /// NeMo's form of the call, as its tool rails see it in `$tool_calls`:
    /// `{"id", "name", "args", "type": "tool_call"}`, with the arguments
    /// parsed (a model's non-JSON arguments are kept as the text).
    pub fn nemo(&self) -> Value {
        let args = serde_json::from_str::<Value>(&self.arguments)
            .unwrap_or_else(|_| Value::String(self.arguments.clone()));
        serde_json::json!({
            "id": self.id,
            "name": self.name,
            "args": args,
            "type": "tool_call",
        })
    }
}

impl Serialize for ToolCall {
    /// OpenAI's wire form: `{"id", "type": "function", "function": {"name", "arguments"}}`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Function<'a>(&'a ToolCall);
        impl Serialize for Function<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut map = s.serialize_map(Some(2))?;
                map.serialize_entry("name", &self.0.name)?;
                map.serialize_entry("arguments", &self.0.arguments)?;
                map.end()
            }
        }
        let mut map = s.serialize_map(Some(3))?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("type", "function")?;
        map.serialize_entry("function", &Function(self))?;
        map.end()
    }
}

/// A piece of a streamed tool call (OpenAI's `delta.tool_calls[i]`): the
/// first piece of a call has its id and name, the rest add to its arguments.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ToolCallDelta {
    /// Which call of the answer this piece belongs to.
    pub index: u32,
    pub id: Option<String>,
    pub name: Option<String>,
    pub arguments: String,
}

impl ToolCallDelta {
    /// A whole call as one piece.
    pub fn whole(index: u32, call: &ToolCall) -> Self {
        ToolCallDelta {
            index,
            id: Some(call.id.clone()),
            name: Some(call.name.clone()),
            arguments: call.arguments.clone(),
        }
    }
}

/// Puts streamed pieces together into calls, within [`MAX_TOOL_CALLS`] and
/// [`MAX_TOOL_CALL_BYTES`].
#[derive(Debug, Default)]
pub struct ToolCallBuilder {
    calls: Vec<ToolCall>,
    bytes: usize,
}

impl ToolCallBuilder {
    /// Adds a piece; `Err` when the calls grow past the bounds. A piece with
    /// a new id on an index that has another call's id starts a call of its
    /// own (servers that leave out `index`).
    pub fn push(&mut self, piece: &ToolCallDelta) -> Result<(), LlmError> {
        let mut index = usize::try_from(piece.index).unwrap_or(usize::MAX);
        let taken = self
            .calls
            .get(index)
            .is_some_and(|c| !c.id.is_empty() && piece.id.as_ref().is_some_and(|id| *id != c.id));
        if taken {
            index = self.calls.len();
        }
        if index >= MAX_TOOL_CALLS {
            return Err(LlmError::Protocol(format!(
                "tool call index {index}: an answer may ask for at most {MAX_TOOL_CALLS} tool calls"
            )));
        }
        // Every piece costs something, so endless empty pieces are bounded too.
        let size = 32
            + piece.arguments.len()
            + piece.id.as_ref().map_or(0, String::len)
            + piece.name.as_ref().map_or(0, String::len);
        self.bytes += size;
        if self.bytes > MAX_TOOL_CALL_BYTES {
            return Err(LlmError::Protocol(format!(
                "the answer's tool calls are over {MAX_TOOL_CALL_BYTES} bytes"
            )));
        }
        if self.calls.len() <= index {
            self.calls.resize_with(index + 1, ToolCall::default);
        }
        let call = &mut self.calls[index];
        if let Some(id) = &piece.id {
            call.id.clone_from(id);
        }
        if let Some(name) = &piece.name {
            call.name.push_str(name);
        }
        call.arguments.push_str(&piece.arguments);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// The calls so far (those the model named).
    pub fn calls(&self) -> impl Iterator<Item = &ToolCall> {
        self.calls.iter().filter(|c| !c.name.is_empty())
    }

    /// The calls, in index order (gaps the model left out dropped).
    pub fn finish(self) -> Vec<ToolCall> {
        self.calls
            .into_iter()
            .filter(|c| !c.name.is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_make_calls_in_index_order() {
        let mut b = ToolCallBuilder::default();
        let piece = |index, id: Option<&str>, name: Option<&str>, args: &str| ToolCallDelta {
            index,
            id: id.map(str::to_string),
            name: name.map(str::to_string),
            arguments: args.into(),
        };
        b.push(&piece(0, Some("call_a"), Some("weather"), ""))
            .unwrap();
        b.push(&piece(1, Some("call_b"), Some("time"), "{}"))
            .unwrap();
        b.push(&piece(0, None, None, "{\"city\":")).unwrap();
        b.push(&piece(0, None, None, "\"Paris\"}")).unwrap();
        // A server that leaves `index` out sends the next call on index 0.
        b.push(&piece(0, Some("call_c"), Some("news"), "{}"))
            .unwrap();
        let calls = b.finish();
        assert_eq!(calls.len(), 3);
        assert_eq!(
            (calls[2].id.as_str(), calls[2].name.as_str()),
            ("call_c", "news")
        );
        assert_eq!(calls[0].arguments, "{\"city\":\"Paris\"}");
        assert_eq!(
            calls[0].nemo(),
            serde_json::json!({"id": "call_a", "name": "weather", "args": {"city": "Paris"}, "type": "tool_call"})
        );
        assert_eq!(
            serde_json::to_value(&calls[1]).unwrap(),
            serde_json::json!({"id": "call_b", "type": "function", "function": {"name": "time", "arguments": "{}"}})
        );
    }

    #[test]
    fn the_builder_is_bounded() {
        let mut b = ToolCallBuilder::default();
        let far = ToolCallDelta {
            index: 100_000,
            ..ToolCallDelta::default()
        };
        assert!(b.push(&far).is_err());
        let big = ToolCallDelta {
            arguments: "x".repeat(MAX_TOOL_CALL_BYTES + 1),
            ..ToolCallDelta::default()
        };
        assert!(b.push(&big).is_err());
        let mut b = ToolCallBuilder::default();
        let empty = ToolCallDelta::default();
        assert!(
            (0..1_000_000).any(|_| b.push(&empty).is_err()),
            "empty pieces are bounded"
        );
    }
}

//! The messages of a chat-completions body, in OpenAI's forms: text or
//! content parts (`text`, `image_url`, `input_audio`), an assistant's
//! `tool_calls`, a `tool` message's result; NeMo's `context` messages; and
//! the body's `tools`.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::{
    engine,
    error::Error,
    llm::{ChatMessage, MessageExtra, Role, ToolCall, Tools},
};

/// The most tools one request may offer.
const MAX_TOOLS: usize = 128;
/// The most content parts of one message.
const MAX_PARTS: usize = 64;

/// A message in either body shape.
#[derive(Debug, Deserialize)]
pub(super) struct InMessage {
    role: String,
    #[serde(default)]
    content: Content,
    #[serde(default)]
    tool_calls: Option<Vec<InToolCall>>,
    tool_call_id: Option<String>,
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct InToolCall {
    id: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    function: InFunction,
}

#[derive(Debug, Deserialize)]
struct InFunction {
    name: String,
    #[serde(default)]
    arguments: String,
}

/// OpenAI allows content as a string or a list of typed parts; NeMo's
/// `context` messages carry an object of variables.
#[derive(Debug, Default, Deserialize)]
#[serde(
    untagged,
    expecting = "a string, a list of content parts ({\"type\": \"text\", \"text\": ...}, image_url, input_audio), or (role `context`) an object"
)]
enum Content {
    #[default]
    Empty,
    Text(String),
    Parts(Vec<serde_json::Map<String, Value>>),
    Object(serde_json::Map<String, Value>),
}

fn bad(message: String, param: String) -> Error {
    Error::InvalidBody {
        param: Some(param),
        message,
    }
}

/// The text of content parts (their `text` parts joined by a space, as
/// NeMo joins them), and the parts to send on when there are others.
fn parts(
    i: usize,
    parts: Vec<serde_json::Map<String, Value>>,
) -> Result<(String, Option<Vec<Value>>), Error> {
    let param = || format!("messages[{i}].content");
    if parts.len() > MAX_PARTS {
        return Err(bad(
            format!("messages[{i}].content: at most {MAX_PARTS} parts"),
            param(),
        ));
    }
    let mut texts = Vec::new();
    let mut other = false;
    for (j, p) in parts.iter().enumerate() {
        match p.get("type").and_then(Value::as_str) {
            Some("text") => match p.get("text").and_then(Value::as_str) {
                Some(t) => texts.push(t),
                None => {
                    return Err(bad(
                        format!("messages[{i}].content[{j}]: a text part needs `text`"),
                        param(),
                    ));
                }
            },
            Some(kind @ ("image_url" | "input_audio")) => {
                if !p.get(kind).is_some_and(Value::is_object) {
                    return Err(bad(
                        format!(
                            "messages[{i}].content[{j}]: an `{kind}` part needs an `{kind}` object"
                        ),
                        param(),
                    ));
                }
                other = true;
            }
            kind => {
                return Err(bad(
                    format!(
                        "messages[{i}].content[{j}]: parts are `text`, `image_url` or `input_audio`, not `{}`",
                        crate::error::echo(kind.unwrap_or("(none)"))
                    ),
                    param(),
                ));
            }
        }
    }
    let text = texts.join(" ");
    let kept = other.then(|| parts.into_iter().map(Value::Object).collect());
    Ok((text, kept))
}

/// The chat messages, and the variables of NeMo's `context` messages (the
/// body's `context` first, as NeMo's server puts it).
pub(super) fn messages(
    messages: Vec<InMessage>,
    top: Option<Value>,
) -> Result<(Vec<ChatMessage>, Option<crate::dialog::Vars>), Error> {
    let mut out = Vec::with_capacity(messages.len());
    let mut context = None;
    if let Some(top) = top.filter(|v| !v.is_null()) {
        engine::merge_context(&mut context, top, 0)
            .map_err(|_| bad("context: an object of variables".into(), "context".into()))?;
    }
    for (i, m) in messages.into_iter().enumerate() {
        if m.role == "context" {
            let value = match m.content {
                Content::Object(o) => Value::Object(o),
                _ => Value::Null,
            };
            engine::merge_context(&mut context, value, i)?;
            continue;
        }
        out.push(message(i, m)?);
    }
    Ok((out, context))
}

fn message(i: usize, m: InMessage) -> Result<ChatMessage, Error> {
    let (content, kept) = match m.content {
        Content::Empty => (String::new(), None),
        Content::Object(_) => {
            return Err(Error::InvalidRequest {
                field: "messages.content",
                message: format!(
                    "messages[{i}].content: an object is the content of a `context` message only"
                ),
            });
        }
        Content::Text(t) => (t, None),
        Content::Parts(p) => parts(i, p)?,
    };
    // OpenAI's newer name for the system role.
    let role = match m.role.as_str() {
        "developer" => Some(Role::System),
        other => Role::parse(other),
    }
    .ok_or_else(|| Error::InvalidRequest {
        field: "messages.role",
        message: format!(
            "messages[{i}].role is `{}`; expected `user`, `assistant`, `system`, `tool` or `context`",
            crate::error::echo(&m.role)
        ),
    })?;
    let calls = m.tool_calls.unwrap_or_default();
    if !calls.is_empty() && role != Role::Assistant {
        return Err(bad(
            format!("messages[{i}].tool_calls: only an assistant message has tool calls"),
            format!("messages[{i}].tool_calls"),
        ));
    }
    if role == Role::Tool && m.tool_call_id.is_none() {
        return Err(bad(
            format!("messages[{i}]: a tool message needs the `tool_call_id` it answers"),
            format!("messages[{i}].tool_call_id"),
        ));
    }
    let mut tool_calls = Vec::with_capacity(calls.len());
    for (j, c) in calls.into_iter().enumerate() {
        if c.kind.as_deref().is_some_and(|k| k != "function") {
            return Err(bad(
                format!("messages[{i}].tool_calls[{j}].type: only `function` calls are supported"),
                format!("messages[{i}].tool_calls[{j}].type"),
            ));
        }
        tool_calls.push(ToolCall {
            id: c.id,
            name: c.function.name,
            arguments: c.function.arguments,
        });
    }
    let mut message = ChatMessage::new(role, content);
    if !tool_calls.is_empty() || m.tool_call_id.is_some() || m.name.is_some() || kept.is_some() {
        message.extra = Some(Box::new(MessageExtra {
            tool_calls,
            tool_call_id: m.tool_call_id,
            name: m.name,
            parts: kept,
        }));
    }
    Ok(message)
}

/// The body's `tools`, `tool_choice` and `parallel_tool_calls`, checked for
/// their shape and kept as given.
pub(super) fn tools(
    tools: Option<Value>,
    tool_choice: Option<Value>,
    parallel: Option<bool>,
) -> Result<Option<Arc<Tools>>, Error> {
    let list = match tools {
        None | Some(Value::Null) => {
            if tool_choice.as_ref().is_some_and(|c| c != "none") {
                return Err(Error::invalid(
                    "tool_choice",
                    "there are no tools to choose from",
                ));
            }
            return Ok(None);
        }
        // OpenAI refuses an empty list; it offers nothing.
        Some(Value::Array(list)) if list.is_empty() => return Ok(None),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(Error::invalid("tools", "a list of tools")),
    };
    if list.len() > MAX_TOOLS {
        return Err(Error::invalid(
            "tools",
            format!("at most {MAX_TOOLS} tools"),
        ));
    }
    for (i, t) in list.iter().enumerate() {
        let named = t.get("type").and_then(Value::as_str) == Some("function")
            && t.pointer("/function/name").is_some_and(Value::is_string);
        if !named {
            return Err(Error::invalid(
                "tools",
                format!(
                    "tools[{i}]: a tool is {{\"type\": \"function\", \"function\": {{\"name\": …}}}}"
                ),
            ));
        }
    }
    let choice_ok = match &tool_choice {
        None => true,
        Some(Value::String(s)) => matches!(s.as_str(), "auto" | "none" | "required"),
        Some(Value::Object(o)) => o.get("type").and_then(Value::as_str) == Some("function"),
        Some(_) => false,
    };
    if !choice_ok {
        return Err(Error::invalid(
            "tool_choice",
            "`auto`, `none`, `required`, or {\"type\": \"function\", \"function\": {\"name\": …}}",
        ));
    }
    Ok(Some(Arc::new(Tools {
        tools: list,
        tool_choice,
        parallel_tool_calls: parallel,
    })))
}

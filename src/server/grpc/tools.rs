//! Tool calling on the gRPC wire: typed tools, tool choices and calls ↔
//! OpenAI's JSON forms the engine forwards.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::{
    error::Error,
    llm::{MessageExtra, ToolCall, ToolCallDelta, Tools},
    pb,
};

/// The most tools one request may offer.
const MAX_TOOLS: usize = 128;

/// The request's tools in OpenAI's form (`None` when it offers none).
pub(super) fn tools(
    tools: Vec<pb::Tool>,
    choice: Option<pb::ToolChoice>,
    parallel: Option<bool>,
) -> Result<Option<Arc<Tools>>, Error> {
    if tools.is_empty() {
        if choice.is_some() || parallel.is_some() {
            return Err(Error::invalid(
                "tool_choice",
                "tool_choice and parallel_tool_calls need tools",
            ));
        }
        return Ok(None);
    }
    if tools.len() > MAX_TOOLS {
        return Err(Error::invalid(
            "tools",
            format!("at most {MAX_TOOLS} tools, not {}", tools.len()),
        ));
    }
    let mut out = Vec::with_capacity(tools.len());
    for (i, t) in tools.into_iter().enumerate() {
        out.push(tool(i, t)?);
    }
    let tool_choice = match choice.and_then(|c| c.choice) {
        None => None,
        Some(pb::tool_choice::Choice::Mode(m)) => match m.as_str() {
            "auto" | "none" | "required" => Some(Value::String(m)),
            other => {
                return Err(Error::invalid(
                    "tool_choice.mode",
                    format!(
                        "`{}`: expected auto, none or required",
                        crate::error::echo(other)
                    ),
                ));
            }
        },
        Some(pb::tool_choice::Choice::Function(name)) => {
            Some(json!({"type": "function", "function": {"name": name}}))
        }
    };
    Ok(Some(Arc::new(Tools {
        tools: out,
        tool_choice,
        parallel_tool_calls: parallel,
    })))
}

fn tool(i: usize, t: pb::Tool) -> Result<Value, Error> {
    let pb::Tool {
        name,
        description,
        parameters_json,
        strict,
    } = t;
    if name.is_empty() {
        return Err(Error::invalid(
            "tools.name",
            format!("tools[{i}].name is empty"),
        ));
    }
    let mut function = json!({ "name": name });
    if !description.is_empty() {
        function["description"] = Value::String(description);
    }
    if !parameters_json.is_empty() {
        let schema: Value = serde_json::from_str(&parameters_json).map_err(|e| {
            Error::invalid(
                "tools.parameters_json",
                format!("tools[{i}].parameters_json is not JSON: {e}"),
            )
        })?;
        if !schema.is_object() {
            return Err(Error::invalid(
                "tools.parameters_json",
                format!("tools[{i}].parameters_json is not a JSON Schema object"),
            ));
        }
        function["parameters"] = schema;
    }
    if let Some(s) = strict {
        function["strict"] = Value::Bool(s);
    }
    Ok(json!({"type": "function", "function": function}))
}

/// What a message carries beyond its role and text (`None`: nothing).
pub(super) fn extra(
    calls: Vec<pb::ToolCall>,
    tool_call_id: String,
    name: String,
) -> Option<Box<MessageExtra>> {
    if calls.is_empty() && tool_call_id.is_empty() && name.is_empty() {
        return None;
    }
    Some(Box::new(MessageExtra {
        tool_calls: calls
            .into_iter()
            .map(|c| ToolCall {
                id: c.id,
                name: c.name,
                arguments: c.arguments,
            })
            .collect(),
        tool_call_id: (!tool_call_id.is_empty()).then_some(tool_call_id),
        name: (!name.is_empty()).then_some(name),
        parts: None,
    }))
}

pub(super) fn call_pb(c: ToolCall) -> pb::ToolCall {
    pb::ToolCall {
        id: c.id,
        name: c.name,
        arguments: c.arguments,
    }
}

pub(super) fn delta_pb(d: ToolCallDelta) -> pb::ToolCallDelta {
    pb::ToolCallDelta {
        index: d.index,
        id: d.id.unwrap_or_default(),
        name: d.name.unwrap_or_default(),
        arguments: d.arguments,
    }
}

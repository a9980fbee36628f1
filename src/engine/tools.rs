//! Tool calls in a turn, as NeMo's execution rails guard them: the tool
//! input rails (`rails.tool_input`) on the tool results the caller sends
//! back, before the model sees them; the tool output rails
//! (`rails.tool_output`) on the calls the model asks for, before the caller
//! runs them. Both are the config's own Colang flows; a tool input rail
//! sees `$tool_message`, `$tool_name` and `$tool_call_id`, a tool output
//! rail `$tool_calls` (NeMo's `{id, name, args, type}` form).

use std::{collections::BTreeMap, time::Instant};

use serde_json::Value;

use super::{Inner, RailRecord, Request, Violation, run::Run, run::run_rails};
use crate::{
    error::Error,
    llm::{CallLog, ChatMessage, Role, ToolCall},
    rails::{RailInput, RailSet, Stage},
};

/// Refuses what the answerer cannot pass on: tools, tool messages or
/// content parts (an image), for a dialog or a model whose API streamguard
/// does not send them to.
pub(super) fn check_request(inner: &Inner, request: &Request) -> Result<(), Error> {
    let tool_messages = request
        .messages
        .iter()
        .any(|m| m.role == Role::Tool || !m.tool_calls().is_empty());
    let parts = request.messages.iter().any(|m| m.parts().is_some());
    let (field, what) = match (request.tools.is_some(), tool_messages, parts) {
        (false, false, false) => return Ok(()),
        (true, _, _) => ("tools", "tool calls"),
        (false, true, _) => ("messages", "tool calls"),
        (false, false, true) => ("messages.content", "content parts other than text"),
    };
    let Err(why) = inner.answerer.tools() else {
        return Ok(());
    };
    Err(Error::invalid(
        field,
        format!("config `{}` cannot take {what}: {why}", inner.config.id()),
    ))
}

/// The tool results the model has not seen: the `tool` messages at the end.
fn fresh_results(messages: &[ChatMessage]) -> std::ops::Range<usize> {
    let start = messages
        .iter()
        .rposition(|m| m.role != Role::Tool)
        .map_or(0, |i| i + 1);
    start..messages.len()
}

/// The name of the tool a result answers: its own `name`, else that of
/// the call with its id.
fn tool_name(messages: &[ChatMessage], result: &ChatMessage) -> String {
    let extra = result.extra.as_deref();
    if let Some(name) = extra.and_then(|e| e.name.clone()) {
        return name;
    }
    let id = extra.and_then(|e| e.tool_call_id.as_deref());
    messages
        .iter()
        .rev()
        .flat_map(ChatMessage::tool_calls)
        .find(|c| Some(c.id.as_str()) == id)
        .map_or_else(|| "unknown".to_string(), |c| c.name.clone())
}

impl Run {
    /// Runs the tool input rails on each fresh tool result, in order (a
    /// rewrite replaces the result); the first block wins.
    pub async fn tool_input_check(
        &mut self,
        messages: &mut [ChatMessage],
        user_input: &str,
        context: Option<&BTreeMap<String, Value>>,
    ) -> Result<Option<Violation>, Error> {
        if self.tool_input.is_empty() {
            return Ok(None);
        }
        let started = Instant::now();
        let rails = std::mem::take(&mut self.tool_input);
        let parallel = self.tool_parallel.0;
        let mut found = None;
        for i in fresh_results(messages) {
            let name = tool_name(messages, &messages[i]);
            let id = messages[i]
                .extra
                .as_ref()
                .and_then(|e| e.tool_call_id.clone())
                .unwrap_or_default();
            let mut vars = context.cloned().unwrap_or_default();
            vars.insert("tool_name".into(), Value::String(name.clone()));
            vars.insert("tool_call_id".into(), Value::String(id));
            let (calls, records) = self.log_parts();
            let (history, rest) = messages.split_at(i);
            let input = RailInput {
                media: &[],
                user_input,
                bot_response: Some(&rest[0].content),
                bot_thinking: None,
                history,
                calls,
                context: Some(&vars),
            };
            match run_rails(&rails, parallel, Stage::ToolInput, input, records).await {
                Ok((Some(mut v), _)) => {
                    v.tool = Some(name.clone());
                    v.reason = format!("the result of tool `{name}`: {}", v.reason);
                    found = Some(v);
                    break;
                }
                Ok((None, Some(text))) => {
                    self.rewritten.push((i, text.clone()));
                    messages[i].set_text(text);
                }
                Ok((None, None)) => {}
                Err(e) => {
                    self.tool_input = rails;
                    return Err(e);
                }
            }
        }
        self.tool_input = rails;
        self.timing.input_rails += started.elapsed();
        Ok(found)
    }

    /// Runs the tool output rails on the calls the model asked for.
    pub async fn tool_output_check(
        &mut self,
        calls: &[ToolCall],
        user_input: &str,
        context: Option<&BTreeMap<String, Value>>,
    ) -> Result<Option<Violation>, Error> {
        if self.tool_output.is_empty() || calls.is_empty() {
            return Ok(None);
        }
        let started = Instant::now();
        let rails = self.tool_output.clone();
        let parallel = self.tool_parallel.1;
        let (log, records) = self.log_parts();
        let outcome = check_calls(
            (&rails, parallel),
            calls,
            (user_input, context),
            (log, records),
        )
        .await;
        self.timing.output_rails += started.elapsed();
        outcome
    }
}

/// The tool output rails' verdict on `calls`: a block names the tools.
pub(super) async fn check_calls(
    (rails, parallel): (&RailSet, bool),
    calls: &[ToolCall],
    (user_input, context): (&str, Option<&BTreeMap<String, Value>>),
    (log, records): (Option<&CallLog>, Option<&mut Vec<RailRecord>>),
) -> Result<Option<Violation>, Error> {
    let mut vars = context.cloned().unwrap_or_default();
    vars.insert(
        "tool_calls".into(),
        Value::Array(calls.iter().map(ToolCall::nemo).collect()),
    );
    let input = RailInput {
        media: &[],
        user_input,
        bot_response: None,
        bot_thinking: None,
        history: &[],
        calls: log,
        context: Some(&vars),
    };
    let outcome = run_rails(rails, parallel, Stage::ToolOutput, input, records).await;
    let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
    let names = names.join("`, `");
    Ok(outcome?.0.map(|mut v| {
        v.reason = format!("tool call `{names}`: {}", v.reason);
        v.tool = Some(names);
        v
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::MessageExtra;

    fn result(id: &str, text: &str) -> ChatMessage {
        let mut m = ChatMessage::new(Role::Tool, text);
        m.extra = Some(Box::new(MessageExtra {
            tool_call_id: Some(id.into()),
            ..MessageExtra::default()
        }));
        m
    }

    #[test]
    fn fresh_results_are_the_trailing_tool_messages_named_by_their_calls() {
        let mut asked = ChatMessage::assistant("");
        asked.extra = Some(Box::new(MessageExtra {
            tool_calls: vec![ToolCall {
                id: "c1".into(),
                name: "weather".into(),
                arguments: "{}".into(),
            }],
            ..MessageExtra::default()
        }));
        let messages = vec![
            ChatMessage::user("Weather?"),
            asked,
            result("c1", "sunny"),
            result("c9", "?"),
        ];
        assert_eq!(fresh_results(&messages), 2..4);
        assert_eq!(tool_name(&messages, &messages[2]), "weather");
        assert_eq!(tool_name(&messages, &messages[3]), "unknown");
        assert_eq!(fresh_results(&messages[..2]), 2..2);
    }
}

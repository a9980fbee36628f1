//! `execute` of a config's own Python actions on NeMo's actions server
//! (`nemoguardrails actions-server`, run in the config directory): `POST
//! {actions_server_url}/v1/actions/run` with `{"action_name",
//! "action_parameters"}`, answered `{"status": "success"|"failed",
//! "result"}`. NeMo sends only the explicit arguments; streamguard also sends
//! `context` (the flow's variables) to the actions whose Python signature in
//! the config's `*.py` takes it (or `**kwargs`), since NeMo runs those in its
//! own process instead.

use std::{collections::BTreeSet, path::PathBuf};

use futures_util::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::service::ServiceClient;
use crate::dialog::{Actions, Vars};

/// A config's actions on its actions server.
#[derive(Debug)]
pub struct ActionsServer {
    url: reqwest::Url,
    client: ServiceClient,
    /// The actions whose signature takes `context`.
    with_context: BTreeSet<String>,
}

impl ActionsServer {
    /// The actions server at `base` for a config whose Python files are `python`.
    pub fn connect(base: &reqwest::Url, python: &[PathBuf]) -> Result<Self, String> {
        let client =
            ServiceClient::new("actions server", "dialog", super::service::DEFAULT_TIMEOUT)?;
        Ok(Self::new(base, client, python))
    }

    pub fn new(base: &reqwest::Url, client: ServiceClient, python: &[PathBuf]) -> Self {
        // As NeMo joins it: the path replaces the base URL's.
        let url = base
            .join("/v1/actions/run")
            .unwrap_or_else(|_| base.clone());
        let mut with_context = BTreeSet::new();
        for file in python {
            if let Ok(text) = std::fs::read_to_string(file) {
                with_context.extend(context_takers(&text));
            }
        }
        ActionsServer {
            url,
            client,
            with_context,
        }
    }
}

/// The actions (functions decorated `@action`, by the decorator's `name=`,
/// else the function's) whose parameters include `context` or `**kwargs`.
pub fn context_takers(python: &str) -> Vec<String> {
    let mut out = Vec::new();
    // The name of the `@action` above the next `def` ("" without `name=`).
    let mut decorated: Option<String> = None;
    let mut offset = 0;
    for line in python.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with("@action") {
            decorated = Some(decorator_name(t).unwrap_or_default());
        } else if let Some(sig) = t
            .strip_prefix("async def ")
            .or_else(|| t.strip_prefix("def "))
        {
            let start = offset + line.len() - sig.len();
            let sig = &python[start..];
            let open = sig.find('(').unwrap_or(sig.len());
            let close = closing_paren(&sig[open..]).map_or(sig.len(), |e| open + e);
            let params = &sig[open..close];
            let takes = params.contains("**")
                || params
                    .split([',', '('])
                    .any(|p| p.split([':', '=', ')']).next().map(str::trim) == Some("context"));
            if let Some(name) = decorated.take() {
                let name = if name.is_empty() {
                    sig[..open].trim().to_string()
                } else {
                    name
                };
                if takes {
                    out.push(name);
                }
            }
        }
        offset += line.len();
    }
    out
}

/// `name="…"` of an `@action(…)` decorator.
fn decorator_name(text: &str) -> Option<String> {
    let line = text.lines().next()?;
    let at = line.find("name=")?;
    let value = line[at + 5..].trim_start();
    let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let end = value[1..].find(quote)?;
    Some(value[1..1 + end].to_string())
}

/// The offset just past the `)` closing the `(` at the start of `text`.
fn closing_paren(text: &str) -> Option<usize> {
    let mut depth = 0i32;
    for (i, c) in text.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

impl Actions for ActionsServer {
    fn run<'a>(
        &'a self,
        name: &'a str,
        mut args: Map<String, Value>,
        vars: &'a Vars,
    ) -> BoxFuture<'a, Result<Value, String>> {
        Box::pin(async move {
            if self.with_context.contains(name) {
                let context: Map<String, Value> =
                    vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                args.insert("context".into(), Value::Object(context));
            }
            let body = json!({"action_name": name, "action_parameters": args});
            let answer = self
                .client
                .post(&self.url, &body, None, &[])
                .await
                .map_err(|e| e.0)?;
            if answer.status.as_u16() == 500 {
                return Err("the actions server answered HTTP 500: NeMo's actions server fails when an \
                     action returns anything but a string (its `result` is a string); return a string"
                    .into());
            }
            let bytes = self
                .client
                .success(&self.url, answer, None)
                .map_err(|e| e.0)?;
            let answer: Value = self.client.json(&bytes).map_err(|e| e.0)?;
            match answer.get("status").and_then(Value::as_str) {
                Some("success") => Ok(answer.get("result").cloned().unwrap_or(Value::Null)),
                _ => Err(format!(
                    "the action failed on the actions server (NeMo answers \"I'm sorry, an internal \
                     error has occurred.\"); its log says why (is `{name}` in the actions.py of the \
                     directory it runs in?)"
                )),
            }
        })
    }
}

/// Why `execute action` needs an actions server, and how to start one.
pub fn needs_actions_server(action: &str) -> String {
    format!(
        "`execute {action}` runs a custom action, which streamguard runs on NeMo's actions server: \
         start it in the config directory (`nemoguardrails actions-server --port 8001`) and set \
         `actions_server_url: http://localhost:8001` (or `serve --actions-server-url`)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_that_take_the_context_are_read_from_python() {
        let py = "from nemoguardrails.actions import action\n\n\
            @action(is_system_action=True)\nasync def check_blocked_input_terms(duration: float = 0.0, context: Optional[dict] = None):\n    pass\n\n\
            @action(name=\"shout\")\nasync def loud(text: str):\n    pass\n\n\
            @action(name='Everything')\ndef every(**kwargs):\n    pass\n\n\
            def helper(x, y=(1, 2)):\n    pass\n";
        assert_eq!(
            context_takers(py),
            ["check_blocked_input_terms", "Everything"]
        );
    }
}

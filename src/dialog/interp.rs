//! Runs the procedural steps of a Colang 1.0 flow: variables, `execute`,
//! `if` / `while`, `bot …` (the messages it says are collected), `do`
//! subflows, `create event`, `stop` / `abort` / `return`. The context is a
//! map of JSON values (NeMo's context variables); actions are asked through
//! [`Actions`]. Every run has a budget of steps, subflow depth and said text,
//! so a loop in a config cannot run away.

use std::collections::BTreeMap;

use futures_util::future::BoxFuture;
use serde_json::{Map, Value};

use super::{Action, Dialog, Expr, Step, expr};
use crate::llm::{CallLog, ChatMessage};

/// The most steps one run may execute (`while` loops included).
const MAX_STEPS: usize = 10_000;
/// How deep `do` may nest.
const MAX_DEPTH: usize = 8;
/// The most text one run may say.
const MAX_SAID: usize = 1 << 20;

/// The context variables of a run.
pub type Vars = BTreeMap<String, Value>;

/// Runs `execute NAME(…)`: the action's result, or why it failed.
pub trait Actions: Send + Sync + std::fmt::Debug {
    fn run<'a>(
        &'a self,
        name: &'a str,
        args: Map<String, Value>,
        vars: &'a Vars,
    ) -> BoxFuture<'a, Result<Value, String>>;

    /// As [`Actions::run`], in a dialog turn with the conversation before
    /// the user's message and the request's judge-call log (NeMo's library
    /// actions see them as the rails do).
    fn run_in_turn<'a>(
        &'a self,
        name: &'a str,
        args: Map<String, Value>,
        vars: &'a Vars,
        turn: (&'a [ChatMessage], Option<&'a CallLog>),
    ) -> BoxFuture<'a, Result<Value, String>> {
        let _ = turn;
        self.run(name, args, vars)
    }
}

/// What a `bot …` step says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Said {
    /// A message (a `define bot` message rendered, or `bot $var`).
    Text(String),
    /// A bot intent of a dialog turn: its `define bot` message, or one to write.
    Intent(String),
}

/// No actions to run: a config without an actions server (its `execute`
/// steps are refused at load, so this never runs one).
#[derive(Debug)]
pub struct NoActions;

impl Actions for NoActions {
    fn run<'a>(
        &'a self,
        name: &'a str,
        _: Map<String, Value>,
        _: &'a Vars,
    ) -> BoxFuture<'a, Result<Value, String>> {
        Box::pin(async move { Err(format!("`{name}` has no actions server to run on")) })
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// At a `user …` or `when …` step: the flow waits for the next turn.
    Waiting,
    /// The last step ran.
    Finished,
    /// `stop`.
    Stopped,
    /// `abort`.
    Aborted,
    /// `return` (its value).
    Returned(Value),
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub end: End,
    /// What the `bot …` steps said, in order.
    pub said: Vec<Said>,
    /// The events `create event` made: name and arguments.
    pub events: Vec<(String, Map<String, Value>)>,
    /// Where a run that ended [`End::Waiting`] waits: the index of its
    /// top-level `user` step in the steps run (`None` inside a block).
    pub waiting: Option<usize>,
}

/// A run that could not go on: the line and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct RunError {
    pub line: usize,
    pub message: String,
}

enum Control {
    Next,
    End(End),
}

struct Run<'a> {
    dialog: &'a Dialog,
    actions: &'a dyn Actions,
    vars: &'a mut Vars,
    steps: usize,
    said: Vec<Said>,
    said_bytes: usize,
    /// A dialog turn: intents without a message are generated, and a
    /// `user` step ends the turn (a rail flow has neither).
    turn: bool,
    events: Vec<(String, Map<String, Value>)>,
}

/// Runs the steps of a rail flow over `vars` (which the run updates).
pub async fn run(
    dialog: &Dialog,
    actions: &dyn Actions,
    steps: &[Step],
    vars: &mut Vars,
) -> Result<Outcome, RunError> {
    run_with(dialog, actions, steps, vars, false).await
}

/// Runs the steps of a dialog flow for one turn, up to its next `user` step;
/// its `bot NAME` steps are said as [`Said::Intent`]s.
pub async fn run_turn(
    dialog: &Dialog,
    actions: &dyn Actions,
    steps: &[Step],
    vars: &mut Vars,
) -> Result<Outcome, RunError> {
    run_with(dialog, actions, steps, vars, true).await
}

async fn run_with(
    dialog: &Dialog,
    actions: &dyn Actions,
    steps: &[Step],
    vars: &mut Vars,
    turn: bool,
) -> Result<Outcome, RunError> {
    let mut r = Run {
        dialog,
        actions,
        vars,
        steps: 0,
        said: Vec::new(),
        said_bytes: 0,
        turn,
        events: Vec::new(),
    };
    let mut end = End::Finished;
    let mut waiting = None;
    for (i, step) in steps.iter().enumerate() {
        if let Control::End(e) = r.block(std::slice::from_ref(step), 0).await? {
            if e == End::Waiting && matches!(step, Step::User(_) | Step::Branch(_)) {
                waiting = Some(i);
            }
            end = e;
            break;
        }
    }
    Ok(Outcome {
        end,
        said: r.said,
        events: r.events,
        waiting,
    })
}

fn fail(line: usize, message: impl Into<String>) -> RunError {
    RunError {
        line,
        message: message.into(),
    }
}

/// `$name` and `$a.b` in a message, replaced by their values ("" when unset), as NeMo renders them.
pub fn render(message: &str, vars: &Vars) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let end = after
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(after.len());
        let path = after[..end].trim_end_matches('.');
        if path.is_empty() {
            out.push('$');
            rest = after;
            continue;
        }
        let mut parts = path.split('.');
        let mut value = parts.next().and_then(|v| vars.get(v)).cloned();
        for p in parts {
            value = value.and_then(|v| v.get(p).cloned());
        }
        if let Some(v) = value.filter(|v| !v.is_null()) {
            out.push_str(&expr::display(&v));
        }
        rest = &after[path.len()..];
    }
    out.push_str(rest);
    out
}

impl Run<'_> {
    fn eval(&self, e: &Expr, line: usize) -> Result<Value, RunError> {
        let vars = &*self.vars;
        e.eval(&|name| vars.get(name).cloned())
            .map_err(|m| fail(line, m))
    }

    fn say(&mut self, text: String, line: usize) -> Result<(), RunError> {
        self.said_bytes += text.len();
        if self.said_bytes > MAX_SAID {
            return Err(fail(
                line,
                format!("the flow said more than {MAX_SAID} bytes"),
            ));
        }
        self.said.push(Said::Text(text));
        Ok(())
    }

    fn args(&self, args: &[(String, Expr)], line: usize) -> Result<Map<String, Value>, RunError> {
        args.iter()
            .map(|(k, e)| Ok((k.clone(), self.eval(e, line)?)))
            .collect()
    }

    async fn execute(&mut self, a: &Action) -> Result<(), RunError> {
        let args = self.args(&a.args, a.line)?;
        let value = self
            .actions
            .run(&a.name, args, self.vars)
            .await
            .map_err(|m| fail(a.line, format!("`execute {}`: {m}", a.name)))?;
        if let Some(var) = &a.result {
            self.vars.insert(var.clone(), value);
        }
        Ok(())
    }

    fn block<'s>(
        &'s mut self,
        steps: &'s [Step],
        depth: usize,
    ) -> BoxFuture<'s, Result<Control, RunError>> {
        Box::pin(async move {
            for step in steps {
                self.steps += 1;
                if self.steps > MAX_STEPS {
                    return Err(fail(0, format!("the flow ran more than {MAX_STEPS} steps")));
                }
                if let Control::End(e) = self.step(step, depth).await? {
                    return Ok(Control::End(e));
                }
            }
            Ok(Control::Next)
        })
    }

    async fn repeat(
        &mut self,
        cond: &Expr,
        body: &[Step],
        line: usize,
        depth: usize,
    ) -> Result<Control, RunError> {
        while expr::truthy(&self.eval(cond, line)?) {
            self.steps += 1;
            if self.steps > MAX_STEPS {
                return Err(fail(
                    line,
                    format!("the flow ran more than {MAX_STEPS} steps"),
                ));
            }
            if let Control::End(e) = self.block(body, depth).await? {
                return Ok(Control::End(e));
            }
        }
        Ok(Control::Next)
    }

    async fn subflow(&mut self, name: &str, depth: usize) -> Result<Control, RunError> {
        if depth >= MAX_DEPTH {
            return Err(fail(
                0,
                format!("`do {name}` nests deeper than {MAX_DEPTH}"),
            ));
        }
        let dialog = self.dialog;
        let sub = dialog
            .flow_named(name)
            .ok_or_else(|| fail(0, format!("`do {name}`: no such subflow")))?;
        Ok(match self.block(&sub.steps, depth + 1).await? {
            Control::End(End::Returned(_)) | Control::Next => Control::Next,
            end => end,
        })
    }

    async fn step(&mut self, step: &Step, depth: usize) -> Result<Control, RunError> {
        match step {
            // A dialog turn says intents; its runtime renders or writes their messages.
            Step::Bot(name) if self.turn => self.said.push(Said::Intent(name.clone())),
            Step::Bot(name) => match self.dialog.bots.get(name).and_then(|m| m.first()) {
                Some(m) => {
                    let text = render(m, self.vars);
                    self.say(text, 0)?;
                }
                None => {
                    return Err(fail(
                        0,
                        format!("`bot {name}` has no `define bot {name}` message"),
                    ));
                }
            },
            Step::BotVar { var, line } => {
                let text = self.vars.get(var).map(expr::display).unwrap_or_default();
                self.say(text, *line)?;
            }
            Step::Set { var, value, line } => {
                let v = self.eval(value, *line)?;
                self.vars.insert(var.clone(), v);
            }
            Step::Execute(a) => self.execute(a).await?,
            Step::If { arms, line } => {
                for (cond, body) in arms {
                    let take = match cond {
                        Some(c) => expr::truthy(&self.eval(c, *line)?),
                        None => true,
                    };
                    if take {
                        return self.block(body, depth).await;
                    }
                }
            }
            Step::While { cond, body, line } => return self.repeat(cond, body, *line, depth).await,
            Step::Event { name, args, line } => {
                let args = self.args(args, *line)?;
                self.events.push((name.clone(), args));
            }
            Step::Do(name) => return self.subflow(name, depth).await,
            Step::Stop => return Ok(Control::End(End::Stopped)),
            Step::Abort => return Ok(Control::End(End::Aborted)),
            Step::Return(value) => {
                let v = match value {
                    Some(e) => self.eval(e, 0)?,
                    None => Value::Null,
                };
                return Ok(Control::End(End::Returned(v)));
            }
            Step::User(_) | Step::Branch(_) if self.turn => return Ok(Control::End(End::Waiting)),
            Step::User(_) | Step::Branch(_) => {}
        }
        Ok(Control::Next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialog::parse_into;
    use serde_json::json;

    #[derive(Debug)]
    struct Echo;

    impl Actions for Echo {
        fn run<'a>(
            &'a self,
            name: &'a str,
            args: Map<String, Value>,
            vars: &'a Vars,
        ) -> BoxFuture<'a, Result<Value, String>> {
            Box::pin(async move {
                match name {
                    "check_blocked_terms" => Ok(json!(
                        vars["user_message"]
                            .as_str()
                            .unwrap_or_default()
                            .contains("blocked term")
                    )),
                    "echo" => Ok(Value::Object(args)),
                    _ => Err("no such action".into()),
                }
            })
        }
    }

    fn dialog(text: &str) -> Dialog {
        let mut d = Dialog::default();
        parse_into(&mut d, std::path::Path::new("rails.co"), text).unwrap();
        d
    }

    async fn run_flow(d: &Dialog, flow: &str, user: &str) -> Result<(Outcome, Vars), RunError> {
        let mut vars = Vars::from([("user_message".to_string(), json!(user))]);
        let steps = d.subflows[flow].steps.clone();
        let out = run(d, &Echo, &steps, &mut vars).await?;
        Ok((out, vars))
    }

    #[tokio::test]
    async fn a_custom_rail_flow_runs_its_action_and_condition() {
        let d = dialog(
            "define bot inform cannot\n  \"I cannot talk about $topic.\"\n\n\
             define subflow check blocked terms\n  \"\"\"Blocks proprietary terms.\"\"\"\n  $topic = \"that\"\n  $is_blocked = execute check_blocked_terms\n  if $is_blocked:\n    bot inform cannot\n    stop\n  else if len($user_message) > 100\n    abort\n  $n = 0\n  while $n < 3\n    $n = $n + 1\n  $echo = execute echo(a=$n, b=\"x\" + \"y\")\n  create event Checked(count=$n)\n  return $echo.b\n",
        );
        let (out, _) = run_flow(&d, "check blocked terms", "a blocked term here")
            .await
            .unwrap();
        assert_eq!(out.end, End::Stopped);
        assert_eq!(out.said, [Said::Text("I cannot talk about that.".into())]);
        let (out, vars) = run_flow(&d, "check blocked terms", "fine").await.unwrap();
        assert_eq!(out.end, End::Returned(json!("xy")));
        assert_eq!(vars["n"], json!(3));
        assert_eq!(
            out.events,
            [(
                "Checked".to_string(),
                Map::from_iter([("count".to_string(), json!(3))])
            )]
        );
    }

    #[tokio::test]
    async fn runaway_and_failing_flows_stop_with_the_line() {
        let d = dialog(
            "define subflow spin\n  $n = 0\n  while True\n    $n = $n + 1\n\ndefine subflow broken\n  $x = execute nope\n",
        );
        let e = run_flow(&d, "spin", "").await.unwrap_err();
        assert!(e.message.contains("more than 10000 steps"), "{e}");
        let e = run_flow(&d, "broken", "").await.unwrap_err();
        assert_eq!(e.line, 7);
        assert!(e.message.contains("`execute nope`: no such action"), "{e}");
    }
}

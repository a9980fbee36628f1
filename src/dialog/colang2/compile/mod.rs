//! Colang 2 flow bodies into the operations a flow head steps through, as
//! NeMo expands them: `await X` is `start X` and a match on its
//! `Finished`; `start` of a flow waits for its `FlowStarted`; `when` starts
//! what its arms name and waits for the first to finish; `if` / `while`
//! are jumps. What is not run yet is refused with its line.

use std::collections::BTreeSet;

mod specs;

use super::super::expr::{self, Expr};
use super::syntax::{self, Group, Stmt, V};
use crate::config::{ConfigError, colang2::Line};
use specs::{dnf, leaf_ref};

/// The most operations one flow compiles to.
const MAX_OPS: usize = 20_000;
/// The most arms a match may expand to (an `and` of `or`s multiplies).
const MAX_ARMS: usize = 64;

/// What a wait accepts: an event, or an event of a referenced flow or action.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Pat {
    Event {
        name: String,
        args: Vec<(String, V)>,
    },
    Ref {
        var: String,
        member: String,
        args: Vec<(String, V)>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Leaf {
    pub pat: Pat,
    /// The variable the matched event goes into.
    pub bind: Option<String>,
}

/// One way a wait ends: all of `leaves` matched (in any order).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Arm {
    pub leaves: Vec<Leaf>,
    pub target: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Op {
    Match(Vec<Arm>),
    /// Emits an event (a `Start…Action` one starts the action).
    Send {
        name: String,
        args: Vec<(String, V)>,
        bind: Option<String>,
    },
    /// Emits `$var`'s `member` event (`send $ref.Stop()`).
    SendRef {
        var: String,
        member: String,
    },
    /// Starts a flow instance into `bind`; activated, an instance already
    /// running with the same arguments is reused and the next op skipped.
    StartFlow {
        id: String,
        args: Vec<(Option<String>, V)>,
        bind: String,
        activated: bool,
    },
    /// Goes to one of these at random.
    Random(Vec<usize>),
    Set(String, V),
    Global(String),
    /// Goes to the target unless the condition holds.
    Unless(Expr, usize),
    Jump(usize),
    /// Stops the flow or action `$var` refers to, if it still runs.
    Stop(String),
    Return(Option<V>),
    Abort,
    /// `start_new_flow_instance:`: an activated flow's next instance starts now.
    NewInstance,
    Log(V),
}

/// A flow's signature: `bot say $text`, `user said $text -> $transcript`.
#[derive(Debug, Clone)]
pub(super) struct Signature {
    pub name: String,
    pub params: Vec<(String, Option<V>)>,
    pub returns: Option<String>,
}

/// Reads `bot count to $number="10" -> $result`.
pub(super) fn signature(head: &str) -> Result<Signature, String> {
    let (head, returns) = match head.split_once("->") {
        Some((h, r)) => {
            let r = r.split(',').next().unwrap_or("").trim();
            let r = r.strip_prefix('$').unwrap_or(r);
            let r = r.split('=').next().unwrap_or(r).trim();
            (h, Some(r.to_string()))
        }
        None => (head, None),
    };
    let (name, params) = head.split_once(" $").unwrap_or((head, ""));
    let mut out = Vec::new();
    if !params.is_empty() {
        for p in syntax::split_top(&format!("${params}"), " ") {
            let p = p.trim().trim_start_matches('$');
            if p.is_empty() {
                continue;
            }
            match p.split_once('=') {
                Some((k, v)) => out.push((k.trim().to_string(), Some(syntax::value(v)?))),
                None => out.push((p.to_string(), None)),
            }
        }
    }
    Ok(Signature {
        name: name.trim().to_string(),
        params: out,
        returns,
    })
}

/// Compiles one flow body.
pub(super) struct Compiler<'d> {
    pub flows: &'d BTreeSet<String>,
    pub ops: Vec<Op>,
    hidden: usize,
    /// The line being compiled, and flows started that no config defines.
    line: usize,
    pub unknown: Vec<(usize, String)>,
    /// `while` loops: (start, the breaks to patch).
    loops: Vec<(usize, Vec<usize>)>,
    /// The group being started starts its flows one after the other.
    sequential: bool,
    /// The actions the flow starts, with their lines.
    pub actions: Vec<(usize, String)>,
}

type Err<'e> = &'e dyn Fn(String) -> ConfigError;

impl<'d> Compiler<'d> {
    pub fn new(flows: &'d BTreeSet<String>) -> Self {
        Compiler {
            flows,
            ops: Vec::new(),
            hidden: 0,
            line: 0,
            unknown: Vec::new(),
            loops: Vec::new(),
            sequential: false,
            actions: Vec::new(),
        }
    }

    pub fn body(&mut self, file: &std::path::Path, lines: &[Line<'_>]) -> Result<(), ConfigError> {
        let stmts = syntax::tree(lines);
        self.block(file, &stmts)
    }

    fn hide(&mut self) -> String {
        self.hidden += 1;
        format!("_ref_{}", self.hidden)
    }

    fn block(&mut self, file: &std::path::Path, stmts: &[Stmt<'_, '_>]) -> Result<(), ConfigError> {
        let mut i = 0;
        while i < stmts.len() {
            let s = &stmts[i];
            self.line = s.line.number;
            let err = |m: String| ConfigError::invalid(file, format!("line {}", s.line.number), m);
            if self.ops.len() > MAX_OPS {
                return Err(err(format!("the flow compiles to over {MAX_OPS} steps")));
            }
            let text = s.text.trim_end_matches(':');
            let head = text.split_whitespace().next().unwrap_or_default();
            match head {
                "when" => i = self.when(file, stmts, i)?,
                "if" => i = self.branches(file, stmts, i)?,
                "while" => {
                    let cond = condition(text, "while ").map_err(&err)?;
                    let start = self.ops.len();
                    self.ops.push(Op::Jump(0));
                    self.loops.push((start, Vec::new()));
                    self.block(file, &s.block)?;
                    self.ops.push(Op::Jump(start));
                    let end = self.ops.len();
                    self.ops[start] = Op::Unless(cond, end);
                    let (_, breaks) = self.loops.pop().unwrap_or_default();
                    for b in breaks {
                        self.ops[b] = Op::Jump(end);
                    }
                    i += 1;
                }
                _ if !s.block.is_empty() => {
                    return Err(err(format!("`{}`: a block under it is not run", s.text)));
                }
                _ => {
                    self.simple(text, &err)?;
                    i += 1;
                }
            }
        }
        Ok(())
    }

    /// `when A` / `or when B` / … / `else`: starts what the arms name,
    /// waits for the first to finish, and runs its block (`else`: when
    /// what they started failed).
    fn when(
        &mut self,
        file: &std::path::Path,
        stmts: &[Stmt<'_, '_>],
        at: usize,
    ) -> Result<usize, ConfigError> {
        let mut heads = Vec::new();
        let mut i = at;
        while let Some(s) = stmts.get(i) {
            let t = s.text.trim_end_matches(':');
            let spec = match i == at {
                true => t.strip_prefix("when "),
                false => t.strip_prefix("or when "),
            };
            let is_else = i > at && t == "else";
            if spec.is_none() && !is_else {
                break;
            }
            heads.push((s, spec));
            i += 1;
            if is_else {
                break;
            }
        }
        let mut waits: Vec<(Vec<Vec<Leaf>>, Option<&Stmt<'_, '_>>)> = Vec::new();
        let mut started = Vec::new();
        let mut else_block = None;
        for (s, spec) in &heads {
            let err = |m: String| ConfigError::invalid(file, format!("line {}", s.line.number), m);
            let Some(spec) = spec else {
                else_block = Some(*s);
                continue;
            };
            let g = self.group(spec, &err)?;
            let (finish, refs) = self.start_group(&g, &err)?;
            started.extend(refs);
            waits.push((dnf(&finish, &err)?, Some(*s)));
        }
        if let Some(s) = else_block {
            let failed = started
                .iter()
                .map(|r| vec![leaf_ref(r, "Failed")])
                .collect();
            waits.push((failed, Some(s)));
        }
        let wait = self.ops.len();
        self.ops.push(Op::Match(Vec::new()));
        let mut arms = Vec::new();
        let mut ends = Vec::new();
        for (alternatives, s) in waits {
            let target = self.ops.len();
            arms.extend(
                alternatives
                    .into_iter()
                    .map(|leaves| Arm { leaves, target }),
            );
            for r in &started {
                self.ops.push(Op::Stop(r.clone()));
            }
            if let Some(s) = s {
                self.block(file, &s.block)?;
            }
            ends.push(self.ops.len());
            self.ops.push(Op::Jump(0));
        }
        self.close(ends);
        self.ops[wait] = Op::Match(arms);
        Ok(i)
    }

    fn close(&mut self, ends: Vec<usize>) {
        let end = self.ops.len();
        for e in ends {
            self.ops[e] = Op::Jump(end);
        }
    }

    /// `if` / `elif` / `else`.
    fn branches(
        &mut self,
        file: &std::path::Path,
        stmts: &[Stmt<'_, '_>],
        at: usize,
    ) -> Result<usize, ConfigError> {
        let mut ends = Vec::new();
        let mut i = at;
        while let Some(s) = stmts.get(i) {
            let err = |m: String| ConfigError::invalid(file, format!("line {}", s.line.number), m);
            let t = s.text.trim_end_matches(':');
            let cond = match (i == at, t) {
                (true, t) => Some(condition(t, "if ").map_err(&err)?),
                (false, t) if t.starts_with("elif ") => Some(condition(t, "elif ").map_err(&err)?),
                (false, "else") => None,
                _ => break,
            };
            let check = self.ops.len();
            if cond.is_some() {
                self.ops.push(Op::Jump(0));
            }
            self.block(file, &s.block)?;
            ends.push(self.ops.len());
            self.ops.push(Op::Jump(0));
            if let Some(c) = cond {
                self.ops[check] = Op::Unless(c, self.ops.len());
            }
            i += 1;
            if t == "else" {
                break;
            }
        }
        self.close(ends);
        Ok(i)
    }

    fn group(&self, text: &str, err: Err<'_>) -> Result<Group, ConfigError> {
        let flows = self.flows;
        syntax::group(text, &|n| flows.contains(n)).map_err(err)
    }

    /// A statement without a block.
    fn simple(&mut self, text: &str, err: Err<'_>) -> Result<(), ConfigError> {
        let word = |w: &str| text.strip_prefix(w).map(str::trim);
        match text {
            "pass" => return Ok(()),
            "abort" => {
                self.ops.push(Op::Abort);
                return Ok(());
            }
            "return" => {
                self.ops.push(Op::Return(None));
                return Ok(());
            }
            "break" | "continue" => {
                let at = self.ops.len();
                let Some((start, breaks)) = self.loops.last_mut() else {
                    return Err(err(format!("`{text}` outside a `while`")));
                };
                match text {
                    "break" => breaks.push(at),
                    _ => {
                        let start = *start;
                        self.ops.push(Op::Jump(start));
                        return Ok(());
                    }
                }
                self.ops.push(Op::Jump(0));
                return Ok(());
            }
            "start_new_flow_instance" => {
                self.ops.push(Op::NewInstance);
                return Ok(());
            }
            _ => {}
        }
        if let Some(v) = word("return ") {
            let v = syntax::value(v).map_err(|m| err(format!("`{text}`: {m}")))?;
            self.ops.push(Op::Return(Some(v)));
            return Ok(());
        }
        for kw in ["log ", "print "] {
            if let Some(v) = word(kw) {
                let v = syntax::value(v).map_err(|m| err(format!("`{text}`: {m}")))?;
                self.ops.push(Op::Log(v));
                return Ok(());
            }
        }
        if let Some(vars) = word("global ") {
            for v in vars.split(',') {
                let v = v.trim().trim_start_matches('$');
                if !is_var(v) {
                    return Err(err(format!("`{text}`: `global` takes `$name`s")));
                }
                self.ops.push(Op::Global(v.to_string()));
            }
            return Ok(());
        }
        if let Some((var, value)) = assignment(text) {
            return self.assign(text, var, value, err);
        }
        self.spec_statement(text, None, err)
    }

    /// `$x = value`, `$x = await flow …`, `$x = user said something`.
    fn assign(
        &mut self,
        text: &str,
        var: &str,
        value: &str,
        err: Err<'_>,
    ) -> Result<(), ConfigError> {
        if let Some(nld) = value.strip_prefix("...") {
            // NeMo: `$x = ..."instructions"` is `GenerateValueAction`.
            let instructions = match expr::parse(nld.trim()) {
                Ok(Expr::Lit(serde_json::Value::String(s))) => s,
                _ => {
                    return Err(err(format!(
                        "`{text}`: `...` takes its instructions in quotes"
                    )));
                }
            };
            let call = format!(
                "await GenerateValueAction(var_name={}, instructions={})",
                quoted(var),
                quoted(&instructions)
            );
            return self.spec_statement(&call, Some(var), err);
        }
        let first = value.split_whitespace().next().unwrap_or_default();
        let spec_like = matches!(first, "await" | "start" | "match" | "send")
            || (!value.starts_with('$')
                && self.flows.iter().any(|f| value.starts_with(f.as_str())));
        if !spec_like {
            let v = syntax::value(value).map_err(|m| err(format!("`{text}`: {m}")))?;
            self.ops.push(Op::Set(var.to_string(), v));
            return Ok(());
        }
        self.spec_statement(value, Some(var), err)
    }

    /// `match` / `send` / `start` / `await` / `activate`, or a spec alone
    /// (`await`); `into` takes the return value (`$x = await …`).
    fn spec_statement(
        &mut self,
        text: &str,
        into: Option<&str>,
        err: Err<'_>,
    ) -> Result<(), ConfigError> {
        let (op, rest) = match text.split_once(' ') {
            Some((op @ ("match" | "send" | "start" | "await" | "activate"), rest)) => (op, rest),
            _ => ("await", text),
        };
        if rest.trim() == "..." || text == "..." {
            // NeMo: the LLM writes the rest of the flow from its docstring.
            let r = self.hide();
            for line in [
                format!(
                    "${r} = await GenerateFlowAction(flow_id=$self.flow_id, context=$self.context)"
                ),
                format!("await AddFlowsAction(config=${r}.body)"),
                format!("await await_flow_by_name ${r}.name"),
                format!("await RemoveFlowsAction(flow_ids=[${r}.name])"),
            ] {
                self.simple(&line, err)?;
            }
            return Ok(());
        }
        let g = self.group(rest, err)?;
        match op {
            "match" => {
                let arms = dnf(&self.patterns(&g, err)?, err)?;
                let target = self.ops.len() + 1;
                let arms = arms.into_iter().map(|leaves| Arm { leaves, target });
                self.ops.push(Op::Match(arms.collect()));
                if let (Some(var), [one]) = (into, g.specs().as_slice()) {
                    let bind = one.bind.clone();
                    self.capture(var, bind.as_deref(), err)?;
                }
                Ok(())
            }
            "send" => self.send(&g, err),
            "start" | "activate" => {
                let (_, refs) = self.start_group_as(&g, op == "activate", err)?;
                if let (Some(var), [r]) = (into, refs.as_slice()) {
                    self.ops
                        .push(Op::Set(var.to_string(), V::E(Expr::Var(r.clone()))));
                }
                Ok(())
            }
            _ => {
                let (finish, refs) = self.start_group(&g, err)?;
                let wait = dnf(&finish, err)?;
                let target = self.ops.len() + 1;
                let arms = wait.into_iter().map(|leaves| Arm { leaves, target });
                self.ops.push(Op::Match(arms.collect()));
                if matches!(g, Group::Or(_)) {
                    for r in &refs {
                        self.ops.push(Op::Stop(r.clone()));
                    }
                }
                if let (Some(var), [r]) = (into, refs.as_slice()) {
                    let ret = Expr::Attr(Box::new(Expr::Var(r.clone())), "return_value".into());
                    self.ops.push(Op::Set(var.to_string(), V::E(ret)));
                }
                Ok(())
            }
        }
    }

    fn capture(&mut self, var: &str, bind: Option<&str>, err: Err<'_>) -> Result<(), ConfigError> {
        let Some(b) = bind else {
            return Err(err(format!("`${var} = match …` needs the match `as $ref`")));
        };
        self.ops
            .push(Op::Set(var.to_string(), V::E(Expr::Var(b.to_string()))));
        Ok(())
    }
}

/// `s` as a double-quoted string literal.
fn quoted(s: &str) -> String {
    let escaped = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("\"{escaped}\"")
}

fn is_var(v: &str) -> bool {
    !v.is_empty() && v.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// `$x = value`.
fn assignment(text: &str) -> Option<(&str, &str)> {
    let (var, value) = text.strip_prefix('$')?.split_once('=')?;
    let var = var.trim();
    (is_var(var) && !value.starts_with('=')).then(|| (var, value.trim()))
}

/// `if $x > 1` / `while True`: the condition.
fn condition(text: &str, keyword: &str) -> Result<Expr, String> {
    let cond = text.strip_prefix(keyword).unwrap_or(text).trim();
    expr::parse(cond).map_err(|e| format!("`{text}`: {e}"))
}

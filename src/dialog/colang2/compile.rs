//! Colang 2 flow bodies into the small program the interaction runtime
//! steps through: waits on the user's message (with the arms a `when` /
//! `or when` block gives them), bot utterances, assignments, and the jumps
//! `if` / `elif` / `else` and `while` make. Flows named as steps are
//! inlined (8 deep). What is not run yet is refused with its line.

use std::{collections::BTreeMap, path::PathBuf};

use super::super::expr::{self, Expr};
use crate::config::{ConfigError, colang2::Line};

/// How deep flows may name flows.
const MAX_DEPTH: usize = 8;
/// The most operations one config's flows compile to.
const MAX_OPS: usize = 100_000;

/// What a wait accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Match {
    /// `user said "…"`: the message exactly (NeMo's score 1.0).
    Said(String),
    /// `user said something` (less specific).
    Something,
}

/// A text a bot step says: a literal with `{$var}` in it, or a variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Text {
    Template(String),
    Var(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Arm {
    pub accepts: Match,
    /// The variable the message goes into (`$x = user said something`).
    pub capture: Option<String>,
    pub target: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Op {
    /// Waits for a message an arm accepts (no arms: waits for good).
    Wait(Vec<Arm>),
    /// Says one of these (NeMo picks one at random).
    Say(Vec<Text>),
    Set(String, Expr),
    /// Goes to the target unless the condition holds.
    Unless(Expr, usize),
    Jump(usize),
}

/// A flow definition: its file and its lines.
pub(super) type Defs<'a> = BTreeMap<&'a str, (PathBuf, Vec<Line<'a>>)>;

/// Compiles statements into `ops`.
pub(super) struct Compiler<'d, 'a> {
    pub defs: &'d Defs<'a>,
    pub ops: Vec<Op>,
    /// The activated flow being compiled (its own `activate` is a no-op:
    /// it restarts when it finishes anyway).
    pub activated: Option<&'d str>,
}

/// A statement and the block under it.
struct Stmt<'l, 'a> {
    line: &'l Line<'a>,
    /// Its text with `or …` continuation lines joined.
    text: String,
    block: Vec<Stmt<'l, 'a>>,
}

/// The statements of `lines` (all at one indentation or deeper).
fn tree<'l, 'a>(lines: &'l [Line<'a>]) -> Vec<Stmt<'l, 'a>> {
    let mut out: Vec<Stmt<'l, 'a>> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let indent = lines[i].indent;
        let end = lines[i + 1..]
            .iter()
            .position(|l| l.indent <= indent)
            .map_or(lines.len(), |p| i + 1 + p);
        let mut text = lines[i].text.to_string();
        let mut first_child = i + 1;
        // `user said "a"` / `  or user said "b"`: one statement.
        while first_child < end && lines[first_child].text.starts_with("or ") {
            text.push(' ');
            text.push_str(lines[first_child].text);
            first_child += 1;
        }
        out.push(Stmt {
            line: &lines[i],
            text,
            block: tree(&lines[first_child..end]),
        });
        i = end;
    }
    out
}

impl<'d, 'a> Compiler<'d, 'a> {
    /// Compiles a flow body.
    pub fn body(
        &mut self,
        file: &std::path::Path,
        lines: &[Line<'a>],
        depth: usize,
    ) -> Result<(), ConfigError> {
        let stmts = tree(lines);
        self.block(file, &stmts, depth)
    }

    fn block(
        &mut self,
        file: &std::path::Path,
        stmts: &[Stmt<'_, 'a>],
        depth: usize,
    ) -> Result<(), ConfigError> {
        let mut i = 0;
        while i < stmts.len() {
            let s = &stmts[i];
            let err = |m: String| ConfigError::invalid(file, format!("line {}", s.line.number), m);
            if self.ops.len() > MAX_OPS {
                return Err(err(format!("the flows compile to over {MAX_OPS} steps")));
            }
            let head = s.text.split_whitespace().next().unwrap_or_default();
            match head {
                "when" => i = self.when(file, stmts, i, depth)?,
                "if" => i = self.branches(file, stmts, i, depth)?,
                "while" => {
                    let cond = condition(&s.text, "while ").map_err(err)?;
                    let start = self.ops.len();
                    self.ops.push(Op::Jump(0));
                    self.block(file, &s.block, depth)?;
                    self.ops.push(Op::Jump(start));
                    let end = self.ops.len();
                    self.ops[start] = Op::Unless(cond, end);
                    i += 1;
                }
                _ if !s.block.is_empty() => {
                    return Err(err(format!(
                        "`{}`: a block under it is not run yet",
                        s.text
                    )));
                }
                _ => {
                    self.simple(file, &s.text, depth, &err)?;
                    i += 1;
                }
            }
        }
        Ok(())
    }

    /// `when A` / `or when B` / …: one wait whose arms run their blocks.
    fn when(
        &mut self,
        file: &std::path::Path,
        stmts: &[Stmt<'_, 'a>],
        at: usize,
        depth: usize,
    ) -> Result<usize, ConfigError> {
        let wait = self.ops.len();
        self.ops.push(Op::Wait(Vec::new()));
        let mut arms = Vec::new();
        let mut ends = Vec::new();
        let mut i = at;
        while let Some(s) = stmts.get(i) {
            let spec = match (i == at, s.text.strip_prefix("or when ")) {
                (true, _) => s.text.strip_prefix("when "),
                (false, spec) => spec,
            };
            let Some(spec) = spec else { break };
            let err = |m: String| ConfigError::invalid(file, format!("line {}", s.line.number), m);
            let target = self.ops.len();
            let accepts = self.matches(spec, depth, &err)?;
            arms.extend(accepts.into_iter().map(|accepts| Arm {
                accepts,
                capture: None,
                target,
            }));
            self.block(file, &s.block, depth)?;
            ends.push(self.ops.len());
            self.ops.push(Op::Jump(0));
            i += 1;
        }
        self.close(ends);
        self.ops[wait] = Op::Wait(arms);
        Ok(i)
    }

    /// Points the jumps at `ends` (each arm's last step) past the block.
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
        stmts: &[Stmt<'_, 'a>],
        at: usize,
        depth: usize,
    ) -> Result<usize, ConfigError> {
        let mut ends = Vec::new();
        let mut i = at;
        while let Some(s) = stmts.get(i) {
            let err = |m: String| ConfigError::invalid(file, format!("line {}", s.line.number), m);
            let cond = match (i == at, s.text.as_str()) {
                (true, t) => Some(condition(t, "if ").map_err(err)?),
                (false, t) if t.starts_with("elif ") => Some(condition(t, "elif ").map_err(err)?),
                (false, "else" | "else:") => None,
                _ => break,
            };
            let check = self.ops.len();
            if cond.is_some() {
                self.ops.push(Op::Jump(0));
            }
            self.block(file, &s.block, depth)?;
            ends.push(self.ops.len());
            self.ops.push(Op::Jump(0));
            if let Some(c) = cond {
                self.ops[check] = Op::Unless(c, self.ops.len());
            }
            i += 1;
            if s.text.starts_with("else") {
                break;
            }
        }
        self.close(ends);
        Ok(i)
    }

    /// A statement without a block.
    fn simple(
        &mut self,
        file: &std::path::Path,
        text: &str,
        depth: usize,
        err: &dyn Fn(String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let text = text.strip_prefix("await ").unwrap_or(text).trim();
        if text
            .strip_prefix("activate ")
            .map(str::trim)
            .is_some_and(|n| Some(n) == self.activated)
        {
            return Ok(());
        }
        if let Some(var) = text.strip_prefix("global $") {
            // Variables are the interaction's, one set for every flow.
            return match var.chars().all(|c| c.is_alphanumeric() || c == '_') {
                true => Ok(()),
                false => Err(not_yet(text, err)),
            };
        }
        if let Some((var, value)) = assignment(text) {
            let value = value.strip_prefix("await ").unwrap_or(value);
            // `$x = user said something`: the message into `$x`.
            if let Ok(accepts) = self.matches(value, depth, &|m| err(m)) {
                let target = self.ops.len() + 1;
                let arms = accepts.into_iter().map(|accepts| Arm {
                    accepts,
                    capture: Some(var.to_string()),
                    target,
                });
                self.ops.push(Op::Wait(arms.collect()));
                return Ok(());
            }
            let e = expr::parse(value).map_err(|_| not_yet(text, err))?;
            self.ops.push(Op::Set(var.to_string(), e));
            return Ok(());
        }
        self.step(file, text, depth, err)
    }

    /// What a user step (or an `or` of them) accepts.
    fn matches(
        &mut self,
        spec: &str,
        depth: usize,
        err: &dyn Fn(String) -> ConfigError,
    ) -> Result<Vec<Match>, ConfigError> {
        let mut out = Vec::new();
        for part in split_or(spec) {
            match user_match(part) {
                Some(Some(m)) => out.push(m),
                Some(None) => return Err(not_yet(part, err)),
                None => {
                    let (_, lines) = self.flow(part, depth, err)?;
                    let body = tree(lines);
                    match body.as_slice() {
                        [one] if one.block.is_empty() => {
                            out.extend(self.matches(&one.text, depth + 1, err)?)
                        }
                        _ => {
                            return Err(err(format!(
                                "`{part}`: a user flow of one `user said` step is run, not this one"
                            )));
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// The definition of flow `name`, within the depth.
    fn flow(
        &self,
        name: &str,
        depth: usize,
        err: &dyn Fn(String) -> ConfigError,
    ) -> Result<&'d (PathBuf, Vec<Line<'a>>), ConfigError> {
        if depth >= MAX_DEPTH {
            return Err(err(format!(
                "`{name}`: flows name flows more than {MAX_DEPTH} deep"
            )));
        }
        self.defs.get(name).ok_or_else(|| match name.starts_with("user ") || name.starts_with("bot ") {
            true => err(format!(
                "`{name}`: no `flow {name}` (and not `user said` / `bot say` or their UMIM forms)"
            )),
            false => not_yet(name, err),
        })
    }

    /// A user or bot step, a flow named as a step, or an `or` of them.
    fn step(
        &mut self,
        _file: &std::path::Path,
        text: &str,
        depth: usize,
        err: &dyn Fn(String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let parts = split_or(text);
        let mut says = Vec::new();
        for part in &parts {
            if let Some(say) = bot_say(part) {
                says.push(say.ok_or_else(|| not_yet(part, err))?);
                continue;
            }
            if let Some(m) = user_match(part) {
                let m = m.ok_or_else(|| not_yet(part, err))?;
                if parts.len() > 1 {
                    let all = self.matches(text, depth, err)?;
                    let target = self.ops.len() + 1;
                    self.ops.push(Op::Wait(
                        all.into_iter()
                            .map(|accepts| Arm {
                                accepts,
                                capture: None,
                                target,
                            })
                            .collect(),
                    ));
                    return Ok(());
                }
                let target = self.ops.len() + 1;
                self.ops.push(Op::Wait(vec![Arm {
                    accepts: m,
                    capture: None,
                    target,
                }]));
                return Ok(());
            }
            if let Some(event) = part.strip_prefix("match ") {
                let name = event.split('(').next().unwrap_or_default();
                let plain =
                    name.chars().all(|c| c.is_alphanumeric() || c == '_') && event.ends_with(')');
                if !plain || event.contains(" as ") || parts.len() > 1 {
                    return Err(not_yet(part, err));
                }
                // Another event: a chat sends only the user's messages.
                self.ops.push(Op::Wait(Vec::new()));
                return Ok(());
            }
            let (file, lines) = self.flow(part, depth, err)?;
            if parts.len() == 1 {
                return self.body(file, lines, depth + 1);
            }
            match tree(lines).as_slice() {
                [one] if one.block.is_empty() && bot_say(&one.text).is_some() => {
                    let e = |m: String| {
                        ConfigError::invalid(file, format!("line {}", one.line.number), m)
                    };
                    let inner = split_or(&one.text)
                        .into_iter()
                        .map(|p| bot_say(p).flatten().ok_or_else(|| not_yet(p, &e)));
                    says.extend(inner.collect::<Result<Vec<_>, _>>()?);
                }
                _ => {
                    return Err(err(format!(
                        "`{part}`: an `or` of flows of more than one step is not run yet"
                    )));
                }
            }
        }
        self.ops.push(Op::Say(says));
        Ok(())
    }
}

fn not_yet(text: &str, err: &dyn Fn(String) -> ConfigError) -> ConfigError {
    err(format!(
        "`{text}`: streamguard runs Colang 2 flows of `user said` / `bot say` steps (and their UMIM forms), \
         `when` / `or when`, `if` / `elif` / `else`, `while`, variables and `activate` (not yet: `start`, \
         `send`, `as` references, `...`, other actions and events)"
    ))
}

/// `$x = value`.
fn assignment(text: &str) -> Option<(&str, &str)> {
    let (var, value) = text.strip_prefix('$')?.split_once('=')?;
    let var = var.trim();
    let ok = !var.is_empty()
        && var.chars().all(|c| c.is_alphanumeric() || c == '_')
        && !value.starts_with('=');
    ok.then(|| (var, value.trim()))
}

/// `if $x > 1` / `while True`: the condition.
fn condition(text: &str, keyword: &str) -> Result<Expr, String> {
    let cond = text.strip_prefix(keyword).unwrap_or(text).trim();
    let cond = cond.strip_suffix(':').unwrap_or(cond);
    expr::parse(cond).map_err(|e| format!("`{text}`: {e}"))
}

/// A user step or its UMIM form (`None`: not one; `Some(None)`: one
/// written in a way not run yet).
fn user_match(part: &str) -> Option<Option<Match>> {
    if let Some(rest) = part.strip_prefix("user said ") {
        return Some(match rest.trim() {
            "something" => Some(Match::Something),
            quoted => literal(quoted).map(Match::Said),
        });
    }
    let event = part.strip_prefix("match ")?;
    let args = call(
        event,
        &[
            "UtteranceUserActionFinished",
            "UtteranceUserAction.Finished",
        ],
    )?;
    Some(match args {
        "" => Some(Match::Something),
        a => a
            .strip_prefix("final_transcript=")
            .and_then(|q| literal(q.trim()))
            .map(Match::Said),
    })
}

/// A bot utterance or its UMIM form (`None`: not one).
fn bot_say(part: &str) -> Option<Option<Text>> {
    let arg = match part.strip_prefix("bot say ") {
        Some(rest) => rest.trim(),
        None => {
            let action = part
                .strip_prefix("send ")
                .and_then(|p| call(p, &["StartUtteranceBotAction"]))
                .or_else(|| {
                    call(
                        part.strip_prefix("start ").unwrap_or(part),
                        &["UtteranceBotAction"],
                    )
                })?;
            action.strip_prefix("script=").map(str::trim).unwrap_or("")
        }
    };
    Some(match arg.strip_prefix('$') {
        Some(var) if var.chars().all(|c| c.is_alphanumeric() || c == '_') => {
            Some(Text::Var(var.into()))
        }
        _ => literal(arg).map(Text::Template),
    })
}

/// The arguments of `Name(…)` for one of `names`.
fn call<'a>(p: &'a str, names: &[&str]) -> Option<&'a str> {
    let p = p.trim();
    names.iter().find_map(|n| {
        p.strip_prefix(n)
            .and_then(|r| r.strip_prefix('('))
            .and_then(|r| r.strip_suffix(')'))
            .map(str::trim)
    })
}

/// A double- or single-quoted string's text.
fn literal(quoted: &str) -> Option<String> {
    ['"', '\''].into_iter().find_map(|q| {
        let inner = quoted.strip_prefix(q)?.strip_suffix(q)?;
        (!inner.contains(q)).then(|| inner.to_string())
    })
}

/// `a or b`, split outside quotes and parentheses.
pub(super) fn split_or(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut quote, mut depth, mut start) = (None, 0usize, 0);
    let bytes = text.as_bytes();
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => depth = depth.saturating_sub(1),
            (None, ' ') if depth == 0 && bytes.get(i + 1..i + 4) == Some(b"or ".as_slice()) => {
                out.push(text[start..i].trim());
                start = i + 4;
            }
            _ => {}
        }
    }
    out.push(text[start..].trim());
    out
}

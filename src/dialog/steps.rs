//! The steps of a Colang 1.0 flow: `user NAME`, `bot NAME`, `bot $var`,
//! `when user NAME` / `else when user NAME` / `else`, `do SUBFLOW`, `stop`,
//! `abort`, `return [expr]`, `$var = expr`, `[$var =] execute NAME(key=expr,
//! …)`, `if expr` / `else if expr` / `else` (a trailing `:` allowed, as
//! NeMo's library writes it), `while expr` and `create event NAME(key=expr,
//! …)`. Expressions are [`super::expr`]'s.

/// The action `$x = ...` runs.
pub const GENERATE_VALUE: &str = "generate_value";

use super::{
    Action, ColangError, Expr, Step, expr,
    parse::{ErrFn, Line, name, refusal},
};

/// Parses the steps of a block at `indent`, from `lines[start..]`; returns
/// the steps and the index after the block.
pub(super) fn parse_steps(
    lines: &[Line<'_>],
    start: usize,
    indent: usize,
    err: &ErrFn<'_>,
) -> Result<(Vec<Step>, usize), ColangError> {
    let mut steps = Vec::new();
    let mut at = start;
    while at < lines.len() && lines[at].indent >= indent {
        let l = &lines[at];
        if l.indent > indent {
            return Err(err(
                l.number,
                format!("unexpected indentation before `{}`", l.text),
            ));
        }
        let text = l.text;
        if let Some(intent) = text.strip_prefix("when user ") {
            let (step, next) = when_arms(lines, at, indent, intent, err)?;
            steps.push(step);
            at = next;
            continue;
        }
        if let Some(cond) = keyword(text, "if") {
            let (step, next) = if_arms(lines, at, indent, cond, err)?;
            steps.push(step);
            at = next;
            continue;
        }
        if let Some(cond) = keyword(text, "while") {
            let cond = condition(cond, l.number, err)?;
            let (body, next) = parse_block(lines, at, indent, err)?;
            steps.push(Step::While {
                cond,
                body,
                line: l.number,
            });
            at = next;
            continue;
        }
        steps.push(simple_step(l, err)?);
        at += 1;
    }
    Ok((steps, at))
}

/// `if`, `while`: the text after the keyword, without a trailing `:`.
fn keyword<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    let rest = text.strip_prefix(word)?;
    rest.starts_with([' ', '(', '$', '"', '\''])
        .then(|| rest.trim().trim_end_matches(':').trim_end())
}

fn condition(text: &str, line: usize, err: &ErrFn<'_>) -> Result<Expr, ColangError> {
    expr::parse(text).map_err(|m| err(line, format!("in `{text}`: {m}")))
}

/// One line that is a whole step.
fn simple_step(l: &Line<'_>, err: &ErrFn<'_>) -> Result<Step, ColangError> {
    let text = l.text;
    let n = l.number;
    let named = |rest: &str| name(rest).ok_or_else(|| err(n, refusal(text)));
    Ok(match text {
        "stop" => Step::Stop,
        "abort" => Step::Abort,
        "return" => Step::Return(None),
        _ if text.starts_with("return ") => Step::Return(Some(condition(&text[7..], n, err)?)),
        _ if text.starts_with("bot $") => {
            let var = variable(&text[4..]).ok_or_else(|| err(n, refusal(text)))?;
            Step::BotVar { var, line: n }
        }
        _ if text.starts_with("user ") => Step::User(named(&text[5..])?),
        _ if text.starts_with("bot ") => Step::Bot(named(&text[4..])?),
        _ if text.starts_with("do ") => Step::Do(named(&text[3..])?),
        _ if text.starts_with("execute ") => Step::Execute(action(None, &text[8..], n, err)?),
        _ if text.starts_with("create event ") => {
            let (name, args) = call(&text[13..], n, err)?;
            Step::Event {
                name,
                args,
                line: n,
            }
        }
        _ if text.starts_with('$') => assignment(l, err)?,
        _ if text.starts_with("else") => {
            return Err(err(
                n,
                format!("`{text}` without a `when` or `if` before it"),
            ));
        }
        _ => return Err(err(n, refusal(text))),
    })
}

/// `$name` alone.
fn variable(text: &str) -> Option<String> {
    let v = text.trim().strip_prefix('$')?;
    (!v.is_empty() && v.chars().all(|c| c.is_alphanumeric() || c == '_')).then(|| v.to_string())
}

/// `$var = expr`, `$var = execute …` or `$var = ...` (NeMo's
/// `generate_value` with the comment above as the instructions).
fn assignment(l: &Line<'_>, err: &ErrFn<'_>) -> Result<Step, ColangError> {
    let (text, n) = (l.text, l.number);
    let (left, right) = text
        .split_once('=')
        .filter(|(_, r)| !r.starts_with('='))
        .ok_or_else(|| err(n, format!("`{text}` is not an assignment (`$name = …`)")))?;
    let var =
        variable(left).ok_or_else(|| err(n, format!("`{}` is not a variable", left.trim())))?;
    let right = right.trim();
    if let Some(rest) = right.strip_prefix("execute ") {
        return Ok(Step::Execute(action(Some(var), rest, n, err)?));
    }
    if right == "..." {
        let text = |s: &str| Expr::Lit(serde_json::Value::String(s.to_string()));
        return Ok(Step::Execute(Action {
            args: vec![
                ("instructions".into(), text(l.comment)),
                ("var_name".into(), text(&var)),
            ],
            result: Some(var),
            name: GENERATE_VALUE.into(),
            line: n,
        }));
    }
    Ok(Step::Set {
        var,
        value: condition(right, n, err)?,
        line: n,
    })
}

fn action(
    result: Option<String>,
    text: &str,
    line: usize,
    err: &ErrFn<'_>,
) -> Result<Action, ColangError> {
    let (name, args) = call(text, line, err)?;
    Ok(Action {
        result,
        name,
        args,
        line,
    })
}

/// `NAME` or `NAME(key=expr, …)`.
fn call(
    text: &str,
    line: usize,
    err: &ErrFn<'_>,
) -> Result<(String, Vec<(String, Expr)>), ColangError> {
    let text = text.trim();
    let (name, rest) = match text.find('(') {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    // NeMo's action names may have spaces (`execute call fiddler safety on
    // user message`): words, one space apart.
    let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '.' || c == ' ')
    {
        return Err(err(
            line,
            format!("`{name}` is not an action or event name"),
        ));
    }
    let mut args = Vec::new();
    if let Some(rest) = rest {
        let inner = rest
            .trim_end()
            .strip_suffix(')')
            .ok_or_else(|| err(line, format!("`{text}` has no closing `)`")))?;
        for part in split_args(inner) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| err(line, format!("`{part}`: arguments are `name=value`")))?;
            let key = key.trim();
            if key.is_empty() || !key.chars().all(|c| c.is_alphanumeric() || c == '_') {
                return Err(err(line, format!("`{key}` is not an argument name")));
            }
            args.push((key.to_string(), condition(value, line, err)?));
        }
    }
    Ok((name.to_string(), args))
}

/// Splits at the commas outside quotes and brackets.
fn split_args(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut quote, mut start) = (0i32, None, 0);
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(_), '\\') if !escaped => {
                escaped = true;
                continue;
            }
            (Some(q), c) if c == q && !escaped => quote = None,
            (None, '"' | '\'') => quote = Some(c),
            (None, '(' | '[') => depth += 1,
            (None, ')' | ']') => depth -= 1,
            (None, ',') if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        escaped = false;
    }
    parts.push(&text[start..]);
    parts
}

/// `when user …` and the `else when` / `else` arms after it.
fn when_arms(
    lines: &[Line<'_>],
    mut at: usize,
    indent: usize,
    intent: &str,
    err: &ErrFn<'_>,
) -> Result<(Step, usize), ColangError> {
    let mut arms = Vec::new();
    let (body, next) = parse_block(lines, at, indent, err)?;
    arms.push((Some(arm_intent(intent, lines[at].number, err)?), body));
    at = next;
    while at < lines.len() && lines[at].indent == indent {
        let t = lines[at].text;
        if let Some(intent) = t.strip_prefix("else when user ") {
            let n = lines[at].number;
            let (body, next) = parse_block(lines, at, indent, err)?;
            arms.push((Some(arm_intent(intent, n, err)?), body));
            at = next;
        } else if let Some(event) = t.strip_prefix("else when ") {
            // No `user`: NeMo reads it as a match on an event of that name,
            // which never comes in this runtime. Its steps are checked; the
            // arm can never fire.
            arm_intent(event, lines[at].number, err)?;
            let (_, next) = parse_block(lines, at, indent, err)?;
            at = next;
        } else if t == "else" {
            let (body, next) = parse_block(lines, at, indent, err)?;
            arms.push((None, body));
            at = next;
            break;
        } else {
            break;
        }
    }
    Ok((Step::Branch(arms), at))
}

/// `if …` and the `else if` / `else` arms after it.
fn if_arms(
    lines: &[Line<'_>],
    mut at: usize,
    indent: usize,
    cond: &str,
    err: &ErrFn<'_>,
) -> Result<(Step, usize), ColangError> {
    let line = lines[at].number;
    let mut arms = Vec::new();
    let (body, next) = parse_block(lines, at, indent, err)?;
    arms.push((Some(condition(cond, line, err)?), body));
    at = next;
    while at < lines.len() && lines[at].indent == indent {
        let t = lines[at].text;
        let n = lines[at].number;
        if let Some(cond) = t.strip_prefix("else ").and_then(|r| keyword(r, "if")) {
            let cond = condition(cond, n, err)?;
            let (body, next) = parse_block(lines, at, indent, err)?;
            arms.push((Some(cond), body));
            at = next;
        } else if t.trim_end_matches(':') == "else" {
            let (body, next) = parse_block(lines, at, indent, err)?;
            arms.push((None, body));
            at = next;
            break;
        } else {
            break;
        }
    }
    Ok((Step::If { arms, line }, at))
}

fn arm_intent(text: &str, line: usize, err: &ErrFn<'_>) -> Result<String, ColangError> {
    name(text).ok_or_else(|| err(line, format!("bad intent `{text}`")))
}

/// The indented block under `lines[at]`.
fn parse_block(
    lines: &[Line<'_>],
    at: usize,
    indent: usize,
    err: &ErrFn<'_>,
) -> Result<(Vec<Step>, usize), ColangError> {
    match lines.get(at + 1) {
        Some(next) if next.indent > indent => parse_steps(lines, at + 1, next.indent, err),
        _ => Err(err(
            lines[at].number,
            format!("`{}` has no indented steps under it", lines[at].text),
        )),
    }
}

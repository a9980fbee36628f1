//! Colang 2's statements and its specs: a flow body as a tree of statements
//! (continuation lines joined), and the `spec` a `match` / `send` / `start` /
//! `await` / `activate` / `when` takes — events (`UtteranceUserAction.
//! Finished(final_transcript="hi")`), actions (`UtteranceBotAction(script=
//! "Hi")`), flows (`bot say "Hi"`), references (`$ref.Finished()`), grouped
//! with `and` / `or` and parentheses, each optionally `as $ref`.

use super::super::expr::{self, Expr};
use crate::config::colang2::Line;

/// The most specs one group may hold.
const MAX_SPECS: usize = 64;

/// A statement and the block under it.
pub(super) struct Stmt<'l, 'a> {
    pub line: &'l Line<'a>,
    /// Its text, continuation lines joined.
    pub text: String,
    pub block: Vec<Stmt<'l, 'a>>,
}

/// The statements of `lines` (all at one indentation or deeper). A line
/// that starts with `or ` / `and ` (not `or when`) under a statement, or
/// that follows an unclosed parenthesis, continues it.
pub(super) fn tree<'l, 'a>(lines: &'l [Line<'a>]) -> Vec<Stmt<'l, 'a>> {
    let mut out: Vec<Stmt<'l, 'a>> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let indent = lines[i].indent;
        let block_end = |from: usize| {
            lines[from..]
                .iter()
                .position(|l| l.indent <= indent)
                .map_or(lines.len(), |p| from + p)
        };
        let mut end = block_end(i + 1);
        // `or …` / `and …` at the statement's own indentation continues it too.
        while end < lines.len() && lines[end].indent == indent && continuation(lines[end].text) {
            end = block_end(end + 1);
        }
        let mut text = lines[i].text.to_string();
        let mut first_child = i + 1;
        while first_child < end {
            let next = lines[first_child].text;
            let continues = continuation(next) || open_parens(&text) > 0 || open_triple(&text);
            if !continues {
                break;
            }
            text.push(' ');
            text.push_str(next);
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

/// Whether `text` ends inside a `"""` / `\'\'\'` string (it goes on below).
fn open_triple(text: &str) -> bool {
    ["\"\"\"", "\'\'\'"]
        .iter()
        .any(|q| text.matches(q).count() % 2 == 1)
}

/// `or …` (not `or when`) or `and …`: the rest of the statement above.
fn continuation(line: &str) -> bool {
    (line.starts_with("or ") && !line.starts_with("or when ")) || line.starts_with("and ")
}

/// How many parentheses of `text` are open at its end (outside quotes).
fn open_parens(text: &str) -> usize {
    let (mut quote, mut depth) = (None, 0usize);
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '(' | '[' | '{') => depth += 1,
            (None, ')' | ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    depth
}

/// A value: an expression, or a string with `{$…}` parts filled in.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum V {
    E(Expr),
    T(Vec<Part>),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Part {
    Lit(String),
    E(Expr),
}

/// An expression as a value (a string literal with `{$…}` a template).
pub(super) fn value(text: &str) -> Result<V, String> {
    let e = expr::parse(text.trim())?;
    if let Expr::Lit(serde_json::Value::String(s)) = &e
        && s.contains("{$")
    {
        return template(s).map(V::T);
    }
    Ok(V::E(e))
}

/// `Hi {$name}!` into its parts.
fn template(s: &str) -> Result<Vec<Part>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(at) = rest.find("{$") {
        if at > 0 {
            out.push(Part::Lit(rest[..at].to_string()));
        }
        let after = &rest[at + 1..];
        let Some(end) = after.find('}') else {
            out.push(Part::Lit(rest[at..].to_string()));
            return Ok(out);
        };
        out.push(Part::E(expr::parse(&after[..end])?));
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        out.push(Part::Lit(rest.to_string()));
    }
    Ok(out)
}

/// A spec's arguments: named, or positional (`None`) for flows.
pub(super) type Args = Vec<(Option<String>, V)>;

/// What a spec names.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Target {
    /// An event or action by name: `Name` (`UtteranceUserActionFinished`,
    /// `UtteranceBotAction`), the member (`Finished`) if written
    /// `Name.Finished(…)`.
    Named {
        name: String,
        member: Option<String>,
    },
    /// A flow: its name and its arguments (named ones as `$name=value`).
    Flow(String),
    /// `$ref.Member(…)`.
    Ref { var: String, member: String },
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Spec {
    pub target: Target,
    /// Named arguments, or positional (`None`) for flows.
    pub args: Vec<(Option<String>, V)>,
    pub bind: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Group {
    One(Spec),
    And(Vec<Group>),
    Or(Vec<Group>),
}

impl Group {
    /// Every spec of the group, in order.
    pub fn specs(&self) -> Vec<&Spec> {
        match self {
            Group::One(s) => vec![s],
            Group::And(g) | Group::Or(g) => g.iter().flat_map(Group::specs).collect(),
        }
    }
}

/// Parses a spec group; `is_flow` says which words name a flow, for
/// telling a flow's name from its first argument (`bot say "Hi"`).
pub(super) fn group(text: &str, is_flow: &dyn Fn(&str) -> bool) -> Result<Group, String> {
    let mut count = 0;
    group_at(text.trim(), is_flow, &mut count, 0)
}

fn group_at(
    text: &str,
    is_flow: &dyn Fn(&str) -> bool,
    count: &mut usize,
    depth: usize,
) -> Result<Group, String> {
    if depth > 16 {
        return Err("parentheses nest more than 16 deep".into());
    }
    for (word, make) in [
        (" or ", Group::Or as fn(Vec<Group>) -> Group),
        (" and ", Group::And),
    ] {
        let parts = split_top(text, word);
        if parts.len() > 1 {
            let groups = parts
                .into_iter()
                .map(|p| group_at(p.trim(), is_flow, count, depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(make(groups));
        }
    }
    if let Some(inner) = text.strip_prefix('(').and_then(|t| t.strip_suffix(')'))
        && open_parens(&text[..text.len() - 1]) == 1
        && balanced_inside(inner)
    {
        return group_at(inner.trim(), is_flow, count, depth + 1);
    }
    *count += 1;
    if *count > MAX_SPECS {
        return Err(format!("more than {MAX_SPECS} specs in one statement"));
    }
    spec(text, is_flow).map(Group::One)
}

fn balanced_inside(inner: &str) -> bool {
    let (mut quote, mut depth) = (None, 0i32);
    for c in inner.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => {}
        }
    }
    depth == 0
}

/// `text` split at `word` outside quotes and brackets.
pub(super) fn split_top<'t>(text: &'t str, word: &str) -> Vec<&'t str> {
    let mut out = Vec::new();
    let (mut quote, mut depth, mut start) = (None, 0usize, 0);
    let bytes = text.as_bytes();
    let w = word.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match (quote, c) {
            (Some(_), b'\\') => {
                i += 2;
                continue;
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(c),
            (None, b'(' | b'[' | b'{') => depth += 1,
            (None, b')' | b']' | b'}') => depth = depth.saturating_sub(1),
            (None, _) if depth == 0 && bytes[i..].starts_with(w) => {
                out.push(&text[start..i]);
                start = i + w.len();
                i = start;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&text[start..]);
    out
}

/// One spec, with its `as $ref`.
fn spec(text: &str, is_flow: &dyn Fn(&str) -> bool) -> Result<Spec, String> {
    let parts = split_top(text, " as $");
    let (body, bind) = match parts.as_slice() {
        [body] => (*body, None),
        [body, var] if is_name(var.trim()) => (*body, Some(var.trim().to_string())),
        _ => return Err(format!("`{text}`: `as` takes one `$name`")),
    };
    let body = body.trim();
    let first = body.chars().next().unwrap_or(' ');
    let (target, args) = if let Some(rest) = body.strip_prefix('$') {
        // `$ref.Member()`, or `$event.action.Member()` / `$event.flow.Member()`.
        let head = &rest[..rest.find('(').unwrap_or(rest.len())];
        let dot = head
            .rfind('.')
            .ok_or_else(|| format!("`{body}`: a reference spec is `$ref.Member()`"))?;
        let (var, call) = (&rest[..dot], &rest[dot + 1..]);
        let (member, args) = call_of(call)?;
        let target = Target::Ref {
            var: var.to_string(),
            member,
        };
        (target, args)
    } else if first.is_ascii_uppercase() {
        named(body)?
    } else {
        flow(body, is_flow)?
    };
    Ok(Spec { target, args, bind })
}

/// A bare word (no `$`, quote, number or keyword literal).
fn is_word(s: &str) -> bool {
    is_name(s)
        && s.starts_with(|c: char| c.is_alphabetic() || c == '_')
        && !matches!(s, "True" | "False" | "None")
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// `Name`, `Name(args)`, `Name.Member(args)` or `Name().Member(args)`.
fn named(body: &str) -> Result<(Target, Args), String> {
    let name_end = body
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(body.len());
    let (name, mut rest) = body.split_at(name_end);
    let mut args = Vec::new();
    if rest.starts_with('(') {
        let close = closing(rest).ok_or_else(|| format!("`{body}`: an unclosed `(`"))?;
        args = arguments(&rest[1..close])?;
        rest = &rest[close + 1..];
    }
    let member = match rest.strip_prefix('.') {
        Some(call) => {
            let (member, margs) = call_of(call)?;
            if !args.is_empty() && !margs.is_empty() {
                return Err(format!(
                    "`{body}`: arguments on both the action and its event"
                ));
            }
            args.extend(margs);
            Some(member)
        }
        None if rest.trim().is_empty() => None,
        None => return Err(format!("`{body}`: unexpected `{}`", rest.trim())),
    };
    let target = Target::Named {
        name: name.to_string(),
        member,
    };
    Ok((target, args))
}

/// `Member(args)`.
fn call_of(call: &str) -> Result<(String, Args), String> {
    let call = call.trim();
    let (member, rest) = call.split_at(call.find('(').unwrap_or(call.len()));
    if !is_name(member) {
        return Err(format!(
            "`{call}`: not an event member such as `Finished()`"
        ));
    }
    let args = match rest {
        "" => Vec::new(),
        r => match closing(r) {
            Some(close) if close == r.len() - 1 => arguments(&r[1..close])?,
            _ => return Err(format!("`{call}`: an unclosed or trailing `(`")),
        },
    };
    Ok((member.to_string(), args))
}

/// Where the parenthesis opening `s` closes.
fn closing(s: &str) -> Option<usize> {
    let (mut quote, mut depth, mut escaped) = (None, 0usize, false);
    for (i, c) in s.char_indices() {
        if std::mem::take(&mut escaped) {
            continue;
        }
        match (quote, c) {
            (Some(_), '\\') => escaped = true,
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '(' | '[' | '{') => depth += 1,
            (None, ')' | ']' | '}') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// `a=1, b="x"`.
fn arguments(text: &str) -> Result<Vec<(Option<String>, V)>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    split_top(text, ",")
        .into_iter()
        .map(|a| {
            let (k, v) = a
                .split_once('=')
                .filter(|(k, _)| is_name(k.trim().trim_start_matches('$')))
                .ok_or_else(|| format!("`{}`: event arguments are `name=value`", a.trim()))?;
            Ok((
                Some(k.trim().trim_start_matches('$').to_string()),
                value(v)?,
            ))
        })
        .collect()
}

/// `bot say "Hi"`: the longest run of words that names a flow, then its
/// arguments (positional, or `$name=value`), split at spaces outside quotes.
fn flow(body: &str, is_flow: &dyn Fn(&str) -> bool) -> Result<(Target, Args), String> {
    let tokens = split_top(body, " ");
    let tokens: Vec<&str> = tokens.into_iter().filter(|t| !t.is_empty()).collect();
    let words = tokens
        .iter()
        .take_while(|t| t.chars().all(|c| c.is_alphanumeric() || c == '_'))
        .count();
    let named = (1..=words)
        .rev()
        .find(|n| is_flow(&tokens[..*n].join(" ")))
        // A bare word after a known flow's name is no argument: the words
        // name another flow, as NeMo reads `user said number`.
        .filter(|n| tokens.get(*n).is_none_or(|t| !is_word(t)))
        .unwrap_or(words);
    if named == 0 {
        return Err(format!("`{body}`: not a flow, an event or an action"));
    }
    let mut args = Vec::new();
    for t in &tokens[named..] {
        let kv = t
            .strip_prefix('$')
            .unwrap_or(t)
            .split_once('=')
            .filter(|(k, v)| is_name(k) && !v.starts_with('='));
        args.push(match kv {
            Some((k, v)) => (Some(k.to_string()), value(v)?),
            None => (None, value(t)?),
        });
    }
    Ok((Target::Flow(tokens[..named].join(" ")), args))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flows(name: &str) -> bool {
        ["bot say", "user said", "user said something", "pattern a"].contains(&name)
    }

    fn one(text: &str) -> Spec {
        match group(text, &flows).unwrap() {
            Group::One(s) => s,
            g => panic!("{g:?}"),
        }
    }

    #[test]
    fn specs_read_as_colang_2_writes_them() {
        let s = one("UtteranceUserAction.Finished(final_transcript=\"hi\") as $e");
        assert_eq!(
            s.target,
            Target::Named {
                name: "UtteranceUserAction".into(),
                member: Some("Finished".into())
            }
        );
        assert_eq!(s.bind.as_deref(), Some("e"));
        assert_eq!(s.args.len(), 1);
        let s = one("user said something");
        assert_eq!(s.target, Target::Flow("user said something".into()));
        assert!(s.args.is_empty());
        let s = one("bot say \"Hi {$name}\"");
        assert_eq!(s.target, Target::Flow("bot say".into()));
        assert!(matches!(&s.args[0], (None, V::T(parts)) if parts.len() == 2));
        let s = one("$ref.Finished()");
        assert_eq!(
            s.target,
            Target::Ref {
                var: "ref".into(),
                member: "Finished".into()
            }
        );
        let g = group(
            "((A(x=\"ok\") or A(x=\"sure\")) and B(g=\"up\")) or C()",
            &flows,
        )
        .unwrap();
        assert!(matches!(&g, Group::Or(v) if v.len() == 2 && matches!(&v[0], Group::And(_))));
        assert_eq!(g.specs().len(), 4);
        assert!(group("UtteranceBotAction(script=\"a\" and", &flows).is_err());
        assert!(group("A(1)", &flows).is_err());
    }

    proptest::proptest! {
        #[test]
        fn reading_specs_never_panics(text in "\\PC{0,160}") {
            let _ = group(&text, &flows);
            let _ = value(&text);
        }

        #[test]
        fn spec_shaped_text_never_panics(text in "([($]?[a-zA-Z_.]{0,6}[(]?[a-z_=\"{}$ ,]{0,8}[)]?( and | or | as [$]r)?){0,8}") {
            let _ = group(&text, &flows);
        }
    }

    #[test]
    fn continuation_lines_join_their_statement() {
        let lines: Vec<Line<'_>> = ["match (A()", "  or B())", "  bot say \"x\"", "or when C()"]
            .iter()
            .enumerate()
            .map(|(i, t)| Line {
                number: i + 1,
                indent: t.len() - t.trim_start().len(),
                text: t.trim(),
            })
            .collect();
        let t = tree(&lines);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].text, "match (A() or B())");
        assert_eq!(t[0].block.len(), 1);
    }
}

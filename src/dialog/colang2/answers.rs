//! Reading what the LLM answers to NeMo's Colang 2 prompts, as NeMo
//! reads it: a user intent, a bot intent and action, a flow's lines, a
//! Python literal; and the values templates see.

use serde_json::Value;

use crate::dialog::expr;

/// `text` as a flow name: words of letters, digits and `_`, one space apart.
fn flow_name(text: &str) -> String {
    let name: String = text
        .chars()
        .map(|c| match c.is_alphanumeric() || c == '_' {
            true => c,
            false => ' ',
        })
        .collect();
    name.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The intent in the LLM's answer: its first line, without a `user
/// intent:` label, as a flow name starting `user `.
pub(super) fn intent_of(answer: &str) -> String {
    let line = crate::dialog::message::first_line(answer);
    let line = line
        .rsplit_once("user intent:")
        .map_or(line, |(_, r)| r)
        .trim();
    match flow_name(line).as_str() {
        "" => "user was unclear".into(),
        n if n.starts_with("user ") => n.into(),
        n => format!("user {n}"),
    }
}

/// The first `bot intent:` and `bot action:` (with its `and …` lines).
pub(super) fn bot_intent_and_action(answer: &str) -> Option<(String, String)> {
    let mut intent = None;
    let mut action: Option<String> = None;
    let mut lines = answer.lines().peekable();
    // The prompt ends in `bot intent:`: the first line is the intent.
    if let Some(first) = lines.peek().map(|l| l.trim())
        && !first.starts_with("bot action:")
    {
        intent = Some(first.trim_start_matches("bot intent:").trim().to_string());
        lines.next();
    }
    for line in lines {
        let t = line.trim();
        if let Some(a) = &mut action {
            match t.strip_prefix("and ") {
                Some(more) => {
                    a.push_str("\n    and ");
                    a.push_str(more);
                    continue;
                }
                None => break,
            }
        }
        if let Some(i) = t.strip_prefix("bot intent:").filter(|_| intent.is_none()) {
            intent = Some(i.trim().to_string());
        } else if let Some(a) = t.strip_prefix("bot action:") {
            action = Some(a.trim().to_string());
        }
    }
    let action = action.filter(|a| !a.is_empty())?;
    let intent = intent
        .filter(|i| i.starts_with("bot "))
        .unwrap_or_else(|| "bot reacts accordingly".into());
    Some((flow_name(&intent), action))
}

/// The LLM's flow lines as a body, as NeMo cuts them: at a `user …` line
/// it waits for the user; anything after a `...` goes.
pub(super) fn continuation_body(answer: &str) -> Option<String> {
    let mut out = Vec::new();
    for line in answer.lines().skip_while(|l| l.trim().is_empty()) {
        let t = line.trim();
        if t.is_empty() || t.starts_with("```") {
            continue;
        }
        if t.starts_with("user ") {
            break;
        }
        out.push(format!("  {t}"));
        if t == "..." {
            break;
        }
    }
    (!out.is_empty()).then(|| out.join("\n"))
}

/// A JSON value as templates see it.
pub(super) fn jinja(v: &Value) -> minijinja::Value {
    match v {
        Value::Null => minijinja::Value::from(()),
        Value::Bool(b) => minijinja::Value::from(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => minijinja::Value::from(i),
            None => minijinja::Value::from(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => minijinja::Value::from(s.as_str()),
        Value::Array(a) => a.iter().map(jinja).collect(),
        Value::Object(o) => minijinja::Value::from(
            o.iter()
                .map(|(k, v)| (k.clone(), jinja(v)))
                .collect::<std::collections::BTreeMap<String, minijinja::Value>>(),
        ),
    }
}

/// The flow the LLM wrote for `name`, as NeMo completes it: its own
/// `flow …` head if it wrote one, else its lines as the body.
pub(super) fn named_flow(name: &str, answer: &str) -> String {
    let lines: Vec<&str> = answer
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| !l.trim().starts_with("```"))
        .collect();
    match lines.first() {
        Some(head) if head.starts_with("flow ") => lines.join("\n"),
        _ => {
            let body: Vec<String> = lines
                .iter()
                .filter(|l| !l.trim().is_empty())
                .map(|l| format!("  {}", l.trim_start()))
                .collect();
            match body.is_empty() {
                true => format!("flow {name}\n  pass"),
                false => format!("flow {name}\n{}", body.join("\n")),
            }
        }
    }
}

/// A docstring without its common indentation.
pub(super) fn dedent(doc: &str) -> String {
    let indent = doc
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    doc.lines()
        .map(|l| l.get(indent..).unwrap_or(l.trim_start()))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

/// The value on the first line of the LLM's answer, as NeMo's
/// `literal_eval` reads it (`"text"`, `42`, `True`, `[1, 2]`); `true` /
/// `false` count as booleans. Anything else is an error, as in NeMo: a
/// guard must not take a stray word for a value.
pub(super) fn literal(answer: &str, var: &str) -> Result<Value, String> {
    let line = answer.trim().lines().next().unwrap_or_default().trim();
    let line = line.strip_suffix(';').unwrap_or(line).trim();
    let line = line
        .strip_prefix(&format!("${var} ="))
        .map_or(line, str::trim);
    match line {
        "true" => return Ok(Value::Bool(true)),
        "false" => return Ok(Value::Bool(false)),
        _ => {}
    }
    let e = expr::parse(line).map_err(|_| {
        format!(
            "the LLM's value for `${var}` is not a literal: `{}`",
            shorten(line)
        )
    })?;
    // Only a literal is evaluated (no function of the LLM's runs).
    Some(&e)
        .filter(|e| is_literal(e))
        .and_then(|e| e.eval(&|_| None).ok())
        .ok_or_else(|| {
            format!(
                "the LLM's value for `${var}` is not a literal: `{}`",
                shorten(line)
            )
        })
}

fn is_literal(e: &expr::Expr) -> bool {
    match e {
        expr::Expr::Lit(_) => true,
        expr::Expr::List(items) => items.iter().all(is_literal),
        expr::Expr::Neg(e) => matches!(**e, expr::Expr::Lit(Value::Number(_))),
        _ => false,
    }
}

fn shorten(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_read_as_python_literals() {
        assert_eq!(
            literal("\"Hello there\"\nmore", "x").unwrap(),
            json!("Hello there")
        );
        assert_eq!(literal(" True ", "x").unwrap(), json!(true));
        assert_eq!(literal("false;", "x").unwrap(), json!(false));
        assert_eq!(literal("$x = 42", "x").unwrap(), json!(42));
        assert_eq!(literal("-3", "x").unwrap(), json!(-3));
        assert_eq!(literal("['a', 2]", "x").unwrap(), json!(["a", 2]));
        assert!(literal("Safe", "x").unwrap_err().contains("not a literal"));
        assert!(literal("$secret", "x").is_err());
        assert!(literal("1 + 1", "x").is_err());
    }

    #[test]
    fn intents_and_bot_actions_are_read_from_the_answer() {
        assert_eq!(
            intent_of(" user expressed greeting\n"),
            "user expressed greeting"
        );
        assert_eq!(
            intent_of("user intent: user asked about cars"),
            "user asked about cars"
        );
        assert_eq!(intent_of("asked \"why\"?"), "user asked why");
        assert_eq!(intent_of("\n"), "user was unclear");
        let (i, a) = bot_intent_and_action(
            " bot express greeting\nbot action: bot say \"Hi!\"\n  and bot gesture \"Wave\"\nuser action: x",
        )
        .unwrap();
        assert_eq!(i, "bot express greeting");
        assert_eq!(a, "bot say \"Hi!\"\n    and bot gesture \"Wave\"");
        assert!(bot_intent_and_action("bot intent: bot think").is_none());
        let body = continuation_body("\nbot say \"Cars!\"\nuser said \"more\"\n").unwrap();
        assert_eq!(body, "  bot say \"Cars!\"");
    }
}

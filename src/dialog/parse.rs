//! The Colang 1.0 parser for the subset streamguard runs.
//!
//! Supported: `define user NAME` with quoted examples, `define bot NAME` with
//! quoted messages, `define flow [NAME]` / `define subflow NAME` with the
//! steps of [`super::steps`]; `#` comments and `"""` docstrings. Anything
//! else is refused with the file, the line and the construct.

use super::{ColangError, Dialog, Flow, steps::parse_steps};

/// The most comment text kept for one line.
const MAX_COMMENT: usize = 4096;
/// How deep a line may be indented (a bound on the nesting the parser recurses into).
const MAX_INDENT: usize = 160;

pub(super) struct Line<'a> {
    pub number: usize,
    pub indent: usize,
    pub text: &'a str,
    /// The `#` comment right above the line (or after it): `$x = ...`
    /// takes it as the instructions for generating the value.
    pub comment: &'a str,
}

/// Removes a `#` comment that is not inside quotes.
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

/// A quoted string's content, or `None` when the text is not one string.
fn quoted(text: &str) -> Option<String> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('"') || inner.contains("\\\"")).then(|| inner.replace("\\\"", "\""))
}

/// A name made of words (`express greeting`, `ask about capabilities`).
pub(super) fn name(text: &str) -> Option<String> {
    let t = text.trim();
    let ok = !t.is_empty()
        && t.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '_' | '-' | '\'' | '.' | '?' | ','));
    ok.then(|| t.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// What a line that is not Colang 1.0 (or not supported) is called in errors.
pub(super) fn refusal(text: &str) -> String {
    let first = text.split_whitespace().next().unwrap_or_default();
    match first {
        "for" => "`for` loops are not Colang 1.0; use `while`".into(),
        "flow" | "import" | "await" | "match" | "send" | "start" | "activate" | "global"
        | "@meta" => {
            format!(
                "`{first}` is Colang 2 syntax: a Colang 2 config says `colang_version: \"2.x\"` in config.yml \
                 (streamguard runs its guardrail configs); else write Colang 1.0 (`define …`)"
            )
        }
        _ => format!("`{}` is not a supported Colang 1.0 construct", text.trim()),
    }
}

/// A line with a step: its number, indent, text and the comment above it.
type Owned = (usize, usize, String, String);

/// The lines of a file that hold steps (comments and docstrings removed).
fn owned_lines(text: &str, err: &ErrFn<'_>) -> Result<Vec<Owned>, ColangError> {
    let mut owned = Vec::new();
    // The comment lines since the last line with a step.
    let mut comment = String::new();
    // The line a docstring (`"""…"""`, NeMo skips them) opened on.
    let mut doc: Option<usize> = None;
    for (i, raw) in text.lines().enumerate() {
        let t = raw.trim();
        if doc.is_some() {
            if t.contains("\"\"\"") {
                doc = None;
            }
            continue;
        }
        if let Some(rest) = t.strip_prefix("\"\"\"") {
            if !rest.contains("\"\"\"") {
                doc = Some(i + 1);
            }
            continue;
        }
        let no_tab = raw.replace('\t', "    ");
        let body = strip_comment(&no_tab).trim_end().to_string();
        let note = no_tab[body.len()..].trim().trim_start_matches('#').trim();
        if body.trim().is_empty() {
            if !note.is_empty() && comment.len() < MAX_COMMENT {
                if !comment.is_empty() {
                    comment.push(' ');
                }
                comment.push_str(note);
            }
            continue;
        }
        if !note.is_empty() && comment.is_empty() {
            comment.push_str(note);
        }
        let indent = body.len() - body.trim_start().len();
        if indent > MAX_INDENT {
            return Err(err(
                i + 1,
                format!("indented deeper than {MAX_INDENT} columns"),
            ));
        }
        owned.push((
            i + 1,
            indent,
            body.trim().to_string(),
            std::mem::take(&mut comment),
        ));
    }
    if let Some(line) = doc {
        return Err(err(line, "a docstring (`\"\"\"`) that never closes".into()));
    }
    Ok(owned)
}

/// Parses one `.co` file into `dialog`.
pub fn parse_into(
    dialog: &mut Dialog,
    file: &std::path::Path,
    text: &str,
) -> Result<(), ColangError> {
    let err = |line: usize, message: String| ColangError {
        file: file.to_path_buf(),
        line,
        message,
    };
    let owned = owned_lines(text, &err)?;
    let lines: Vec<Line<'_>> = owned
        .iter()
        .map(|(n, ind, t, c)| Line {
            number: *n,
            indent: *ind,
            text: t.as_str(),
            comment: c.as_str(),
        })
        .collect();
    let mut at = 0;
    while at < lines.len() {
        let head = &lines[at];
        if head.indent != 0 {
            return Err(err(
                head.number,
                format!("unexpected indentation before `{}`", head.text),
            ));
        }
        let body_end = lines[at + 1..]
            .iter()
            .position(|l| l.indent == 0)
            .map_or(lines.len(), |p| at + 1 + p);
        let body = &lines[at + 1..body_end];
        let words: Vec<&str> = head.text.split_whitespace().collect();
        match words.as_slice() {
            ["define", kind @ ("user" | "bot"), rest @ ..] => {
                define_messages(dialog, kind == &"user", rest, head, body, &err)?
            }
            ["define", kind @ ("flow" | "subflow"), rest @ ..] => {
                define_flow(dialog, (file, kind == &"subflow"), rest, head, body, &err)?
            }
            _ => return Err(err(head.number, refusal(head.text))),
        }
        at = body_end;
    }
    Ok(())
}

pub(super) type ErrFn<'a> = dyn Fn(usize, String) -> ColangError + 'a;

/// `define user NAME` / `define bot NAME` and their quoted lines.
fn define_messages(
    dialog: &mut Dialog,
    user: bool,
    rest: &[&str],
    head: &Line<'_>,
    body: &[Line<'_>],
    err: &ErrFn<'_>,
) -> Result<(), ColangError> {
    let intent = name(&rest.join(" "))
        .ok_or_else(|| err(head.number, format!("`{}` needs a name", head.text)))?;
    let mut texts = Vec::new();
    for l in body {
        let t = l.text.strip_prefix("- ").unwrap_or(l.text);
        texts.push(quoted(t).ok_or_else(|| {
            err(
                l.number,
                format!("expected a quoted message, found `{}`", l.text),
            )
        })?);
    }
    if user {
        match dialog.users.iter_mut().find(|(n, _)| *n == intent) {
            Some((_, ex)) => ex.extend(texts),
            None => dialog.users.push((intent, texts)),
        }
    } else {
        dialog.bots.entry(intent).or_default().extend(texts);
    }
    Ok(())
}

/// `define flow [NAME]` / `define subflow NAME` and their steps.
fn define_flow(
    dialog: &mut Dialog,
    (file, subflow): (&std::path::Path, bool),
    rest: &[&str],
    head: &Line<'_>,
    body: &[Line<'_>],
    err: &ErrFn<'_>,
) -> Result<(), ColangError> {
    let flow_name = if rest.is_empty() {
        None
    } else {
        Some(
            name(&rest.join(" "))
                .ok_or_else(|| err(head.number, format!("bad flow name in `{}`", head.text)))?,
        )
    };
    let base = body.first().map_or(2, |l| l.indent);
    let (steps, used) = parse_steps(body, 0, base, err)?;
    if used != body.len() {
        return Err(err(
            body[used].number,
            format!("unexpected indentation before `{}`", body[used].text),
        ));
    }
    let flow = Flow {
        name: flow_name.clone(),
        steps,
        file: file.to_path_buf(),
        line: head.number,
    };
    if subflow {
        let n = flow_name.ok_or_else(|| err(head.number, "a subflow needs a name".into()))?;
        dialog.subflows.insert(n, flow);
    } else {
        dialog.flows.push(flow);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialog::Step;
    use std::path::Path;

    fn parse(text: &str) -> Result<Dialog, ColangError> {
        let mut d = Dialog::default();
        parse_into(&mut d, Path::new("rails.co"), text)?;
        Ok(d)
    }

    #[test]
    fn every_supported_construct_parses() {
        let d = parse(
            "# greeting\ndefine user express greeting\n  \"Hello\"\n  \"Hi\" # short\n\ndefine bot express greeting\n  \"Hello there!\"\n\n\
             define subflow ask\n  bot ask how are you\n\ndefine flow greeting\n  user express greeting\n  bot express greeting\n  do ask\n\n  \
             when user express feeling good\n    bot express positive emotion\n  else when user express feeling bad\n    bot express empathy\n    stop\n  else\n    bot ask again\n\ndefine flow\n  user ask about politics\n  bot refuse to respond\n",
        )
        .unwrap();
        assert_eq!(
            d.users[0],
            ("express greeting".into(), vec!["Hello".into(), "Hi".into()])
        );
        assert_eq!(d.bots["express greeting"], ["Hello there!"]);
        assert_eq!(
            d.subflows["ask"].steps,
            [Step::Bot("ask how are you".into())]
        );
        let f = &d.flows[0];
        assert_eq!(f.name.as_deref(), Some("greeting"));
        assert_eq!(
            f.steps[..3],
            [
                Step::User("express greeting".into()),
                Step::Bot("express greeting".into()),
                Step::Do("ask".into())
            ]
        );
        let Step::Branch(arms) = &f.steps[3] else {
            panic!("a branch")
        };
        assert_eq!(arms.len(), 3);
        assert_eq!(
            arms[1],
            (
                Some("express feeling bad".into()),
                vec![Step::Bot("express empathy".into()), Step::Stop]
            )
        );
        assert_eq!(arms[2].0, None);
        assert_eq!(d.flows[1].name, None);
    }

    #[test]
    fn an_else_when_on_an_event_parses_as_an_arm_that_never_fires() {
        let d = parse(
            "define flow\n  user ask about work\n  bot ask to deliver sword\n\n  when user agree\n    bot thank\n\n  else when express disagreement\n    bot express goodbye\n  else\n    bot shrug\n",
        )
        .unwrap();
        let Step::Branch(arms) = &d.flows[0].steps[2] else {
            panic!("a branch")
        };
        assert_eq!(arms.len(), 2, "the user arm and the else arm");
        assert_eq!(arms[0].0.as_deref(), Some("agree"));
        assert_eq!(arms[1].0, None);
    }

    #[test]
    fn unsupported_constructs_are_refused_with_the_line() {
        let cases = [
            (
                "define flow\n  user hi\n  execute check-facts!\n",
                3,
                "not an action or event name",
            ),
            ("define flow\n  $answer = \n", 2, "an empty expression"),
            ("define flow\n  $a == 1\n", 2, "not an assignment"),
            (
                "define subflow x\n  \"\"\"Opens\n  and never closes\n",
                2,
                "never closes",
            ),
            ("define flow\n  for $x in $y\n", 2, "`for` loops"),
            ("flow main\n  user said \"hi\"\n", 1, "Colang 2 syntax"),
            ("import core\n", 1, "Colang 2 syntax"),
            (
                "define flow\n  user hi\n  if $x = 1\n    bot no\n",
                3,
                "assignment, not a comparison",
            ),
            (
                "define user greet\n  Hello\n",
                2,
                "expected a quoted message",
            ),
            (
                "define flow\n  else\n    bot x\n",
                2,
                "without a `when` or `if`",
            ),
            (
                "define flow\n  when user x\n  bot y\n",
                2,
                "no indented steps",
            ),
            ("  define user x\n", 1, "unexpected indentation"),
        ];
        for (text, line, needle) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.message.contains(needle), "{text:?}: {e}");
            assert!(
                e.to_string().starts_with(&format!("rails.co:{line}:")),
                "{e}"
            );
        }
    }

    proptest::proptest! {
        /// Whatever the text, the parser returns a dialog or an error; it never panics.
        #[test]
        fn the_parser_never_panics(text in "(define (user|bot|flow|subflow) ?[a-z ]{0,8}\n|  (user|bot|do|when user|else when user|else|stop|if|else if|while|execute|create event|return|\\$[a-z]{1,3} =|bot \\$)? ?[a-z\"'#$.()\\[\\]=<>!,+ ]{0,12}:?\n|\t|#|\"\"\"|\"|[a-z ]{0,6}\n){0,30}") {
            let _ = parse(&text);
        }

        #[test]
        fn arbitrary_bytes_never_panic(text in "\\PC{0,200}") {
            let _ = parse(&text);
        }
    }
}

//! The Colang 1.0 parser for the subset streamguard runs.
//!
//! Supported: `define user NAME` with quoted examples, `define bot NAME` with
//! quoted messages, `define flow [NAME]` / `define subflow NAME` with the
//! steps `user NAME`, `bot NAME`, `when user NAME` / `else when user NAME` /
//! `else` branches, `do SUBFLOW` and `stop`; `#` comments. Anything else is
//! refused with the file, the line and the construct.

use super::{ColangError, Dialog, Flow, Step};

struct Line<'a> {
    number: usize,
    indent: usize,
    text: &'a str,
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
fn name(text: &str) -> Option<String> {
    let t = text.trim();
    let ok = !t.is_empty()
        && t.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '_' | '-' | '\'' | '.' | '?' | ','));
    ok.then(|| t.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// What a line that is not Colang 1.0 (or not supported) is called in errors.
fn refusal(text: &str) -> String {
    let first = text.split_whitespace().next().unwrap_or_default();
    match first {
        "execute" => "`execute` actions are not supported; use the built-in rail flows".into(),
        f if f.starts_with('$') => format!("`{f}` variables are not supported"),
        "if" | "else if" | "while" | "for" => {
            format!("`{first}` conditions are not supported (only `when user …` branches)")
        }
        "flow" | "import" | "await" | "match" | "send" | "start" | "activate" | "global"
        | "@meta" => {
            format!("`{first}` is Colang 2 syntax; streamguard runs Colang 1.0 (`define …`)")
        }
        _ => format!("`{}` is not a supported Colang 1.0 construct", text.trim()),
    }
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
    let mut owned = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let no_tab = raw.replace('\t', "    ");
        let body = strip_comment(&no_tab).trim_end().to_string();
        if body.trim().is_empty() {
            continue;
        }
        let indent = body.len() - body.trim_start().len();
        owned.push((i + 1, indent, body.trim().to_string()));
    }
    let lines: Vec<Line<'_>> = owned
        .iter()
        .map(|(n, ind, t)| Line {
            number: *n,
            indent: *ind,
            text: t.as_str(),
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
                define_flow(dialog, kind == &"subflow", rest, head, body, &err)?
            }
            _ => return Err(err(head.number, refusal(head.text))),
        }
        at = body_end;
    }
    Ok(())
}

type ErrFn<'a> = dyn Fn(usize, String) -> ColangError + 'a;

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
    subflow: bool,
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
    };
    if subflow {
        let n = flow_name.ok_or_else(|| err(head.number, "a subflow needs a name".into()))?;
        dialog.subflows.insert(n, flow);
    } else {
        dialog.flows.push(flow);
    }
    Ok(())
}

/// Parses the steps of a block at `indent`, from `lines[start..]`; returns
/// the steps and the index after the block.
fn parse_steps(
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
            let mut arms = Vec::new();
            let (body, next) = parse_block(lines, at, indent, err)?;
            arms.push((Some(arm_intent(intent, l.number, err)?), body));
            at = next;
            while at < lines.len() && lines[at].indent == indent {
                let t = lines[at].text;
                if let Some(intent) = t.strip_prefix("else when user ") {
                    let n = lines[at].number;
                    let (body, next) = parse_block(lines, at, indent, err)?;
                    arms.push((Some(arm_intent(intent, n, err)?), body));
                    at = next;
                } else if let Some(event) = t.strip_prefix("else when ") {
                    // No `user`: NeMo reads it as a match on an event of that
                    // name, which never comes in this runtime. Its steps are
                    // checked; the arm can never fire.
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
            steps.push(Step::Branch(arms));
            continue;
        }
        let step = if let Some(rest) = text.strip_prefix("user ") {
            Step::User(name(rest).ok_or_else(|| err(l.number, refusal(text)))?)
        } else if let Some(rest) = text.strip_prefix("bot ") {
            Step::Bot(name(rest).ok_or_else(|| err(l.number, refusal(text)))?)
        } else if let Some(rest) = text.strip_prefix("do ") {
            Step::Do(name(rest).ok_or_else(|| err(l.number, refusal(text)))?)
        } else if text == "stop" {
            Step::Stop
        } else if text.starts_with("else") {
            return Err(err(
                l.number,
                format!("`{text}` without a `when` before it"),
            ));
        } else {
            return Err(err(l.number, refusal(text)));
        };
        steps.push(step);
        at += 1;
    }
    Ok((steps, at))
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

#[cfg(test)]
mod tests {
    use super::*;
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
                "define flow\n  user hi\n  execute check_facts\n",
                3,
                "`execute` actions",
            ),
            (
                "define flow\n  $answer = execute x\n",
                2,
                "`$answer` variables",
            ),
            ("flow main\n  user said \"hi\"\n", 1, "Colang 2 syntax"),
            ("import core\n", 1, "Colang 2 syntax"),
            (
                "define flow\n  user hi\n  if $x\n    bot no\n",
                3,
                "`if` conditions",
            ),
            (
                "define user greet\n  Hello\n",
                2,
                "expected a quoted message",
            ),
            ("define flow\n  else\n    bot x\n", 2, "without a `when`"),
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
        fn the_parser_never_panics(text in "(define (user|bot|flow|subflow) ?[a-z ]{0,8}\n|  (user|bot|do|when user|else when user|else|stop)? ?[a-z\"# ]{0,10}\n|\t|#|\"|[a-z ]{0,6}\n){0,30}") {
            let _ = parse(&text);
        }

        #[test]
        fn arbitrary_bytes_never_panic(text in "\\PC{0,200}") {
            let _ = parse(&text);
        }
    }
}

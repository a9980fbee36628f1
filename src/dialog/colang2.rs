//! Colang 2's interaction language, the part NeMo's tutorials start with:
//! `flow main` as a sequence of `user said "…"` / `user said something` /
//! `bot say "…"` steps, flows that name them (`user expressed greeting` =
//! `user said "hi" or user said "hello"`, `bot express greeting` = `bot say
//! "Hello world!"`), and `activate` of such flows and of `llm continuation`.
//! As in NeMo: `user said` matches the message exactly; a flow waits at each
//! `user` step; a finished `main` starts again with the next turn, an
//! activated flow at once; the more specific match (`user said "hi"` over
//! `user said something`) answers, and a message no flow waits for gets
//! `llm continuation`'s answer (the main model), else an empty one. The
//! flows' positions are the dialog state. Anything else is refused at load
//! with the file, the line and the construct.

use std::sync::Arc;

use futures_util::StreamExt;

use crate::{
    config::{Config, ConfigError, colang2::read_flows},
    engine::answer::{AnswerRequest, Answerer, DialogTurn, Piece, PieceStream},
    llm::{Provider, Role},
};

/// How deep flows may name flows.
const MAX_DEPTH: usize = 8;
/// The most user messages one request replays.
const MAX_TURNS: usize = 1000;

/// What a `user` step accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Match {
    /// `user said "…"`: the message exactly (NeMo's score 1.0).
    Said(String),
    /// `user said something` (less specific).
    Something,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// Waits for a message one of these accepts.
    User(Vec<Match>),
    /// Says one of these (NeMo picks one at random).
    Bot(Vec<String>),
}

/// One runnable flow: `main` or an activated one.
#[derive(Debug)]
struct Program {
    steps: Vec<Step>,
    /// Activated (restarts when it finishes), or `main` (restarts next turn).
    activated: bool,
}

/// A config's Colang 2 interaction flows.
#[derive(Debug)]
pub struct Interaction {
    programs: Vec<Program>,
    /// `activate llm continuation`: the main model answers what no flow does.
    continuation: bool,
}

/// A parsed flow definition: its statements with their lines.
type Defs<'a> = std::collections::BTreeMap<&'a str, (std::path::PathBuf, Vec<(usize, String)>)>;

impl Interaction {
    /// Reads the config's flows, or says which construct it does not run.
    pub fn load(config: &Config) -> Result<Option<Interaction>, ConfigError> {
        let Some(sources) = config.colang_2_interaction() else {
            return Ok(None);
        };
        let mut defs: Defs<'_> = Defs::new();
        for source in sources {
            for flow in read_flows(source)? {
                let name = flow.name.split(" $").next().unwrap_or(flow.name).trim();
                defs.insert(name, (source.path.clone(), statements(&flow.body)));
            }
        }
        let (file, main) = defs
            .get("main")
            .cloned()
            .ok_or_else(|| ConfigError::invalid(config.main_file(), "flow main", "is missing"))?;
        let mut out = Interaction {
            programs: vec![Program {
                steps: Vec::new(),
                activated: false,
            }],
            continuation: false,
        };
        for (line, text) in &main {
            let err = |m: String| ConfigError::invalid(&file, format!("line {line}"), m);
            match text.strip_prefix("activate ") {
                Some("llm continuation") => out.continuation = true,
                Some(name) => {
                    let (f, body) = defs.get(name.trim()).ok_or_else(|| {
                        err(format!(
                            "`{text}`: not a flow of this config (of NeMo's library flows streamguard \
                             runs `llm continuation`)"
                        ))
                    })?;
                    let steps = steps_of(&defs, f, body, 0)?;
                    out.programs.push(Program {
                        steps,
                        activated: true,
                    });
                }
                None => {
                    let step = step(&defs, text, 0, &err)?;
                    out.programs[0].steps.extend(step);
                }
            }
        }
        Ok(Some(out))
    }
}

/// A flow body's statements, `or …` continuation lines joined to theirs.
fn statements(body: &[crate::config::colang2::Line<'_>]) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    for line in body {
        match (line.text.starts_with("or "), out.last_mut()) {
            (true, Some((_, text))) => {
                text.push(' ');
                text.push_str(line.text);
            }
            _ => out.push((line.number, line.text.to_string())),
        }
    }
    out
}

fn steps_of(
    defs: &Defs<'_>,
    file: &std::path::Path,
    body: &[(usize, String)],
    depth: usize,
) -> Result<Vec<Step>, ConfigError> {
    let mut out = Vec::new();
    for (line, text) in body {
        let err = |m: String| ConfigError::invalid(file, format!("line {line}"), m);
        out.extend(step(defs, text, depth, &err)?);
    }
    Ok(out)
}

/// The steps of one statement: `user said "hi" or user expressed greeting`,
/// `bot say "x"`, a flow of such steps by name, or their UMIM forms
/// (`match UtteranceUserActionFinished(final_transcript="hi")`, `await
/// UtteranceBotAction(script="x")`).
fn step(
    defs: &Defs<'_>,
    text: &str,
    depth: usize,
    err: &dyn Fn(String) -> ConfigError,
) -> Result<Vec<Step>, ConfigError> {
    let text = text.strip_prefix("await ").unwrap_or(text).trim();
    let not_yet = || {
        err(format!(
            "`{text}`: streamguard runs Colang 2 flows of `user said \"…\"` / `user said something` / `bot say \"…\"` \
             steps (or their `match UtteranceUserActionFinished(…)` / `UtteranceBotAction(script=…)` forms), flows \
             that name them and `activate` (not yet: variables, `when`, `if`, `...`, other actions and events)"
        ))
    };
    let parts = split_or(text);
    let mut users = Vec::new();
    let mut bots = Vec::new();
    for part in &parts {
        if let Some(step) = plain_step(part) {
            match step.ok_or_else(not_yet)? {
                Step::User(m) => users.extend(m),
                Step::Bot(b) => bots.extend(b),
            }
            continue;
        }
        let Some((file, body)) = defs.get(part) else {
            return Err(
                match part.starts_with("user ") || part.starts_with("bot ") {
                    true => err(format!(
                        "`{part}`: no `flow {part}` (and not `user said` / `bot say`)"
                    )),
                    false => not_yet(),
                },
            );
        };
        if depth >= MAX_DEPTH {
            return Err(err(format!(
                "`{part}`: flows name flows more than {MAX_DEPTH} deep"
            )));
        }
        let inner = steps_of(defs, file, body, depth + 1)?;
        match (parts.len(), inner.as_slice()) {
            (1, _) => return Ok(inner),
            (_, [Step::User(m)]) => users.extend(m.iter().cloned()),
            (_, [Step::Bot(b)]) => bots.extend(b.iter().cloned()),
            _ => {
                return Err(err(format!(
                    "`{part}`: an `or` of flows of more than one step is not run yet"
                )));
            }
        }
    }
    match (users.is_empty(), bots.is_empty()) {
        (true, false) => Ok(vec![Step::Bot(bots)]),
        (_, true) => Ok(vec![Step::User(users)]),
        _ => Err(err(format!(
            "`{text}`: an `or` of user and bot steps is not run yet"
        ))),
    }
}

/// A `user said` / `bot say` step or its UMIM form; `Some(None)` when it
/// is one of those forms written in a way not run yet. A `match` of
/// another event waits for good: a chat sends only the user's messages.
fn plain_step(part: &str) -> Option<Option<Step>> {
    if let Some(rest) = part.strip_prefix("user said ") {
        return Some(match rest.trim() {
            "something" => Some(Step::User(vec![Match::Something])),
            quoted => literal(quoted).map(|t| Step::User(vec![Match::Said(t)])),
        });
    }
    if let Some(rest) = part.strip_prefix("bot say ") {
        return Some(literal(rest.trim()).map(|t| Step::Bot(vec![t])));
    }
    if let Some(event) = part.strip_prefix("match ") {
        let utterance = [
            "UtteranceUserActionFinished",
            "UtteranceUserAction.Finished",
        ];
        if let Some(args) = call(event, &utterance) {
            return Some(match args {
                "" => Some(Step::User(vec![Match::Something])),
                a => a
                    .strip_prefix("final_transcript=")
                    .and_then(|q| literal(q.trim()))
                    .map(|t| Step::User(vec![Match::Said(t)])),
            });
        }
        let name = event.split('(').next().unwrap_or_default();
        let other = name.chars().all(|c| c.is_alphanumeric() || c == '_') && event.ends_with(')');
        return Some((other && !event.contains(" as ")).then(|| Step::User(Vec::new())));
    }
    let action = part
        .strip_prefix("send ")
        .and_then(|p| call(p, &["StartUtteranceBotAction"]))
        .or_else(|| {
            call(
                part.strip_prefix("start ").unwrap_or(part),
                &["UtteranceBotAction"],
            )
        })?;
    Some(
        action
            .strip_prefix("script=")
            .and_then(|q| literal(q.trim()))
            .map(|t| Step::Bot(vec![t])),
    )
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

/// `a or b`, split outside quotes and parentheses.
fn split_or(text: &str) -> Vec<&str> {
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

/// A double- or single-quoted string's text (no `{$var}` in it).
fn literal(quoted: &str) -> Option<String> {
    ['"', '\''].into_iter().find_map(|q| {
        let inner = quoted.strip_prefix(q)?.strip_suffix(q)?;
        (!inner.contains(q) && !inner.contains("{$")).then(|| inner.to_string())
    })
}

/// What a turn gave: what the flows said, or the main model's answer.
enum Answer {
    Said(Vec<String>),
    Continue,
}

impl Interaction {
    /// The flows' positions at the start (every flow at its first step).
    fn start(&self) -> Vec<usize> {
        vec![0; self.programs.len()]
    }

    /// One user message: the flow that matches it best advances (saying its
    /// `bot` steps up to its next `user` step); others that matched too
    /// advance if they say nothing now, else start over, as NeMo's losing
    /// flows are aborted (and activated ones restart).
    fn turn(&self, at: &mut [usize], message: &str) -> Answer {
        let mut said = Vec::new();
        for (i, p) in self.programs.iter().enumerate() {
            if at[i] >= p.steps.len() {
                at[i] = 0;
            }
            // A flow that starts by speaking speaks first.
            self.run_bots(i, at, &mut said);
        }
        let scores: Vec<Option<u8>> = self
            .programs
            .iter()
            .enumerate()
            .map(|(i, p)| match p.steps.get(at[i]) {
                Some(Step::User(ms)) => ms.iter().filter_map(|m| score(m, message)).max(),
                _ => None,
            })
            .collect();
        let best = scores.iter().flatten().max().copied();
        let Some(best) = best else {
            return match (self.continuation, said.is_empty()) {
                (true, true) => Answer::Continue,
                _ => Answer::Said(said),
            };
        };
        let winner = scores.iter().position(|s| *s == Some(best)).unwrap_or(0);
        for (i, s) in scores.iter().enumerate() {
            if s.is_none() {
                continue;
            }
            at[i] += 1;
            let speaks = matches!(self.programs[i].steps.get(at[i]), Some(Step::Bot(_)));
            if i == winner {
                self.run_bots(i, at, &mut said);
            } else if speaks {
                at[i] = 0;
            }
        }
        Answer::Said(said)
    }

    /// Says flow `i`'s `bot` steps from its position up to a `user` step.
    fn run_bots(&self, i: usize, at: &mut [usize], said: &mut Vec<String>) {
        let program = &self.programs[i];
        while let Some(Step::Bot(options)) = program.steps.get(at[i]) {
            said.push(pick(options));
            at[i] += 1;
        }
        if at[i] >= program.steps.len() && program.activated {
            at[i] = 0;
        }
    }
}

/// How specifically `m` accepts `message` (NeMo: exact text 1.0 over `something`).
fn score(m: &Match, message: &str) -> Option<u8> {
    match m {
        Match::Said(text) => (text == message).then_some(2),
        Match::Something => Some(1),
    }
}

/// One of the alternatives, at random as NeMo picks.
fn pick(options: &[String]) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_usize(options.len());
    let i = usize::try_from(h.finish() % options.len().max(1) as u64).unwrap_or(0);
    options.get(i).cloned().unwrap_or_default()
}

/// The interaction flows in front of the main model, as the engine's answerer.
#[derive(Debug, Clone)]
pub struct InteractionRuntime {
    dialog: Arc<Interaction>,
    llm: Arc<dyn Provider>,
}

impl InteractionRuntime {
    pub fn new(dialog: Interaction, llm: Arc<dyn Provider>) -> Self {
        InteractionRuntime {
            dialog: Arc::new(dialog),
            llm,
        }
    }

    /// The positions the request resumes from and the turns to run: with a
    /// state its last user message, else every user message from the start.
    fn read(&self, request: &AnswerRequest) -> (Vec<usize>, Vec<String>) {
        let mut users = request
            .chat
            .messages
            .iter()
            .filter(|m| m.role == Role::User)
            .map(|m| m.content.clone());
        let kept = request
            .state
            .as_ref()
            .map(|s| s.colang_2.clone())
            .filter(|at| at.len() == self.dialog.programs.len());
        match kept {
            Some(at) => (at, users.next_back().into_iter().collect()),
            None => {
                let all: Vec<String> = users.collect();
                let skip = all.len().saturating_sub(MAX_TURNS);
                (self.dialog.start(), all.into_iter().skip(skip).collect())
            }
        }
    }
}

impl Answerer for InteractionRuntime {
    fn can_stream(&self) -> bool {
        self.llm.can_stream()
    }

    fn stream(&self, request: AnswerRequest) -> PieceStream {
        let (mut at, turns) = self.read(&request);
        let mut answer = Answer::Said(Vec::new());
        for message in &turns {
            answer = self.dialog.turn(&mut at, message);
        }
        let mut state = request.state.clone().unwrap_or_default();
        state.colang_2 = at;
        let llm = self.llm.clone();
        Box::pin(async_stream::try_stream! {
            yield Piece::Dialog(DialogTurn { state: Some(state), ..DialogTurn::default() });
            match answer {
                Answer::Said(said) => {
                    let text = said.join("\n");
                    if !text.is_empty() {
                        yield Piece::Text(text);
                    }
                }
                Answer::Continue => {
                    let mut tokens = llm.stream(request.chat);
                    while let Some(delta) = tokens.next().await {
                        yield Piece::from(delta?);
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(texts: &[&str]) -> Vec<String> {
        texts.iter().map(|t| (*t).to_string()).collect()
    }

    #[test]
    fn statements_read_as_colang_2_writes_them() {
        let defs = Defs::new();
        let err = |m: String| ConfigError::invalid("main.co", "line 1", m);
        let one = |t: &str| step(&defs, t, 0, &err);
        assert_eq!(
            one("user said \"this or that\" or user said something").unwrap(),
            [Step::User(vec![
                Match::Said("this or that".into()),
                Match::Something
            ])]
        );
        assert_eq!(
            one("match UtteranceUserAction.Finished(final_transcript=\"Hi\")").unwrap(),
            [Step::User(vec![Match::Said("Hi".into())])]
        );
        assert_eq!(
            one("send StartUtteranceBotAction(script=\"Hello\")").unwrap(),
            [Step::Bot(vec!["Hello".into()])]
        );
        assert_eq!(
            one("match RestartEvent()").unwrap(),
            [Step::User(Vec::new())]
        );
        for refused in [
            "UtteranceBotAction(script=\"A\") and GestureBotAction(gesture=\"B\")",
            "bot say \"Hi {$name}\"",
            "start UtteranceBotAction(script=\"A\") as $ref",
            "$x = user said something",
        ] {
            assert!(one(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn the_best_match_answers_and_an_activated_flow_restarts() {
        let flows = Interaction {
            programs: vec![
                Program {
                    steps: vec![
                        Step::User(vec![Match::Something]),
                        Step::Bot(said(&["Anything."])),
                    ],
                    activated: false,
                },
                Program {
                    steps: vec![
                        Step::User(vec![Match::Said("hi".into())]),
                        Step::Bot(said(&["Hello!"])),
                    ],
                    activated: true,
                },
            ],
            continuation: false,
        };
        let mut at = flows.start();
        let Answer::Said(s) = flows.turn(&mut at, "hi") else {
            panic!("said nothing")
        };
        assert_eq!(s, ["Hello!"]);
        let Answer::Said(s) = flows.turn(&mut at, "hi") else {
            panic!("said nothing")
        };
        assert_eq!(s, ["Hello!"]);
        let Answer::Said(s) = flows.turn(&mut at, "what?") else {
            panic!("said nothing")
        };
        assert_eq!(s, ["Anything."]);
    }
}

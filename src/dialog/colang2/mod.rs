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

mod compile;

use std::sync::Arc;

use futures_util::StreamExt;
use serde_json::Value;

use compile::{Compiler, Defs, Match, Op, Text};

use super::{Vars, value};
use crate::{
    config::{Config, ConfigError, colang2::read_flows},
    engine::answer::{AnswerRequest, Answerer, DialogTurn, Piece, PieceStream},
    llm::{LlmError, Provider, Role},
};

/// The most user messages one request replays.
const MAX_TURNS: usize = 1000;
/// The most steps one turn runs (a `while` that never waits is stopped).
const MAX_STEPS: usize = 10_000;

/// One runnable flow: `main` or an activated one.
#[derive(Debug)]
struct Program {
    name: String,
    ops: Vec<Op>,
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
                defs.insert(name, (source.path.clone(), flow.body));
            }
        }
        let (file, main) = defs
            .get("main")
            .ok_or_else(|| ConfigError::invalid(config.main_file(), "flow main", "is missing"))?;
        let mut out = Interaction {
            programs: Vec::new(),
            continuation: false,
        };
        let mut main_lines = Vec::new();
        for line in main {
            let err = |m: String| ConfigError::invalid(file, format!("line {}", line.number), m);
            match line.text.strip_prefix("activate ") {
                Some("llm continuation") => out.continuation = true,
                Some(name) => {
                    let (f, body) = defs.get(name.trim()).ok_or_else(|| {
                        err(format!(
                            "`{}`: not a flow of this config (of NeMo's library flows streamguard \
                             runs `llm continuation`)",
                            line.text
                        ))
                    })?;
                    let mut c = Compiler {
                        defs: &defs,
                        ops: Vec::new(),
                        activated: defs.get_key_value(name.trim()).map(|(k, _)| *k),
                    };
                    c.body(f, body, 1)?;
                    out.programs.push(Program {
                        name: name.trim().into(),
                        ops: c.ops,
                        activated: true,
                    });
                }
                None => main_lines.push(line.clone()),
            }
        }
        let mut c = Compiler {
            defs: &defs,
            ops: Vec::new(),
            activated: None,
        };
        c.body(file, &main_lines, 0)?;
        out.programs.insert(
            0,
            Program {
                name: "main".into(),
                ops: c.ops,
                activated: false,
            },
        );
        Ok(Some(out))
    }
}

/// What a turn gave: what the flows said, or the main model's answer.
enum Answer {
    Said(Vec<String>),
    Continue,
}

/// Where the flows are and their variables.
#[derive(Debug, Clone)]
struct Run {
    at: Vec<usize>,
    vars: Vars,
}

impl Interaction {
    /// One user message: the flow that matches it best goes on (saying what
    /// it says up to its next wait); others that matched too go on if they
    /// say nothing now, else start over, as NeMo aborts the losers (and
    /// activated flows restart).
    fn turn(&self, run: &mut Run, message: &str) -> Result<Answer, LlmError> {
        // NeMo's `user said` sets `$user_message` (after the input rails).
        run.vars
            .insert("user_message".into(), Value::String(message.to_string()));
        let mut said = Vec::new();
        for i in 0..self.programs.len() {
            if run.at[i] >= self.programs[i].ops.len() {
                run.at[i] = 0;
            }
            // A flow that starts by speaking speaks first.
            self.advance(i, run, &mut said)?;
        }
        let best: Vec<Option<(u8, usize)>> = (0..self.programs.len())
            .map(|i| match self.programs[i].ops.get(run.at[i]) {
                Some(Op::Wait(arms)) => arms
                    .iter()
                    .enumerate()
                    .filter_map(|(a, arm)| score(&arm.accepts, message).map(|s| (s, a)))
                    .max_by_key(|(s, a)| (*s, std::cmp::Reverse(*a))),
                _ => None,
            })
            .collect();
        let Some(top) = best.iter().flatten().map(|(s, _)| *s).max() else {
            return Ok(match (self.continuation, said.is_empty()) {
                (true, true) => Answer::Continue,
                _ => Answer::Said(said),
            });
        };
        let winner = best
            .iter()
            .position(|b| b.is_some_and(|(s, _)| s == top))
            .unwrap_or(0);
        for (i, b) in best.iter().enumerate() {
            let Some((_, arm)) = *b else { continue };
            let mut trial = run.clone();
            self.take(i, arm, &mut trial, message);
            let mut words = Vec::new();
            self.advance(i, &mut trial, &mut words)?;
            if i == winner || words.is_empty() {
                *run = Run {
                    at: {
                        let mut at = run.at.clone();
                        at[i] = trial.at[i];
                        at
                    },
                    vars: trial.vars,
                };
                said.extend(words);
            } else {
                run.at[i] = 0;
            }
        }
        Ok(Answer::Said(said))
    }

    /// Takes arm `arm` of flow `i`'s wait for `message`.
    fn take(&self, i: usize, arm: usize, run: &mut Run, message: &str) {
        if let Some(Op::Wait(arms)) = self.programs[i].ops.get(run.at[i])
            && let Some(a) = arms.get(arm)
        {
            if let Some(var) = &a.capture {
                run.vars
                    .insert(var.clone(), Value::String(message.to_string()));
            }
            run.at[i] = a.target;
        }
    }

    /// Runs flow `i` from where it is up to its next wait (or its end).
    fn advance(&self, i: usize, run: &mut Run, said: &mut Vec<String>) -> Result<(), LlmError> {
        let program = &self.programs[i];
        for _ in 0..MAX_STEPS {
            let Some(op) = program.ops.get(run.at[i]) else {
                if program.activated {
                    run.at[i] = 0;
                }
                return Ok(());
            };
            let eval = |e: &crate::dialog::Expr, vars: &Vars| {
                e.eval(&|name| vars.get(name).cloned()).map_err(|m| {
                    LlmError::Api(format!("the Colang 2 flow `{}`: {m}", program.name))
                })
            };
            run.at[i] = match op {
                Op::Wait(_) => return Ok(()),
                Op::Say(options) => {
                    said.push(render(&pick(options), &run.vars));
                    run.at[i] + 1
                }
                Op::Set(var, e) => {
                    let v = eval(e, &run.vars)?;
                    run.vars.insert(var.clone(), v);
                    run.at[i] + 1
                }
                Op::Unless(e, target) => match value::truthy(&eval(e, &run.vars)?) {
                    true => run.at[i] + 1,
                    false => *target,
                },
                Op::Jump(target) => *target,
            };
        }
        Err(LlmError::Api(format!(
            "the Colang 2 flow `{}` ran {MAX_STEPS} steps without waiting for the user",
            program.name
        )))
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
fn pick(options: &[Text]) -> Text {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_usize(options.len());
    let n = u64::try_from(options.len().max(1)).unwrap_or(1);
    let i = usize::try_from(h.finish() % n).unwrap_or(0);
    options
        .get(i)
        .cloned()
        .unwrap_or(Text::Template(String::new()))
}

/// A text with `{$var}` replaced by the variables' values.
fn render(text: &Text, vars: &Vars) -> String {
    let template = match text {
        Text::Var(v) => return vars.get(v).map(value::display).unwrap_or_default(),
        Text::Template(t) => t,
    };
    let mut out = String::with_capacity(template.len());
    let mut rest = template.as_str();
    while let Some(at) = rest.find("{$") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[at..]);
            return out;
        };
        if let Some(v) = vars.get(after[..end].trim()) {
            out.push_str(&value::display(v));
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
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

    /// Where the request resumes from and the turns to run: with a state
    /// its last user message, else every user message from the start.
    fn read(&self, request: &AnswerRequest) -> (Run, Vec<String>) {
        let mut users = request
            .chat
            .messages
            .iter()
            .filter(|m| m.role == Role::User)
            .map(|m| m.content.clone());
        let kept = request
            .state
            .as_ref()
            .filter(|s| s.colang_2.len() == self.dialog.programs.len());
        match kept {
            Some(s) => (
                Run {
                    at: s.colang_2.clone(),
                    vars: s.vars.clone(),
                },
                users.next_back().into_iter().collect(),
            ),
            None => {
                let all: Vec<String> = users.collect();
                let skip = all.len().saturating_sub(MAX_TURNS);
                let start = Run {
                    at: vec![0; self.dialog.programs.len()],
                    vars: Vars::new(),
                };
                (start, all.into_iter().skip(skip).collect())
            }
        }
    }
}

impl Answerer for InteractionRuntime {
    fn can_stream(&self) -> bool {
        self.llm.can_stream()
    }

    fn stream(&self, request: AnswerRequest) -> PieceStream {
        let (mut run, turns) = self.read(&request);
        let mut answer = Ok(Answer::Said(Vec::new()));
        for message in &turns {
            answer = self.dialog.turn(&mut run, message);
            if answer.is_err() {
                break;
            }
        }
        let mut state = request.state.clone().unwrap_or_default();
        state.colang_2 = run.at;
        state.vars = run.vars;
        let llm = self.llm.clone();
        Box::pin(async_stream::try_stream! {
            let answer = answer?;
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
    use super::compile::*;
    use crate::config::colang2::Line;

    fn compile(text: &str) -> Result<Vec<Op>, String> {
        let lines: Vec<Line<'_>> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| Line {
                number: i + 1,
                indent: l.len() - l.trim_start().len(),
                text: l.trim(),
            })
            .collect();
        let defs = Defs::new();
        let mut c = Compiler {
            defs: &defs,
            ops: Vec::new(),
            activated: None,
        };
        c.body(std::path::Path::new("main.co"), &lines, 0)
            .map_err(|e| e.to_string())?;
        Ok(c.ops)
    }

    #[test]
    fn statements_compile_as_colang_2_writes_them() {
        let said = |t: &str| Match::Said(t.into());
        let arm = |accepts, target| Arm {
            accepts,
            capture: None,
            target,
        };
        assert_eq!(
            compile("user said \"this or that\"\n  or user said something").unwrap(),
            [Op::Wait(vec![
                arm(said("this or that"), 1),
                arm(Match::Something, 1)
            ])]
        );
        assert_eq!(
            compile("match UtteranceUserAction.Finished(final_transcript=\"Hi\")\nsend StartUtteranceBotAction(script=\"Hello\")")
                .unwrap(),
            [
                Op::Wait(vec![arm(said("Hi"), 1)]),
                Op::Say(vec![Text::Template("Hello".into())])
            ]
        );
        assert_eq!(
            compile("match RestartEvent()").unwrap(),
            [Op::Wait(Vec::new())]
        );
        // A `when` block: one wait, each arm's block, then past the block.
        let ops = compile(
            "when user said \"a\"\n  bot say \"A\"\nor when user said \"b\"\n  bot say \"B\"",
        )
        .unwrap();
        assert_eq!(ops[0], Op::Wait(vec![arm(said("a"), 1), arm(said("b"), 3)]));
        assert_eq!((&ops[2], &ops[4]), (&Op::Jump(5), &Op::Jump(5)));
        for refused in [
            "UtteranceBotAction(script=\"A\") and GestureBotAction(gesture=\"B\")",
            "start UtteranceBotAction(script=\"A\") as $ref",
            "user said something as $ref",
            "$x = ...",
            "send Success1()",
        ] {
            assert!(
                compile(refused).unwrap_err().contains("line 1"),
                "{refused}"
            );
        }
    }
}

//! Colang 2's interaction language: flows of `match` / `send` / `start` /
//! `await` / `activate` over events and actions, `when` / `or when` /
//! `else`, `if` / `elif` / `else`, `while`, variables, references and
//! return values, `@active` / `@loop` / `@override`, run by a state machine
//! as NeMo's runtime runs them ([`machine`]). The user's message is an
//! `UtteranceUserActionFinished` event; what the bot says is what its
//! `UtteranceBotAction`s say, joined by lines; a message no flow takes,
//! with `llm continuation` activated, gets the main model's answer,
//! streamed. The flows' state is the dialog state. What is not run yet is
//! refused at load with the file, the line and the construct.

mod compile;
mod library;
mod machine;
mod syntax;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    sync::Arc,
};

use futures_util::StreamExt;
use serde_json::{Map, Value};

use compile::{Compiler, Op, Signature};
use machine::{Event, Machine};

use crate::{
    config::{Config, ConfigError, colang2::read_flows},
    engine::answer::{AnswerRequest, Answerer, DialogTurn, Piece, PieceStream},
    llm::{LlmError, Provider, Role},
};

/// The most user messages one request replays.
const MAX_TURNS: usize = 1000;

/// One flow, compiled.
#[derive(Debug)]
pub(super) struct Flow {
    sig: Signature,
    ops: Vec<Op>,
    active: bool,
    loop_id: Option<String>,
}

/// A config's flows.
#[derive(Debug)]
pub(super) struct Program {
    flows: BTreeMap<String, Flow>,
}

/// A config's Colang 2 interaction flows.
#[derive(Debug)]
pub struct Interaction {
    program: Program,
}

/// A flow definition as read: its file, line, body and decorators.
struct Def<'a> {
    file: PathBuf,
    sig: Signature,
    def: crate::config::colang2::FlowDef<'a>,
}

impl Interaction {
    /// Reads the config's flows (over streamguard's core library), or says
    /// which construct it does not run.
    pub fn load(config: &Config) -> Result<Option<Interaction>, ConfigError> {
        let Some(sources) = config.colang_2_interaction() else {
            return Ok(None);
        };
        let library = library::source();
        let mut defs: BTreeMap<String, Def<'_>> = BTreeMap::new();
        for source in std::iter::once(&library).chain(sources) {
            for def in read_flows(source)? {
                let err =
                    |m: String| ConfigError::invalid(&source.path, format!("line {}", def.line), m);
                let sig = compile::signature(def.name)
                    .map_err(|m| err(format!("`flow {}`: {m}", def.name)))?;
                defs.insert(
                    sig.name.clone(),
                    Def {
                        file: source.path.clone(),
                        sig,
                        def,
                    },
                );
            }
        }
        if !defs.contains_key("main") {
            return Err(ConfigError::invalid(
                config.main_file(),
                "flow main",
                "is missing",
            ));
        }
        let names: BTreeSet<String> = defs.keys().cloned().collect();
        let catches = sources.iter().any(|s| s.text.contains("UnhandledEvent"));
        let mut flows = BTreeMap::new();
        let mut unknown = BTreeMap::new();
        for (name, d) in defs {
            // The rail flows are the config's rails, which the engine runs.
            if name == "input rails" || name == "output rails" {
                continue;
            }
            let mut c = Compiler::new(&names);
            c.body(&d.file, &d.def.body)?;
            if let Some((line, missing)) = c.unknown.first() {
                unknown.insert(name.clone(), (d.file.clone(), *line, missing.clone()));
            }
            let (active, loop_id) = decorators(&d)?;
            let flow = Flow {
                sig: d.sig,
                ops: c.ops,
                active,
                loop_id,
            };
            flows.insert(name, flow);
        }
        if !catches {
            check_reachable(&flows, &unknown)?;
        }
        Ok(Some(Interaction {
            program: Program { flows },
        }))
    }
}

/// A flow `main` or an `@active` one may start that no config defines is
/// refused (NeMo would only tell an `UnhandledEvent` nobody catches).
fn check_reachable(
    flows: &BTreeMap<String, Flow>,
    unknown: &BTreeMap<String, (PathBuf, usize, String)>,
) -> Result<(), ConfigError> {
    let mut seen = BTreeSet::new();
    let mut work: Vec<&str> = flows
        .iter()
        .filter(|(n, f)| f.active || n.as_str() == "main")
        .map(|(n, _)| n.as_str())
        .collect();
    while let Some(name) = work.pop() {
        if !seen.insert(name) {
            continue;
        }
        if let Some((file, line, missing)) = unknown.get(name) {
            return Err(ConfigError::invalid(
                file,
                format!("line {line}"),
                format!(
                    "`{missing}`: no `flow {missing}` in the config or in the part of NeMo's \
                     standard library streamguard runs ({})",
                    library::NAMES
                ),
            ));
        }
        for op in flows
            .get(name)
            .map(|f| f.ops.as_slice())
            .unwrap_or_default()
        {
            if let Op::StartFlow { id, .. } = op {
                work.push(id);
            }
        }
    }
    Ok(())
}

/// `@active`, `@loop("id")` (or `@loop(id="…")`), `@meta(…)`, `@override`.
fn decorators(d: &Def<'_>) -> Result<(bool, Option<String>), ConfigError> {
    let mut active = false;
    let mut loop_id = None;
    for dec in &d.def.decorators {
        let name = dec.split('(').next().unwrap_or(dec).trim();
        match name {
            "@active" => active = true,
            "@meta" | "@override" => {}
            "@loop" => {
                let inner = dec
                    .split_once('(')
                    .map(|(_, r)| r.trim_end_matches(')'))
                    .unwrap_or("");
                let first = inner.split(',').next().unwrap_or("").trim();
                let first = first.strip_prefix("id=").unwrap_or(first).trim();
                loop_id = Some(first.trim_matches(|c| c == '"' || c == '\'').to_string());
            }
            _ => {
                return Err(ConfigError::invalid(
                    &d.file,
                    format!("line {}", d.def.line),
                    format!(
                        "`{dec}` (of `flow {}`): Colang 2's decorators are `@active`, `@loop`, `@meta` and `@override`",
                        d.sig.name
                    ),
                ));
            }
        }
    }
    Ok((active, loop_id))
}

/// What a turn gave: what the flows said, or the main model's answer.
enum Answer {
    Said(Vec<String>),
    Continue,
}

impl Interaction {
    /// One user message through the flows.
    fn turn(&self, m: &mut Machine, message: &str) -> Result<Answer, LlmError> {
        // NeMo's `user said` sets `$user_message`.
        m.set_global("user_message", Value::String(message.to_string()));
        let mut args = Map::new();
        args.insert(
            "final_transcript".into(),
            Value::String(message.to_string()),
        );
        let input = Event::new("UtteranceUserActionFinished", args);
        let out = m.turn(&self.program, input).map_err(LlmError::Api)?;
        let said: Vec<String> = out
            .events
            .iter()
            .filter(|e| e.name == "UtteranceBotActionFinished")
            .filter_map(|e| e.args.get("final_script"))
            .map(super::value::display)
            .collect();
        let continues = said.is_empty() && out.unhandled_user && m.running(library::CONTINUATION);
        Ok(match continues {
            true => Answer::Continue,
            false => Answer::Said(said),
        })
    }
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
    fn read(&self, request: &AnswerRequest) -> (Machine, Vec<String>) {
        let mut users = request
            .chat
            .messages
            .iter()
            .filter(|m| m.role == Role::User)
            .map(|m| m.content.clone());
        let kept = request
            .state
            .as_ref()
            .and_then(|s| s.colang_2.clone())
            .and_then(|v| serde_json::from_value::<Machine>(v).ok())
            .filter(|m| m.fits(&self.dialog.program));
        match kept {
            Some(m) => (m, users.next_back().into_iter().collect()),
            None => {
                let all: Vec<String> = users.collect();
                let skip = all.len().saturating_sub(MAX_TURNS);
                (Machine::default(), all.into_iter().skip(skip).collect())
            }
        }
    }
}

impl Answerer for InteractionRuntime {
    fn can_stream(&self) -> bool {
        self.llm.can_stream()
    }

    fn stream(&self, request: AnswerRequest) -> PieceStream {
        let (mut machine, turns) = self.read(&request);
        let mut answer = Ok(Answer::Said(Vec::new()));
        for message in &turns {
            answer = self.dialog.turn(&mut machine, message);
            if answer.is_err() {
                break;
            }
        }
        let mut state = request.state.clone().unwrap_or_default();
        let saved = serde_json::to_value(&machine);
        let llm = self.llm.clone();
        Box::pin(async_stream::try_stream! {
            let answer = answer?;
            state.colang_2 = Some(saved.map_err(|e| LlmError::Api(format!("the Colang 2 state: {e}")))?);
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

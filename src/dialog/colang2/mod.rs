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

mod answers;
mod compile;
mod library;
mod machine;
mod runtime;
mod syntax;
mod tasks;

pub use runtime::InteractionRuntime;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
};

use compile::{Compiler, Op, Signature};

use crate::config::{Config, ConfigError, colang2::read_flows};

/// One flow, compiled.
#[derive(Debug)]
pub(super) struct Flow {
    sig: Signature,
    ops: Vec<Op>,
    active: bool,
    loop_id: Option<String>,
    /// One of streamguard's standard-library flows.
    library: bool,
    /// Its docstring (a natural-language flow's instructions).
    doc: Option<String>,
    /// `@meta(bot_intent="…")`: the bot intent it logs when it starts.
    bot_intent: Option<String>,
    /// Its source (without comments), an example for the LLM.
    source: String,
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
    /// It runs `flow input rails` on each user message itself.
    input_flow: bool,
    /// It runs `flow output rails` on each bot message itself.
    output_flow: bool,
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
    /// With `actions_server`, actions of the config's own (`await
    /// CustomAction(…)`) run on NeMo's actions server; without, a flow that
    /// starts one is refused.
    pub fn load(config: &Config, actions_server: bool) -> Result<Option<Interaction>, ConfigError> {
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
        // An undefined flow is an `UnhandledEvent`: the config catches it, or
        // `llm continuation` has the LLM write the flow.
        let catches = sources.iter().any(|s| {
            [
                "UnhandledEvent",
                "activate llm continuation",
                "continuation on undefined flow",
            ]
            .iter()
            .any(|k| s.text.contains(k))
        });
        let mut flows = BTreeMap::new();
        let mut unknown = BTreeMap::new();
        let (input_flow, output_flow) = config.colang_2_rail_flows();
        for (name, d) in defs {
            // Rail flows of library rails are the config's rails, which the engine runs.
            if (name == "input rails" && !input_flow) || (name == "output rails" && !output_flow) {
                continue;
            }
            let library = d.file == library.path;
            let file = d.file.clone();
            let Compiled {
                flow,
                missing,
                actions,
            } = compile_def(d, &names, library)?;
            if !actions_server {
                check_actions(&file, &actions)?;
            }
            if let Some(m) = missing {
                unknown.insert(name.clone(), m);
            }
            flows.insert(name, flow);
        }
        // What a rail flow calls must exist: the LLM never writes a rail.
        let roots: &[&str] = match catches {
            true => &["input rails", "output rails"],
            false => &["main", "input rails", "output rails"],
        };
        check_reachable(&flows, &unknown, roots, !catches)?;
        Ok(Some(Interaction {
            program: Program { flows },
            input_flow,
            output_flow,
        }))
    }
}

/// Without an actions server, a config's own action is refused at its line.
fn check_actions(file: &std::path::Path, actions: &[(usize, String)]) -> Result<(), ConfigError> {
    match actions.iter().find(|(_, a)| is_custom(a)) {
        Some((line, action)) => Err(ConfigError::invalid(
            file,
            format!("line {line}"),
            format!(
                "`{action}` is not an action streamguard runs: a config's own actions run on \
                 NeMo's actions server (`actions_server_url` in config.yml, or `serve \
                 --actions-server-url`)"
            ),
        )),
        None => Ok(()),
    }
}

/// A flow started that no config defines: the file and line, and its name.
type Missing = (PathBuf, usize, String);

/// One flow compiled, the first flow it starts that is not defined, and
/// the actions it starts (with their lines).
struct Compiled {
    flow: Flow,
    missing: Option<Missing>,
    actions: Vec<(usize, String)>,
}

/// Compiles one flow.
fn compile_def(
    d: Def<'_>,
    names: &BTreeSet<String>,
    library: bool,
) -> Result<Compiled, ConfigError> {
    let mut c = Compiler::new(names);
    c.body(&d.file, &d.def.body)?;
    let missing = c
        .unknown
        .first()
        .map(|(line, m)| (d.file.clone(), *line, m.clone()));
    let (active, loop_id) = decorators(&d)?;
    let bot_intent = d
        .def
        .decorators
        .iter()
        .find_map(|dec| meta_bot_intent(dec, &d.sig.name));
    let doc = d.def.doc.map(str::to_string);
    let mut source = format!("flow {}", d.def.name);
    if let Some(doc) = &doc {
        source.push_str(&format!("\n  \"\"\"{doc}\"\"\""));
    }
    for l in &d.def.body {
        source.push_str(&format!("\n{}{}", " ".repeat(l.indent), l.text));
    }
    let flow = Flow {
        sig: d.sig,
        ops: c.ops,
        active,
        loop_id,
        library,
        doc,
        bot_intent,
        source,
    };
    Ok(Compiled {
        flow,
        missing,
        actions: c.actions,
    })
}

/// An action neither UMIM's (an event to the avatar) nor one of NeMo's
/// system actions streamguard runs: the config's own.
pub(super) fn is_custom(action: &str) -> bool {
    let umim = ["BotAction", "UserAction", "SceneAction"]
        .iter()
        .any(|k| action.ends_with(k));
    !umim && !tasks::SYSTEM.contains(&action)
}

/// `@meta(bot_intent="bot greet")` (or `=True`: the flow's own name).
fn meta_bot_intent(dec: &str, flow: &str) -> Option<String> {
    let inner = dec.strip_prefix("@meta(")?.strip_suffix(')')?;
    let value = inner
        .split(',')
        .find_map(|kv| kv.trim().strip_prefix("bot_intent"))?
        .trim_start()
        .strip_prefix('=')?
        .trim();
    match value {
        "True" => Some(flow.to_string()),
        v => Some(v.trim_matches(|c| c == '"' || c == '\'').to_string()).filter(|v| !v.is_empty()),
    }
}

/// The flows of a source added while running (`AddFlowsAction`), compiled
/// against the config's flows and the ones added before.
pub(super) fn compile_added(
    prog: &Program,
    added: &BTreeMap<String, String>,
    text: &str,
) -> Result<BTreeMap<String, Flow>, String> {
    let source = crate::config::SourceFile {
        path: "<a flow generated by the LLM>".into(),
        text: text.to_string(),
    };
    let shown = |e: ConfigError| e.to_string();
    let read = read_flows(&source).map_err(shown)?;
    let mut defs = Vec::new();
    for def in read {
        let sig = compile::signature(def.name).map_err(|m| format!("`flow {}`: {m}", def.name))?;
        defs.push(Def {
            file: source.path.clone(),
            sig,
            def,
        });
    }
    let names: BTreeSet<String> = prog
        .flows
        .keys()
        .chain(added.keys())
        .cloned()
        .chain(defs.iter().map(|d| d.sig.name.clone()))
        .collect();
    let mut out = BTreeMap::new();
    for d in defs {
        let name = d.sig.name.clone();
        // What the LLM writes may say and do what a bot does, nothing more:
        // no flow of the config's (or the library's) replaced, no action of
        // the config's own, no event of the runtime's.
        if prog.flows.contains_key(&name) {
            return Err(format!("a generated flow may not replace `flow {name}`"));
        }
        let compiled = compile_def(d, &names, false).map_err(shown)?;
        if let Some((_, a)) = compiled.actions.iter().find(|(_, a)| is_custom(a)) {
            return Err(format!("a generated flow may not start `{a}`"));
        }
        let internal = compiled.flow.ops.iter().find_map(|op| match op {
            Op::Send { name, .. } if machine::INTERNAL.contains(&name.as_str()) => Some(name),
            _ => None,
        });
        if let Some(event) = internal {
            return Err(format!("a generated flow may not send `{event}`"));
        }
        out.insert(name, compiled.flow);
    }
    Ok(out)
}

/// A flow `main` or an `@active` one may start that no config defines is
/// refused (NeMo would only tell an `UnhandledEvent` nobody catches).
fn check_reachable(
    flows: &BTreeMap<String, Flow>,
    unknown: &BTreeMap<String, (PathBuf, usize, String)>,
    roots: &[&str],
    active: bool,
) -> Result<(), ConfigError> {
    let mut seen = BTreeSet::new();
    let mut work: Vec<&str> = flows
        .iter()
        .filter(|(n, f)| (active && f.active) || roots.contains(&n.as_str()))
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

//! Colang 2 guardrail configs (`colang_version: "2.x"`): `import guardrails`
//! with `flow input rails $input_text` / `flow output rails $output_text`
//! whose bodies call NeMo's library rail flows (`content safety check input
//! $model="content_safety"`, `clavata check for ($input_text, "Toxicity")`),
//! and `flow main` with `activate llm continuation`. They become the
//! config's input and output rails, in order, so everything downstream runs
//! them as it runs `rails.input.flows`. Anything else of Colang 2 is refused
//! naming the file, the line and the construct.

use std::{collections::BTreeMap, path::Path};

use super::{Config, ConfigError, FlowRef, SourceFile};

/// NeMo's Colang 2 library flows that take parameters, with them in order
/// (the rest take none). `text`-like parameters are the rail's own text.
const PARAMS: &[(&str, &[&str])] = &[
    ("ai defense inspect prompt", &["input_text"]),
    ("ai defense inspect response", &["output_text"]),
    ("clavata check for", &["text", "policy", "labels"]),
    ("content safety check input", &["model"]),
    ("content safety check output", &["model"]),
    ("topic safety check input", &["model"]),
    ("guardrailsai check input", &["validator"]),
    ("guardrailsai check output", &["validator"]),
    ("trend ai guard input", &["text"]),
    ("trend ai guard output", &["text"]),
];

/// The parameters that stand for the text the rail checks.
const TEXT_PARAMS: &[&str] = &["text", "input_text", "output_text"];

/// Modules a guardrail config may import (NeMo's standard library and its
/// rails); a config's own modules are Colang 2's interaction language.
const STANDARD: &[&str] = &[
    "core",
    "llm",
    "guardrails",
    "timing",
    "avatars",
    "attention",
];

/// The words that start a Colang 2 statement rather than a flow call.
const KEYWORDS: &[&str] = &[
    "if", "elif", "else", "while", "for", "when", "or", "and", "match", "send", "start",
    "activate", "abort", "return", "break", "continue", "global", "bot", "user", "log", "print",
    "pass", "wait",
];

/// One line of a `.co` file, comments and docstrings gone.
#[derive(Debug, Clone)]
pub(crate) struct Line<'a> {
    pub number: usize,
    pub indent: usize,
    pub text: &'a str,
}

/// A flow's head line and body.
pub(crate) struct FlowDef<'a> {
    pub name: &'a str,
    pub line: usize,
    pub body: Vec<Line<'a>>,
    /// `@active`, `@loop("id")`, `@meta(…)`, `@override` above it.
    pub decorators: Vec<&'a str>,
    /// The docstring at the top of its body (a natural-language flow's
    /// instructions).
    pub doc: Option<&'a str>,
}

/// The flows of a Colang 2 file (its imports checked), for the dialog's
/// interaction runtime; errors name the file and line.
pub(crate) fn read_flows(source: &SourceFile) -> Result<Vec<FlowDef<'_>>, ConfigError> {
    let file = source.path.as_path();
    flows(&source.text, &|line, m| {
        ConfigError::invalid(file, format!("line {line}"), m)
    })
}

/// Reads the Colang 2 files into `config`'s rails, or says why they are not
/// a guardrail config streamguard runs.
pub(super) fn apply(config: &mut Config, sources: &[SourceFile]) -> Result<(), ConfigError> {
    let mut main = None;
    let mut active = false;
    let mut seen: BTreeMap<String, (&Path, usize)> = BTreeMap::new();
    let own = seen_names(sources);
    for source in sources {
        let file = source.path.as_path();
        let err = |line: usize, m: String| ConfigError::invalid(file, format!("line {line}"), m);
        for flow in flows(&source.text, &err)? {
            let overrides = flow.decorators.iter().any(|d| d.starts_with("@override"));
            active |= !flow.decorators.is_empty();
            if let Some((f, l)) = seen.get(flow.name).filter(|_| !overrides) {
                let m = format!(
                    "`flow {}` is defined again (first at {}, line {l}); mark the one that wins `@override`",
                    flow.name,
                    f.display()
                );
                return Err(err(flow.line, m));
            }
            seen.insert(flow.name.to_string(), (file, flow.line));
            match flow.name {
                "main" => main = Some(is_interaction(&flow)),
                // Conditions, own flows, `bot say` + `abort`: the interaction
                // runtime runs the flow itself; library rail calls are the
                // config's rails (and their errors are the config's errors).
                "input rails $input_text" | "input rails" if is_program(&flow, &own) => {
                    config.colang_2_rail_flows.0 = true;
                    active = true;
                }
                "output rails $output_text" | "output rails" if is_program(&flow, &own) => {
                    config.colang_2_rail_flows.1 = true;
                    active = true;
                }
                "input rails $input_text" | "input rails" => {
                    let calls = rail_calls(&flow, "input_text", &own, &err)?;
                    config
                        .colang_2_rails
                        .0
                        .extend(calls.into_iter().map(|c| c.at(file)));
                }
                "output rails $output_text" | "output rails" => {
                    let calls = rail_calls(&flow, "output_text", &own, &err)?;
                    config
                        .colang_2_rails
                        .1
                        .extend(calls.into_iter().map(|c| c.at(file)));
                }
                // Other flows (user intents of NeMo's examples) are unused by the above.
                _ => {}
            }
        }
    }
    let (input, output) = config.colang_2_rails.clone();
    config.input.flows.extend(input);
    config.output.flows.extend(output);
    match main {
        Some(interaction) => {
            config.colang_2_interaction = interaction || active;
            Ok(())
        }
        None => Err(ConfigError::invalid(
            sources
                .first()
                .map_or(config.main_file(), |s| s.path.clone()),
            "flow main",
            "a Colang 2 config needs `flow main` with `activate llm continuation` (streamguard runs \
             Colang 2 guardrail configs: `flow input rails $input_text`, `flow output rails $output_text`)",
        )),
    }
}

/// The names of every flow the files define, for telling a config's own
/// flow from a library one.
fn seen_names(sources: &[SourceFile]) -> Vec<String> {
    sources
        .iter()
        .flat_map(|s| s.text.lines())
        .filter_map(|l| l.strip_prefix("flow "))
        .map(|h| h.split(" $").next().unwrap_or(h).trim().to_string())
        .collect()
}

/// Whether `flow main` is more than `activate llm continuation` (NeMo's LLM
/// answering the turn): then it is Colang 2's interaction language, which
/// the dialog runs (and refuses what it does not run, by line).
fn is_interaction(flow: &FlowDef<'_>) -> bool {
    flow.body
        .iter()
        .any(|l| l.text != "activate llm continuation")
        || flow.body.is_empty()
}

/// Whether a rail flow is a program (conditions, assignments, `bot say`,
/// `abort`, the config's own flows, nested blocks) rather than a list of
/// library rail calls.
fn is_program(flow: &FlowDef<'_>, own: &[String]) -> bool {
    let indent = flow.body.first().map_or(0, |l| l.indent);
    flow.body.iter().any(|line| {
        let text = line.text.strip_prefix("await ").unwrap_or(line.text).trim();
        let first = text.split_whitespace().next().unwrap_or_default();
        line.indent != indent
            || first.starts_with('$')
            || text.contains(" = ")
            || KEYWORDS.contains(&first)
            || own.iter().any(|o| o == split_name(text).0)
    })
}

/// A library rail call of a rail flow, at its line.
struct Call {
    name: String,
    args: BTreeMap<String, String>,
    line: usize,
}

impl Call {
    fn at(self, file: &Path) -> FlowRef {
        FlowRef {
            name: self.name,
            args: self.args,
            source: file.to_path_buf(),
            key: format!("line {}", self.line),
        }
    }
}

/// The rail calls of `flow input rails $input_text` (`text` = `input_text`).
fn rail_calls(
    flow: &FlowDef<'_>,
    text: &str,
    own: &[String],
    err: &dyn Fn(usize, String) -> ConfigError,
) -> Result<Vec<Call>, ConfigError> {
    let stage = if text == "input_text" {
        "input"
    } else {
        "output"
    };
    flow.body
        .iter()
        .map(|line| {
            if line.indent != flow.body[0].indent {
                return Err(err(
                    line.number,
                    format!(
                        "`{}`: nested blocks in a rail flow are not run by streamguard yet",
                        line.text
                    ),
                ));
            }
            call(line.text, text, stage, own)
                .map(|(name, args)| Call {
                    name,
                    args,
                    line: line.number,
                })
                .map_err(|m| err(line.number, m))
        })
        .collect()
}

/// One rail call: the library flow (`clavata check for` is the stage's
/// `clavata check …`) and its `$key=value` arguments.
fn call(
    text: &str,
    own_text: &str,
    stage: &str,
    own: &[String],
) -> Result<(String, BTreeMap<String, String>), String> {
    let line = text.strip_prefix("await ").unwrap_or(text).trim();
    let first = line.split_whitespace().next().unwrap_or_default();
    if first.starts_with('$') || line.contains(" = ") || KEYWORDS.contains(&first) {
        return Err(format!(
            "`{text}`: streamguard runs Colang 2 rail flows that call library rails, one per line \
             (`self check input`, `content safety check input $model=\"content_safety\"`); not yet \
             assignments, conditions, `bot say` or `abort`"
        ));
    }
    let (name, rest) = split_name(line);
    if own.iter().any(|o| o == name) {
        return Err(format!(
            "`{name}` is a flow of this config; streamguard runs NeMo's library rails from Colang 2 \
             rail flows, not yet a config's own flows"
        ));
    }
    let params = PARAMS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(&[][..], |(_, p)| *p);
    let args = arguments(rest, own_text, params)?;
    let name = match name {
        "clavata check for" => format!("clavata check {stage}"),
        other => other.to_string(),
    };
    Ok((name, args))
}

/// The flow name (the words before the first argument) and the rest.
fn split_name(line: &str) -> (&str, &str) {
    let at = line
        .char_indices()
        .find(|&(i, c)| c == ' ' && line[i + 1..].starts_with(['$', '(', '"', '\'', '[']))
        .map_or(line.len(), |(i, _)| i);
    (line[..at].trim(), line[at..].trim())
}

/// The call's arguments by parameter name: `$key=value` named, the others
/// in `params` order (`(a, b)` or space-separated); the rail's own text
/// (`$input_text`) is dropped, as the rail checks it anyway.
fn arguments(
    rest: &str,
    own_text: &str,
    params: &[&str],
) -> Result<BTreeMap<String, String>, String> {
    let inner = match rest.strip_prefix('(') {
        Some(r) => r
            .strip_suffix(')')
            .ok_or_else(|| format!("`{rest}`: unbalanced parentheses"))?,
        None => rest,
    };
    let sep = if rest.starts_with('(') { ',' } else { ' ' };
    let mut out = BTreeMap::new();
    let mut position = 0;
    for item in split_top(inner, sep) {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (param, value) = match item.strip_prefix('$').and_then(|i| i.split_once('=')) {
            Some((k, v)) => (k.trim().to_string(), v.trim()),
            None => {
                let p = params.get(position).ok_or_else(|| {
                    format!("`{item}`: the flow takes {} argument(s)", params.len())
                })?;
                position += 1;
                ((*p).to_string(), item)
            }
        };
        if TEXT_PARAMS.contains(&param.as_str()) {
            if value != format!("${own_text}") {
                return Err(format!(
                    "`{item}`: the rail checks the flow's own `${own_text}`, nothing else"
                ));
            }
            continue;
        }
        if value.starts_with('$') {
            return Err(format!(
                "`{item}`: a variable as `${param}` is not known when the config loads; give a literal"
            ));
        }
        out.insert(param, literal(value)?);
    }
    Ok(out)
}

/// A literal argument as the rail reads it: a string's text, a list of
/// strings as JSON (`['a', "b"]` → `["a","b"]`).
fn literal(value: &str) -> Result<String, String> {
    let Some(inner) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) else {
        return Ok(unquote(value));
    };
    let items: Vec<String> = split_top(inner, ',')
        .into_iter()
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(unquote)
        .collect();
    serde_json::to_string(&items).map_err(|e| format!("`{value}`: {e}"))
}

/// A quoted string's text; anything else (a list) as written.
fn unquote(value: &str) -> String {
    ['"', '\'']
        .into_iter()
        .find_map(|q| {
            let inner = value.strip_prefix(q)?.strip_suffix(q)?;
            (!inner.contains(q)).then(|| inner.to_string())
        })
        .unwrap_or_else(|| value.to_string())
}

/// `s` split at `sep` outside quotes and brackets.
fn split_top(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut quote, mut start) = (0usize, None, 0);
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '(' | '{') => depth += 1,
            (None, ']' | ')' | '}') => depth = depth.saturating_sub(1),
            (None, c) if c == sep && depth == 0 => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// The flows of one file, after its imports are checked.
fn flows<'a>(
    text: &'a str,
    err: &dyn Fn(usize, String) -> ConfigError,
) -> Result<Vec<FlowDef<'a>>, ConfigError> {
    let mut out: Vec<FlowDef<'a>> = Vec::new();
    let mut decorators = Vec::new();
    let mut docs = Vec::new();
    for line in lines(text, &mut docs, err)? {
        if line.indent == 0 && line.text.starts_with('@') {
            decorators.push(line.text);
            continue;
        }
        if line.indent > 0 {
            match out.last_mut() {
                Some(flow) => flow.body.push(line),
                None => return Err(err(line.number, format!("`{}`: outside a flow", line.text))),
            }
            continue;
        }
        if let Some(module) = line.text.strip_prefix("import ") {
            let module = module.trim();
            let known = STANDARD.contains(&module) || module.starts_with("nemoguardrails.library.");
            if !known {
                return Err(err(
                    line.number,
                    format!(
                        "`import {module}`: streamguard runs Colang 2 guardrail configs, which import NeMo's \
                         standard library (`core`, `llm`, `guardrails`) and its rails (`nemoguardrails.library.…`)"
                    ),
                ));
            }
            continue;
        }
        let Some(head) = line.text.strip_prefix("flow ") else {
            return Err(err(
                line.number,
                format!(
                    "`{}`: a Colang 2 file holds imports, flows and their decorators",
                    line.text
                ),
            ));
        };
        out.push(FlowDef {
            name: head.trim(),
            line: line.number,
            body: Vec::new(),
            decorators: std::mem::take(&mut decorators),
            doc: None,
        });
    }
    for (at, doc) in docs {
        let owner = out.iter_mut().rev().find(|f| f.line < at);
        if let Some(f) = owner.filter(|f| f.body.first().is_none_or(|l| l.number > at)) {
            f.doc.get_or_insert(doc);
        }
    }
    Ok(out)
}

/// The file's lines without blank ones, comments and docstrings (those go
/// into `docs`, with their first line).
fn lines<'a>(
    text: &'a str,
    docs: &mut Vec<(usize, &'a str)>,
    err: &dyn Fn(usize, String) -> ConfigError,
) -> Result<Vec<Line<'a>>, ConfigError> {
    let mut out = Vec::new();
    let mut in_doc: Option<(usize, usize)> = None;
    let mut offset = 0;
    for (i, raw) in text.split('\n').enumerate() {
        let start = offset;
        offset += raw.len() + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let number = i + 1;
        let trimmed = raw.trim();
        if let Some((line, from)) = in_doc {
            if let Some(end) = raw.find("\"\"\"") {
                docs.push((line, &text[from..start + end]));
                in_doc = None;
            }
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix("\"\"\"") {
            let from = start + (raw.len() - raw.trim_start().len()) + 3;
            match rest.find("\"\"\"") {
                Some(end) => docs.push((number, &text[from..from + end])),
                None => in_doc = Some((number, from)),
            }
            continue;
        }
        let code = strip_comment(raw);
        if code.trim().is_empty() {
            continue;
        }
        if code.contains('\t') {
            return Err(err(number, "tabs in indentation: use spaces".into()));
        }
        out.push(Line {
            number,
            indent: code.len() - code.trim_start().len(),
            text: code.trim(),
        });
    }
    match in_doc {
        Some((start, _)) => Err(err(start, "an unclosed `\"\"\"` docstring".into())),
        None => Ok(out),
    }
}

/// The line without its `#` comment (a `#` in quotes stays).
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '#') => return &line[..i],
            _ => {}
        }
    }
    line
}

#[cfg(test)]
mod tests;

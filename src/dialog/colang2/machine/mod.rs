//! The Colang 2 state machine: flow instances, each with a head on its
//! operations, and events. As in NeMo's runtime, an event advances every
//! head waiting for it (the best matches first); heads then slide to their
//! next wait or event to send; heads that would send different events at
//! once conflict, and the best-matching one wins while the others' flows
//! fail. Flows tell their parents with `FlowStarted` / `FlowFinished` /
//! `FlowFailed`; activated flows start again when they end; a bot
//! utterance finishes at once (NeMo's instant `UtteranceBotAction`).

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod drive;
mod flows;
mod send;

use super::compile::{Leaf, Op, Pat};
use super::{Flow, Program};
use crate::dialog::{Vars, value};

/// The most steps (events and operations) one turn runs.
pub(super) const MAX_STEPS: usize = 10_000;
/// The most flow instances alive at once.
const MAX_FLOWS: usize = 1_000;

/// Events the runtime makes and handles itself.
pub(super) const INTERNAL: &[&str] = &[
    "StartFlow",
    "StopFlow",
    "FinishFlow",
    "FlowStarted",
    "FlowFinished",
    "FlowFailed",
    "UnhandledEvent",
];

#[derive(Debug, Clone)]
pub(super) struct Event {
    pub name: String,
    pub args: Map<String, Value>,
    scores: Vec<f64>,
}

impl Event {
    pub fn new(name: &str, args: Map<String, Value>) -> Self {
        Event {
            name: name.to_string(),
            args,
            scores: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Status {
    Starting,
    Started,
    Finished,
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Head {
    pc: usize,
    live: bool,
    /// Which leaves of the waiting arms have matched (an `and`).
    #[serde(default)]
    done: Vec<u64>,
    #[serde(skip)]
    scores: Vec<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Inst {
    flow: String,
    head: Head,
    vars: Vars,
    #[serde(default)]
    globals: Vec<String>,
    status: Status,
    parent: Option<u64>,
    activated: bool,
    renewed: bool,
    looped: String,
    args: Map<String, Value>,
    /// The flow's parameters (its events carry them, as `bot said $text` reads).
    params: Vec<String>,
    children: Vec<u64>,
    ret: Value,
}

impl Inst {
    fn listening(&self) -> bool {
        matches!(self.status, Status::Starting | Status::Started)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Action {
    name: String,
    args: Map<String, Value>,
    finished: bool,
    ret: Value,
}

/// The interaction's state between turns.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Machine {
    next: u64,
    flows: BTreeMap<u64, Inst>,
    actions: BTreeMap<u64, Action>,
    globals: Vars,
    main: Option<u64>,
    /// Flows added while running (`AddFlowsAction`): name → source.
    #[serde(default)]
    added: BTreeMap<String, String>,
    /// The interaction so far as NeMo's Colang 2 history lines (`user
    /// action: …`, `bot intent: …`), the user's side marked.
    #[serde(default)]
    history: VecDeque<(bool, String)>,
    /// A flow run on its own (the input rails) and how it ended.
    #[serde(skip)]
    watched: Option<(u64, Option<Status>)>,
}

/// One turn's queues and budget.
struct Turn<'p> {
    prog: &'p Program,
    /// The flows added while running, compiled.
    extra: &'p BTreeMap<String, Flow>,
    /// Actions started that the runtime does not finish itself.
    started: Vec<(u64, String, Map<String, Value>)>,
    internal: VecDeque<Event>,
    external: VecDeque<Event>,
    slide: VecDeque<u64>,
    actionable: Vec<u64>,
    out: Vec<Event>,
    steps: usize,
    unhandled_user: bool,
    /// An intent the LLM found finished a flow waiting for it.
    intent_taken: bool,
}

/// What a turn did.
pub(super) struct Outcome {
    pub events: Vec<Event>,
    /// The user's utterance matched no flow.
    pub unhandled_user: bool,
    /// Actions it started that someone else runs: uid, name, arguments.
    pub started: Vec<(u64, String, Map<String, Value>)>,
    /// An intent the LLM found finished a flow waiting for it.
    pub intent_taken: bool,
}

impl<'p> Turn<'p> {
    fn new(prog: &'p Program, extra: &'p BTreeMap<String, Flow>) -> Self {
        Turn {
            prog,
            extra,
            started: Vec::new(),
            internal: VecDeque::new(),
            external: VecDeque::new(),
            slide: VecDeque::new(),
            actionable: Vec::new(),
            out: Vec::new(),
            steps: 0,
            unhandled_user: false,
            intent_taken: false,
        }
    }

    /// A flow by name: an added one, else the config's.
    fn def(&self, name: &str) -> Option<&'p Flow> {
        // The config's flows first: an added flow never replaces one.
        self.prog.flows.get(name).or_else(|| self.extra.get(name))
    }

    fn outcome(self) -> Outcome {
        Outcome {
            events: self.out,
            unhandled_user: self.unhandled_user,
            started: self.started,
            intent_taken: self.intent_taken,
        }
    }
}

type Res<T> = Result<T, String>;

impl Machine {
    /// Whether the state fits `prog` (flows and positions it has).
    pub fn fits(&self, prog: &Program) -> bool {
        self.flows.values().all(|i| {
            self.added.contains_key(&i.flow)
                || prog
                    .flows
                    .get(&i.flow)
                    .is_some_and(|f| i.head.pc <= f.ops.len())
        })
    }

    /// Whether a flow of this name runs.
    pub fn running(&self, flow: &str) -> bool {
        self.flows.values().any(|i| i.flow == flow && i.listening())
    }

    pub fn set_global(&mut self, name: &str, v: Value) {
        self.globals.insert(name.to_string(), v);
    }

    /// Runs one input event (and all it causes) to completion.
    pub fn turn(&mut self, prog: &Program, input: Event) -> Res<Outcome> {
        let extra = self.compiled(prog)?;
        let mut t = Turn::new(prog, &extra);
        self.story(&mut t)?;
        self.run(&mut t, None)?;
        t.external.push_back(input);
        while let Some(ev) = t.external.pop_front() {
            self.run(&mut t, Some(ev))?;
        }
        self.prune();
        Ok(t.outcome())
    }

    /// Starts `main` (and the `@active` flows) when it is not running.
    fn story(&mut self, t: &mut Turn<'_>) -> Res<()> {
        if self
            .main
            .is_some_and(|m| self.flows.get(&m).is_some_and(Inst::listening))
        {
            return Ok(());
        }
        for (name, _) in t.prog.flows.iter().filter(|(_, f)| f.active) {
            if !self.running(name) {
                self.start(t, name, Map::new(), None, true, Vec::new())?;
            }
        }
        self.main = self.start(t, "main", Map::new(), None, true, Vec::new())?;
        Ok(())
    }

    fn step(&self, t: &mut Turn<'_>) -> Res<()> {
        t.steps += 1;
        match t.steps > MAX_STEPS {
            true => Err(format!(
                "the Colang 2 flows ran {MAX_STEPS} steps without waiting for the user"
            )),
            false => Ok(()),
        }
    }

    /// An event, then the heads it moves, until nothing more happens.
    fn run(&mut self, t: &mut Turn<'_>, ev: Option<Event>) -> Res<()> {
        t.internal.extend(ev);
        loop {
            loop {
                while let Some(uid) = t.slide.pop_front() {
                    self.slide(t, uid)?;
                }
                let Some(ev) = t.internal.pop_front() else {
                    break;
                };
                self.dispatch(t, ev)?;
            }
            let heads: Vec<u64> = std::mem::take(&mut t.actionable)
                .into_iter()
                .filter(|u| {
                    self.flows
                        .get(u)
                        .is_some_and(|i| i.listening() && i.head.live)
                })
                .collect();
            if heads.is_empty() {
                return Ok(());
            }
            self.resolve(t, heads)?;
        }
    }

    fn flow<'p>(&self, t: &Turn<'p>, uid: u64) -> Option<&'p Flow> {
        self.flows.get(&uid).and_then(|i| t.def(&i.flow))
    }

    /// One event: the runtime's own, then every head waiting for it.
    fn dispatch(&mut self, t: &mut Turn<'_>, ev: Event) -> Res<()> {
        self.step(t)?;
        let target = ev.args.get("flow_instance_uid").and_then(Value::as_u64);
        match (ev.name.as_str(), target) {
            ("StopFlow", Some(uid)) => self.abort(t, uid),
            ("FinishFlow", Some(uid)) => self.finish(t, uid),
            ("FinishFlow", None) => self.finish_named(t, &ev),
            // A new instance, or one an `UnhandledEvent` of an undefined flow
            // named (`await_flow_by_name $flow $uid`).
            ("StartFlow", _)
                if ev.args.contains_key("flow_id")
                    && target.is_none_or(|u| !self.flows.contains_key(&u)) =>
            {
                self.start_requested(t, &ev, target)?;
            }
            _ => {}
        }
        if ev.name.ends_with("ActionFinished")
            && let Some(a) = ev.args.get("action_uid").and_then(Value::as_u64)
            && let Some(action) = self.actions.get_mut(&a)
        {
            action.finished = true;
            action.ret = ev.args.get("return_value").cloned().unwrap_or(Value::Null);
        }
        let mut matched: Vec<(Vec<f64>, u64, usize, usize)> = Vec::new();
        let mut failing = Vec::new();
        for (&uid, inst) in &self.flows {
            if !inst.listening() || !inst.head.live {
                continue;
            }
            let Some(Op::Match(arms)) = self.flow(t, uid).and_then(|f| f.ops.get(inst.head.pc))
            else {
                continue;
            };
            let mut best: Option<(f64, usize, usize)> = None;
            let mut fails = false;
            for (a, arm) in arms.iter().enumerate() {
                for (l, leaf) in arm.leaves.iter().enumerate() {
                    if inst.head.done.get(a).is_some_and(|d| d & (1 << l) != 0) {
                        continue;
                    }
                    let s = self.score(uid, leaf, &ev);
                    if s < 0.0 {
                        fails = true;
                    } else if s > 0.0 && best.is_none_or(|(b, _, _)| s > b) {
                        best = Some((s, a, l));
                    }
                }
            }
            match best {
                Some((s, a, l)) => {
                    let mut scores = ev.scores.clone();
                    scores.push(s);
                    matched.push((scores, uid, a, l));
                }
                None if fails => failing.push(uid),
                None => {}
            }
        }
        let internal = INTERNAL.contains(&ev.name.as_str());
        if matched.is_empty() && !internal {
            self.unhandled(t, &ev);
        }
        matched.sort_by(|a, b| compare(&b.0, &a.0));
        for (scores, uid, a, l) in matched {
            self.take(t, uid, a, l, &ev, scores);
        }
        for uid in failing {
            self.abort(t, uid);
        }
        Ok(())
    }

    /// `StartFlow(flow_id=…)`: the flow starts (as the instance `uid`
    /// when one is named), or the event is unhandled.
    fn start_requested(&mut self, t: &mut Turn<'_>, ev: &Event, uid: Option<u64>) -> Res<()> {
        let id = ev
            .args
            .get("flow_id")
            .map(value::display)
            .unwrap_or_default();
        let how = flows::Spawn {
            parent: None,
            activated: false,
            scores: ev.scores.clone(),
            uid,
        };
        if self.spawn(t, &id, ev.args.clone(), how)?.is_none() {
            self.unhandled(t, ev);
        }
        Ok(())
    }

    fn unhandled(&self, t: &mut Turn<'_>, ev: &Event) {
        if ev.name == "UtteranceUserActionFinished" {
            t.unhandled_user = true;
        }
        let mut args = ev.args.clone();
        args.insert("event".into(), Value::String(ev.name.clone()));
        t.internal.push_back(Event {
            name: "UnhandledEvent".into(),
            args,
            scores: ev.scores.clone(),
        });
    }

    /// Leaf `l` of arm `a` of `uid`'s wait took `ev`.
    fn take(
        &mut self,
        t: &mut Turn<'_>,
        uid: u64,
        a: usize,
        l: usize,
        ev: &Event,
        scores: Vec<f64>,
    ) {
        let Some(Op::Match(arms)) = self
            .flow(t, uid)
            .and_then(|f| self.flows.get(&uid).and_then(|i| f.ops.get(i.head.pc)))
        else {
            return;
        };
        let Some(arm) = arms.get(a) else { return };
        let Some(inst) = self.flows.get_mut(&uid) else {
            return;
        };
        if let Some(var) = arm.leaves.get(l).and_then(|leaf| leaf.bind.as_ref()) {
            let mut obj = ev.args.clone();
            obj.insert("name".into(), Value::String(ev.name.clone()));
            inst.vars.insert(var.clone(), Value::Object(obj));
        }
        if inst.head.done.len() < arms.len() {
            inst.head.done.resize(arms.len(), 0);
        }
        inst.head.done[a] |= 1 << l;
        inst.head.scores = scores;
        if inst.head.done[a].count_ones() as usize == arm.leaves.len() {
            inst.head.done.clear();
            inst.head.pc = arm.target;
            t.slide.push_back(uid);
        }
    }

    /// How well `leaf` of flow `uid` matches `ev`: NeMo's score (1.0 exact,
    /// 0.9 for each argument the event has beyond the pattern's), 0 for no
    /// match, -1 for the failure of what the pattern waits to finish.
    fn score(&self, uid: u64, leaf: &Leaf, ev: &Event) -> f64 {
        let (name, args, key, id, member) = match &leaf.pat {
            Pat::Event { name, args } => (name.clone(), args, None, 0, ""),
            Pat::Ref { var, member, args } => {
                let raw = self.raw(uid, var);
                match reference(raw.as_ref()) {
                    Some(Ref::Flow(f)) => (
                        format!("Flow{member}"),
                        args,
                        Some("flow_instance_uid"),
                        f,
                        member.as_str(),
                    ),
                    Some(Ref::Action(a, n)) => {
                        (format!("{n}{member}"), args, Some("action_uid"), a, "")
                    }
                    None => return 0.0,
                }
            }
        };
        if let Some(k) = key
            && ev.args.get(k).and_then(Value::as_u64) != Some(id)
        {
            return 0.0;
        }
        if ev.name != name {
            let flow_end = |n: &str| n == "FlowFinished" || n == "FlowFailed";
            let against = matches!(
                (member, ev.name.as_str()),
                ("Finished", "FlowFailed") | ("Failed", "FlowFinished")
            ) || (member == "Started" && flow_end(&ev.name));
            return if key.is_some() && against { -1.0 } else { 0.0 };
        }
        let mut score = 1.0;
        let mut wanted = usize::from(key.is_some());
        for (k, v) in args {
            let Ok(want) = self.value(uid, v) else {
                return 0.0;
            };
            match ev.args.get(k) {
                Some(got) if same(got, &want) => wanted += 1,
                _ => return 0.0,
            }
        }
        let extra = ev.args.len().saturating_sub(wanted);
        for _ in 0..extra {
            score *= 0.9;
        }
        score
    }
}

enum Ref {
    Flow(u64),
    Action(u64, String),
}

fn reference(v: Option<&Value>) -> Option<Ref> {
    let o = v?.as_object()?;
    if let Some(f) = o.get("__flow").and_then(Value::as_u64) {
        return Some(Ref::Flow(f));
    }
    let a = o.get("__action").and_then(Value::as_u64)?;
    Some(Ref::Action(
        a,
        o.get("name").map(value::display).unwrap_or_default(),
    ))
}

fn action_args(a: u64) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("action_uid".into(), Value::from(a));
    m
}

/// Score lists compared as NeMo does (the shorter padded with 1.0).
fn compare(a: &[f64], b: &[f64]) -> std::cmp::Ordering {
    let n = a.len().max(b.len());
    for k in 0..n {
        let (x, y) = (
            a.get(k).copied().unwrap_or(1.0),
            b.get(k).copied().unwrap_or(1.0),
        );
        match x.partial_cmp(&y) {
            Some(std::cmp::Ordering::Equal) | None => {}
            Some(o) => return o,
        }
    }
    std::cmp::Ordering::Equal
}

fn same(a: &Value, b: &Value) -> bool {
    crate::dialog::funcs::matches(a, b)
}

fn same_args(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    let keys = |m: &Map<String, Value>| -> Vec<(String, Value)> {
        m.iter()
            .filter(|(k, _)| *k != "action_uid")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    keys(a) == keys(b)
}

/// A uniform pick below `n`, as NeMo's `random.choice`.
fn pick(n: usize) -> usize {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_usize(n);
    let n = u64::try_from(n.max(1)).unwrap_or(1);
    usize::try_from(h.finish() % n).unwrap_or(0)
}

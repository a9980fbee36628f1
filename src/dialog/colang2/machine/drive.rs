//! Driving the machine from outside: actions it started finish later
//! (`resume`), a flow runs on its own (the input rails), flows are added
//! while it runs, and the interaction's history for the LLM's prompts.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::super::{Flow, Program};
use super::{Event, Machine, Outcome, Res, Status, Turn};
use crate::dialog::value;

/// The most history entries kept, and the most of their text (the state
/// carries them, and a state token has a size limit).
const MAX_HISTORY: usize = 200;
const MAX_HISTORY_BYTES: usize = 32 * 1024;
/// The longest history entry.
const MAX_ENTRY_BYTES: usize = 2 * 1024;
/// The most flows added while running, and the most of their sources.
const MAX_ADDED: usize = 64;
const MAX_ADDED_BYTES: usize = 64 * 1024;

impl Machine {
    /// The added flows, compiled.
    pub fn compiled(&self, prog: &Program) -> Res<BTreeMap<String, Flow>> {
        let mut out = BTreeMap::new();
        for source in self.added.values() {
            out.extend(super::super::compile_added(prog, &self.added, source)?);
        }
        Ok(out)
    }

    /// Runs events from outside (actions that finished) to completion.
    pub fn resume(&mut self, prog: &Program, events: Vec<Event>) -> Res<Outcome> {
        let extra = self.compiled(prog)?;
        let mut t = Turn::new(prog, &extra);
        t.external.extend(events);
        while let Some(ev) = t.external.pop_front() {
            self.run(&mut t, Some(ev))?;
        }
        self.prune();
        Ok(t.outcome())
    }

    /// Starts flow `name` on its own and runs it until it waits; how it
    /// ends is then [`Machine::watched_passed`].
    pub fn start_alone(
        &mut self,
        prog: &Program,
        name: &str,
        args: Map<String, Value>,
    ) -> Res<Outcome> {
        let extra = self.compiled(prog)?;
        let mut t = Turn::new(prog, &extra);
        let uid = self
            .start(&mut t, name, args, None, false, Vec::new())?
            .ok_or_else(|| format!("no flow `{name}`"))?;
        self.watched = Some((uid, None));
        self.run(&mut t, None)?;
        while let Some(ev) = t.external.pop_front() {
            self.run(&mut t, Some(ev))?;
        }
        self.prune();
        Ok(t.outcome())
    }

    /// Whether the flow run on its own finished (`Some(true)`), failed
    /// (`Some(false)`), or still runs (`None`).
    pub fn watched_passed(&self) -> Option<bool> {
        match self.watched.and_then(|(_, end)| end) {
            Some(Status::Finished) => Some(true),
            Some(_) => Some(false),
            None => None,
        }
    }

    /// Stops the flow run on its own, if it still runs.
    pub fn stop_watched(&mut self, prog: &Program) -> Res<()> {
        let Some((uid, None)) = self.watched.take() else {
            return Ok(());
        };
        let extra = self.compiled(prog)?;
        let mut t = Turn::new(prog, &extra);
        self.abort(&mut t, uid);
        self.prune();
        Ok(())
    }

    /// `FinishFlow(flow_id=…)`: every running instance of the flow
    /// finishes; with none, it is an `UnhandledEvent`.
    pub(super) fn finish_named(&mut self, t: &mut Turn<'_>, ev: &Event) {
        let id = ev
            .args
            .get("flow_id")
            .map(value::display)
            .unwrap_or_default();
        // The library's flows (`user said`) end on their events, never by name.
        let own = t.def(&id).is_some_and(|f| !f.library);
        let running: Vec<u64> = self
            .flows
            .iter()
            .filter(|(_, i)| own && i.flow == id && i.listening())
            .map(|(u, _)| *u)
            .collect();
        if running.is_empty() {
            self.unhandled(t, ev);
        } else if id.starts_with("user ") {
            t.intent_taken = true;
        }
        for uid in running {
            self.started(t, uid);
            self.finish(t, uid);
        }
    }

    /// `AddFlowsAction`: the flows of `source`, added; their names.
    pub fn add_flows(&mut self, prog: &Program, source: &str) -> Res<Vec<String>> {
        let held: usize = self.added.values().map(String::len).sum();
        if held + source.len() > MAX_ADDED_BYTES {
            return Err(format!(
                "the generated flows would hold over {MAX_ADDED_BYTES} bytes"
            ));
        }
        let flows = super::super::compile_added(prog, &self.added, source)?;
        if self.added.len() + flows.len() > MAX_ADDED {
            return Err(format!("over {MAX_ADDED} flows added while running"));
        }
        let names: Vec<String> = flows.into_keys().collect();
        for n in &names {
            self.added.insert(n.clone(), source.to_string());
        }
        Ok(names)
    }

    /// `RemoveFlowsAction`: added flows no running instance uses go, with
    /// the other flows of the same generated source.
    pub fn remove_flows(&mut self, names: &[String]) {
        let sources: Vec<String> = names
            .iter()
            .filter_map(|n| self.added.get(n).cloned())
            .collect();
        let gone: Vec<String> = self
            .added
            .iter()
            .filter(|(_, src)| sources.contains(src))
            .map(|(n, _)| n.clone())
            .collect();
        let running = |n: &String| self.flows.values().any(|i| &i.flow == n && i.listening());
        if gone.iter().any(running) {
            return;
        }
        for n in gone {
            self.added.remove(&n);
        }
    }

    /// The global variables (what actions get as `context`).
    pub fn globals(&self) -> &crate::dialog::Vars {
        &self.globals
    }

    /// `flows_info(uid)`: a flow instance's id, status, loop, parent and
    /// children, as NeMo's function reports them.
    pub(super) fn flows_info(&self, uid: u64) -> Option<Value> {
        let i = self.flows.get(&uid)?;
        Some(serde_json::json!({
            "flow_instance_uid": uid,
            "flow_id": i.flow,
            "loop_id": i.looped,
            "status": format!("{:?}", i.status).to_lowercase(),
            "source_flow_instance_uid": i.parent,
            "child_flow_uids": i.children,
            "context": i.vars,
            "arguments": i.args,
        }))
    }

    /// A number not used before (for generated flows' names).
    pub fn fresh(&mut self) -> u64 {
        self.next_uid()
    }

    /// Whether a flow of this name exists (the config's, or added).
    pub fn has_flow(&self, prog: &Program, name: &str) -> bool {
        prog.flows.contains_key(name) || self.added.contains_key(name)
    }

    /// Whether a flow of the config's waits for a user intent.
    pub fn expects_intents(&self, prog: &Program) -> bool {
        !self.expected_intents(prog).is_empty()
    }

    /// The config's user-intent flows now running (what the user is expected to do).
    pub fn expected_intents(&self, prog: &Program) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for i in self.flows.values().filter(|i| i.listening()) {
            let own = prog.flows.get(&i.flow).is_some_and(|f| !f.library);
            if own && i.flow.starts_with("user ") && !out.contains(&i.flow) {
                out.push(i.flow.clone());
            }
        }
        out
    }

    /// A history entry (the same entry twice in a row is one).
    pub fn log(&mut self, user: bool, mut line: String) {
        if line.len() > MAX_ENTRY_BYTES {
            let mut cut = MAX_ENTRY_BYTES;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        if self.history.back().is_some_and(|(_, l)| *l == line) {
            return;
        }
        // The bot's actions one after the other are one, as NeMo writes them.
        if let Some(action) = line.strip_prefix("bot action: ")
            && let Some((false, last)) = self.history.back_mut()
            && last.starts_with("bot action: ")
            && last.len() < 4096
        {
            last.push_str("\n  and ");
            last.push_str(action);
            return;
        }
        self.history.push_back((user, line));
        let mut bytes: usize = self.history.iter().map(|(_, l)| l.len()).sum();
        while self.history.len() > MAX_HISTORY || bytes > MAX_HISTORY_BYTES {
            match self.history.pop_front() {
                Some((_, l)) => bytes -= l.len(),
                None => break,
            }
        }
    }

    /// Takes a bot message the output rails refused out of the history.
    pub fn forget_said(&mut self, text: &str) {
        let said = format!("bot say \"{}\"", text.replace('\n', "\\n"));
        self.history.retain(|(user, l)| *user || !l.contains(&said));
    }

    /// Takes the last user message (refused by the input rails) out of the history.
    pub fn forget_user(&mut self) {
        if let Some(at) = self
            .history
            .iter()
            .rposition(|(user, l)| *user && l.starts_with("user action:"))
        {
            self.history.truncate(at);
        }
    }

    /// A config flow named as an intent started (`bot …`) or finished
    /// (`user …`): the history's intent line.
    pub(super) fn log_intent(&mut self, t: &Turn<'_>, flow: &str, finished: bool) {
        let Some(def) = t.def(flow).filter(|f| !f.library) else {
            return;
        };
        if let Some(intent) = def.bot_intent.as_ref().filter(|_| !finished) {
            self.log(false, format!("bot intent: {intent}"));
            return;
        }
        match (
            finished,
            flow.starts_with("user "),
            flow.starts_with("bot "),
        ) {
            (true, true, _) => self.log(true, format!("user intent: {flow}")),
            (false, _, true) => self.log(false, format!("bot intent: {flow}")),
            _ => {}
        }
    }

    /// The history as NeMo's `colang` filter writes it for Colang 2: the
    /// user's and the bot's entries, a blank line between the sides.
    pub fn history_text(&self) -> String {
        let mut out = String::new();
        let mut side = None;
        for (user, line) in &self.history {
            let turn = line.starts_with("user action:");
            if side.is_some_and(|s| s != *user) || (turn && side.is_some()) {
                out.push('\n');
            }
            side = Some(*user);
            out.push_str(line);
            out.push('\n');
        }
        out.trim_end().to_string()
    }
}

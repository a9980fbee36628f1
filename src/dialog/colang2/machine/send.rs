//! Sending: conflicts between heads resolved, events and actions out;
//! and the variables flows read and write.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::super::compile::Op;
use super::super::syntax::{Part, V};
use super::{
    Action, Event, INTERNAL, Machine, Ref, Res, Turn, action_args, compare, pick, reference,
    same_args,
};
use crate::dialog::{Vars, value};

impl Machine {
    /// Heads about to send: the best-matching send of each interaction
    /// loop goes out, with every head sending the same; the rest fail.
    pub(super) fn resolve(&mut self, t: &mut Turn<'_>, heads: Vec<u64>) -> Res<()> {
        let mut pending = Vec::new();
        for uid in heads {
            let ev = self.send_event(t, uid)?;
            let inst = self.flows.get(&uid);
            let looped = inst.map(|i| i.looped.clone()).unwrap_or_default();
            let scores = inst.map(|i| i.head.scores.clone()).unwrap_or_default();
            pending.push((looped, scores, uid, ev));
        }
        let mut groups: BTreeMap<String, Vec<(Vec<f64>, u64, Event)>> = BTreeMap::new();
        for (looped, scores, uid, ev) in pending {
            groups.entry(looped).or_default().push((scores, uid, ev));
        }
        for (_, mut group) in groups {
            group.sort_by(|a, b| compare(&b.0, &a.0));
            let ties = group
                .iter()
                .take_while(|g| compare(&g.0, &group[0].0).is_eq())
                .count();
            let winner = group.swap_remove(pick(ties));
            let bound = self.emit(t, winner.1, winner.2.clone());
            for (_, uid, ev) in group {
                if ev.name == winner.2.name && same_args(&ev.args, &winner.2.args) {
                    self.advance_sender(t, uid, bound.clone());
                } else {
                    self.abort(t, uid);
                }
            }
        }
        Ok(())
    }

    /// The event `uid`'s head is about to send.
    pub(super) fn send_event(&self, t: &Turn<'_>, uid: u64) -> Res<Event> {
        let inst = self.flows.get(&uid).ok_or("a flow went away")?;
        let op = self.flow(t, uid).and_then(|f| f.ops.get(inst.head.pc));
        let mut ev = match op {
            Some(Op::Send { name, args, .. }) => Event::new(name, self.args(uid, args)?),
            Some(Op::SendRef { var, member }) => match reference(self.raw(uid, var).as_ref()) {
                Some(Ref::Action(a, name)) => {
                    Event::new(&format!("{member}{name}"), action_args(a))
                }
                Some(Ref::Flow(f)) if member == "Stop" => {
                    let mut args = Map::new();
                    args.insert("flow_instance_uid".into(), Value::from(f));
                    Event::new("StopFlow", args)
                }
                _ => {
                    return Err(format!(
                        "`send ${var}.{member}()`: `${var}` is not an action or a flow"
                    ));
                }
            },
            _ => return Err("a head left its send".into()),
        };
        ev.scores = inst.head.scores.clone();
        Ok(ev)
    }

    /// Sends the winning event; returns what its `as $ref` binds.
    pub(super) fn emit(&mut self, t: &mut Turn<'_>, uid: u64, mut ev: Event) -> Value {
        let bound = match ev
            .name
            .strip_prefix("Start")
            .filter(|n| n.ends_with("Action"))
        {
            Some(action) => {
                let a = ev
                    .args
                    .get("action_uid")
                    .and_then(Value::as_u64)
                    .unwrap_or_else(|| self.next_uid());
                ev.args.insert("action_uid".into(), Value::from(a));
                let mut args = ev.args.clone();
                args.remove("action_uid");
                // As NeMo's chat finishes them: an utterance and a gesture
                // are done once sent.
                let instant = matches!(action, "UtteranceBotAction" | "GestureBotAction");
                self.actions.insert(
                    a,
                    Action {
                        name: action.into(),
                        args,
                        finished: instant,
                        ret: Value::Null,
                    },
                );
                if instant {
                    let fin = self.finish_instant(action, a, &ev);
                    let started = Event::new(&format!("{action}Started"), action_args(a));
                    t.out.push(ev.clone());
                    t.out.push(fin.clone());
                    t.external.push_back(ev.clone());
                    t.external.push_back(started);
                    t.external.push_back(fin);
                } else {
                    let mut args = ev.args.clone();
                    args.remove("action_uid");
                    t.started.push((a, action.to_string(), args));
                    t.out.push(ev.clone());
                    t.external.push_back(ev.clone());
                }
                json!({"__action": a, "name": action})
            }
            None => {
                let mut obj = ev.args.clone();
                obj.insert("name".into(), Value::String(ev.name.clone()));
                if INTERNAL.contains(&ev.name.as_str()) {
                    t.internal.push_back(ev);
                } else {
                    t.out.push(ev.clone());
                    t.external.push_back(ev);
                }
                Value::Object(obj)
            }
        };
        self.advance_sender(t, uid, bound.clone());
        bound
    }

    /// The `…Finished` event of an action done once sent, logged as the
    /// bot's action.
    fn finish_instant(&mut self, action: &str, a: u64, ev: &Event) -> Event {
        let mut done = action_args(a);
        let (key, flow) = match action {
            "GestureBotAction" => ("gesture", "bot gesture"),
            _ => ("script", "bot say"),
        };
        let said = ev.args.get(key).cloned().unwrap_or(Value::Null);
        let shown = value::display(&said).replace('\n', "\\n");
        self.log(false, format!("bot action: {flow} \"{shown}\""));
        if action == "UtteranceBotAction" {
            done.insert("final_script".into(), said);
        }
        done.insert("is_success".into(), Value::Bool(true));
        done.insert("return_value".into(), Value::Null);
        Event::new(&format!("{action}Finished"), done)
    }

    pub(super) fn advance_sender(&mut self, t: &mut Turn<'_>, uid: u64, bound: Value) {
        let bind = match self
            .flow(t, uid)
            .and_then(|f| self.flows.get(&uid).and_then(|i| f.ops.get(i.head.pc)))
        {
            Some(Op::Send { bind, .. }) => bind.clone(),
            _ => None,
        };
        if let Some(var) = bind {
            self.assign(uid, &var, bound);
        }
        if let Some(i) = self.flows.get_mut(&uid) {
            i.head.pc += 1;
        }
        t.slide.push_back(uid);
    }

    pub(super) fn assign(&mut self, uid: u64, var: &str, v: Value) {
        let Some(i) = self.flows.get_mut(&uid) else {
            return;
        };
        if i.globals.iter().any(|g| g == var) {
            self.globals.insert(var.to_string(), v);
        } else {
            i.vars.insert(var.to_string(), v);
        }
    }

    /// A variable as stored (references unexpanded).
    pub(super) fn raw(&self, uid: u64, var: &str) -> Option<Value> {
        if let Some((base, member)) = var.split_once('.') {
            return self.event_ref(uid, base, member);
        }
        let i = self.flows.get(&uid)?;
        match i.globals.iter().any(|g| g == var) {
            true => self.globals.get(var).cloned(),
            false => i.vars.get(var).or_else(|| self.globals.get(var)).cloned(),
        }
    }

    /// `$event.action` of a matched `Start…Action` event, `$event.flow` of
    /// a matched flow event: a reference to that action or flow.
    fn event_ref(&self, uid: u64, base: &str, member: &str) -> Option<Value> {
        let ev = self.raw(uid, base)?;
        let o = ev.as_object()?;
        match member {
            "action" => {
                let a = o.get("action_uid")?.as_u64()?;
                let name = o.get("name").map(value::display).unwrap_or_default();
                let name = name.strip_prefix("Start").unwrap_or(&name).to_string();
                Some(json!({"__action": a, "name": name}))
            }
            "flow" => Some(json!({"__flow": o.get("flow_instance_uid")?.as_u64()?})),
            _ => None,
        }
    }

    /// A variable as expressions read it: a reference to a flow or an
    /// action reads as its state (`$ref.transcript`, `$ref.return_value`).
    pub(super) fn read(&self, uid: u64, var: &str) -> Option<Value> {
        if var == "self" {
            let i = self.flows.get(&uid)?;
            let context: Map<String, Value> = i
                .vars
                .iter()
                .filter(|(_, v)| reference(Some(v)).is_none())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            return Some(json!({"uid": uid, "flow_id": i.flow, "context": context,
                               "loop_id": i.looped}));
        }
        if let Some(of) = var.strip_prefix(crate::dialog::funcs::FLOWS_INFO) {
            return self.flows_info(of.parse().ok()?);
        }
        let raw = self.raw(uid, var)?;
        Some(match reference(Some(&raw)) {
            Some(Ref::Flow(f)) => {
                let mut obj = Map::new();
                if let Some(i) = self.flows.get(&f) {
                    for (k, v) in &i.vars {
                        if reference(Some(v)).is_none() {
                            obj.insert(k.clone(), v.clone());
                        }
                    }
                    obj.insert("flow_id".into(), Value::String(i.flow.clone()));
                    obj.insert("return_value".into(), i.ret.clone());
                    obj.insert(
                        "status".into(),
                        json!(format!("{:?}", i.status).to_lowercase()),
                    );
                }
                obj.insert("uid".into(), Value::from(f));
                Value::Object(obj)
            }
            Some(Ref::Action(a, name)) => {
                let mut obj = self
                    .actions
                    .get(&a)
                    .map(|x| x.args.clone())
                    .unwrap_or_default();
                if let Some(x) = self.actions.get(&a) {
                    obj.insert("return_value".into(), x.ret.clone());
                }
                obj.insert("uid".into(), Value::from(a));
                obj.insert("name".into(), Value::String(name));
                Value::Object(obj)
            }
            None => raw,
        })
    }

    pub(super) fn eval(&self, uid: u64, e: &crate::dialog::Expr) -> Res<Value> {
        e.eval(&|n| self.read(uid, n))
            .map_err(|m| self.context(uid, &m))
    }

    pub(super) fn context(&self, uid: u64, m: &str) -> String {
        let flow = self.flows.get(&uid).map(|i| i.flow.as_str()).unwrap_or("?");
        format!("the Colang 2 flow `{flow}`: {m}")
    }

    pub(super) fn value(&self, uid: u64, v: &V) -> Res<Value> {
        match v {
            V::E(e) => self.eval(uid, e),
            V::T(parts) => {
                let mut s = String::new();
                for p in parts {
                    match p {
                        Part::Lit(l) => s.push_str(l),
                        Part::E(e) => s.push_str(&value::display(&self.eval(uid, e)?)),
                    }
                    if s.len() > value::MAX_VALUE {
                        return Err(self.context(uid, "a text over 1 MiB"));
                    }
                }
                Ok(Value::String(s))
            }
        }
    }

    /// A parameter's default, read without a flow.
    pub(super) fn value_in(&self, vars: &Vars, v: &V) -> Res<Value> {
        match v {
            V::E(e) => e.eval(&|n| vars.get(n).cloned()),
            V::T(_) => Err("a parameter default with `{$…}`".into()),
        }
    }

    pub(super) fn args(&self, uid: u64, args: &[(String, V)]) -> Res<Map<String, Value>> {
        args.iter()
            .map(|(k, v)| Ok((k.clone(), self.value(uid, v)?)))
            .collect()
    }

    /// Drops ended flows and actions no running flow refers to.
    pub(super) fn prune(&mut self) {
        let mut keep: Vec<u64> = Vec::new();
        let mut actions: Vec<u64> = Vec::new();
        for i in self.flows.values().filter(|i| i.listening()) {
            keep.extend(i.children.iter().copied());
            for v in i.vars.values() {
                match reference(Some(v)) {
                    Some(Ref::Flow(f)) => keep.push(f),
                    Some(Ref::Action(a, _)) => actions.push(a),
                    None => {}
                }
            }
        }
        self.flows
            .retain(|u, i| i.listening() || keep.contains(u) || Some(*u) == self.main);
        self.actions
            .retain(|a, x| !x.finished || actions.contains(a));
    }
}

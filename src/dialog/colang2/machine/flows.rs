//! Flow instances: their heads sliding through the operations, starting,
//! ending and starting again.

use serde_json::{Map, Value, json};

use super::super::compile::{Op, Pat};
use super::super::syntax::V;
use super::{
    Event, Head, INTERNAL, Inst, MAX_FLOWS, Machine, Ref, Res, Status, Turn, action_args, pick,
    reference,
};
use crate::dialog::{Vars, value};

/// How a flow instance starts.
pub(super) struct Spawn {
    pub parent: Option<u64>,
    pub activated: bool,
    pub scores: Vec<f64>,
    /// The instance uid it takes (one an `UnhandledEvent` named), if free.
    pub uid: Option<u64>,
}

impl Machine {
    /// Moves `uid`'s head to its next wait or event to send.
    pub(super) fn slide(&mut self, t: &mut Turn<'_>, uid: u64) -> Res<()> {
        loop {
            self.step(t)?;
            let Some(inst) = self.flows.get(&uid) else {
                return Ok(());
            };
            if !inst.listening() || !inst.head.live {
                return Ok(());
            }
            let pc = inst.head.pc;
            let Some(flow) = self.flow(t, uid) else {
                return Ok(());
            };
            let Some(op) = flow.ops.get(pc) else {
                return self.end(t, uid);
            };
            let next = match op {
                Op::Match(arms) => {
                    // Waiting for a flow it started to start is not yet waiting.
                    let internal = arms.iter().all(|a| {
                        a.leaves.iter().all(
                            |l| matches!(&l.pat, Pat::Ref { member, .. } if member == "Started"),
                        )
                    });
                    if !internal {
                        self.started(t, uid);
                    }
                    return Ok(());
                }
                Op::Send { name, args, .. } if INTERNAL.contains(&name.as_str()) => {
                    let mut ev = Event::new(name, self.args(uid, args)?);
                    ev.args
                        .insert("source_flow_instance_uid".into(), Value::from(uid));
                    ev.scores = inst.head.scores.clone();
                    t.internal.push_back(ev);
                    pc + 1
                }
                Op::Send { .. } | Op::SendRef { .. } => {
                    t.actionable.push(uid);
                    return Ok(());
                }
                Op::StartFlow {
                    id,
                    args,
                    bind,
                    activated,
                } => self.start_op(t, uid, id, args, bind, *activated)? + pc,
                Op::Return(v) => {
                    let ret = match v {
                        Some(v) => self.value(uid, v)?,
                        None => Value::Null,
                    };
                    if let Some(i) = self.flows.get_mut(&uid) {
                        i.ret = ret;
                    }
                    self.started(t, uid);
                    self.finish(t, uid);
                    return Ok(());
                }
                Op::Abort => {
                    self.abort(t, uid);
                    return Ok(());
                }
                _ => self.simple(t, uid, op, pc)?,
            };
            if let Some(i) = self.flows.get_mut(&uid) {
                i.head.pc = next;
            }
        }
    }

    /// The operations that go on at once: the next position.
    fn simple(&mut self, t: &mut Turn<'_>, uid: u64, op: &Op, pc: usize) -> Res<usize> {
        Ok(match op {
            Op::Random(targets) => targets.get(pick(targets.len())).copied().unwrap_or(pc + 1),
            Op::Set(var, v) => {
                let v = self.value(uid, v)?;
                self.assign(uid, var, v);
                pc + 1
            }
            Op::Global(var) => {
                if let Some(i) = self.flows.get_mut(&uid) {
                    i.globals.push(var.clone());
                }
                pc + 1
            }
            Op::Unless(e, target) => match value::truthy(&self.eval(uid, e)?) {
                true => pc + 1,
                false => *target,
            },
            Op::Jump(target) => *target,
            Op::Stop(var) => {
                self.stop(t, uid, var);
                pc + 1
            }
            Op::NewInstance => {
                self.renew(t, uid)?;
                pc + 1
            }
            Op::Log(v) => {
                let v = self.value(uid, v)?;
                let flow = self
                    .flows
                    .get(&uid)
                    .map(|i| i.flow.as_str())
                    .unwrap_or_default();
                tracing::debug!(flow, "colang: {}", value::display(&v));
                pc + 1
            }
            _ => pc + 1,
        })
    }

    /// A `StartFlow` operation: how far the head moves.
    pub(super) fn start_op(
        &mut self,
        t: &mut Turn<'_>,
        uid: u64,
        id: &str,
        args: &[(Option<String>, V)],
        bind: &str,
        activated: bool,
    ) -> Res<usize> {
        let mut given = Map::new();
        for (n, (k, v)) in args.iter().enumerate() {
            let key = k.clone().unwrap_or_else(|| format!("${n}"));
            given.insert(key, self.value(uid, v)?);
        }
        if activated
            && let Some((&running, _)) = self
                .flows
                .iter()
                .find(|(_, i)| i.activated && i.listening() && i.flow == id && i.args == given)
        {
            self.assign(uid, bind, json!({"__flow": running}));
            return Ok(2);
        }
        let scores = self
            .flows
            .get(&uid)
            .map(|i| i.head.scores.clone())
            .unwrap_or_default();
        let child = match self.start(t, id, given.clone(), Some(uid), activated, scores.clone())? {
            Some(c) => c,
            None => {
                // NeMo: an undefined flow is an `UnhandledEvent` a flow may catch.
                let dead = self.next_uid();
                given.insert("flow_id".into(), Value::String(id.to_string()));
                given.insert("flow_instance_uid".into(), Value::from(dead));
                given.insert("source_flow_instance_uid".into(), Value::from(uid));
                self.unhandled(
                    t,
                    &Event {
                        name: "StartFlow".into(),
                        args: given,
                        scores,
                    },
                );
                dead
            }
        };
        self.assign(uid, bind, json!({"__flow": child}));
        Ok(1)
    }

    pub(super) fn next_uid(&mut self) -> u64 {
        self.next = self.next.saturating_add(1);
        self.next
    }

    /// Starts flow `id` (none if the config has no such flow).
    pub(super) fn start(
        &mut self,
        t: &mut Turn<'_>,
        id: &str,
        given: Map<String, Value>,
        parent: Option<u64>,
        activated: bool,
        scores: Vec<f64>,
    ) -> Res<Option<u64>> {
        let how = Spawn {
            parent,
            activated,
            scores,
            uid: None,
        };
        self.spawn(t, id, given, how)
    }

    /// Starts flow `id` as `how` says.
    pub(super) fn spawn(
        &mut self,
        t: &mut Turn<'_>,
        id: &str,
        given: Map<String, Value>,
        how: Spawn,
    ) -> Res<Option<u64>> {
        let Spawn {
            parent,
            activated,
            scores,
            uid,
        } = how;
        let Some(flow) = t.def(id) else {
            return Ok(None);
        };
        if self.flows.values().filter(|i| i.listening()).count() >= MAX_FLOWS {
            return Err(format!(
                "the Colang 2 flows started over {MAX_FLOWS} flows at once"
            ));
        }
        // Only a uid this machine issued (an undefined flow's placeholder).
        let uid = match uid.filter(|u| *u <= self.next && !self.flows.contains_key(u)) {
            Some(u) => u,
            None => self.next_uid(),
        };
        let looped = match (&flow.loop_id, parent.and_then(|p| self.flows.get(&p))) {
            (Some(l), _) if l == "NEW" => format!("loop{uid}"),
            (Some(l), _) => l.clone(),
            (None, Some(p)) => p.looped.clone(),
            (None, None) => "main".into(),
        };
        let mut vars = Vars::new();
        for (n, (param, default)) in flow.sig.params.iter().enumerate() {
            let v = match given.get(param).or_else(|| given.get(&format!("${n}"))) {
                Some(v) => v.clone(),
                None => match default {
                    Some(d) => self.value_in(&Vars::new(), d)?,
                    None => Value::Null,
                },
            };
            vars.insert(param.clone(), v);
        }
        let inst = Inst {
            flow: id.to_string(),
            head: Head {
                pc: 0,
                live: true,
                done: Vec::new(),
                scores,
            },
            vars,
            globals: Vec::new(),
            status: Status::Starting,
            parent,
            activated,
            renewed: false,
            looped,
            args: given,
            params: flow.sig.params.iter().map(|(p, _)| p.clone()).collect(),
            children: Vec::new(),
            ret: Value::Null,
        };
        self.flows.insert(uid, inst);
        self.log_intent(t, id, false);
        if let Some(p) = parent.and_then(|p| self.flows.get_mut(&p)) {
            p.children.push(uid);
        }
        t.slide.push_back(uid);
        Ok(Some(uid))
    }

    /// A flow reached its first wait (or its end): it has started.
    pub(super) fn started(&mut self, t: &mut Turn<'_>, uid: u64) {
        let Some(inst) = self.flows.get_mut(&uid) else {
            return;
        };
        if inst.status != Status::Starting {
            return;
        }
        inst.status = Status::Started;
        let ev = self.flow_event("FlowStarted", uid);
        t.internal.push_back(ev);
    }

    pub(super) fn flow_event(&self, name: &str, uid: u64) -> Event {
        let mut args = Map::new();
        let mut scores = Vec::new();
        if let Some(i) = self.flows.get(&uid) {
            for k in &i.params {
                if let Some(v) = i.vars.get(k) {
                    args.insert(k.clone(), v.clone());
                }
            }
            args.insert("flow_id".into(), Value::String(i.flow.clone()));
            args.insert("return_value".into(), i.ret.clone());
            if let Some(p) = i.parent {
                args.insert("source_flow_instance_uid".into(), Value::from(p));
            }
            scores = i.head.scores.clone();
        }
        args.insert("flow_instance_uid".into(), Value::from(uid));
        Event {
            name: name.into(),
            args,
            scores,
        }
    }

    /// The end of a flow's operations.
    pub(super) fn end(&mut self, t: &mut Turn<'_>, uid: u64) -> Res<()> {
        let returns = self.flow(t, uid).and_then(|f| f.sig.returns.as_deref());
        let Some(inst) = self.flows.get_mut(&uid) else {
            return Ok(());
        };
        if let Some(r) = returns
            && inst.ret.is_null()
        {
            inst.ret = inst.vars.get(r).cloned().unwrap_or(Value::Null);
        }
        if inst.status == Status::Starting && inst.activated {
            // NeMo: an activated flow that never waited stays, done.
            inst.head.live = false;
            self.started(t, uid);
            return Ok(());
        }
        self.started(t, uid);
        self.finish(t, uid);
        Ok(())
    }

    pub(super) fn finish(&mut self, t: &mut Turn<'_>, uid: u64) {
        self.close(t, uid, Status::Finished, "FlowFinished");
    }

    pub(super) fn abort(&mut self, t: &mut Turn<'_>, uid: u64) {
        self.close(t, uid, Status::Failed, "FlowFailed");
    }

    /// Ends a flow (and what it started), tells its parent, and starts an
    /// activated flow again.
    pub(super) fn close(&mut self, t: &mut Turn<'_>, uid: u64, status: Status, event: &str) {
        let mut work = vec![(uid, status, event, false)];
        while let Some((uid, status, event, cascade)) = work.pop() {
            let Some(inst) = self.flows.get_mut(&uid) else {
                continue;
            };
            if !inst.listening() {
                continue;
            }
            inst.status = status;
            inst.head.live = false;
            let children = std::mem::take(&mut inst.children);

            let restart = inst.activated && !inst.renewed && !cascade && Some(uid) != self.main;
            inst.renewed |= restart;
            let ev = self.flow_event(event, uid);
            t.internal.push_back(ev);
            if status == Status::Finished && !cascade {
                let flow = self
                    .flows
                    .get(&uid)
                    .map(|i| i.flow.clone())
                    .unwrap_or_default();
                self.log_intent(t, &flow, true);
            }
            if let Some((w, end)) = &mut self.watched
                && *w == uid
            {
                *end = Some(status);
            }
            if restart && let Some(i) = self.flows.get(&uid) {
                let (flow, args, scores) = (i.flow.clone(), i.args.clone(), i.head.scores.clone());
                // Restarted instances outlive the flow that activated them, as in NeMo.
                if let Err(e) = self.start(t, &flow, args, None, true, scores) {
                    tracing::warn!("colang: {e}");
                }
            }
            work.extend(
                children
                    .into_iter()
                    .map(|c| (c, Status::Failed, "FlowFailed", true)),
            );
        }
    }

    /// `start_new_flow_instance`: the next instance of an activated flow starts now.
    pub(super) fn renew(&mut self, t: &mut Turn<'_>, uid: u64) -> Res<()> {
        let Some(i) = self.flows.get_mut(&uid) else {
            return Ok(());
        };
        if !i.activated || i.renewed || i.status != Status::Started {
            return Ok(());
        }
        i.renewed = true;
        let (flow, args, scores) = (i.flow.clone(), i.args.clone(), i.head.scores.clone());
        self.start(t, &flow, args, None, true, scores)?;
        Ok(())
    }

    /// Stops the flow or action `$var` refers to.
    pub(super) fn stop(&mut self, t: &mut Turn<'_>, uid: u64, var: &str) {
        match reference(self.raw(uid, var).as_ref()) {
            Some(Ref::Flow(f)) if self.flows.contains_key(&f) => self.abort(t, f),
            // An undefined flow's placeholder: whoever stands in for it
            // (`continuation on undefined flow`) hears it stop.
            Some(Ref::Flow(f)) => {
                let mut args = Map::new();
                args.insert("flow_instance_uid".into(), Value::from(f));
                t.internal.push_back(Event::new("StopFlow", args));
            }
            Some(Ref::Action(a, name)) if self.actions.get(&a).is_some_and(|x| !x.finished) => {
                let ev = Event::new(&format!("Stop{name}"), action_args(a));
                t.out.push(ev.clone());
                t.external.push_back(ev);
            }
            _ => {}
        }
    }
}

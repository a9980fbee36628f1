//! Specs into operations: what `send`, `start`, `await`, `activate` and
//! `when` do with an event, an action or a flow, and a group of them.

use super::super::syntax::{Group, Spec, Target, V};
use super::{Arm, Compiler, Err, Leaf, MAX_ARMS, Op, Pat};
use crate::config::ConfigError;

impl Compiler<'_> {
    /// `send A and B` sends both; `send A or B` one of them at random.
    pub(super) fn send(&mut self, g: &Group, err: Err<'_>) -> Result<(), ConfigError> {
        match g {
            Group::One(s) => {
                let op = match &s.target {
                    Target::Named { name, member } => Op::Send {
                        name: format!("{name}{}", member.as_deref().unwrap_or("")),
                        args: named_args(s, err)?,
                        bind: s.bind.clone(),
                    },
                    Target::Ref { var, member } => Op::SendRef {
                        var: var.clone(),
                        member: member.clone(),
                    },
                    Target::Flow(f) => {
                        return Err(err(format!("`send {f}`: flows are started, not sent")));
                    }
                };
                self.ops.push(op);
                Ok(())
            }
            Group::And(gs) => gs.iter().try_for_each(|g| self.send(g, err)),
            Group::Or(gs) => self.random(gs, err, &mut |c, g, e| c.send(g, e)),
        }
    }

    /// One of `gs` at random, each compiled by `each`.
    pub(super) fn random(
        &mut self,
        gs: &[Group],
        err: Err<'_>,
        each: &mut dyn FnMut(&mut Self, &Group, Err<'_>) -> Result<(), ConfigError>,
    ) -> Result<(), ConfigError> {
        let pick = self.ops.len();
        self.ops.push(Op::Random(Vec::new()));
        let mut targets = Vec::new();
        let mut ends = Vec::new();
        for g in gs {
            targets.push(self.ops.len());
            each(self, g, err)?;
            ends.push(self.ops.len());
            self.ops.push(Op::Jump(0));
        }
        self.close(ends);
        self.ops[pick] = Op::Random(targets);
        Ok(())
    }

    /// Starts what `g` names (flows wait until started); returns the
    /// group of what finishing means, and the references.
    pub(super) fn start_group(
        &mut self,
        g: &Group,
        err: Err<'_>,
    ) -> Result<(Group, Vec<String>), ConfigError> {
        self.start_group_as(g, false, err)
    }

    pub(super) fn start_group_as(
        &mut self,
        g: &Group,
        activated: bool,
        err: Err<'_>,
    ) -> Result<(Group, Vec<String>), ConfigError> {
        let mut refs = Vec::new();
        let mut started = Vec::new();
        // NeMo: the flows of an `and` start one after the other (each
        // waits until started), the `or` alternatives at once (forked heads).
        self.sequential = !has_or(g);
        let finish = self.start_each(g, activated, &mut refs, &mut started, err)?;
        if started.len() > 32 {
            return Err(err("the statement starts over 32 flows at once".into()));
        }
        if !started.is_empty() {
            let target = self.ops.len() + 1;
            let leaves = started.iter().map(|r| leaf_ref(r, "Started")).collect();
            self.ops.push(Op::Match(vec![Arm { leaves, target }]));
        }
        Ok((finish, refs))
    }

    pub(super) fn start_each(
        &mut self,
        g: &Group,
        activated: bool,
        refs: &mut Vec<String>,
        started: &mut Vec<String>,
        err: Err<'_>,
    ) -> Result<Group, ConfigError> {
        let s = match g {
            Group::One(s) => s,
            Group::And(gs) | Group::Or(gs) => {
                let parts = gs
                    .iter()
                    .map(|g| self.start_each(g, activated, refs, started, err))
                    .collect::<Result<Vec<_>, _>>()?;
                return Ok(match g {
                    Group::And(_) => Group::And(parts),
                    _ => Group::Or(parts),
                });
            }
        };
        let bind = s.bind.clone().unwrap_or_else(|| self.hide());
        match &s.target {
            Target::Flow(id) => {
                if !self.flows.contains(id) {
                    self.unknown.push((self.line, id.clone()));
                }
                self.ops.push(Op::StartFlow {
                    id: id.clone(),
                    args: s.args.clone(),
                    bind: bind.clone(),
                    activated,
                });
                if !activated && !self.sequential {
                    started.push(bind.clone());
                } else {
                    // Waits until started (an activation already running skips the wait).
                    let target = self.ops.len() + 1;
                    let leaves = vec![leaf_ref(&bind, "Started")];
                    self.ops.push(Op::Match(vec![Arm { leaves, target }]));
                }
            }
            Target::Named { name, member: None } if name.ends_with("Action") && !activated => {
                self.actions.push((self.line, name.clone()));
                self.ops.push(Op::Send {
                    name: format!("Start{name}"),
                    args: named_args(s, err)?,
                    bind: Some(bind.clone()),
                });
            }
            // An event or a reference (`when UtteranceUserAction.Finished()`,
            // `when $ref.Finished()`): waited for, nothing starts.
            _ if !activated => return Ok(Group::One(s.clone())),
            _ => {
                return Err(err(format!(
                    "`activate {}`: only flows are activated",
                    describe(s)
                )));
            }
        }
        refs.push(bind.clone());
        Ok(Group::One(Spec {
            target: Target::Ref {
                var: bind,
                member: "Finished".into(),
            },
            args: Vec::new(),
            bind: None,
        }))
    }

    /// A match's specs as patterns (flows named in a match are refused).
    pub(super) fn patterns(&self, g: &Group, err: Err<'_>) -> Result<Group, ConfigError> {
        if let Some(s) = g
            .specs()
            .into_iter()
            .find(|s| matches!(s.target, Target::Flow(_)))
        {
            return Err(err(format!(
                "`match {}`: a flow is awaited or started, not matched",
                describe(s)
            )));
        }
        Ok(g.clone())
    }
}

fn has_or(g: &Group) -> bool {
    match g {
        Group::One(_) => false,
        Group::Or(_) => true,
        Group::And(gs) => gs.iter().any(has_or),
    }
}

fn describe(s: &Spec) -> String {
    match &s.target {
        Target::Flow(f) => f.clone(),
        Target::Named { name, .. } => name.clone(),
        Target::Ref { var, member } => format!("${var}.{member}()"),
    }
}

pub(super) fn leaf_ref(var: &str, member: &str) -> Leaf {
    Leaf {
        pat: Pat::Ref {
            var: var.to_string(),
            member: member.into(),
            args: Vec::new(),
        },
        bind: None,
    }
}

fn named_args(s: &Spec, err: Err<'_>) -> Result<Vec<(String, V)>, ConfigError> {
    s.args
        .iter()
        .map(|(k, v)| match k {
            Some(k) => Ok((k.clone(), v.clone())),
            None => Err(err(format!(
                "`{}`: event arguments are `name=value`",
                describe(s)
            ))),
        })
        .collect()
}

/// A group as arms: each an `and` of leaves.
pub(super) fn dnf(g: &Group, err: Err<'_>) -> Result<Vec<Vec<Leaf>>, ConfigError> {
    let out = match g {
        Group::One(s) => {
            let pat = match &s.target {
                Target::Named { name, member } => Pat::Event {
                    name: format!("{name}{}", member.as_deref().unwrap_or("")),
                    args: named_args(s, err)?,
                },
                Target::Ref { var, member } => Pat::Ref {
                    var: var.clone(),
                    member: member.clone(),
                    args: named_args(s, err)?,
                },
                Target::Flow(f) => return Err(err(format!("`{f}`: a flow is not an event"))),
            };
            vec![vec![Leaf {
                pat,
                bind: s.bind.clone(),
            }]]
        }
        Group::Or(gs) => {
            let mut out = Vec::new();
            for g in gs {
                out.extend(dnf(g, err)?);
            }
            out
        }
        Group::And(gs) => {
            let mut out = vec![Vec::new()];
            for g in gs {
                let next = dnf(g, err)?;
                let mut product = Vec::new();
                for a in &out {
                    for b in &next {
                        let mut both: Vec<Leaf> = a.clone();
                        both.extend(b.iter().cloned());
                        product.push(both);
                    }
                }
                out = product;
                if out.len() > MAX_ARMS {
                    break;
                }
            }
            out
        }
    };
    if out.len() > MAX_ARMS || out.iter().any(|a| a.len() > 32) {
        return Err(err(format!(
            "the match expands to over {MAX_ARMS} alternatives"
        )));
    }
    Ok(out)
}

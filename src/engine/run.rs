//! One request's rail stages: which rails it selected, running them in order
//! or in parallel, and its log and timings.

use std::{sync::Arc, time::Instant};

use futures_util::{StreamExt, stream::FuturesUnordered};

use super::{Decision, GenerationLog, PhaseTiming, RailRecord, Request, Response, Violation};
use crate::{
    error::Error,
    llm::{CallLog, ChatMessage, Role},
    rails::{Rail, RailError, RailInput, RailSet, Stage, Verdict, flow_spec},
};

/// What a rail stage decided: a violation, or the rewritten text.
pub(super) type StageOutcome = Result<(Option<Violation>, Option<String>), Error>;

/// What an output check decided for a text.
pub(super) enum Checked {
    Pass,
    Rewritten(String),
    Stop(Violation),
}

/// Per-request logging state.
pub(super) struct RunLog {
    pub calls: Arc<CallLog>,
    pub rails: Vec<RailRecord>,
}

/// One request's selected rails, log and timings.
pub(super) struct Run {
    pub input: RailSet,
    /// Shared with the window checks of a stream.
    pub output: Arc<RailSet>,
    pub input_parallel: bool,
    pub output_parallel: bool,
    /// Whether a selected output rail may rewrite the answer.
    pub rewrites: bool,
    /// The tool input rails, on the tool results sent back.
    pub tool_input: RailSet,
    /// The tool output rails, on the calls the model asks for.
    pub tool_output: Arc<RailSet>,
    /// `rails.tool_input.parallel`, `rails.tool_output.parallel`.
    pub tool_parallel: (bool, bool),
    pub log: Option<RunLog>,
    pub timing: PhaseTiming,
    /// The messages the rails rewrote, by index (for [`Response::rewritten`]).
    pub rewritten: Vec<(usize, String)>,
    /// The main model's name, for the response.
    pub model: Arc<str>,
    /// Where the request's trace goes (`tracing`); the log is kept for it.
    pub trace: Option<Arc<super::trace::Tracer>>,
    /// The request asked for its log (else a log kept for the trace is dropped).
    pub keep_log: bool,
}

/// Checks the request shape.
fn validate(request: &Request) -> Result<(), Error> {
    let Some(last) = request.messages.last() else {
        return Err(Error::invalid(
            "messages",
            "at least one message is required",
        ));
    };
    if !matches!(last.role, Role::User | Role::Tool) {
        return Err(Error::InvalidRequest {
            field: "messages",
            message: format!(
                "the last message must have role `user` (or `tool`, with the results of the model's tool calls), not `{}`",
                last.role
            ),
        });
    }
    tool_results(&request.messages)?;
    if let Some(t) = request.options.llm_params.temperature
        && !(0.0..=2.0).contains(&t)
    {
        return Err(Error::invalid(
            "options.llm_params.temperature",
            format!("{t} is outside 0..=2"),
        ));
    }
    Ok(())
}

/// Tool results answer calls an earlier assistant message made, in a
/// conversation with a user message (the input rails check it).
fn tool_results(messages: &[ChatMessage]) -> Result<(), Error> {
    let mut results = messages
        .iter()
        .enumerate()
        .filter(|(_, m)| m.role == Role::Tool)
        .peekable();
    if results.peek().is_none() {
        return Ok(());
    }
    if !messages.iter().any(|m| m.role == Role::User) {
        return Err(Error::invalid(
            "messages",
            "tool results need the user message whose turn they continue",
        ));
    }
    for (i, m) in results {
        let id = m.extra.as_ref().and_then(|e| e.tool_call_id.as_deref());
        let asked = messages[..i]
            .iter()
            .any(|a| a.tool_calls().iter().any(|c| Some(c.id.as_str()) == id));
        if !asked {
            return Err(Error::InvalidRequest {
                field: "messages.tool_call_id",
                message: format!(
                    "messages[{i}]: a tool result answers a call of an earlier assistant message, and `{}` is none of them",
                    crate::error::echo(id.unwrap_or_default())
                ),
            });
        }
    }
    Ok(())
}

/// The rails of a stage that a request selected.
fn select(
    rails: &RailSet,
    on: bool,
    only: Option<&Vec<String>>,
    field: &'static str,
) -> Result<RailSet, Error> {
    if !on {
        return Ok(Vec::new());
    }
    let Some(only) = only else {
        return Ok(rails.clone());
    };
    for name in only {
        if !rails.iter().any(|r| r.flow() == name) {
            let configured: Vec<&str> = rails.iter().map(|r| r.flow()).collect();
            return Err(Error::invalid(
                field,
                format!(
                    "`{}` is not a configured flow of this stage; configured: [{}]",
                    crate::error::echo(name),
                    configured.join(", ")
                ),
            ));
        }
    }
    Ok(rails
        .iter()
        .filter(|r| only.iter().any(|n| n == r.flow()))
        .cloned()
        .collect())
}

impl Run {
    /// Validates the request and selects its rails from the configured ones.
    pub fn start(
        request: &Request,
        (model, trace): (Arc<str>, Option<Arc<super::trace::Tracer>>),
        input: &RailSet,
        output: &RailSet,
        parallel: (bool, bool),
    ) -> Result<Self, Error> {
        validate(request)?;
        Self::select(request, (model, trace), (input, output), parallel)
    }

    /// Selects the request's rails (a check's: its messages end anyhow).
    pub fn select(
        request: &Request,
        (model, trace): (Arc<str>, Option<Arc<super::trace::Tracer>>),
        (input, output): (&RailSet, &RailSet),
        parallel: (bool, bool),
    ) -> Result<Self, Error> {
        let o = &request.options;
        let output = select(
            output,
            o.output_rails,
            o.output_flows.as_ref(),
            "options.rails.output_flows",
        )?;
        let rewrites = output
            .iter()
            .any(|r| flow_spec(r.flow()).is_some_and(|s| s.rewrites));
        Ok(Run {
            input: select(
                input,
                o.input_rails,
                o.input_flows.as_ref(),
                "options.rails.input_flows",
            )?,
            output: Arc::new(output),
            tool_input: RailSet::new(),
            tool_output: Arc::new(RailSet::new()),
            tool_parallel: (false, false),
            input_parallel: parallel.0,
            output_parallel: parallel.1,
            rewrites,
            model,
            keep_log: o.log,
            log: (o.log || trace.is_some()).then(|| RunLog {
                calls: Arc::new(CallLog::default()),
                rails: Vec::new(),
            }),
            timing: PhaseTiming::default(),
            rewritten: Vec::new(),
            trace,
        })
    }

    /// The call log, when the request keeps one.
    pub fn calls(&self) -> Option<Arc<CallLog>> {
        self.log.as_ref().map(|l| l.calls.clone())
    }

    /// The call log and the rail records, borrowed apart.
    pub(super) fn log_parts(&mut self) -> (Option<&CallLog>, Option<&mut Vec<RailRecord>>) {
        match &mut self.log {
            Some(RunLog { calls, rails }) => (Some(&**calls), Some(rails)),
            None => (None, None),
        }
    }

    /// Runs the input rails on the last user message (a turn that sends
    /// tool results back checks it again, as NeMo does; one of tool results
    /// alone has none to check).
    pub async fn input_check(
        &mut self,
        messages: &[ChatMessage],
        context: Option<&std::collections::BTreeMap<String, serde_json::Value>>,
    ) -> StageOutcome {
        let Some(at) = messages.iter().rposition(|m| m.role == Role::User) else {
            return Ok((None, None));
        };
        let Some((last, history)) = messages[..=at].split_last() else {
            return Ok((None, None));
        };
        let started = Instant::now();
        let rails = std::mem::take(&mut self.input);
        let parallel = self.input_parallel;
        // The parts of the message besides its text, for judges that take them.
        let media: Vec<serde_json::Value> = last
            .parts()
            .unwrap_or_default()
            .iter()
            .filter(|p| p.get("type").and_then(serde_json::Value::as_str) != Some("text"))
            .cloned()
            .collect();
        let (calls, records) = self.log_parts();
        let input = RailInput {
            media: &media,
            user_input: &last.content,
            bot_response: None,
            bot_thinking: None,
            history,
            calls,
            context,
        };
        let outcome = run_rails(&rails, parallel, Stage::Input, input, records).await;
        self.input = rails;
        self.timing.input_rails = started.elapsed();
        outcome
    }

    /// Runs the output rails on a whole answer (with the model's reasoning
    /// trace as `bot_thinking`).
    pub async fn output_check(
        &mut self,
        user_input: &str,
        text: &str,
        thinking: Option<&str>,
        context: Option<&std::collections::BTreeMap<String, serde_json::Value>>,
    ) -> Result<Checked, Error> {
        if self.output.is_empty() {
            return Ok(Checked::Pass);
        }
        let started = Instant::now();
        let rails = self.output.clone();
        let parallel = self.output_parallel;
        let (calls, records) = self.log_parts();
        let input = RailInput {
            media: &[],
            user_input,
            bot_response: Some(text),
            bot_thinking: thinking,
            history: &[],
            calls,
            context,
        };
        let outcome = run_rails(&rails, parallel, Stage::Output, input, records).await;
        self.timing.output_rails += started.elapsed();
        Ok(match outcome? {
            (Some(v), _) => Checked::Stop(v),
            (None, Some(t)) => Checked::Rewritten(t),
            (None, None) => Checked::Pass,
        })
    }

    /// Attaches the log (when asked for) to the response.
    pub fn finish(mut self, mut response: Response, started: Instant) -> Response {
        response.model = self.model.to_string();
        response.rewritten = std::mem::take(&mut self.rewritten);
        response.log = self.finish_log(started);
        response
    }

    /// The log, traced, and returned when the request asked for it.
    pub fn finish_log(self, started: Instant) -> Option<GenerationLog> {
        let log = self.log?;
        let mut timing = self.timing;
        timing.total = started.elapsed();
        let log = GenerationLog {
            rails: log.rails,
            llm_calls: log.calls.take(),
            timing,
            started: Some(started),
        };
        if let Some(t) = &self.trace {
            t.record(&log, started);
        }
        self.keep_log.then_some(log)
    }
}

/// Counts a rail run and records it in the request log.
fn record(
    records: &mut Option<&mut Vec<RailRecord>>,
    stage: Stage,
    rail: &dyn Rail,
    verdict: &Result<Verdict, RailError>,
    started: Instant,
) {
    let (decision, reason) = match verdict {
        Ok(Verdict::Allow) => (Decision::Allow, ""),
        Ok(Verdict::Block { reason } | Verdict::Refuse { reason, .. }) => {
            (Decision::Block, reason.as_str())
        }
        Ok(Verdict::Modify { reason, .. }) => (Decision::Modify, reason.as_str()),
        Err(e) => (Decision::Error, e.0.as_str()),
    };
    let took = started.elapsed();
    metrics::counter!("streamguard_rail_runs_total", "rail" => rail.flow().to_string(), "decision" => decision.as_str())
        .increment(1);
    metrics::histogram!("streamguard_rail_duration_seconds", "rail" => rail.flow().to_string())
        .record(took.as_secs_f64());
    if let Some(records) = records.as_deref_mut() {
        records.push(RailRecord {
            flow: rail.flow().to_string(),
            stage,
            decision,
            reason: reason.to_string(),
            duration: took,
            started,
            window: None,
        });
    }
}

/// What one verdict means for the stage: go on (maybe with a rewrite), or stop.
fn apply(
    rail: &dyn Rail,
    (stage, input): (Stage, &RailInput<'_>),
    verdict: Result<Verdict, RailError>,
    rewritten: &mut Option<String>,
) -> Result<Option<Violation>, Error> {
    match verdict.map_err(|e| Error::Rail {
        rail: rail.flow().to_string(),
        message: e.0,
    })? {
        Verdict::Allow => Ok(None),
        Verdict::Block { reason } => {
            let refusal = rail.refusal(input, &reason);
            let mut v = Violation::blocked(rail.flow(), stage, reason);
            v.refusal = refusal;
            Ok(Some(v))
        }
        Verdict::Refuse { reason, answer } => {
            let mut v = Violation::blocked(rail.flow(), stage, reason);
            v.refusal = Some(answer);
            Ok(Some(v))
        }
        Verdict::Modify { text, .. } => {
            *rewritten = Some(text);
            Ok(None)
        }
    }
}

/// Runs rails in order (stopping at the first block; a rewrite feeds the
/// next rail) or all at once (the first block wins; dropping the rest
/// cancels them). Returns the violation, or the rewritten text.
pub(super) async fn run_rails(
    rails: &[Arc<dyn Rail>],
    parallel: bool,
    stage: Stage,
    input: RailInput<'_>,
    mut records: Option<&mut Vec<RailRecord>>,
) -> StageOutcome {
    let mut rewritten: Option<String> = None;
    if parallel && rails.len() > 1 {
        let mut pending: FuturesUnordered<_> = rails
            .iter()
            .map(|rail| async move {
                let started = Instant::now();
                (rail, rail.check(input).await, started)
            })
            .collect();
        while let Some((rail, verdict, started)) = pending.next().await {
            record(&mut records, stage, rail.as_ref(), &verdict, started);
            if let Some(v) = apply(rail.as_ref(), (stage, &input), verdict, &mut rewritten)? {
                return Ok((Some(v), None));
            }
        }
        return Ok((None, rewritten));
    }
    for rail in rails {
        let current = rewritten.as_deref();
        let input = RailInput {
            user_input: match (stage, current) {
                (Stage::Input, Some(t)) => t,
                _ => input.user_input,
            },
            bot_response: match (stage, current) {
                (Stage::Output | Stage::ToolInput, Some(t)) => Some(t),
                _ => input.bot_response,
            },
            ..input
        };
        let started = Instant::now();
        let verdict = rail.check(input).await;
        record(&mut records, stage, rail.as_ref(), &verdict, started);
        let mut next = None;
        if let Some(v) = apply(rail.as_ref(), (stage, &input), verdict, &mut next)? {
            return Ok((Some(v), None));
        }
        if next.is_some() {
            rewritten = next;
        }
    }
    Ok((None, rewritten))
}

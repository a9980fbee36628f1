//! The whole-answer path: input rails, the answer, output rails on all of it.

use std::time::Instant;

use super::{
    FinishReason, Inner, Request, Response,
    answer::AnswerRequest,
    run::{Checked, Run},
    upstream_error,
};
use crate::{
    error::Error,
    llm::{CallRecord, Role, StopFilter},
};

pub(super) async fn run(
    inner: &Inner,
    mut run: Run,
    mut request: Request,
    started: Instant,
) -> Result<Response, Error> {
    let context = request.context.take().map(std::sync::Arc::new);
    let (violation, rewritten) = turn_check(&mut run, &mut request, context.as_deref()).await?;
    if let Some(v) = violation {
        return Ok(run.finish(inner.blocked(v), started));
    }
    let stops = request.options.llm_params.stop.clone();
    let want_reasoning = request.options.reasoning;
    let state = request.state.clone();
    let (main, user_input) = inner.main_request(request, rewritten);
    let prompt = run
        .log
        .as_ref()
        .map(|_| CallRecord::prompt_text(&main.messages));
    let generation = Instant::now();
    let answer = inner
        .answerer
        .complete(AnswerRequest {
            chat: main,
            calls: run.calls(),
            state,
            context: context.clone(),
        })
        .await
        .map_err(upstream_error)?;
    let mut completion = answer.completion;
    let reasoning = completion.reasoning.take();
    run.timing.generation = generation.elapsed();
    record_main(&run, prompt, &completion, generation);
    let (mut content, stopped) = cut_at_stops(stops, std::mem::take(&mut completion.text));
    let vars = answer
        .dialog
        .as_ref()
        .map(|d| &d.context)
        .or(context.as_deref());
    let calls = std::mem::take(&mut completion.tool_calls);
    let text = (&*user_input, content.as_str(), !calls.is_empty());
    let verdict = check_answer(inner, &mut run, text, &reasoning, vars).await?;
    let reasoning_content = reasoning.filter(|_| want_reasoning);
    let mut block = match verdict {
        Checked::Stop(v) => Some(v),
        Checked::Pass => None,
        Checked::Rewritten(text) => {
            content = text;
            None
        }
    };
    if block.is_none() {
        block = run
            .tool_output_check(&calls, &user_input, context.as_deref())
            .await?;
    }
    let response = match block {
        Some(v) => Response {
            usage: completion.usage,
            reasoning_content,
            ..inner.blocked(v)
        },
        None => Response {
            content,
            violation: None,
            usage: completion.usage,
            log: None,
            dialog: answer.dialog,
            finish_reason: FinishReason::of(completion.finish, false, stopped),
            model: String::new(),
            reasoning_content,
            tool_calls: calls,
            rewritten: Vec::new(),
        },
    };
    Ok(run.finish(response, started))
}

/// The output rails on the answer (after the reasoning trace, with
/// `apply_to_reasoning_traces`).
async fn check_answer(
    inner: &Inner,
    run: &mut Run,
    (user_input, content, calls): (&str, &str, bool),
    reasoning: &Option<String>,
    vars: Option<&crate::dialog::Vars>,
) -> Result<Checked, Error> {
    // A turn of tool calls alone has no text for the output rails.
    if calls && content.is_empty() {
        return Ok(Checked::Pass);
    }
    let checked = match (reasoning, inner.config.apply_to_reasoning_traces()) {
        (Some(trace), true) => std::borrow::Cow::Owned(inner.with_trace(trace, content)),
        _ => std::borrow::Cow::Borrowed(content),
    };
    run.output_check(user_input, &checked, reasoning.as_deref(), vars)
        .await
}

/// The input rails on the last user message, then the tool input rails on
/// the tool results the turn sends back (with the user message as the
/// input rails left it as `$user_message`).
pub(super) async fn turn_check(
    run: &mut Run,
    request: &mut Request,
    context: Option<&crate::dialog::Vars>,
) -> super::run::StageOutcome {
    let (violation, rewritten) = run.input_check(&request.messages, context).await?;
    let last_user = request.messages.iter().rposition(|m| m.role == Role::User);
    if let (Some(text), Some(at)) = (&rewritten, last_user) {
        run.rewritten.push((at, text.clone()));
    }
    if violation.is_some() || run.tool_input.is_empty() {
        return Ok((violation, rewritten));
    }
    let user = rewritten
        .clone()
        .unwrap_or_else(|| crate::llm::last_user_text(&request.messages).to_string());
    let violation = run
        .tool_input_check(&mut request.messages, &user, context)
        .await?;
    Ok((violation, rewritten))
}

/// The answer cut at the request's stop strings, for a model that ignored
/// them, and whether one was met.
fn cut_at_stops(stops: Vec<String>, text: String) -> (String, bool) {
    let mut stops = StopFilter::new(stops);
    if stops.is_empty() {
        return (text, false);
    }
    let (cut, more) = stops.push(text);
    let rest = stops.finish();
    (cut.unwrap_or_default() + &rest.unwrap_or_default(), !more)
}

/// Records the main call in the request's log, when it keeps one.
fn record_main(
    run: &Run,
    prompt: Option<String>,
    completion: &crate::llm::Completion,
    started: Instant,
) {
    if let (Some(log), Some(prompt)) = (&run.log, prompt) {
        log.calls.record(CallRecord {
            task: "general".into(),
            prompt,
            completion: completion.text.clone(),
            usage: completion.usage,
            duration: run.timing.generation,
            started,
        });
    }
}

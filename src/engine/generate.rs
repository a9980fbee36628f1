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
    llm::{CallRecord, StopFilter},
};

pub(super) async fn run(
    inner: &Inner,
    mut run: Run,
    mut request: Request,
    started: Instant,
) -> Result<Response, Error> {
    let context = request.context.take().map(std::sync::Arc::new);
    let (violation, rewritten) = run
        .input_check(&request.messages, context.as_deref())
        .await?;
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
    let checked = match (&reasoning, inner.config.apply_to_reasoning_traces()) {
        (Some(trace), true) => std::borrow::Cow::Owned(inner.with_trace(trace, &content)),
        _ => std::borrow::Cow::Borrowed(content.as_str()),
    };
    let verdict = run
        .output_check(
            &user_input,
            &checked,
            reasoning.as_deref(),
            answer
                .dialog
                .as_ref()
                .map(|d| &d.context)
                .or(context.as_deref()),
        )
        .await?;
    drop(checked);
    let reasoning_content = reasoning.filter(|_| want_reasoning);
    match verdict {
        Checked::Pass => {}
        Checked::Rewritten(text) => content = text,
        Checked::Stop(v) => {
            let response = Response {
                usage: completion.usage,
                reasoning_content,
                ..inner.blocked(v)
            };
            return Ok(run.finish(response, started));
        }
    }
    let response = Response {
        content,
        violation: None,
        usage: completion.usage,
        log: None,
        dialog: answer.dialog,
        finish_reason: FinishReason::of(completion.finish, false, stopped),
        model: String::new(),
        reasoning_content,
    };
    Ok(run.finish(response, started))
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

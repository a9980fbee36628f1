//! The whole-answer path: input rails, the answer, output rails on all of it.

use std::time::Instant;

use super::{
    Inner, Request, Response,
    answer::AnswerRequest,
    run::{Checked, Run},
    upstream_error,
};
use crate::{error::Error, llm::CallRecord};

pub(super) async fn run(
    inner: &Inner,
    mut run: Run,
    request: Request,
    started: Instant,
) -> Result<Response, Error> {
    let (violation, rewritten) = run.input_check(&request.messages).await?;
    if let Some(v) = violation {
        return Ok(run.finish(inner.blocked(v), started));
    }
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
        })
        .await
        .map_err(upstream_error)?;
    let completion = answer.completion;
    run.timing.generation = generation.elapsed();
    if let (Some(log), Some(prompt)) = (&run.log, prompt) {
        log.calls.record(CallRecord {
            task: "general".into(),
            prompt,
            completion: completion.text.clone(),
            usage: completion.usage,
            duration: run.timing.generation,
        });
    }
    let mut content = completion.text;
    match run.output_check(&user_input, &content).await? {
        Checked::Pass => {}
        Checked::Rewritten(text) => content = text,
        Checked::Stop(v) => {
            let response = Response {
                usage: completion.usage,
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
    };
    Ok(run.finish(response, started))
}

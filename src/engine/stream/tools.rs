//! A stream's tool calls: put together as the model streams them, and sent
//! on at once or held for the rails.

use std::{
    task::{Context, Poll},
    time::Instant,
};

use futures_util::{FutureExt, future::BoxFuture};

use super::{Checked, Driver, Error, Violation, WindowVerdict};
use crate::llm::{ToolCallBuilder, ToolCallDelta};

/// The tool calls of a stream: put together as they arrive, sent on at
/// once, or (when rails check the stream) held until the output rails
/// passed the text and the tool output rails the whole calls.
#[derive(Default)]
pub(super) struct StreamTools {
    pub(super) calls: ToolCallBuilder,
    /// Output or tool output rails run: pieces wait for their verdict.
    pub(super) hold: bool,
    /// The held calls passed.
    pub(super) passed: bool,
    pub(super) held: Vec<ToolCallDelta>,
    pub(super) out: std::collections::VecDeque<Box<ToolCallDelta>>,
    pub(super) check: Option<BoxFuture<'static, Checked>>,
    pub(super) decided: bool,
    pub(super) violation: Option<Violation>,
}

impl Driver {
    /// A piece of a tool call: sent on, or held for the tool output rails.
    pub(super) fn on_tool_call(&mut self, piece: Box<ToolCallDelta>) -> Result<(), Error> {
        self.tools
            .calls
            .push(&piece)
            .map_err(crate::engine::upstream_error)?;
        match self.tools.hold {
            true => self.tools.held.push(*piece),
            false => self.tools.out.push_back(piece),
        }
        Ok(())
    }

    /// Once the text is done: the tool output rails on the whole calls,
    /// whose held pieces go out when they pass. A cut answer's calls are
    /// dropped unchecked.
    pub(super) fn poll_tools(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let t = &mut self.tools;
        if t.decided {
            return Poll::Ready(Ok(()));
        }
        if t.held.is_empty() || self.relay.cut() {
            t.held.clear();
            t.decided = true;
            return Poll::Ready(Ok(()));
        }
        let check = t.check.get_or_insert_with(|| {
            let c = self.checker.clone();
            let rails = self.run.tool_output.clone();
            let parallel = self.run.tool_parallel.1;
            let calls: Vec<_> = t.calls.calls().cloned().collect();
            Box::pin(async move {
                let started = Instant::now();
                let mut records = Vec::new();
                let logging = c.calls.is_some();
                let outcome = crate::engine::tools::check_calls(
                    (&rails, parallel),
                    &calls,
                    (&c.user_input, c.context.as_deref()),
                    (c.calls.as_deref(), logging.then_some(&mut records)),
                )
                .await;
                // A rail that cannot run blocks, as on the text's windows.
                let outcome = match outcome {
                    Err(Error::Rail { rail, message }) => Ok(Some(Violation::failed(
                        &rail,
                        crate::rails::Stage::ToolOutput,
                        message,
                    ))),
                    other => other,
                };
                Checked {
                    outcome: outcome.map(|v| v.map_or(WindowVerdict::Pass, WindowVerdict::Block)),
                    records,
                    took: started.elapsed(),
                }
            })
        });
        let checked = std::task::ready!(check.poll_unpin(cx));
        t.check = None;
        t.decided = true;
        self.run.timing.output_rails += checked.took;
        if let Some(log) = self.run.log.as_mut() {
            log.rails.extend(checked.records);
        }
        match checked.outcome? {
            WindowVerdict::Block(v) => t.violation = Some(v),
            _ => {
                t.passed = true;
                t.out.extend(t.held.drain(..).map(Box::new));
            }
        }
        Poll::Ready(Ok(()))
    }
}

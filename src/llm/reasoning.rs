//! Reasoning traces written into the text (`<think>…</think>`, or the
//! tokens a model's `reasoning_config` names), taken out of the answer as
//! the tokens arrive: a trace that opens the answer becomes reasoning
//! deltas, the text after it the answer. Tags split across chunks are
//! handled; what is held back is at most one tag's length (and a bounded
//! run of leading whitespace). An answer that does not open with the start
//! token is passed through untouched, as NeMo leaves content with a lone
//! tag untouched.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use futures_util::{FutureExt, Stream, StreamExt, future::BoxFuture};

use super::{ChatRequest, Completion, Delta, DeltaStream, LlmError, Provider};

/// Leading whitespace held while deciding whether a trace opens the answer.
const MAX_UNDECIDED: usize = 256;

/// The tags of a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceTags {
    pub start: String,
    pub end: String,
}

impl Default for TraceTags {
    fn default() -> Self {
        TraceTags {
            start: "<think>".into(),
            end: "</think>".into(),
        }
    }
}

#[derive(Debug)]
enum State {
    /// Not yet known whether the answer opens with a trace.
    Undecided(String),
    /// Inside the trace; holds what may be the start of the end tag.
    Trace(String),
    /// After the trace: leading whitespace of the answer is dropped.
    After,
    /// Plain text from here on.
    Pass,
}

/// Splits text into trace and answer, chunk by chunk.
#[derive(Debug)]
pub struct TraceSplitter {
    tags: Arc<TraceTags>,
    state: State,
}

/// The largest index ≤ `at` that is a char boundary of `s`.
fn floor_boundary(s: &str, mut at: usize) -> usize {
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

impl TraceSplitter {
    pub fn new(tags: Arc<TraceTags>) -> Self {
        TraceSplitter {
            tags,
            state: State::Undecided(String::new()),
        }
    }

    /// Feeds a piece of text; pushes what it releases onto `out`.
    pub fn push(&mut self, text: String, out: &mut Vec<Delta>) {
        match &mut self.state {
            State::Pass => out.push(Delta::Text(text)),
            State::After => {
                let rest = text.trim_start();
                if !rest.is_empty() {
                    out.push(Delta::Text(rest.to_string()));
                    self.state = State::Pass;
                }
            }
            State::Undecided(held) => {
                held.push_str(&text);
                let start = &self.tags.start;
                let lead = held.trim_start();
                if lead.starts_with(start.as_str()) {
                    let rest = lead[start.len()..].to_string();
                    self.state = State::Trace(String::new());
                    self.push(rest, out);
                } else if start.starts_with(lead) && held.len() <= MAX_UNDECIDED {
                    // Could still become the start tag.
                } else {
                    let all = std::mem::take(held);
                    self.state = State::Pass;
                    if !all.is_empty() {
                        out.push(Delta::Text(all));
                    }
                }
            }
            State::Trace(held) => {
                held.push_str(&text);
                let end = &self.tags.end;
                if let Some(at) = held.find(end.as_str()) {
                    let after = held[at + end.len()..].to_string();
                    held.truncate(at);
                    if !held.is_empty() {
                        out.push(Delta::Reasoning(std::mem::take(held)));
                    }
                    self.state = State::After;
                    self.push(after, out);
                } else {
                    // Keep what may be the beginning of the end tag.
                    let keep = floor_boundary(held, held.len().saturating_sub(end.len() - 1));
                    if keep > 0 {
                        let tail = held.split_off(keep);
                        out.push(Delta::Reasoning(std::mem::replace(held, tail)));
                    }
                }
            }
        }
    }

    /// The end of the text: what was held is released.
    pub fn finish(&mut self, out: &mut Vec<Delta>) {
        match std::mem::replace(&mut self.state, State::Pass) {
            State::Undecided(held) if !held.is_empty() => out.push(Delta::Text(held)),
            // A trace that never ended: all of it was reasoning.
            State::Trace(held) if !held.is_empty() => out.push(Delta::Reasoning(held)),
            _ => {}
        }
    }

    /// Splits a whole answer into (trace, answer).
    pub fn split(tags: Arc<TraceTags>, text: String) -> (Option<String>, String) {
        let mut s = TraceSplitter::new(tags);
        let mut out = Vec::new();
        s.push(text, &mut out);
        s.finish(&mut out);
        let (mut trace, mut answer) = (None::<String>, String::new());
        for d in out {
            match d {
                Delta::Reasoning(r) => trace.get_or_insert_default().push_str(&r),
                Delta::Text(t) => answer.push_str(&t),
                _ => {}
            }
        }
        (trace, answer)
    }
}

/// A provider whose answers have their reasoning traces taken out.
#[derive(Debug)]
pub struct StripTraces {
    inner: Arc<dyn Provider>,
    tags: Arc<TraceTags>,
}

impl StripTraces {
    pub fn new(inner: Arc<dyn Provider>, tags: TraceTags) -> Self {
        StripTraces {
            inner,
            tags: Arc::new(tags),
        }
    }
}

impl Provider for StripTraces {
    fn can_stream(&self) -> bool {
        self.inner.can_stream()
    }

    fn missing_api_key(&self) -> Option<&str> {
        self.inner.missing_api_key()
    }

    fn takes_tools(&self) -> bool {
        self.inner.takes_tools()
    }

    fn complete(&self, request: ChatRequest) -> BoxFuture<'static, Result<Completion, LlmError>> {
        let tags = self.tags.clone();
        self.inner
            .complete(request)
            .map(move |c| {
                c.map(|mut c| {
                    let (trace, answer) = TraceSplitter::split(tags, std::mem::take(&mut c.text));
                    c.text = answer;
                    if let Some(t) = trace {
                        c.reasoning.get_or_insert_default().push_str(&t);
                    }
                    c
                })
            })
            .boxed()
    }

    fn stream(&self, request: ChatRequest) -> DeltaStream {
        Box::pin(Split {
            inner: self.inner.stream(request),
            splitter: TraceSplitter::new(self.tags.clone()),
            out: Vec::new(),
            ended: false,
        })
    }
}

/// The stream of [`StripTraces`]: the upstream's deltas with text split.
struct Split {
    inner: DeltaStream,
    splitter: TraceSplitter,
    /// Released deltas, in reverse order (popped from the back).
    out: Vec<Delta>,
    ended: bool,
}

impl Stream for Split {
    type Item = Result<Delta, LlmError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(d) = this.out.pop() {
                return Poll::Ready(Some(Ok(d)));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            let mut released = Vec::new();
            match std::task::ready!(this.inner.poll_next_unpin(cx)) {
                // The common case, after the first chunks: no copy, no buffer.
                Some(Ok(Delta::Text(t))) if matches!(this.splitter.state, State::Pass) => {
                    return Poll::Ready(Some(Ok(Delta::Text(t))));
                }
                Some(Ok(Delta::Text(t))) => this.splitter.push(t, &mut released),
                // The end of the text comes before usage and the finish.
                Some(Ok(other)) => {
                    if !matches!(other, Delta::Reasoning(_)) {
                        this.splitter.finish(&mut released);
                    }
                    released.push(other);
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    this.ended = true;
                    this.splitter.finish(&mut released);
                }
            }
            released.reverse();
            this.out = released;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&str]) -> (String, String) {
        let mut s = TraceSplitter::new(Arc::new(TraceTags::default()));
        let mut out = Vec::new();
        for c in chunks {
            s.push(c.to_string(), &mut out);
        }
        s.finish(&mut out);
        let (mut trace, mut text) = (String::new(), String::new());
        for d in out {
            match d {
                Delta::Reasoning(r) => trace.push_str(&r),
                Delta::Text(t) => text.push_str(&t),
                _ => {}
            }
        }
        (trace, text)
    }

    #[test]
    fn tags_split_across_chunks_are_found() {
        let want = ("Let me think.".to_string(), "The answer is 4.".to_string());
        assert_eq!(
            run(&["<think>Let me think.</think>\n\nThe answer is 4."]),
            want
        );
        assert_eq!(
            run(&[
                "<",
                "thi",
                "nk>Let ",
                "me think.</",
                "thi",
                "nk>",
                "\n",
                "The answer",
                " is 4."
            ]),
            want
        );
        assert_eq!(
            run(&["\n<think>", "Let me think.", "</think>The answer is 4."]),
            want
        );
    }

    #[test]
    fn text_without_a_leading_trace_is_untouched() {
        assert_eq!(
            run(&["Plain ", "answer <think>x</think>"]),
            (String::new(), "Plain answer <think>x</think>".into())
        );
        assert_eq!(run(&["<thin", "g>"]), (String::new(), "<thing>".into()));
        assert_eq!(run(&["<th"]), (String::new(), "<th".into()));
        // A model that omits the start token: left as NeMo leaves it.
        assert_eq!(
            run(&["reasoning</think>answer"]),
            (String::new(), "reasoning</think>answer".into())
        );
        // A trace that never ends is all reasoning.
        assert_eq!(
            run(&["<think>still going"]),
            ("still going".into(), String::new())
        );
    }

    #[test]
    fn multibyte_text_next_to_a_tag_is_cut_on_char_boundaries() {
        assert_eq!(
            run(&["<think>é", "è</thi", "nk>ü"]),
            ("éè".into(), "ü".into())
        );
    }
}

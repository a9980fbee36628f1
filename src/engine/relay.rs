//! The state of one guarded stream, as a plain state machine: what has
//! arrived, which windows the output rails must check, which checks are in
//! flight, what may be released to the caller, and where a stop string cuts
//! the answer. No I/O, no time, no tasks: a thin async loop drives it
//! ([`super::stream`]), and the same relay guards any stream, whether its
//! chunks come from our upstream or from the caller.
//!
//! One rule decides what may be released: with `stream_first`, a chunk is
//! released unless an earlier window is still undecided; without it, only
//! once its own window passed. So on a block nothing after the blocked
//! window has reached the caller.

use std::{collections::VecDeque, ops::Range};

use super::{Violation, Window, Windows};
use crate::config::OutputStreaming;
use crate::llm::StopFilter;

/// A window the output rails must check: its chunks and its text (copied
/// once per window, never per chunk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowCheck {
    pub window: Window,
    pub text: String,
}

/// What the output rails decided for the oldest window in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowVerdict {
    Pass,
    /// Send this text instead of the window's chunks (masking rails).
    Rewrite(String),
    /// Stop the stream here.
    Block(Violation),
}

/// How a relayed stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayOutcome {
    /// Exactly what was released to the caller.
    pub content: String,
    pub violation: Option<Violation>,
    /// A stop string cut the answer.
    pub stopped: bool,
}

/// See the module docs.
#[derive(Debug)]
pub struct Relay {
    /// Present when output rails check this stream.
    windows: Option<Windows>,
    stream_first: bool,
    /// Some output rail may rewrite: what was released is kept apart.
    rewrites: bool,
    stops: Option<StopFilter>,
    /// The answer as received (after any stop string); windows are slices of it.
    content: String,
    /// Chunks received but not released; `next_chunk` is the index of the first.
    unsent: VecDeque<String>,
    next_chunk: usize,
    /// Windows not decided yet (their new chunks), oldest first.
    open: VecDeque<Range<usize>>,
    /// Windows not handed out for checking yet.
    due: VecDeque<Window>,
    /// Chunks covered by windows that passed.
    passed: usize,
    sent_bytes: usize,
    /// Rewritten windows ready to release.
    approved: VecDeque<String>,
    /// With rewriting rails: exactly what was released.
    delivered: String,
    violation: Option<Violation>,
    input_done: bool,
    stopped: bool,
    /// Chunks received.
    received: usize,
}

impl Relay {
    /// A relay for a stream checked with `settings` when `checking` (output
    /// rails on), `rewrites` when one of them may rewrite, cut at `stops`.
    pub fn new(
        settings: OutputStreaming,
        checking: bool,
        rewrites: bool,
        stops: Vec<String>,
    ) -> Self {
        let stops = StopFilter::new(stops);
        Relay {
            windows: checking.then(|| Windows::new(settings.chunk_size, settings.context_size)),
            stream_first: !checking || settings.stream_first,
            rewrites,
            stops: (!stops.is_empty()).then_some(stops),
            content: String::new(),
            unsent: VecDeque::new(),
            next_chunk: 0,
            open: VecDeque::new(),
            due: VecDeque::new(),
            passed: 0,
            sent_bytes: 0,
            approved: VecDeque::new(),
            delivered: String::new(),
            violation: None,
            input_done: false,
            stopped: false,
            received: 0,
        }
    }

    /// Whether more input is wanted: not after the end, a stop string or a block.
    pub fn wants_input(&self) -> bool {
        !self.input_done && self.violation.is_none()
    }

    /// A chunk arrived.
    pub fn on_text(&mut self, text: String) {
        if !self.wants_input() {
            return;
        }
        let Some(stops) = self.stops.as_mut() else {
            self.push_chunk(text);
            return;
        };
        let (out, more) = stops.push(text);
        if let Some(t) = out {
            self.push_chunk(t);
        }
        if !more {
            self.stopped = true;
            self.end_input();
        }
    }

    /// The input ended.
    pub fn on_end(&mut self) {
        if !self.wants_input() {
            return;
        }
        if let Some(rest) = self.stops.as_mut().and_then(StopFilter::finish) {
            self.push_chunk(rest);
        }
        self.end_input();
    }

    fn push_chunk(&mut self, text: String) {
        self.received += 1;
        self.content.push_str(&text);
        self.unsent.push_back(text);
        if let Some(w) = self
            .windows
            .as_mut()
            .and_then(|w| w.push(self.content.len()))
        {
            self.open.push_back(w.new_chunks.clone());
            self.due.push_back(w);
        }
    }

    fn end_input(&mut self) {
        self.input_done = true;
        if let Some(w) = self.windows.as_mut().and_then(Windows::finish) {
            self.open.push_back(w.new_chunks.clone());
            self.due.push_back(w);
        }
    }

    /// The next window to check, oldest first. Its verdict must come back
    /// through [`Relay::on_verdict`] in the same order.
    pub fn take_check(&mut self) -> Option<WindowCheck> {
        let window = self.due.pop_front()?;
        let text = self.content[window.bytes.clone()].to_string();
        Some(WindowCheck { window, text })
    }

    /// The verdict for the oldest window in flight.
    pub fn on_verdict(&mut self, verdict: WindowVerdict) {
        let Some(chunks) = self.open.pop_front() else {
            return;
        };
        match verdict {
            WindowVerdict::Pass => self.passed = chunks.end,
            WindowVerdict::Rewrite(text) => {
                // Rewriting rails need stream_first: false and no context
                // (the catalog checks it), so the unsent chunks start with
                // exactly this window's chunks.
                let n = chunks.len().min(self.unsent.len());
                self.unsent.drain(..n);
                self.next_chunk += n;
                self.passed = chunks.end;
                self.approved.push_back(text);
            }
            WindowVerdict::Block(v) => {
                self.violation = Some(v);
                self.unsent.clear();
                self.approved.clear();
                self.due.clear();
                self.open.clear();
            }
        }
    }

    /// Windows handed out or due whose verdict has not come back.
    pub fn undecided(&self) -> usize {
        self.open.len()
    }

    /// The next piece of text that may go to the caller now.
    pub fn release(&mut self) -> Option<String> {
        if self.violation.is_some() {
            return None;
        }
        if let Some(text) = self.approved.pop_front() {
            self.delivered.push_str(&text);
            return Some(text);
        }
        let limit = if self.stream_first {
            self.open.front().map_or(usize::MAX, |w| w.end)
        } else {
            self.passed
        };
        if self.next_chunk >= limit {
            return None;
        }
        let text = self.unsent.pop_front()?;
        self.next_chunk += 1;
        self.sent_bytes += text.len();
        if self.rewrites {
            self.delivered.push_str(&text);
        }
        Some(text)
    }

    /// Whether the stream is over: blocked, or the input ended and every
    /// window is decided and everything released.
    pub fn is_finished(&self) -> bool {
        self.violation.is_some()
            || (self.input_done
                && self.open.is_empty()
                && self.unsent.is_empty()
                && self.approved.is_empty())
    }

    /// Whether the answer was cut short: blocked, or at a stop string.
    pub fn cut(&self) -> bool {
        self.violation.is_some() || self.stopped
    }

    /// Chunks received so far (after any stop string).
    pub fn received_chunks(&self) -> usize {
        self.received
    }

    /// The answer as received so far (for logs).
    pub fn received(&self) -> &str {
        &self.content
    }

    /// What was released, and why the stream ended.
    pub fn finish(self) -> RelayOutcome {
        let content = if self.rewrites {
            self.delivered
        } else {
            let mut c = self.content;
            c.truncate(self.sent_bytes);
            c
        };
        RelayOutcome {
            content,
            violation: self.violation,
            stopped: self.stopped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rails::Stage;

    fn settings(chunk_size: usize, context_size: usize, stream_first: bool) -> OutputStreaming {
        OutputStreaming {
            enabled: true,
            chunk_size,
            context_size,
            stream_first,
        }
    }

    fn drain(r: &mut Relay) -> Vec<String> {
        std::iter::from_fn(|| r.release()).collect()
    }

    fn block() -> WindowVerdict {
        WindowVerdict::Block(Violation::blocked("r", Stage::Output, "no".into()))
    }

    #[test]
    fn without_rails_every_chunk_is_released_at_once() {
        let mut r = Relay::new(OutputStreaming::default(), false, false, vec![]);
        r.on_text("a".into());
        assert_eq!(drain(&mut r), ["a"]);
        r.on_text("b".into());
        r.on_end();
        assert!(r.take_check().is_none());
        assert_eq!(drain(&mut r), ["b"]);
        assert!(r.is_finished());
        assert_eq!(r.finish().content, "ab");
    }

    #[test]
    fn stream_first_releases_a_window_before_its_verdict_but_not_the_next() {
        let mut r = Relay::new(settings(2, 0, true), true, false, vec![]);
        for t in ["a", "b", "c"] {
            r.on_text(t.into());
        }
        let check = r.take_check().unwrap();
        assert_eq!(check.text, "ab");
        // The first window's chunks go out while it is checked; "c" waits.
        assert_eq!(drain(&mut r), ["a", "b"]);
        r.on_verdict(WindowVerdict::Pass);
        assert_eq!(drain(&mut r), ["c"]);
        r.on_end();
        assert_eq!(r.take_check().unwrap().text, "c");
        assert!(!r.is_finished(), "the last window is undecided");
        r.on_verdict(WindowVerdict::Pass);
        assert!(r.is_finished());
    }

    #[test]
    fn without_stream_first_nothing_leaves_before_its_window_passed() {
        let mut r = Relay::new(settings(2, 1, false), true, false, vec![]);
        for t in ["a", "b", "c"] {
            r.on_text(t.into());
        }
        assert!(drain(&mut r).is_empty());
        assert_eq!(r.take_check().unwrap().text, "ab");
        assert_eq!(
            r.take_check().unwrap().text,
            "bc",
            "a context chunk, then the new one"
        );
        assert_eq!(r.undecided(), 2);
        r.on_verdict(WindowVerdict::Pass);
        assert_eq!(drain(&mut r), ["a", "b"]);
        r.on_verdict(block());
        assert!(drain(&mut r).is_empty());
        assert!(r.is_finished() && !r.wants_input());
        let out = r.finish();
        assert_eq!(out.content, "ab", "exactly what was released");
        assert!(out.violation.is_some());
    }

    #[test]
    fn a_rewritten_window_replaces_its_chunks() {
        let mut r = Relay::new(settings(2, 0, false), true, true, vec![]);
        for t in ["mail ", "me@x.io", " ok"] {
            r.on_text(t.into());
        }
        r.on_end();
        assert_eq!(r.take_check().unwrap().text, "mail me@x.io");
        assert_eq!(r.take_check().unwrap().text, " ok");
        r.on_verdict(WindowVerdict::Rewrite("mail <EMAIL>".into()));
        r.on_verdict(WindowVerdict::Pass);
        assert_eq!(drain(&mut r), ["mail <EMAIL>", " ok"]);
        assert!(r.is_finished());
        assert_eq!(r.finish().content, "mail <EMAIL> ok");
    }

    #[test]
    fn a_stop_string_split_across_chunks_ends_the_input_there() {
        let mut r = Relay::new(settings(8, 0, true), true, false, vec!["User:".into()]);
        for t in ["Hi", " there.\nUs", "er: more"] {
            r.on_text(t.into());
        }
        assert!(!r.wants_input(), "no more input after the stop");
        r.on_text("ignored".into());
        let check = r.take_check().unwrap();
        assert_eq!(check.text, "Hi there.\n");
        r.on_verdict(WindowVerdict::Pass);
        assert_eq!(drain(&mut r).concat(), "Hi there.\n");
        assert!(r.is_finished());
        let out = r.finish();
        assert!(out.stopped);
        assert_eq!(out.content, "Hi there.\n");
    }

    #[test]
    fn held_back_text_that_is_no_stop_is_released_at_the_end() {
        let mut r = Relay::new(
            OutputStreaming::default(),
            false,
            false,
            vec!["STOP".into()],
        );
        r.on_text("end ST".into());
        assert_eq!(drain(&mut r), ["end "]);
        r.on_end();
        assert_eq!(drain(&mut r), ["ST"]);
        assert!(!r.finish().stopped);
    }
}

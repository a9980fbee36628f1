//! What a request's log (`options.log`) reports: the rails that ran, the LLM
//! calls, and the time spent per phase.

use std::time::Duration;

use crate::{llm::CallRecord, rails::Stage};

/// A rail's decision, as logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Block,
    /// The rail rewrote the text (masking, omission).
    Modify,
    /// The rail could not decide.
    Error,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Block => "block",
            Decision::Modify => "modify",
            Decision::Error => "error",
        }
    }
}

/// One rail run (per window, for output rails on a stream).
#[derive(Debug, Clone, PartialEq)]
pub struct RailRecord {
    pub flow: String,
    pub stage: Stage,
    pub decision: Decision,
    /// The rail's explanation (empty when it allowed).
    pub reason: String,
    pub duration: Duration,
    /// When the rail started.
    pub started: std::time::Instant,
    /// For an output rail on a stream: the chunks its window added (their
    /// indexes, counted from 0), after the context chunks it saw again.
    pub window: Option<std::ops::Range<usize>>,
}

/// Time spent per phase of a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhaseTiming {
    pub input_rails: Duration,
    /// From the main LLM call to its last token.
    pub generation: Duration,
    /// All output rail checks (every window, when streaming).
    pub output_rails: Duration,
    pub total: Duration,
}

/// The log of one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationLog {
    pub rails: Vec<RailRecord>,
    pub llm_calls: Vec<CallRecord>,
    pub timing: PhaseTiming,
    /// When the request started (rails and calls start after it).
    pub started: Option<std::time::Instant>,
}

impl GenerationLog {
    /// How long after the request's start `at` was, in milliseconds.
    pub fn offset_ms(&self, at: std::time::Instant) -> f64 {
        self.started.map_or(0.0, |s| {
            at.saturating_duration_since(s).as_secs_f64() * 1000.0
        })
    }
}

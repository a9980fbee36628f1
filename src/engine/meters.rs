//! The engine's metric handles for one config, resolved once when the config
//! is built (install the recorder before building configs), so that a
//! request never looks a metric up by name and a chunk only moves an atomic.

use metrics::{Counter, Histogram};

#[derive(Debug, Clone)]
pub(super) struct Meters {
    /// Chunks relayed to callers.
    pub chunks: Counter,
    /// Completion tokens reported by the upstream.
    pub tokens: Counter,
    /// Request received to first chunk sent.
    pub first_chunk: Histogram,
    /// What streamguard added to the upstream's time to first token.
    pub added_first_chunk: Histogram,
    /// Upstream call to its first token.
    pub upstream_first_token: Histogram,
}

impl Meters {
    pub fn new(config_id: &str) -> Self {
        let config = config_id.to_string();
        Meters {
            chunks: metrics::counter!("streamguard_chunks_total", "config" => config.clone()),
            tokens: metrics::counter!("streamguard_tokens_total", "config" => config.clone()),
            first_chunk: metrics::histogram!("streamguard_time_to_first_chunk_seconds", "config" => config.clone()),
            added_first_chunk: metrics::histogram!("streamguard_added_first_chunk_seconds", "config" => config.clone()),
            upstream_first_token: metrics::histogram!("streamguard_upstream_first_token_seconds", "config" => config),
        }
    }
}

/// Chunks sent by one stream, added to the counter once, when the stream
/// ends or is dropped (one shared atomic per stream, not per chunk).
#[derive(Debug)]
pub(super) struct ChunkCount {
    counter: Counter,
    sent: u64,
}

impl ChunkCount {
    pub fn new(counter: Counter) -> Self {
        ChunkCount { counter, sent: 0 }
    }

    pub fn add(&mut self) {
        self.sent += 1;
    }
}

impl Drop for ChunkCount {
    fn drop(&mut self) {
        self.counter.increment(self.sent);
    }
}

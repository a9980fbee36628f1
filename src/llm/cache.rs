//! Judge answers kept in memory (`models[].cache`), as NeMo caches them:
//! keyed by a SHA-256 of the prompt with its whitespace collapsed (NeMo's
//! key rule; the model is the cache's own, one per model entry), bounded
//! by `maxsize` with the least recently used evicted, optionally expiring
//! after `ttl`. Only whole answers are cached; streams pass through.

use std::{
    num::NonZeroUsize,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::{FutureExt, future::BoxFuture};
use metrics::Counter;
use sha2::{Digest, Sha256};

use super::{ChatRequest, Completion, DeltaStream, LlmError, Provider};
use crate::config::CacheConfig;

type Key = [u8; 32];

/// A provider whose whole answers are cached.
#[derive(Debug)]
pub struct Cached {
    inner: Arc<dyn Provider>,
    shared: Arc<Shared<Completion>>,
}

/// Results of a guardrail service kept as a judge's answers are (a
/// `models[].cache` on the service's model type), keyed by the checked text.
#[derive(Debug, Clone)]
pub struct ResultCache<V>(Arc<Shared<V>>);

impl<V: Clone> ResultCache<V> {
    pub fn new(kind: &str, config: &CacheConfig) -> Self {
        ResultCache(Arc::new(Shared::new(kind, config)))
    }

    /// The result kept for `text` (whitespace runs do not matter).
    pub fn get(&self, text: &str) -> Option<V> {
        self.0.get(&text_key(text))
    }

    pub fn put(&self, text: &str, value: V) {
        self.0.put(text_key(text), value);
    }
}

/// NeMo's key for a checked text: its whitespace collapsed, hashed.
fn text_key(text: &str) -> Key {
    let mut h = Sha256::new();
    for (i, word) in text.split_whitespace().enumerate() {
        if i > 0 {
            h.update(b" ");
        }
        h.update(word.as_bytes());
    }
    h.finalize().into()
}

#[derive(Debug)]
struct Shared<V> {
    entries: Mutex<lru::LruCache<Key, (V, Instant)>>,
    ttl: Option<Duration>,
    kind: String,
    stats: Option<Duration>,
    counters: Mutex<Stats>,
    hits: Counter,
    misses: Counter,
    evictions: Counter,
}

#[derive(Debug)]
struct Stats {
    hits: u64,
    misses: u64,
    evictions: u64,
    last_log: Instant,
}

/// NeMo's key: the prompt with runs of whitespace collapsed to one space.
fn key(request: &ChatRequest) -> Key {
    let mut h = Sha256::new();
    for m in &request.messages {
        h.update(m.role.as_str().as_bytes());
        h.update([0]);
        for (i, word) in m.content.split_whitespace().enumerate() {
            if i > 0 {
                h.update(b" ");
            }
            h.update(word.as_bytes());
        }
        h.update([0]);
        // Tool calls and content parts (an image) count whole.
        if m.extra.is_some()
            && let Ok(whole) = serde_json::to_vec(m)
        {
            h.update(&whole);
        }
    }
    h.finalize().into()
}

impl Cached {
    /// Wraps `inner` (the model of `type: kind`) with the cache `config`.
    pub fn new(inner: Arc<dyn Provider>, kind: &str, config: &CacheConfig) -> Self {
        Cached {
            inner,
            shared: Arc::new(Shared::new(kind, config)),
        }
    }
}

impl<V> Shared<V> {
    fn new(kind: &str, config: &CacheConfig) -> Self {
        let size = NonZeroUsize::new(config.maxsize).unwrap_or(NonZeroUsize::MIN);
        let label = kind.to_string();
        Shared {
            entries: Mutex::new(lru::LruCache::new(size)),
            ttl: config.ttl.map(Duration::from_secs_f64),
            kind: label.clone(),
            stats: config
                .stats
                .enabled
                .then(|| config.stats.log_interval.map(Duration::from_secs_f64))
                .flatten(),
            counters: Mutex::new(Stats {
                hits: 0,
                misses: 0,
                evictions: 0,
                last_log: Instant::now(),
            }),
            hits: metrics::counter!("streamguard_llm_cache_hits_total", "model_type" => label.clone()),
            misses: metrics::counter!("streamguard_llm_cache_misses_total", "model_type" => label.clone()),
            evictions: metrics::counter!("streamguard_llm_cache_evictions_total", "model_type" => label),
        }
    }
}

impl<V: Clone> Shared<V> {
    fn get(&self, key: &Key) -> Option<V> {
        let mut entries = self.entries.lock().ok()?;
        let hit = match entries.get(key) {
            Some((c, at)) if self.ttl.is_none_or(|ttl| at.elapsed() < ttl) => Some(c.clone()),
            Some(_) => {
                entries.pop(key);
                None
            }
            None => None,
        };
        drop(entries);
        self.count(hit.is_some(), false);
        hit
    }

    fn put(&self, key: Key, answer: V) {
        let evicted = match self.entries.lock() {
            Ok(mut entries) => {
                let full = entries.len() == entries.cap().get() && !entries.contains(&key);
                entries.put(key, (answer, Instant::now()));
                full
            }
            Err(_) => false,
        };
        if evicted {
            self.count(false, true);
        }
    }

    /// Counts a lookup or an eviction; logs the counters every
    /// `stats.log_interval` when stats are on.
    fn count(&self, hit: bool, evicted: bool) {
        match (hit, evicted) {
            (_, true) => self.evictions.increment(1),
            (true, _) => self.hits.increment(1),
            (false, _) => self.misses.increment(1),
        }
        let Some(interval) = self.stats else { return };
        let Ok(mut s) = self.counters.lock() else {
            return;
        };
        match (hit, evicted) {
            (_, true) => s.evictions += 1,
            (true, _) => s.hits += 1,
            (false, _) => s.misses += 1,
        }
        if s.last_log.elapsed() >= interval {
            s.last_log = Instant::now();
            let size = self.entries.lock().map(|e| e.len()).unwrap_or_default();
            let lookups = s.hits + s.misses;
            let rate = if lookups == 0 {
                0.0
            } else {
                s.hits as f64 / lookups as f64
            };
            tracing::info!(model_type = %self.kind, size, hits = s.hits, misses = s.misses,
                hit_rate = rate, evictions = s.evictions, "LLM cache stats");
        }
    }
}

impl Provider for Cached {
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
        if request.tools.is_some() {
            return self.inner.complete(request);
        }
        let k = key(&request);
        if let Some(hit) = self.shared.get(&k) {
            return Box::pin(std::future::ready(Ok(hit)));
        }
        let shared = self.shared.clone();
        self.inner
            .complete(request)
            .map(move |answer| {
                if let Ok(a) = &answer {
                    shared.put(k, a.clone());
                }
                answer
            })
            .boxed()
    }

    fn stream(&self, request: ChatRequest) -> DeltaStream {
        self.inner.stream(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::ChatMessage;

    #[test]
    fn the_key_ignores_whitespace_runs_but_not_words_or_roles() {
        let r = |role, text: &str| ChatRequest::new("t", vec![ChatMessage::new(role, text)]);
        use crate::llm::Role::{System, User};
        assert_eq!(
            key(&r(User, "is  this\n safe?")),
            key(&r(User, " is this safe? "))
        );
        assert_ne!(
            key(&r(User, "is this safe?")),
            key(&r(User, "is that safe?"))
        );
        assert_ne!(key(&r(User, "x")), key(&r(System, "x")));
    }
}

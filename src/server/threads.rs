//! Conversation threads kept on the server, as NeMo's server keeps them
//! (`guardrails.thread_id` on HTTP, `thread_id` on gRPC): a request names
//! a thread, its earlier messages go in front of the request's, and the
//! answer's turn is appended.
//!
//! In memory by default, or in Redis (`--datastore redis://…`) so every
//! replica continues every thread. Redis keeps NeMo's key (`thread-<id>`)
//! and value (a JSON list of `{"role", "content"}`), so streamguard and
//! NeMo servers can share one. Bounded: a thread expires after its TTL
//! unused, keeps its newest `max_bytes` of messages, and (in memory) at
//! most `max_threads` are kept, the least recently used going first.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::{
    error::Error,
    llm::{ChatMessage, Role},
};

/// How threads are kept.
#[derive(Debug, Clone)]
pub struct ThreadSettings {
    /// Redis, shared by replicas; `None`: this process's memory.
    pub datastore: Option<Datastore>,
    /// How long an unused thread is kept.
    pub ttl: Duration,
    /// The most threads kept in memory (Redis evicts by its own policy).
    pub max_threads: usize,
    /// The most message text one thread keeps (its oldest messages go).
    pub max_bytes: usize,
}

impl Default for ThreadSettings {
    fn default() -> Self {
        ThreadSettings {
            datastore: None,
            ttl: Duration::from_secs(24 * 3600),
            max_threads: 10_000,
            max_bytes: 256 * 1024,
        }
    }
}

/// A Redis datastore, by its URL (`redis://[user:password@]host:port[/db]`,
/// `rediss://` for TLS).
#[derive(Clone)]
pub struct Datastore {
    client: redis::Client,
    /// The URL without its password, for logs.
    shown: String,
}

impl std::fmt::Debug for Datastore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl Datastore {
    /// Parses a datastore URL; the error never repeats a password.
    pub fn redis(url: &str) -> Result<Self, String> {
        Self::redis_with_ca(url, None)
    }

    /// A `rediss://` datastore whose server certificate is signed by `ca`
    /// (PEM) instead of a CA of the system's trust store.
    pub fn redis_with_ca(url: &str, ca: Option<Vec<u8>>) -> Result<Self, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "redis" | "rediss") {
            return Err(format!(
                "`{}://…`: the datastore is Redis (`redis://host:6379`, `rediss://` for TLS)",
                parsed.scheme()
            ));
        }
        // Shown without its user and password.
        let userinfo = !parsed.username().is_empty() || parsed.password().is_some();
        let shown = format!(
            "{}://{}{}{}{}",
            parsed.scheme(),
            if userinfo { "…@" } else { "" },
            parsed.host_str().unwrap_or_default(),
            parsed.port().map(|p| format!(":{p}")).unwrap_or_default(),
            parsed.path()
        );
        let client = match ca {
            None => redis::Client::open(url),
            Some(pem) => {
                if parsed.scheme() != "rediss" {
                    return Err(format!("{shown}: a CA is for `rediss://` (TLS) URLs"));
                }
                let _ = rustls::crypto::ring::default_provider().install_default();
                let certs = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                };
                redis::Client::build_with_tls(url, certs)
            }
        }
        .map_err(|e| format!("{shown}: {e}"))?;
        Ok(Datastore { client, shown })
    }
}

#[derive(Debug)]
struct Thread {
    messages: Vec<ChatMessage>,
    touched: Instant,
}

enum Store {
    Memory(Mutex<HashMap<String, Thread>>),
    Redis {
        connection: redis::aio::ConnectionManager,
        shown: String,
    },
}

/// The server's threads.
pub struct Threads {
    store: Store,
    settings: ThreadSettings,
}

impl std::fmt::Debug for Threads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Threads")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Default for Threads {
    fn default() -> Self {
        Threads::new(ThreadSettings::default())
    }
}

/// How long a Redis command may take before the request fails.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

impl Threads {
    /// Threads kept as `settings` say. Redis is connected lazily: the server
    /// starts (and serves requests without a thread) while it is down.
    pub fn new(settings: ThreadSettings) -> Self {
        if settings.datastore.is_some() {
            // `rediss://` connects with rustls, on the process's provider.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let redis = settings.datastore.as_ref().map(|d| {
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(REDIS_TIMEOUT))
                .set_response_timeout(Some(REDIS_TIMEOUT))
                .set_number_of_retries(1);
            (
                d.client.get_connection_manager_lazy(config),
                d.shown.clone(),
            )
        });
        let store = match redis {
            Some((Ok(connection), shown)) => Store::Redis { connection, shown },
            // Only a bad URL fails here, and `Datastore::redis` parsed it.
            Some((Err(e), shown)) => {
                tracing::error!(datastore = %shown, error = %e, "the thread datastore cannot be used; threads are kept in memory");
                Store::Memory(Mutex::default())
            }
            None => Store::Memory(Mutex::default()),
        };
        Threads { store, settings }
    }

    /// Logs where threads are kept; for Redis, whether it answers now.
    pub fn announce(&self) {
        let Store::Redis { connection, shown } = &self.store else {
            tracing::info!("conversation threads are kept in memory");
            return;
        };
        let (mut c, shown) = (connection.clone(), shown.clone());
        tokio::spawn(async move {
            match redis::cmd("PING").query_async::<String>(&mut c).await {
                Ok(_) => {
                    tracing::info!(datastore = %shown, "conversation threads are kept in Redis")
                }
                Err(e) => tracing::warn!(datastore = %shown, error = %e,
                    "conversation threads are kept in Redis, which does not answer yet; requests with a thread fail until it does"),
            }
        });
    }

    /// NeMo's rule (at least 16 characters), and streamguard's bound (at
    /// most 128 of `[A-Za-z0-9._:-]`): the id is the thread's only secret.
    pub fn validate(id: &str, field: &'static str) -> Result<(), Error> {
        if id.chars().count() < 16 {
            return Err(Error::invalid(
                field,
                "The `thread_id` must have a minimum length of 16 characters.",
            ));
        }
        let ok = id.len() <= 128
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'));
        match ok {
            true => Ok(()),
            false => Err(Error::invalid(
                field,
                "a `thread_id` is at most 128 characters of letters, digits and `.`, `_`, `:`, `-`",
            )),
        }
    }

    /// The thread's messages so far (none for a new or expired thread).
    pub async fn load(&self, id: &str) -> Result<Vec<ChatMessage>, Error> {
        match &self.store {
            Store::Memory(threads) => Ok(self.load_memory(threads, id)),
            Store::Redis { connection, .. } => {
                let mut c = connection.clone();
                let value: Option<String> = redis::cmd("GET")
                    .arg(key(id))
                    .query_async(&mut c)
                    .await
                    .map_err(unavailable)?;
                let mut messages = value.map(|v| decode(&v)).unwrap_or_default();
                trim(&mut messages, self.settings.max_bytes);
                Ok(messages)
            }
        }
    }

    fn load_memory(&self, threads: &Mutex<HashMap<String, Thread>>, id: &str) -> Vec<ChatMessage> {
        let Ok(mut threads) = threads.lock() else {
            return Vec::new();
        };
        match threads.get(id) {
            Some(t) if t.touched.elapsed() < self.settings.ttl => t.messages.clone(),
            Some(_) => {
                threads.remove(id);
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    /// A request's thread: its earlier messages put in front of the
    /// request's; the thread's id and the whole conversation sent.
    pub async fn open(
        &self,
        id: String,
        messages: &mut Vec<ChatMessage>,
        field: &'static str,
    ) -> Result<(String, Vec<ChatMessage>), Error> {
        Self::validate(&id, field)?;
        messages.splice(0..0, self.load(&id).await?);
        Ok((id, messages.clone()))
    }

    /// Appends the turn to the thread a request named, if any: the messages
    /// as the rails left them (masked, rewritten), and the answer with its
    /// tool calls. A turn a rail blocked is not kept, so a blocked message
    /// never comes back unchecked in a later turn's history.
    pub async fn keep(
        &self,
        thread: Option<(String, Vec<ChatMessage>)>,
        response: &crate::engine::Response,
    ) -> Result<(), Error> {
        let Some((id, mut conversation)) = thread else {
            return Ok(());
        };
        if response.violation.is_some() {
            return Ok(());
        }
        for (i, text) in &response.rewritten {
            if let Some(m) = conversation.get_mut(*i) {
                m.set_text(text.clone());
            }
        }
        let mut answer = ChatMessage::assistant(response.content.clone());
        if !response.tool_calls.is_empty() {
            answer.extra = Some(Box::new(crate::llm::MessageExtra {
                tool_calls: response.tool_calls.clone(),
                ..Default::default()
            }));
        }
        conversation.push(answer);
        self.store(&id, conversation).await
    }

    /// Keeps `messages` (the whole conversation after the turn) as the thread.
    pub async fn store(&self, id: &str, mut messages: Vec<ChatMessage>) -> Result<(), Error> {
        trim(&mut messages, self.settings.max_bytes);
        match &self.store {
            Store::Memory(threads) => {
                self.store_memory(threads, id, messages);
                Ok(())
            }
            Store::Redis { connection, .. } => {
                let mut c = connection.clone();
                let ttl = self.settings.ttl.as_secs().max(1);
                redis::cmd("SET")
                    .arg(key(id))
                    .arg(encode(&messages))
                    .arg("EX")
                    .arg(ttl)
                    .query_async::<()>(&mut c)
                    .await
                    .map_err(unavailable)
            }
        }
    }

    fn store_memory(
        &self,
        threads: &Mutex<HashMap<String, Thread>>,
        id: &str,
        messages: Vec<ChatMessage>,
    ) {
        let Ok(mut threads) = threads.lock() else {
            return;
        };
        let ttl = self.settings.ttl;
        threads.retain(|_, t| t.touched.elapsed() < ttl);
        if threads.len() >= self.settings.max_threads && !threads.contains_key(id) {
            let oldest = threads
                .iter()
                .min_by_key(|(_, t)| t.touched)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                threads.remove(&k);
            }
        }
        let touched = Instant::now();
        threads.insert(id.to_string(), Thread { messages, touched });
    }
}

/// NeMo's datastore key of a thread.
fn key(id: &str) -> String {
    format!("thread-{id}")
}

fn unavailable(e: redis::RedisError) -> Error {
    metrics::counter!("streamguard_datastore_errors_total").increment(1);
    // Redis errors name the command, never a password.
    Error::Datastore(e.to_string())
}

/// The most messages one thread keeps (as a request may hold).
const MAX_THREAD_MESSAGES: usize = 256;

/// What a message weighs in a thread: its stored form (text, parts, tool
/// calls), at least a little, so empty messages count too.
fn weight(m: &ChatMessage) -> usize {
    let extra = m
        .extra
        .as_ref()
        .map_or(0, |_| serde_json::to_vec(m).map_or(0, |v| v.len()));
    32 + m.content.len() + extra
}

/// Drops the oldest messages until the rest fit in `max_bytes` and the
/// message cap, then tool results whose call went with them.
fn trim(messages: &mut Vec<ChatMessage>, max_bytes: usize) {
    let mut bytes: usize = messages.iter().map(weight).sum();
    let mut drop = messages.len().saturating_sub(MAX_THREAD_MESSAGES);
    bytes -= messages[..drop].iter().map(weight).sum::<usize>();
    while bytes > max_bytes && drop < messages.len() {
        bytes -= weight(&messages[drop]);
        drop += 1;
    }
    while messages.get(drop).is_some_and(|m| m.role == Role::Tool) {
        drop += 1;
    }
    messages.drain(..drop);
}

/// NeMo's value: the messages as a JSON list in OpenAI's form (`role`,
/// `content`, and `tool_calls`, `tool_call_id`, `name`, content parts).
fn encode(messages: &[ChatMessage]) -> String {
    serde_json::to_string(messages).unwrap_or_else(|_| "[]".into())
}

/// A stored thread, read leniently (NeMo may have written it): messages of
/// a known role; anything else is skipped.
fn decode(value: &str) -> Vec<ChatMessage> {
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str(value) else {
        tracing::warn!("a stored thread is not a JSON list of messages; starting it afresh");
        return Vec::new();
    };
    items.iter().filter_map(decode_message).collect()
}

fn decode_message(m: &serde_json::Value) -> Option<ChatMessage> {
    use serde_json::Value;
    let role = Role::parse(m.get("role")?.as_str()?)?;
    let (content, parts) = match m.get("content") {
        Some(Value::String(s)) => (s.clone(), None),
        None | Some(Value::Null) => (String::new(), None),
        Some(Value::Array(parts)) => {
            let text: Vec<&str> = parts
                .iter()
                .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            (text.join(" "), Some(parts.clone()))
        }
        Some(_) => return None,
    };
    let text = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
    let tool_calls: Vec<crate::llm::ToolCall> = m
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(|calls| {
            calls
                .iter()
                .filter_map(|c| {
                    Some(crate::llm::ToolCall {
                        id: c.get("id")?.as_str()?.to_string(),
                        name: c.pointer("/function/name")?.as_str()?.to_string(),
                        arguments: c
                            .pointer("/function/arguments")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let mut message = ChatMessage::new(role, content);
    let (tool_call_id, name) = (text("tool_call_id"), text("name"));
    if !tool_calls.is_empty() || tool_call_id.is_some() || name.is_some() || parts.is_some() {
        message.extra = Some(Box::new(crate::llm::MessageExtra {
            tool_calls,
            tool_call_id,
            name,
            parts,
        }));
    }
    Some(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_nemos_rule_and_a_bound() {
        assert!(Threads::validate("short", "thread_id").is_err());
        assert!(Threads::validate("0123456789abcdef", "thread_id").is_ok());
        assert!(Threads::validate("0123456789abcdef/../x", "thread_id").is_err());
        assert!(Threads::validate(&"a".repeat(129), "thread_id").is_err());
    }

    #[tokio::test]
    async fn a_thread_keeps_its_newest_messages_within_its_bound() {
        let t = Threads::default();
        let big = "x".repeat(200 * 1024);
        let two = vec![ChatMessage::user(big.clone()), ChatMessage::user(big)];
        t.store("0123456789abcdef", two).await.unwrap();
        assert_eq!(t.load("0123456789abcdef").await.unwrap().len(), 1);
        assert!(t.load("fedcba9876543210").await.unwrap().is_empty());
    }

    #[test]
    fn stored_threads_are_nemo_s_json_read_leniently() {
        let m = vec![ChatMessage::user("hi"), ChatMessage::assistant("hello")];
        assert_eq!(
            encode(&m),
            r#"[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]"#
        );
        assert_eq!(decode(&encode(&m)), m);
        let odd = r#"[{"role": "user", "content": "a"}, {"role": "event", "event": {}}, {"role": "user", "content": 7}]"#;
        assert_eq!(decode(odd), vec![ChatMessage::user("a")]);
        assert!(decode("{").is_empty());
        // A tool exchange keeps its calls and ids.
        let mut asked = ChatMessage::assistant("");
        asked.extra = Some(Box::new(crate::llm::MessageExtra {
            tool_calls: vec![crate::llm::ToolCall {
                id: "c1".into(),
                name: "weather".into(),
                arguments: "{}".into(),
            }],
            ..Default::default()
        }));
        let mut result = ChatMessage::new(Role::Tool, "sunny");
        result.extra = Some(Box::new(crate::llm::MessageExtra {
            tool_call_id: Some("c1".into()),
            ..Default::default()
        }));
        let exchange = vec![asked, result];
        assert_eq!(decode(&encode(&exchange)), exchange);
    }

    #[test]
    fn trimming_counts_every_message_and_never_orphans_a_tool_result() {
        let mut many: Vec<ChatMessage> = (0..400).map(|_| ChatMessage::assistant("")).collect();
        trim(&mut many, usize::MAX);
        assert_eq!(many.len(), MAX_THREAD_MESSAGES);
        let mut result = ChatMessage::new(Role::Tool, "r");
        result.extra = Some(Box::new(crate::llm::MessageExtra {
            tool_call_id: Some("c".into()),
            ..Default::default()
        }));
        let mut turn = vec![
            ChatMessage::user("x".repeat(100)),
            result,
            ChatMessage::user("q"),
        ];
        trim(&mut turn, 70);
        assert_eq!(turn, vec![ChatMessage::user("q")]);
    }

    #[test]
    fn datastore_urls_are_redis_and_hide_their_password() {
        let d = Datastore::redis("redis://app:s3cret@127.0.0.1:6379/2").unwrap();
        assert!(!format!("{d:?}").contains("s3cret"), "{d:?}");
        assert!(Datastore::redis("http://127.0.0.1:6379").is_err());
        assert!(Datastore::redis("not a url").is_err());
    }
}

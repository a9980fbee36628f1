//! Conversation threads kept on the server, as NeMo's server keeps them
//! (`guardrails.thread_id` on HTTP, `thread_id` on gRPC): a request names
//! a thread, its earlier messages go in front of the request's, and the
//! answer's turn is appended. In memory, bounded: threads expire after a
//! day unused, at most 10,000 are kept (the least recently used go), and a
//! thread keeps its newest 256 KiB of messages.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::{error::Error, llm::ChatMessage};

/// How long an unused thread is kept.
const TTL: Duration = Duration::from_secs(24 * 3600);
/// The most threads kept.
const MAX_THREADS: usize = 10_000;
/// The most message text one thread keeps.
const MAX_THREAD_BYTES: usize = 256 * 1024;

#[derive(Debug)]
struct Thread {
    messages: Vec<ChatMessage>,
    touched: Instant,
}

/// The server's threads.
#[derive(Debug, Default)]
pub struct Threads {
    threads: Mutex<HashMap<String, Thread>>,
}

impl Threads {
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
    pub fn load(&self, id: &str) -> Vec<ChatMessage> {
        let Ok(mut threads) = self.threads.lock() else {
            return Vec::new();
        };
        match threads.get(id) {
            Some(t) if t.touched.elapsed() < TTL => t.messages.clone(),
            Some(_) => {
                threads.remove(id);
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    /// A request's thread: its earlier messages put in front of the
    /// request's; the thread's id and the whole conversation sent.
    pub fn open(
        &self,
        id: String,
        messages: &mut Vec<ChatMessage>,
        field: &'static str,
    ) -> Result<(String, Vec<ChatMessage>), Error> {
        Self::validate(&id, field)?;
        messages.splice(0..0, self.load(&id));
        Ok((id, messages.clone()))
    }

    /// Appends the answer to the thread a request named, if any.
    pub fn keep(&self, thread: Option<(String, Vec<ChatMessage>)>, answer: &str) {
        if let Some((id, mut conversation)) = thread {
            conversation.push(ChatMessage::assistant(answer));
            self.store(&id, conversation);
        }
    }

    /// Keeps `messages` (the whole conversation after the turn) as the thread.
    pub fn store(&self, id: &str, mut messages: Vec<ChatMessage>) {
        let mut bytes: usize = messages.iter().map(|m| m.content.len()).sum();
        let mut drop = 0;
        while bytes > MAX_THREAD_BYTES && drop < messages.len() {
            bytes -= messages[drop].content.len();
            drop += 1;
        }
        messages.drain(..drop);
        let Ok(mut threads) = self.threads.lock() else {
            return;
        };
        threads.retain(|_, t| t.touched.elapsed() < TTL);
        if threads.len() >= MAX_THREADS && !threads.contains_key(id) {
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

    #[test]
    fn a_thread_keeps_its_newest_messages_within_its_bound() {
        let t = Threads::default();
        let big = "x".repeat(200 * 1024);
        t.store(
            "0123456789abcdef",
            vec![
                ChatMessage::user(big.clone()),
                ChatMessage::user(big.clone()),
            ],
        );
        assert_eq!(t.load("0123456789abcdef").len(), 1);
        assert!(t.load("fedcba9876543210").is_empty());
    }
}

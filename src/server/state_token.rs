//! The dialog `state` handed to HTTP (`guardrails.state`, as NeMo's server
//! names it) and gRPC (`state`) callers: `base64url(JSON).base64url(HMAC-SHA256)`
//! of the configs it belongs to and the [`DialogState`]. The signature keeps a
//! caller from forging the variables a flow trusts or moving a state between
//! configs; the key is `STREAMGUARD_STATE_KEY` (give every replica the same
//! one), else random per process, so tokens do not outlive a restart.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use ring::hmac;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{dialog::DialogState, error::Error};

/// The longest token accepted or made.
const MAX_TOKEN: usize = 256 * 1024;

/// The environment variable with the signing key.
pub const KEY_VAR: &str = "STREAMGUARD_STATE_KEY";

/// The environment variable with a token's lifetime, in seconds.
pub const TTL_VAR: &str = "STREAMGUARD_STATE_TTL";

/// How long a token is accepted unless `STREAMGUARD_STATE_TTL` says: a week.
const DEFAULT_TTL: u64 = 7 * 24 * 3600;

/// The shortest key that does not draw a warning (HMAC-SHA256's own size).
const GOOD_KEY: usize = 32;

pub struct StateKey {
    key: hmac::Key,
    /// Seconds a token stays valid after it was made.
    ttl: u64,
}

impl std::fmt::Debug for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateKey(…)")
    }
}

#[derive(Serialize, Deserialize)]
struct Sealed {
    /// The config the state belongs to (its resolved id).
    configs: String,
    /// When the token was made (seconds since the Unix epoch).
    issued: u64,
    state: DialogState,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl StateKey {
    pub fn from_secret(secret: &[u8]) -> Self {
        StateKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            ttl: DEFAULT_TTL,
        }
    }

    /// The same key with tokens valid for `ttl` seconds.
    pub fn with_ttl(mut self, ttl: u64) -> Self {
        self.ttl = ttl;
        self
    }

    /// A random key (the system's randomness; fastrand's only where it has none).
    pub fn random() -> Self {
        let mut secret = [0u8; 32];
        let rng = ring::rand::SystemRandom::new();
        if ring::rand::SecureRandom::fill(&rng, &mut secret).is_err() {
            tracing::warn!("no system randomness for the dialog state key; set {KEY_VAR}");
            secret.iter_mut().for_each(|b| *b = fastrand::u8(..));
        }
        Self::from_secret(&secret)
    }

    /// `STREAMGUARD_STATE_KEY` (unset: a random key) and
    /// `STREAMGUARD_STATE_TTL`; a set but empty key or a bad lifetime is an
    /// error, so a typo does not silently sign with a key no other replica has.
    pub fn from_env() -> Result<Self, String> {
        Self::from_vars(std::env::var(KEY_VAR), std::env::var(TTL_VAR).ok())
    }

    fn from_vars(
        key: Result<String, std::env::VarError>,
        ttl: Option<String>,
    ) -> Result<Self, String> {
        let key = match key {
            Err(std::env::VarError::NotPresent) => Self::random(),
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(format!("{KEY_VAR} is not valid UTF-8"));
            }
            Ok(k) if k.trim().is_empty() => {
                return Err(format!(
                    "{KEY_VAR} is set but empty: set it to a secret of at least {GOOD_KEY} bytes (the same on every replica), or unset it for a random key per process"
                ));
            }
            Ok(k) => {
                if k.trim().len() < GOOD_KEY {
                    tracing::warn!(
                        "{KEY_VAR} is shorter than {GOOD_KEY} bytes; a longer secret is harder to guess"
                    );
                }
                Self::from_secret(k.trim().as_bytes())
            }
        };
        match ttl {
            None => Ok(key),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(ttl) if ttl > 0 => Ok(key.with_ttl(ttl)),
                _ => Err(format!(
                    "{TTL_VAR} must be a whole number of seconds above 0, not `{}`",
                    v.chars().take(32).collect::<String>()
                )),
            },
        }
    }

    /// The token of `state` for `configs`. A state over the size limit loses
    /// its variables (the flow position stays) rather than failing the turn.
    pub fn seal(&self, configs: &str, state: &DialogState) -> Result<String, Error> {
        let token = self.sign(configs, state)?;
        if token.len() <= MAX_TOKEN {
            return Ok(token);
        }
        tracing::warn!(
            config = configs,
            "the dialog's variables make a state over {MAX_TOKEN} bytes; they are dropped"
        );
        let bare = DialogState {
            waiting: state.waiting,
            vars: Default::default(),
            colang_2: state.colang_2.clone(),
        };
        self.sign(configs, &bare)
    }

    fn sign(&self, configs: &str, state: &DialogState) -> Result<String, Error> {
        let sealed = Sealed {
            configs: configs.to_string(),
            issued: now(),
            state: state.clone(),
        };
        let payload = serde_json::to_vec(&sealed)
            .map_err(|e| Error::invalid("state", format!("the dialog state: {e}")))?;
        let tag = hmac::sign(&self.key, &payload);
        Ok(format!(
            "{}.{}",
            B64.encode(&payload),
            B64.encode(tag.as_ref())
        ))
    }

    /// The state in a token this server made for `configs`.
    pub fn open(
        &self,
        configs: &str,
        token: &str,
        field: &'static str,
    ) -> Result<DialogState, Error> {
        let bad = |why: &str| Error::invalid(field, why.to_string());
        if token.len() > MAX_TOKEN {
            return Err(bad("the state is too long"));
        }
        let (payload, tag) = token
            .split_once('.')
            .ok_or_else(|| bad("not a state streamguard returned"))?;
        let (payload, tag) = match (B64.decode(payload), B64.decode(tag)) {
            (Ok(p), Ok(t)) => (p, t),
            _ => return Err(bad("not a state streamguard returned")),
        };
        hmac::verify(&self.key, &payload, &tag).map_err(|_| {
            bad("the state's signature does not match (made by another server or changed; replicas need the same STREAMGUARD_STATE_KEY)")
        })?;
        let sealed: Sealed = serde_json::from_slice(&payload)
            .map_err(|_| bad("not a state streamguard returned"))?;
        if sealed.configs != configs {
            return Err(bad("the state belongs to another config"));
        }
        if now().saturating_sub(sealed.issued) > self.ttl {
            return Err(Error::invalid(
                field,
                format!(
                    "the state expired (older than {} s, {TTL_VAR}): start the conversation again with an empty state",
                    self.ttl
                ),
            ));
        }
        Ok(sealed.state)
    }

    /// NeMo's HTTP `state` object: `{}` starts a conversation, `{"state":
    /// token}` continues one; NeMo's Colang event lists are refused.
    pub fn open_json(
        &self,
        configs: &str,
        value: &Value,
        field: &'static str,
    ) -> Result<DialogState, Error> {
        let Some(map) = value.as_object() else {
            return Err(Error::invalid(
                field,
                "must be an object: `{}` or the `state` returned",
            ));
        };
        if map.is_empty() {
            return Ok(DialogState::default());
        }
        match (map.get("state"), map.contains_key("events")) {
            (Some(Value::String(token)), _) => self.open(configs, token, field),
            (_, true) => Err(Error::invalid(
                field,
                "NeMo's Colang event lists cannot be resumed by streamguard: send `{}` to start and give back the `state` streamguard returns",
            )),
            _ => Err(Error::invalid(
                field,
                "must contain the `state` string streamguard returned, or be `{}` to start a conversation",
            )),
        }
    }
}

/// The config id a request's state is signed for: the configs the request
/// names (composed ones joined as their composed id), else the default
/// config's id, so a state cannot follow the default to another config.
pub fn scope(ids: &[String], registry: &crate::engine::Registry) -> String {
    match ids {
        [] => registry.default_id().unwrap_or_default().to_string(),
        ids => ids.join("+"),
    }
}

/// What a reply seals: the config the request's state belongs to and the
/// state it came with, which a turn without a dialog answer (a rail blocked
/// it) hands back unchanged.
#[derive(Debug, Clone)]
pub struct Resume {
    pub configs: String,
    pub prior: DialogState,
}

impl Resume {
    /// The token to send with the next turn after `response`.
    pub fn seal(
        &self,
        key: &StateKey,
        response: &crate::engine::Response,
    ) -> Result<String, Error> {
        let state = response
            .dialog
            .as_ref()
            .and_then(|d| d.state.as_ref())
            .unwrap_or(&self.prior);
        key.seal(&self.configs, state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_opens_only_unchanged_and_for_its_configs() {
        let key = StateKey::from_secret(b"k");
        let mut state = DialogState::default();
        state.vars.insert("name".into(), "Ana".into());
        let token = key.seal("a", &state).unwrap();
        assert_eq!(key.open("a", &token, "state").unwrap(), state);
        assert!(
            key.open("b", &token, "state")
                .unwrap_err()
                .to_string()
                .contains("another config")
        );
        let other = StateKey::from_secret(b"other");
        assert!(
            other
                .open("a", &token, "state")
                .unwrap_err()
                .to_string()
                .contains("signature")
        );
        // A forged variable breaks the signature.
        let (_, tag) = token.split_once('.').unwrap();
        let forged = format!(
            "{}.{tag}",
            B64.encode(br#"{"configs":"a","state":{"vars":{"allowed":true}}}"#)
        );
        assert!(key.open("a", &forged, "state").is_err());
        assert_eq!(
            key.open_json("a", &serde_json::json!({}), "guardrails.state")
                .unwrap(),
            DialogState::default()
        );
        let e = key
            .open_json("a", &serde_json::json!({"events": []}), "guardrails.state")
            .unwrap_err();
        assert!(e.to_string().contains("event lists"), "{e}");
    }

    #[test]
    fn old_tokens_expire_and_big_states_lose_their_variables() {
        let key = StateKey::from_secret(b"k").with_ttl(60);
        let sealed = Sealed {
            configs: "a".into(),
            issued: now() - 120,
            state: DialogState::default(),
        };
        let payload = serde_json::to_vec(&sealed).unwrap();
        let tag = hmac::sign(&key.key, &payload);
        let old = format!("{}.{}", B64.encode(&payload), B64.encode(tag.as_ref()));
        let e = key.open("a", &old, "state").unwrap_err().to_string();
        assert!(e.contains("expired"), "{e}");

        let mut big = DialogState {
            waiting: Some(crate::dialog::FlowAt {
                flow: 1,
                line: 3,
                step: 2,
            }),
            ..DialogState::default()
        };
        big.vars.insert("blob".into(), "x".repeat(MAX_TOKEN).into());
        let token = key.seal("a", &big).unwrap();
        assert!(token.len() < 1024);
        let opened = key.open("a", &token, "state").unwrap();
        assert_eq!(opened.waiting, big.waiting);
        assert!(opened.vars.is_empty());
    }

    #[test]
    fn a_blank_key_or_a_bad_lifetime_refuses_to_start() {
        let e = StateKey::from_vars(Ok("  ".into()), None).unwrap_err();
        assert!(e.contains("set but empty"), "{e}");
        let e = StateKey::from_vars(Ok("k".repeat(40)), Some("soon".into())).unwrap_err();
        assert!(e.contains(TTL_VAR), "{e}");
        let key = StateKey::from_vars(Ok("k".repeat(40)), Some("90".into())).unwrap();
        assert_eq!(key.ttl, 90);
        let unset = StateKey::from_vars(Err(std::env::VarError::NotPresent), None).unwrap();
        assert_eq!(unset.ttl, DEFAULT_TTL);
    }
}

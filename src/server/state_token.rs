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

pub struct StateKey(hmac::Key);

impl std::fmt::Debug for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateKey(…)")
    }
}

#[derive(Serialize, Deserialize)]
struct Sealed {
    /// The configs the state belongs to.
    configs: String,
    state: DialogState,
}

impl StateKey {
    pub fn from_secret(secret: &[u8]) -> Self {
        StateKey(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// `STREAMGUARD_STATE_KEY`, else a random key.
    pub fn from_env() -> Self {
        match std::env::var(KEY_VAR) {
            Ok(k) if !k.trim().is_empty() => Self::from_secret(k.trim().as_bytes()),
            _ => {
                // The system's randomness; fastrand's only where it has none.
                let mut secret = [0u8; 32];
                let rng = ring::rand::SystemRandom::new();
                if ring::rand::SecureRandom::fill(&rng, &mut secret).is_err() {
                    tracing::warn!("no system randomness for the dialog state key; set {KEY_VAR}");
                    secret.iter_mut().for_each(|b| *b = fastrand::u8(..));
                }
                Self::from_secret(&secret)
            }
        }
    }

    /// The token of `state` for `configs`.
    pub fn seal(&self, configs: &str, state: &DialogState) -> Result<String, Error> {
        let payload = serde_json::to_vec(&Sealed {
            configs: configs.to_string(),
            state: state.clone(),
        })
        .map_err(|e| Error::invalid("state", format!("the dialog state: {e}")))?;
        let tag = hmac::sign(&self.0, &payload);
        let token = format!("{}.{}", B64.encode(&payload), B64.encode(tag.as_ref()));
        if token.len() > MAX_TOKEN {
            return Err(Error::invalid(
                "state",
                format!("the dialog's variables make a state over {MAX_TOKEN} bytes"),
            ));
        }
        Ok(token)
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
        hmac::verify(&self.0, &payload, &tag).map_err(|_| {
            bad("the state's signature does not match (made by another server or changed; replicas need the same STREAMGUARD_STATE_KEY)")
        })?;
        let sealed: Sealed = serde_json::from_slice(&payload)
            .map_err(|_| bad("not a state streamguard returned"))?;
        if sealed.configs != configs {
            return Err(bad("the state belongs to other configs"));
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
                .contains("other configs")
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
}

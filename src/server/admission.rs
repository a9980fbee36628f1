//! Admission control at the edge, shared by gRPC and HTTP: API keys, the
//! concurrency limit, and request size limits.

use std::{path::Path, sync::Arc, time::Duration};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{config::ConfigError, engine, error::Error};

/// Limits and policies of a server.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Requests served at once; beyond it new requests are refused at once.
    pub max_concurrent_requests: Option<usize>,
    /// Largest request body (gRPC message or HTTP body), in bytes.
    pub max_request_bytes: usize,
    /// Most messages in one request.
    pub max_messages: usize,
    /// Longest message content, in bytes.
    pub max_content_bytes: usize,
    /// API keys; `None` means no authentication.
    pub api_keys: Option<Arc<ApiKeys>>,
    /// How long in-flight streams may run after a shutdown signal.
    pub shutdown_grace: Duration,
    /// TLS (and mTLS) for every listener; `None`: plaintext.
    pub tls: Option<super::tls::TlsMaterial>,
    /// How an output-rail block ends an SSE stream, unless a request says.
    pub block_style: super::http::BlockStyle,
    /// Origins browsers may call the HTTP API from (CORS); empty: CORS off.
    pub cors_origins: Vec<String>,
    /// Connection limits and timeouts of every listener.
    pub connections: super::listen::ConnectionSettings,
    /// Where conversation threads are kept, and their bounds.
    pub threads: super::threads::ThreadSettings,
    /// Serve the playground page at `/playground` on the HTTP listener.
    pub playground: bool,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            max_concurrent_requests: None,
            max_request_bytes: 1 << 20,
            max_messages: 512,
            max_content_bytes: 256 << 10,
            api_keys: None,
            shutdown_grace: Duration::from_secs(30),
            tls: None,
            block_style: super::http::BlockStyle::Nemo,
            cors_origins: Vec::new(),
            connections: Default::default(),
            threads: Default::default(),
            playground: false,
        }
    }
}

/// One API key: its name (for logs and metrics) and the configs it may use.
#[derive(Debug)]
pub struct ApiKey {
    pub name: String,
    digest: [u8; 32],
    /// `None`: every config.
    pub configs: Option<Vec<String>>,
}

/// The `--api-keys` file.
#[derive(Debug)]
pub struct ApiKeys {
    keys: Vec<Arc<ApiKey>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeys {
    keys: Vec<RawKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    name: String,
    sha256: String,
    configs: Option<Vec<String>>,
}

fn parse_hex(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl ApiKeys {
    /// Reads an API-keys file; errors name the file and the key.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let raw: RawKeys = crate::config::yaml::parse(path, &text)?;
        let mut keys = Vec::new();
        for (i, k) in raw.keys.into_iter().enumerate() {
            let digest = parse_hex(&k.sha256).ok_or_else(|| {
                ConfigError::invalid(
                    path,
                    format!("keys[{i}].sha256"),
                    "must be 64 hex digits (the SHA-256 of the key)",
                )
            })?;
            if k.name.trim().is_empty() {
                return Err(ConfigError::invalid(
                    path,
                    format!("keys[{i}].name"),
                    "must not be empty",
                ));
            }
            keys.push(Arc::new(ApiKey {
                name: k.name,
                digest,
                configs: k.configs,
            }));
        }
        if keys.is_empty() {
            return Err(ConfigError::invalid(path, "keys", "lists no keys"));
        }
        Ok(ApiKeys { keys })
    }

    /// The key an `authorization` header value carries. Every entry is
    /// compared, in constant time, so timing says nothing about the keys.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Arc<ApiKey>, Error> {
        let token = authorization
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Error::Unauthenticated(
                    "an API key is required: `authorization: Bearer <key>`".into(),
                )
            })?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for key in &self.keys {
            if bool::from(key.digest.ct_eq(&digest)) {
                found = Some(key.clone());
            }
        }
        found.ok_or_else(|| Error::Unauthenticated("unknown API key".into()))
    }
}

impl ApiKey {
    /// Whether this key may use `config_id`.
    pub fn allows(&self, config_id: &str) -> bool {
        self.configs
            .as_ref()
            .is_none_or(|c| c.iter().any(|id| id == config_id))
    }
}

/// The admission state of a running server.
#[derive(Debug)]
pub struct Admission {
    pub settings: ServerSettings,
    permits: Option<Arc<Semaphore>>,
}

/// What an admitted request holds until it ends.
#[derive(Debug)]
pub struct Admitted {
    /// The caller's key, when keys are configured.
    pub key: Option<Arc<ApiKey>>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Admitted {
    /// The key's name for logs ("-" without keys).
    pub fn key_name(&self) -> &str {
        self.key.as_ref().map_or("-", |k| k.name.as_str())
    }

    /// Fails with PERMISSION_DENIED when the key may not use `config_id`.
    pub fn authorize(&self, config_id: &str) -> Result<(), Error> {
        match &self.key {
            Some(k) if !k.allows(config_id) => Err(Error::PermissionDenied(format!(
                "API key `{}` may not use config `{config_id}`",
                k.name
            ))),
            _ => Ok(()),
        }
    }
}

impl Admission {
    pub fn new(settings: ServerSettings) -> Self {
        let permits = settings
            .max_concurrent_requests
            .map(|n| Arc::new(Semaphore::new(n)));
        Admission { settings, permits }
    }

    /// Authenticates the caller and takes a concurrency slot, or refuses at
    /// once (never queues).
    /// Only the key check of [`Admission::admit`] (no permit taken): for a
    /// call that must read more before it is admitted (GuardStream's `start`).
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<(), Error> {
        match &self.settings.api_keys {
            Some(keys) => keys.authenticate(authorization).map(drop),
            None => Ok(()),
        }
    }

    pub fn admit(&self, authorization: Option<&str>) -> Result<Admitted, Error> {
        let key = match &self.settings.api_keys {
            Some(keys) => Some(keys.authenticate(authorization)?),
            None => None,
        };
        let permit = match &self.permits {
            Some(p) => Some(p.clone().try_acquire_owned().map_err(|_| {
                Error::Overloaded(format!(
                    "the server is at its limit of {} concurrent requests; retry later",
                    self.settings.max_concurrent_requests.unwrap_or_default()
                ))
            })?),
            None => None,
        };
        Ok(Admitted {
            key,
            _permit: permit,
        })
    }

    /// Checks the request against the message limits.
    pub fn check(&self, request: &engine::Request) -> Result<(), Error> {
        let s = &self.settings;
        if request.messages.len() > s.max_messages {
            return Err(Error::invalid(
                "messages",
                format!(
                    "{} messages; at most {} are allowed",
                    request.messages.len(),
                    s.max_messages
                ),
            ));
        }
        if let Some((i, m)) = request
            .messages
            .iter()
            .enumerate()
            .find(|(_, m)| m.content.len() > s.max_content_bytes)
        {
            return Err(Error::InvalidRequest {
                field: "messages.content",
                message: format!(
                    "messages[{i}].content is {} bytes; at most {} are allowed",
                    m.content.len(),
                    s.max_content_bytes
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_authenticate_by_digest_and_authorize_by_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.yml");
        let digest = format!("{:x}", Sha256::digest(b"secret-1"));
        std::fs::write(
            &path,
            format!("keys:\n  - name: app\n    sha256: {digest}\n    configs: [support]\n"),
        )
        .unwrap();
        let keys = ApiKeys::load(&path).unwrap();
        let key = keys.authenticate(Some("Bearer secret-1")).unwrap();
        assert_eq!(key.name, "app");
        assert!(key.allows("support") && !key.allows("sales"));
        assert!(matches!(
            keys.authenticate(Some("Bearer nope")),
            Err(Error::Unauthenticated(_))
        ));
        assert!(matches!(
            keys.authenticate(None),
            Err(Error::Unauthenticated(_))
        ));
        assert!(matches!(
            keys.authenticate(Some("Basic abc")),
            Err(Error::Unauthenticated(_))
        ));

        std::fs::write(&path, "keys:\n  - name: app\n    sha256: xyz\n").unwrap();
        let e = ApiKeys::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("keys.yml") && e.contains("keys[0].sha256"),
            "{e}"
        );
    }
}

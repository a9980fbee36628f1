//! What an upstream said, made fit to pass on: bounded in length, with
//! anything that looks like a credential replaced. Upstream error bodies can
//! echo the request, including its `authorization` header.

use std::sync::OnceLock;

use regex::Regex;

/// Characters of upstream text kept in an error message.
pub const MAX_MESSAGE_CHARS: usize = 512;

const REDACTED: &str = "[redacted]";

fn patterns() -> &'static [Regex] {
    static PATTERNS: OnceLock<Vec<Regex>> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        [
            // An authorization header value.
            r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{4,}",
            r"(?i)\bbasic\s+[A-Za-z0-9+/=]{8,}",
            // Vendor key shapes: OpenAI, Anthropic, NVIDIA, generic `key-…`.
            r"\b(?:sk|sk-ant|sk-proj|nvapi|key|api)-[A-Za-z0-9_-]{8,}",
            // `"api_key": "…"`, `x-api-key: …` and the like.
            r#"(?i)(api[_-]?key|token|secret|password)(["']?\s*[:=]\s*["']?)[^\s"',}]{4,}"#,
        ]
        .iter()
        .filter_map(|p| Regex::new(p).ok())
        .collect()
    })
}

/// `text` with the known `secrets` and credential-shaped strings replaced,
/// cut to [`MAX_MESSAGE_CHARS`] characters.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out: String = text.chars().take(MAX_MESSAGE_CHARS + 1).collect();
    let cut = out.chars().count() > MAX_MESSAGE_CHARS;
    // Secrets first: a known key is replaced wherever it is, before the
    // shapes below could leave part of it.
    for s in secrets.iter().filter(|s| s.len() >= 8) {
        out = out.replace(s, REDACTED);
    }
    for (i, re) in patterns().iter().enumerate() {
        out = if i == 3 {
            re.replace_all(&out, format!("$1$2{REDACTED}")).into_owned()
        } else {
            re.replace_all(&out, REDACTED).into_owned()
        };
    }
    if cut {
        let end = out
            .char_indices()
            .nth(MAX_MESSAGE_CHARS)
            .map_or(out.len(), |(i, _)| i);
        out.truncate(end);
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_replaced_and_long_text_is_cut() {
        let body = r#"bad request: header authorization: Bearer sk-live-0123456789abcdef was sent; {"api_key": "hunter2hunter2"} nvapi-AAAABBBBCCCCDDDD"#;
        let out = redact(body, &[]);
        for leaked in [
            "sk-live-0123456789abcdef",
            "hunter2hunter2",
            "nvapi-AAAABBBBCCCCDDDD",
        ] {
            assert!(!out.contains(leaked), "{out}");
        }
        assert!(out.contains("bad request"), "{out}");
        let out = redact("my key is s3cr3t-value-42 ok", &["s3cr3t-value-42"]);
        assert_eq!(out, "my key is [redacted] ok");
        let long = "é".repeat(2000);
        let out = redact(&long, &[]);
        assert_eq!(out.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(out.ends_with('…'));
    }
}

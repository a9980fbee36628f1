//! `injection detection` (output): finds SQL injection, template injection,
//! code injection and cross-site scripting in the answer, and either rejects
//! the answer (`action: reject`) or strips what matched (`action: omit`).
//!
//! NeMo runs YARA rules for this; streamguard uses its own regular
//! expressions per category, compiled once at load.

use futures_util::{FutureExt, future::BoxFuture};
use regex::Regex;
use serde::Deserialize;

use super::{Rail, RailError, RailInput, Verdict};
use crate::config::{Config, ConfigError, FlowRef};

/// The categories and their patterns.
const CATEGORIES: &[(&str, &[&str])] = &[
    (
        "sqli",
        &[
            r"(?i)\bunion\s+(?:all\s+)?select\b",
            r"(?i)'\s*(?:or|and)\s+'?\w+'?\s*=\s*'?\w+",
            r"(?i);\s*(?:drop|delete|truncate|alter|insert|update|exec)\b",
            r"(?i)\b(?:drop|truncate)\s+(?:table|database)\b",
            r"(?i)\bselect\b[^;\n]*\bfrom\b[^;\n]*(?:--|/\*|#)",
            r"(?i)\b(?:select|from)\s+pg_\w+",
            r"(?i)\bexec(?:ute)?\s+xp_\w+",
            r"(?i)(?:\bchar\(\d+\)\s*(?:\+|\|\||,)\s*){2,}",
        ],
    ),
    (
        "template",
        &[
            r"\{\{[^{}]*\}\}",
            r"\{%[^%]*%\}",
            r"\$\{[^{}]*\}",
            r"<%[^%]*%>",
            r"#\{[^{}]*\}",
        ],
    ),
    (
        "code",
        &[
            r"(?i)\b(?:eval|exec|execfile|compile|system|popen|spawn|__import__)\s*\(",
            r"(?i)\b(?:os|subprocess|commands|pty|shutil)\.\w+\s*\(",
            r"(?i)\bimport\s+(?:os|subprocess|sys|socket|shutil|pty)\b",
            r"(?i)\brm\s+-rf\s",
            r"(?i)\b(?:curl|wget)\s+\S+\s*\|\s*(?:ba|z)?sh\b",
            r"(?i)Runtime\.getRuntime\(\)\.exec",
        ],
    ),
    (
        "xss",
        &[
            r"(?i)<\s*/?\s*script\b[^>]*>",
            r"(?i)javascript\s*:",
            r"(?i)<[^>]*\bon(?:error|load|click|mouseover|focus|blur|submit|input)\s*=[^>]*>",
            r"(?i)<\s*(?:iframe|object|embed)\b[^>]*>",
            r"(?i)\bdocument\.(?:cookie|location|write)\b",
        ],
    ),
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    injections: Vec<String>,
    action: Option<String>,
    yara_path: Option<String>,
    #[serde(default)]
    yara_rules: serde_yaml::Mapping,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Reject,
    Omit,
}

#[derive(Debug)]
pub struct InjectionDetection {
    flow: String,
    action: Action,
    patterns: Vec<(&'static str, Regex)>,
}

impl InjectionDetection {
    pub fn new(config: &Config, flow: &FlowRef) -> Result<Self, ConfigError> {
        let settings: Settings = config.rail_settings("injection_detection")?;
        let file = config.rail_settings_file("injection_detection");
        let key = |k: &str| format!("rails.config.injection_detection.{k}");
        if settings.yara_path.as_deref().is_some_and(|p| !p.is_empty())
            || !settings.yara_rules.is_empty()
        {
            return Err(ConfigError::invalid(
                &file,
                key("yara_rules"),
                "custom YARA rules are not supported; streamguard's built-in detectors cover sqli, template, code and xss",
            ));
        }
        let action = match settings.action.as_deref().unwrap_or("reject") {
            "reject" => Action::Reject,
            "omit" => Action::Omit,
            other => {
                return Err(ConfigError::invalid(
                    &file,
                    key("action"),
                    format!("`{other}` is not supported; use `reject` or `omit`"),
                ));
            }
        };
        if settings.injections.is_empty() {
            return Err(ConfigError::invalid(
                &file,
                key("injections"),
                "`injection detection` needs the injections to look for: sqli, template, code, xss",
            ));
        }
        let mut patterns = Vec::new();
        for (i, name) in settings.injections.iter().enumerate() {
            let Some((category, list)) = CATEGORIES.iter().find(|(c, _)| c == name) else {
                return Err(ConfigError::invalid(
                    &file,
                    key(&format!("injections[{i}]")),
                    format!("unknown injection `{name}`; known: sqli, template, code, xss"),
                ));
            };
            for p in *list {
                let re = Regex::new(p)
                    .map_err(|e| ConfigError::invalid(&file, key("injections"), e.to_string()))?;
                patterns.push((*category, re));
            }
        }
        Ok(InjectionDetection {
            flow: flow.name.clone(),
            action,
            patterns,
        })
    }

    /// The categories found in `text`, and `text` with the matches removed.
    fn scan(&self, text: &str) -> (Vec<&'static str>, Option<String>) {
        let mut found: Vec<&'static str> = Vec::new();
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for (category, re) in &self.patterns {
            for m in re.find_iter(text) {
                if !found.contains(category) {
                    found.push(category);
                }
                spans.push((m.start(), m.end()));
            }
        }
        if found.is_empty() || self.action == Action::Reject {
            return (found, None);
        }
        spans.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (start, end) in spans {
            if start >= at {
                out.push_str(&text[at..start]);
            }
            at = at.max(end);
        }
        out.push_str(&text[at..]);
        (found, Some(out))
    }
}

impl Rail for InjectionDetection {
    fn flow(&self) -> &str {
        &self.flow
    }

    fn check<'a>(&'a self, input: RailInput<'a>) -> BoxFuture<'a, Result<Verdict, RailError>> {
        let (found, omitted) = self.scan(input.text());
        let reason = format!("injection detected: {}", found.join(", "));
        let verdict = match (found.is_empty(), omitted) {
            (true, _) => Verdict::Allow,
            (false, Some(text)) => Verdict::Modify { text, reason },
            (false, None) => Verdict::Block { reason },
        };
        async move { Ok(verdict) }.boxed()
    }
}

//! Sensitive-data detection and masking without a model: pattern
//! recognizers for the common PII entities, with checksums where the format
//! has one (Luhn for cards, mod-97 for IBANs), so that `detect sensitive data
//! on input` and `mask sensitive data on output` run in microseconds.
//!
//! Settings follow NeMo's `rails.config.sensitive_data_detection`: per stage
//! an `entities` list (and `score_threshold`, accepted for compatibility);
//! ad-hoc `recognizers` with `supported_entity` and `patterns`/`deny_list`.
//! Masking replaces each finding with `<ENTITY_TYPE>` as NeMo (Presidio's
//! `replace` operator) does, or with `mask_token` when one is set.

use std::{net::Ipv6Addr, sync::OnceLock};

use futures_util::{FutureExt, future::BoxFuture};
use regex::Regex;
use serde::Deserialize;

use super::{Rail, RailError, RailInput, Stage, Verdict, Warnings};
use crate::config::{Config, ConfigError, FlowRef};

/// The built-in entity types.
pub const BUILT_IN: &[&str] = &[
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "US_SSN",
    "IP_ADDRESS",
    "IBAN_CODE",
    "URL",
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    recognizers: Vec<CustomRecognizer>,
    #[serde(default)]
    input: StageSettings,
    #[serde(default)]
    output: StageSettings,
    #[serde(default)]
    retrieval: StageSettings,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StageSettings {
    #[serde(default)]
    entities: Vec<String>,
    mask_token: Option<String>,
    /// Presidio's confidence cut-off; pattern recognizers here are exact.
    #[allow(dead_code)]
    score_threshold: Option<f64>,
}

/// A Presidio-style ad-hoc recognizer.
#[derive(Debug, Deserialize)]
struct CustomRecognizer {
    supported_entity: String,
    #[serde(default)]
    patterns: Vec<CustomPattern>,
    #[serde(default)]
    deny_list: Vec<String>,
    #[serde(default, rename = "name")]
    _name: Option<String>,
    #[serde(default, rename = "supported_language")]
    _language: Option<String>,
    #[serde(default, rename = "context")]
    _context: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct CustomPattern {
    regex: String,
    #[serde(default, rename = "name")]
    _name: Option<String>,
    #[serde(default, rename = "score")]
    _score: Option<f64>,
}

/// One finding: the entity type and its byte range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entity {
    pub kind: String,
    pub start: usize,
    pub end: usize,
}

/// Checks a pattern match further (checksums, ranges).
type Validator = fn(&str) -> bool;

/// A compiled recognizer: a pattern and a validator.
#[derive(Debug, Clone)]
struct Recognizer {
    kind: String,
    pattern: Regex,
    validate: Validator,
}

fn any(_: &str) -> bool {
    true
}

/// Luhn checksum over the digits of `s`, 13 to 19 digits.
fn luhn(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let d = d * 2;
                if d > 9 { d - 9 } else { d }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// IBAN mod-97 check.
fn iban(s: &str) -> bool {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut remainder: u32 = 0;
    for c in tail.chars().chain(head.chars()) {
        let value = match c.to_digit(36) {
            Some(v) => v,
            None => return false,
        };
        for d in value.to_string().chars().filter_map(|d| d.to_digit(10)) {
            remainder = (remainder * 10 + d) % 97;
        }
    }
    remainder == 1
}

/// US SSNs never have area 000, 666 or 9xx, group 00 or serial 0000.
fn ssn(s: &str) -> bool {
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    let (area, rest) = digits.split_at(3.min(digits.len()));
    let (group, serial) = rest.split_at(2.min(rest.len()));
    digits.len() == 9
        && area != "000"
        && area != "666"
        && !area.starts_with('9')
        && group != "00"
        && serial != "0000"
}

/// A national number: exactly three digit groups, e.g. `(555) 123-4567`;
/// more groups are cards, accounts or IBAN fragments.
fn national_phone(s: &str) -> bool {
    s.split(|c: char| !c.is_ascii_digit())
        .filter(|g| !g.is_empty())
        .count()
        == 3
}

/// 7 to 15 digits (E.164).
fn phone(s: &str) -> bool {
    let n = s.chars().filter(char::is_ascii_digit).count();
    (7..=15).contains(&n)
}

/// Exactly four parts, each 0..=255 (so versions like 1.2.3.4.5 are not IPs).
fn ipv4(s: &str) -> bool {
    s.parse::<std::net::Ipv4Addr>().is_ok()
}

fn ipv6(s: &str) -> bool {
    s.parse::<Ipv6Addr>().is_ok()
}

fn built_in() -> &'static [Recognizer] {
    static ALL: OnceLock<Vec<Recognizer>> = OnceLock::new();
    ALL.get_or_init(|| {
        let table: [(&str, &str, Validator); 9] = [
            (
                "EMAIL_ADDRESS",
                r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b",
                any,
            ),
            (
                "URL",
                r#"\b(?:https?://|www\.)[^\s<>"'`]*[^\s<>"'`.,;:!?)\]]"#,
                any,
            ),
            ("IBAN_CODE", r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b", iban),
            ("CREDIT_CARD", r"\b\d(?:[ -]?\d){12,18}\b", luhn),
            ("US_SSN", r"\b\d{3}[- ]\d{2}[- ]\d{4}\b", ssn),
            ("IP_ADDRESS", r"\b\d{1,3}(?:\.\d{1,3}){3}(?:\.\d+)*\b", ipv4),
            (
                "IP_ADDRESS",
                r"(?i)(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}",
                ipv6,
            ),
            (
                "PHONE_NUMBER",
                r"(?:\(\d{2,4}\)\s?|\b\d{2,4}[\s.-])\d{3,4}[\s.-]\d{4}(?:[\s.-]\d+)*\b",
                national_phone,
            ),
            ("PHONE_NUMBER", r"\+\d{1,3}(?:[\s.-]?\d{1,4}){2,5}\b", phone),
        ];
        table
            .into_iter()
            .filter_map(|(kind, pattern, validate)| {
                Regex::new(pattern).ok().map(|pattern| Recognizer {
                    kind: kind.to_string(),
                    pattern,
                    validate,
                })
            })
            .collect()
    })
}

/// The recognizers of one stage.
#[derive(Debug, Clone)]
pub struct Recognizers {
    active: Vec<Recognizer>,
}

impl Recognizers {
    /// Built-in recognizers for `entities` (unknown names are skipped).
    pub fn for_entities(entities: &[&str]) -> Self {
        Recognizers {
            active: built_in()
                .iter()
                .filter(|r| entities.contains(&r.kind.as_str()))
                .cloned()
                .collect(),
        }
    }

    /// Every finding, left to right; where findings overlap the longer wins.
    pub fn find(&self, text: &str) -> Vec<Entity> {
        let mut found: Vec<Entity> = Vec::new();
        for r in &self.active {
            for m in r.pattern.find_iter(text) {
                if (r.validate)(m.as_str()) {
                    found.push(Entity {
                        kind: r.kind.clone(),
                        start: m.start(),
                        end: m.end(),
                    });
                }
            }
        }
        found.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
        let mut kept: Vec<Entity> = Vec::with_capacity(found.len());
        for e in found {
            match kept.last() {
                Some(last) if e.start < last.end => {
                    if e.end - e.start > last.end - last.start {
                        kept.pop();
                        kept.push(e);
                    }
                }
                _ => kept.push(e),
            }
        }
        kept
    }

    /// `text` with every finding replaced by `<KIND>` (or `token`).
    pub fn mask(&self, text: &str, token: Option<&str>) -> (String, Vec<Entity>) {
        let found = self.find(text);
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for e in &found {
            out.push_str(&text[at..e.start]);
            match token {
                Some(t) => out.push_str(t),
                None => {
                    out.push('<');
                    out.push_str(&e.kind);
                    out.push('>');
                }
            }
            at = e.end;
        }
        out.push_str(&text[at..]);
        (out, found)
    }
}

/// The recognizers of one entity: the config's own (patterns, deny lists),
/// then the built-in ones. Empty when nothing recognizes it.
fn recognizers_for(
    entity: &str,
    custom: &[CustomRecognizer],
    file: &std::path::Path,
) -> Result<Vec<Recognizer>, ConfigError> {
    let mut out = Vec::new();
    for r in custom.iter().filter(|r| r.supported_entity == entity) {
        for (i, p) in r.patterns.iter().enumerate() {
            let pattern = Regex::new(&p.regex).map_err(|e| {
                ConfigError::invalid(
                    file,
                    format!(
                        "rails.config.sensitive_data_detection.recognizers ({entity}).patterns[{i}]"
                    ),
                    e.to_string(),
                )
            })?;
            out.push(Recognizer {
                kind: entity.to_string(),
                pattern,
                validate: any,
            });
        }
        if !r.deny_list.is_empty() {
            let words: Vec<String> = r.deny_list.iter().map(|w| regex::escape(w)).collect();
            let pattern =
                Regex::new(&format!(r"(?i)\b(?:{})\b", words.join("|"))).map_err(|e| {
                    ConfigError::invalid(
                        file,
                        "rails.config.sensitive_data_detection.recognizers",
                        e.to_string(),
                    )
                })?;
            out.push(Recognizer {
                kind: entity.to_string(),
                pattern,
                validate: any,
            });
        }
    }
    out.extend(built_in().iter().filter(|r| r.kind == entity).cloned());
    Ok(out)
}

/// The `detect …` and `mask …` rails.
#[derive(Debug)]
pub struct SensitiveData {
    flow: String,
    recognizers: Recognizers,
    mask: bool,
    token: Option<String>,
}

impl SensitiveData {
    pub fn new(
        config: &Config,
        flow: &FlowRef,
        stage: Stage,
        mask: bool,
        warnings: &mut Warnings,
    ) -> Result<Self, ConfigError> {
        let settings: Settings = config.rail_settings("sensitive_data_detection")?;
        let options = match stage {
            Stage::Input | Stage::ToolInput => &settings.input,
            Stage::Output | Stage::ToolOutput => &settings.output,
            Stage::Retrieval => &settings.retrieval,
        };
        let key = format!("rails.config.sensitive_data_detection.{stage}.entities");
        let file = config.rail_settings_file("sensitive_data_detection");
        if options.entities.is_empty() {
            return Err(ConfigError::invalid(
                &file,
                &key,
                format!(
                    "`{}` needs the entities to look for, e.g. [EMAIL_ADDRESS, PHONE_NUMBER]; built in: {}",
                    flow.name,
                    BUILT_IN.join(", ")
                ),
            ));
        }
        let mut active = Vec::new();
        let mut unsupported = Vec::new();
        for entity in &options.entities {
            let found = recognizers_for(entity, &settings.recognizers, &file)?;
            if found.is_empty() {
                unsupported.push(entity.as_str());
            }
            active.extend(found);
        }
        if !unsupported.is_empty() {
            warnings.push(format!(
                "{}: `{key}`: {} need a named-entity model and are not detected by `{}`; built in: {} (or add a \
                 `recognizers` entry with patterns)",
                file.display(),
                unsupported.join(", "),
                flow.name,
                BUILT_IN.join(", ")
            ));
        }
        Ok(SensitiveData {
            flow: flow.name.clone(),
            recognizers: Recognizers { active },
            mask,
            token: options.mask_token.clone(),
        })
    }
}

impl Rail for SensitiveData {
    fn flow(&self) -> &str {
        &self.flow
    }

    fn check<'a>(&'a self, input: RailInput<'a>) -> BoxFuture<'a, Result<Verdict, RailError>> {
        let text = input.text();
        let verdict = if self.mask {
            let (masked, found) = self.recognizers.mask(text, self.token.as_deref());
            if found.is_empty() {
                Verdict::Allow
            } else {
                Verdict::Modify {
                    text: masked,
                    reason: summary(&found),
                }
            }
        } else {
            let found = self.recognizers.find(text);
            if found.is_empty() {
                Verdict::Allow
            } else {
                Verdict::Block {
                    reason: summary(&found),
                }
            }
        };
        async move { Ok(verdict) }.boxed()
    }
}

fn summary(found: &[Entity]) -> String {
    let mut kinds: Vec<&str> = found.iter().map(|e| e.kind.as_str()).collect();
    kinds.dedup();
    format!("sensitive data found: {}", kinds.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Recognizers {
        Recognizers::for_entities(BUILT_IN)
    }

    fn kinds(text: &str) -> Vec<String> {
        all().find(text).into_iter().map(|e| e.kind).collect()
    }

    #[test]
    fn each_entity_is_found_and_its_lookalikes_are_not() {
        let table: &[(&str, &[&str])] = &[
            (
                "mail me at jane.doe+x@example.co.uk please",
                &["EMAIL_ADDRESS"],
            ),
            ("an @ sign alone, or me@localhost", &[]),
            (
                "call 555-123-4567 or (555) 123-4567",
                &["PHONE_NUMBER", "PHONE_NUMBER"],
            ),
            ("or +44 20 7946 0958 today", &["PHONE_NUMBER"]),
            ("card 4111 1111 1111 1111 ok", &["CREDIT_CARD"]),
            ("card 4111-1111-1111-1112 fails Luhn", &[]),
            ("ssn 123-45-6789", &["US_SSN"]),
            ("ssn 666-45-6789 and 123-00-6789 are invalid", &[]),
            (
                "host 192.168.1.20 and 2001:db8::8a2e:370:7334",
                &["IP_ADDRESS", "IP_ADDRESS"],
            ),
            ("version 1.2.3.4.5 and 999.1.1.1", &[]),
            ("IBAN GB82 WEST 1234 5698 7654 32 now", &["IBAN_CODE"]),
            ("IBAN GB82 WEST 1234 5698 7654 33 bad checksum", &[]),
            ("see https://example.com/a?b=1. Thanks", &["URL"]),
            ("nothing here at 10:30 on 2024-01-02", &[]),
        ];
        for (text, expected) in table {
            assert_eq!(kinds(text), *expected, "{text}");
        }
    }

    #[test]
    fn masking_replaces_each_finding_with_its_type() {
        let (masked, _) = all().mask("Mail jane@example.com or call 555-123-4567.", None);
        assert_eq!(masked, "Mail <EMAIL_ADDRESS> or call <PHONE_NUMBER>.");
        let (masked, _) = all().mask("card 4111111111111111", Some("****"));
        assert_eq!(masked, "card ****");
        let (masked, found) = all().mask("no secrets", None);
        assert_eq!((masked.as_str(), found.len()), ("no secrets", 0));
    }

    #[test]
    fn overlapping_findings_keep_the_longest() {
        // The URL contains an IP address; the URL wins.
        assert_eq!(kinds("go to http://10.0.0.1/admin now"), ["URL"]);
    }

    #[test]
    fn checksums() {
        assert!(luhn("4111111111111111") && !luhn("4111111111111112"));
        assert!(iban("DE89370400440532013000") && !iban("DE89370400440532013001"));
        assert!(ssn("123-45-6789") && !ssn("900-45-6789"));
    }
}

//! `regex check input` / `regex check output`: a block list of regular
//! expressions (NeMo's `rails.config.regex_detection`) and, a streamguard
//! extension, of whole-word `keywords`.

use futures_util::{FutureExt, future::BoxFuture};
use regex::{Regex, RegexBuilder};
use serde::Deserialize;

use super::{Rail, RailError, RailInput, Stage, Verdict};
use crate::config::{Config, ConfigError, FlowRef};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
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
    patterns: Vec<String>,
    /// Whole words or phrases, matched at word boundaries.
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    case_insensitive: bool,
}

#[derive(Debug)]
pub struct RegexCheck {
    flow: String,
    /// Each compiled pattern with the text the config wrote.
    patterns: Vec<(String, Regex)>,
}

impl RegexCheck {
    pub fn new(config: &Config, flow: &FlowRef, stage: Stage) -> Result<Self, ConfigError> {
        let settings: Settings = config.rail_settings("regex_detection")?;
        let options = match stage {
            Stage::Input | Stage::ToolInput => &settings.input,
            Stage::Output | Stage::ToolOutput => &settings.output,
            Stage::Retrieval => &settings.retrieval,
        };
        let file = config.rail_settings_file("regex_detection");
        let compile = |pattern: &str, key: String| {
            RegexBuilder::new(pattern)
                .case_insensitive(options.case_insensitive)
                .build()
                .map_err(|e| ConfigError::invalid(&file, key, e.to_string()))
        };
        let mut patterns = Vec::new();
        for (i, p) in options.patterns.iter().enumerate() {
            let key = format!("rails.config.regex_detection.{stage}.patterns[{i}]");
            patterns.push((p.clone(), compile(p, key)?));
        }
        if !options.keywords.is_empty() {
            let words: Vec<String> = options
                .keywords
                .iter()
                .map(|k| regex::escape(k.trim()))
                .collect();
            let key = format!("rails.config.regex_detection.{stage}.keywords");
            let re = compile(&format!(r"\b(?:{})\b", words.join("|")), key)?;
            patterns.push(("keywords".into(), re));
        }
        if patterns.is_empty() {
            return Err(ConfigError::invalid(
                &file,
                format!("rails.config.regex_detection.{stage}"),
                format!("`{}` needs `patterns` or `keywords` to block", flow.name),
            ));
        }
        Ok(RegexCheck {
            flow: flow.name.clone(),
            patterns,
        })
    }
}

impl Rail for RegexCheck {
    fn flow(&self) -> &str {
        &self.flow
    }

    fn check<'a>(&'a self, input: RailInput<'a>) -> BoxFuture<'a, Result<Verdict, RailError>> {
        let text = input.text();
        let matched: Vec<&str> = self
            .patterns
            .iter()
            .filter_map(|(p, re)| {
                re.find(text).map(|m| {
                    if p == "keywords" {
                        m.as_str()
                    } else {
                        p.as_str()
                    }
                })
            })
            .collect();
        let verdict = if matched.is_empty() {
            Verdict::Allow
        } else {
            Verdict::Block {
                reason: format!("matched {}", matched.join(", ")),
            }
        };
        async move { Ok(verdict) }.boxed()
    }
}

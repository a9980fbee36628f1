//! Reading judge answers as NeMo's output parsers do.

fn words(answer: &str) -> impl Iterator<Item = String> + '_ {
    answer.split_whitespace().map(|w| {
        w.chars()
            .filter(|c| c.is_alphanumeric() || *c == '-')
            .flat_map(char::to_lowercase)
            .collect()
    })
}

/// Parses a yes/no judge answer as NeMo does: the first two words, lower-cased
/// with punctuation removed; "safe"/"no" allow, "unsafe"/"yes" block, anything
/// else blocks. Returns `true` when the content is allowed.
pub fn parse_yes_no(answer: &str) -> bool {
    for word in words(answer).take(2) {
        match word.as_str() {
            "safe" | "no" => return true,
            "unsafe" | "yes" => return false,
            _ => {}
        }
    }
    false
}

/// `is_content_safe`: like [`parse_yes_no`]; a block's reason carries the
/// violated categories that follow "unsafe" (Llama Guard's `unsafe\nS1,S3`).
/// The answer without its `<think>…</think>` traces; `None` when one is
/// left open (a trace cut at the token limit).
fn without_think(answer: &str) -> Option<String> {
    let mut out = String::with_capacity(answer.len());
    let mut rest = answer;
    while let Some(open) = rest.find("<think>") {
        out.push_str(&rest[..open]);
        let after = &rest[open + "<think>".len()..];
        let close = after.find("</think>")?;
        rest = &after[close + "</think>".len()..];
    }
    out.push_str(rest);
    Some(out)
}

/// The word after `field:` on a line of `text`, case-insensitively.
fn field_value(text: &str, field: &str) -> Option<String> {
    let field = field.to_lowercase();
    text.lines().find_map(|line| {
        let lower = line.trim().to_lowercase();
        let rest = lower.strip_prefix(&field)?.trim_start().strip_prefix(':')?;
        rest.split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .find(|w| !w.is_empty())
            .map(str::to_string)
    })
}

/// Nemotron Content Safety Reasoning: `Prompt harm: unharmful` allows;
/// anything else (also no such line) blocks, as NeMo reads it.
pub fn nemotron_harm(answer: &str, field: &str) -> Result<(), String> {
    let text = without_think(answer).unwrap_or_default();
    match field_value(&text, field).as_deref() {
        Some("unharmful") => Ok(()),
        Some(v) => Err(format!("{field}: {v}")),
        None => Err(format!("the judge's answer has no `{field}:` line")),
    }
}

/// Nemotron Content Safety: a `User Safety: safe` line allows; `unsafe`
/// blocks with the `Safety Categories`; an answer without the line (or with
/// an unterminated reasoning trace) blocks, as NeMo's parser fails on it.
pub fn nemotron_safety(answer: &str, field: &str) -> Result<(), String> {
    let Some(text) = without_think(answer) else {
        return Err("the judge's reasoning trace is unterminated".into());
    };
    match field_value(&text, field).as_deref() {
        Some("safe") => Ok(()),
        Some("unsafe") => {
            let categories = text.lines().find_map(|l| {
                let t = l.trim();
                t.to_lowercase()
                    .starts_with("safety categories")
                    .then(|| t.split_once(':').map(|(_, c)| c.trim().to_string()))
                    .flatten()
            });
            Err(match categories {
                Some(c) if !c.is_empty() => format!("unsafe: {c}"),
                _ => "unsafe".into(),
            })
        }
        _ => Err(format!(
            "the judge's answer has no `{field}: safe|unsafe` line"
        )),
    }
}

/// Patronus Lynx's verdict, as NeMo's regex reads it: the first
/// `"SCORE":` followed by `PASS` or `FAIL` (quotes optional) decides;
/// without one the answer fails.
pub fn lynx_pass(answer: &str) -> bool {
    const KEY: &str = "\"SCORE\":";
    for (at, _) in answer.match_indices(KEY) {
        let rest = answer[at + KEY.len()..].trim_start();
        let rest = rest.strip_prefix('"').unwrap_or(rest);
        for (word, pass) in [("PASS", true), ("FAIL", false)] {
            let whole = rest
                .strip_prefix(word)
                .is_some_and(|after| !after.starts_with(|c: char| c.is_alphanumeric() || c == '_'));
            if whole {
                return pass;
            }
        }
    }
    false
}

/// Whether a fact-check judge found the answer supported, as NeMo reads it
/// (its `is_content_safe` inverted, first two words): "yes" or "unsafe"
/// supported, "no" or "safe" not, anything else supported.
pub fn fact_supported(answer: &str) -> bool {
    let lower = answer.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .take(2)
        .collect();
    for (word, supported) in [
        ("safe", false),
        ("unsafe", true),
        ("yes", true),
        ("no", false),
    ] {
        if words.contains(&word) {
            return supported;
        }
    }
    true
}

pub fn parse_content_safety(answer: &str) -> Result<(), String> {
    if parse_yes_no(answer) {
        return Ok(());
    }
    let categories: Vec<&str> = answer
        .split(|c: char| c.is_whitespace() || c == ',')
        .skip_while(|w| !w.to_lowercase().contains("unsafe"))
        .skip(1)
        .filter(|w| !w.is_empty())
        .collect();
    Err(if categories.is_empty() {
        format!("the judge answered {:?}", answer.trim())
    } else {
        format!("unsafe: {}", categories.join(", "))
    })
}

/// Reads NemoGuard's JSON answer (`{"User Safety": "unsafe", "Safety
/// Categories": "S1, S3"}`) by `field`. Text around the JSON object is
/// ignored; an answer that is not such JSON blocks, as in NeMo.
pub fn parse_nemoguard(answer: &str, field: &str) -> Result<(), String> {
    let json = match (answer.find('{'), answer.rfind('}')) {
        (Some(start), Some(end)) if start < end => &answer[start..=end],
        _ => {
            return Err(format!(
                "the judge's answer is not JSON: {:?}",
                answer.trim()
            ));
        }
    };
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|_| format!("the judge's answer is not JSON: {:?}", answer.trim()))?;
    let rating = value
        .get(field)
        .and_then(|v| v.as_str())
        .map(|s| s.trim().to_lowercase())
        .ok_or_else(|| format!("the judge's answer has no {field:?}: {json}"))?;
    match rating.as_str() {
        "safe" => Ok(()),
        _ => Err(
            match value.get("Safety Categories").and_then(|v| v.as_str()) {
                Some(c) if !c.trim().is_empty() => format!("{rating}: {}", c.trim()),
                _ => rating,
            },
        ),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn lynx_scores_read_as_nemo_reads_them() {
        assert!(lynx_pass(r#"{"REASONING": ["ok"], "SCORE": "PASS"}"#));
        assert!(lynx_pass(r#"{"SCORE":PASS}"#));
        assert!(!lynx_pass(r#"{"REASONING": ["made up"], "SCORE": "FAIL"}"#));
        assert!(!lynx_pass(r#"{"SCORE": "PASSABLE"}"#));
        assert!(!lynx_pass("I cannot tell."));
        // A mention in the reasoning is skipped, as NeMo's regex search does.
        assert!(lynx_pass(
            r#"the "SCORE": is not given here. {"SCORE": "PASS"}"#
        ));
        assert!(!lynx_pass(r#"{"SCORE" : "PASS"}"#));
    }

    use super::*;

    #[test]
    fn nemotron_answers_are_read_by_their_fields() {
        let reasoning = "<think>The user asks about cooking. Prompt harm: harmful?</think>\nPrompt harm: unharmful\nResponse Harm: harmful";
        assert_eq!(nemotron_harm(reasoning, "Prompt harm"), Ok(()));
        assert!(nemotron_harm(reasoning, "Response Harm").is_err());
        assert!(nemotron_harm("<think>cut off", "Prompt harm").is_err());
        assert_eq!(nemotron_safety("User Safety: safe", "User Safety"), Ok(()));
        assert_eq!(
            nemotron_safety(
                "User Safety: unsafe\nSafety Categories: Violence, Threat",
                "User Safety"
            ),
            Err("unsafe: Violence, Threat".to_string())
        );
        assert!(nemotron_safety("no verdict", "User Safety").is_err());
        assert!(nemotron_safety("<think>User Safety: safe", "User Safety").is_err());
    }

    #[test]
    fn fact_checks_read_as_nemo_inverts_is_content_safe() {
        assert!(fact_supported("Yes, it is supported."));
        assert!(!fact_supported("no"));
        assert!(!fact_supported("Safe"));
        assert!(fact_supported("The response is fine"));
        assert!(!fact_supported("well, no: the evidence says otherwise"));
    }

    #[test]
    fn yes_no_answers_parse_like_nemo() {
        for allowed in [
            "No",
            "no.",
            " NO, it is fine",
            "safe",
            "Safe!",
            "Answer: no",
            "**No**",
        ] {
            assert!(parse_yes_no(allowed), "{allowed:?} should allow");
        }
        for blocked in [
            "Yes",
            "yes.",
            "unsafe",
            "UNSAFE\nS1",
            "",
            "maybe",
            "I think no",
            "The answer is no",
        ] {
            assert!(!parse_yes_no(blocked), "{blocked:?} should block");
        }
    }

    #[test]
    fn content_safety_answers_carry_categories() {
        assert_eq!(parse_content_safety("safe"), Ok(()));
        assert_eq!(
            parse_content_safety("unsafe\nS1,S3"),
            Err("unsafe: S1, S3".into())
        );
        assert_eq!(
            parse_content_safety("unsafe"),
            Err("the judge answered \"unsafe\"".into())
        );
        assert!(parse_content_safety("I cannot say").is_err());
    }

    #[test]
    fn nemoguard_json_is_read_by_field() {
        let safe = r#"{"User Safety": "safe"}"#;
        assert_eq!(parse_nemoguard(safe, "User Safety"), Ok(()));
        let unsafe_ = r#"Output: {"User Safety": "unsafe", "Response Safety": "safe", "Safety Categories": "Violence, Threat"}"#;
        assert_eq!(
            parse_nemoguard(unsafe_, "User Safety"),
            Err("unsafe: Violence, Threat".into())
        );
        assert_eq!(parse_nemoguard(unsafe_, "Response Safety"), Ok(()));
        assert!(
            parse_nemoguard("safe", "User Safety").is_err(),
            "not JSON blocks"
        );
        assert!(parse_nemoguard(r#"{"User Safety": "Unsafe"}"#, "User Safety").is_err());
        assert!(
            parse_nemoguard(r#"{"Response Safety": "safe"}"#, "User Safety").is_err(),
            "missing field blocks"
        );
        assert!(
            parse_nemoguard(r#"{"User Safety": "safe""#, "User Safety").is_err(),
            "broken JSON blocks"
        );
    }
}

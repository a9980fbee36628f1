//! Reading what a model writes in Colang style: intents, and bot messages
//! with their quotes and a repeated `bot …` line stripped as chunks arrive.

/// The first line of `text` with something on it, trimmed.
pub fn first_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default()
}

/// The first non-empty line of an answer, read leniently: without a `user ` /
/// `bot ` prefix, quotes, leading spaces or a trailing period.
pub fn read_intent(answer: &str) -> String {
    let line = first_line(answer);
    let line = line
        .strip_prefix("user ")
        .or_else(|| line.strip_prefix("bot "))
        .unwrap_or(line);
    line.trim()
        .trim_matches('"')
        .trim()
        .trim_end_matches('.')
        .trim()
        .to_string()
}

/// Strips what the model writes around a bot message (a repeated `bot …`
/// line, leading spaces, the opening and closing quote) as the chunks
/// arrive, holding back only what might still turn out to be one of them.
#[derive(Debug, Default)]
pub struct MessageCleaner {
    started: bool,
    /// Text not decided yet (the start, or a trailing quote).
    held: String,
}

impl MessageCleaner {
    /// The text to send now for this chunk.
    pub fn push(&mut self, chunk: &str) -> Option<String> {
        self.held.push_str(chunk);
        if !self.started {
            let t = self.held.trim_start();
            if t.is_empty() || ("bot ".starts_with(t) && t.len() < 4) {
                return None;
            }
            if t.starts_with("bot ") {
                // Wait for the end of the repeated intent line, then drop it.
                let nl = t.find('\n')?;
                let rest = t[nl + 1..].to_string();
                self.held = rest;
                if self.held.trim_start().is_empty() {
                    return None;
                }
            }
            let t = self.held.trim_start();
            let t = t.strip_prefix('"').unwrap_or(t).to_string();
            self.held = t;
            self.started = true;
        }
        // Hold a trailing quote (and spaces after it): it may be the closing one.
        let keep = self
            .held
            .trim_end()
            .strip_suffix('"')
            .map_or(0, |body| self.held.len() - body.len());
        let out: String = self.held.drain(..self.held.len() - keep).collect();
        (!out.is_empty()).then_some(out)
    }

    /// What is left at the end: a held quote that turned out not to close is
    /// dropped with its trailing spaces, as the closing quote is.
    pub fn finish(&mut self) -> Option<String> {
        if !self.started {
            let t = self.held.trim().trim_matches('"').to_string();
            return (!t.is_empty()).then_some(t);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intents_are_read_leniently() {
        for answer in [
            "express greeting",
            "  user express greeting.\n",
            "\n\"express greeting\"",
            "bot express greeting",
        ] {
            assert_eq!(read_intent(answer), "express greeting", "{answer:?}");
        }
    }

    fn clean(chunks: &[&str]) -> Vec<String> {
        let mut c = MessageCleaner::default();
        let mut out: Vec<String> = chunks.iter().filter_map(|ch| c.push(ch)).collect();
        out.extend(c.finish());
        out
    }

    #[test]
    fn quotes_and_a_repeated_bot_line_are_stripped_across_chunks() {
        assert_eq!(
            clean(&["  \"Paris", " is", " lovely.\""]),
            ["Paris", " is", " lovely."]
        );
        assert_eq!(
            clean(&[" ", "\"", "Hi", " there\"", "  "]),
            ["Hi", " there"]
        );
        assert_eq!(
            clean(&["bo", "t inform answer\n", "  \"Yes", "\""]),
            ["Yes"]
        );
        assert_eq!(
            clean(&["Say \"", "cheese\" now"]),
            ["Say ", "\"cheese\" now"]
        );
        assert_eq!(clean(&["no quotes at all"]), ["no quotes at all"]);
        assert_eq!(clean(&["bot"]), ["bot"]);
    }
}

//! Cutting a model's streamed text at stop strings, as an endpoint would and
//! as NeMo's streaming handler does when the model ignores them: text that
//! may be the start of a stop string is held back across chunk boundaries
//! until it is known not to be one.

/// Stop-string bookkeeping for one stream.
#[derive(Debug, Default)]
pub struct StopFilter {
    stops: Vec<String>,
    /// Text that may be the start of a stop string.
    held: String,
    /// Everything emitted so far.
    emitted: String,
    stopped: bool,
}

impl StopFilter {
    pub fn new(stops: Vec<String>) -> Self {
        StopFilter {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            ..Default::default()
        }
    }

    /// Everything emitted so far.
    pub fn into_emitted(self) -> String {
        self.emitted
    }

    /// Whether there are no stop strings.
    pub fn is_empty(&self) -> bool {
        self.stops.is_empty()
    }

    /// Returns the text to emit now (if any) and whether to go on.
    pub fn push(&mut self, chunk: String) -> (Option<String>, bool) {
        if self.stopped {
            return (None, false);
        }
        if self.stops.is_empty() {
            self.emitted.push_str(&chunk);
            return (Some(chunk), true);
        }
        self.held.push_str(&chunk);
        if let Some(cut) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            self.stopped = true;
            self.held.truncate(cut);
            let out = std::mem::take(&mut self.held);
            return (self.emit(out), false);
        }
        // Hold back the longest tail that is a prefix of a stop string.
        let keep = self
            .stops
            .iter()
            .map(|s| longest_prefix_suffix(&self.held, s))
            .max()
            .unwrap_or(0);
        let split = self.held.len() - keep;
        let rest = self.held.split_off(split);
        let out = std::mem::replace(&mut self.held, rest);
        (self.emit(out), true)
    }

    pub fn finish(&mut self) -> Option<String> {
        if self.stopped {
            return None;
        }
        let out = std::mem::take(&mut self.held);
        self.emit(out)
    }

    fn emit(&mut self, out: String) -> Option<String> {
        if out.is_empty() {
            return None;
        }
        self.emitted.push_str(&out);
        Some(out)
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop`.
fn longest_prefix_suffix(text: &str, stop: &str) -> usize {
    let max = stop.len().saturating_sub(1).min(text.len());
    (1..=max)
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n)
                && stop.is_char_boundary(n)
                && text.ends_with(&stop[..n])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], chunks: &[&str]) -> (Vec<String>, String) {
        let mut f = StopFilter::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = Vec::new();
        for c in chunks {
            let (o, more) = f.push(c.to_string());
            out.extend(o);
            if !more {
                break;
            }
        }
        out.extend(f.finish());
        (out, f.emitted)
    }

    #[test]
    fn a_stop_string_split_across_chunks_cuts_the_answer() {
        let (out, all) = run(&["User:"], &["Hello", " there.\nUs", "er: hi", " again"]);
        assert_eq!(all, "Hello there.\n");
        assert_eq!(out.concat(), all);
        // "Us" was held back, not sent and then taken back.
        assert_eq!(out, ["Hello", " there.\n"]);
    }

    #[test]
    fn a_false_start_is_released_when_it_stops_matching() {
        let (out, all) = run(&["User:"], &["a U", "s", "e", "d car"]);
        assert_eq!(all, "a Used car");
        assert_eq!(out, ["a ", "Used car"]);
    }

    #[test]
    fn without_stops_chunks_pass_unchanged_and_held_text_flushes_at_the_end() {
        let (out, _) = run(&[], &["a", "b"]);
        assert_eq!(out, ["a", "b"]);
        let (out, all) = run(&["STOP"], &["end ST"]);
        assert_eq!(
            (out.concat(), all.as_str()),
            ("end ST".to_string(), "end ST")
        );
    }

    #[test]
    fn multibyte_text_is_never_split_inside_a_character() {
        let (out, all) = run(&["éx"], &["caf", "é", "é", "x!"]);
        assert_eq!(all, "café");
        assert_eq!(out.concat(), "café");
    }
}

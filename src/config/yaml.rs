//! Parsing YAML with bounds: a file's size and its nesting depth are checked
//! before the parser sees it (the parser's time grows with the square of the
//! depth: 100,000 nested levels took 39 s).

use std::path::Path;

use serde::de::DeserializeOwned;

use super::ConfigError;

/// The deepest nesting a config file may have (real configs stay under 12).
pub const MAX_DEPTH: usize = 64;

/// The largest config file, in bytes.
pub const MAX_FILE_BYTES: usize = 4 << 20;

/// The nesting depth of `text`: flow collections (`[`, `{`) outside quotes
/// and comments, plus block levels (each deeper indentation). A linear
/// scan, so it is cheap on any input.
fn depth(text: &str) -> usize {
    let mut deepest = 0;
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    // Inside a block scalar (`key: |`): its lines are text, not structure.
    let mut scalar_above: Option<usize> = None;
    for line in text.lines() {
        let content = line.trim_start();
        let indent = line.len() - content.len();
        if let Some(owner) = scalar_above {
            if content.is_empty() || indent > owner {
                continue;
            }
            scalar_above = None;
        }
        if flow == 0 && !content.is_empty() && !content.starts_with('#') {
            // A sequence item opens a level of its own at its dash.
            while indents.last().is_some_and(|&i| i > indent) {
                indents.pop();
            }
            if indents.last().is_none_or(|&i| i < indent) {
                indents.push(indent);
            }
            let dashes = content
                .split_inclusive(' ')
                .take_while(|w| w.trim_end() == "-")
                .count();
            deepest = deepest.max(indents.len() + dashes);
        }
        let (mut single, mut double) = (false, false);
        for c in content.chars() {
            match c {
                '\'' if !double => single = !single,
                '"' if !single => double = !double,
                '#' if !single && !double => break,
                '[' | '{' if !single && !double => {
                    flow += 1;
                    deepest = deepest.max(indents.len() + flow);
                }
                ']' | '}' if !single && !double => flow = flow.saturating_sub(1),
                _ => {}
            }
        }
        let head = content.split(" #").next().unwrap_or_default().trim_end();
        let opens_scalar = head
            .rsplit_once(' ')
            .map_or(head, |(_, last)| last)
            .trim_start_matches(':')
            .starts_with(['|', '>'])
            && (head.contains(": ") || head.starts_with("- ") || head.ends_with(':'));
        if flow == 0 && opens_scalar {
            scalar_above = Some(indent);
        }
    }
    deepest
}

/// Parses one YAML document of `file` into `T`, within the bounds above.
pub fn parse<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, ConfigError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(ConfigError::Parse {
            file: file.to_path_buf(),
            message: format!("is larger than {MAX_FILE_BYTES} bytes"),
        });
    }
    let d = depth(text);
    if d > MAX_DEPTH {
        return Err(ConfigError::Parse {
            file: file.to_path_buf(),
            message: format!("nests {d} levels deep; at most {MAX_DEPTH} are allowed"),
        });
    }
    serde_yaml::from_str(text).map_err(|e| ConfigError::Parse {
        file: file.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_block_and_flow_nesting() {
        assert_eq!(depth("a: 1\nb: 2\n"), 1);
        assert_eq!(depth("a:\n  b:\n    c: [1, {d: 2}]\n"), 5);
        assert_eq!(depth("list:\n  - a\n  - - b\n"), 4);
        assert_eq!(depth("s: \"[[[[not nesting\" # [[[\n"), 1);
        // A block scalar's lines are text, whatever brackets or indents they have.
        let prompt = "prompts:\n  - task: x\n    content: |\n      Answer [Yes or [No\n          indented\n    max_tokens: 3\n";
        assert_eq!(depth(prompt), 3);
    }

    #[test]
    fn deep_documents_are_refused_fast() {
        let start = std::time::Instant::now();
        let deep = format!("a: {}{}", "[".repeat(1_000_000), "]".repeat(1_000_000));
        let e = parse::<serde_yaml::Value>(Path::new("c.yml"), &deep).unwrap_err();
        assert!(e.to_string().contains("at most 64"), "{e}");
        let deep: String = (0..200)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        assert!(parse::<serde_yaml::Value>(Path::new("c.yml"), &deep).is_err());
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }
}

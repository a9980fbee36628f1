//! Markdown documents into topic chunks, as NeMo splits `kb/*.md`
//! (`split_markdown_in_topic_chunks`): every heading starts a chunk whose
//! title joins the headings above it (`Title - Section - Subsection`); a
//! chunk grown past 400 characters ends at the next blank line; a leading
//! code block of YAML meta data is skipped.

/// One chunk of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub title: String,
    pub body: String,
}

/// NeMo's chunk size.
pub const MAX_CHUNK: usize = 400;

/// Splits `content` into chunks of about `max` characters; an error for a
/// meta-data block that never closes.
pub fn split(content: &str, max: usize) -> Result<Vec<Chunk>, String> {
    let mut lines: Vec<&str> = content.trim().split('\n').collect();
    if lines.first().is_some_and(|l| l.starts_with("```")) {
        let end = lines[1..]
            .iter()
            .position(|l| l.starts_with("```"))
            .ok_or("the meta-data block (```) at the top never closes")?;
        lines.drain(..end + 2);
    }
    let mut chunks = Vec::new();
    let mut titles: Vec<String> = Vec::new();
    let mut body: Vec<&str> = Vec::new();
    let mut size = 0;
    let mut record = |titles: &[String], body: &mut Vec<&str>, size: &mut usize| {
        let text = body.join("\n").trim().to_string();
        if !text.is_empty() {
            chunks.push(Chunk {
                title: titles.join(" - "),
                body: text,
            });
        }
        body.clear();
        *size = 0;
    };
    for line in lines {
        if line.starts_with('#') {
            if !body.is_empty() {
                record(&titles, &mut body, &mut size);
            }
            let level = line.chars().take_while(|c| *c == '#').count();
            titles.truncate(level - 1);
            titles.push(line[level..].trim().to_string());
        } else if line.trim().is_empty() {
            body.push("");
            if size > max {
                record(&titles, &mut body, &mut size);
            }
        } else {
            body.push(line);
            size += line.chars().count();
        }
    }
    if !body.is_empty() {
        record(&titles, &mut body, &mut size);
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_make_titles_and_long_sections_split_at_blank_lines() {
        let doc = "```\ntitle: Handbook\n```\n# Handbook\n\nIntro.\n## Leave\n### Sick\nFive days.\n\n## Pay\n".to_string()
            + &"x".repeat(401)
            + "\n\nMore pay.\n";
        let c = split(&doc, MAX_CHUNK).unwrap();
        let titles: Vec<&str> = c.iter().map(|c| c.title.as_str()).collect();
        assert_eq!(
            titles,
            [
                "Handbook",
                "Handbook - Leave - Sick",
                "Handbook - Pay",
                "Handbook - Pay"
            ]
        );
        assert_eq!(c[1].body, "Five days.");
        assert_eq!(c[3].body, "More pay.");
        assert!(
            split("```\nopen", MAX_CHUNK)
                .unwrap_err()
                .contains("never closes")
        );
    }
}

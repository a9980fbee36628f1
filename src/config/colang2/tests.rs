//! Reading Colang 2 guardrail configs.
use super::*;

fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

#[test]
fn rail_calls_read_as_nemos_library_flows_take_them() {
    let own = Vec::new();
    let c = |t: &str| call(t, "input_text", "input", &own);
    assert_eq!(
        c("content safety check input $model=\"content_safety\"").unwrap(),
        (
            "content safety check input".into(),
            args(&[("model", "content_safety")])
        )
    );
    assert_eq!(
        c("await mask sensitive data on input").unwrap(),
        ("mask sensitive data on input".into(), args(&[]))
    );
    assert_eq!(
        c("trend ai guard input $input_text").unwrap(),
        ("trend ai guard input".into(), args(&[]))
    );
    assert_eq!(
        c("clavata check for ($input_text, \"Toxicity\", [\"Hate Speech\"])").unwrap(),
        (
            "clavata check input".into(),
            args(&[("policy", "Toxicity"), ("labels", "[\"Hate Speech\"]")])
        )
    );
    assert_eq!(
        c("clavata check for ($input_text, 'Safety', [\"Children's Safety\"])").unwrap(),
        (
            "clavata check input".into(),
            args(&[("policy", "Safety"), ("labels", "[\"Children's Safety\"]")])
        )
    );
    assert!(
        c("ai defense inspect prompt $other")
            .unwrap_err()
            .contains("`$input_text`")
    );
    assert!(
        c("$ok = await check $input_text")
            .unwrap_err()
            .contains("not yet")
    );
    assert!(c("bot say \"no\"").unwrap_err().contains("not yet"));
    let own = vec!["check user utterance".to_string()];
    let e = call(
        "check user utterance $input_text",
        "input_text",
        "input",
        &own,
    )
    .unwrap_err();
    assert!(e.contains("a flow of this config"), "{e}");
}

#[test]
fn comments_and_docstrings_are_not_lines() {
    let err = |l: usize, m: String| ConfigError::invalid("x.co", format!("line {l}"), m);
    let text = "import core # the core\n\nflow main\n  \"\"\"Doc\n  more\"\"\"\n  activate llm continuation\n";
    let got: Vec<(usize, &str)> = lines(text, &mut Vec::new(), &err)
        .unwrap()
        .iter()
        .map(|l| (l.number, l.text))
        .collect();
    assert_eq!(
        got,
        [
            (1, "import core"),
            (3, "flow main"),
            (6, "activate llm continuation")
        ]
    );
    assert!(lines("flow x\n  \"\"\"open\n", &mut Vec::new(), &err).is_err());
}

proptest::proptest! {
    /// Whatever the Colang 2 text, reading it gives rails or an error; it never panics.
    #[test]
    fn reading_never_panics(text in "(import [a-z.]{0,12}\n|flow (main|input rails \\$input_text|output rails \\$output_text|[a-z ]{0,8})\n|@active\n|  (await |activate )?[a-z ]{0,10}( \\$[a-z_]{0,6}(=\"?[a-z]{0,4}\"?)?| \\(\\$input_text, \"[a-z]{0,3}\", \\[\"[a-z ']{0,4}\"\\]\\))?\n|  \"\"\"[a-z ]{0,5}\n|#[a-z]{0,3}\n|\t\n|[a-z\"$()\\[\\],# ]{0,10}\n){0,20}") {
        let mut config = crate::config::load::from_yaml("c", "models: []\n").unwrap();
        let source = SourceFile { path: "main.co".into(), text };
        let _ = apply(&mut config, &[source]);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let mut config = crate::config::load::from_yaml("c", "models: []\n").unwrap();
        let _ = apply(&mut config, &[SourceFile { path: "main.co".into(), text }]);
    }
}

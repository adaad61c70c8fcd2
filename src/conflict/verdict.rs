//! A panel member's verdict: what it is, how a member is asked for one, and how one is read
//! back out of an answer.
//!
//! The reference guide asks an agent that settles a question to give its reasons: why this,
//! which alternatives it weighed and why not, and what trade-offs it accepts. The verdict
//! schema carries exactly that, plus the evidence it rests on and a confidence, so the
//! ladder's evidence step and the operator can compare answers side by side.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One member's answer to a panel question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The answer; one of the panel's options (as written there) when it has options.
    pub decision: String,
    pub rationale: String,
    /// Alternatives considered, each with why not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alternatives: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tradeoffs: Vec<String>,
    /// Concrete references: files, figures, documents.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
    /// 0 to 1.
    pub confidence: f64,
}

/// Why an answer holds no usable verdict. The text is shown to the member when it is asked
/// again, so it says what to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VerdictError {
    #[error("the answer is empty")]
    Empty,
    #[error(
        "no JSON verdict found: end the answer with a ```json block or a JSON object on the \
         last line"
    )]
    NotFound,
    #[error("the verdict is not valid JSON: {0}")]
    BadJson(String),
    #[error("the verdict is not a JSON object")]
    NotAnObject,
    #[error("the verdict has no `{0}`")]
    Missing(&'static str),
    #[error("`{field}` must be {expected}")]
    WrongType { field: &'static str, expected: &'static str },
    #[error("`confidence` is {0}, not between 0 and 1")]
    Confidence(f64),
    #[error("`decision` \"{decision}\" is not one of the options: {}", .options.join(" | "))]
    NotAnOption { decision: String, options: Vec<String> },
}

/// The verdict ending `answer`: the last fenced `json` block, else the last non-blank line,
/// else the whole answer when it is one JSON object. With `options`, the decision must name
/// one of them (compared by [`normalise`]) and is returned as the option is written.
///
/// A pure function of its input that never panics, whatever the text.
pub fn parse_verdict(answer: &str, options: &[String]) -> Result<Verdict, VerdictError> {
    let answer = answer.trim();
    if answer.is_empty() {
        return Err(VerdictError::Empty);
    }
    let candidate = last_fenced_json(answer)
        .or_else(|| answer.lines().rev().map(str::trim).find(|l| !l.is_empty()))
        .filter(|text| text.starts_with('{'))
        .or_else(|| answer.starts_with('{').then_some(answer))
        .ok_or(VerdictError::NotFound)?;
    let value: Value =
        serde_json::from_str(candidate).map_err(|e| VerdictError::BadJson(e.to_string()))?;
    let Value::Object(fields) = value else { return Err(VerdictError::NotAnObject) };

    let decision = text_field(&fields, "decision")?
        .filter(|d| !d.trim().is_empty())
        .ok_or(VerdictError::Missing("decision"))?;
    let rationale = text_field(&fields, "rationale")?
        .filter(|r| !r.trim().is_empty())
        .ok_or(VerdictError::Missing("rationale"))?;
    let confidence = match fields.get("confidence") {
        None | Some(Value::Null) => return Err(VerdictError::Missing("confidence")),
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(_) => {
            return Err(VerdictError::WrongType { field: "confidence", expected: "a number" });
        }
    };
    if !(0.0..=1.0).contains(&confidence) {
        return Err(VerdictError::Confidence(confidence));
    }
    let decision = if options.is_empty() {
        decision.trim().to_owned()
    } else {
        let wanted = normalise(&decision);
        options.iter().find(|o| normalise(o) == wanted).cloned().ok_or_else(|| {
            VerdictError::NotAnOption { decision: decision.clone(), options: options.to_vec() }
        })?
    };
    Ok(Verdict {
        decision,
        rationale: rationale.trim().to_owned(),
        alternatives: list_field(&fields, "alternatives")?,
        tradeoffs: list_field(&fields, "tradeoffs")?,
        evidence: list_field(&fields, "evidence")?,
        confidence,
    })
}

/// How decisions are compared: case, spacing, quotes and a final full stop do not count.
pub fn normalise(text: &str) -> String {
    let trimmed = text.trim().trim_matches(|c| matches!(c, '"' | '\'' | '`')).trim();
    let trimmed = trimmed.trim_end_matches(['.', '!']);
    trimmed.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// The body of the last fenced `json` block (or a bare fence holding an object).
fn last_fenced_json(answer: &str) -> Option<&str> {
    let mut found = None;
    let mut rest = answer;
    while let Some(open) = rest.find("```") {
        let after_ticks = &rest[open + 3..];
        let Some(line_end) = after_ticks.find('\n') else { break };
        let info = after_ticks[..line_end].trim();
        let body_and_more = &after_ticks[line_end + 1..];
        let Some(close) = body_and_more.find("```") else { break };
        let body = body_and_more[..close].trim();
        if info.eq_ignore_ascii_case("json") || (info.is_empty() && body.starts_with('{')) {
            found = Some(body);
        }
        rest = &body_and_more[close + 3..];
    }
    found
}

fn text_field(
    fields: &serde_json::Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, VerdictError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(VerdictError::WrongType { field: name, expected: "a string" }),
    }
}

/// A list of strings; a single string counts as a list of one, other items as their JSON.
fn list_field(
    fields: &serde_json::Map<String, Value>,
    name: &'static str,
) -> Result<Vec<String>, VerdictError> {
    let item = |v: &Value| match v {
        Value::String(s) => s.trim().to_owned(),
        other => other.to_string(),
    };
    match fields.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.trim().to_owned()]),
        Some(Value::Array(items)) => Ok(items.iter().map(item).filter(|s| !s.is_empty()).collect()),
        Some(_) => Err(VerdictError::WrongType { field: name, expected: "a list of strings" }),
    }
}

/// The schema as members are shown it.
pub const SCHEMA: &str = r#"{"decision": "<your answer>", "rationale": "<why this answer>", "alternatives": ["<option considered>: <why not>"], "tradeoffs": ["<what this costs>"], "evidence": ["<file, figure or reference>"], "confidence": 0.0}"#;

/// What a panel member is asked: the question, the options, the schema, and the reasons the
/// reference guide wants (why, alternatives and why not, trade-offs).
pub fn member_prompt(question: &str, options: &[String], panel: &[String], agent: &str) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "{}", question.trim());
    let _ = writeln!(
        text,
        "\nYou ({agent}) are one of {} panel members ({}) answering this question independently.",
        panel.len(),
        panel.join(", ")
    );
    if !options.is_empty() {
        let _ = writeln!(text, "Choose exactly one of these options, written as here:");
        for (i, option) in options.iter().enumerate() {
            let _ = writeln!(text, "  {}. {option}", i + 1);
        }
    }
    text.push_str(
        "\nGive your reasons: why this answer, which alternatives you considered and why not, \
         which trade-offs it makes, and the concrete evidence (files, figures, references) it \
         rests on. Say how confident you are, from 0 to 1.\n\
         End your answer with your verdict as one JSON object, in a ```json block or alone on \
         the last line:\n",
    );
    text.push_str(SCHEMA);
    text.push('\n');
    text
}

/// The member is asked once more after an unusable verdict.
pub fn reask_prompt(first_prompt: &str, problem: &VerdictError) -> String {
    format!(
        "{first_prompt}\nYour previous answer could not be used: {problem}. Answer again and end \
         with the JSON verdict exactly as shown.\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> Vec<String> {
        vec!["server-side sessions".into(), "signed JWT cookies".into()]
    }

    const FULL: &str = r#"{"decision": "Server-side sessions", "rationale": "revocable", "alternatives": ["JWT: cannot revoke"], "tradeoffs": "one lookup per request", "evidence": ["src/auth.rs:40"], "confidence": 0.8}"#;

    #[rstest::rstest]
    #[case::last_line(format!("I looked at it.\n{FULL}"), Ok("server-side sessions"))]
    #[case::fenced(format!("Reasons.\n```json\n{FULL}\n```\nThanks."), Ok("server-side sessions"))]
    #[case::bare_fence(format!("```\n{FULL}\n```"), Ok("server-side sessions"))]
    #[case::last_fence_wins(
        "```json\n{\"decision\":\"signed JWT cookies\",\"rationale\":\"a\",\"confidence\":0.1}\n```\n```json\n{\"decision\":\"server-side sessions\",\"rationale\":\"b\",\"confidence\":0.2}\n```".to_owned(),
        Ok("server-side sessions")
    )]
    #[case::multi_line_object("{\n \"decision\": \"signed jwt cookies.\",\n \"rationale\": \"stateless\",\n \"confidence\": 1\n}".to_owned(), Ok("signed JWT cookies"))]
    #[case::empty("  \n ".to_owned(), Err("the answer is empty"))]
    #[case::prose("I prefer sessions.".to_owned(), Err("no JSON verdict"))]
    #[case::bad_json("{\"decision\": ".to_owned(), Err("not valid JSON"))]
    #[case::array("[1, 2]".to_owned(), Err("no JSON verdict"))]
    #[case::no_decision("{\"rationale\":\"x\",\"confidence\":0.5}".to_owned(), Err("no `decision`"))]
    #[case::no_rationale("{\"decision\":\"signed JWT cookies\",\"confidence\":0.5}".to_owned(), Err("no `rationale`"))]
    #[case::no_confidence("{\"decision\":\"signed JWT cookies\",\"rationale\":\"x\"}".to_owned(), Err("no `confidence`"))]
    #[case::confidence_high("{\"decision\":\"signed JWT cookies\",\"rationale\":\"x\",\"confidence\":80}".to_owned(), Err("not between 0 and 1"))]
    #[case::confidence_text("{\"decision\":\"signed JWT cookies\",\"rationale\":\"x\",\"confidence\":\"high\"}".to_owned(), Err("must be a number"))]
    #[case::not_an_option("{\"decision\":\"paseto\",\"rationale\":\"x\",\"confidence\":0.5}".to_owned(), Err("not one of the options"))]
    #[case::decision_number("{\"decision\":3,\"rationale\":\"x\",\"confidence\":0.5}".to_owned(), Err("must be a string"))]
    #[case::evidence_object("{\"decision\":\"signed JWT cookies\",\"rationale\":\"x\",\"confidence\":0.5,\"evidence\":{\"a\":1}}".to_owned(), Err("must be a list"))]
    #[case::unclosed_fence("```json\n{\"decision\"".to_owned(), Err("not valid JSON"))]
    fn verdicts_are_read_or_refused(#[case] answer: String, #[case] expected: Result<&str, &str>) {
        match (parse_verdict(&answer, &options()), expected) {
            (Ok(verdict), Ok(decision)) => assert_eq!(verdict.decision, decision),
            (Err(error), Err(message)) => {
                assert!(error.to_string().contains(message), "{error} lacks {message}");
            }
            (got, want) => panic!("{answer:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn every_field_is_kept() {
        let verdict = parse_verdict(FULL, &options()).expect("parses");
        assert_eq!(verdict.rationale, "revocable");
        assert_eq!(verdict.alternatives, ["JWT: cannot revoke"]);
        assert_eq!(verdict.tradeoffs, ["one lookup per request"]);
        assert_eq!(verdict.evidence, ["src/auth.rs:40"]);
        assert!((verdict.confidence - 0.8).abs() < f64::EPSILON);
    }

    #[test]
    fn without_options_any_decision_counts() {
        let verdict =
            parse_verdict(r#"{"decision":" Use Redis ","rationale":"x","confidence":0}"#, &[])
                .expect("parses");
        assert_eq!(verdict.decision, "Use Redis");
    }

    #[test]
    fn never_panics_on_odd_text() {
        let odd = [
            "```",
            "```json",
            "```json\n",
            "```json\n```",
            "{",
            "}",
            "{}",
            "\u{0}{\"a\"",
            "```\n{",
            "é```json\nü\n```",
            "{\"decision\":\"a\",\"rationale\":\"b\",\"confidence\":1e400}",
            "{\"decision\":\"a\",\"rationale\":\"b\",\"confidence\":-0.0}",
        ];
        for text in odd {
            let _ = parse_verdict(text, &options());
            let _ = parse_verdict(text, &[]);
        }
        // Every prefix of a real answer, cut at any character.
        let answer = format!("Reasons: ü.\n```json\n{FULL}\n```\n");
        for (i, _) in answer.char_indices() {
            let _ = parse_verdict(&answer[..i], &options());
        }
    }

    #[test]
    fn normalising_ignores_case_space_quotes_and_full_stop() {
        assert_eq!(normalise("  \"Signed   JWT Cookies.\" "), "signed jwt cookies");
        assert_ne!(normalise("sessions"), normalise("cookies"));
    }

    #[test]
    fn the_prompt_carries_question_options_schema_and_reasons() {
        let text =
            member_prompt("How to store sessions?", &options(), &["a".into(), "b".into()], "a");
        for part in [
            "How to store sessions?",
            "1. server-side sessions",
            "2. signed JWT cookies",
            "alternatives you considered and why not",
            "trade-offs",
            "\"confidence\"",
        ] {
            assert!(text.contains(part), "{part} missing from\n{text}");
        }
    }
}

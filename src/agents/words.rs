//! Turning text into comparable words for selection.
//!
//! Words are lowercase runs of letters and digits (`node.js` → `node`, `js`; a literal `\n`
//! as Claude Code files write it separates words). "Stemming-lite" folds English plurals
//! only (`apis` → `api`, `policies` → `policy`, `classes` → `class`). It is applied to both
//! sides, so a word that merely ends in `s` (`redis` → `redi`) still matches itself; match
//! lists show the words as written in the task. Other endings are left alone and handled by
//! the prefix rule of partial trigger matches. Stop words are
//! common English words plus the boilerplate of Claude Code descriptions (`use`, `agent`,
//! `example`, `user`, `assistant`, ...), which would otherwise match every task.

/// Words ignored for description overlap, category and partial matches.
const STOP_WORDS: &[&str] = &[
    "a",
    "about",
    "after",
    "all",
    "also",
    "an",
    "and",
    "any",
    "are",
    "as",
    "assistant",
    "at",
    "be",
    "been",
    "before",
    "being",
    "both",
    "but",
    "by",
    "can",
    "commentary",
    "context",
    "could",
    "did",
    "do",
    "does",
    "each",
    "example",
    "examples",
    "expert",
    "for",
    "from",
    "get",
    "had",
    "has",
    "have",
    "help",
    "helps",
    "her",
    "here",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "just",
    "let",
    "like",
    "make",
    "me",
    "more",
    "most",
    "my",
    "need",
    "needs",
    "new",
    "no",
    "not",
    "of",
    "on",
    "one",
    "only",
    "or",
    "other",
    "our",
    "out",
    "over",
    "proactively",
    "should",
    "so",
    "some",
    "such",
    "task",
    "tasks",
    "than",
    "that",
    "the",
    "their",
    "them",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "up",
    "us",
    "use",
    "used",
    "user",
    "uses",
    "using",
    "very",
    "via",
    "want",
    "was",
    "we",
    "well",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "will",
    "with",
    "within",
    "without",
    "would",
    "you",
    "your",
    "agent",
    "agents",
];

/// Role words that say nothing about what an agent is for; dropped from names when names
/// stand in for triggers.
const ROLE_WORDS: &[&str] = &[
    "agent",
    "assistant",
    "dev",
    "developer",
    "engineer",
    "expert",
    "guru",
    "master",
    "pro",
    "specialist",
];

/// One word as written and as compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// Lowercase, as written.
    pub lower: String,
    /// Lowercase, plural folded.
    pub stem: String,
    /// A stop word: kept for phrase matches, skipped for single-word matches.
    pub is_stop: bool,
}

/// Split `text` into words.
pub fn words(text: &str) -> Vec<Word> {
    let text = text.replace("\\n", " ");
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|raw| !raw.is_empty())
        .map(|raw| {
            let lower = raw.to_lowercase();
            let is_stop = STOP_WORDS.contains(&lower.as_str());
            Word { stem: stem(&lower), lower, is_stop }
        })
        .collect()
}

/// The stems of `text` that carry meaning: no stop words, at least two characters.
pub fn key_stems(text: &str) -> Vec<String> {
    words(text)
        .into_iter()
        .filter(|w| !w.is_stop && w.stem.chars().count() >= 2)
        .map(|w| w.stem)
        .collect()
}

/// Name words that can stand in for triggers: `kubernetes-specialist` → `kubernetes`,
/// `powershell-5.1-expert` → `powershell`.
pub fn name_words(name: &str) -> Vec<String> {
    name.split(['-', '.'])
        .filter(|word| !word.is_empty() && !word.chars().all(|c| c.is_ascii_digit()))
        .filter(|word| !ROLE_WORDS.contains(word))
        .map(str::to_owned)
        .collect()
}

/// Fold English plurals.
pub fn stem(word: &str) -> String {
    let len = word.chars().count();
    if len >= 5 && word.ends_with("ies") {
        return format!("{}y", &word[..word.len() - 3]);
    }
    if len >= 5 && ["sses", "xes", "ches", "shes"].iter().any(|end| word.ends_with(end)) {
        return word[..word.len() - 2].to_owned();
    }
    if len >= 4 && word.ends_with('s') && !word.ends_with("ss") {
        return word[..word.len() - 1].to_owned();
    }
    word.to_owned()
}

/// Whether `phrase` occurs as consecutive whole words in `text`.
pub fn contains_phrase(text: &[Word], phrase: &[String]) -> bool {
    !phrase.is_empty()
        && text
            .windows(phrase.len())
            .any(|window| window.iter().zip(phrase).all(|(w, p)| w.stem == *p))
}

/// Same word, or one a prefix of the other when both have at least four characters
/// (`deploy`/`deployment`, `test`/`testing`).
pub fn is_partial_match(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    short.len() >= 4 && long.starts_with(short)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stems(text: &str) -> Vec<String> {
        words(text).into_iter().map(|w| w.stem).collect()
    }

    #[test]
    fn splitting_and_plurals() {
        assert_eq!(stems("Build REST APIs, node.js"), ["build", "rest", "api", "node", "js"]);
        assert_eq!(
            stems("policies classes boxes redis status kubernetes"),
            ["policy", "class", "box", "redi", "statu", "kubernete"]
        );
        assert_eq!(stems("Examples:\\n\\n<example>\\nContext"), ["example", "example", "context"]);
        assert_eq!(key_stems("Use this agent when the user needs a REST API"), ["rest", "api"]);
    }

    #[test]
    fn names_as_triggers() {
        assert_eq!(name_words("kubernetes-specialist"), ["kubernetes"]);
        assert_eq!(name_words("powershell-5.1-expert"), ["powershell"]);
        assert_eq!(name_words("backend-architect"), ["backend", "architect"]);
    }

    #[test]
    fn phrases_and_prefixes() {
        let text = words("set up a message queue for orders");
        assert!(contains_phrase(&text, &["message".into(), "queue".into()]));
        assert!(!contains_phrase(&text, &["queue".into(), "message".into()]));
        assert!(is_partial_match("deploy", "deployment"));
        assert!(!is_partial_match("api", "apiary"));
    }
}

//! Parsing agent definitions: the public corpus, our fixtures, hostile input, and the
//! `flightdeck agents` commands through the real binary.

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use flightdeck::agents::{AgentError, Registry, read_definition};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/agents")
}

fn markdown_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|entry| entry.unwrap().into_path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    files.sort();
    files
}

/// Whether the file's frontmatter has `name:` and `description:` lines.
fn has_name_and_description(text: &str) -> bool {
    let Some(rest) = text.strip_prefix("---\n") else { return false };
    let frontmatter = rest.split("\n---").next().unwrap_or("");
    let has = |key: &str| frontmatter.lines().any(|line| line.starts_with(key));
    has("name:") && has("description:")
}

/// The public corpus of agent files, from `../shared` beside the checkout. `None` (the test
/// skips, and says so on the terminal) only when there is no `../shared` at all, as in a
/// checkout of this repository alone; when `../shared` is there, a missing or unreadable
/// corpus fails the test instead of passing it silently.
fn corpus() -> Option<PathBuf> {
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = corpus_beside(checkout);
    if corpus.is_none() {
        // Straight to stderr: libtest captures `eprintln!`, so a skip would go unseen.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED every_corpus_file_with_name_and_description_parses: no {} in this checkout",
            checkout.join("../shared").display()
        );
    }
    corpus
}

fn corpus_beside(checkout: &Path) -> Option<PathBuf> {
    let shared = checkout.join("../shared");
    if !shared.exists() {
        return None;
    }
    let corpus = shared.join("corpus/agents");
    if let Err(error) = std::fs::read_dir(&corpus) {
        panic!(
            "{} is present but its corpus {} cannot be read: {error}",
            shared.display(),
            corpus.display()
        );
    }
    Some(corpus)
}

#[test]
fn the_corpus_is_skipped_only_without_shared() {
    let root = tempfile::tempdir().unwrap();
    let checkout = root.path().join("flightdeck");
    std::fs::create_dir(&checkout).unwrap();
    assert_eq!(corpus_beside(&checkout), None, "no ../shared: skipped");

    std::fs::create_dir(root.path().join("shared")).unwrap();
    let missing = std::panic::catch_unwind(|| corpus_beside(&checkout));
    assert!(missing.is_err(), "../shared without its corpus must fail");

    std::fs::create_dir_all(root.path().join("shared/corpus/agents")).unwrap();
    let found = corpus_beside(&checkout).unwrap();
    assert!(found.ends_with("shared/corpus/agents"), "{}", found.display());
}

#[test]
fn every_corpus_file_with_name_and_description_parses() {
    let Some(corpus) = corpus() else { return };
    let files = markdown_files(&corpus);
    assert!(files.len() >= 390, "expected the ~400 corpus files, found {}", files.len());
    let mut definitions = 0;
    let mut line_by_line = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let result = read_definition(file, None);
        if has_name_and_description(&text) {
            let def =
                result.unwrap_or_else(|failure| panic!("{}: {:?}", file.display(), failure.errors));
            assert!(
                !def.description.is_empty() && !def.system_prompt.is_empty(),
                "{}",
                file.display()
            );
            definitions += 1;
            line_by_line +=
                usize::from(def.warnings.iter().any(|w| w.message.contains("not strict YAML")));
        } else {
            let failure =
                result.expect_err("a file without name and description is not a definition");
            assert!(
                matches!(failure.errors[0], AgentError::NoFrontmatter { .. }),
                "{}",
                file.display()
            );
        }
    }
    assert!(definitions >= 385, "{definitions} definitions");
    // The corpus README counts 40 files whose description is not strict YAML.
    assert_eq!(line_by_line, 40);

    // As one pool, the only errors are repeated names (wshobson plugins) and the files
    // without frontmatter.
    let registry = Registry::load(&corpus);
    for problem in registry.problems() {
        for error in &problem.errors {
            assert!(
                matches!(
                    error,
                    AgentError::DuplicateName { .. } | AgentError::NoFrontmatter { .. }
                ),
                "{error}"
            );
        }
    }
    assert_eq!(registry.scanned_files(), files.len());
}

#[test]
fn fixture_pool_loads_every_shape() {
    let dir = fixtures().join("valid");
    let registry = Registry::load(&dir);
    assert!(registry.problems().is_empty(), "{:?}", registry.problems());
    let names: Vec<String> = registry.definitions().iter().map(|d| d.name.to_string()).collect();
    assert_eq!(
        names,
        ["api-gatekeeper", "meeting-summarizer", "release-notes-scribe", "shell-7.4-expert"]
    );

    let gatekeeper = registry.get("api-gatekeeper").unwrap();
    assert_eq!(gatekeeper.tier, 1, "tier from the tier1-core folder");
    assert_eq!(gatekeeper.triggers.len(), 6);
    assert_eq!(gatekeeper.max_instances, 2);
    assert_eq!(gatekeeper.version.as_deref(), Some("2.1"));
    assert!(gatekeeper.system_prompt.contains("\n---\n\n## Checklist"), "rules stay in the body");
    assert!(gatekeeper.system_prompt.ends_with("Report findings as a numbered list."));

    let shell = registry.get("shell-7.4-expert").unwrap();
    assert_eq!(shell.tier, 2);
    assert_eq!(shell.tools, ["Read", "Write", "Edit", "Bash", "Glob", "Grep"]);
    assert_eq!(shell.max_instances, 3);

    let scribe = registry.get("release-notes-scribe").unwrap();
    assert_eq!(scribe.tier, 3);
    assert_eq!(
        scribe.description,
        "Turns merged pull requests into release notes grouped by feature, fix and breaking change."
    );
    assert_eq!(scribe.tools.last().map(String::as_str), Some("mcp__tracker__list_merged"));

    let summarizer = registry.get("meeting-summarizer").unwrap();
    assert_eq!(summarizer.tier, 2, "no tier folder: default 2");
    assert_eq!(summarizer.color.as_deref(), Some("teal"));
    assert_eq!(summarizer.tools, ["Read", "Write", "WebFetch"]);
    assert!(
        summarizer
            .description
            .starts_with("Use this agent when a meeting transcript needs a summary: decisions")
    );
    assert!(
        summarizer
            .description
            .contains("\n<example>\nContext: A long planning call just ended.\nuser: \"")
    );
    assert!(summarizer.description.ends_with("</example>"));
    assert!(summarizer.system_prompt.ends_with("- **Owners**: name: task"));
    let warnings: Vec<String> = summarizer.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].ends_with(
            "meeting-summarizer.md:3: description: frontmatter is not strict YAML (mapping values are not allowed in this context); read line by line, where only a known key at the start of a line begins a field"
        ),
        "{warnings:?}"
    );
}

#[test]
fn invalid_pool_names_file_line_and_field() {
    let dir = fixtures().join("invalid");
    let registry = Registry::load(&dir);
    let errors: Vec<String> = registry
        .problems()
        .iter()
        .flat_map(|p| {
            p.errors.iter().map(|e| e.to_string().replace(&format!("{}/", dir.display()), ""))
        })
        .collect();
    assert_eq!(
        errors,
        [
            "bad-name.md:3: name: \"Bad Name\" must be lowercase letters, digits, '-' or '.'",
            "dup-b.md:2: name: `twin` is also defined in dup-a.md:2; names must be unique in the pool",
            "empty-body.md:5: body: system prompt is empty; write it as markdown after the closing `---`",
            "notes.md:1: no frontmatter: an agent definition starts with a `---` line, then `name:` and `description:`",
            "self-fallback.md:4: fallback: `loopy` is this agent itself; name another agent",
            "self-fallback.md:5: tier: `5` must be 1, 2 or 3",
        ]
    );
    let ghost = registry.get("ghost-fallback").unwrap();
    let warnings: Vec<String> =
        ghost.warnings.iter().map(flightdeck::agents::Warning::without_file).collect();
    assert_eq!(
        warnings,
        [
            "line 4: fallback: `nobody-here` is not an agent in this pool",
            "line 5: tools: unknown tool `Teleport`; known are Claude Code tool names and mcp__*",
        ]
    );
    assert_eq!(registry.get("twin").unwrap().file, dir.join("dup-a.md"));
}

const GOOD: &str = "---\nname: survivor\ndescription: Still loads.\n---\nBody.\n";

/// A temp pool holding one good file, plus whatever the test adds.
fn pool_with_survivor() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("survivor.md"), GOOD).unwrap();
    dir
}

/// Load the pool and return the message of the single problem; the good file must load.
fn single_problem(dir: &Path) -> String {
    let registry = Registry::load(dir);
    assert!(registry.get("survivor").is_some(), "the rest of the pool loads");
    let problems = registry.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    problems[0].message()
}

#[test]
fn binary_file_is_an_error() {
    let dir = pool_with_survivor();
    std::fs::write(dir.path().join("blob.md"), [0x7f, b'E', b'L', b'F', 0xff, 0x00, 0x13]).unwrap();
    let message = single_problem(dir.path());
    assert!(message.contains("blob.md: not a text file: invalid UTF-8 at byte 4"), "{message}");
}

#[test]
fn ten_megabyte_file_is_refused() {
    let dir = pool_with_survivor();
    let mut big = String::from("---\nname: big\ndescription: huge\n---\n");
    big.push_str(&"x".repeat(10 * 1024 * 1024));
    std::fs::write(dir.path().join("big.md"), big).unwrap();
    let message = single_problem(dir.path());
    assert!(
        message.contains(
            "big.md: file is 10485796 bytes; an agent definition may be at most 1048576 bytes"
        ),
        "{message}"
    );
}

#[test]
fn alias_bomb_is_refused() {
    let dir = pool_with_survivor();
    let mut text = String::from(
        "---\nname: lol\ndescription: laughs\nl0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for level in 1..12 {
        let refs = vec![format!("*l{}", level - 1); 10].join(", ");
        let _ = writeln!(text, "l{level}: &l{level} [{refs}]");
    }
    text.push_str("---\nBody.\n");
    std::fs::write(dir.path().join("lol.md"), text).unwrap();
    let message = single_problem(dir.path());
    assert!(message.contains("lol.md:"), "{message}");
    assert!(message.contains("frontmatter: YAML aliases expand too far (alias bomb)"), "{message}");
}

#[test]
fn huge_frontmatter_is_refused() {
    let dir = pool_with_survivor();
    let depth = 100_000;
    let text = format!(
        "---\nname: deep\ndescription: d\nx: {}{}\n---\nBody.\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    std::fs::write(dir.path().join("deep.md"), text).unwrap();
    let message = single_problem(dir.path());
    assert!(
        message.ends_with(
            "deep.md:2: frontmatter: 200030 bytes is too large; at most 65536 bytes are allowed"
        ),
        "{message}"
    );
}

#[test]
fn deeply_nested_yaml_is_refused() {
    let dir = pool_with_survivor();
    for depth in [200, 30_000] {
        let text = format!(
            "---\nname: deep\ndescription: d\nx: {}{}\n---\nBody.\n",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        std::fs::write(dir.path().join("deep.md"), text).unwrap();
        let message = single_problem(dir.path());
        assert!(
            message.ends_with("deep.md:4: frontmatter: YAML is nested too deeply"),
            "{message}"
        );
    }
}

#[test]
fn non_utf8_file_name_is_an_error() {
    let dir = pool_with_survivor();
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.md");
    std::fs::write(dir.path().join(name), GOOD.replace("survivor", "cafe")).unwrap();
    let message = single_problem(dir.path());
    assert!(message.contains("file name is not valid UTF-8; rename the file"), "{message}");
}

#[test]
fn symlink_loop_is_an_error() {
    let dir = pool_with_survivor();
    std::fs::create_dir(dir.path().join("nested")).unwrap();
    std::os::unix::fs::symlink(dir.path(), dir.path().join("nested/loop")).unwrap();
    let message = single_problem(dir.path());
    assert!(message.contains("nested/loop: symlink loop: points back to"), "{message}");
}

#[test]
fn fifo_is_not_read() {
    let dir = pool_with_survivor();
    let fifo = dir.path().join("pipe.md");
    let made = Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|status| status.success()) {
        eprintln!("skipped: mkfifo unavailable");
        return;
    }
    let message = single_problem(dir.path());
    assert!(message.contains("pipe.md: not a regular file"), "{message}");
}

#[test]
fn crlf_and_bom_load() {
    let dir = tempfile::tempdir().unwrap();
    let text = "\u{feff}---\r\nname: windows-user\r\ndescription: Saved on Windows.\r\ntools: Read, Grep\r\n---\r\nLine one.\r\n---\r\nLine two.\r\n";
    std::fs::write(dir.path().join("windows-user.md"), text).unwrap();
    let registry = Registry::load(dir.path());
    assert!(registry.problems().is_empty(), "{:?}", registry.problems());
    let def = registry.get("windows-user").unwrap();
    assert_eq!(def.tools, ["Read", "Grep"]);
    assert_eq!(def.system_prompt, "Line one.\n---\nLine two.");
}

#[test]
fn missing_folder_is_a_problem_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::load(&dir.path().join("absent"));
    assert!(registry.definitions().is_empty());
    assert_eq!(registry.problems().len(), 1);
    assert!(registry.problems()[0].message().contains("cannot read"), "{:?}", registry.problems());
}

// ---- the binary ----

fn flightdeck(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_flightdeck")).args(args).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn cli_validate_exit_codes_and_summary() {
    let valid = fixtures().join("valid");
    let (code, stdout, _) = flightdeck(&["agents", "validate", valid.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.ends_with("4 files, 4 loaded, 0 errors, 1 warning\n"), "{stdout}");
    assert!(stdout.starts_with("warning: "), "{stdout}");

    let invalid = fixtures().join("invalid");
    let (code, stdout, _) = flightdeck(&["agents", "validate", invalid.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("/bad-name.md:3: name: \"Bad Name\" must be lowercase"), "{stdout}");
    assert!(stdout.ends_with("7 files, 2 loaded, 6 errors, 2 warnings\n"), "{stdout}");
}

#[test]
fn cli_validate_json_shape() {
    let invalid = fixtures().join("invalid");
    let (code, stdout, _) =
        flightdeck(&["agents", "validate", invalid.to_str().unwrap(), "--json"]);
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["files"], 7);
    assert_eq!(report["loaded"], 2);
    assert_eq!(report["errors"], 6);
    assert_eq!(report["warnings"], 2);
    let first = &report["diagnostics"][0];
    assert_eq!(first["severity"], "error");
    assert!(first["file"].as_str().unwrap().ends_with("bad-name.md"));
    assert_eq!(first["line"], 3);
    assert_eq!(first["field"], "name");
    assert_eq!(first["message"], "\"Bad Name\" must be lowercase letters, digits, '-' or '.'");
    let agents = report["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 2);
    assert_eq!(agents[0]["agent"], "ghost-fallback");
}

/// A project folder whose agentpool is a copy of the valid fixtures.
fn project() -> tempfile::TempDir {
    let project = tempfile::tempdir().unwrap();
    let source = fixtures().join("valid");
    for file in markdown_files(&source) {
        let target = project.path().join("agentpool").join(file.strip_prefix(&source).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&file, target).unwrap();
    }
    project
}

#[test]
fn cli_list_and_explain() {
    let project = project();
    let dir = project.path().to_str().unwrap();
    let (code, stdout, _) = flightdeck(&["--project-dir", dir, "agents", "list"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    assert!(
        lines[0].starts_with(
            "ID                    NAME                  TIER  CATEGORY       TRIGGERS  FILE"
        ),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with(
            "api-gatekeeper        Api Gatekeeper           1  api                   6  "
        ),
        "{stdout}"
    );

    let (code, stdout, _) = flightdeck(&["--project-dir", dir, "agents", "list", "--json"]);
    assert_eq!(code, 0);
    let listed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listed["agents"][0]["id"], "api-gatekeeper");
    assert_eq!(listed["agents"][0]["triggers"], 6);

    let (code, stdout, _) = flightdeck(&[
        "--project-dir",
        dir,
        "agents",
        "explain",
        "review the openapi breaking change",
        "--json",
    ]);
    assert_eq!(code, 0, "{stdout}");
    let explained: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(explained["selected"], "api-gatekeeper");
    let best = &explained["ranked"][0];
    assert_eq!(best["breakdown"]["exact_triggers"]["points"], 6.0);
    assert_eq!(
        best["breakdown"]["exact_triggers"]["matched"],
        serde_json::json!(["breaking change", "openapi"])
    );

    let (code, stdout, _) =
        flightdeck(&["--project-dir", dir, "agents", "explain", "bake a sourdough loaf"]);
    assert_eq!(code, 1);
    assert!(stdout.contains("No agent matches"), "{stdout}");
}

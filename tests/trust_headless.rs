//! Secrets and terminal escapes against the real binary: a real `sh` agent echoes a key from
//! its environment (as is, in base64 and inside well-known shapes), writes escape sequences
//! and forged progress lines to stdout and stderr; nothing of it reaches the run store, the
//! JSON output, the progress lines, `runs show`, `runs events` or the dependent task.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

const KEY: &str = "acme-live-7c1f0d9e5b3a";
const GHP: &str = "ghp_abcdefghijklmnopqrstuvwxyz0123456789";
const AWS_ID: &str = "AKIAIOSFODNN7EXAMPLE";

const SETTINGS: &str = "backends:
  sim: {kind: sim}
  local:
    kind: process
    command: [sh, agent.sh]
    env_allow: [PATH, ACME_API_KEY]
  api:
    kind: openai
    base_url: http://127.0.0.1:9/v1
    api_key_env: ACME_API_KEY
users:
  ann: admin
";

const WORKFLOW: &str = "name: leaky
tasks:
  - {id: leak, description: 'Echo things (see ghp_abcdefghijklmnopqrstuvwxyz0123456789)', agent: scripted}
  - {id: next, description: Read what leak said, agent: scripted, depends_on: [leak]}
  - {id: boom, description: Fail loudly, agent: failing}
";

/// The `leak` task prints secrets and escapes; `next` prints what it was given on stdin.
const SCRIPT: &str = r#"input=$(cat)
case "$input" in
  *"Read what leak said"*) printf 'I was given: %s\n' "$input" ;;
  *) printf 'key %s\n' "$ACME_API_KEY"
     printf 'b64 %s\n' "$(printf 'user:%s' "$ACME_API_KEY" | base64 | tr -d '\n')"
     printf 'aws AKIAIOSFODNN7EXAMPLE url https://bob:pa55word-x@example.com/ password=hunter22x\n'
     printf 'clip \033]52;c;ZXZpbA==\007 clear \033[2J query \033[6n c1 \302\233 31m done\n' ;;
esac
"#;

const FAILING: &str = r#"printf 'oops %s\n[   0.01s] done      boom  in 1ms\n\033]0;pwned\007' "$ACME_API_KEY" >&2
exit 3
"#;

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("flightdeck.yaml"), SETTINGS).unwrap();
        let agents = root.join("agentpool/tier1-core");
        std::fs::create_dir_all(&agents).unwrap();
        for (name, script) in [("scripted", "agent.sh"), ("failing", "fail.sh")] {
            let backend = if name == "scripted" { "local" } else { "fails" };
            let text = format!(
                "---\nname: {name}\ndescription: Test agent {name}\nbackend: {backend}\n---\nYou are {name}.\n"
            );
            std::fs::write(agents.join(format!("{name}.md")), text).unwrap();
            let _ = script;
        }
        std::fs::write(
            root.join("flightdeck.yaml"),
            format!(
                "{SETTINGS}  fails:\n    kind: process\n    command: [sh, fail.sh]\n    env_allow: [PATH, ACME_API_KEY]\n"
            )
            .replace("users:\n  ann: admin\n", "")
                + "users:\n  ann: admin\n",
        )
        .unwrap();
        std::fs::write(root.join("agent.sh"), SCRIPT).unwrap();
        std::fs::write(root.join("fail.sh"), FAILING).unwrap();
        std::fs::create_dir_all(root.join("workflows")).unwrap();
        std::fs::write(root.join("workflows/leaky.yaml"), WORKFLOW).unwrap();
        Self { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_flightdeck"))
            .current_dir(self.root())
            .args(["--project-dir", self.root().to_str().unwrap(), "--as", "ann"])
            .args(args)
            .env("ACME_API_KEY", KEY)
            .env_remove("FLIGHTDECK_USER")
            .output()
            .unwrap()
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// No secret and no live control character (other than newline) in `seen`.
fn assert_clean(what: &str, seen: &str) {
    let b64_fragment = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("user:{KEY}"))[8..24].to_owned()
    };
    for secret in [KEY, GHP, AWS_ID, "pa55word-x", "hunter22x", b64_fragment.as_str()] {
        assert!(!seen.contains(secret), "{what}: `{secret}` leaked:\n{seen}");
    }
    let raw: Vec<char> =
        seen.chars().filter(|c| c.is_control() && *c != '\n' && *c != '\t').collect();
    assert!(raw.is_empty(), "{what}: raw controls {raw:?}:\n{seen}");
}

#[test]
fn secrets_and_escapes_reach_no_store_no_output_and_no_dependent() {
    let project = Project::new();
    let run = project.run(&["run", "workflows/leaky.yaml", "--json"]);
    let all = text(&run);
    assert_eq!(run.status.code(), Some(1), "{all}");
    assert_clean("run --json", &all);
    assert!(all.contains("[redacted:ACME_API_KEY]"), "{all}");
    assert!(all.contains("[redacted:aws_access_key_id]"), "{all}");
    assert!(all.contains("[redacted:url_credentials]"), "{all}");
    assert!(all.contains("[redacted:github_token]"), "{all}");
    // The escapes are JSON escapes, the C1 CSI too.
    assert!(all.contains("\\u001b]52;c;ZXZpbA==\\u0007"), "{all}");
    assert!(all.contains("\\u009b"), "{all}");
    // In text, they are shown, not obeyed.
    let shown = text(&project.run(&["runs", "show", "last", "leak"]));
    assert!(shown.contains("␛]52;c;ZXZpbA==␇") && shown.contains("\\u009b"), "{shown}");
    // The child's stderr cannot forge a progress line of its own.
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!stderr.lines().any(|l| l.starts_with("[   0.01s] done      boom")), "{stderr}");
    assert!(stderr.contains(" ⏎ "), "{stderr}");

    // The dependent task was given the redacted answer.
    let next = project.run(&["runs", "show", "last", "next", "--json"]);
    let next_text = text(&next);
    assert!(next_text.contains("I was given"), "{next_text}");
    assert!(next_text.contains("[redacted:ACME_API_KEY]"), "{next_text}");

    for args in [
        &["runs", "show", "last"][..],
        &["runs", "show", "last", "--json"],
        &["runs", "show", "last", "leak"],
        &["runs", "show", "last", "leak", "--json"],
        &["runs", "show", "last", "boom"],
        &["runs", "show", "last", "next"],
        &["runs", "events", "last"],
        &["runs", "events", "last", "--json"],
        &["runs", "list"],
        &["audit", "tail"],
    ] {
        let output = project.run(args);
        assert_clean(&args.join(" "), &text(&output));
    }
    // The store itself (and its WAL) holds none of it.
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(project.root().join(".flightdeck")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && !path.to_string_lossy().ends_with(".key") {
            stored.extend(std::fs::read(&path).unwrap());
        }
    }
    let stored = String::from_utf8_lossy(&stored);
    for secret in [KEY, GHP, AWS_ID, "hunter22x"] {
        assert!(!stored.contains(secret), "`{secret}` stored in the data dir");
    }
    // The log file too.
    let logs = project.root().join(".flightdeck/logs");
    for entry in std::fs::read_dir(logs).unwrap() {
        let log = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        assert!(!log.contains(KEY), "key in the log file");
    }
}

/// Every headless command, on a project whose agent file, workflow and agent output all
/// carry escape sequences (OSC 52 clipboard write, screen clear, title set, cursor report
/// query, C1 CSI, bidi override, a bare CR): nothing reaches the terminal live.
#[test]
fn no_headless_command_lets_an_escape_sequence_through() {
    let project = Project::new();
    let root = project.root();
    let nasty =
        "x\u{1b}]52;c;ZXZpbA==\u{7}\u{1b}[2J\u{1b}]0;title\u{7}\u{1b}[6n\u{9b}31m\u{202e}\r";
    std::fs::write(
        root.join("agentpool/tier1-core/scripted.md"),
        format!("---\nname: scripted\ndescription: 'Scripted {nasty} agent'\nbackend: local\ntriggers: [echo]\n---\nYou are {nasty}.\n"),
    )
    .unwrap();
    std::fs::write(
        root.join("workflows/nasty.yaml"),
        format!(
            "name: nasty\ntasks:\n  - {{id: leak, description: \"Echo {}\", agent: scripted}}\n",
            nasty
                .replace('\u{1b}', "\\e")
                .replace('\u{7}', "\\a")
                .replace('\u{9b}', "\\x9b")
                .replace('\u{202e}', "\\u202e")
                .replace('\r', "\\r")
        ),
    )
    .unwrap();
    let run = project.run(&["run", "workflows/nasty.yaml"]);
    assert_clean("run", &text(&run));
    let commands: &[&[&str]] = &[
        &["run", "workflows/nasty.yaml", "--json"],
        &["plan", "workflows/nasty.yaml"],
        &["plan", "workflows/nasty.yaml", "--json"],
        &["agents", "list"],
        &["agents", "list", "--json"],
        &["agents", "validate"],
        &["agents", "validate", "--json"],
        &["agents", "explain", "echo things"],
        &["agents", "explain", "echo things", "--json"],
        &["runs", "list"],
        &["runs", "list", "--json"],
        &["runs", "show", "last"],
        &["runs", "show", "last", "--json"],
        &["runs", "show", "last", "leak"],
        &["runs", "show", "last", "leak", "--json"],
        &["runs", "events", "last"],
        &["runs", "events", "last", "--json"],
        &["audit", "tail"],
        &["audit", "tail", "--json"],
        &["audit", "verify"],
        &["doctor"],
        &["doctor", "--json"],
    ];
    let mut shown = 0;
    for args in commands {
        let output = project.run(args);
        let seen = text(&output);
        assert_clean(&args.join(" "), &seen);
        let showed = seen.contains("␛]52;c;") || seen.contains("\\u001b]52;c;");
        shown += usize::from(showed);
    }
    // The sequences were there, shown as text, where the agent's text is shown (run --json,
    // plan --json, runs show TASK, runs events --json).
    assert!(shown >= 5, "only {shown} commands showed the escapes at all");
}

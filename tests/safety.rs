//! Safety policies on outputs, end to end: real agent programs print (or a fake coding CLI
//! streams) what the rules look for; the runtime blocks, holds for approval or warns, and
//! every match is an event and an audit record.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use flightdeck::command::{Command, Request};
use flightdeck::config::Settings;
use flightdeck::event::{Event, RunStatus};
use flightdeck::runtime::{AUDIT_FILE, Runtime, RuntimeOptions};
use flightdeck::workflow::PlanOverrides;
use serde_json::Value;
use tempfile::TempDir;

/// A project with one process agent whose program prints `output`, and `safety` settings.
struct Project {
    dir: TempDir,
}

impl Project {
    fn new(output: &str, safety: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(
            root.join("flightdeck.yaml"),
            format!(
                "users:\n  ann: admin\n  rita: reviewer\ndefault_backend: local\nbackends:\n  local:\n    \
                 kind: process\n    command: [sh, agent.sh]\n    env_allow: [PATH]\n{safety}"
            ),
        )
        .unwrap();
        std::fs::write(root.join("output.txt"), output).unwrap();
        std::fs::write(root.join("agent.sh"), "cat output.txt\n").unwrap();
        let agents = root.join("agentpool/tier1-core");
        std::fs::create_dir_all(&agents).unwrap();
        std::fs::write(
            agents.join("dba.md"),
            "---\nname: dba\ndescription: Writes migrations\nbackend: local\n---\nYou write SQL.\n",
        )
        .unwrap();
        std::fs::write(
            root.join("migrate.yaml"),
            "name: migrate\ntasks:\n  - {id: write-sql, description: Write the migration, agent: dba}\n  \
             - {id: apply, description: Apply it, agent: dba, depends_on: [write-sql]}\n",
        )
        .unwrap();
        Self { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn flightdeck(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_flightdeck"))
            .current_dir(self.root())
            .args(["--project-dir", self.root().to_str().unwrap(), "--as", "ann"])
            .args(args)
            .env_remove("FLIGHTDECK_USER")
            .output()
            .unwrap()
    }

    /// `run --json`: exit code, events of the run, stderr.
    fn run(&self) -> (Option<i32>, Vec<Value>, String) {
        let output = self.flightdeck(&["run", "migrate.yaml", "--json"]);
        let events = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .collect();
        (output.status.code(), events, String::from_utf8_lossy(&output.stderr).into_owned())
    }

    fn audit_actions(&self) -> Vec<Value> {
        let text =
            std::fs::read_to_string(self.root().join(".flightdeck").join(AUDIT_FILE)).unwrap();
        text.lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .filter(|record| record["action"] == "safety_rule_matched")
            .collect()
    }
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"]["type"] == kind || e["type"] == kind).collect()
}

/// The event's payload, wherever `run --json` puts it.
fn payload(event: &Value) -> &Value {
    if event["event"].is_object() { &event["event"] } else { event }
}

#[test]
fn block_fails_the_task_with_the_rule_name_and_nothing_flows_on() {
    let project = Project::new("BEGIN;\nDROP TABLE users;\nCOMMIT;\n", "");
    let (code, events, stderr) = project.run();
    assert_eq!(code, Some(1), "{stderr}");
    let matched = of_type(&events, "safety_rule_matched");
    assert_eq!(matched.len(), 1, "{events:?}");
    let matched = payload(matched[0]);
    assert_eq!(matched["policy"], "database-protection");
    assert_eq!(matched["rule"], "DROP TABLE");
    assert_eq!(matched["action"], "block");
    assert_eq!(matched["source"], "output");
    assert!(matched["excerpt"].as_str().unwrap().contains("«DROP TABLE» users;"), "{matched}");
    let failed = of_type(&events, "task_failed");
    let error = payload(failed[0])["error"].as_str().unwrap();
    assert!(error.contains("blocked by safety rule `database-protection/DROP TABLE`"), "{error}");
    // The blocked output never became a success, so its dependent never ran.
    assert!(of_type(&events, "task_succeeded").is_empty(), "{events:?}");
    assert_eq!(of_type(&events, "task_skipped").len(), 1, "{events:?}");
    assert!(stderr.contains("safety"), "the progress shows the rule: {stderr}");
    let audit = project.audit_actions();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["outcome"], "denied");
    assert_eq!(audit[0]["detail"]["rule"], "DROP TABLE");
    assert_eq!(audit[0]["detail"]["task"], "write-sql");
}

#[test]
fn confirm_without_a_reviewer_is_refused_in_a_headless_run() {
    let project = Project::new("DELETE FROM sessions WHERE expired;\n", "");
    let (code, events, stderr) = project.run();
    assert_eq!(code, Some(1), "{stderr}");
    let waiting = of_type(&events, "task_awaiting_approval");
    assert_eq!(waiting.len(), 1, "{events:?}");
    let reasons = payload(waiting[0])["reasons"].to_string();
    assert!(reasons.contains("database-protection/DELETE FROM .* WHERE"), "{reasons}");
    assert!(reasons.contains("«DELETE FROM sessions WHERE» expired;"), "{reasons}");
    let failed = of_type(&events, "task_failed");
    let error = payload(failed[0])["error"].as_str().unwrap();
    assert!(error.contains("output held by a safety rule, rejected by"), "{error}");
    assert_eq!(project.audit_actions().len(), 1);
}

#[test]
fn advisory_records_and_warns_but_lets_the_output_through() {
    let project = Project::new("DROP TABLE tmp_import;\n", "safety:\n  enforcement: advisory\n");
    let (code, events, stderr) = project.run();
    assert_eq!(code, Some(0), "{stderr}");
    let matched = of_type(&events, "safety_rule_matched");
    assert_eq!(matched.len(), 2, "both tasks print it: {events:?}");
    assert_eq!(payload(matched[0])["enforcement"], "advisory");
    assert!(stderr.contains("warns (advisory)"), "{stderr}");
    assert_eq!(of_type(&events, "task_succeeded").len(), 2);
    let audit = project.audit_actions();
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[0]["outcome"], "succeeded");
}

#[test]
fn disabled_checks_nothing_and_plan_says_so() {
    let project = Project::new("DROP TABLE users;\n", "safety:\n  enforcement: disabled\n");
    let (code, events, stderr) = project.run();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(of_type(&events, "safety_rule_matched").is_empty());
    let plan = project.flightdeck(&["plan", "migrate.yaml"]);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(text.contains("safety policies: none in force"), "{text}");
}

#[test]
fn plan_lists_the_policies_in_force() {
    let custom = "safety:\n  policies:\n    - name: infra\n      enforcement: advisory\n      \
                  rules:\n        - {pattern: 'terraform destroy', action: block, name: no-destroy}\n    \
                  - name: quiet-policy\n      enforcement: disabled\n      rules:\n        - {pattern: x, action: block}\n";
    let project = Project::new("fine\n", custom);
    let plan = project.flightdeck(&["plan", "migrate.yaml"]);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(text.contains("safety policies (enforcement strict)"), "{text}");
    assert!(
        text.contains("  infra (advisory)\n    block    no-destroy  `terraform destroy`\n"),
        "{text}"
    );
    assert!(!text.contains("quiet-policy"), "a disabled policy is not in force: {text}");
    let json = project.flightdeck(&["plan", "migrate.yaml", "--json"]);
    let value: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["safety"]["policies"][0]["name"], "infra");
    assert_eq!(value["safety"]["policies"].as_array().unwrap().len(), 1);
    // The defaults are in force when nothing is set.
    let default = Project::new("fine\n", "");
    let text =
        String::from_utf8_lossy(&default.flightdeck(&["plan", "migrate.yaml"]).stdout).into_owned();
    assert!(text.contains("    block    DROP TABLE\n"), "{text}");
    assert!(text.contains("    confirm  mfa.*false\n"), "{text}");
}

#[test]
fn a_bad_pattern_names_the_file_line_and_policy() {
    let bad = "safety:\n  policies:\n    - name: broken\n      rules:\n        - {pattern: 'DROP (TABLE', action: block}\n";
    let project = Project::new("fine\n", bad);
    let output = project.flightdeck(&["plan", "migrate.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("flightdeck.yaml"), "{stderr}");
    assert!(stderr.contains("safety.policies"), "{stderr}");
    assert!(stderr.contains("policy `broken`, rule 1 (`DROP (TABLE`)"), "{stderr}");
    let unknown = "safety:\n  enforcement: lenient\n";
    let output = Project::new("fine\n", unknown).flightdeck(&["plan", "migrate.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("lenient"), "{stderr}");
}

/// A reviewer who approves the held output lets it flow on to the dependent task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_holds_the_output_until_a_reviewer_approves() {
    let project = Project::new("ALTER TABLE users DROP COLUMN legacy;\n", "");
    let settings = Settings::load(project.root()).unwrap();
    let runtime = Runtime::start(RuntimeOptions {
        project_dir: project.root().to_owned(),
        data_dir: project.root().join(".flightdeck"),
        settings,
        watch_agents: false,
    })
    .unwrap();
    let mut events = runtime.bus().sink();
    let plan =
        runtime.plan(&project.root().join("migrate.yaml"), &PlanOverrides::default()).unwrap();
    let handle = runtime.start_planned("ann", plan).unwrap();
    let run = handle.id().clone();
    let until = Instant::now() + Duration::from_secs(30);
    let mut approvals = 0;
    let mut outputs = Vec::new();
    let status = loop {
        let envelope = tokio::time::timeout_at(until.into(), events.recv())
            .await
            .expect("the run ended in time")
            .unwrap();
        match &envelope.event {
            Event::ApprovalRequested { task, reasons, .. } => {
                approvals += 1;
                assert!(reasons[0].contains("«ALTER TABLE users DROP»"), "{reasons:?}");
                // A reviewer other than the run's starter (separation of duties).
                let request = Request {
                    user: "rita".into(),
                    command: Command::Approve { run: run.clone(), task: task.clone(), note: None },
                };
                runtime.submit(request).await.unwrap();
            }
            Event::TaskSucceeded { output, .. } => outputs.push(output.clone()),
            Event::RunFinished { status, .. } if envelope.run_id.as_ref() == Some(&run) => {
                break *status;
            }
            _ => {}
        }
    };
    assert_eq!(status, RunStatus::Succeeded);
    assert_eq!(approvals, 2, "each task's output was held");
    assert_eq!(outputs.len(), 2);
    runtime.shutdown().await;
    assert_eq!(project.audit_actions().len(), 2);
}

/// A coding agent's tool call that a `block` rule matches stops the attempt as it streams,
/// long before the CLI would finish.
#[test]
fn a_streamed_tool_call_is_blocked_at_once() {
    let project = Project::new("unused\n", "");
    let root = project.root();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/coding");
    let scenario = root.join("drop.jsonl");
    let init = r#"{"type":"system","subtype":"init","cwd":"/repo","session_id":"s4f3","tools":["Bash"],"mcp_servers":[],"model":"claude-sonnet-4-5-20250929","permissionMode":"default","apiKeySource":"none"}"#;
    let call = r#"{"type":"assistant","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"tool_use","id":"toolu_1","name":"Bash","input":{"command":"psql -c 'DROP TABLE users'"}}],"stop_reason":null,"usage":{"input_tokens":9,"output_tokens":30}},"parent_tool_use_id":null,"session_id":"s4f3"}"#;
    std::fs::write(&scenario, format!("{init}\n{call}\n#!sleep 60\n")).unwrap();
    std::fs::write(
        root.join("flightdeck.yaml"),
        format!(
            "users:\n  ann: admin\ndefault_backend: claude\nbackends:\n  claude:\n    \
             kind: claude_code\n    program: {}\n    env_allow: [PATH]\n    env:\n      \
             FAKE_SCENARIO: {}\n      FAKE_RECORD: {}\n",
            fixtures.join("bin/claude").display(),
            scenario.display(),
            root.display()
        ),
    )
    .unwrap();
    std::fs::write(
        root.join("agentpool/tier1-core/dba.md"),
        "---\nname: dba\ndescription: Writes migrations\n---\nYou write SQL.\n",
    )
    .unwrap();
    let began = Instant::now();
    let (code, events, stderr) = project.run();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(began.elapsed() < Duration::from_secs(30), "took {:?}", began.elapsed());
    let matched = of_type(&events, "safety_rule_matched");
    assert_eq!(matched.len(), 1, "{events:?}");
    assert_eq!(payload(matched[0])["source"], "streamed tool call");
    let failed = of_type(&events, "task_failed");
    let error = payload(failed[0])["error"].as_str().unwrap();
    assert!(
        error.contains(
            "blocked by safety rule `database-protection/DROP TABLE` in the streamed tool call"
        ),
        "{error}"
    );
    assert_eq!(project.audit_actions().len(), 1);
}

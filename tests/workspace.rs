//! Isolated workspaces as a user meets them: the real binary on a real git repository in a
//! temp dir, real `sh` agents writing files, then `git` to look at what the branches hold.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flightdeck::command::{Command as Operator, Request};
use flightdeck::config::Settings;
use flightdeck::event::{Event, RunStatus};
use flightdeck::ids::{TaskId, UserId};
use flightdeck::runtime::{Runtime, RuntimeOptions};
use flightdeck::store::RunStore;
use flightdeck::workflow::PlanOverrides;
use serde_json::Value;
use tempfile::TempDir;

/// `{scripts}` is replaced by the folder holding the agents' scripts (outside the repository,
/// so the worktrees do not need them).
const SETTINGS: &str = "default_role: admin
limits:
  retry_base_delay: 10ms
  retry_max_delay: 20ms
backends:
  sim:
    kind: sim
  writer:
    kind: process
    command: [sh, '{scripts}/writer.sh']
    workspace: worktree
  plain:
    kind: process
    command: [sh, '{scripts}/writer.sh']
";

/// Writes `$FLIGHTDECK_TASK.txt` and `same.txt`, lists what it saw, and behaves as the task's
/// context asks through `MODE` files next to the script.
const WRITER: &str = r#"cat > /dev/null
here=$(pwd)
echo "task $FLIGHTDECK_TASK attempt $FLIGHTDECK_ATTEMPT in $here"
echo "files: $(ls -A | grep -v '^.git$' | sort | tr '\n' ' ')"
case "$FLIGHTDECK_TASK" in
  flaky)
    if [ "$FLIGHTDECK_ATTEMPT" = 1 ]; then echo first > first.txt; echo "broke" >&2; exit 1; fi
    test -f first.txt || { echo "first.txt is gone" >&2; exit 3; }
    echo second > second.txt ;;
  empty-*) ;;
  gate)
    echo "tried $FLIGHTDECK_ATTEMPT" >> tried.txt
    if [ ! -f "$(dirname "$0")/open" ]; then echo "the gate is shut" >&2; exit 1; fi
    echo done > done.txt ;;
  *)
    sleep 0.2
    echo "$FLIGHTDECK_TASK" > "$FLIGHTDECK_TASK.txt"
    echo "written by $FLIGHTDECK_TASK" > same.txt ;;
esac
"#;

struct Project {
    dir: TempDir,
    scripts: TempDir,
}

impl Project {
    /// A git repository with one commit, an agent pool and the settings above.
    fn new() -> Self {
        let project = Self::without_git();
        git(project.root(), &["init", "--quiet", "--initial-branch=main"]);
        // A hook that would fail every commit and checkout: Flightdeck's own git work skips
        // the repository's hooks.
        let hooks = project.root().join(".git/hooks");
        for hook in ["pre-commit", "post-checkout", "pre-merge-commit"] {
            std::fs::write(hooks.join(hook), "#!/bin/sh\nexit 1\n").unwrap();
            let mut permissions = std::fs::metadata(hooks.join(hook)).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
            std::fs::set_permissions(hooks.join(hook), permissions).unwrap();
        }
        std::fs::write(project.root().join("README.md"), "# demo\n").unwrap();
        git(project.root(), &["add", "README.md"]);
        git(project.root(), &["commit", "--quiet", "--no-verify", "-m", "start"]);
        project
    }

    fn without_git() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let scripts = tempfile::tempdir().unwrap();
        std::fs::write(scripts.path().join("writer.sh"), WRITER).unwrap();
        let root = dir.path();
        let settings = SETTINGS.replace("{scripts}", scripts.path().to_str().unwrap());
        std::fs::write(root.join("flightdeck.yaml"), settings).unwrap();
        let agents = root.join("agentpool/tier1-core");
        std::fs::create_dir_all(&agents).unwrap();
        for (name, backend) in [("coder", "writer"), ("helper", "plain")] {
            let text = format!(
                "---\nname: {name}\ndescription: Test agent {name}\nbackend: {backend}\n---\nHi.\n"
            );
            std::fs::write(agents.join(format!("{name}.md")), text).unwrap();
        }
        std::fs::create_dir_all(root.join("workflows")).unwrap();
        Self { dir, scripts }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn workflow(&self, name: &str, text: &str) -> String {
        let path = format!("workflows/{name}.yaml");
        std::fs::write(self.root().join(&path), text).unwrap();
        path
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_flightdeck"))
            .current_dir(self.root())
            .args(["--project-dir", self.root().to_str().unwrap(), "--as", "ann"])
            .args(args)
            .env_remove("FLIGHTDECK_USER")
            .output()
            .unwrap()
    }

    /// Run a workflow; its run id.
    fn run_workflow(&self, path: &str, expect_code: i32) -> String {
        let output = self.run(&["run", path, "--json"]);
        assert_eq!(output.status.code(), Some(expect_code), "{}", stderr(&output));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let started = stdout
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .find(|event| event["type"] == "run_started")
            .unwrap();
        started["run_id"].as_str().unwrap().to_owned()
    }

    fn show(&self, args: &[&str]) -> Value {
        let mut all = vec!["runs", "show"];
        all.extend_from_slice(args);
        all.push("--json");
        let output = self.run(&all);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        serde_json::from_slice(&output.stdout).unwrap()
    }

    fn show_text(&self, args: &[&str]) -> String {
        let mut all = vec!["runs", "show"];
        all.extend_from_slice(args);
        let output = self.run(&all);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn worktree(&self, run: &str, task: &str) -> PathBuf {
        self.root().join(".flightdeck/worktrees").join(run).join(task)
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "tester")
        .env("GIT_AUTHOR_EMAIL", "tester@example.com")
        .env("GIT_COMMITTER_NAME", "tester")
        .env("GIT_COMMITTER_EMAIL", "tester@example.com")
        .output()
        .unwrap();
    assert!(output.status.success(), "git {args:?}: {}", stderr(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn branches(dir: &Path) -> Vec<String> {
    git(dir, &["branch", "--format=%(refname:short)"]).lines().map(str::to_owned).collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const PARALLEL: &str = "name: parallel
tasks:
  - {id: left, description: Write files, agent: coder}
  - {id: right, description: Write files, agent: coder}
";

#[test]
fn parallel_tasks_write_the_same_file_on_their_own_branches() {
    let project = Project::new();
    let path = project.workflow("parallel", PARALLEL);
    let run = project.run_workflow(&path, 0);
    let root = project.root();

    for task in ["left", "right"] {
        let branch = format!("flightdeck/{run}/{task}");
        assert!(branches(root).contains(&branch), "{:?}", branches(root));
        let same = git(root, &["show", &format!("{branch}:same.txt")]);
        assert_eq!(same, format!("written by {task}\n"));
        assert_eq!(git(root, &["show", &format!("{branch}:{task}.txt")]), format!("{task}\n"));
        // The worktree stays for review, with the work in it and nothing left uncommitted.
        let tree = project.worktree(&run, task);
        assert_eq!(
            std::fs::read_to_string(tree.join("same.txt")).unwrap(),
            format!("written by {task}\n")
        );
        assert_eq!(git(&tree, &["status", "--porcelain"]), "");
        let log = git(root, &["log", "-1", "--format=%an|%s", &branch]);
        assert_eq!(
            log.trim(),
            format!("flightdeck|flightdeck: run {run}, task {task}, attempt 1 (succeeded)")
        );
    }
    // The project's own checkout is untouched and sees no stray files.
    assert!(!root.join("same.txt").exists());
    assert_eq!(
        git(root, &["status", "--porcelain", "--untracked-files=all"])
            .lines()
            .filter(|l| l.contains("worktrees"))
            .count(),
        0
    );

    // `runs show` lists each task's workspace; `runs show RUN TASK` its changed files.
    let shown = project.show(&[&run]);
    let left = &shown["tasks"][0]["workspace"];
    assert_eq!(left["kind"], "worktree");
    assert_eq!(left["branch"], format!("flightdeck/{run}/left"));
    assert_eq!(left["files_changed"], 2);
    let text = project.show_text(&[&run]);
    assert!(text.contains(&format!("flightdeck/{run}/right")), "{text}");
    assert!(text.contains("2 files"), "{text}");
    let detail = project.show_text(&[&run, "left"]);
    assert!(detail.contains("2 files changed, 2 insertions(+)"), "{detail}");
    assert!(detail.contains("+1 −0  same.txt"), "{detail}");
    assert!(detail.contains("+1 −0  left.txt"), "{detail}");
    let detail = project.show(&[&run, "left"]);
    assert_eq!(detail["workspace"]["changes"][0]["path"], "left.txt");
}

const CHAIN: &str = "name: chain
tasks:
  - {id: alpha, description: Write files, agent: coder}
  - {id: beta, description: Write files, agent: coder}
  - {id: single, description: Build on alpha, agent: coder, depends_on: [alpha]}
  - {id: both, description: Build on both, agent: coder, depends_on: [alpha, beta], workspace: worktree}
  - {id: through, description: Shared step, agent: helper, depends_on: [single]}
  - {id: after, description: After the shared step, agent: helper, depends_on: [through], workspace: worktree}
";

#[test]
fn dependents_start_from_their_dependencies_branches() {
    let project = Project::new();
    let path = project.workflow("chain", CHAIN);
    let planned = project.run(&["plan", &path]);
    let plan = String::from_utf8_lossy(&planned.stdout).into_owned();
    let line = plan.lines().find(|l| l.trim_start().starts_with("both ")).unwrap();
    assert!(line.ends_with("after alpha, beta  in its own worktree"), "{plan}");
    let line = plan.lines().find(|l| l.trim_start().starts_with("through ")).unwrap();
    assert!(line.ends_with("after single"), "{plan}");
    let run = project.run_workflow(&path, 1);
    let root = project.root();
    let files = |task: &str| {
        git(root, &["ls-tree", "--name-only", &format!("flightdeck/{run}/{task}")])
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    // One dependency: its branch, with its files.
    assert_eq!(files("single"), ["README.md", "alpha.txt", "same.txt", "single.txt"]);
    let base = git(root, &["rev-parse", &format!("flightdeck/{run}/alpha")]);
    let merge_base = git(
        root,
        &["merge-base", &format!("flightdeck/{run}/alpha"), &format!("flightdeck/{run}/single")],
    );
    assert_eq!(base, merge_base);
    // Two dependencies that both wrote same.txt: a conflict, said clearly, and no half-made
    // branch left behind.
    let both = project.show(&[&run, "both"]);
    assert_eq!(both["state"], "failed");
    let why = both["note"].as_str().unwrap();
    assert!(why.contains("do not merge") && why.contains("same.txt"), "{why}");
    assert!(!branches(root).contains(&format!("flightdeck/{run}/both")));
    assert!(!project.worktree(&run, "both").exists());
    // Through a shared task, a worktree task still starts from the nearest worktree branch.
    assert_eq!(files("after"), ["README.md", "after.txt", "alpha.txt", "same.txt", "single.txt"]);
    // The shared task wrote into the project folder itself.
    assert!(root.join("through.txt").exists());
}

const MERGE: &str = "name: merge
tasks:
  - {id: one, description: Write, agent: helper, workspace: worktree}
  - {id: two, description: Write, agent: helper, workspace: worktree}
  - {id: empty-join, description: Join, agent: helper, depends_on: [one, two], workspace: worktree}
";

#[test]
fn several_dependencies_are_merged_when_they_agree() {
    let project = Project::new();
    let path = project.workflow("merge", MERGE);
    // Each writes only its own file, so the branches merge cleanly.
    let script = project.scripts.path().join("writer.sh");
    let text = std::fs::read_to_string(&script).unwrap();
    std::fs::write(
        &script,
        text.replace("echo \"written by $FLIGHTDECK_TASK\" > same.txt", "true"),
    )
    .unwrap();
    let run = project.run_workflow(&path, 0);
    let root = project.root();
    let join = format!("flightdeck/{run}/empty-join");
    let tree = git(root, &["ls-tree", "--name-only", &join]);
    assert_eq!(tree.lines().collect::<Vec<_>>(), ["README.md", "one.txt", "two.txt"]);
    let shown = project.show(&[&run, "empty-join"]);
    assert_eq!(
        shown["workspace"]["base_from"],
        format!("a merge of flightdeck/{run}/one, flightdeck/{run}/two")
    );
    // It changed nothing itself: no commit of its own, no files.
    assert_eq!(shown["workspace"]["changes"].as_array().unwrap().len(), 0);
}

const RETRY: &str = "name: retry
tasks:
  - {id: flaky, description: Fails once, agent: coder, retries: 1}
";

#[test]
fn a_retry_reuses_the_worktree_and_each_attempt_is_committed() {
    let project = Project::new();
    let path = project.workflow("retry", RETRY);
    let run = project.run_workflow(&path, 0);
    let root = project.root();
    let branch = format!("flightdeck/{run}/flaky");
    let log = git(root, &["log", "--format=%s", &branch]);
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        [
            format!("flightdeck: run {run}, task flaky, attempt 2 (succeeded)").as_str(),
            format!("flightdeck: run {run}, task flaky, attempt 1 (failed)").as_str(),
            "start"
        ]
    );
    // Attempt 2 saw attempt 1's file: the same worktree.
    let detail = project.show(&[&run, "flaky"]);
    let attempts = detail["history"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert!(attempts[1]["output"].as_str().unwrap().contains("first.txt"), "{detail}");
    assert_eq!(attempts[0]["result"], "retrying");
    // The failed attempt's text stays in its own block, with its outcome.
    let text = project.show_text(&[&run, "flaky"]);
    let first = text.find("attempt 1").unwrap();
    let second = text.find("attempt 2").unwrap();
    assert!(first < second, "{text}");
    assert!(text[first..second].contains("broke"), "{text}");
    assert!(!text[second..].contains("broke"), "{text}");
    assert!(text[first..second].contains("· failed after"), "{text}");
    assert!(text[first..second].contains("wait"), "the retry's wait: {text}");

    // The progress lines say the wait before the retry, and the whole task's time.
    let events = project.run(&["runs", "events", &run]);
    let said = stderr(&events);
    let retry = said.lines().find(|l| l.contains("retry     flaky")).unwrap();
    assert!(
        retry.contains("attempt 1 failed after ") && retry.contains("; retrying in "),
        "{retry}"
    );
    let done = said.lines().find(|l| l.contains("done      flaky")).unwrap();
    assert!(done.contains("(attempt 2 took "), "{done}");
    assert!(
        said.contains(&format!("workspace flaky  branch flightdeck/{run}/flaky from HEAD")),
        "{said}"
    );
}

const NOT_GIT: &str = "name: notgit
tasks:
  - {id: review, description: Change code, agent: helper, workspace: worktree}
";

#[test]
fn a_worktree_outside_a_git_repository_is_refused_before_the_run() {
    let project = Project::without_git();
    let path = project.workflow("notgit", NOT_GIT);
    let output = project.run(&["run", &path]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains(&format!(
            "task `review` asks for a git worktree but {} is not a git repository (run `git init`",
            project.root().display()
        )),
        "{err}"
    );
    assert!(!project.root().join("review.txt").exists());
    // `plan` says it too, before anything runs.
    let planned = project.run(&["plan", &path]);
    assert_eq!(planned.status.code(), Some(2));
    assert!(
        stderr(&planned).contains("is not a git repository (run `git init`"),
        "{}",
        stderr(&planned)
    );
}

#[test]
fn a_bad_workspace_value_names_the_task_and_line() {
    let project = Project::new();
    let path = project.workflow(
        "bad",
        "name: bad\ntasks:\n  - id: a\n    description: x\n    agent: helper\n    workspace: worktre\n",
    );
    let output = project.run(&["plan", &path]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(
        err.contains("bad.yaml:6: task `a`: workspace: `worktre` is not a workspace (use shared, worktree or temp)"),
        "{err}"
    );
}

const TEMP: &str = "name: temp
tasks:
  - {id: empty-one, description: Look around, agent: helper, workspace: temp}
  - {id: empty-two, description: Look around, agent: helper, workspace: temp}
";

#[test]
fn temp_workspaces_are_empty_distinct_and_removed() {
    let project = Project::new();
    let path = project.workflow("temp", TEMP);
    let run = project.run_workflow(&path, 0);
    let mut seen = Vec::new();
    for task in ["empty-one", "empty-two"] {
        let detail = project.show(&[&run, task]);
        let output = detail["history"][0]["output"].as_str().unwrap().to_owned();
        assert!(output.lines().any(|l| l == "files: "), "empty folder: {output}");
        let folder = detail["workspace"]["path"].as_str().unwrap().to_owned();
        assert!(output.contains(&folder), "{output} ran in {folder}");
        assert!(!Path::new(&folder).exists(), "{folder} removed after the attempt");
        seen.push(folder);
    }
    assert_ne!(seen[0], seen[1]);
}

#[test]
fn prune_removes_the_worktrees_and_branches_of_pruned_runs() {
    let project = Project::new();
    let path = project.workflow("parallel", PARALLEL);
    let old = project.run_workflow(&path, 0);
    let new = project.run_workflow(&path, 0);
    let root = project.root();
    assert_eq!(branches(root).len(), 5);

    let dry = project.run(&["runs", "prune", "--keep", "1", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    let said = stderr(&dry);
    assert!(
        said.contains(&format!(
            "would remove worktree {}",
            project.worktree(&old, "left").display()
        )),
        "{said}"
    );
    assert!(said.contains(&format!("would delete branch flightdeck/{old}/right")), "{said}");
    assert!(!said.contains(&new), "{said}");
    assert_eq!(branches(root).len(), 5);

    let done = project.run(&["runs", "prune", "--keep", "1"]);
    assert_eq!(done.status.code(), Some(0), "{}", stderr(&done));
    assert!(stderr(&done).contains("removed 2 worktrees"), "{}", stderr(&done));
    assert_eq!(
        branches(root),
        [
            "flightdeck/".to_owned() + &new + "/left",
            format!("flightdeck/{new}/right"),
            "main".to_owned()
        ]
    );
    assert!(!project.worktree(&old, "left").exists());
    assert!(!root.join(".flightdeck/worktrees").join(&old).exists());
    assert!(project.worktree(&new, "left").exists());
    let listed = git(root, &["worktree", "list", "--porcelain"]);
    assert!(!listed.contains(&old), "{listed}");
}

const GATE: &str = "name: gate
tasks:
  - {id: gate, description: Waits for the gate, agent: coder}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_retry_goes_on_in_the_same_worktree() {
    let project = Project::new();
    let path = project.workflow("gate", GATE);
    let data_dir = project.root().join(".flightdeck");
    let runtime = Runtime::start(RuntimeOptions {
        project_dir: project.root().to_owned(),
        data_dir: data_dir.clone(),
        settings: Settings::load(project.root()).unwrap(),
        watch_agents: false,
    })
    .unwrap();
    let plan = runtime.plan(Path::new(&path), &PlanOverrides::default()).unwrap();
    let handle = runtime.start_planned("ann", plan).unwrap();
    assert_eq!(handle.wait().await, RunStatus::Failed);
    let run = handle.id().clone();

    std::fs::write(project.scripts.path().join("open"), "").unwrap();
    let retry = Operator::RetryTask { run: run.clone(), task: TaskId::new("gate") };
    runtime.submit(Request { user: UserId::new("ann"), command: retry }).await.unwrap();
    assert_eq!(runtime.wait_run(&run).await, Some(RunStatus::Succeeded));
    runtime.flush().await.unwrap();

    // The second round found the first round's worktree, its file and its base.
    let branch = format!("flightdeck/{run}/gate");
    let tried = git(project.root(), &["show", &format!("{branch}:tried.txt")]);
    assert_eq!(tried, "tried 1\ntried 2\n");
    let events = RunStore::open(data_dir.join("runs.db")).unwrap().events(&run).unwrap();
    let created = events.iter().filter(|e| matches!(e.event, Event::WorkspaceCreated { .. }));
    assert_eq!(created.count(), 1);
    let last_changes = events
        .iter()
        .rev()
        .find_map(|e| match &e.event {
            Event::WorkspaceChanges { attempt, files, .. } => Some((*attempt, files.clone())),
            _ => None,
        })
        .unwrap();
    let paths: Vec<&str> = last_changes.1.iter().map(|f| f.path.as_str()).collect();
    assert_eq!((last_changes.0, paths), (2, vec!["done.txt", "tried.txt"]));
    runtime.shutdown().await;
}

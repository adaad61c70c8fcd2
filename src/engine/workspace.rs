//! Where a task's attempts work: the shared project folder, a git worktree of the task's own,
//! or a fresh empty folder.
//!
//! A `worktree` task works on the branch `flightdeck/<run>/<task>`, checked out in
//! `<data-dir>/worktrees/<run>/<task>`. The branch starts at the project's `HEAD`, or at the
//! branches of the nearest dependencies that worked in worktrees (one: its branch; several: a
//! merge of them). Retries reuse the worktree. After every attempt whatever the agent changed
//! is committed to the branch (author `flightdeck`), so the branch holds the work; branches and
//! worktrees stay after the run for review until `flightdeck runs prune` removes them.
//!
//! A `temp` attempt gets a fresh empty folder under the system's temporary folder, removed
//! when the attempt ends: its output is what it printed.
//!
//! Everything git does here goes through the `git` program, one command at a time per engine,
//! so parallel tasks never race on the repository's shared files (worktree list, config).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tempfile::TempDir;
use tokio::sync::Mutex;

use super::scheduler::RunShared;
use crate::config::WorkspaceKind;
use crate::event::{Event, FileChange, Level};
use crate::ids::{RunId, TaskId};
use crate::workflow::Plan;

/// Folder of the data dir that holds the worktrees, one folder per run.
pub const WORKTREES_DIR: &str = "worktrees";
/// Options of every git command that changes the repository.
const HOOKS_OFF: [&str; 6] =
    ["-c", "commit.gpgsign=false", "-c", "gc.auto=0", "-c", "core.hooksPath=/dev/null"];
/// Names every git commit Flightdeck makes.
const AUTHOR: &str = "flightdeck";
const AUTHOR_EMAIL: &str = "flightdeck@localhost";
/// Branch config key holding the commit a task's branch started from, so a later attempt
/// (or process) diffs against the same base.
const BASE_KEY: &str = "flightdeckbase";

/// Why a task could not get its workspace. Nothing is retried: the same repository gives the
/// same answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkspaceError {
    #[error(
        "task `{task}` asks for a git worktree but {} is not a git repository (run `git init` \
         there and commit, or drop `workspace: worktree`)",
        dir.display()
    )]
    NotARepository { task: TaskId, dir: PathBuf },
    #[error(
        "task `{task}` asks for a git worktree but the repository at {} has no commit yet \
         (commit something first: the worktree starts from HEAD)",
        dir.display()
    )]
    NoCommit { task: TaskId, dir: PathBuf },
    #[error(
        "task `{task}`: the branches of its dependencies do not merge ({branches}): conflict in \
         {files}; make one of those tasks depend on the other, or give the task no worktree"
    )]
    MergeConflict { task: TaskId, branches: String, files: String },
    #[error("task `{task}`: `git {args}` failed in {}: {message}", dir.display())]
    Git { task: TaskId, dir: PathBuf, args: String, message: String },
    #[error("task `{task}`: cannot make a temporary folder: {message}")]
    Temp { task: TaskId, message: String },
}

/// The workspaces of one engine.
pub(crate) struct Workspaces {
    /// `<data-dir>/worktrees`.
    root: PathBuf,
    project_dir: PathBuf,
    /// One git command at a time.
    git: Mutex<()>,
}

/// A task's worktree, kept across its attempts.
#[derive(Debug, Clone)]
pub(crate) struct Worktree {
    /// The worktree's root folder.
    path: PathBuf,
    /// Where the agent works: the project folder's place inside the worktree.
    workdir: PathBuf,
    branch: String,
    /// The commit the branch started from.
    base: String,
}

/// What a task holds between attempts: its worktree once made, and the temporary folder of the
/// attempt running now.
#[derive(Default)]
pub(crate) struct TaskWorkspace {
    worktree: Option<Worktree>,
    temp: Option<TempDir>,
}

/// The repository holding the project folder.
struct Repo {
    /// Its main working tree.
    top: PathBuf,
    /// The project folder relative to `top` (empty at the top).
    prefix: PathBuf,
}

impl Workspaces {
    pub(crate) fn new(project_dir: &Path, data_dir: &Path) -> Self {
        // Absolute, so the paths published and handed to git mean the same from any folder.
        let absolute = |path: PathBuf| std::path::absolute(&path).unwrap_or(path);
        Self {
            root: absolute(data_dir.join(WORKTREES_DIR)),
            project_dir: absolute(project_dir.to_owned()),
            git: Mutex::new(()),
        }
    }

    /// Before a run starts: every task asking for a worktree has a repository with a commit
    /// to start from.
    pub(crate) fn check(&self, plan: &Plan) -> Result<(), WorkspaceError> {
        let Some(step) = plan.steps.iter().find(|s| s.workspace == WorkspaceKind::Worktree) else {
            return Ok(());
        };
        let run = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .current_dir(&self.project_dir)
                .envs(git_env())
                .env_remove("GIT_DIR")
                .env_remove("GIT_WORK_TREE")
                .stdin(Stdio::null())
                .output()
                .is_ok_and(|out| out.status.success())
        };
        if !self.project_dir.is_dir() || !run(&["rev-parse", "--show-toplevel"]) {
            return Err(WorkspaceError::NotARepository {
                task: step.id.clone(),
                dir: self.project_dir.clone(),
            });
        }
        if !run(&["rev-parse", "--verify", "--quiet", "HEAD^{commit}"]) {
            return Err(WorkspaceError::NoCommit {
                task: step.id.clone(),
                dir: self.project_dir.clone(),
            });
        }
        Ok(())
    }
}

/// Plan time: every task of `plan` asking for a worktree has a git repository with a commit
/// at `project_dir`, so `flightdeck plan` says so before anything runs.
pub fn check_plan(plan: &Plan, project_dir: &Path) -> Result<(), WorkspaceError> {
    Workspaces::new(project_dir, project_dir).check(plan)
}

/// The folder attempt `attempt` of `task` works in, made ready; `None` for the shared project
/// folder. Publishes `WorkspaceCreated` when a worktree or folder is made.
pub(crate) async fn enter(
    shared: &RunShared,
    task: usize,
    attempt: u32,
    held: &mut TaskWorkspace,
) -> Result<Option<PathBuf>, WorkspaceError> {
    let step = &shared.plan.steps[task];
    match step.workspace {
        WorkspaceKind::Shared => Ok(None),
        WorkspaceKind::Temp => {
            let dir = tempfile::Builder::new()
                .prefix(&format!("flightdeck-{}-{attempt}-", path_safe(step.id.as_str())))
                .tempdir()
                .map_err(|e| WorkspaceError::Temp {
                    task: step.id.clone(),
                    message: e.to_string(),
                })?;
            let path = dir.path().to_owned();
            shared.publish(Event::WorkspaceCreated {
                task: step.id.clone(),
                kind: WorkspaceKind::Temp,
                path: path.clone(),
                repo: None,
                branch: None,
                base: None,
                base_from: None,
            });
            held.temp = Some(dir);
            Ok(Some(path))
        }
        WorkspaceKind::Worktree => {
            if let Some(worktree) = &held.worktree {
                return Ok(Some(worktree.workdir.clone()));
            }
            let worktree = open_worktree(shared, task).await?;
            let workdir = worktree.workdir.clone();
            held.worktree = Some(worktree);
            Ok(Some(workdir))
        }
    }
}

/// After an attempt: commit what it changed to the task's branch and publish the branch's
/// changes, or remove the attempt's temporary folder. A failure here is announced, not fatal:
/// the attempt's own outcome stands.
pub(crate) async fn leave(
    shared: &RunShared,
    task: usize,
    attempt: u32,
    outcome: &str,
    held: &mut TaskWorkspace,
) {
    if let Some(dir) = held.temp.take() {
        let path = dir.path().to_owned();
        if let Err(error) = dir.close() {
            tracing::warn!(path = %path.display(), %error, "cannot remove a temporary workspace");
        }
    }
    let Some(worktree) = &held.worktree else { return };
    let step = &shared.plan.steps[task];
    // No lock: a commit touches only this worktree's index and its own branch, and auto-gc is
    // off, so tasks commit side by side.
    let git = Git { task: &step.id, dir: &worktree.path };
    let message =
        format!("flightdeck: run {}, task {}, attempt {attempt} ({outcome})", shared.run, step.id);
    let result = async {
        let commit = git.commit_all(&message).await?;
        let files = git.numstat(&worktree.base).await?;
        let summary = shortstat(&files);
        Ok::<_, WorkspaceError>((commit, files, summary))
    }
    .await;
    match result {
        Ok((commit, files, summary)) => shared.publish(Event::WorkspaceChanges {
            task: step.id.clone(),
            attempt,
            branch: worktree.branch.clone(),
            commit,
            files,
            summary,
        }),
        Err(error) => shared.publish(Event::Notice {
            level: Level::Warn,
            message: format!("the work of attempt {attempt} is not committed: {error}"),
        }),
    }
}

/// The task's worktree: the one a previous attempt made, else a new one on a new branch.
async fn open_worktree(shared: &RunShared, task: usize) -> Result<Worktree, WorkspaceError> {
    let step = &shared.plan.steps[task];
    let workspaces = &shared.engine.workspaces;
    let _lock = workspaces.git.lock().await;
    let at_project = Git { task: &step.id, dir: &workspaces.project_dir };
    let repo = at_project.repo().await?;
    let branch = branch_name(&shared.run, &step.id);
    let path =
        workspaces.root.join(path_safe(shared.run.as_str())).join(path_safe(step.id.as_str()));
    let at_repo = Git { task: &step.id, dir: &repo.top };
    let base_key = format!("branch.{branch}.{BASE_KEY}");
    // A retry of a task whose worktree survives (an operator retry, a new attempt).
    if path.join(".git").exists() {
        let base = at_repo.run(&["config", "--get", &base_key]).await?.trim().to_owned();
        return Ok(Worktree { workdir: path.join(&repo.prefix), path, branch, base });
    }
    std::fs::create_dir_all(&workspaces.root).map_err(|e| at_repo.failed("worktree add", &e))?;
    // The data dir often sits inside the project: keep the worktrees out of its `git status`.
    let ignore = workspaces.root.join(".gitignore");
    if !ignore.exists() {
        let _ = std::fs::write(&ignore, "*\n");
    }
    let sources = base_branches(&shared.plan, &shared.run, task);
    let (start, base_from) = match sources.first() {
        None => {
            let head = at_repo.run(&["rev-parse", "--verify", "--quiet", "HEAD^{commit}"]).await;
            let head = head.map_err(|_| WorkspaceError::NoCommit {
                task: step.id.clone(),
                dir: repo.top.clone(),
            })?;
            (head.trim().to_owned(), "HEAD".to_owned())
        }
        Some(first) if sources.len() == 1 => (first.clone(), first.clone()),
        Some(first) => (first.clone(), format!("a merge of {}", sources.join(", "))),
    };
    let path_text = path.display().to_string();
    at_repo.run(&["worktree", "add", "--quiet", "-b", &branch, &path_text, &start]).await?;
    let in_tree = Git { task: &step.id, dir: &path };
    for other in sources.iter().skip(1) {
        let merged = in_tree
            .run(&[
                "merge",
                "--no-ff",
                "--no-edit",
                "--no-verify",
                "-m",
                &merge_message(step.id.as_str(), other),
                other,
            ])
            .await;
        if merged.is_err() {
            let files = in_tree
                .run(&["diff", "--name-only", "--diff-filter=U"])
                .await
                .unwrap_or_default()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(", ");
            // Leave nothing half-made behind, so a retry after a fix starts clean.
            let _ = in_tree.run(&["merge", "--abort"]).await;
            let _ = at_repo.run(&["worktree", "remove", "--force", &path_text]).await;
            let _ = at_repo.run(&["branch", "-D", &branch]).await;
            return Err(WorkspaceError::MergeConflict {
                task: step.id.clone(),
                branches: sources.join(", "),
                files: if files.is_empty() { "unknown files".to_owned() } else { files },
            });
        }
    }
    let base = in_tree.run(&["rev-parse", "HEAD"]).await?.trim().to_owned();
    at_repo.run(&["config", &base_key, &base]).await?;
    // A project folder with no tracked files yet has no place in the checkout: make it.
    let workdir = path.join(&repo.prefix);
    std::fs::create_dir_all(&workdir).map_err(|e| in_tree.failed("worktree add", &e))?;
    shared.publish(Event::WorkspaceCreated {
        task: step.id.clone(),
        kind: WorkspaceKind::Worktree,
        path: path.clone(),
        repo: Some(repo.top.clone()),
        branch: Some(branch.clone()),
        base: Some(base.clone()),
        base_from: Some(base_from),
    });
    Ok(Worktree { path, workdir, branch, base })
}

fn merge_message(task: &str, branch: &str) -> String {
    format!("flightdeck: merge {branch} for task {task}")
}

/// The branches a worktree task starts from: those of its nearest dependencies that worked in
/// worktrees, looking through dependencies that did not.
fn base_branches(plan: &Plan, run: &RunId, task: usize) -> Vec<String> {
    let mut seen = vec![false; plan.steps.len()];
    let mut stack: Vec<usize> = plan.steps[task].deps.iter().rev().copied().collect();
    let mut branches = Vec::new();
    while let Some(dep) = stack.pop() {
        if std::mem::replace(&mut seen[dep], true) {
            continue;
        }
        let step = &plan.steps[dep];
        if step.workspace == WorkspaceKind::Worktree {
            branches.push(branch_name(run, &step.id));
        } else {
            stack.extend(step.deps.iter().rev().copied());
        }
    }
    branches
}

/// `flightdeck/<run>/<task>`.
pub fn branch_name(run: &RunId, task: &TaskId) -> String {
    format!("flightdeck/{}/{}", path_safe(run.as_str()), path_safe(task.as_str()))
}

/// A task or run id as one path component and one ref component: ids may hold dots, which
/// git refuses at the start, doubled or at the end (and `..` would leave the folder).
fn path_safe(id: &str) -> String {
    let mut out = String::with_capacity(id.len() + 1);
    let mut previous = None;
    for c in id.chars() {
        let bad_dot = c == '.' && (previous.is_none() || previous == Some('.'));
        out.push(if bad_dot || c == '/' { '_' } else { c });
        previous = Some(c);
    }
    // Git refuses a ref component ending in `.lock`, whatever the case on disk.
    #[allow(clippy::case_sensitive_file_extension_comparisons)]
    if out.ends_with('.') || out.ends_with(".lock") {
        out.push('_');
    }
    out
}

/// Git runs without the caller's repository variables, with a fixed identity, in English, and
/// never asks questions.
fn git_env() -> [(&'static str, &'static str); 6] {
    [
        ("GIT_AUTHOR_NAME", AUTHOR),
        ("GIT_AUTHOR_EMAIL", AUTHOR_EMAIL),
        ("GIT_COMMITTER_NAME", AUTHOR),
        ("GIT_COMMITTER_EMAIL", AUTHOR_EMAIL),
        ("GIT_TERMINAL_PROMPT", "0"),
        ("LC_ALL", "C"),
    ]
}

/// `git` in one folder, on behalf of one task.
struct Git<'a> {
    task: &'a TaskId,
    dir: &'a Path,
}

impl Git<'_> {
    /// Run a git command; its stdout, or an error with its stderr.
    async fn run(&self, args: &[&str]) -> Result<String, WorkspaceError> {
        let output = tokio::process::Command::new("git")
            // Flightdeck's own commits: no signing prompt, no repository hooks (a failing
            // pre-commit or a slow post-checkout must not stop a run), no auto-gc.
            .args(HOOKS_OFF)
            .args(args)
            .current_dir(self.dir)
            .envs(git_env())
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| self.failed(&args.join(" "), &e))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let stdout = String::from_utf8_lossy(&output.stdout);
            let message = if stderr.trim().is_empty() { stdout } else { stderr };
            return Err(WorkspaceError::Git {
                task: self.task.clone(),
                dir: self.dir.to_owned(),
                args: args.join(" "),
                message: message.trim().lines().take(6).collect::<Vec<_>>().join("; "),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn failed(&self, args: &str, error: &std::io::Error) -> WorkspaceError {
        WorkspaceError::Git {
            task: self.task.clone(),
            dir: self.dir.to_owned(),
            args: args.to_owned(),
            message: error.to_string(),
        }
    }

    /// The repository holding this folder.
    async fn repo(&self) -> Result<Repo, WorkspaceError> {
        let not_a_repo =
            || WorkspaceError::NotARepository { task: self.task.clone(), dir: self.dir.to_owned() };
        if !self.dir.is_dir() {
            return Err(not_a_repo());
        }
        let out = self.run(&["rev-parse", "--show-toplevel", "--show-prefix"]).await;
        let out = out.map_err(|_| not_a_repo())?;
        let mut lines = out.lines();
        let top = PathBuf::from(lines.next().unwrap_or_default());
        let prefix = PathBuf::from(lines.next().unwrap_or_default());
        Ok(Repo { top, prefix })
    }

    /// Stage everything and commit it; the new commit, or `None` when nothing changed.
    async fn commit_all(&self, message: &str) -> Result<Option<String>, WorkspaceError> {
        self.run(&["add", "--all"]).await?;
        let staged = self.run(&["diff", "--cached", "--name-only"]).await?;
        if staged.trim().is_empty() {
            return Ok(None);
        }
        self.run(&["commit", "--quiet", "--no-verify", "-m", message]).await?;
        Ok(Some(self.run(&["rev-parse", "HEAD"]).await?.trim().to_owned()))
    }

    /// Files changed from `base` to `HEAD`.
    async fn numstat(&self, base: &str) -> Result<Vec<FileChange>, WorkspaceError> {
        let out = self.run(&["diff", "--numstat", "--no-renames", base, "HEAD"]).await?;
        Ok(out.lines().filter_map(parse_numstat).collect())
    }
}

/// A kept worktree of a finished run, to remove when the run is pruned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptWorktree {
    /// The repository's main working tree.
    pub repo: PathBuf,
    pub path: PathBuf,
    pub branch: String,
}

impl KeptWorktree {
    /// `git worktree remove --force` and `git branch -D`; what could not be removed, said for
    /// people. A worktree already deleted by hand is forgotten with `git worktree prune`.
    pub fn remove(&self) -> Result<(), String> {
        let git = |args: &[&str]| -> Result<(), String> {
            let output = std::process::Command::new("git")
                .args(args)
                .current_dir(&self.repo)
                .envs(git_env())
                .env_remove("GIT_DIR")
                .env_remove("GIT_WORK_TREE")
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run git in {}: {e}", self.repo.display()))?;
            if output.status.success() {
                Ok(())
            } else {
                let stderr = String::from_utf8_lossy(&output.stderr);
                Err(format!("`git {}`: {}", args.join(" "), stderr.trim()))
            }
        };
        let path = self.path.display().to_string();
        if self.path.exists() {
            git(&["worktree", "remove", "--force", &path])?;
        } else {
            git(&["worktree", "prune"])?;
        }
        git(&["branch", "-D", &self.branch])?;
        // The run's folder goes once its last worktree has.
        if let Some(run_dir) = self.path.parent() {
            let _ = std::fs::remove_dir(run_dir);
        }
        Ok(())
    }
}

/// One `git diff --numstat` line: `added<TAB>removed<TAB>path`, `-` counts for binary files.
fn parse_numstat(line: &str) -> Option<FileChange> {
    let mut parts = line.splitn(3, '\t');
    let added = parts.next()?;
    let removed = parts.next()?;
    let path = parts.next()?;
    Some(FileChange {
        path: path.to_owned(),
        added: added.parse().ok(),
        removed: removed.parse().ok(),
    })
}

/// `2 files changed, 5 insertions(+), 1 deletion(-)`, as `git diff --shortstat` says it.
fn shortstat(files: &[FileChange]) -> String {
    if files.is_empty() {
        return String::new();
    }
    let added: u64 = files.iter().filter_map(|f| f.added).sum();
    let removed: u64 = files.iter().filter_map(|f| f.removed).sum();
    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut text = plural(files.len() as u64, "file changed", "files changed");
    if added > 0 {
        let _ = write!(text, ", {}", plural(added, "insertion(+)", "insertions(+)"));
    }
    if removed > 0 {
        let _ = write!(text, ", {}", plural(removed, "deletion(-)", "deletions(-)"));
    }
    text
}

/// `+3 −1` for a changed file, `binary` when git counts no lines.
pub fn change_counts(change: &FileChange) -> String {
    match (change.added, change.removed) {
        (Some(added), Some(removed)) => {
            let mut text = String::new();
            let _ = write!(text, "+{added} −{removed}");
            text
        }
        _ => "binary".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_safe_path_and_ref_components() {
        assert_eq!(path_safe("design-api"), "design-api");
        assert_eq!(path_safe(".."), "__");
        assert_eq!(path_safe(".hidden"), "_hidden");
        assert_eq!(path_safe("a..b"), "a._b");
        assert_eq!(path_safe("v1.2"), "v1.2");
        assert_eq!(path_safe("x.lock"), "x.lock_");
        assert_eq!(path_safe("end."), "end._");
        assert_eq!(branch_name(&RunId::new("r1"), &TaskId::new("build")), "flightdeck/r1/build");
    }

    #[test]
    fn numstat_lines_parse_with_binary_files() {
        assert_eq!(
            parse_numstat("3\t1\tsrc/a b.rs"),
            Some(FileChange { path: "src/a b.rs".into(), added: Some(3), removed: Some(1) })
        );
        let one = parse_numstat("1\t0\ta").expect("one");
        assert_eq!(shortstat(std::slice::from_ref(&one)), "1 file changed, 1 insertion(+)");
        let two = parse_numstat("2\t3\tb").expect("two");
        assert_eq!(shortstat(&[one, two]), "2 files changed, 3 insertions(+), 3 deletions(-)");
        assert_eq!(shortstat(&[]), "");
        let binary = parse_numstat("-\t-\tlogo.png").expect("binary");
        assert_eq!((binary.added, binary.removed), (None, None));
        assert_eq!(change_counts(&binary), "binary");
        assert_eq!(parse_numstat("garbage"), None);
    }
}

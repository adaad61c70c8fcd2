//! `flightdeck agents ...`: validate, list, watch and explain agent definitions, and show
//! what was learned from their outcomes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::progress::short;
use super::table::{self, Align};
use super::{Globals, exit};
use crate::agents::registry::tidy_path;
use crate::agents::selector::{self, MIN_SCORE, Scored, SelectionQuery};
use crate::agents::{AgentDefinition, Registry};
use crate::bus::EventBus;
use crate::config::Settings;
use crate::event::{AgentSummary, Envelope, Event};
use crate::ids::AgentId;
use crate::learning::{History, LearningSettings, Stats};
use crate::store::RUNS_FILE;
use crate::words::plural;

/// `agents validate [DIR] [--json]`: 0 when no file has an error, 1 otherwise.
pub fn validate(globals: &Globals, dir: Option<PathBuf>, json: bool) -> i32 {
    let dir = tidy_path(&dir.unwrap_or_else(|| globals.agentpool_dir()));
    let registry = Registry::load(&dir);
    let mut diagnostics = diagnostics(&registry);
    match Settings::load(&globals.project_dir) {
        Ok(settings) => diagnostics.extend(backend_warnings(&registry.definitions(), &settings)),
        Err(error) => eprintln!("note: backend names not checked: {error}"),
    }
    diagnostics.sort_by(|a, b| (&a.file, a.line, a.severity).cmp(&(&b.file, b.line, b.severity)));
    let report = ValidationReport {
        dir: dir.clone(),
        files: registry.scanned_files(),
        loaded: registry.definitions().len(),
        errors: diagnostics.iter().filter(|d| d.severity == Severity::Error).count(),
        warnings: diagnostics.iter().filter(|d| d.severity == Severity::Warning).count(),
        diagnostics,
        agents: registry.definitions().iter().map(|def| def.summary()).collect(),
    };
    if json {
        print_json(&report);
    } else {
        let mut out = String::new();
        for d in &report.diagnostics {
            let _ = writeln!(out, "{}: {}", d.severity.label(), d.located());
        }
        let _ = writeln!(
            out,
            "{}, {} loaded, {}, {}",
            plural(report.files, "file"),
            report.loaded,
            plural(report.errors, "error"),
            plural(report.warnings, "warning")
        );
        out!("{out}");
    }
    if report.errors > 0 { exit::FAILED } else { exit::OK }
}

/// `agents list [--json]`.
pub fn list(globals: &Globals, json: bool) -> i32 {
    let registry = Registry::load(&tidy_path(&globals.agentpool_dir()));
    let defs = registry.definitions();
    let problems = registry.problems();
    if json {
        let agents: Vec<ListedAgent> = defs.iter().map(|def| ListedAgent::of(def)).collect();
        let problems: Vec<ListedProblem> = problems
            .iter()
            .map(|p| ListedProblem {
                file: p.file.clone(),
                agent: p.agent.as_ref().map(ToString::to_string),
                errors: p.errors.iter().map(ToString::to_string).collect(),
            })
            .collect();
        print_json(&serde_json::json!({ "agents": agents, "problems": problems }));
        return exit::OK;
    }
    if defs.is_empty() {
        outln!("No agent definitions in {}", registry.dir().display());
    } else {
        out!("{}", table(&defs));
    }
    if !problems.is_empty() {
        eprintln!(
            "{} not loaded; run `flightdeck agents validate` for details",
            plural(problems.len(), "file")
        );
    }
    exit::OK
}

/// `agents watch [--json]`: one line per change until interrupted.
pub fn watch(globals: &Globals, json: bool) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return exit::FAILED;
        }
    };
    runtime.block_on(async {
        let registry = Registry::load(&tidy_path(&globals.agentpool_dir()));
        let bus = EventBus::new();
        let mut changes = bus.sink();
        let watcher = match crate::agents::watch(registry.clone(), bus.clone()) {
            Ok(watcher) => watcher,
            Err(error) => {
                eprintln!("error: {error}");
                return exit::FAILED;
            }
        };
        eprintln!(
            "watching {} ({}, {} with errors); Ctrl-C to stop",
            registry.dir().display(),
            plural(registry.definitions().len(), "agent"),
            plural(registry.problems().len(), "file"),
        );
        let interrupted = tokio::signal::ctrl_c();
        tokio::pin!(interrupted);
        loop {
            tokio::select! {
                envelope = changes.recv() => match envelope {
                    Some(envelope) => outln!("{}", change_line(&envelope, json)),
                    None => break,
                },
                _ = &mut interrupted => break,
            }
        }
        drop(watcher);
        exit::OK
    })
}

/// `agents explain TASK [--context TEXT] [--top N] [--json]`: 0 when an agent is selected,
/// 1 when none reaches the minimum score.
pub fn explain(
    globals: &Globals,
    task: &str,
    context: Option<&str>,
    top: usize,
    json: bool,
) -> i32 {
    let registry = Registry::load(&tidy_path(&globals.agentpool_dir()));
    let defs = registry.definitions();
    let history = match load_history(globals) {
        Ok(history) => history,
        Err(message) => {
            eprintln!("note: scored without learned history: {message}");
            History::empty(LearningSettings::default())
        }
    };
    let success_rate = |agent: &AgentId| history.success_rate(agent);
    let mut query = SelectionQuery::new(task).with_success_rate(&success_rate);
    if let Some(context) = context {
        query = query.with_context(context);
    }
    let ranked = selector::rank(&defs, &query);
    let selected = ranked.first().filter(|s| s.score >= MIN_SCORE).map(|s| s.agent.to_string());
    let shown: Vec<&Scored> = ranked.iter().filter(|s| s.score > 0.0).take(top).collect();
    if json {
        print_json(&serde_json::json!({
            "task": task,
            "context": context,
            "min_score": MIN_SCORE,
            "selected": selected,
            "ranked": shown,
            "learning": history.settings(),
        }));
    } else {
        let mut text = explanation(task, context, &shown, defs.len(), &registry.dir());
        text.push_str(&learning_note(&shown, &history));
        out!("{text}");
    }
    if selected.is_some() { exit::OK } else { exit::FAILED }
}

/// `agents stats [--json]`: what the run store learned about each agent. 0, also when
/// nothing was learned yet; 1 when the settings or the store cannot be read.
pub fn stats(globals: &Globals, json: bool) -> i32 {
    let settings = match Settings::load(&globals.project_dir) {
        Ok(settings) => LearningSettings::from(&settings.limits),
        Err(error) => {
            eprintln!("error: {error}");
            return exit::FAILED;
        }
    };
    let path = globals.data_dir.join(RUNS_FILE);
    let outcomes = if path.exists() {
        crate::store::RunStore::open_read_only(&path).and_then(|store| store.outcomes_since(0))
    } else {
        Ok(Vec::new())
    };
    let outcomes = match outcomes {
        Ok(outcomes) => outcomes,
        Err(error) => {
            eprintln!("error: {error}");
            return exit::FAILED;
        }
    };
    let history = History::from_outcomes(&outcomes, settings, crate::bus::now_ms());
    let stats = Stats::of(&outcomes, &history);
    if json {
        print_json(&stats);
    } else {
        out!("{}", stats_text(&stats, &path));
    }
    exit::OK
}

/// The learned history of the project's run store with its `limits`.
fn load_history(globals: &Globals) -> Result<History, String> {
    let settings = Settings::load(&globals.project_dir).map_err(|e| e.to_string())?;
    let learning = LearningSettings::from(&settings.limits);
    History::load_from_dir(&globals.data_dir, learning, crate::bus::now_ms())
        .map_err(|e| e.to_string())
}

/// Why shown agents with some history got no learning boost yet.
fn learning_note(shown: &[&Scored], history: &History) -> String {
    let needed = history.settings().min_outcomes;
    let mut out = String::new();
    for scored in shown {
        if scored.breakdown.learning_boost.points > 0.0 || history.learned(&scored.agent).is_some()
        {
            continue;
        }
        if let Some(record) = history.record(&scored.agent) {
            let _ = writeln!(
                out,
                "note: {} has {} recent outcomes; learning counts from {needed} \
                 (limits.learning_min_outcomes)",
                scored.agent, record.attempts
            );
        }
    }
    out
}

fn stats_text(stats: &Stats, path: &Path) -> String {
    let mut out = String::new();
    let settings = &stats.settings;
    let sim = if settings.from_sim { "learned" } else { "ignored" };
    if stats.totals.outcomes == 0 {
        let _ = writeln!(out, "No outcomes learned yet in {}.", path.display());
        let _ = writeln!(
            out,
            "Each finished attempt of a run on a real backend is recorded (simulated attempts are \
             {sim}: limits.learn_from_sim)."
        );
        if stats.totals.simulated_ignored > 0 {
            let _ = writeln!(
                out,
                "{} simulated attempts recorded, not learned.",
                stats.totals.simulated_ignored
            );
        }
        return out;
    }
    let set_aside = match stats.totals.simulated_ignored {
        0 => String::new(),
        n => format!(" ({n} recorded earlier, set aside)"),
    };
    let _ = writeln!(
        out,
        "Learned from {} of {} agents; half-life {}, boost from {} recent outcomes, \
         simulated attempts {sim}{set_aside}\n",
        plural(stats.totals.outcomes as usize, "attempt"),
        stats.totals.agents_tracked,
        crate::words::duration(settings.half_life),
        settings.min_outcomes,
    );
    let words = |list: &[crate::learning::WordCount]| {
        list.iter().map(|w| format!("{} ({})", w.word, w.count)).collect::<Vec<_>>().join(", ")
    };
    let mut rows: Vec<[String; 6]> = stats
        .agents
        .iter()
        .map(|a| {
            [
                a.agent.to_string(),
                a.attempts.to_string(),
                format!("{:.0}%", a.success_rate * 100.0),
                short(std::time::Duration::from_millis(a.mean_duration_ms)),
                a.boost.map_or_else(|| "-".to_owned(), |b| format!("+{b:.2}")),
                words(&a.top_words),
            ]
        })
        .collect();
    rows.push([
        "(pool)".to_owned(),
        stats.totals.outcomes.to_string(),
        format!("{:.0}%", stats.totals.success_rate * 100.0),
        short(std::time::Duration::from_millis(stats.totals.mean_duration_ms)),
        String::new(),
        words(&stats.totals.top_words),
    ]);
    let header = ["AGENT", "ATTEMPTS", "SUCCESS", "MEAN", "BOOST", "SUCCEEDS ON"];
    let (left, right) = (Align::Left, Align::Right);
    for line in table::lines(header, [left, right, right, right, right, left], &rows) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
enum Severity {
    Error,
    Warning,
}

impl Severity {
    fn label(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warning => "warning",
        }
    }
}

/// One finding of `agents validate`.
#[derive(Debug, Serialize)]
struct Diagnostic {
    severity: Severity,
    #[serde(serialize_with = "lossy_path")]
    file: PathBuf,
    line: Option<usize>,
    field: Option<String>,
    message: String,
    agent: Option<String>,
}

impl Diagnostic {
    /// `file:line: field: message`.
    fn located(&self) -> String {
        let mut text = self.file.display().to_string();
        if let Some(line) = self.line {
            let _ = write!(text, ":{line}");
        }
        text.push_str(": ");
        if let Some(field) = &self.field {
            let _ = write!(text, "{field}: ");
        }
        text.push_str(&self.message);
        text
    }
}

#[derive(Debug, Serialize)]
struct ValidationReport {
    dir: PathBuf,
    files: usize,
    loaded: usize,
    errors: usize,
    warnings: usize,
    diagnostics: Vec<Diagnostic>,
    agents: Vec<AgentSummary>,
}

fn diagnostics(registry: &Registry) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let warning = |w: &crate::agents::Warning, agent: Option<String>| Diagnostic {
        severity: Severity::Warning,
        file: w.file.clone(),
        line: Some(w.line),
        field: w.field.clone(),
        message: w.message.clone(),
        agent,
    };
    for problem in registry.problems() {
        let agent = problem.agent.as_ref().map(ToString::to_string);
        for error in &problem.errors {
            out.push(Diagnostic {
                severity: Severity::Error,
                file: error.file().to_owned(),
                line: error.line(),
                field: error.field().map(str::to_owned),
                message: error.detail(),
                agent: agent.clone(),
            });
        }
        out.extend(problem.warnings.iter().map(|w| warning(w, agent.clone())));
    }
    for def in registry.definitions() {
        out.extend(def.warnings.iter().map(|w| warning(w, Some(def.name.to_string()))));
    }
    out
}

fn backend_warnings(
    defs: &[std::sync::Arc<AgentDefinition>],
    settings: &Settings,
) -> Vec<Diagnostic> {
    defs.iter()
        .filter_map(|def| {
            let backend = def.backend.as_ref()?;
            if settings.backends.contains_key(backend) {
                return None;
            }
            let known: Vec<&str> = settings.backends.keys().map(String::as_str).collect();
            Some(Diagnostic {
                severity: Severity::Warning,
                file: def.file.clone(),
                line: Some(def.line_of("backend")),
                field: Some("backend".to_owned()),
                message: format!(
                    "`{backend}` is not a backend in {} (defined: {})",
                    crate::config::SETTINGS_FILE,
                    known.join(", ")
                ),
                agent: Some(def.name.to_string()),
            })
        })
        .collect()
}

#[derive(Debug, Serialize)]
struct ListedAgent {
    id: String,
    name: String,
    tier: u8,
    category: Option<String>,
    triggers: usize,
    max_instances: u32,
    model: Option<String>,
    backend: Option<String>,
    fallback: Option<String>,
    #[serde(serialize_with = "lossy_path")]
    file: PathBuf,
    warnings: Vec<String>,
}

impl ListedAgent {
    fn of(def: &AgentDefinition) -> Self {
        Self {
            id: def.name.to_string(),
            name: def.display_name(),
            tier: def.tier,
            category: def.category.clone(),
            triggers: def.triggers.len(),
            max_instances: def.max_instances,
            model: def.model.clone(),
            backend: def.backend.clone(),
            fallback: def.fallback.as_ref().map(ToString::to_string),
            file: def.file.clone(),
            warnings: def.warnings.iter().map(crate::agents::Warning::without_file).collect(),
        }
    }
}

#[derive(Debug, Serialize)]
struct ListedProblem {
    #[serde(serialize_with = "lossy_path")]
    file: PathBuf,
    agent: Option<String>,
    errors: Vec<String>,
}

fn table(defs: &[std::sync::Arc<AgentDefinition>]) -> String {
    let rows: Vec<[String; 6]> = defs
        .iter()
        .map(|def| {
            [
                def.name.to_string(),
                def.display_name(),
                def.tier.to_string(),
                def.category.clone().unwrap_or_else(|| "-".to_owned()),
                def.triggers.len().to_string(),
                def.file.display().to_string(),
            ]
        })
        .collect();
    let header = ["ID", "NAME", "TIER", "CATEGORY", "TRIGGERS", "FILE"];
    let (left, right) = (Align::Left, Align::Right);
    let mut out = String::new();
    for line in table::lines(header, [left, left, right, left, right, left], &rows) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn explanation(
    task: &str,
    context: Option<&str>,
    shown: &[&Scored],
    pool_size: usize,
    dir: &Path,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Task: {task}");
    if let Some(context) = context {
        let _ = writeln!(out, "Context: {context}");
    }
    if pool_size == 0 {
        let _ =
            writeln!(out, "No agent matches: there are no agent definitions in {}.", dir.display());
        return out;
    }
    for (rank, scored) in shown.iter().enumerate() {
        let below = if scored.score < MIN_SCORE {
            format!("  (below the minimum {MIN_SCORE:.1})")
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{:>3}. {}  tier {}  score {:.2}{below}",
            rank + 1,
            scored.agent,
            scored.tier,
            scored.score
        );
        if scored.breakdown.triggers_from_name {
            let _ = writeln!(out, "       (no triggers: words of the name stand in for them)");
        }
        for (label, component) in scored.breakdown.components() {
            // A learning boost of +0.00 still says why: none of its recent attempts succeeded.
            if component.points > 0.0 || !component.matched.is_empty() {
                let _ = writeln!(
                    out,
                    "       {label:<18} +{:.2}  {}",
                    component.points,
                    component.matched.join(", ")
                );
            }
        }
    }
    match shown.first() {
        Some(best) if best.score >= MIN_SCORE => {
            let _ = writeln!(out, "Selected: {} (score {:.2})", best.agent, best.score);
        }
        Some(best) => {
            let _ = writeln!(
                out,
                "No agent matches: the best score is {:.2} ({}), below the minimum {MIN_SCORE:.1}.",
                best.score, best.agent
            );
        }
        None => {
            let _ = writeln!(
                out,
                "No agent matches: no trigger, name, description, category or focus area of the {pool_size} agents appears in the task.",
            );
        }
    }
    out
}

fn change_line(envelope: &Envelope, json: bool) -> String {
    if json {
        return serde_json::to_string(envelope)
            .unwrap_or_else(|error| format!("{{\"error\":\"{error}\"}}"));
    }
    match &envelope.event {
        Event::AgentAdded(summary) => {
            format!("added    {}  {}", summary.agent, summary.file.display())
        }
        Event::AgentUpdated(summary) => {
            format!("updated  {}  {}", summary.agent, summary.file.display())
        }
        Event::AgentRemoved { agent, file } => format!("removed  {agent}  {}", file.display()),
        Event::AgentInvalid { file, agent, error } => {
            let agent = agent.as_ref().map_or_else(|| "-".to_owned(), ToString::to_string);
            format!("invalid  {agent}  {}  {error}", file.display())
        }
        Event::AgentFileCleared { file } => format!("cleared  -  {}", file.display()),
        other => other.kind().to_owned(),
    }
}

/// A file name as JSON text: a name that is not UTF-8 (which JSON cannot carry) shows its
/// bad bytes as U+FFFD rather than failing the whole listing.
fn lossy_path<S: serde::Serializer>(path: &std::path::Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&path.to_string_lossy())
}

fn print_json(value: &impl Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => outln!("{text}"),
        Err(error) => eprintln!("error: cannot write JSON: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_aligned() {
        let mut a = AgentDefinition::new("api-designer", "d");
        a.tier = 1;
        a.category = Some("architecture".into());
        a.triggers = vec!["api".into(); 12];
        a.file = PathBuf::from("agentpool/tier1-core/api-designer.md");
        let mut b = AgentDefinition::new("rust-pro", "d");
        b.file = PathBuf::from("agentpool/tier2-specialized/rust-pro.md");
        let text = table(&[std::sync::Arc::new(a), std::sync::Arc::new(b)]);
        assert_eq!(
            text,
            "ID            NAME          TIER  CATEGORY      TRIGGERS  FILE\n\
             api-designer  Api Designer     1  architecture        12  agentpool/tier1-core/api-designer.md\n\
             rust-pro      Rust Pro         2  -                    0  agentpool/tier2-specialized/rust-pro.md\n"
        );
    }
}

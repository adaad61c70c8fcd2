//! Limits and budgets, end to end: a real OpenAI-compatible server on 127.0.0.1 answers with
//! token usage, the runtime runs real workflows against it, and the events, the model and
//! `runs show` say what was spent, what waited on a rate limit and what a budget stopped.
//! Also: a safety `confirm` hold frees its `max_parallel` slot.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use flightdeck::command::{Command, Request};
use flightdeck::config::Settings;
use flightdeck::event::{BudgetMeasure, BudgetScope, Envelope, Event, RunStatus};
use flightdeck::model::{OutputKeep, RunModel};
use flightdeck::runtime::{Runtime, RuntimeOptions};
use flightdeck::workflow::PlanOverrides;
use serde_json::json;
use support::{ConnectionMode, FakeServer, Reply};
use tempfile::TempDir;

/// A chat completion reporting `prompt` input and `completion` output tokens.
fn answer(prompt: u64, completion: u64) -> Reply {
    Reply::json(
        200,
        &json!({
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "done"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        }),
    )
}

/// A project whose agent `writer` runs on backend `api` (the fake server, model `m1`), with
/// `extra` settings and the workflow `yaml`.
fn project(url: &str, extra: &str, yaml: &str) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(
        root.join("flightdeck.yaml"),
        format!(
            "users:\n  ann: admin\n  rita: reviewer\ndefault_backend: api\nbackends:\n  api:\n    \
             kind: openai\n    base_url: {url}/v1\n    model: m1\n    stream: false\n    \
             max_retries: 0\n{extra}"
        ),
    )
    .unwrap();
    let agents = root.join("agentpool/tier1-core");
    std::fs::create_dir_all(&agents).unwrap();
    std::fs::write(
        agents.join("writer.md"),
        "---\nname: writer\ndescription: Writes text\nbackend: api\n---\nYou write.\n",
    )
    .unwrap();
    std::fs::write(root.join("wf.yaml"), yaml).unwrap();
    dir
}

fn runtime(root: &Path) -> Runtime {
    Runtime::start(RuntimeOptions {
        project_dir: root.to_owned(),
        data_dir: root.join(".flightdeck"),
        settings: Settings::load(root).unwrap(),
        watch_agents: false,
    })
    .unwrap()
}

/// Runs `wf.yaml` to its end; `on_event` may act on each event (approve, check order).
async fn run_to_end(
    runtime: &Runtime,
    root: &Path,
    mut on_event: impl AsyncFnMut(&Runtime, &Envelope),
) -> (RunStatus, Vec<Envelope>) {
    let mut events = runtime.bus().sink();
    let plan = runtime.plan(&root.join("wf.yaml"), &PlanOverrides::default()).unwrap();
    let handle = runtime.start_planned("ann", plan).unwrap();
    let run = handle.id().clone();
    let until = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let envelope = tokio::time::timeout_at(until.into(), events.recv())
            .await
            .expect("the run ended in time")
            .unwrap();
        if envelope.run_id.as_ref() != Some(&run) {
            continue;
        }
        on_event(runtime, &envelope).await;
        let envelope = (*envelope).clone();
        let finished = match &envelope.event {
            Event::RunFinished { status, .. } => Some(*status),
            _ => None,
        };
        seen.push(envelope);
        if let Some(status) = finished {
            return (status, seen);
        }
    }
}

fn kinds<'a>(events: &'a [Envelope], kind: &str) -> Vec<&'a Event> {
    events.iter().map(|e| &e.event).filter(|e| e.kind() == kind).collect()
}

async fn nothing(_: &Runtime, _: &Envelope) {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_minute_holds_attempts_back_and_says_so() {
    let server = FakeServer::start_with(ConnectionMode::Close, vec![], Some(answer(5, 5))).await;
    // 120 a minute: one every 500 ms, two at once (a second's worth).
    let dir = project(
        &server.url,
        "rate_limits:\n  api: {requests_per_minute: 120}\n",
        "name: wf\nmax_parallel: 4\ntasks:\n  - {id: a, description: A, agent: writer}\n  \
         - {id: b, description: B, agent: writer}\n  - {id: c, description: C, agent: writer}\n",
    );
    let runtime = runtime(dir.path());
    let (status, events) = run_to_end(&runtime, dir.path(), nothing).await;
    assert_eq!(status, RunStatus::Succeeded);
    let limited = kinds(&events, "rate_limited");
    assert!(!limited.is_empty(), "the third request waited: {events:?}");
    for event in &limited {
        let Event::RateLimited { backend, limit, wait_ms, .. } = event else { unreachable!() };
        assert_eq!(backend, "api");
        assert_eq!(limit, "requests_per_minute");
        assert!(*wait_ms > 0 && *wait_ms <= 1_000, "{wait_ms}");
    }
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    let spread = requests[2].at.duration_since(requests[0].at);
    assert!(spread >= Duration::from_millis(400), "the third waited its turn: {spread:?}");
    // The model shows the wait while it lasts, and clears it when the attempt starts.
    let mut model = RunModel::new(OutputKeep::None);
    let mut shown = false;
    for envelope in &events {
        model.apply(envelope);
        shown |= model.tasks.iter().any(|t| {
            t.rate_limited
                .as_ref()
                .is_some_and(|w| w.describe().starts_with("waiting on rate limit: api"))
        });
    }
    assert!(shown);
    assert!(model.tasks.iter().all(|t| t.rate_limited.is_none()));
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_per_minute_waits_until_the_reported_tokens_are_paid_back() {
    // 6,000 a minute is 100 a second; the first answer reports 6,100: 100 in debt.
    let server =
        FakeServer::start_with(ConnectionMode::Close, vec![answer(6_000, 100)], Some(answer(1, 1)))
            .await;
    let dir = project(
        &server.url,
        "rate_limits:\n  api: {tokens_per_minute: 6000}\n",
        "name: wf\ntasks:\n  - {id: a, description: A, agent: writer}\n  \
         - {id: b, description: B, agent: writer, depends_on: [a]}\n",
    );
    let runtime = runtime(dir.path());
    let (status, events) = run_to_end(&runtime, dir.path(), nothing).await;
    assert_eq!(status, RunStatus::Succeeded);
    let limited = kinds(&events, "rate_limited");
    assert_eq!(limited.len(), 1, "{events:?}");
    let Event::RateLimited { task, limit, wait_ms, .. } = limited[0] else { unreachable!() };
    assert_eq!(task.as_str(), "b");
    assert_eq!(limit, "tokens_per_minute");
    assert!((900..=1_100).contains(wait_ms), "100 tokens of debt at 100/s: {wait_ms}");
    let requests = server.requests();
    assert!(requests[1].at.duration_since(requests[0].at) >= Duration::from_millis(900));
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_budget_stops_the_task_and_its_dependents_are_skipped() {
    let server = FakeServer::start_with(ConnectionMode::Close, vec![], Some(answer(90, 60))).await;
    let dir = project(
        &server.url,
        "",
        "name: wf\ntasks:\n  - {id: a, description: A, agent: writer, budget: {tokens: 100}}\n  \
         - {id: b, description: B, agent: writer, depends_on: [a]}\n",
    );
    let runtime = runtime(dir.path());
    let (status, events) = run_to_end(&runtime, dir.path(), nothing).await;
    assert_eq!(status, RunStatus::Failed);
    let exceeded = kinds(&events, "budget_exceeded");
    assert_eq!(exceeded.len(), 1);
    let Event::BudgetExceeded { scope, measure, spent, limit, .. } = exceeded[0] else {
        unreachable!()
    };
    assert_eq!((*scope, *measure), (BudgetScope::Task, BudgetMeasure::Tokens));
    assert_eq!((*spent, *limit), (150.0, 100.0));
    let failed = kinds(&events, "task_failed");
    let Event::TaskFailed { error, .. } = failed[0] else { unreachable!() };
    assert!(
        error.contains("budget reached: the task spent 150 tokens of its 100 tokens budget"),
        "{error}"
    );
    assert!(kinds(&events, "task_succeeded").is_empty(), "its output never flowed on");
    assert_eq!(kinds(&events, "task_skipped").len(), 1);
    assert_eq!(server.requests().len(), 1, "b never asked the backend");
    runtime.shutdown().await;
}

/// A chat completion whose answer ends with a panel verdict for `decision`.
fn verdict(prompt: u64, completion: u64, decision: &str) -> Reply {
    let verdict = json!({
        "decision": decision, "rationale": "fits the load we measured", "alternatives": [],
        "tradeoffs": "none worth naming", "evidence": [], "confidence": 0.8
    });
    Reply::json(
        200,
        &json!({
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("My verdict.\n{verdict}")}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        }),
    )
}

/// A panel of `writer` and `critic` (both on the fake server) choosing between two options.
fn panel_project(url: &str, budget: &str) -> TempDir {
    let dir = project(
        url,
        "",
        &format!(
            "name: wf\ntasks:\n  - id: pick\n    description: Pick a cache\n    panel: [writer, \
             critic]\n    options: [redis, memcached]\n{budget}"
        ),
    );
    std::fs::write(
        dir.path().join("agentpool/tier1-core/critic.md"),
        "---\nname: critic\ndescription: Criticises text\nbackend: api\n---\nYou criticise.\n",
    )
    .unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panels_calls_are_spent_like_attempts() {
    let server =
        FakeServer::start_with(ConnectionMode::Close, vec![], Some(verdict(12, 8, "redis"))).await;
    let dir = panel_project(&server.url, "");
    let runtime = runtime(dir.path());
    let (status, events) = run_to_end(&runtime, dir.path(), nothing).await;
    assert_eq!(status, RunStatus::Succeeded);
    assert_eq!(kinds(&events, "panel_agreed").len(), 1);
    let spent: Vec<u64> = kinds(&events, "task_spent")
        .into_iter()
        .map(|e| match e {
            Event::TaskSpent { tokens, .. } => *tokens,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(spent, [20, 20], "one per member");
    let model = RunModel::from_events(&events, OutputKeep::None);
    let task = model.task(&flightdeck::ids::TaskId::new("pick")).unwrap();
    assert_eq!(task.spend.tokens, 40, "the task details and `runs show` count both members");
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panels_members_wait_on_their_backends_rate_limit() {
    let server =
        FakeServer::start_with(ConnectionMode::Close, vec![], Some(verdict(12, 8, "redis"))).await;
    let dir = panel_project(&server.url, "");
    let settings = dir.path().join("flightdeck.yaml");
    let mut text = std::fs::read_to_string(&settings).unwrap();
    // 60 a minute: one a second, one at once.
    text.push_str("rate_limits:\n  api: {requests_per_minute: 60}\n");
    std::fs::write(&settings, text).unwrap();
    let runtime = runtime(dir.path());
    let began = Instant::now();
    let (status, events) = run_to_end(&runtime, dir.path(), nothing).await;
    assert_eq!(status, RunStatus::Succeeded);
    let limited = kinds(&events, "rate_limited");
    assert!(!limited.is_empty(), "the second member waited and said so");
    assert!(began.elapsed() >= Duration::from_millis(700), "{:?}", began.elapsed());
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panel_stops_at_its_budget_and_no_verdict_past_it_counts() {
    let server =
        FakeServer::start_with(ConnectionMode::Close, vec![], Some(verdict(12, 8, "redis"))).await;
    let dir = panel_project(&server.url, "    budget: {tokens: 30}\n");
    let runtime = runtime(dir.path());
    let (status, events) = run_to_end(&runtime, dir.path(), nothing).await;
    assert_eq!(status, RunStatus::Failed);
    assert_eq!(kinds(&events, "task_spent").len(), 2, "both members had answered");
    let exceeded = kinds(&events, "budget_exceeded");
    assert_eq!(exceeded.len(), 1, "{exceeded:?}");
    assert!(
        kinds(&events, "panel_agreed").is_empty(),
        "the verdict past the budget is not counted"
    );
    let failed = kinds(&events, "task_failed");
    let Event::TaskFailed { error, .. } = failed[0] else { unreachable!() };
    assert!(
        error.contains("panel: budget reached: the task spent 40 tokens of its 30 tokens budget"),
        "{error}"
    );
    assert_eq!(server.requests().len(), 2, "nobody was asked again");
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cost_budget_warns_at_80_percent_then_stops_the_run_priced_per_model() {
    // 10 in, 20 out at $1,000 / $2,000 per million: $0.05 an attempt.
    let server = FakeServer::start_with(ConnectionMode::Close, vec![], Some(answer(10, 20))).await;
    let dir = project(
        &server.url,
        "prices:\n  m1: {input_per_mtok: 1000, output_per_mtok: 2000}\n",
        "name: wf\nbudget: {cost_usd: 0.12}\ntasks:\n  - {id: a, description: A, agent: writer}\n  \
         - {id: b, description: B, agent: writer, depends_on: [a]}\n  \
         - {id: c, description: C, agent: writer, depends_on: [b]}\n  \
         - {id: d, description: D, agent: writer, depends_on: [c]}\n",
    );
    let runtime = runtime(dir.path());
    let (status, events) = run_to_end(&runtime, dir.path(), nothing).await;
    assert_eq!(status, RunStatus::Failed);
    let spent: Vec<f64> = kinds(&events, "task_spent")
        .iter()
        .map(|e| match e {
            Event::TaskSpent { tokens, cost_usd, .. } => {
                assert_eq!(*tokens, 30);
                cost_usd.unwrap()
            }
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(spent.len(), 3, "a, b, then c reached the budget; d never ran");
    assert!(spent.iter().all(|c| (c - 0.05).abs() < 1e-9), "{spent:?}");
    let warnings = kinds(&events, "budget_warning");
    assert_eq!(warnings.len(), 1, "$0.10 of $0.12 is past 80%, warned once: {events:?}");
    let Event::BudgetWarning { task, scope, .. } = warnings[0] else { unreachable!() };
    assert_eq!((task.as_str(), *scope), ("b", BudgetScope::Run));
    let Event::TaskFailed { task, error, .. } = kinds(&events, "task_failed")[0] else {
        unreachable!()
    };
    assert_eq!(task.as_str(), "c");
    assert!(error.contains("the run spent $0.1500 of its $0.1200 budget"), "{error}");
    // The succeeded answers carry the priced cost in their details.
    let Event::TaskSucceeded { details, .. } = kinds(&events, "task_succeeded")[0] else {
        unreachable!()
    };
    assert!((details.cost_usd.unwrap() - 0.05).abs() < 1e-9);
    let model = RunModel::from_events(&events, OutputKeep::None);
    assert_eq!(model.spend.tokens, 90);
    assert!((model.spend.cost_usd - 0.15).abs() < 1e-9);
    assert!(model.budget_note.as_deref().unwrap().starts_with("run budget reached"));
    runtime.shutdown().await;

    // `runs show` says what was spent.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_flightdeck"))
        .args(["--project-dir", dir.path().to_str().unwrap(), "--as", "ann", "runs", "show"])
        .arg(events[0].run_id.as_ref().unwrap().as_str())
        .env_remove("FLIGHTDECK_USER")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("spent     90 tokens, $0.1500"), "{text}");
    assert!(text.contains("budget    run budget reached: $0.1500 of $0.1200"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_budget_approve_holds_the_output_until_a_reviewer_raises_the_budget() {
    let server = FakeServer::start_with(ConnectionMode::Close, vec![], Some(answer(60, 40))).await;
    let dir = project(
        &server.url,
        "policies:\n  on_budget: approve\n  budget: {tokens: 150}\n",
        "name: wf\ntasks:\n  - {id: a, description: A, agent: writer}\n  \
         - {id: b, description: B, agent: writer, depends_on: [a]}\n",
    );
    let runtime = runtime(dir.path());
    let mut asked = 0;
    let (status, events) = run_to_end(&runtime, dir.path(), async |runtime, envelope| {
        if let Event::ApprovalRequested { task, reasons, .. } = &envelope.event {
            asked += 1;
            assert!(reasons[0].contains("the run spent 200 tokens of its 150 tokens budget"));
            let request = Request {
                user: "rita".into(),
                command: Command::Approve {
                    run: envelope.run_id.clone().unwrap(),
                    task: task.clone(),
                    note: None,
                },
            };
            runtime.submit(request).await.unwrap();
        }
    })
    .await;
    assert_eq!(status, RunStatus::Succeeded, "{events:?}");
    assert_eq!(asked, 1, "raised to 300 tokens, b's 200 fit");
    assert_eq!(kinds(&events, "task_succeeded").len(), 2);
    runtime.shutdown().await;
}

/// A `confirm` hold waits outside its worker: with `max_parallel: 1`, the other task runs
/// (and succeeds) while the held output waits for a reviewer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_safety_confirm_hold_frees_its_slot() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(
        root.join("flightdeck.yaml"),
        "users:\n  ann: admin\n  rita: reviewer\ndefault_backend: local\nbackends:\n  local:\n    \
         kind: process\n    command: [sh, agent.sh, '{task}']\n    env_allow: [PATH]\n",
    )
    .unwrap();
    std::fs::write(
        root.join("agent.sh"),
        "if [ \"$1\" = held ]; then echo 'DELETE FROM sessions WHERE old;'; else echo fine; fi\n",
    )
    .unwrap();
    let agents = root.join("agentpool/tier1-core");
    std::fs::create_dir_all(&agents).unwrap();
    std::fs::write(
        agents.join("dba.md"),
        "---\nname: dba\ndescription: Writes SQL\nbackend: local\n---\nYou write SQL.\n",
    )
    .unwrap();
    std::fs::write(
        root.join("wf.yaml"),
        "name: wf\nmax_parallel: 1\ntasks:\n  - {id: held, description: Clean up, agent: dba}\n  \
         - {id: free, description: Report, agent: dba}\n",
    )
    .unwrap();
    let runtime = runtime(root);
    let mut request = None;
    let mut free_done_while_held = false;
    let (status, events) =
        run_to_end(&runtime, root, async |runtime, envelope| match &envelope.event {
            Event::ApprovalRequested { task, .. } => {
                request = Some((envelope.run_id.clone().unwrap(), task.clone()));
            }
            Event::TaskSucceeded { task, .. } if task.as_str() == "free" => {
                // Only now, with `free` done, does the reviewer approve `held`.
                let (run, task) = request.clone().expect("held asked first");
                free_done_while_held = true;
                let approve = Command::Approve { run, task, note: None };
                runtime.submit(Request { user: "rita".into(), command: approve }).await.unwrap();
            }
            _ => {}
        })
        .await;
    assert_eq!(status, RunStatus::Succeeded, "{events:?}");
    assert!(free_done_while_held);
    assert_eq!(kinds(&events, "task_succeeded").len(), 2);
    runtime.shutdown().await;
}

#[test]
fn bad_limits_are_named_with_file_line_and_field() {
    let bad = [
        (
            "rate_limits:\n  nowhere: {requests_per_minute: 5}\n",
            "flightdeck.yaml:2: rate_limits.nowhere: `nowhere` is not one of the backends defined",
        ),
        (
            "rate_limits:\n  sim:\n    requests_per_minute: 0\n",
            "flightdeck.yaml:3: rate_limits.sim.requests_per_minute: must be at least 1",
        ),
        (
            "prices:\n  m1:\n    input_per_mtok: -1\n",
            "flightdeck.yaml:3: prices.m1.input_per_mtok: -1 is not a price",
        ),
        (
            "policies:\n  budget:\n    cost_usd: 0\n",
            "flightdeck.yaml:3: policies.budget.cost_usd: 0 is not an amount above 0",
        ),
        ("policies:\n  on_budget: pause\n", "flightdeck.yaml:2:"),
    ];
    for (text, expected) in bad {
        let error = Settings::parse(text, Path::new("flightdeck.yaml")).unwrap_err().to_string();
        assert!(error.starts_with(expected), "{text}: {error}");
    }
    let workflow = "name: w\ntasks:\n  - id: a\n    description: A\n    budget: {tokens: 0}\n";
    let error = flightdeck::workflow::Workflow::parse(workflow, Path::new("w.yaml"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("w.yaml:5: task `a`: budget.tokens: must be at least 1"), "{error}");
}

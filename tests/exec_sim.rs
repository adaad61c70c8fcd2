//! The rehearsal backend: deterministic per (seed, task, attempt), labelled as simulated,
//! honouring timeout and cancel on tokio's paused clock.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flightdeck::config::SimBackend;
use flightdeck::event::OutputStream;
use flightdeck::exec::sim::SimExecutor;
use flightdeck::exec::{ExecError, ExecOutcome, ExecRequest, Executor, OutputSink};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

fn config(latency_ms: (u64, u64), failure_rate: f64, seed: u64) -> SimBackend {
    SimBackend {
        latency_min: Duration::from_millis(latency_ms.0),
        latency_max: Duration::from_millis(latency_ms.1),
        failure_rate,
        seed,
        ..SimBackend::default()
    }
}

fn request(task: &str, attempt: u32, timeout: Duration) -> ExecRequest {
    ExecRequest {
        run: "r-sim".into(),
        task: task.into(),
        agent: "backend-architect".into(),
        attempt,
        system_prompt: "You design backends.".into(),
        task_description: "Design the orders API".into(),
        context: serde_json::Value::Null,
        timeout,
        project_dir: PathBuf::from("."),
        model: None,
        tools: Vec::new(),
        workdir: None,
    }
}

type Seen = Arc<Mutex<Vec<(OutputStream, String)>>>;

fn sink() -> (OutputSink, Seen) {
    let seen: Seen = Arc::default();
    let store = Arc::clone(&seen);
    (Arc::new(move |stream, text| store.lock().unwrap().push((stream, text))), seen)
}

async fn run(executor: &SimExecutor, req: ExecRequest) -> Result<ExecOutcome, ExecError> {
    let (sink, _) = sink();
    executor.execute(req, sink, CancellationToken::new()).await
}

const LONG: Duration = Duration::from_secs(3600);

#[tokio::test(start_paused = true)]
async fn output_and_lines_say_they_are_simulated() {
    let executor = SimExecutor::new(config((200, 400), 0.0, 7));
    assert!(executor.is_simulated());
    assert_eq!(executor.kind(), "sim");
    let (sink, seen) = sink();
    let outcome =
        executor.execute(request("design", 1, LONG), sink, CancellationToken::new()).await.unwrap();
    assert_eq!(outcome.output, "[simulated] backend-architect completed: Design the orders API");
    assert_eq!(outcome.usage, None);
    let seen = seen.lock().unwrap();
    assert!(seen.len() >= 2, "{seen:?}");
    assert!(seen.iter().all(|(_, line)| line.starts_with("[sim] ")), "{seen:?}");
}

#[tokio::test(start_paused = true)]
async fn latency_is_the_planned_one_within_bounds() {
    let executor = SimExecutor::new(config((200, 900), 0.0, 11));
    for task in ["a", "b", "c", "d", "e"] {
        let plan = executor.plan(&task.into(), 1);
        assert!(
            plan.latency >= Duration::from_millis(200)
                && plan.latency <= Duration::from_millis(900)
        );
        let started = Instant::now();
        run(&executor, request(task, 1, LONG)).await.unwrap();
        assert_eq!(started.elapsed(), plan.latency, "task {task}");
    }
}

#[tokio::test(start_paused = true)]
async fn same_seed_task_and_attempt_give_the_same_result_in_any_order() {
    let executor = Arc::new(SimExecutor::new(config((10, 500), 0.5, 99)));
    let tasks: Vec<String> = (0..40).map(|i| format!("task-{i}")).collect();

    let mut sequential = Vec::new();
    for task in &tasks {
        sequential.push(run(&executor, request(task, 1, LONG)).await.is_ok());
    }
    // The same tasks, concurrently and in reverse order.
    let handles: Vec<_> = tasks
        .iter()
        .rev()
        .map(|task| {
            let executor = Arc::clone(&executor);
            let req = request(task, 1, LONG);
            tokio::spawn(async move { run(&executor, req).await.is_ok() })
        })
        .collect();
    let mut concurrent = Vec::new();
    for handle in handles {
        concurrent.push(handle.await.unwrap());
    }
    concurrent.reverse();
    assert_eq!(sequential, concurrent);
    assert!(sequential.iter().any(|ok| *ok) && sequential.iter().any(|ok| !*ok), "{sequential:?}");

    let again = SimExecutor::new(config((10, 500), 0.5, 99));
    let other_seed = SimExecutor::new(config((10, 500), 0.5, 100));
    let plans: Vec<_> = tasks.iter().map(|t| executor.plan(&t.as_str().into(), 1)).collect();
    assert_eq!(plans, tasks.iter().map(|t| again.plan(&t.as_str().into(), 1)).collect::<Vec<_>>());
    assert_ne!(
        plans,
        tasks.iter().map(|t| other_seed.plan(&t.as_str().into(), 1)).collect::<Vec<_>>()
    );
    assert_ne!(
        plans,
        tasks.iter().map(|t| executor.plan(&t.as_str().into(), 2)).collect::<Vec<_>>()
    );
}

#[tokio::test(start_paused = true)]
async fn failure_rate_is_honoured() {
    let never = SimExecutor::new(config((0, 0), 0.0, 1));
    let always = SimExecutor::new(config((0, 0), 1.0, 1));
    let sometimes = SimExecutor::new(config((0, 0), 0.3, 1));
    let mut failures = 0;
    for i in 0..1000 {
        let task = format!("t{i}");
        assert!(run(&never, request(&task, 1, LONG)).await.is_ok());
        match run(&always, request(&task, 1, LONG)).await {
            Err(ExecError::Simulated(message)) => {
                assert!(message.contains(&task), "{message}");
            }
            other => panic!("expected a simulated failure, got {other:?}"),
        }
        if run(&sometimes, request(&task, 1, LONG)).await.is_err() {
            failures += 1;
        }
    }
    assert!((230..=370).contains(&failures), "{failures} of 1000 failed at rate 0.3");
}

#[tokio::test(start_paused = true)]
async fn timeout_ends_a_slow_attempt_on_time() {
    let executor = SimExecutor::new(config((10_000, 10_000), 0.0, 1));
    let timeout = Duration::from_secs(2);
    let started = Instant::now();
    let result = run(&executor, request("slow", 1, timeout)).await;
    assert_eq!(result.unwrap_err(), ExecError::Timeout(timeout));
    assert_eq!(started.elapsed(), timeout);
}

#[tokio::test(start_paused = true)]
async fn cancel_stops_the_attempt() {
    let executor = SimExecutor::new(config((10_000, 10_000), 0.0, 1));
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        trigger.cancel();
    });
    let started = Instant::now();
    let (output, _) = sink();
    let result = executor.execute(request("slow", 1, LONG), output, cancel).await;
    assert_eq!(result.unwrap_err(), ExecError::Cancelled);
    assert_eq!(started.elapsed(), Duration::from_millis(1500));

    let cancelled = CancellationToken::new();
    cancelled.cancel();
    let instant = SimExecutor::new(config((0, 0), 0.0, 1));
    let (output, _) = sink();
    assert_eq!(
        instant.execute(request("t", 1, LONG), output, cancelled).await.unwrap_err(),
        ExecError::Cancelled
    );
}

#[tokio::test]
async fn zero_latency_costs_next_to_nothing() {
    let executor = SimExecutor::new(config((0, 0), 0.1, 3));
    let sink: OutputSink = Arc::new(|_, _| {});
    let started = std::time::Instant::now();
    for i in 0..10_000 {
        let _ = executor
            .execute(request(&format!("t{i}"), 1, LONG), sink.clone(), CancellationToken::new())
            .await;
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(2), "10,000 zero-latency attempts took {elapsed:?}");
}

//! Engine throughput: 10,000-task workflows on a zero-latency `sim` backend at max_parallel
//! 8, with every event persisted to the SQLite run store (timed until the store is flushed).
//!
//! Shapes: a chain, a fan-out/fan-in (1 → 9,998 → 1) and a layered DAG (100 layers of 100,
//! each task depending on 1–3 tasks of the previous layer, fixed seed). Targets: ≤ 10 µs per
//! task and ≤ 64 MB peak RSS.
//!
//! `cargo bench --bench engine`. Each shape runs in its own process so that its peak RSS
//! (VmHWM from /proc/self/status) is its own; both tokio flavours are measured.

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use flightdeck::config::Settings;
use flightdeck::runtime::{Runtime, RuntimeOptions};
use flightdeck::workflow::PlanOverrides;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom as _;
use rand::{Rng as _, SeedableRng as _};

const TASKS: usize = 10_000;
const ROUNDS: usize = 3;
const SHAPES: [&str; 3] = ["chain", "fan", "layered"];
const FLAVOURS: [&str; 2] = ["current_thread", "multi_thread"];

const SETTINGS: &str = "default_role: admin
backends:
  sim:
    kind: sim
    latency_min: 0ms
    latency_max: 0ms
";

const AGENT: &str = "---
name: worker
description: Does any work at all
max_instances: 8
---
You work.
";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--shape") {
        measure(&args[at + 1], &args[at + 2]);
        return;
    }
    let me = std::env::current_exe().unwrap();
    println!("engine: {TASKS} tasks, max_parallel 8, zero-latency sim, every event stored");
    for flavour in FLAVOURS {
        for shape in SHAPES {
            let output = Command::new(&me).args(["--shape", shape, flavour]).output().unwrap();
            print!("{}", String::from_utf8_lossy(&output.stdout));
            if !output.status.success() {
                eprint!("{}", String::from_utf8_lossy(&output.stderr));
            }
        }
    }
}

fn measure(shape: &str, flavour: &str) {
    let project = tempfile::tempdir().unwrap();
    write_project(project.path(), shape);
    let tokio = match flavour {
        "current_thread" => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        _ => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    }
    .unwrap();
    let mut per_task = Vec::new();
    let mut cpu_per_task = Vec::new();
    let mut plan_time = Duration::ZERO;
    for round in 0..ROUNDS {
        let (planned, ran, cpu) = tokio.block_on(round_trip(project.path(), round));
        plan_time = planned;
        per_task.push(ran.as_secs_f64() * 1e6 / TASKS as f64);
        cpu_per_task.push(cpu.as_secs_f64() * 1e6 / TASKS as f64);
    }
    per_task.sort_by(f64::total_cmp);
    cpu_per_task.sort_by(f64::total_cmp);
    println!(
        "{shape:>8} {flavour:<14} {:6.2} µs/task wall (best of {ROUNDS}; median {:.2}), \
         {:6.2} µs/task CPU all threads  parse+plan {:4} ms  peak RSS {:5.1} MB",
        per_task[0],
        per_task[ROUNDS / 2],
        cpu_per_task[0],
        plan_time.as_millis(),
        peak_rss_mb(),
    );
}

/// Plan, then run until the last event is in the store. Returns the plan time, and the wall
/// and CPU time of the run.
async fn round_trip(project: &Path, round: usize) -> (Duration, Duration, Duration) {
    let settings = Settings::parse(SETTINGS, Path::new("flightdeck.yaml")).unwrap();
    let runtime = Runtime::start(RuntimeOptions {
        project_dir: project.to_owned(),
        data_dir: project.join(format!(".flightdeck-{round}")),
        settings,
        watch_agents: false,
    })
    .unwrap();
    let began = Instant::now();
    let plan = runtime.plan(Path::new("workflows/bench.yaml"), &PlanOverrides::default()).unwrap();
    let planned = began.elapsed();
    let began = Instant::now();
    let cpu_before = cpu_time();
    let handle = runtime.start_planned("bench", plan).unwrap();
    let status = handle.wait().await;
    runtime.flush().await.unwrap();
    let ran = began.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_before);
    assert_eq!(status, flightdeck::event::RunStatus::Succeeded);
    runtime.shutdown().await;
    (planned, ran, cpu)
}

fn write_project(dir: &Path, shape: &str) {
    std::fs::create_dir_all(dir.join("agentpool/tier1-core")).unwrap();
    std::fs::create_dir_all(dir.join("workflows")).unwrap();
    std::fs::write(dir.join("agentpool/tier1-core/worker.md"), AGENT).unwrap();
    std::fs::write(dir.join("workflows/bench.yaml"), workflow(shape)).unwrap();
}

fn workflow(shape: &str) -> String {
    let mut text = String::from("name: bench\nmax_parallel: 8\ntasks:\n");
    let mut task = |text: &mut String, id: &str, deps: &[String]| {
        let _ = write!(text, "  - id: {id}\n    description: step {id}\n    agent: worker\n");
        if !deps.is_empty() {
            let _ = writeln!(text, "    depends_on: [{}]", deps.join(", "));
        }
    };
    match shape {
        "chain" => {
            for i in 0..TASKS {
                let deps = if i == 0 { vec![] } else { vec![format!("t{}", i - 1)] };
                task(&mut text, &format!("t{i}"), &deps);
            }
        }
        "fan" => {
            task(&mut text, "root", &[]);
            let middle: Vec<String> = (0..TASKS - 2).map(|i| format!("t{i}")).collect();
            for id in &middle {
                task(&mut text, id, &["root".to_owned()]);
            }
            task(&mut text, "sink", &middle);
        }
        _ => {
            const WIDTH: usize = 100;
            let mut rng = StdRng::seed_from_u64(42);
            let mut previous: Vec<String> = Vec::new();
            for layer in 0..TASKS / WIDTH {
                let current: Vec<String> = (0..WIDTH).map(|j| format!("l{layer}_{j}")).collect();
                for id in &current {
                    let count = rng.random_range(1..=3).min(previous.len());
                    let deps: Vec<String> =
                        previous.choose_multiple(&mut rng, count).cloned().collect();
                    task(&mut text, id, &deps);
                }
                previous = current;
            }
        }
    }
    text
}

/// Peak resident set size of this process, from /proc/self/status.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// User and system time of every thread of this process so far (10 ms resolution).
fn cpu_time() -> Duration {
    const TICKS_PER_SECOND: u64 = 100;
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> =
        after_name.split_whitespace().skip(11).take(2).filter_map(|f| f.parse().ok()).collect();
    let ticks: u64 = fields.iter().sum();
    Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND)
}

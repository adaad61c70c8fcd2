//! Engine throughput: 10,000-task workflows on a zero-latency `sim` backend at
//! `max_parallel: 8`, with every event persisted to the `SQLite` run store (timed until the
//! store is flushed).
//!
//! Shapes: a chain, a fan-out/fan-in (1 → 9,998 → 1) and a layered DAG (100 layers of 100,
//! each task depending on 1–3 tasks of the previous layer, fixed seed). Targets: ≤ 10 µs per
//! task and ≤ 64 MB peak RSS.
//!
//! Pacing: a fan-out of 1,000 tasks of exactly 10 ms each at `max_parallel: 8` has an ideal
//! of 127 waves × 10 ms = 1.27 s (root, 998 tasks in 125 waves, sink); the run must stay
//! within 5% of it, i.e. slots are refilled at once and timers do not add up.
//!
//! `cargo bench --bench engine`. Each measurement runs in its own process so that its peak
//! RSS (`VmHWM` from `/proc/self/status`) is its own; both tokio flavours are measured.

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

/// The allocator the `flightdeck` binary uses, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TASKS: usize = 10_000;
const ROUNDS: usize = 3;
const SHAPES: [&str; 3] = ["chain", "fan", "layered"];
const FLAVOURS: [&str; 2] = ["current_thread", "multi_thread"];

/// The pacing workload: tasks, latency of each, and the ideal wall time.
const PACED_TASKS: usize = 1_000;
const PACED_LATENCY_MS: u64 = 10;
const PACED_IDEAL: Duration = Duration::from_millis(1_270);

fn settings(latency_ms: u64) -> String {
    format!(
        "default_role: admin
backends:
  sim:
    kind: sim
    latency_min: {latency_ms}ms
    latency_max: {latency_ms}ms
"
    )
}

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
        measure(&args[at + 1], &args[at + 2], TASKS, 0);
        return;
    }
    if let Some(at) = args.iter().position(|a| a == "--paced") {
        measure("fan", &args[at + 1], PACED_TASKS, PACED_LATENCY_MS);
        return;
    }
    let me = std::env::current_exe().unwrap();
    if args.iter().any(|a| a == "paced") {
        paced(&me);
        return;
    }
    println!("engine: {TASKS} tasks, max_parallel 8, zero-latency sim, every event stored");
    println!("(best of {ROUNDS} processes; wall until the store is flushed; CPU of all threads)");
    for flavour in FLAVOURS {
        for shape in SHAPES {
            let mut rounds: Vec<Round> = (0..ROUNDS)
                .filter_map(|_| {
                    let output =
                        Command::new(&me).args(["--shape", shape, flavour]).output().unwrap();
                    if !output.status.success() {
                        eprint!("{}", String::from_utf8_lossy(&output.stderr));
                    }
                    Round::parse(&String::from_utf8_lossy(&output.stdout))
                })
                .collect();
            if rounds.is_empty() {
                continue;
            }
            rounds.sort_by(|a, b| a.wall_us.total_cmp(&b.wall_us));
            let best = &rounds[0];
            let median = &rounds[rounds.len() / 2];
            let peak = rounds.iter().map(|r| r.peak_mb).fold(0.0, f64::max);
            println!(
                "{shape:>8} {flavour:<14} {:6.2} µs/task wall (median {:6.2})  CPU {:5.1} µs/task \
                 (store writer {:4.1})  parse+plan {:4.0} ms  peak RSS {:5.1} MB",
                best.wall_us, median.wall_us, best.cpu_us, best.store_us, best.plan_ms, peak,
            );
        }
    }
    paced(&me);
}

/// The pacing workload, three processes per tokio flavour: wall time against the ideal.
fn paced(me: &Path) {
    println!(
        "pacing: fan-out of {PACED_TASKS} tasks of {PACED_LATENCY_MS} ms, max_parallel 8, \
         ideal {:.2} s",
        PACED_IDEAL.as_secs_f64()
    );
    for flavour in FLAVOURS {
        let walls: Vec<f64> = (0..ROUNDS)
            .filter_map(|_| {
                let output = Command::new(me).args(["--paced", flavour]).output().unwrap();
                if !output.status.success() {
                    eprint!("{}", String::from_utf8_lossy(&output.stderr));
                }
                Round::parse(&String::from_utf8_lossy(&output.stdout))
            })
            .map(|round| round.wall_us * PACED_TASKS as f64 / 1e6)
            .collect();
        let Some(best) = walls.iter().copied().reduce(f64::min) else { continue };
        let worst = walls.iter().copied().fold(best, f64::max);
        let over = |wall: f64| (wall / PACED_IDEAL.as_secs_f64() - 1.0) * 100.0;
        println!(
            "  {flavour:<14} {best:.3}–{worst:.3} s wall ({:+.1}% to {:+.1}% of ideal)",
            over(best),
            over(worst)
        );
    }
}

/// One process's figures, as it prints them.
struct Round {
    wall_us: f64,
    cpu_us: f64,
    store_us: f64,
    plan_ms: f64,
    peak_mb: f64,
}

impl Round {
    fn parse(line: &str) -> Option<Self> {
        let numbers: Vec<f64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
        let &[wall_us, cpu_us, store_us, plan_ms, peak_mb] = numbers.as_slice() else {
            return None;
        };
        Some(Self { wall_us, cpu_us, store_us, plan_ms, peak_mb })
    }
}

/// One round in this process; prints wall, CPU and store-writer µs per task, the plan time
/// in ms and the peak RSS in MB.
fn measure(shape: &str, flavour: &str, tasks: usize, latency_ms: u64) {
    let project = tempfile::tempdir().unwrap();
    write_project(project.path(), shape, tasks);
    let tokio = match flavour {
        "current_thread" => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        _ => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    }
    .unwrap();
    let micros_per_task = |d: Duration| d.as_secs_f64() * 1e6 / tasks as f64;
    let (planned, ran, cpu, store) = tokio.block_on(round_trip(project.path(), latency_ms));
    println!(
        "{:.2} {:.2} {:.2} {} {:.1}",
        micros_per_task(ran),
        micros_per_task(cpu),
        micros_per_task(store),
        planned.as_millis(),
        peak_rss_mb()
    );
}

/// Plan, then run until the last event is in the store. Returns the plan time, the wall and
/// CPU time of the run, and the CPU time of the store writer thread.
async fn round_trip(project: &Path, latency_ms: u64) -> (Duration, Duration, Duration, Duration) {
    let settings = Settings::parse(&settings(latency_ms), Path::new("flightdeck.yaml")).unwrap();
    let runtime = Runtime::start(RuntimeOptions {
        project_dir: project.to_owned(),
        data_dir: project.join(".flightdeck"),
        settings,
        watch_agents: false,
    })
    .unwrap();
    let began = Instant::now();
    let plan = runtime.plan(Path::new("workflows/bench.yaml"), &PlanOverrides::default()).unwrap();
    let planned = began.elapsed();
    let began = Instant::now();
    let (cpu_before, _) = cpu_time();
    let handle = runtime.start_planned("bench", plan).unwrap();
    let status = handle.wait().await;
    runtime.flush().await.unwrap();
    let ran = began.elapsed();
    let (cpu_after, store_cpu) = cpu_time();
    let cpu = cpu_after.saturating_sub(cpu_before);
    assert_eq!(status, flightdeck::event::RunStatus::Succeeded);
    runtime.shutdown().await;
    (planned, ran, cpu, store_cpu)
}

fn write_project(dir: &Path, shape: &str, tasks: usize) {
    std::fs::create_dir_all(dir.join("agentpool/tier1-core")).unwrap();
    std::fs::create_dir_all(dir.join("workflows")).unwrap();
    std::fs::write(dir.join("agentpool/tier1-core/worker.md"), AGENT).unwrap();
    std::fs::write(dir.join("workflows/bench.yaml"), workflow(shape, tasks)).unwrap();
}

fn workflow(shape: &str, tasks: usize) -> String {
    let mut text = String::from("name: bench\nmax_parallel: 8\ntasks:\n");
    let task = |text: &mut String, id: &str, deps: &[String]| {
        let _ = write!(text, "  - id: {id}\n    description: step {id}\n    agent: worker\n");
        if !deps.is_empty() {
            let _ = writeln!(text, "    depends_on: [{}]", deps.join(", "));
        }
    };
    match shape {
        "chain" => {
            for i in 0..tasks {
                let deps = if i == 0 { vec![] } else { vec![format!("t{}", i - 1)] };
                task(&mut text, &format!("t{i}"), &deps);
            }
        }
        "fan" => {
            task(&mut text, "root", &[]);
            let middle: Vec<String> = (0..tasks - 2).map(|i| format!("t{i}")).collect();
            for id in &middle {
                task(&mut text, id, &["root".to_owned()]);
            }
            task(&mut text, "sink", &middle);
        }
        _ => {
            const WIDTH: usize = 100;
            let mut rng = StdRng::seed_from_u64(42);
            let mut previous: Vec<String> = Vec::new();
            for layer in 0..tasks / WIDTH {
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

/// User and system time of every thread of this process so far (10 ms resolution), and
/// of the run store's writer thread alone.
fn cpu_time() -> (Duration, Duration) {
    let mut total = 0;
    let mut store = 0;
    for entry in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        let ticks = thread_ticks(&entry.path().join("stat"));
        total += ticks;
        if name.trim().starts_with("flightdeck-stor") {
            store += ticks;
        }
    }
    (ticks_to_duration(total), ticks_to_duration(store))
}

fn thread_ticks(stat: &Path) -> u64 {
    let stat = std::fs::read_to_string(stat).unwrap_or_default();
    // (Thread names are cut to 15 bytes.) Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    after_name.split_whitespace().skip(11).take(2).filter_map(|f| f.parse::<u64>().ok()).sum()
}

fn ticks_to_duration(ticks: u64) -> Duration {
    const TICKS_PER_SECOND: u64 = 100;
    Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND)
}

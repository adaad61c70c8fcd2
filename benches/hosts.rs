//! Hosts: what attached consoles cost the engine, and how fast an event reaches them.
//!
//! A 10,000-task fan-out (1 → 9,998 → 1) on a zero-latency `sim` backend at
//! `max_parallel: 8`, every event stored, run by a host listening on its control socket:
//! once with no client, once with 20 clients attached (each subscribed to the console feed,
//! as `attach` is: a snapshot, then a line per tick, each decoded by its own thread into the
//! protocol's messages as `attach` decodes them). Reported: wall time until the store is
//! flushed (target: within 20% of the unattached run) and the latency from publication to
//! arrival at a client (target: p99 ≤ 50 ms) of everything delivered: each whole event (its
//! `ts`) and each compact task change of a digest (its time, the time of the latest event
//! it stands for).
//!
//! `cargo bench --bench hosts`. Seven rounds each, interleaved; medians and best.

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flightdeck::config::Settings;
use flightdeck::event::{AnswerDetails, Envelope, Event, OutputStream, PlannedTask};
use flightdeck::host::feed::{Plans, tick_line};
use flightdeck::host::protocol::{HostMessage, decode_host_line};
use flightdeck::host::{Host, HostLock, HostOptions};
use flightdeck::ids::{AgentId, InstanceId, RunId, TaskId};
use flightdeck::runtime::{Runtime, RuntimeOptions};
use flightdeck::workflow::PlanOverrides;
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::time::TimeVal;

/// The allocator the `flightdeck` binary uses (host and `attach` alike), so the figures are
/// the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TASKS: usize = 10_000;
const CLIENTS: usize = 20;
const ROUNDS: usize = 7;

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

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn main() {
    println!("hosts: {TASKS}-task fan-out, max_parallel 8, zero-latency sim, every event stored");
    println!(
        "  {ROUNDS} rounds each, alone and with {CLIENTS} clients in turn (the machine drifts)"
    );
    let mut alone = Vec::new();
    let mut attached = Vec::new();
    let mut latencies = Histogram::default();
    let mut cpu_ms = 0.0;
    for _ in 0..ROUNDS {
        alone.push(round(0).0);
        let (wall, seen, cpu) = round(CLIENTS);
        attached.push(wall);
        latencies.add(&seen);
        cpu_ms += cpu;
    }
    alone.sort_unstable();
    attached.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let median = |walls: &[Duration]| walls[walls.len() / 2];
    let over = |with: Duration, without: Duration| {
        (with.as_secs_f64() / without.as_secs_f64() - 1.0) * 100.0
    };
    println!(
        "  no client      median {:6.1} ms, best {:6.1} ms wall",
        ms(median(&alone)),
        ms(alone[0])
    );
    println!(
        "  {CLIENTS} clients     median {:6.1} ms, best {:6.1} ms wall: {:+.1}% median, {:+.1}% best (target ≤ +20%)",
        ms(median(&attached)),
        ms(attached[0]),
        over(median(&attached), median(&alone)),
        over(attached[0], alone[0]),
    );
    println!(
        "  each client's CPU: {:.2} ms a run (reading and decoding every line)",
        cpu_ms / (ROUNDS * CLIENTS) as f64
    );
    if latencies.total() == 0 {
        println!("  no event reached a client");
        return;
    }
    let at = |q: f64| latencies.quantile(q);
    println!(
        "  event → client over {} events delivered: p50 {} ms, p99 {} ms (target ≤ 50), max {} ms",
        latencies.total(),
        at(0.5),
        at(0.99),
        latencies.max()
    );
    feed_cost();
}

/// The host's own cost of attached consoles, alone: the console feed's lines for such a
/// run's events (its start, then each task's ready, churn, start, output, success and
/// churn), in ticks of 2,000 as a flood comes. The same for one console or twenty.
fn feed_cost() {
    let run = RunId::new("r20261207231718-656e4f4ee13bfd8b");
    let agent = AgentId::new("worker");
    let first = TaskId::new("t0");
    let tasks: Vec<PlannedTask> = (0..TASKS)
        .map(|i| PlannedTask {
            task: TaskId::new(format!("t{i}")),
            description: format!("Part {i}").into(),
            agent: agent.clone(),
            score: None,
            depends_on: if i == 0 { Arc::from([]) } else { Arc::from([first.clone()]) },
            layer: usize::from(i > 0),
            timeout_ms: 600_000,
            retries: 0,
        })
        .collect();
    let mut events = vec![Event::RunStarted {
        workflow: "fan".into(),
        file: "fan.yaml".into(),
        goal: None,
        max_parallel: 8,
        fail_fast: false,
        simulated: true,
        tasks: tasks.clone(),
    }];
    for (i, planned) in tasks.iter().enumerate() {
        let (task, instance) = (planned.task.clone(), InstanceId(i as u64 % 8));
        events.extend([
            Event::TaskReady { task: task.clone() },
            Event::InstanceWorking { instance, agent: agent.clone(), task: Some(task.clone()) },
            Event::TaskStarted {
                task: task.clone(),
                agent: agent.clone(),
                attempt: 1,
                instance,
                backend: "sim".into(),
                simulated: true,
            },
            Event::TaskOutput {
                task: task.clone(),
                stream: OutputStream::Tokens,
                text: "x".into(),
            },
            Event::TaskSucceeded {
                task,
                agent: agent.clone(),
                attempt: 1,
                duration_ms: 0,
                output: "done".into(),
                usage: None,
                simulated: true,
                details: AnswerDetails::default(),
            },
            Event::InstanceIdle { instance, agent: agent.clone() },
        ]);
    }
    let envelopes: Vec<Arc<Envelope>> = (1..)
        .zip(events)
        .map(|(seq, event)| {
            let ts_ms = 1_765_100_000_000 + seq / 700;
            Arc::new(Envelope { seq, ts_ms, run_id: Some(run.clone()), event })
        })
        .collect();
    let mut times: Vec<Duration> = (0..30)
        .map(|_| {
            let mut plans = Plans::default();
            let started = Instant::now();
            let (start, flood) = envelopes.split_at(1);
            let mut bytes = tick_line(start, &mut plans).unwrap().len();
            for tick in flood.chunks(2000) {
                bytes += tick_line(tick, &mut plans).unwrap().len();
            }
            std::hint::black_box(bytes);
            started.elapsed()
        })
        .collect();
    times.sort_unstable();
    println!(
        "  the console feed alone, {} events: median {:.1} ms, best {:.1} ms (the host's part)",
        envelopes.len(),
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
    );
}

/// One run with `clients` attached: its wall time, every delivery's latency (ms) and the
/// clients' CPU time (ms, all of them).
fn round(clients: usize) -> (Duration, Histogram, f64) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("flightdeck.yaml"), SETTINGS).unwrap();
    std::fs::create_dir_all(root.join("agentpool/tier1-core")).unwrap();
    std::fs::write(root.join("agentpool/tier1-core/worker.md"), AGENT).unwrap();
    let mut workflow = String::from(
        "name: fan\nmax_parallel: 8\ntasks:\n  - {id: t0, description: Start, agent: worker}\n",
    );
    for i in 1..TASKS - 1 {
        let _ = writeln!(
            workflow,
            "  - {{id: t{i}, description: Part {i}, agent: worker, depends_on: [t0]}}"
        );
    }
    let all: Vec<String> = (1..TASKS - 1).map(|i| format!("t{i}")).collect();
    let _ = writeln!(
        workflow,
        "  - {{id: end, description: Finish, agent: worker, depends_on: [{}]}}",
        all.join(", ")
    );
    let file = root.join("fan.yaml");
    std::fs::write(&file, workflow).unwrap();
    let data_dir = root.join(".flightdeck");

    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    tokio.block_on(async {
        let runtime = Arc::new(
            Runtime::start(RuntimeOptions {
                project_dir: root.to_owned(),
                data_dir: data_dir.clone(),
                settings: Settings::load(root).unwrap(),
                watch_agents: false,
            })
            .unwrap(),
        );
        let lock = HostLock::take(&data_dir).unwrap();
        let host = Host::listen(lock, Arc::clone(&runtime), &HostOptions::default()).unwrap();
        let latencies = Arc::new(Mutex::new(Histogram::default()));
        let readers: Vec<_> =
            (0..clients).map(|_| attach(host.socket(), Arc::clone(&latencies))).collect();
        let plan = runtime.plan(&file, &PlanOverrides::default()).unwrap();
        let started = Instant::now();
        let handle = runtime.start_planned("bench", plan).unwrap();
        handle.wait().await;
        runtime.flush().await.unwrap();
        let wall = started.elapsed();
        host.close().await;
        let cpu_ms: f64 = readers.into_iter().map(|reader| reader.join().unwrap_or(0.0)).sum();
        let runtime = Arc::try_unwrap(runtime).ok().expect("the host let go of the runtime");
        runtime.shutdown().await;
        let latencies = std::mem::take(&mut *latencies.lock().unwrap());
        (wall, latencies, cpu_ms)
    })
}

/// A subscribed client on its own thread, as `attach` is: hello with the console feed,
/// then every line until the host closes, each decoded as `attach` decodes it. Every event
/// delivered counts once: a whole event from its own publication, each event a digest
/// stands for from the publication of the digest's first (an upper bound).
fn attach(socket: &Path, latencies: Arc<Mutex<Histogram>>) -> std::thread::JoinHandle<f64> {
    let mut stream = UnixStream::connect(socket).unwrap();
    let hello = r#"{"msg":"hello","version":2,"from":"attach","subscribe":true,"feed":"console"}"#;
    writeln!(stream, "{hello}").unwrap();
    std::thread::spawn(move || {
        let mut seen = Histogram::default();
        let mut line = String::new();
        let mut reader = BufReader::new(stream);
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            let arrived = now_ms();
            let mut record = |published: u64, events: u64| {
                seen.record(arrived.saturating_sub(published), events);
            };
            match decode_host_line(&line) {
                Ok(HostMessage::Events { events }) => {
                    for event in &events {
                        record(event.ts_ms, 1);
                    }
                }
                Ok(HostMessage::Event { event }) => record(event.ts_ms, 1),
                Ok(HostMessage::Digest(digest)) => record(digest.since_ms, digest.events),
                Ok(HostMessage::Closing { .. }) => break,
                _ => {}
            }
            line.clear();
        }
        latencies.lock().unwrap().add(&seen);
        let usage = getrusage(UsageWho::RUSAGE_THREAD).unwrap();
        let ms = |t: TimeVal| t.tv_sec() as f64 * 1e3 + t.tv_usec() as f64 / 1e3;
        ms(usage.user_time()) + ms(usage.system_time())
    })
}

/// Deliveries counted by latency in whole milliseconds: a client records a digest's
/// thousands of events in one step, so the bench's own bookkeeping stays out of the
/// clients' CPU figure.
#[derive(Default)]
struct Histogram(Vec<u64>);

impl Histogram {
    fn record(&mut self, ms: u64, events: u64) {
        let at = ms as usize;
        if self.0.len() <= at {
            self.0.resize(at + 1, 0);
        }
        self.0[at] += events;
    }

    fn add(&mut self, other: &Self) {
        for (ms, events) in other.0.iter().enumerate() {
            if *events > 0 {
                self.record(ms as u64, *events);
            }
        }
    }

    fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    fn max(&self) -> u64 {
        self.0.iter().rposition(|events| *events > 0).unwrap_or(0) as u64
    }

    /// The latency below which a share `q` of the deliveries arrived (nearest rank).
    fn quantile(&self, q: f64) -> u64 {
        let rank = ((self.total().saturating_sub(1)) as f64 * q) as u64;
        let mut seen = 0;
        for (ms, events) in self.0.iter().enumerate() {
            seen += events;
            if seen > rank {
                return ms as u64;
            }
        }
        self.max()
    }
}

//! Cost of the pool and breaker operations the engine performs for every task.
//!
//! `cargo bench --bench pool`. The engine budget is ≤ 10 µs per task in total; one task does
//! one `acquire`, `start_work` and `release`, and one breaker `try_acquire` and record. Every pool
//! transition publishes an event on a bus with a console-like subscriber attached.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use divan::Bencher;
use flightdeck::bus::EventBus;
use flightdeck::config::BreakerSettings;
use flightdeck::ids::AgentId;
use flightdeck::pool::{Pool, PoolConfig};
use flightdeck::resilience::{BreakerBoard, retry_delay};
use futures::FutureExt;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn main() {
    divan::main();
}

fn pool(bus: &EventBus) -> Pool {
    let config = PoolConfig { max_total: 1024, idle_timeout: Duration::from_secs(300) };
    Pool::new(config, bus.clone())
}

/// Reuse path: acquire an idle instance, start work, release it.
#[divan::bench(threads = [1, 2])]
fn pool_reuse_cycle(bencher: Bencher) {
    let bus = EventBus::new();
    let _console = bus.subscribe();
    let pool = pool(&bus);
    let agent = AgentId::new("backend-architect");
    bencher.bench(|| {
        // Below the caps the acquire completes without awaiting.
        let id = pool.acquire(&agent, 512, true).now_or_never().unwrap().unwrap();
        pool.start_work(id, None).unwrap();
        pool.release(id).unwrap();
    });
}

/// Fresh path: create a reserved instance, start work, terminate it.
#[divan::bench]
fn pool_fresh_cycle(bencher: Bencher) {
    let bus = EventBus::new();
    let _console = bus.subscribe();
    let pool = pool(&bus);
    let agent = AgentId::new("backend-architect");
    bencher.bench_local(|| {
        let id = pool.acquire(&agent, 512, false).now_or_never().unwrap().unwrap();
        pool.start_work(id, None).unwrap();
        pool.terminate(id, "done").unwrap();
    });
}

/// A closed breaker admits a call and records its success.
#[divan::bench(threads = [1, 2])]
fn breaker_call(bencher: Bencher) {
    let board = BreakerBoard::new(BreakerSettings::default(), EventBus::new());
    let agent = AgentId::new("backend-architect");
    bencher.bench(|| {
        let permit = board.try_acquire(&agent).unwrap();
        board.record_success(permit, Duration::from_millis(3));
    });
}

#[divan::bench]
fn backoff_delay(bencher: Bencher) {
    let mut rng = StdRng::seed_from_u64(7);
    let mut attempt = 0;
    bencher.bench_local(|| {
        attempt = attempt % 10 + 1;
        retry_delay(attempt, Duration::from_millis(500), Duration::from_secs(30), &mut rng)
    });
}

//! The agent instance pool: limits, fairness, reuse, eviction, cancellation, lifecycle
//! rules, reaping and the events it publishes.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flightdeck::bus::EventBus;
use flightdeck::event::Event;
use flightdeck::ids::{AgentId, InstanceId, TaskId};
use flightdeck::pool::{InstanceState, Pool, PoolConfig, PoolError};
use tokio::sync::mpsc::UnboundedReceiver;

fn pool(max_total: usize) -> (Pool, EventBus) {
    let bus = EventBus::new();
    let config = PoolConfig { max_total, idle_timeout: Duration::from_secs(60) };
    (Pool::new(config, bus.clone()), bus)
}

fn agent(name: &str) -> AgentId {
    AgentId::new(name)
}

fn drain(sink: &mut UnboundedReceiver<Arc<flightdeck::event::Envelope>>) -> Vec<Event> {
    let mut events = Vec::new();
    while let Ok(envelope) = sink.try_recv() {
        events.push(envelope.event.clone());
    }
    events
}

/// Polls `condition` until it holds; real time, so generous for a loaded 2-core box.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Polls a future once so it gets queued, returning it still pending.
async fn queue<F: Future>(future: F) -> std::pin::Pin<Box<F>> {
    let mut future = Box::pin(future);
    assert!(futures::poll!(future.as_mut()).is_pending(), "expected the caller to queue");
    future
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_under_many_concurrent_acquires() {
    const PER_AGENT: u32 = 3;
    const TOTAL: usize = 4;
    let (pool, _bus) = pool(TOTAL);
    let working_total = Arc::new(AtomicUsize::new(0));
    let peak_total = Arc::new(AtomicUsize::new(0));
    let agents = ["alpha", "beta", "gamma"];
    let working: Vec<Arc<AtomicUsize>> =
        agents.iter().map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let peaks: Vec<Arc<AtomicUsize>> =
        agents.iter().map(|_| Arc::new(AtomicUsize::new(0))).collect();

    let mut tasks = Vec::new();
    for i in 0..300 {
        let slot = i % agents.len();
        let (pool, id) = (pool.clone(), agent(agents[slot]));
        let (working_total, peak_total) = (working_total.clone(), peak_total.clone());
        let (working, peak) = (working[slot].clone(), peaks[slot].clone());
        tasks.push(tokio::spawn(async move {
            let instance = pool.acquire(&id, PER_AGENT, i % 2 == 0).await.unwrap();
            pool.start_work(instance, None).unwrap();
            let now_total = working_total.fetch_add(1, Ordering::SeqCst) + 1;
            peak_total.fetch_max(now_total, Ordering::SeqCst);
            let now = working.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            working.fetch_sub(1, Ordering::SeqCst);
            working_total.fetch_sub(1, Ordering::SeqCst);
            if i % 7 == 0 {
                pool.terminate(instance, "done").unwrap();
            } else {
                pool.release(instance).unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }

    assert!(peak_total.load(Ordering::SeqCst) <= TOTAL, "global cap exceeded");
    assert!(peak_total.load(Ordering::SeqCst) >= 2, "no concurrency at all");
    for (name, peak) in agents.iter().zip(&peaks) {
        let peak = peak.load(Ordering::SeqCst);
        assert!(peak <= PER_AGENT as usize, "{name} ran {peak} at once");
    }
    let stats = pool.stats();
    assert_eq!((stats.reserved, stats.working, stats.waiting), (0, 0, 0));
    assert!(stats.live() <= TOTAL);
    assert_eq!(stats.created_total - stats.terminated_total, stats.live() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_are_served_in_arrival_order_across_agents() {
    let (pool, _bus) = pool(1);
    let holder = pool.acquire(&agent("holder"), 1, true).await.unwrap();
    pool.start_work(holder, None).unwrap();

    let served = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..8usize {
        let (worker, served) = (pool.clone(), served.clone());
        let name = if i % 2 == 0 { "even" } else { "odd" };
        tasks.push(tokio::spawn(async move {
            let instance = worker.acquire(&agent(name), 2, true).await.unwrap();
            served.lock().unwrap().push(i);
            worker.start_work(instance, None).unwrap();
            tokio::task::yield_now().await;
            worker.release(instance).unwrap();
        }));
        let probe = pool.clone();
        wait_until("the caller is queued", || probe.stats().waiting == i + 1).await;
    }
    pool.release(holder).unwrap();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(*served.lock().unwrap(), (0..8).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_wakes_the_next_waiter_with_the_same_instance() {
    let (pool, bus) = pool(4);
    let mut sink = bus.sink();
    let a = agent("a");
    let first = pool.acquire(&a, 1, true).await.unwrap();
    pool.start_work(first, Some(TaskId::new("t1"))).unwrap();

    let waiter = {
        let (pool, a) = (pool.clone(), a.clone());
        tokio::spawn(async move { pool.acquire(&a, 1, true).await })
    };
    let probe = pool.clone();
    wait_until("the second caller is queued", || probe.stats().waiting == 1).await;
    pool.release(first).unwrap();
    let second = waiter.await.unwrap().unwrap();
    assert_eq!(second, first, "the idle instance is reused");

    let view = pool.instances().into_iter().next().unwrap();
    assert_eq!((view.state, view.claimed), (InstanceState::Idle, true));
    pool.start_work(second, Some(TaskId::new("t2"))).unwrap();

    let events = drain(&mut sink);
    assert_eq!(
        events,
        vec![
            Event::InstanceReserved { instance: first, agent: a.clone() },
            Event::InstanceWorking { instance: first, agent: a.clone(), task: Some("t1".into()) },
            Event::InstanceQueued { agent: a.clone(), waiting: 1 },
            Event::InstanceIdle { instance: first, agent: a.clone() },
            Event::InstanceQueued { agent: a.clone(), waiting: 0 },
            Event::InstanceWorking { instance: first, agent: a, task: Some("t2".into()) },
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_instances_are_reused_only_when_asked() {
    let (pool, _bus) = pool(8);
    let a = agent("a");
    let first = pool.acquire(&a, 3, true).await.unwrap();
    pool.start_work(first, None).unwrap();
    pool.release(first).unwrap();

    let reused = pool.acquire(&a, 3, true).await.unwrap();
    assert_eq!(reused, first);
    let fresh = pool.acquire(&a, 3, false).await.unwrap();
    assert_ne!(fresh, first);
    assert_eq!(pool.instances().iter().find(|v| v.instance == fresh).unwrap().state, {
        InstanceState::Reserved
    });

    // Handing a reused instance back unused makes it reusable again.
    pool.release(reused).unwrap();
    assert_eq!(pool.acquire(&a, 3, true).await.unwrap(), first);
    let stats = pool.stats();
    assert_eq!((stats.idle, stats.reserved, stats.created_total), (1, 1, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_caller_at_its_agent_cap_replaces_an_idle_instance() {
    let (pool, bus) = pool(8);
    let mut sink = bus.sink();
    let a = agent("a");
    let old = pool.acquire(&a, 1, false).await.unwrap();
    pool.release(old).unwrap();
    let new = pool.acquire(&a, 1, false).await.unwrap();
    assert_ne!(new, old);
    let events = drain(&mut sink);
    assert!(events.contains(&Event::InstanceTerminated {
        instance: old,
        agent: a.clone(),
        reason: "evicted to make room for a".into(),
    }));
    assert_eq!(pool.stats().by_agent[&a].live(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_cap_evicts_the_oldest_idle_instance_of_another_agent() {
    let (pool, bus) = pool(2);
    let (a, b) = (agent("a"), agent("b"));
    let older = pool.acquire(&a, 5, false).await.unwrap();
    let newer = pool.acquire(&a, 5, false).await.unwrap();
    pool.release(older).unwrap();
    pool.release(newer).unwrap();

    let mut sink = bus.sink();
    let for_b = pool.acquire(&b, 5, true).await.unwrap();
    assert_eq!(
        drain(&mut sink),
        vec![
            Event::InstanceTerminated {
                instance: older,
                agent: a.clone(),
                reason: "evicted to make room for b".into(),
            },
            Event::InstanceReserved { instance: for_b, agent: b.clone() },
        ]
    );
    let stats = pool.stats();
    assert_eq!(stats.live(), 2);
    assert_eq!((stats.by_agent[&a].idle, stats.by_agent[&b].reserved), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_cap_queues_until_an_instance_is_freed() {
    let (pool, _bus) = pool(2);
    let (a, b, c) = (agent("a"), agent("b"), agent("c"));
    let ia = pool.acquire(&a, 5, true).await.unwrap();
    let ib = pool.acquire(&b, 5, true).await.unwrap();
    pool.start_work(ia, None).unwrap();
    pool.start_work(ib, None).unwrap();

    let waiter = {
        let (pool, c) = (pool.clone(), c.clone());
        tokio::spawn(async move { pool.acquire(&c, 5, true).await })
    };
    let probe = pool.clone();
    wait_until("c is queued", || probe.stats().waiting == 1).await;
    assert_eq!(pool.stats().by_agent[&c].waiting, 1);
    pool.release(ib).unwrap();
    let ic = waiter.await.unwrap().unwrap();
    assert!(ic != ia && ic != ib);
    let stats = pool.stats();
    assert_eq!((stats.working, stats.reserved, stats.waiting, stats.live()), (1, 1, 0, 2));
    assert!(!stats.by_agent.contains_key(&b), "b's idle instance made room for c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_queued_acquire_leaves_nothing_behind() {
    let (pool, _bus) = pool(1);
    let a = agent("a");
    let held = pool.acquire(&a, 1, true).await.unwrap();
    let gave_up = tokio::time::timeout(Duration::from_millis(20), pool.acquire(&a, 1, true)).await;
    assert!(gave_up.is_err(), "the pool is full, so the caller must wait");
    assert_eq!(pool.stats().waiting, 0);

    pool.release(held).unwrap();
    let stats = pool.stats();
    assert_eq!((stats.idle, stats.reserved, stats.live()), (1, 0, 1));
    assert_eq!(pool.acquire(&a, 1, true).await.unwrap(), held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_granted_to_a_dropped_caller_goes_to_the_next_waiter() {
    let (pool, _bus) = pool(1);
    let a = agent("a");
    let held = pool.acquire(&a, 1, true).await.unwrap();
    let first = queue(pool.acquire(&a, 1, true)).await;
    let second = {
        let (pool, a) = (pool.clone(), a.clone());
        tokio::spawn(async move { pool.acquire(&a, 1, true).await })
    };
    let probe = pool.clone();
    wait_until("both callers are queued", || probe.stats().waiting == 2).await;

    // The release hands the instance to `first`, which is dropped without looking.
    pool.release(held).unwrap();
    assert_eq!(pool.stats().waiting, 1);
    drop(first);

    assert_eq!(second.await.unwrap().unwrap(), held);
    let stats = pool.stats();
    assert_eq!((stats.live(), stats.waiting, stats.created_total), (1, 0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_instance_granted_to_a_dropped_caller_is_terminated_and_room_passed_on() {
    let (pool, bus) = pool(1);
    let a = agent("a");
    let held = pool.acquire(&a, 1, true).await.unwrap();
    pool.start_work(held, None).unwrap();
    let first = queue(pool.acquire(&a, 1, false)).await;
    let second = queue(pool.acquire(&a, 1, false)).await;

    let mut sink = bus.sink();
    pool.release(held).unwrap();
    drop(first);
    let got = second.await.unwrap();
    let events = drain(&mut sink);
    let reasons: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::InstanceTerminated { reason, .. } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons,
        ["evicted to make room for a", "acquire cancelled before the instance was used"]
    );
    let stats = pool.stats();
    assert_eq!((stats.live(), stats.reserved, stats.waiting), (1, 1, 0));
    assert_eq!(pool.instances()[0].instance, got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn illegal_transitions_are_refused() {
    use InstanceState::{Idle, Reserved, Terminated, Working};
    let (pool, _bus) = pool(4);
    let a = agent("a");
    let id = pool.acquire(&a, 3, true).await.unwrap();
    let illegal = |from, to| PoolError::IllegalTransition { instance: id, from, to };

    pool.start_work(id, None).unwrap(); // reserved → working
    assert_eq!(pool.start_work(id, None), Err(illegal(Working, Working)));
    pool.release(id).unwrap(); // working → idle
    assert_eq!(pool.release(id), Err(illegal(Idle, Idle)));
    pool.start_work(id, None).unwrap(); // idle → working
    pool.terminate(id, "test").unwrap(); // working → terminated
    assert_eq!(pool.start_work(id, None), Err(illegal(Terminated, Working)));
    assert_eq!(pool.release(id), Err(illegal(Terminated, Idle)));
    assert_eq!(pool.terminate(id, "again"), Err(illegal(Terminated, Terminated)));

    let reserved = pool.acquire(&a, 3, true).await.unwrap();
    pool.release(reserved).unwrap(); // reserved → idle
    let other = pool.acquire(&a, 3, false).await.unwrap();
    assert_eq!(pool.instances().iter().find(|v| v.instance == other).unwrap().state, Reserved);
    pool.terminate(other, "test").unwrap(); // reserved → terminated
    pool.terminate(reserved, "test").unwrap(); // idle → terminated

    let unknown = InstanceId(999);
    assert_eq!(pool.release(unknown), Err(PoolError::UnknownInstance { instance: unknown }));
    assert_eq!(pool.acquire(&a, 0, true).await, Err(PoolError::NoCapacity { agent: a }));
    assert_eq!(pool.stats().live(), 0);
}

#[tokio::test(start_paused = true)]
async fn idle_instances_are_reaped_after_the_timeout() {
    let (pool, bus) = pool(4);
    let a = agent("a");
    let stale = pool.acquire(&a, 3, false).await.unwrap();
    pool.release(stale).unwrap();
    tokio::time::advance(Duration::from_secs(30)).await;
    let younger = pool.acquire(&a, 3, false).await.unwrap();
    pool.release(younger).unwrap();
    let claimed = pool.acquire(&a, 3, false).await.unwrap();
    pool.release(claimed).unwrap();
    assert_eq!(pool.acquire(&a, 3, true).await.unwrap(), claimed, "newest idle is reused first");

    tokio::time::advance(Duration::from_secs(29)).await;
    assert_eq!(pool.reap_idle(), 0);
    let mut sink = bus.sink();
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(pool.reap_idle(), 1);
    assert_eq!(
        drain(&mut sink),
        vec![Event::InstanceTerminated {
            instance: stale,
            agent: a,
            reason: "idle timeout".into()
        }]
    );

    // The reaper task gets the younger one; the claimed one is never reaped.
    let reaper = pool.spawn_reaper();
    tokio::time::sleep(Duration::from_secs(120)).await;
    let left: Vec<_> = pool.instances().into_iter().map(|v| v.instance).collect();
    assert_eq!(left, vec![claimed]);
    reaper.abort();
}

#[tokio::test(start_paused = true)]
async fn reaper_stops_when_the_pool_is_dropped() {
    let (pool, _bus) = pool(1);
    let reaper = pool.spawn_reaper();
    drop(pool);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(reaper.is_finished());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_by_state_and_agent_and_backlog_rebuilds_the_picture() {
    let (pool, bus) = pool(3);
    let (a, b) = (agent("a"), agent("b"));
    let working = pool.acquire(&a, 2, true).await.unwrap();
    pool.start_work(working, Some(TaskId::new("build"))).unwrap();
    let idle = pool.acquire(&a, 2, false).await.unwrap();
    pool.release(idle).unwrap();
    let reserved = pool.acquire(&b, 2, true).await.unwrap();
    let claimed = pool.acquire(&a, 2, true).await.unwrap();
    assert_eq!(claimed, idle);
    let _queued_at_agent_cap = queue(pool.acquire(&a, 2, false)).await;
    let _queued_at_global_cap = queue(pool.acquire(&b, 2, true)).await;

    let stats = pool.stats();
    assert_eq!((stats.reserved, stats.working, stats.idle, stats.waiting), (1, 1, 1, 2));
    assert_eq!((stats.max_total, stats.created_total, stats.terminated_total), (3, 3, 0));
    let (sa, sb) = (stats.by_agent[&a], stats.by_agent[&b]);
    assert_eq!((sa.working, sa.idle, sa.waiting), (1, 1, 1));
    assert_eq!((sb.reserved, sb.waiting), (1, 1));

    let backlog = pool.backlog_events();
    assert_eq!(
        backlog,
        vec![
            Event::InstanceReserved { instance: working, agent: a.clone() },
            Event::InstanceWorking {
                instance: working,
                agent: a.clone(),
                task: Some("build".into())
            },
            Event::InstanceReserved { instance: idle, agent: a.clone() },
            Event::InstanceIdle { instance: idle, agent: a.clone() },
            Event::InstanceReserved { instance: reserved, agent: b.clone() },
            Event::InstanceQueued { agent: a.clone(), waiting: 1 },
            Event::InstanceQueued { agent: b.clone(), waiting: 1 },
        ]
    );
    drop(bus);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_giving_up_at_random_moments_leak_nothing() {
    const TOTAL: usize = 3;
    let (pool, _bus) = pool(TOTAL);
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let who = agent(["a", "b", "c", "d"][(i % 4) as usize]);
            let patience = Duration::from_micros(50 * (i % 13));
            let acquired = tokio::time::timeout(patience, pool.acquire(&who, 2, i % 3 != 0)).await;
            if let Ok(instance) = acquired {
                let instance = instance.unwrap();
                pool.start_work(instance, None).unwrap();
                tokio::task::yield_now().await;
                pool.release(instance).unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stats = pool.stats();
    assert_eq!((stats.reserved, stats.working, stats.waiting), (0, 0, 0), "{stats:?}");
    assert_eq!(stats.created_total - stats.terminated_total, stats.live() as u64);
    assert!(stats.live() <= TOTAL);
    // All capacity is usable again: a new agent gets the whole pool without waiting.
    let e = agent("e");
    for _ in 0..TOTAL {
        let got = tokio::time::timeout(Duration::from_secs(5), pool.acquire(&e, 9, false)).await;
        got.expect("capacity leaked").unwrap();
    }
}

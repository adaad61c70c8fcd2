//! Circuit breakers: every transition, per-agent overrides, probe limits under concurrency,
//! operator actions, the event sequence and the views the console reads.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flightdeck::bus::EventBus;
use flightdeck::config::{BreakerOverride, BreakerSettings};
use flightdeck::event::{Envelope, Event};
use flightdeck::ids::AgentId;
use flightdeck::resilience::{
    AlertSeverity, BreakerBoard, BreakerRefusal, BreakerState, CallPermit, Health,
};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::advance;

const MS: Duration = Duration::from_millis(1);

fn board(settings: BreakerSettings) -> (BreakerBoard, UnboundedReceiver<Arc<Envelope>>) {
    let bus = EventBus::new();
    let sink = bus.sink();
    (BreakerBoard::new(settings, bus), sink)
}

fn agent(name: &str) -> AgentId {
    AgentId::new(name)
}

fn drain(sink: &mut UnboundedReceiver<Arc<Envelope>>) -> Vec<Event> {
    let mut events = Vec::new();
    while let Ok(envelope) = sink.try_recv() {
        events.push(envelope.event.clone());
    }
    events
}

fn fail(board: &BreakerBoard, agent: &AgentId, error: &str) {
    let permit = board.try_acquire(agent).unwrap();
    board.record_failure(permit, error, MS);
}

fn succeed(board: &BreakerBoard, agent: &AgentId) {
    let permit = board.try_acquire(agent).unwrap();
    board.record_success(permit, MS);
}

fn state(board: &BreakerBoard, agent: &AgentId) -> BreakerState {
    board.view(agent).state
}

#[tokio::test(start_paused = true)]
async fn opens_at_the_threshold_of_consecutive_failures() {
    let (board, mut sink) = board(BreakerSettings::default());
    let a = agent("a");
    fail(&board, &a, "boom");
    fail(&board, &a, "boom");
    succeed(&board, &a);
    assert_eq!(board.view(&a).consecutive_failures, 0, "a success clears the count");
    fail(&board, &a, "one");
    fail(&board, &a, "two");
    assert_eq!(state(&board, &a), BreakerState::Closed);
    assert!(drain(&mut sink).is_empty());
    fail(&board, &a, "three");

    assert_eq!(state(&board, &a), BreakerState::Open);
    assert_eq!(
        drain(&mut sink),
        vec![Event::BreakerOpened {
            agent: a.clone(),
            failures: 3,
            threshold: 3,
            recovery_ms: 60_000,
            last_error: "three".into(),
        }]
    );
    advance(Duration::from_secs(15)).await;
    let refusal = board.try_acquire(&a).err().unwrap();
    assert_eq!(
        refusal,
        BreakerRefusal::Open {
            agent: a.clone(),
            failures: 3,
            half_open_in: Duration::from_secs(45),
            last_error: Some("three".into()),
        }
    );
    assert_eq!(
        refusal.to_string(),
        "breaker for a is open after 3 consecutive failures (last: three); half-open in 45s"
    );
    assert_eq!(refusal.half_open_in(), Some(Duration::from_secs(45)));
}

#[tokio::test(start_paused = true)]
async fn goes_half_open_after_the_recovery_timeout_on_the_next_call() {
    let (board, mut sink) = board(BreakerSettings::default());
    let a = agent("a");
    board.force_open(&a, "ann");
    drain(&mut sink);
    advance(Duration::from_secs(59)).await;
    assert!(board.try_acquire(&a).is_err());
    assert_eq!(board.next_half_open_in(), Some(Duration::from_secs(1)));
    advance(Duration::from_secs(1)).await;

    let probe = board.try_acquire(&a).unwrap();
    assert!(probe.is_probe());
    assert_eq!(drain(&mut sink), vec![Event::BreakerHalfOpened { agent: a.clone(), probes: 3 }]);
    assert_eq!(state(&board, &a), BreakerState::HalfOpen);
    board.record_success(probe, MS);
}

#[tokio::test(start_paused = true)]
async fn tick_applies_due_half_open_transitions_without_calls() {
    let (board, mut sink) = board(BreakerSettings::default());
    let (a, b) = (agent("a"), agent("b"));
    board.force_open(&a, "ann");
    advance(Duration::from_secs(30)).await;
    board.force_open(&b, "ann");
    drain(&mut sink);
    assert_eq!(board.tick(), 0);
    advance(Duration::from_secs(30)).await;
    assert_eq!(board.tick(), 1);
    assert_eq!(drain(&mut sink), vec![Event::BreakerHalfOpened { agent: a, probes: 3 }]);
    let views = board.snapshot();
    assert_eq!(views[1].half_open_in, Some(Duration::from_secs(30)));
    assert_eq!(board.next_half_open_in(), Some(Duration::from_secs(30)));
}

#[tokio::test(start_paused = true)]
async fn ticker_publishes_half_open_on_time() {
    let bus = EventBus::new();
    let mut view = bus.subscribe();
    let board = BreakerBoard::new(BreakerSettings::default(), bus);
    let ticker = board.spawn_ticker();
    let a = agent("a");
    board.force_open(&a, "ann");
    let opened_at = tokio::time::Instant::now();
    assert!(matches!(view.recv().await.unwrap().event, Event::BreakerOpened { .. }));
    let half_open = view.recv().await.unwrap();
    assert_eq!(half_open.event, Event::BreakerHalfOpened { agent: a, probes: 3 });
    assert_eq!(opened_at.elapsed(), Duration::from_secs(60));
    ticker.abort();
}

#[tokio::test(start_paused = true)]
async fn ticker_ends_when_the_board_is_dropped() {
    let (board, _sink) = board(BreakerSettings::default());
    let ticker = board.spawn_ticker();
    drop(board);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(ticker.is_finished());
}

#[tokio::test(start_paused = true)]
async fn closes_after_the_allowed_probes_succeed_and_refuses_extra_probes() {
    let (board, mut sink) = board(BreakerSettings::default());
    let a = agent("a");
    board.force_open(&a, "ann");
    advance(Duration::from_secs(60)).await;
    let probes: Vec<CallPermit> = (0..3).map(|_| board.try_acquire(&a).unwrap()).collect();
    assert_eq!(
        board.try_acquire(&a).err().unwrap(),
        BreakerRefusal::ProbesBusy { agent: a.clone(), probes: 3 }
    );
    let mut probes = probes.into_iter();
    board.record_success(probes.next().unwrap(), MS);
    // One success plus two in flight still uses all three probe calls.
    assert!(matches!(board.try_acquire(&a), Err(BreakerRefusal::ProbesBusy { .. })));
    board.record_success(probes.next().unwrap(), MS);
    assert_eq!(state(&board, &a), BreakerState::HalfOpen);
    board.record_success(probes.next().unwrap(), MS);
    assert_eq!(state(&board, &a), BreakerState::Closed);
    let events = drain(&mut sink);
    assert_eq!(
        events.last().unwrap(),
        &Event::BreakerClosed { agent: a.clone(), reason: "3 probe calls succeeded".into() }
    );
    assert!(!board.try_acquire(&a).unwrap().is_probe());
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_for_a_full_recovery_timeout() {
    let (board, mut sink) = board(BreakerSettings::default());
    let a = agent("a");
    for _ in 0..3 {
        fail(&board, &a, "down");
    }
    advance(Duration::from_secs(60)).await;
    let first = board.try_acquire(&a).unwrap();
    let second = board.try_acquire(&a).unwrap();
    board.record_success(first, MS);
    board.record_failure(second, "still down", MS);
    assert_eq!(state(&board, &a), BreakerState::Open);
    assert_eq!(board.view(&a).half_open_in, Some(Duration::from_secs(60)));
    assert_eq!(
        drain(&mut sink).last().unwrap(),
        &Event::BreakerOpened {
            agent: a,
            failures: 4,
            threshold: 3,
            recovery_ms: 60_000,
            last_error: "probe failed: still down".into(),
        }
    );
}

#[tokio::test(start_paused = true)]
async fn per_agent_overrides_set_threshold_recovery_and_probes() {
    let mut settings = BreakerSettings::default();
    settings.overrides.insert(
        "flaky".into(),
        BreakerOverride {
            failure_threshold: Some(1),
            recovery_timeout: Some(Duration::from_secs(5)),
            half_open_probes: Some(1),
        },
    );
    settings.overrides.insert(
        "patient".into(),
        BreakerOverride { failure_threshold: Some(5), ..BreakerOverride::default() },
    );
    let (board, _sink) = board(settings);
    let (flaky, patient, plain) = (agent("flaky"), agent("patient"), agent("plain"));

    fail(&board, &flaky, "x");
    assert_eq!(state(&board, &flaky), BreakerState::Open);
    for _ in 0..4 {
        fail(&board, &patient, "x");
    }
    assert_eq!(state(&board, &patient), BreakerState::Closed);
    fail(&board, &patient, "x");
    assert_eq!(state(&board, &patient), BreakerState::Open);
    for _ in 0..2 {
        fail(&board, &plain, "x");
    }
    assert_eq!(state(&board, &plain), BreakerState::Closed);

    let limits = board.view(&patient).limits;
    assert_eq!((limits.recovery_timeout, limits.half_open_probes), (Duration::from_secs(60), 3));
    advance(Duration::from_secs(5)).await;
    let probe = board.try_acquire(&flaky).unwrap();
    assert!(matches!(board.try_acquire(&flaky), Err(BreakerRefusal::ProbesBusy { probes: 1, .. })));
    board.record_success(probe, MS);
    assert_eq!(state(&board, &flaky), BreakerState::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_probes_never_exceed_the_limit() {
    let settings = BreakerSettings {
        recovery_timeout: Duration::from_millis(20),
        ..BreakerSettings::default()
    };
    let (board, _sink) = board(settings);
    let a = agent("a");
    board.force_open(&a, "test");
    tokio::time::sleep(Duration::from_millis(30)).await;

    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let probes_admitted = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..64 {
        let (board, a) = (board.clone(), a.clone());
        let (in_flight, peak, admitted) =
            (in_flight.clone(), peak.clone(), probes_admitted.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                match board.try_acquire(&a) {
                    Ok(permit) if permit.is_probe() => {
                        admitted.fetch_add(1, Ordering::SeqCst);
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        for _ in 0..5 {
                            tokio::task::yield_now().await;
                        }
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        if i % 3 == 0 {
                            drop(permit); // cancelled: frees the slot, counts nothing
                        } else {
                            board.record_success(permit, MS);
                        }
                    }
                    Ok(permit) => {
                        board.record_success(permit, MS);
                        return;
                    }
                    Err(BreakerRefusal::ProbesBusy { .. }) => tokio::time::sleep(MS).await,
                    Err(refusal) => panic!("unexpected refusal: {refusal}"),
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= 3, "{peak} probes ran at once");
    assert!(probes_admitted.load(Ordering::SeqCst) >= 3);
    assert_eq!(state(&board, &a), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_permit_frees_its_probe_slot() {
    let settings = BreakerSettings { half_open_probes: 1, ..BreakerSettings::default() };
    let (board, _sink) = board(settings);
    let a = agent("a");
    board.force_open(&a, "ann");
    advance(Duration::from_secs(60)).await;
    let probe = board.try_acquire(&a).unwrap();
    assert!(matches!(board.try_acquire(&a), Err(BreakerRefusal::ProbesBusy { .. })));
    assert_eq!(board.view(&a).probes_in_flight, 1);
    drop(probe);
    assert_eq!(board.view(&a).probes_in_flight, 0);
    let again = board.try_acquire(&a).unwrap();
    assert!(again.is_probe());
    assert_eq!(board.view(&a).metrics.calls, 0, "an unsettled permit is not a call");
    board.record_success(again, MS);
    assert_eq!(state(&board, &a), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn reset_and_force_open_are_operator_transitions() {
    let (board, mut sink) = board(BreakerSettings::default());
    let a = agent("a");
    fail(&board, &a, "e1");
    board.force_open(&a, "ann");
    assert!(board.try_acquire(&a).is_err());
    board.reset(&a, "bob");
    assert_eq!(state(&board, &a), BreakerState::Closed);
    assert_eq!(board.view(&a).consecutive_failures, 0);
    succeed(&board, &a);
    // Reset of a closed breaker clears the count without an event.
    fail(&board, &a, "e2");
    board.reset(&a, "bob");
    assert_eq!(board.view(&a).consecutive_failures, 0);
    // A half-open breaker can be reset too.
    board.force_open(&a, "ann");
    advance(Duration::from_secs(60)).await;
    board.tick();
    board.reset(&a, "bob");

    assert_eq!(
        drain(&mut sink),
        vec![
            Event::BreakerOpened {
                agent: a.clone(),
                failures: 1,
                threshold: 3,
                recovery_ms: 60_000,
                last_error: "opened by ann".into(),
            },
            Event::BreakerClosed { agent: a.clone(), reason: "reset by bob".into() },
            Event::BreakerOpened {
                agent: a.clone(),
                failures: 0,
                threshold: 3,
                recovery_ms: 60_000,
                last_error: "opened by ann".into(),
            },
            Event::BreakerHalfOpened { agent: a.clone(), probes: 3 },
            Event::BreakerClosed { agent: a, reason: "reset by bob".into() },
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn full_cycle_publishes_events_in_order() {
    let (board, mut sink) = board(BreakerSettings::default());
    let a = agent("a");
    for _ in 0..3 {
        fail(&board, &a, "down");
    }
    advance(Duration::from_secs(60)).await;
    fail(&board, &a, "still down");
    advance(Duration::from_secs(60)).await;
    for _ in 0..3 {
        succeed(&board, &a);
    }
    let kinds: Vec<&str> = drain(&mut sink).iter().map(Event::kind).collect();
    assert_eq!(
        kinds,
        [
            "breaker_opened",
            "breaker_half_opened",
            "breaker_opened",
            "breaker_half_opened",
            "breaker_closed"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn late_outcomes_of_earlier_calls_do_not_move_the_state() {
    let (board, mut sink) = board(BreakerSettings::default());
    let a = agent("a");
    let late: Vec<CallPermit> = (0..5).map(|_| board.try_acquire(&a).unwrap()).collect();
    for _ in 0..3 {
        fail(&board, &a, "down");
    }
    drain(&mut sink);
    for permit in late {
        board.record_failure(permit, "late", MS);
    }
    assert!(drain(&mut sink).is_empty(), "no second BreakerOpened");
    let view = board.view(&a);
    assert_eq!(view.half_open_in, Some(Duration::from_secs(60)), "recovery not extended");
    assert_eq!((view.metrics.calls, view.metrics.errors), (8, 8));
    assert_eq!(view.last_error.as_deref(), Some("late"));
}

#[tokio::test(start_paused = true)]
async fn snapshot_reports_metrics_health_and_alerts() {
    let (board, _sink) = board(BreakerSettings::default());
    let (slow, shaky, broken) = (agent("slow"), agent("shaky"), agent("broken"));
    for secs in [20, 50] {
        let permit = board.try_acquire(&slow).unwrap();
        board.record_success(permit, Duration::from_secs(secs));
    }
    // 2 failures out of 8 calls (25%) is not above the critical rate.
    for i in 0..8 {
        if i % 4 == 3 { fail(&board, &shaky, "flaky") } else { succeed(&board, &shaky) }
    }
    for _ in 0..3 {
        fail(&board, &broken, "dead");
    }

    let views = board.snapshot();
    let names: Vec<&str> = views.iter().map(|v| v.agent.as_str()).collect();
    assert_eq!(names, ["broken", "shaky", "slow"]);
    let (broken, shaky, slow) = (&views[0], &views[1], &views[2]);

    assert_eq!(slow.health, Health::Healthy);
    assert_eq!(slow.metrics.mean_duration(), Some(Duration::from_secs(35)));
    assert_eq!(slow.metrics.total_duration, Duration::from_secs(70));
    assert_eq!(slow.alerts[0].severity, AlertSeverity::Info);

    assert_eq!(shaky.health, Health::Healthy);
    assert_eq!(shaky.metrics.success_rate(), Some(0.75));
    assert!(shaky.alerts.is_empty());

    assert_eq!((broken.state, broken.health), (BreakerState::Open, Health::Unhealthy));
    assert_eq!((broken.consecutive_failures, broken.limits.failure_threshold), (3, 3));
    assert_eq!(broken.half_open_in, Some(Duration::from_secs(60)));
    assert_eq!(broken.last_error.as_deref(), Some("dead"));
    let severities: Vec<AlertSeverity> = broken.alerts.iter().map(|a| a.severity).collect();
    assert_eq!(severities, [AlertSeverity::Critical, AlertSeverity::Warning]);
}

#[tokio::test(start_paused = true)]
async fn backlog_events_rebuild_open_and_half_open_breakers() {
    let (board, _sink) = board(BreakerSettings::default());
    let (open, half, closed) = (agent("open"), agent("half"), agent("closed"));
    board.force_open(&half, "ann");
    advance(Duration::from_secs(60)).await;
    board.force_open(&open, "ann");
    advance(Duration::from_secs(20)).await;
    succeed(&board, &closed);
    assert_eq!(
        board.backlog_events(),
        vec![
            Event::BreakerHalfOpened { agent: half, probes: 3 },
            Event::BreakerOpened {
                agent: open,
                failures: 0,
                threshold: 3,
                recovery_ms: 40_000,
                last_error: "opened by ann".into(),
            },
        ]
    );
}

//! Delays between task attempts.
//!
//! Exponential growth with *equal jitter*: the ceiling is `base × 2^(attempt−1)` capped at
//! `max`, and the delay is half the ceiling plus a random share of the other half. Unlike full
//! jitter (anywhere in `0..=ceiling`), a retry never fires almost at once, so the configured
//! first delay keeps its meaning and the growth stays visible in the console, while retries
//! of many tasks that failed together still spread over half of each window.

use std::time::Duration;

/// Delay before the retry that follows failed attempt number `attempt` (1-based; 0 is read
/// as 1). Always within `ceiling/2 ..= ceiling`, where `ceiling = min(max, base × 2^(attempt−1))`.
pub fn retry_delay(
    attempt: u32,
    base: Duration,
    max: Duration,
    rng: &mut impl rand::Rng,
) -> Duration {
    let doublings = attempt.saturating_sub(1).min(31);
    let ceiling = base.saturating_mul(1u32 << doublings).min(max);
    let ceiling_ns = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    let half_ns = ceiling_ns / 2;
    // The upper half gets the odd nanosecond so the result can reach the ceiling exactly.
    let jitter_ns = rng.random_range(0..=ceiling_ns - half_ns);
    Duration::from_nanos(half_ns + jitter_ns)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    const BASE: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(30);

    #[test]
    fn delays_stay_within_half_and_full_ceiling() {
        let mut rng = StdRng::seed_from_u64(42);
        for attempt in 0..=40u32 {
            let ceiling = BASE.saturating_mul(1 << attempt.saturating_sub(1).min(31)).min(MAX);
            for _ in 0..200 {
                let delay = retry_delay(attempt, BASE, MAX, &mut rng);
                assert!(delay >= ceiling / 2, "attempt {attempt}: {delay:?} < {:?}", ceiling / 2);
                assert!(delay <= ceiling, "attempt {attempt}: {delay:?} > {ceiling:?}");
            }
        }
    }

    #[test]
    fn mean_delay_doubles_until_the_cap() {
        let mut rng = StdRng::seed_from_u64(7);
        let mean = |attempt: u32, rng: &mut StdRng| {
            let total: Duration = (0..1000).map(|_| retry_delay(attempt, BASE, MAX, rng)).sum();
            total / 1000
        };
        let means: Vec<Duration> = (1..=9).map(|attempt| mean(attempt, &mut rng)).collect();
        // Uncapped windows: 0.5 s, 1 s, 2 s, 4 s, 8 s, 16 s; expected mean is 3/4 of each.
        for pair in means[..6].windows(2) {
            let ratio = pair[1].as_secs_f64() / pair[0].as_secs_f64();
            assert!((1.8..2.2).contains(&ratio), "ratio {ratio} in {means:?}");
        }
        assert!((means[0].as_secs_f64() - 0.375).abs() < 0.02, "{means:?}");
        // From attempt 7 the window is capped at 30 s.
        for capped in &means[6..] {
            assert!((capped.as_secs_f64() - 22.5).abs() < 1.0, "{means:?}");
        }
    }

    #[test]
    fn same_seed_gives_same_delays() {
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (1..10).map(|a| retry_delay(a, BASE, MAX, &mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(retry_delay(5, BASE, Duration::ZERO, &mut rng), Duration::ZERO);
        assert_eq!(retry_delay(5, Duration::ZERO, MAX, &mut rng), Duration::ZERO);
        let huge = retry_delay(u32::MAX, Duration::MAX, Duration::MAX, &mut rng);
        assert!(huge >= Duration::from_nanos(u64::MAX / 2));
        // A base above the cap starts at the cap.
        assert!(retry_delay(1, Duration::from_secs(60), MAX, &mut rng) <= MAX);
    }
}

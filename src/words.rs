//! Words for people: a count with its noun in the right number ("1 run", "3 runs"), so no
//! message says "run(s)", and a duration as flightdeck.yaml writes it ("7d", not "7days").

/// `count` and `noun`, the noun plural (with an `s`) unless the count is one.
pub fn plural<N>(count: N, noun: &str) -> String
where
    N: std::fmt::Display + PartialEq + From<u8> + Copy,
{
    if count == N::from(1) { format!("1 {noun}") } else { format!("{count} {noun}s") }
}

/// A duration as people write it in flightdeck.yaml: its whole units, largest first, down
/// to milliseconds (`7d`, `1h 30m`, `1s 500ms`); what is under a millisecond is dropped, and
/// nothing at all is `0s`. `humantime` would say `7days` and `1month 2days`.
pub fn duration(duration: std::time::Duration) -> String {
    let total = duration.as_millis();
    let units = [
        (total / 86_400_000, "d"),
        (total / 3_600_000 % 24, "h"),
        (total / 60_000 % 60, "m"),
        (total / 1000 % 60, "s"),
        (total % 1000, "ms"),
    ];
    let parts: Vec<String> =
        units.iter().filter(|(n, _)| *n > 0).map(|(n, unit)| format!("{n}{unit}")).collect();
    if parts.is_empty() { "0s".to_owned() } else { parts.join(" ") }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn durations_read_as_they_are_written() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_micros(400), "0s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_millis(1500), "1s 500ms"),
            (Duration::from_secs(90), "1m 30s"),
            (Duration::from_secs(300), "5m"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(5400), "1h 30m"),
            (Duration::from_secs(7 * 86_400), "7d"),
            (Duration::from_secs(40 * 86_400 + 7200), "40d 2h"),
        ];
        for (value, text) in cases {
            assert_eq!(duration(value), text);
            // What it writes, flightdeck.yaml reads back (where nothing was dropped).
            if value.subsec_micros() % 1000 == 0 {
                assert_eq!(humantime::parse_duration(text).ok(), Some(value), "{text}");
            }
        }
    }

    #[test]
    fn plurals() {
        assert_eq!(plural(1, "error"), "1 error");
        assert_eq!(plural(0, "error"), "0 errors");
        assert_eq!(plural(2_u64, "attempt"), "2 attempts");
        assert_eq!(plural(1_u32, "attempt"), "1 attempt");
    }
}

//! Words for people: a count with its noun in the right number ("1 run", "3 runs"), so no
//! message says "run(s)".

/// `count` and `noun`, the noun plural (with an `s`) unless the count is one.
pub fn plural<N>(count: N, noun: &str) -> String
where
    N: std::fmt::Display + PartialEq + From<u8> + Copy,
{
    if count == N::from(1) { format!("1 {noun}") } else { format!("{count} {noun}s") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals() {
        assert_eq!(plural(1, "error"), "1 error");
        assert_eq!(plural(0, "error"), "0 errors");
        assert_eq!(plural(2_u64, "attempt"), "2 attempts");
        assert_eq!(plural(1_u32, "attempt"), "1 attempt");
    }
}

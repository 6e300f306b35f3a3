//! limit_data: passes data until `bytes` went through in this direction, then closes the link.

/// What to do with a chunk of `len` bytes when `sent` bytes already went through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Step {
    /// How many bytes of the chunk to pass on.
    pub pass: usize,
    /// Close after passing them (the limit is reached).
    pub close: bool,
}

/// Toxiproxy closes once the limit is reached by a chunk, so a limit ≤ 0 closes on the first chunk.
pub(crate) fn step(limit: i64, sent: i64, len: usize) -> Step {
    let remaining = limit.saturating_sub(sent).max(0);
    let pass = (len as i64).min(remaining) as usize;
    Step { pass, close: remaining - pass as i64 <= 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_up_to_the_limit_then_closes() {
        assert_eq!(step(10, 0, 4), Step { pass: 4, close: false });
        assert_eq!(step(10, 4, 4), Step { pass: 4, close: false });
        assert_eq!(step(10, 8, 4), Step { pass: 2, close: true });
        assert_eq!(step(10, 6, 4), Step { pass: 4, close: true });
        assert_eq!(step(0, 0, 4), Step { pass: 0, close: true });
        assert_eq!(step(-5, 0, 4), Step { pass: 0, close: true });
    }
}

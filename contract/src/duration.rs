//! The one duration syntax of every flag and field: Go duration strings such as `30s`, `1m30s`,
//! `1.5h` or `500ms` (units ns, us, µs, ms, s, m, h; no sign), and a bare `0`.

use std::time::Duration;

/// The pattern the apiserver checks on duration fields; [`parse`] accepts exactly these (and `0`).
pub const PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError(pub String);

impl std::fmt::Display for DurationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} is not a duration: write it like 30s, 1m30s or 500ms", self.0)
    }
}

impl std::error::Error for DurationError {}

/// Units in nanoseconds; `ms` comes before `m` and `s`, so it is not read as either.
const UNITS: [(&str, u64); 7] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses `s`; saturates at `Duration::MAX` rather than overflowing.
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    let bad = || DurationError(s.to_string());
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut rest = s;
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let (number, after) = split_number(rest).ok_or_else(bad)?;
        let (unit, nanos) = UNITS.iter().find(|(u, _)| after.starts_with(u)).ok_or_else(bad)?;
        total = total.saturating_add(scale(number, *nanos));
        rest = &after[unit.len()..];
    }
    Ok(total)
}

/// A decimal number at the start of `s` (digits, optionally `.` and digits) and what follows.
fn split_number(s: &str) -> Option<((&str, &str), &str)> {
    let digits = |t: &str| t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let whole = digits(s);
    if whole == 0 {
        return None;
    }
    let rest = &s[whole..];
    match rest.strip_prefix('.') {
        Some(frac) => {
            let n = digits(frac);
            (n > 0).then(|| ((&s[..whole], &frac[..n]), &frac[n..]))
        }
        None => Some(((&s[..whole], ""), rest)),
    }
}

/// `whole.frac` units of `nanos` each, exactly for the integer part, rounded down below a nanosecond.
fn scale((whole, frac): (&str, &str), nanos: u64) -> Duration {
    let w: u128 = whole.parse().unwrap_or(u128::MAX);
    let mut n = w.saturating_mul(u128::from(nanos));
    let (mut f, mut div) = (0u128, 1u128);
    for c in frac.chars().take(18) {
        f = f * 10 + u128::from(c.to_digit(10).unwrap_or(0));
        div *= 10;
    }
    n = n.saturating_add(f * u128::from(nanos) / div);
    match u64::try_from(n / 1_000_000_000) {
        Ok(secs) => Duration::new(secs, (n % 1_000_000_000) as u32),
        Err(_) => Duration::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_duration_strings() {
        let ms = Duration::from_millis;
        for (s, d) in [
            ("30s", ms(30_000)),
            ("1m30s", ms(90_000)),
            ("1.5h", ms(5_400_000)),
            ("500ms", ms(500)),
            ("250us", Duration::from_micros(250)),
            ("250µs", Duration::from_micros(250)),
            ("7ns", Duration::from_nanos(7)),
            ("1h2m3s4ms", ms(3_723_004)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("0.001s", ms(1)),
        ] {
            assert_eq!(parse(s), Ok(d), "{s}");
        }
    }

    #[test]
    fn anything_else_is_refused_with_the_input_and_an_example() {
        for s in ["", "5", "s", "-1s", "+1s", "1.s", ".5s", "1 s", "1d", "1sm", "1.5.5s", "10x"] {
            assert!(parse(s).is_err(), "{s:?} accepted");
        }
        let e = parse("10x").unwrap_err().to_string();
        assert!(e.contains("\"10x\"") && e.contains("1m30s"), "{e}");
    }

    #[test]
    fn huge_values_saturate() {
        assert_eq!(parse("99999999999999999999999h"), Ok(Duration::MAX));
    }
}

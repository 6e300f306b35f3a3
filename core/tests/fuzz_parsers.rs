//! Hostile input to the two parsers everything outside chaoslab reaches: the client's `/metrics`
//! text (`client_metrics::parse`, at every scrape) and the duration syntax (every flag and field).
//! Whatever comes, neither panics, and what is refused says what is wrong.

use chaoslab_contract::{BREAKER_STATE, BREAKER_TRANSITIONS, POOL_CONNECTIONS, REQUESTS, duration};
use chaoslab_core::client_metrics::{ParseError, parse};
use proptest::{collection::vec, prelude::*};

/// A refusal names the line and what is wrong with it, or says the requests series is missing.
fn names_the_problem(e: &ParseError) -> bool {
    let text = e.to_string();
    match e {
        ParseError::BadLine { line, .. } => text.starts_with(&format!("line {line}: ")),
        ParseError::NoRequests { .. } => text.contains(REQUESTS),
    }
}

/// A label value as a hostile client may write it: quotes, escapes, newlines, non-ASCII.
fn label_value() -> impl Strategy<Value = String> {
    prop_oneof!["s[0-9]", "[a-z\"\\\\{},= \n]{0,6}", "\\PC{0,4}", Just("success".to_string())]
}

/// A line close to the contract's: its names and labels, odd values, broken syntax.
fn metric_line() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just(REQUESTS.to_string()),
        Just(BREAKER_STATE.to_string()),
        Just(BREAKER_TRANSITIONS.to_string()),
        Just(POOL_CONNECTIONS.to_string()),
        "chaoslab_client_[a-z_]{0,12}",
        "[a-z_#]{0,10}",
    ];
    let key = prop_oneof!["server", "outcome", "state", "from", "to", "[a-z]{0,3}", "\\PC{0,2}"];
    let labels = vec((key, label_value()), 0..4);
    let value = prop_oneof![
        "-?[0-9]{1,25}(\\.[0-9]{0,5})?(e[+-]?[0-9]{1,3})?",
        "NaN|\\+Inf|-Inf|Infinity|nan|0x1F|1_000",
        "\\PC{0,6}",
    ];
    let tail = prop_oneof![Just(String::new()), " [0-9]{1,13}", "\\PC{0,6}", Just("}".to_string())];
    (name, labels, any::<bool>(), value, tail).prop_map(|(name, labels, braces, value, tail)| {
        let body: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let labels = if braces { format!("{{{}}}", body.join(",")) } else { body.join(",") };
        format!("{name}{labels} {value}{tail}")
    })
}

#[test]
fn a_backslash_before_a_wide_character_in_a_label_is_read_or_refused() {
    let text = format!("{REQUESTS}{{server=\"\\é\",outcome=\"success\"}} 1\n");
    assert!(parse(&text).is_ok_and(|s| s.contains_key("é")), "{:?}", parse(&text));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn any_text_is_read_or_refused_naming_the_problem(text in "\\PC{0,300}") {
        if let Err(e) = parse(&text) {
            prop_assert!(names_the_problem(&e), "{e}");
        }
    }

    #[test]
    fn any_bytes_read_as_text_are_read_or_refused(bytes in vec(any::<u8>(), 0..400)) {
        if let Err(e) = parse(&String::from_utf8_lossy(&bytes)) {
            prop_assert!(names_the_problem(&e), "{e}");
        }
    }

    /// What a well-behaved client writes is read back as written.
    #[test]
    fn a_counter_of_the_contract_is_read_back(
        server in "[a-zA-Z0-9_.:-]{1,20}",
        value in 0.0f64..1e15,
        noise in vec(metric_line(), 0..4),
    ) {
        let noise: Vec<String> = noise.into_iter().map(|l| format!("# {l}")).collect();
        let line = format!("{REQUESTS}{{server=\"{server}\",outcome=\"success\"}} {value}");
        let scrape = parse(&[noise.join("\n"), line].join("\n")).unwrap();
        prop_assert_eq!(scrape[&server].success, value);
    }

    #[test]
    fn any_duration_text_is_read_or_refused_quoting_it(text in "\\PC{0,40}|[0-9.]{0,30}(ns|us|µs|ms|s|m|h){0,3}") {
        match duration::parse(&text) {
            Ok(_) => prop_assert!(text == "0" || text.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == 'µ')),
            Err(e) => {
                let quoted = format!("{:?} is not a duration", text);
                prop_assert!(e.to_string().starts_with(&quoted), "{}", e);
            }
        }
    }

    /// Sums of whole units are exact, and huge ones saturate instead of overflowing.
    #[test]
    fn whole_units_add_up_and_saturate(parts in vec((0u64..u64::MAX, 0usize..7), 1..5)) {
        const UNITS: [(&str, u128); 7] =
            [("ns", 1), ("us", 1_000), ("µs", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000), ("m", 60_000_000_000), ("h", 3_600_000_000_000)];
        let text: String = parts.iter().map(|(n, u)| format!("{n}{}", UNITS[*u].0)).collect();
        let nanos = parts.iter().fold(0u128, |sum, (n, u)| sum.saturating_add(u128::from(*n) * UNITS[*u].1));
        let expected = u64::try_from(nanos / 1_000_000_000)
            .map_or(std::time::Duration::MAX, |s| std::time::Duration::new(s, (nanos % 1_000_000_000) as u32));
        prop_assert_eq!(duration::parse(&text), Ok(expected), "{}", text);
    }
}

// Each case builds up to 12 lines from regular expressions: slower, so fewer cases (~4 s).
proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn almost_prometheus_text_is_read_or_refused_naming_the_line(
        lines in vec(metric_line(), 0..12),
    ) {
        if let Err(e) = parse(&lines.join("\n")) {
            prop_assert!(names_the_problem(&e), "{e}");
        }
    }
}

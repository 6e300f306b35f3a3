//! The Prometheus text exposition format, read as far as the checks need: samples of the wanted
//! families (comments, `# EOF` and everything else skipped).

use std::collections::BTreeMap;

use super::ParseError;

/// One sample: `name{labels} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The samples whose metric name `wanted` accepts; a malformed line of such a metric is an error.
pub fn samples(text: &str, wanted: impl Fn(&str) -> bool) -> Result<Vec<Sample>, ParseError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line.find(|c: char| c == '{' || c.is_whitespace()).unwrap_or(line.len());
        if !wanted(&line[..name_end]) {
            continue;
        }
        let (name, labels, value) = split_sample(line).ok_or_else(|| ParseError::BadLine {
            line: i + 1,
            reason: "not a sample",
            text: raw.to_string(),
        })?;
        out.push(Sample { name: name.to_string(), labels, value });
    }
    Ok(out)
}

/// `name{a="b",c="d"} value [timestamp]` → parts. Label values may hold escaped quotes.
fn split_sample(line: &str) -> Option<(&str, BTreeMap<String, String>, f64)> {
    let (name, rest) = match line.find('{') {
        Some(i) => (&line[..i], &line[i..]),
        None => {
            let mut it = line.split_whitespace();
            let name = it.next()?;
            return Some((name, BTreeMap::new(), parse_value(it.next()?)?));
        }
    };
    let mut labels = BTreeMap::new();
    let bytes = rest.as_bytes();
    let mut i = 1;
    loop {
        while i < bytes.len() && (bytes[i] == b',' || bytes[i] == b' ') {
            i += 1;
        }
        if i >= bytes.len() {
            return None;
        }
        if bytes[i] == b'}' {
            i += 1;
            break;
        }
        let eq = rest[i..].find('=')? + i;
        let key = rest[i..eq].trim().to_string();
        if bytes.get(eq + 1) != Some(&b'"') {
            return None;
        }
        let mut j = eq + 2;
        let mut value = String::new();
        loop {
            match bytes.get(j)? {
                b'\\' => {
                    // The escaped character may be wider than one byte: step over it whole.
                    let escaped = rest.get(j + 1..)?.chars().next()?;
                    value.push(if escaped == 'n' { '\n' } else { escaped });
                    j += 1 + escaped.len_utf8();
                }
                b'"' => break,
                _ => {
                    let ch = rest[j..].chars().next()?;
                    value.push(ch);
                    j += ch.len_utf8();
                }
            }
        }
        labels.insert(key, value);
        i = j + 1;
    }
    let value = parse_value(rest[i..].split_whitespace().next()?)?;
    Some((name, labels, value))
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_with_escapes_and_timestamps() {
        let (name, labels, v) = split_sample(r#"m{server="a\"b",x="y"} 2 1700000000000"#).unwrap();
        assert_eq!((name, labels["server"].as_str(), v), ("m", "a\"b", 2.0));
    }

    #[test]
    fn only_wanted_families_are_read() {
        let text = "# EOF\nm_total{a=\"1\"} 3\nbroken{ 1\nm_created{a=\"1\"} 1.7e9\n";
        let s = samples(text, |n| n == "m_total").unwrap();
        assert_eq!(
            s,
            [Sample { name: "m_total".into(), labels: BTreeMap::from([("a".into(), "1".into())]), value: 3.0 }]
        );
    }
}

//! Phase durations as the API spells them: Go duration strings such as `30s` or `1m30s`.

use std::{borrow::Cow, fmt, str::FromStr, time::Duration};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// The pattern the apiserver checks before the CEL rule: the contract's duration syntax.
pub use chaoslab_contract::duration::PATTERN as DURATION_PATTERN;

/// A strictly positive duration written as a Go duration string (`30s`, `1m30s`, `1.5h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhaseDuration(pub Duration);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("{0:?} is not a duration: write it like 30s, 1m30s or 500ms")]
    Malformed(String),
    #[error("{0:?} must be greater than zero")]
    NotPositive(String),
}

impl PhaseDuration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }
}

impl FromStr for PhaseDuration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let d = chaoslab_contract::duration::parse(s).map_err(|_| DurationError::Malformed(s.to_string()))?;
        if d.is_zero() {
            return Err(DurationError::NotPositive(s.to_string()));
        }
        Ok(Self(d))
    }
}

/// Whole seconds print as `1h2m3s`, anything finer as milliseconds (`1500ms`): both parse back to the same value.
impl fmt::Display for PhaseDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_nanos() != 0 {
            if d.subsec_nanos().is_multiple_of(1_000_000) {
                return write!(f, "{}ms", d.as_millis());
            }
            return write!(f, "{}ns", d.as_nanos());
        }
        let secs = d.as_secs();
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if s > 0 || secs == 0 {
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

impl Serialize for PhaseDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PhaseDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

impl JsonSchema for PhaseDuration {
    fn schema_name() -> Cow<'static, str> {
        "PhaseDuration".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "maxLength": 32,
            "x-kubernetes-validations": [{
                "rule": "duration(self) > duration('0s')",
                "message": "must be a duration greater than zero, like 30s or 1m30s"
            }]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_duration_strings() {
        assert_eq!("30s".parse(), Ok(PhaseDuration::from_secs(30)));
        assert_eq!("1m30s".parse(), Ok(PhaseDuration::from_secs(90)));
        assert_eq!("1.5s".parse(), Ok(PhaseDuration(Duration::from_millis(1500))));
        assert_eq!("250ms".parse(), Ok(PhaseDuration(Duration::from_millis(250))));
    }

    #[test]
    fn rejects_zero_negative_and_malformed() {
        assert_eq!("0s".parse::<PhaseDuration>(), Err(DurationError::NotPositive("0s".into())));
        assert!(matches!("-5s".parse::<PhaseDuration>(), Err(DurationError::Malformed(_))));
        assert!(matches!("30".parse::<PhaseDuration>(), Err(DurationError::Malformed(_))));
        assert!(matches!("soon".parse::<PhaseDuration>(), Err(DurationError::Malformed(_))));
    }

    #[test]
    fn display_round_trips() {
        for s in ["30s", "1m30s", "1h", "2h0m5s", "1500ms", "10ns"] {
            let d: PhaseDuration = s.parse().unwrap();
            assert_eq!(d.to_string().parse::<PhaseDuration>().unwrap(), d, "{s}");
        }
        assert_eq!(PhaseDuration::from_secs(90).to_string(), "1m30s");
        assert_eq!(PhaseDuration::from_secs(3600).to_string(), "1h");
    }
}

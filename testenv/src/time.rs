//! Times for tests of the pure cores, which take the time as an argument.

use jiff::{SignedDuration, Timestamp};

/// `secs` seconds after the Unix epoch.
pub fn at(secs: i64) -> Timestamp {
    Timestamp::UNIX_EPOCH + SignedDuration::from_secs(secs)
}

/// `ms` milliseconds after the Unix epoch.
pub fn at_ms(ms: i64) -> Timestamp {
    Timestamp::UNIX_EPOCH + SignedDuration::from_millis(ms)
}

//! Phase changes first. When many runs change phase at the same instant, each change is a few
//! Toxiproxy calls that should be done within milliseconds; the apiserver writes that record what
//! happened (status, Events, the finished mark) can wait. So writers hold back from [`AHEAD`] before
//! to [`AFTER`] past a boundary some running scenario is due at, and the CPU (the operator's, and on
//! a small node the apiserver's) goes to the calls. A write waits once, for at most `AHEAD + AFTER`,
//! and then goes even if another boundary is near: with boundaries close together everywhere it
//! would otherwise never go.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use jiff::{SignedDuration, Timestamp};

/// How long before a boundary writes stop: a write started then could still be in the apiserver when
/// the boundary's reconciles begin (woken `WAKE_AHEAD` before it).
pub const AHEAD: SignedDuration = SignedDuration::from_millis(100);
/// How long past a boundary writes stay held: the Toxiproxy calls of 500 runs sharing one take about
/// 40 ms when nothing else runs (`hack/bench-operator.sh`, its anchor line).
pub const AFTER: SignedDuration = SignedDuration::from_millis(150);

/// The next phase boundary of each running scenario, by uid.
#[derive(Default)]
pub struct Boundaries {
    due: Mutex<HashMap<String, Timestamp>>,
}

impl Boundaries {
    /// Records when the scenario changes phase next; `None` when it will not (it ended or went).
    pub fn expect(&self, uid: &str, next: Option<Timestamp>) {
        let mut due = self.due.lock().expect("boundaries");
        match next {
            Some(at) => {
                due.insert(uid.to_string(), at);
            }
            None => {
                due.remove(uid);
            }
        }
    }

    /// Waits, before an apiserver write, until the windows of the boundaries near now are over.
    pub async fn quiet(&self) {
        let wait = hold(self.due.lock().expect("boundaries").values().copied(), Timestamp::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// How long a write about to start at `now` waits: until every window around a boundary in `due`
/// that `now` falls in is over.
pub fn hold(due: impl IntoIterator<Item = Timestamp>, now: Timestamp) -> Duration {
    due.into_iter()
        .filter(|b| b.checked_sub(AHEAD).is_ok_and(|from| from <= now))
        .filter_map(|b| Duration::try_from(b.checked_add(AFTER).ok()?.duration_since(now)).ok())
        .max()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use chaoslab_testenv::at_ms;

    use super::*;

    #[test]
    fn a_write_near_a_boundary_waits_until_its_window_is_over() {
        let due = [at_ms(10_000)];
        assert_eq!(hold(due, at_ms(9_950)), Duration::from_millis(200));
        assert_eq!(hold(due, at_ms(10_100)), Duration::from_millis(50));
    }

    #[test]
    fn a_write_away_from_every_boundary_goes_at_once() {
        let due = [at_ms(10_000), at_ms(12_000)];
        assert_eq!(hold(due, at_ms(9_899)), Duration::ZERO);
        assert_eq!(hold(due, at_ms(10_150)), Duration::ZERO);
        assert_eq!(hold(due, at_ms(11_000)), Duration::ZERO);
        assert_eq!(hold([], at_ms(10_000)), Duration::ZERO);
    }

    #[test]
    fn among_boundaries_close_together_a_write_waits_for_the_last_window_it_is_in() {
        let due = [at_ms(10_000), at_ms(10_120), at_ms(10_240)];
        assert_eq!(hold(due, at_ms(10_100)), Duration::from_millis(170));
        assert_eq!(hold(due, at_ms(10_200)), Duration::from_millis(190));
        assert!(hold(due, at_ms(9_900)) <= Duration::try_from(AHEAD + AFTER).unwrap());
    }

    #[test]
    fn a_scenario_has_one_next_boundary_and_none_once_it_ended() {
        let b = Boundaries::default();
        b.expect("a", Some(at_ms(10_000)));
        b.expect("a", Some(at_ms(12_000)));
        b.expect("b", Some(at_ms(10_000)));
        b.expect("b", None);
        let due: Vec<Timestamp> = b.due.lock().unwrap().values().copied().collect();
        assert_eq!(due, vec![at_ms(12_000)]);
    }
}

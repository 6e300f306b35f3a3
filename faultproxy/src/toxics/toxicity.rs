//! Toxicity: each time a toxic starts on a link it is drawn on (`rand < toxicity`) or runs as a no-op, per
//! connection and direction. A change to a link's chain restarts some toxics, which draw again; the others
//! keep running as they were. Which ones restart follows Toxiproxy: an added toxic and the one before it,
//! an updated toxic, and the one before a removed toxic.

/// Whether a toxic started with a draw `unit` in [0, 1) acts (Toxiproxy compares float32s).
pub(crate) fn acts(toxicity: f64, unit: f32) -> bool {
    unit < toxicity as f32
}

/// What becomes of each toxic of the new chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Runs on as the old chain's toxic at this index (same draw, same timers).
    Keep(usize),
    /// The old chain's toxic at this index restarts: new draw and attributes, stateful counters kept.
    Restart(usize),
    /// New on this link.
    Fresh,
}

/// Toxics are `(id, revision)`; ids are unique for the server's lifetime, the revision grows on update.
/// New toxics are appended, so surviving toxics keep their relative order.
pub(crate) fn plan(old: &[(u64, u64)], new: &[(u64, u64)]) -> Vec<Fate> {
    let old_index = |id: u64| old.iter().position(|(o, _)| *o == id);
    let mut fates: Vec<Fate> = new
        .iter()
        .map(|&(id, rev)| match old_index(id) {
            Some(i) if old[i].1 == rev => Fate::Keep(i),
            Some(i) => Fate::Restart(i),
            None => Fate::Fresh,
        })
        .collect();
    let restart = |fates: &mut Vec<Fate>, new_i: usize| {
        if let Fate::Keep(i) = fates[new_i] {
            fates[new_i] = Fate::Restart(i);
        }
    };
    // The toxic before the first added one was the chain's end: Toxiproxy interrupts it to re-link.
    if let Some(first_new) = fates.iter().position(|f| *f == Fate::Fresh)
        && first_new > 0
    {
        restart(&mut fates, first_new - 1);
    }
    // The toxic before a removed one is interrupted to take over its output.
    for (i, (id, _)) in old.iter().enumerate() {
        let removed = !new.iter().any(|(n, _)| n == id);
        if removed && i > 0 {
            let before = old[i - 1].0;
            if let Some(ni) = new.iter().position(|(n, _)| *n == before) {
                restart(&mut fates, ni);
            }
        }
    }
    fates
}

/// For each old index, how many surviving old toxics come before it: where data that was about to enter
/// old toxic `i` (or the writer, at `old.len()`) enters the new chain.
pub(crate) fn entry_points(old: &[(u64, u64)], new: &[(u64, u64)]) -> Vec<usize> {
    let mut out = Vec::with_capacity(old.len() + 1);
    let mut survivors = 0;
    for (id, _) in old {
        out.push(survivors);
        if new.iter().any(|(n, _)| n == id) {
            survivors += 1;
        }
    }
    out.push(survivors);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toxicity_is_a_threshold() {
        assert!(acts(1.0, 0.999_999));
        assert!(!acts(0.0, 0.0));
        assert!(acts(0.3, 0.29));
        assert!(!acts(0.3, 0.31));
    }

    #[test]
    fn adding_restarts_the_previous_end() {
        let old = [(1, 0), (2, 0)];
        assert_eq!(plan(&old, &[(1, 0), (2, 0), (3, 0)]), vec![Fate::Keep(0), Fate::Restart(1), Fate::Fresh]);
        assert_eq!(plan(&[], &[(3, 0)]), vec![Fate::Fresh]);
    }

    #[test]
    fn updating_restarts_only_that_toxic() {
        let old = [(1, 0), (2, 0), (3, 0)];
        assert_eq!(plan(&old, &[(1, 0), (2, 1), (3, 0)]), vec![Fate::Keep(0), Fate::Restart(1), Fate::Keep(2)]);
    }

    #[test]
    fn removing_restarts_the_one_before() {
        let old = [(1, 0), (2, 0), (3, 0)];
        assert_eq!(plan(&old, &[(1, 0), (3, 0)]), vec![Fate::Restart(0), Fate::Keep(2)]);
        assert_eq!(plan(&old, &[(2, 0), (3, 0)]), vec![Fate::Keep(1), Fate::Keep(2)]);
    }

    #[test]
    fn entry_points_skip_removed_toxics() {
        let old = [(1, 0), (2, 0), (3, 0)];
        assert_eq!(entry_points(&old, &[(1, 0), (3, 0), (4, 0)]), vec![0, 1, 1, 2]);
        assert_eq!(entry_points(&old, &[]), vec![0, 0, 0, 0]);
    }
}

//! slicer: a chunk cut into pieces of about `average_size` ± `size_variation` bytes, as Toxiproxy cuts it
//! (halve around the middle, shifted by a random variation, until pieces are small enough).

/// Piece boundaries `[(start, end)]` covering `0..len` in order. `rand_below(n)` draws uniformly from `0..n`.
/// Unlike Toxiproxy, a size_variation ≤ 0 means no variation rather than a crash, and every piece has at
/// least one byte.
pub(crate) fn pieces(
    len: usize,
    average_size: i64,
    size_variation: i64,
    rand_below: &mut impl FnMut(i64) -> i64,
) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    split(0, len as i64, average_size, size_variation.max(0), rand_below, &mut out);
    out
}

fn split(
    start: i64,
    end: i64,
    avg: i64,
    var: i64,
    rand_below: &mut impl FnMut(i64) -> i64,
    out: &mut Vec<(usize, usize)>,
) {
    if end <= start {
        return;
    }
    if (end - start) - avg <= var || end - start <= 1 {
        out.push((start as usize, end as usize));
        return;
    }
    let shift = if var > 0 { rand_below(2 * var) - var } else { 0 };
    let mid = (start + (end - start) / 2 + shift).clamp(start + 1, end - 1);
    split(start, mid, avg, var, rand_below, out);
    split(mid, end, avg, var, rand_below, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covers(p: &[(usize, usize)], len: usize) -> bool {
        p.first().map(|x| x.0) == Some(0)
            && p.last().map(|x| x.1) == Some(len)
            && p.windows(2).all(|w| w[0].1 == w[1].0)
            && p.iter().all(|(a, b)| b > a)
    }

    #[test]
    fn pieces_cover_the_chunk_in_order() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut draw = |n: i64| rng.i64(0..n);
        for len in [1, 7, 100, 1000, 32 * 1024] {
            let p = pieces(len, 10, 5, &mut draw);
            assert!(covers(&p, len), "{len}: {p:?}");
            if len > 20 {
                assert!(p.iter().all(|(a, b)| b - a <= 15), "{len}: {p:?}");
                assert!(p.len() > 1);
            }
        }
    }

    #[test]
    fn no_variation_halves_evenly_and_tiny_sizes_terminate() {
        let mut never = |_| unreachable!("no draw without variation");
        assert_eq!(pieces(8, 2, 0, &mut never), vec![(0, 2), (2, 4), (4, 6), (6, 8)]);
        let p = pieces(7, 0, 0, &mut never);
        assert_eq!(p.len(), 7);
        assert!(covers(&p, 7));
        assert_eq!(pieces(0, 2, 0, &mut never), vec![]);
        assert_eq!(pieces(5, 100, 0, &mut never), vec![(0, 5)]);
    }
}

//! The operator's Prometheus histograms as read from `/metrics`, and their difference between two
//! readings, so that each round of the benchmark is measured on its own.

use std::collections::BTreeMap;

/// Cumulative bucket counts (by upper bound) of one histogram family, over its series matching a
/// label filter; summed over the series.
#[derive(Clone, Debug, Default)]
pub struct Buckets(BTreeMap<u64, f64>);

impl Buckets {
    /// The buckets of `family` in `metrics` whose line contains `matching` (`""` for all).
    pub fn read(metrics: &str, family: &str, matching: &str) -> Self {
        let prefix = format!("{family}_bucket");
        let mut out = BTreeMap::new();
        for line in metrics.lines().filter(|l| l.starts_with(&prefix) && l.contains(matching)) {
            let Some(le) = line.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else { continue };
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::NAN) };
            let Some(count) = line.rsplit(' ').next().and_then(|c| c.parse::<f64>().ok()) else { continue };
            *out.entry(le.to_bits()).or_insert(0.0) += count;
        }
        Self(out)
    }

    /// What was observed after `earlier`.
    pub fn since(&self, earlier: &Buckets) -> Self {
        Self(self.0.iter().map(|(le, c)| (*le, c - earlier.0.get(le).copied().unwrap_or(0.0))).collect())
    }

    fn sorted(&self) -> Vec<(f64, f64)> {
        let mut v: Vec<(f64, f64)> = self.0.iter().map(|(le, c)| (f64::from_bits(*le), *c)).collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v
    }

    pub fn count(&self) -> f64 {
        self.sorted().last().map_or(0.0, |b| b.1)
    }

    /// The `q` quantile, linear within a bucket (as Prometheus' histogram_quantile).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let buckets = self.sorted();
        let total = buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut prev = (0.0, 0.0);
        for (le, c) in buckets {
            if c >= rank {
                if le.is_infinite() {
                    return Some(prev.0);
                }
                let frac = if c > prev.1 { (rank - prev.1) / (c - prev.1) } else { 0.0 };
                return Some(prev.0 + (le - prev.0) * frac);
            }
            prev = (le, c);
        }
        None
    }

    /// `p50 x ms, p99 y ms`.
    pub fn summary(&self) -> String {
        let ms = |v: Option<f64>| v.map(|s| format!("{:.1} ms", s * 1000.0)).unwrap_or_else(|| "n/a".into());
        format!("p50 {}, p99 {}", ms(self.quantile(0.5)), ms(self.quantile(0.99)))
    }
}

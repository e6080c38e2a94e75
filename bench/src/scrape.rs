//! The API's own view of its latency (issue 19): the
//! `credits_graphql_request_duration_seconds` histogram scraped from its
//! metrics listener before and after a run, read as Prometheus'
//! `histogram_quantile` reads it, to set beside the client's percentile.

/// Cumulative buckets of one histogram series: (upper bound in seconds,
/// count), ascending, `+Inf` last.
pub type Buckets = Vec<(f64, f64)>;

/// The `<name>_bucket` series whose labels include `label` (`key="value"`)
/// in a Prometheus text exposition.
pub fn buckets(exposition: &str, name: &str, label: &str) -> Buckets {
    let prefix = format!("{name}_bucket{{");
    let mut out: Buckets = exposition
        .lines()
        .filter(|l| l.starts_with(&prefix) && l.contains(label))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count = l.rsplit(' ').next()?.parse().ok()?;
            Some((le, count))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The `q` quantile (0–1) in seconds of what was observed between two
/// scrapes (`after` − `before`), interpolated linearly inside its bucket as
/// `histogram_quantile` does; `None` without observations.
pub fn quantile(q: f64, before: &Buckets, after: &Buckets) -> Option<f64> {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|&(le, n)| {
            let was = before.iter().find(|b| b.0 == le).map_or(0.0, |b| b.1);
            (le, n - was)
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, n) in &delta {
        if n >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let inside = n - lower.1;
            let frac = if inside > 0.0 {
                (rank - lower.1) / inside
            } else {
                1.0
            };
            return Some(lower.0 + (le - lower.0) * frac);
        }
        lower = (le, n);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let text = "x_bucket{operation=\"a\",le=\"0.001\"} 10\nx_bucket{operation=\"a\",le=\"0.002\"} 90\nx_bucket{operation=\"a\",le=\"+Inf\"} 100\nx_bucket{operation=\"b\",le=\"0.001\"} 7\n";
        let after = buckets(text, "x", "operation=\"a\"");
        assert_eq!(after.len(), 3);
        let p = quantile(0.5, &Vec::new(), &after).unwrap();
        assert!((p - 0.0015).abs() < 1e-9, "{p}");
        let before = vec![(0.001, 10.0), (0.002, 10.0), (f64::INFINITY, 10.0)];
        // 80 observations, all in (1 ms, 2 ms], and 10 above.
        // Rank 45 of 90: 45/80 of the way through (1 ms, 2 ms].
        let p = quantile(0.5, &before, &after).unwrap();
        assert!((p - 0.0015625).abs() < 1e-9, "{p}");
        // Rank 89.1 of 90 falls in the +Inf bucket: its lower bound.
        assert_eq!(quantile(0.99, &before, &after), Some(0.002));
        assert_eq!(quantile(0.5, &after, &after), None);
    }
}

//! Latency samples and the percentiles a report gives of them.

use serde::Serialize;

/// p50, p99 and max of one run's latencies, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    pub samples: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

impl LatencySummary {
    /// The summary of `nanos` (sorted here), or none for no samples.
    pub fn of(mut nanos: Vec<u64>) -> Option<LatencySummary> {
        nanos.sort_unstable();
        let micros = |n: u64| n as f64 / 1_000.0;
        Some(LatencySummary {
            samples: nanos.len(),
            p50_us: micros(percentile(&nanos, 50.0)?),
            p99_us: micros(percentile(&nanos, 99.0)?),
            max_us: micros(*nanos.last()?),
        })
    }
}

/// The nearest-rank percentile `p` (0-100] of `sorted`: the smallest sample
/// that at least `p` percent of the samples do not exceed.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_of_a_hundred_samples() {
        let samples: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&samples, 50.0), Some(50));
        assert_eq!(percentile(&samples, 99.0), Some(99));
        assert_eq!(percentile(&samples, 100.0), Some(100));
        assert_eq!(percentile(&samples, 0.1), Some(1));
    }

    #[test]
    fn one_sample_is_every_percentile() {
        assert_eq!(percentile(&[7], 50.0), Some(7));
        assert_eq!(percentile(&[7], 99.0), Some(7));
    }

    #[test]
    fn no_samples_no_summary() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(LatencySummary::of(Vec::new()), None);
    }

    #[test]
    fn the_summary_sorts_and_converts_to_microseconds() {
        let summary = LatencySummary::of(vec![3_000, 1_000, 2_000]).expect("samples");
        assert_eq!(summary.samples, 3);
        assert_eq!(summary.p50_us, 2.0);
        assert_eq!(summary.p99_us, 3.0);
        assert_eq!(summary.max_us, 3.0);
    }
}

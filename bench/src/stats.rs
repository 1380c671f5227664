//! Percentiles of measured durations.

use std::time::Duration;

/// Sorted durations with percentile look-ups.
#[derive(Debug, Clone, Default)]
pub struct Durations(Vec<Duration>);

impl Durations {
    /// The durations, in any order.
    #[must_use]
    pub fn new(mut values: Vec<Duration>) -> Self {
        values.sort_unstable();
        Self(values)
    }

    /// How many there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `p`-th percentile (nearest rank), `p` in 0..=100; zero when empty.
    #[must_use]
    pub fn percentile(&self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let n = self.0.len();
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        self.0[rank.clamp(1, n) - 1]
    }

    /// The median.
    #[must_use]
    pub fn p50(&self) -> Duration {
        self.percentile(50.0)
    }

    /// The 99th percentile.
    #[must_use]
    pub fn p99(&self) -> Duration {
        self.percentile(99.0)
    }

    /// The mean; zero when empty.
    #[must_use]
    pub fn mean(&self) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let total: Duration = self.0.iter().sum();
        total / u32::try_from(self.0.len()).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let d = Durations::new((1..=100).rev().map(Duration::from_millis).collect());
        assert_eq!(d.p50(), Duration::from_millis(50));
        assert_eq!(d.p99(), Duration::from_millis(99));
        assert_eq!(d.percentile(100.0), Duration::from_millis(100));
        assert_eq!(d.percentile(0.0), Duration::from_millis(1));
        assert_eq!(Durations::default().p99(), Duration::ZERO);
        assert_eq!(
            Durations::new(vec![Duration::from_millis(2), Duration::from_millis(4)]).mean(),
            Duration::from_millis(3)
        );
    }
}

//! The retry policy of a listener: how long to wait between its attempts.
//!
//! Backoff delays come from `backon`'s exponential builder (initial interval, multiplier,
//! ceiling, optional jitter), the same shape as Spring's `ExponentialBackOff`. The policy
//! itself is the listener's resolved [`RetryConfig`] (defaults, macro, per-listener
//! configuration).

use std::time::Duration;

use backon::BackoffBuilder;

use crate::config::RetryConfig;

impl RetryConfig {
    /// The waits before the 2nd, 3rd, … attempt: `max_attempts - 1` of them.
    ///
    /// ```
    /// use std::time::Duration;
    /// let policy = mq_core::config::RetryConfig {
    ///     max_attempts: 4,
    ///     initial_interval: Duration::from_millis(100),
    ///     multiplier: 2.0,
    ///     max_interval: Duration::from_millis(300),
    ///     ..Default::default()
    /// };
    /// let delays: Vec<u128> = policy.delays().map(|d| d.as_millis()).collect();
    /// assert_eq!(delays, [100, 200, 300]);
    /// ```
    pub fn delays(&self) -> impl Iterator<Item = Duration> {
        let mut builder = backon::ExponentialBuilder::new()
            .with_min_delay(self.initial_interval)
            .with_max_delay(self.max_interval)
            .with_factor(self.multiplier as f32)
            .with_max_times(self.max_attempts.saturating_sub(1) as usize);
        if self.jitter {
            builder = builder.with_jitter();
        }
        builder.build()
    }
}

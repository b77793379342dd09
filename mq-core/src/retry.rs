//! The retry policy of a listener: how long to wait between its attempts.
//!
//! The waits grow exponentially (initial interval, multiplier, ceiling, optional jitter),
//! the shape of Spring's `ExponentialBackOff`; the failure policy's `backoff` computes
//! each one. The policy itself is the listener's resolved [`RetryConfig`] (defaults, macro,
//! per-listener configuration).

use std::time::Duration;

use crate::config::RetryConfig;
use crate::failure::policy;

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
        let retry = self.clone();
        (1..self.max_attempts).map(move |attempt| {
            let sample = if retry.jitter {
                policy::jitter_sample()
            } else {
                0.0
            };
            policy::backoff(&retry, attempt, sample)
        })
    }
}

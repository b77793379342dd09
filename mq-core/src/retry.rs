//! The retry policy of a listener: how many attempts, and how long to wait between them.
//!
//! Backoff delays come from `backon`'s exponential builder (initial interval, multiplier,
//! ceiling, optional jitter), the same shape as Spring's `ExponentialBackOff`.

use std::time::Duration;

use backon::BackoffBuilder;

use crate::config::{RetryConfig, RetryMode};

/// A resolved retry policy.
///
/// ```
/// use std::time::Duration;
/// use mq_core::retry::RetryPolicy;
/// let p = RetryPolicy::from(&mq_core::config::RetryConfig {
///     max_attempts: 4,
///     initial_interval: Duration::from_millis(100),
///     multiplier: 2.0,
///     max_interval: Duration::from_millis(300),
///     ..Default::default()
/// });
/// let delays: Vec<u128> = p.delays().map(|d| d.as_millis()).collect();
/// assert_eq!(delays, [100, 200, 300]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts including the first.
    pub max_attempts: u32,
    /// First delay.
    pub initial_interval: Duration,
    /// Growth factor.
    pub multiplier: f64,
    /// Ceiling of one delay.
    pub max_interval: Duration,
    /// Randomised delays.
    pub jitter: bool,
    /// Blocking or retry topics.
    pub mode: RetryMode,
}

impl From<&RetryConfig> for RetryPolicy {
    fn from(c: &RetryConfig) -> Self {
        RetryPolicy {
            max_attempts: c.max_attempts.max(1),
            initial_interval: c.initial_interval,
            multiplier: c.multiplier,
            max_interval: c.max_interval,
            jitter: c.jitter,
            mode: c.mode,
        }
    }
}

impl RetryPolicy {
    /// The delays before attempts 2..=max_attempts.
    ///
    /// ```
    /// let p = mq_core::retry::RetryPolicy::from(&Default::default());
    /// assert_eq!(p.delays().count(), 2);
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

    /// The longest time one message can keep its partition waiting in blocking mode
    /// (jitter can add up to one more interval per delay).
    ///
    /// ```
    /// let p = mq_core::retry::RetryPolicy::from(&Default::default());
    /// assert_eq!(p.worst_case_blocking(), std::time::Duration::from_secs(3));
    /// ```
    pub fn worst_case_blocking(&self) -> Duration {
        let plain = RetryPolicy {
            jitter: false,
            ..self.clone()
        };
        let sum: Duration = plain.delays().sum();
        if self.jitter {
            sum * 2
        } else {
            sum
        }
    }
}

//! The failure policy as data: what a failed attempt leads to, and how long a record read
//! from a retry topic waits, decided by pure functions of the failure, the attempt, the
//! listener's retry settings, the record's retry headers and the clock.
//!
//! Nothing here sleeps or publishes: [`dispatch`](crate) and the
//! [`recoverer`](super::recoverer) carry the decision out. That keeps every combination
//! table-testable without a broker, and keeps the one promise a record cannot break: no
//! header makes a partition wait longer than the listener's `max-interval`.

use std::time::Duration;

use crate::config::{RetryConfig, RetryMode};

/// What kind of failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The record does not decode: never retried.
    Poison,
    /// The handler said so ([`HandlerError::permanent`](crate::handler::HandlerError::permanent)).
    Permanent,
    /// Anything else the handler returned, or a panic: retried as configured.
    Transient,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Blocking mode: wait this long in the partition's worker, then call the handler again.
    RetryAfter(Duration),
    /// Retry-topics mode: publish the record to retry topic `index` (`<source>-retry-<index>`)
    /// where it is delivery number `attempt`, due at `due_ms` (epoch ms).
    Reschedule {
        /// Which retry topic.
        index: u32,
        /// The number of the next delivery (Spring's `retry_topic-attempts`).
        attempt: u32,
        /// When it is due, epoch ms.
        due_ms: i64,
    },
    /// Publish to the dead-letter topic.
    DeadLetter,
    /// Log and move on (the dead-letter topic is disabled).
    Skip,
}

/// The inputs of [`decide`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Failed {
    /// What failed.
    pub kind: FailureKind,
    /// The number of the attempt that failed, from 1.
    pub attempt: u32,
    /// The clock, epoch ms.
    pub now_ms: i64,
    /// A sample in `[0, 1)` for jitter (ignored unless the listener has `jitter: true`).
    pub jitter_sample: f64,
}

/// Decides what follows a failed attempt.
///
/// Poison and permanent failures go to the dead-letter topic at once. Transient ones are
/// retried while `attempt < max_attempts` (blocking: [`Action::RetryAfter`]; topics:
/// [`Action::Reschedule`]), then dead-lettered. With the dead-letter topic disabled,
/// giving up is [`Action::Skip`].
pub fn decide(failed: &Failed, retry: &RetryConfig, dlt_enabled: bool) -> Action {
    let give_up = if dlt_enabled {
        Action::DeadLetter
    } else {
        Action::Skip
    };
    if failed.kind != FailureKind::Transient || failed.attempt >= retry.max_attempts {
        return give_up;
    }
    let delay = backoff(retry, failed.attempt, failed.jitter_sample);
    match retry.mode {
        RetryMode::Blocking => Action::RetryAfter(delay),
        RetryMode::Topics => Action::Reschedule {
            index: failed.attempt - 1,
            attempt: failed.attempt + 1,
            due_ms: failed.now_ms.saturating_add(millis(delay)),
        },
    }
}

/// The wait after failed attempt `attempt` (from 1): `initial-interval × multiplier^(attempt-1)`,
/// at most `max-interval`; with jitter, up to as much again on top (still at most
/// `max-interval`). Any setting, however odd, gives a wait in `0..=max-interval`.
pub fn backoff(retry: &RetryConfig, attempt: u32, jitter_sample: f64) -> Duration {
    let max = retry.max_interval.as_secs_f64();
    let initial = retry.initial_interval.as_secs_f64().min(max);
    let exponent = attempt.saturating_sub(1).min(1_000) as i32;
    let mut secs = initial * retry.multiplier.max(1.0).powi(exponent);
    if retry.jitter && (0.0..1.0).contains(&jitter_sample) {
        secs += secs * jitter_sample;
    }
    if !secs.is_finite() || secs > max {
        secs = max;
    }
    Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(retry.max_interval)
}

/// Where a record was read, as the policy needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The listener's own topic: retry headers on it are someone else's and are ignored.
    Main,
    /// Retry topic `<source>-retry-<index>` of a listener in retry-topics mode.
    RetryTopic {
        /// Its number.
        index: u32,
    },
}

/// The highest attempt number a header may claim (Spring's cap on
/// `retry_topic-attempts`, Java's `Short.MAX_VALUE`); a larger one is taken as this.
pub(crate) const ATTEMPTS_CAP: u32 = i16::MAX as u32;

/// The number of the delivery a record is on: 1 on the main topic; on a retry topic the
/// `retry_topic-attempts` header (Spring's numbering), else what the topic's number implies
/// (`-retry-0` holds 2nd deliveries).
pub fn attempt_of(source: Source, header: Option<u32>) -> u32 {
    match source {
        Source::Main => 1,
        Source::RetryTopic { index } => header
            .unwrap_or_else(|| index.saturating_add(2))
            .clamp(1, ATTEMPTS_CAP),
    }
}

/// How long to hold a record before its handler runs: until its due time on a retry topic,
/// never on the main topic, and never longer than `max_wait` (the listener's
/// `max-interval`) from `now_ms`, whatever the header says.
pub fn due_wait(source: Source, due_ms: Option<i64>, now_ms: i64, max_wait: Duration) -> Duration {
    let (Source::RetryTopic { .. }, Some(due)) = (source, due_ms) else {
        return Duration::ZERO;
    };
    let wait = due.saturating_sub(now_ms);
    if wait <= 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(wait as u64).min(max_wait)
}

/// The dead-letter route for a failure: the suffix `routes` gives its exception type, else
/// its kind (`poison`, `permanent`, `exhausted`); `None`: the default dead-letter topic.
pub fn dlt_route<'a>(
    routes: &'a std::collections::BTreeMap<String, String>,
    kind: FailureKind,
    exception_type: &str,
) -> Option<&'a str> {
    if routes.is_empty() {
        return None;
    }
    let kind = match kind {
        FailureKind::Poison => "poison",
        FailureKind::Permanent => "permanent",
        FailureKind::Transient => "exhausted",
    };
    routes
        .get(exception_type)
        .or_else(|| routes.get(kind))
        .map(String::as_str)
}

/// A sample in `[0, 1)` for backoff jitter (failure paths only: not a hot path).
pub(crate) fn jitter_sample() -> f64 {
    use std::hash::BuildHasher;
    let bits = std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry(mode: RetryMode, max_attempts: u32) -> RetryConfig {
        RetryConfig {
            max_attempts,
            initial_interval: Duration::from_millis(100),
            multiplier: 2.0,
            max_interval: Duration::from_millis(1_000),
            jitter: false,
            mode,
        }
    }

    #[test]
    fn the_failure_matrix() {
        use Action::*;
        use FailureKind::*;
        use RetryMode::*;
        let ms = Duration::from_millis;
        #[rustfmt::skip]
        let table: &[(FailureKind, u32, RetryMode, u32, bool, Action)] = &[
            // kind       attempt mode      max  dlt    action
            (Poison,      1,      Blocking, 3,   true,  DeadLetter),
            (Poison,      1,      Topics,   3,   false, Skip),
            (Permanent,   1,      Blocking, 3,   true,  DeadLetter),
            (Permanent,   2,      Topics,   3,   true,  DeadLetter),
            (Transient,   1,      Blocking, 3,   true,  RetryAfter(ms(100))),
            (Transient,   2,      Blocking, 3,   true,  RetryAfter(ms(200))),
            (Transient,   3,      Blocking, 3,   true,  DeadLetter),
            (Transient,   3,      Blocking, 3,   false, Skip),
            (Transient,   1,      Blocking, 1,   true,  DeadLetter),
            (Transient,   1,      Topics,   3,   true,  Reschedule { index: 0, attempt: 2, due_ms: 10_100 }),
            (Transient,   2,      Topics,   3,   true,  Reschedule { index: 1, attempt: 3, due_ms: 10_200 }),
            (Transient,   3,      Topics,   3,   true,  DeadLetter),
            // A foreign header claimed a later attempt than the listener allows.
            (Transient,   50,     Topics,   3,   true,  DeadLetter),
            (Transient,   5,      Blocking, 10,  true,  RetryAfter(ms(1_000))),
        ];
        for &(kind, attempt, mode, max, dlt, want) in table {
            let failed = Failed {
                kind,
                attempt,
                now_ms: 10_000,
                jitter_sample: 0.5,
            };
            assert_eq!(
                decide(&failed, &retry(mode, max), dlt),
                want,
                "{kind:?} attempt {attempt} {mode:?} max {max} dlt {dlt}"
            );
        }
    }

    #[test]
    fn backoff_stays_in_bounds_for_odd_settings() {
        let mut r = retry(RetryMode::Blocking, 3);
        for (multiplier, initial_ms, jitter, sample) in [
            (f64::NAN, 100, false, 0.0),
            (f64::INFINITY, 100, false, 0.0),
            (-3.0, 100, true, 0.9),
            (1e300, 5_000, true, 0.99),
            (2.0, 100, true, f64::NAN),
        ] {
            r.multiplier = multiplier;
            r.initial_interval = Duration::from_millis(initial_ms);
            r.jitter = jitter;
            for attempt in [0, 1, 2, 64, u32::MAX] {
                let d = backoff(&r, attempt, sample);
                assert!(d <= r.max_interval, "{multiplier} {attempt}: {d:?}");
            }
        }
    }

    #[test]
    fn jitter_adds_at_most_the_delay_again() {
        let mut r = retry(RetryMode::Blocking, 3);
        r.jitter = true;
        assert_eq!(backoff(&r, 1, 0.5), Duration::from_millis(150));
        assert_eq!(backoff(&r, 4, 0.99), Duration::from_millis(1_000));
    }

    #[test]
    fn due_time_only_on_retry_topics_and_clamped() {
        let cap = Duration::from_secs(10);
        let retry0 = Source::RetryTopic { index: 0 };
        // The record: 7F FF FF FF FF FF FF FF on the source topic.
        assert_eq!(
            due_wait(Source::Main, Some(i64::MAX), 5, cap),
            Duration::ZERO
        );
        assert_eq!(due_wait(retry0, Some(i64::MAX), 5, cap), cap);
        assert_eq!(due_wait(retry0, None, 5, cap), Duration::ZERO);
        assert_eq!(due_wait(retry0, Some(4), 5, cap), Duration::ZERO);
        assert_eq!(due_wait(retry0, Some(i64::MAX), i64::MIN, cap), cap);
    }
}

/// The examples of this module's items, run as unit tests (the items are not public).
#[cfg(test)]
mod examples {
    #[allow(unused_imports)]
    use super::*;

    #[test]
    fn failurekind() {
        use crate::failure::policy::FailureKind;
        assert_ne!(FailureKind::Poison, FailureKind::Transient);
    }

    #[test]
    fn action() {
        use crate::failure::policy::Action;
        assert!(matches!(Action::DeadLetter, Action::DeadLetter));
    }

    #[test]
    fn failed() {
        use crate::failure::policy::{decide, Action, Failed, FailureKind};
        let retry = crate::config::RetryConfig::default(); // 3 attempts, 1 s, x2, blocking
        let failed = Failed {
            kind: FailureKind::Transient,
            attempt: 1,
            now_ms: 0,
            jitter_sample: 0.0,
        };
        assert_eq!(
            decide(&failed, &retry, true),
            Action::RetryAfter(std::time::Duration::from_secs(1))
        );
    }

    #[test]
    fn decide() {
        use crate::config::{RetryConfig, RetryMode};
        use crate::failure::policy::{decide, Action, Failed, FailureKind};
        let retry = RetryConfig {
            mode: RetryMode::Topics,
            ..Default::default()
        };
        let failed = Failed {
            kind: FailureKind::Transient,
            attempt: 1,
            now_ms: 1_000,
            jitter_sample: 0.0,
        };
        assert_eq!(
            decide(&failed, &retry, true),
            Action::Reschedule {
                index: 0,
                attempt: 2,
                due_ms: 2_000
            }
        );
        let last = Failed {
            attempt: 3,
            ..failed
        };
        assert_eq!(decide(&last, &retry, false), Action::Skip);
    }

    #[test]
    fn backoff() {
        use std::time::Duration;
        let retry = crate::config::RetryConfig {
            initial_interval: Duration::from_millis(100),
            multiplier: 2.0,
            max_interval: Duration::from_millis(300),
            ..Default::default()
        };
        let waits: Vec<u128> = (1..=4)
            .map(|n| crate::failure::policy::backoff(&retry, n, 0.0).as_millis())
            .collect();
        assert_eq!(waits, [100, 200, 300, 300]);
    }

    #[test]
    fn source() {
        use crate::failure::policy::Source;
        assert_ne!(Source::Main, Source::RetryTopic { index: 0 });
    }

    #[test]
    fn attempt_of() {
        use crate::failure::policy::{attempt_of, Source};
        assert_eq!(attempt_of(Source::Main, Some(7)), 1);
        assert_eq!(attempt_of(Source::RetryTopic { index: 1 }, Some(3)), 3);
        assert_eq!(attempt_of(Source::RetryTopic { index: 1 }, None), 3);
    }

    #[test]
    fn due_wait() {
        use crate::failure::policy::{due_wait, Source};
        use std::time::Duration;
        let cap = Duration::from_secs(10);
        assert_eq!(
            due_wait(Source::Main, Some(i64::MAX), 0, cap),
            Duration::ZERO
        );
        assert_eq!(
            due_wait(Source::RetryTopic { index: 0 }, Some(i64::MAX), 0, cap),
            cap
        );
        assert_eq!(
            due_wait(Source::RetryTopic { index: 0 }, Some(1_500), 1_000, cap),
            Duration::from_millis(500)
        );
        assert_eq!(
            due_wait(Source::RetryTopic { index: 0 }, Some(i64::MIN), 1_000, cap),
            Duration::ZERO
        );
    }

    #[test]
    fn dlt_route() {
        use crate::failure::policy::{dlt_route, FailureKind};
        use std::collections::BTreeMap;
        let routes = BTreeMap::from([
            ("poison".to_string(), "-poison".to_string()),
            ("app::Declined".to_string(), "-declined".to_string()),
        ]);
        assert_eq!(
            dlt_route(
                &routes,
                FailureKind::Poison,
                "crate::envelope::DecodeError::Json"
            ),
            Some("-poison")
        );
        assert_eq!(
            dlt_route(&routes, FailureKind::Permanent, "app::Declined"),
            Some("-declined")
        );
        assert_eq!(
            dlt_route(&routes, FailureKind::Transient, "std::io::Error"),
            None
        );
    }
}

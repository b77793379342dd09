//! Header fuzzing: random lengths and bytes in every `retry_topic-*`, `kafka_dlt-*` and
//! `ce_*` header never make decoding, the policy or building a dead letter panic, and never
//! give a wait longer than the listener's `max-interval`.
//!
//! A seeded xorshift generator instead of a property-testing crate: the properties are
//! simple, shrinking would add little, and every run is reproducible from the seed printed
//! on failure.

use std::time::Duration;

use super::dead_letter::{self, headers as dlt};
use super::retry_topic;
use super::spring_headers::{Original, RetryHeaders};
use crate::config::{RetryConfig, RetryMode};
use crate::envelope::{self, DecodeLimits};
use crate::failure::info::FailureInfo;
use crate::failure::policy::{self, Failed, FailureKind, Source};
use crate::record::Record;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A header value: mostly short, sometimes long; random bytes, or bytes that look like
    /// what real producers write (digits, quotes, dates, sign bytes).
    fn value(&mut self) -> Vec<u8> {
        let len = match self.below(10) {
            0 => self.below(4096) as usize,
            1 => 0,
            _ => self.below(24) as usize,
        };
        const TEXTY: &[u8] = b"0123456789-+:.TZ\"\\ /eE";
        let style = self.below(4);
        (0..len)
            .map(|_| match style {
                0 => self.next() as u8,
                1 => TEXTY[self.below(TEXTY.len() as u64) as usize],
                2 => [0x00, 0x7f, 0x80, 0xff][self.below(4) as usize],
                _ => b'a' + self.below(26) as u8,
            })
            .collect()
    }
}

const HEADERS: &[&str] = &[
    retry_topic::ATTEMPTS,
    retry_topic::BACKOFF_TIMESTAMP,
    retry_topic::ORIGINAL_TIMESTAMP,
    dlt::ORIGINAL_TOPIC,
    dlt::ORIGINAL_PARTITION,
    dlt::ORIGINAL_OFFSET,
    dlt::ORIGINAL_TIMESTAMP,
    dlt::ORIGINAL_TIMESTAMP_TYPE,
    dlt::ORIGINAL_CONSUMER_GROUP,
    dlt::EXCEPTION_MESSAGE,
    "ce_specversion",
    "ce_id",
    "ce_source",
    "ce_type",
    "ce_time",
    "ce_subject",
    "ce_correlationid",
    "ce-traceparent",
    "content-type",
    envelope::EVENT_ID_HEADER,
];

#[test]
fn random_headers_never_panic_or_wait_unbounded() {
    let seed = 0x9e37_79b9_7f4a_7c15;
    let mut rng = Rng(seed);
    let max_wait = Duration::from_secs(10);
    let retry = RetryConfig {
        max_attempts: 4,
        max_interval: max_wait,
        mode: RetryMode::Topics,
        jitter: true,
        ..Default::default()
    };
    let info = FailureInfo {
        exception_type: "E".into(),
        cause_type: None,
        message: "m".into(),
        trace: "E: m".into(),
    };
    for round in 0..20_000 {
        let mut r = Record::new("t-retry-1", 0, round, None, Some(rng.value()));
        for name in HEADERS {
            if rng.below(3) > 0 {
                r.headers.insert(*name, rng.value());
            }
        }
        // Half the records claim binary mode, so decoding reads every ce_* header.
        if rng.below(2) == 0 {
            let v: &[u8] = [&b"1.0"[..], b"\"1.0\""][rng.below(2) as usize];
            r.headers.insert("ce_specversion", v);
            r.value = Some(b"{}".to_vec());
        }
        // Decoding the headers and the record.
        let h = RetryHeaders::read(&r.headers);
        let original = Original::read(&r.headers);
        let _ = envelope::decode::<serde_json::Value>(&r, &DecodeLimits::default());
        let _ = envelope::peek_ids(&r);
        // The policy: the wait before the handler and after a failure stay bounded.
        let now = rng.next() as i64;
        for source in [Source::Main, Source::RetryTopic { index: 1 }] {
            let wait = policy::due_wait(source, h.due_ms, now, max_wait);
            assert!(wait <= max_wait, "seed {seed:#x} round {round}: {wait:?}");
            let attempt = policy::attempt_of(source, h.attempt);
            let failed = Failed {
                kind: FailureKind::Transient,
                attempt,
                now_ms: now,
                jitter_sample: (rng.next() >> 11) as f64 / (1u64 << 53) as f64,
            };
            match policy::decide(&failed, &retry, true) {
                policy::Action::Reschedule { due_ms, .. } => {
                    assert!(due_ms.saturating_sub(now) <= max_wait.as_millis() as i64);
                }
                policy::Action::RetryAfter(d) => assert!(d <= max_wait),
                _ => {}
            }
        }
        // Building what goes out: one header of each name, whatever came in.
        let from = original.unwrap_or_else(|| Original::of(&r));
        let out = dead_letter::build_from(&r, "t-dlt", "g", &info, &from);
        for name in [
            dlt::ORIGINAL_TOPIC,
            dlt::ORIGINAL_OFFSET,
            dlt::EXCEPTION_MESSAGE,
        ] {
            assert_eq!(out.headers.iter().filter(|x| x.key == name).count(), 1);
        }
        let again = retry_topic::reschedule(&r, "t-retry-2", 3, now, "g", &info, &from);
        assert_eq!(
            again
                .headers
                .iter()
                .filter(|x| x.key == retry_topic::ATTEMPTS)
                .count(),
            1
        );
        assert_eq!(
            RetryHeaders::read(&again.headers).attempt,
            Some(3),
            "what is written reads back"
        );
    }
}

//! The two header dialects of Spring Kafka's dead letters, as `mq dlt-replay` reads them.
//!
//! Spring's `DeadLetterPublishingRecoverer` (and mq) write `kafka_dlt-original-topic`,
//! `kafka_dlt-exception-fqcn`, ...; Spring's non-blocking retries (`@RetryableTopic`) write
//! the same facts without `dlt` in the names: `kafka_original-topic`,
//! `kafka_exception-fqcn`, ... (Spring's `KafkaHeaders.ORIGINAL_TOPIC`,
//! `KafkaHeaders.EXCEPTION_FQCN`). A record may carry either; mq's own names win when it
//! carries both.

use super::dead_letter::headers as dlt;
use crate::record::Headers;

/// The non-blocking dialect's names.
pub(crate) mod retryable {
    /// Topic the record was first read from.
    pub(crate) const ORIGINAL_TOPIC: &str = "kafka_original-topic";
    /// Type of the error.
    pub(crate) const EXCEPTION_FQCN: &str = "kafka_exception-fqcn";
    /// Prefixes of every header of the dialect (the key-deserialization ones included).
    pub(crate) const PREFIXES: [&str; 3] = [
        "kafka_original-",
        "kafka_exception-",
        "kafka_key-exception-",
    ];
}

/// The topic the dead letter came from, in either dialect: `Err` says why there is none.
pub(crate) fn original_topic(h: &Headers) -> Result<&str, String> {
    for name in [dlt::ORIGINAL_TOPIC, retryable::ORIGINAL_TOPIC] {
        match h.get(name) {
            None => continue,
            Some(_) => {
                return match h.get_str(name).map(str::trim) {
                    Some(t) if !t.is_empty() => Ok(t),
                    Some(_) => Err(format!("its {name} header is empty")),
                    None => Err(format!("its {name} header is not UTF-8 text")),
                }
            }
        }
    }
    Err(format!(
        "no {} or {} header: not a dead letter",
        dlt::ORIGINAL_TOPIC,
        retryable::ORIGINAL_TOPIC
    ))
}

/// The error type, in either dialect.
pub(crate) fn exception_fqcn(h: &Headers) -> Option<&str> {
    h.get_str(dlt::EXCEPTION_FQCN)
        .or_else(|| h.get_str(retryable::EXCEPTION_FQCN))
}

/// Whether `name` is a dead-letter header of either dialect (left out of a replayed record).
pub(crate) fn is_dead_letter_header(name: &str) -> bool {
    name.starts_with(dlt::PREFIX) || retryable::PREFIXES.iter().any(|p| name.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &[u8])]) -> Headers {
        let mut h = Headers::default();
        for (k, v) in pairs {
            h.insert(*k, v.to_vec());
        }
        h
    }

    #[test]
    fn both_dialects_name_the_original_topic_and_the_error_type() {
        let classic = headers(&[
            ("kafka_dlt-original-topic", b"orders"),
            (
                "kafka_dlt-exception-fqcn",
                b"java.lang.IllegalStateException",
            ),
        ]);
        let retryable = headers(&[
            ("kafka_original-topic", b"orders"),
            (
                "kafka_exception-fqcn",
                b"org.springframework.kafka.listener.ListenerExecutionFailedException",
            ),
        ]);
        assert_eq!(original_topic(&classic), Ok("orders"));
        assert_eq!(original_topic(&retryable), Ok("orders"));
        assert_eq!(
            exception_fqcn(&classic),
            Some("java.lang.IllegalStateException")
        );
        assert!(exception_fqcn(&retryable)
            .unwrap()
            .ends_with("ListenerExecutionFailedException"));
        let both = headers(&[
            ("kafka_original-topic", b"other"),
            ("kafka_dlt-original-topic", b"orders"),
        ]);
        assert_eq!(original_topic(&both), Ok("orders"));
    }

    #[test]
    fn a_missing_empty_or_binary_topic_says_why() {
        #[rustfmt::skip]
        let table: &[(Headers, &str)] = &[
            (headers(&[]), "not a dead letter"),
            (headers(&[("kafka_original-topic", b"  ")]), "kafka_original-topic header is empty"),
            (headers(&[("kafka_dlt-original-topic", &[0xff, 0xfe])]), "kafka_dlt-original-topic header is not UTF-8"),
        ];
        for (h, why) in table {
            let e = original_topic(h).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn dead_letter_headers_of_both_dialects_and_nothing_else() {
        for name in [
            "kafka_dlt-exception-message",
            "kafka_original-partition",
            "kafka_exception-stacktrace",
            "kafka_key-exception-fqcn",
        ] {
            assert!(is_dead_letter_header(name), "{name}");
        }
        for name in ["kafka_receivedTopic", "app", "__TypeId__", "ce_id"] {
            assert!(!is_dead_letter_header(name), "{name}");
        }
    }
}

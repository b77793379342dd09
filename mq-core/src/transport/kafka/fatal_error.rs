//! Which consumer errors stop a consumer for good.
//!
//! librdkafka marks some errors fatal: the client is unusable afterwards (a static member
//! fenced by another one with the same `group.instance.id`, an idempotence violation). An
//! authorization failure (group, topic, cluster) is not fatal to librdkafka, which retries for
//! ever, but nothing the consumer does cures it. For both, the poll loop stops: the listener's
//! readiness goes `DOWN` with the reason, one ERROR says why, and the records the consumer
//! held are not committed (their partitions' next owner reads them again).

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// Why `error` stops the consumer, or `None` when the consumer carries on. `fatal` is the
/// client's fatal error (librdkafka's `rd_kafka_fatal_error`: its code and reason), read
/// when `error` is a fatal one; `instance_id` the consumer's `group.instance.id`, if any.
pub(crate) fn stop_reason(
    error: &KafkaError,
    fatal: Option<(RDKafkaErrorCode, String)>,
    instance_id: Option<&str>,
) -> Option<String> {
    let code = match error {
        KafkaError::MessageConsumptionFatal(code) => {
            let (code, reason) = fatal.unwrap_or((*code, error.to_string()));
            return Some(describe(code, &reason, instance_id));
        }
        KafkaError::MessageConsumption(code) => *code,
        _ => return None,
    };
    match code {
        RDKafkaErrorCode::GroupAuthorizationFailed
        | RDKafkaErrorCode::TopicAuthorizationFailed
        | RDKafkaErrorCode::ClusterAuthorizationFailed
        | RDKafkaErrorCode::FencedInstanceId => {
            Some(describe(code, &error.to_string(), instance_id))
        }
        _ => None,
    }
}

fn describe(code: RDKafkaErrorCode, reason: &str, instance_id: Option<&str>) -> String {
    match (code, instance_id) {
        (RDKafkaErrorCode::FencedInstanceId, Some(id)) => format!(
            "{reason} ({code:?}): another consumer of the group uses group.instance.id {id:?}"
        ),
        _ => format!("{reason} ({code:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Fatal = (RDKafkaErrorCode, String);

    #[test]
    fn fatal_and_authorization_errors_stop_the_consumer_others_do_not() {
        use RDKafkaErrorCode as C;
        let fenced = (
            C::FencedInstanceId,
            "Fatal consumer error: Broker: Static consumer fenced by other consumer with same group.instance.id".to_owned(),
        );
        #[rustfmt::skip]
        let table: &[(KafkaError, Option<Fatal>, Option<&str>)] = &[
            (KafkaError::MessageConsumptionFatal(C::Fatal), Some(fenced.clone()), Some("static consumer fenced")),
            (KafkaError::MessageConsumptionFatal(C::Fatal), None, Some("Fatal")),
            (KafkaError::MessageConsumption(C::GroupAuthorizationFailed), None, Some("GroupAuthorizationFailed")),
            (KafkaError::MessageConsumption(C::TopicAuthorizationFailed), None, Some("TopicAuthorizationFailed")),
            (KafkaError::MessageConsumption(C::ClusterAuthorizationFailed), None, Some("ClusterAuthorizationFailed")),
            (KafkaError::MessageConsumption(C::BrokerTransportFailure), None, None),
            (KafkaError::MessageConsumption(C::UnknownTopicOrPartition), None, None),
            (KafkaError::PartitionEOF(0), None, None),
        ];
        for (error, fatal, want) in table {
            let got = stop_reason(error, fatal.clone(), Some("pod-0-l-1"));
            match want {
                None => assert_eq!(got, None, "{error:?}"),
                Some(text) => {
                    let got = got.unwrap_or_else(|| panic!("{error:?} must stop the consumer"));
                    assert!(got.to_lowercase().contains(&text.to_lowercase()), "{got}");
                }
            }
        }
        let why = stop_reason(
            &KafkaError::MessageConsumptionFatal(C::Fatal),
            Some(fenced),
            Some("pod-0-l-1"),
        )
        .unwrap();
        assert!(why.contains("\"pod-0-l-1\""), "{why}");
    }
}

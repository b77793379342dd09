//! `group.protocol: consumer` (KIP-848, the next-generation consumer group protocol):
//! the broker owns the session, the heartbeat and the assignment, so librdkafka refuses
//! their client settings. mq refuses them first, naming its own key.

use super::kafka::{flatten_properties, KafkaConfig};

/// Client settings the consumer protocol moves to the broker, and what to do instead.
const BROKER_SIDE: &[(&str, &str)] = &[
    (
        "session.timeout.ms",
        "the broker sets it (group.consumer.session.timeout.ms)",
    ),
    (
        "heartbeat.interval.ms",
        "the broker sets it (group.consumer.heartbeat.interval.ms)",
    ),
    (
        "partition.assignment.strategy",
        "the broker assigns; choose its assignor with group.remote.assignor",
    ),
    ("group.protocol.type", "it belongs to the classic protocol"),
];

/// Whether the consumers speak the consumer protocol (`mq.kafka.consumer.properties` wins
/// over `mq.kafka.properties`, as it does when the client is configured).
pub(crate) fn is_consumer_protocol(kafka: &KafkaConfig) -> bool {
    flatten_properties(&kafka.properties)
        .into_iter()
        .chain(flatten_properties(&kafka.consumer.properties))
        .rfind(|(k, _)| k == "group.protocol")
        .is_some_and(|(_, v)| v.trim().eq_ignore_ascii_case("consumer"))
}

/// One problem per client setting that the consumer protocol refuses, naming its key.
pub(crate) fn problems(kafka: &KafkaConfig) -> Vec<String> {
    if !is_consumer_protocol(kafka) {
        return Vec::new();
    }
    let mut problems = Vec::new();
    for (prefix, map) in [
        ("mq.kafka.properties", &kafka.properties),
        ("mq.kafka.consumer.properties", &kafka.consumer.properties),
    ] {
        for (key, _) in flatten_properties(map) {
            if let Some((_, why)) = BROKER_SIDE.iter().find(|(k, _)| *k == key) {
                problems.push(format!(
                    "{prefix}.{key} must not be set with group.protocol: consumer (KIP-848): {why}"
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn problems(yaml: &str) -> Vec<String> {
        match Config::from_yaml_str(yaml) {
            Ok(_) => Vec::new(),
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn broker_side_settings_are_refused_only_with_the_consumer_protocol() {
        let consumer = "mq:\n  kafka:\n    consumer:\n      properties:\n        group.protocol: Consumer\n        session.timeout.ms: 6000\n";
        let [p] = &problems(consumer)[..] else {
            panic!("one problem: {:?}", problems(consumer));
        };
        assert!(
            p.contains("mq.kafka.consumer.properties.session.timeout.ms must not be set with group.protocol: consumer"),
            "{p}"
        );
        // Set for every client, refused all the same.
        let global = "mq:\n  kafka:\n    properties:\n      heartbeat.interval.ms: 500\n    consumer:\n      properties:\n        group.protocol: consumer\n";
        assert!(problems(global)[0].contains("mq.kafka.properties.heartbeat.interval.ms"));
        // The classic protocol (the default) keeps them.
        let classic = "mq:\n  kafka:\n    consumer:\n      properties:\n        session.timeout.ms: 6000\n        partition.assignment.strategy: cooperative-sticky\n";
        assert!(problems(classic).is_empty());
        let explicit = "mq:\n  kafka:\n    properties:\n      group.protocol: consumer\n    consumer:\n      properties:\n        group.protocol: classic\n        session.timeout.ms: 6000\n";
        assert!(
            problems(explicit).is_empty(),
            "the consumer's own setting wins"
        );
    }
}

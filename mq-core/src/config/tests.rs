use std::time::Duration;

use super::env::{env_key, env_var_name};
use super::*;

#[test]
fn env_keys_map_to_kebab_case_paths() {
    assert_eq!(
        env_key("kafka__bootstrap_servers"),
        "mq.kafka.bootstrap-servers"
    );
    assert_eq!(
        env_key("management__server__port"),
        "management.server.port"
    );
    assert_eq!(
        env_key("listeners__on_order__retry__max_attempts"),
        "mq.listeners.on_order.retry.max-attempts"
    );
    assert_eq!(
        env_key("kafka__consumer__properties__fetch_min_bytes"),
        "mq.kafka.consumer.properties.fetch.min.bytes"
    );
}

#[test]
fn env_var_names_invert_env_keys() {
    assert_eq!(
        env_var_name(&[
            "mq",
            "kafka",
            "consumer",
            "properties",
            "fetch",
            "min",
            "bytes"
        ]),
        "MQ_KAFKA__CONSUMER__PROPERTIES__FETCH_MIN_BYTES"
    );
    assert_eq!(
        env_var_name(&["management", "server", "port"]),
        "MQ_MANAGEMENT__SERVER__PORT"
    );
}

#[test]
fn nested_and_dotted_properties_flatten_alike() {
    let c = Config::from_yaml_str(
        "mq:\n  kafka:\n    consumer:\n      properties:\n        fetch.min.bytes: 1\n        queued:\n          max.messages.kbytes: 2048\n",
    )
    .unwrap();
    let props = flatten_properties(&c.mq.kafka.consumer.properties);
    assert_eq!(
        props,
        vec![
            ("fetch.min.bytes".to_owned(), "1".to_owned()),
            ("queued.max.messages.kbytes".to_owned(), "2048".to_owned())
        ]
    );
}

#[test]
fn durations_accept_spring_forms() {
    let c = Config::from_yaml_str(
        "mq:\n  listener:\n    retry:\n      initial-interval: 250ms\n      max-interval: 2000\n",
    )
    .unwrap();
    assert_eq!(
        c.mq.listener.retry.initial_interval,
        Duration::from_millis(250)
    );
    assert_eq!(c.mq.listener.retry.max_interval, Duration::from_secs(2));
}

#[test]
fn a_partly_given_section_keeps_the_defaults_of_the_rest() {
    let c = Config::from_yaml_str(
        "mq:\n  listener:\n    retry:\n      max-attempts: 5\n    dlt:\n      enabled: false\nmanagement:\n  server:\n    port: 9000\n",
    )
    .unwrap();
    let l = &c.mq.listener;
    assert_eq!(l.retry.max_attempts, 5);
    assert_eq!(l.retry.initial_interval, Duration::from_secs(1));
    assert_eq!(l.retry.max_interval, Duration::from_secs(10));
    assert_eq!(l.retry.multiplier, 2.0);
    assert!(!l.dlt.enabled);
    assert_eq!(l.dlt.suffix, "-dlt");
    assert_eq!((l.concurrency, l.max_payload_bytes), (1, 1024 * 1024));
    let server = &c.management.server;
    assert_eq!((server.port, server.address.as_str()), (9000, "0.0.0.0"));
    assert!(server.enabled);
    assert_eq!(c.management.endpoints.web.exposure.include, ["health"]);
    assert_eq!(c.mq.kafka.producer.acks, "all");
    assert_eq!(c.mq.shutdown.timeout, Duration::from_secs(30));
    assert_eq!(c.mq.logging.level, "info");
}

#[test]
fn unknown_key_is_an_error_naming_it() {
    let err = Config::from_yaml_str("mq:\n  kafka:\n    bootstrap-server: x\n").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("bootstrap-server"), "{text}");
    assert!(text.contains("mq.kafka"), "{text}");
}

#[test]
fn numeric_strings_are_tolerated() {
    let c = Config::from_yaml_str(
        "mq:\n  kafka:\n    consumer:\n      group-id: 123\n    producer:\n      acks: 1\n",
    )
    .unwrap();
    assert_eq!(c.mq.kafka.consumer.group_id.as_deref(), Some("123"));
    assert_eq!(c.mq.kafka.producer.acks, "1");
}

#[test]
fn semantic_errors_name_the_key() {
    let err =
        Config::from_yaml_str("mq:\n  listener:\n    retry:\n      max-attempts: 0\n").unwrap_err();
    assert!(
        err.to_string().contains("mq.listener.retry.max-attempts"),
        "{err}"
    );
}

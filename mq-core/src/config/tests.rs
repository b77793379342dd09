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

/// A configuration from YAML and the given environment, as `Config::load_from` builds it.
fn with_env(yaml: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    use figment::providers::Format;
    let (env, ignored) = super::env::EnvVars::from_vars(vars.iter().copied());
    let figment = figment::Figment::from(serde_saphyr::figment::Yaml::string(yaml)).merge(env);
    let mut c = Config::from_figment(figment)?;
    c.ignored_env = ignored;
    Ok(c)
}

#[test]
fn environment_values_stay_strings() {
    let c = with_env(
        "",
        &[
            ("MQ_APPLICATION__VERSION", "1.10"),
            ("MQ_KAFKA__CONSUMER__GROUP_ID", "007"),
            ("MQ_KAFKA__PROPERTIES__SASL_PASSWORD", "00123"),
            ("MQ_LISTENER__DLT__SUFFIX", "1"),
        ],
    )
    .unwrap();
    assert_eq!(c.mq.application.version.as_deref(), Some("1.10"));
    assert_eq!(c.mq.kafka.consumer.group_id.as_deref(), Some("007"));
    assert_eq!(
        flatten_properties(&c.mq.kafka.properties),
        [("sasl.password".to_owned(), "00123".to_owned())]
    );
    assert_eq!(c.mq.listener.dlt.suffix, "1");
    assert!(c.ignored_environment().is_empty());
}

#[test]
fn typed_fields_parse_from_environment_strings() {
    let c = with_env(
        "",
        &[
            ("MQ_LISTENER__RETRY__MAX_ATTEMPTS", "7"),
            ("MQ_LISTENER__RETRY__MULTIPLIER", "1.5"),
            ("MQ_LISTENER__RETRY__JITTER", "true"),
            ("MQ_LISTENER__RETRY__MODE", "topics"),
            ("MQ_LISTENER__RETRY__INITIAL_INTERVAL", "250"),
            ("MQ_SHUTDOWN__TIMEOUT", "PT5S"),
            ("MQ_MANAGEMENT__SERVER__PORT", "9100"),
            (
                "MQ_MANAGEMENT__ENDPOINTS__WEB__EXPOSURE__INCLUDE",
                "health,prometheus",
            ),
            ("MQ_LISTENERS__ON_ORDER__CONCURRENCY", "2"),
            ("MQ_KAFKA__ADMIN__AUTO_CREATE_TOPICS", "false"),
        ],
    )
    .unwrap();
    let retry = &c.mq.listener.retry;
    assert_eq!(retry.max_attempts, 7);
    assert_eq!(retry.multiplier, 1.5);
    assert!(retry.jitter);
    assert_eq!(retry.mode, RetryMode::Topics);
    assert_eq!(retry.initial_interval, Duration::from_millis(250));
    assert_eq!(c.mq.shutdown.timeout, Duration::from_secs(5));
    assert_eq!(c.management.server.port, 9100);
    assert_eq!(
        c.management.endpoints.web.exposure.include,
        ["health", "prometheus"]
    );
    assert_eq!(c.mq.listeners["on_order"].concurrency, Some(2));
    assert!(!c.mq.kafka.admin.auto_create_topics);
}

#[test]
fn foreign_mq_variables_are_ignored_and_listed() {
    let c = with_env(
        "",
        &[
            ("MQ_PORT", "tcp://10.0.0.1:5672"),
            ("MQ_SERVICE_HOST", "10.0.0.1"),
            ("MQ_SERVICE_PORT", "5672"),
            ("MQ_PORT_5672_TCP_ADDR", "10.0.0.1"),
            ("MQ_PORT_5672_TCP", "tcp://10.0.0.1:5672"),
            ("MQ_MANAGEMENT__NO_SUCH_THING", "x"),
            ("MQ_KAFKA__BOOTSTRAP_SERVERS", "k:9092"),
            ("MQ_PROFILES_ACTIVE", "dev"),
            ("OTHER", "x"),
        ],
    )
    .unwrap();
    assert_eq!(c.mq.kafka.bootstrap_servers, "k:9092");
    assert_eq!(
        c.ignored_environment(),
        [
            "MQ_MANAGEMENT__NO_SUCH_THING",
            "MQ_PORT",
            "MQ_PORT_5672_TCP",
            "MQ_PORT_5672_TCP_ADDR",
            "MQ_SERVICE_HOST",
            "MQ_SERVICE_PORT",
        ]
    );
}

#[test]
fn a_bad_environment_value_names_the_variable() {
    let err = with_env("", &[("MQ_LISTENER__RETRY__MAX_ATTEMPTS", "often")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("MQ_LISTENER__RETRY__MAX_ATTEMPTS"), "{err}");
    let err = with_env("", &[("MQ_LISTENER__RETRY__MAX_ATTEMPTS", "0")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("mq.listener.retry.max-attempts must be at least 1"),
        "{err}"
    );
    assert!(
        err.contains("set by MQ_LISTENER__RETRY__MAX_ATTEMPTS"),
        "{err}"
    );
}

#[test]
fn unknown_keys_in_files_stay_errors() {
    let err = with_env("mq:\n  port: 5672\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("port"), "{err}");
}

#[test]
fn protected_consumer_properties_are_refused_with_the_reason() {
    let err = with_env(
        "mq:\n  kafka:\n    consumer:\n      properties:\n        enable.auto.offset.store: true\n        group.id: x\n",
        &[("MQ_KAFKA__PROPERTIES__ENABLE_AUTO_COMMIT", "false")],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("mq.kafka.consumer.properties.enable.auto.offset.store must not be set: mq stores an offset only after"),
        "{err}"
    );
    assert!(
        err.contains("mq.kafka.consumer.properties.group.id must not be set"),
        "{err}"
    );
    assert!(
        err.contains("mq.kafka.properties.enable.auto.commit must not be set")
            && err.contains("set by MQ_KAFKA__PROPERTIES__ENABLE_AUTO_COMMIT"),
        "{err}"
    );
}

#[test]
fn metric_tag_keys_become_label_names() {
    let c = with_env(
        "management:\n  metrics:\n    tags:\n      region: eu\n",
        &[("MQ_MANAGEMENT__METRICS__TAGS__DEPLOYMENT_ENV", "prod")],
    )
    .unwrap();
    assert_eq!(
        c.metric_tags(),
        [
            ("deployment_env".to_owned(), "prod".to_owned()),
            ("region".to_owned(), "eu".to_owned())
        ]
    );
    let err = with_env(
        "management:\n  metrics:\n    tags:\n      deployment-env: a\n      deployment_env: b\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("management.metrics.tags.deployment_env becomes the label \"deployment_env\""),
        "{err}"
    );
}

#[test]
fn a_bad_duration_names_the_key_and_the_accepted_forms() {
    let err = with_env("", &[("MQ_SHUTDOWN__TIMEOUT", "1M")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("MQ_SHUTDOWN__TIMEOUT"), "{err}");
    assert!(err.contains("ISO-8601 (PT5S)"), "{err}");
    let err = Config::from_yaml_str("mq:\n  listener:\n    retry:\n      max-interval: 1 month\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("mq.listener.retry.max-interval"), "{err}");
    let c = with_env("mq:\n  shutdown:\n    timeout: 1m\n", &[]).unwrap();
    assert_eq!(c.mq.shutdown.timeout, Duration::from_secs(60));
}

#[test]
fn destination_content_modes_take_topic_names_with_dots_from_files_and_plain_ones_from_env() {
    use crate::envelope::ContentMode::{Binary, Structured};
    let yaml = "mq:\n  kafka:\n    producer:\n      destinations:\n        orders.v1:\n          content-mode: binary\n        audit.log: {}\n";
    // A profile file merged over the base one overrides a dotted topic key as a whole key.
    let profile = "mq:\n  kafka:\n    producer:\n      destinations:\n        orders.v1:\n          content-mode: structured\n";
    let figment = {
        use figment::providers::Format;
        figment::Figment::from(serde_saphyr::figment::Yaml::string(yaml))
            .merge(serde_saphyr::figment::Yaml::string(profile))
    };
    let merged = Config::from_figment(figment).unwrap();
    assert_eq!(
        merged
            .mq
            .kafka
            .producer
            .topic_content_modes()
            .collect::<Vec<_>>(),
        [("orders.v1".to_owned(), Structured)]
    );

    let c = with_env(
        yaml,
        &[(
            "MQ_KAFKA__PRODUCER__DESTINATIONS__PAYMENT_EVENTS__CONTENT_MODE",
            "binary",
        )],
    )
    .unwrap();
    assert_eq!(
        c.mq.kafka.producer.content_mode, None,
        "each broker's default"
    );
    assert_eq!(
        c.mq.kafka
            .producer
            .topic_content_modes()
            .collect::<Vec<_>>(),
        [
            ("orders.v1".to_owned(), Binary),
            ("payment-events".to_owned(), Binary)
        ]
    );
    assert!(c.ignored_environment().is_empty());
    assert_eq!(
        super::env::env_var_name(&[
            "mq",
            "kafka",
            "producer",
            "destinations",
            "payment-events",
            "content-mode"
        ]),
        "MQ_KAFKA__PRODUCER__DESTINATIONS__PAYMENT_EVENTS__CONTENT_MODE"
    );
}

#[test]
fn a_bad_destination_setting_names_the_key() {
    let err = Config::from_yaml_str(
        "mq:\n  kafka:\n    producer:\n      destinations:\n        orders:\n          content-mode: avro\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("content-mode"), "{err}");
    let err = Config::from_yaml_str(
        "mq:\n  kafka:\n    producer:\n      destinations:\n        orders:\n          content-type: binary\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("content-type"), "{err}");
}

#[test]
fn properties_and_tags_are_string_maps() {
    let c = with_env(
        "mq:\n  kafka:\n    properties:\n      client.id: \"1.10\"\n      linger.ms: 1.10\n      enable:\n        idempotence: true\nmanagement:\n  metrics:\n    tags:\n      version: 2\n      region: eu\n",
        &[("MQ_KAFKA__PRODUCER__PROPERTIES__BATCH_SIZE", "007")],
    )
    .unwrap();
    let p = &c.mq.kafka.properties;
    assert_eq!(p.get("client.id"), Some("1.10"), "quoted: exact");
    assert_eq!(p.get("linger.ms"), Some("1.1"), "a YAML float");
    assert_eq!(p.get("enable.idempotence"), Some("true"));
    assert_eq!(
        c.mq.kafka.producer.properties.get("batch.size"),
        Some("007")
    );
    assert_eq!(c.management.metrics.tags["version"], "2");
    assert_eq!(
        c.metric_tags(),
        [
            ("region".to_owned(), "eu".to_owned()),
            ("version".to_owned(), "2".to_owned())
        ]
    );
}

#[test]
fn a_section_error_names_the_key_and_the_file() {
    let dir = std::env::temp_dir().join(format!("mq-section-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("application.yaml"), "shop:\n  max-items: many\n").unwrap();
    let c = Config::load_from(&dir).unwrap();
    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "kebab-case")]
    struct Shop {
        #[allow(dead_code)]
        max_items: u32,
    }
    let err = c.section::<Shop>("shop").unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).ok();
    assert!(err.contains("shop.max-items"), "{err}");
    assert!(err.contains("application.yaml"), "{err}");
}

#[test]
fn a_prefetch_of_0_or_out_of_range_is_refused_naming_the_key() {
    for (value, expected) in [("0", "from 1 to 65535"), ("70000", "")] {
        let yaml = format!("mq:\n  rabbitmq:\n    listener:\n      prefetch: {value}\n");
        let err = Config::from_yaml_str(&yaml).unwrap_err().to_string();
        assert!(
            err.contains("mq.rabbitmq.listener.prefetch"),
            "{value}: {err}"
        );
        assert!(err.contains(expected), "{value}: {err}");
    }
    let ok = Config::from_yaml_str("mq:\n  rabbitmq:\n    listener:\n      prefetch: 65535\n");
    assert_eq!(ok.unwrap().mq.rabbitmq.listener.prefetch, 65535);
}

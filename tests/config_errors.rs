//! Bad configuration fails at startup, before any connection, naming the file (or the
//! environment variable) and the key. Profiles and environment overrides layer as in
//! Spring Boot.
//!
//! One test function for the environment (it is process-wide, so those cases run in
//! sequence); the startup report of the listeners' wiring reads no environment.

use std::path::Path;

use mq_core::handler::State;
use mq_core::prelude::*;
use mq_core::{App, Config};

/// State the listener below needs.
struct Stock;

type Alias = State<Stock>;

#[listener(topic = "wiring-orders")]
async fn needs_stock(
    order: u32,
    State(_stock): State<Stock>,
    _again: Alias,
    _ctx: Context,
) -> Result<(), HandlerError> {
    let _ = order;
    Ok(())
}

#[tokio::test]
async fn wiring_problems_are_reported_together_before_any_connection() {
    let config = Config::from_yaml_str(
        "mq:\n  kafka:\n    bootstrap-servers: 127.0.0.1:1\nmanagement:\n  server:\n    enabled: false\n",
    )
    .unwrap();
    let err = App::new(config.clone())
        .only_listeners(["needs_stock", "no_such_listener"])
        .start()
        .await
        .err()
        .expect("the start fails");
    let mq_core::Error::Startup(report) = &err else {
        panic!("not a startup report: {err}");
    };
    let problems = report.problems();
    assert_eq!(problems.len(), 3, "{err}");
    assert!(problems[0].contains("no_such_listener"), "{err}");
    for p in &problems[1..] {
        assert!(
            p.contains("listener \"needs_stock\" takes State<config_errors::Stock>")
                && p.contains("App::with_state"),
            "{err}"
        );
    }

    // With the state registered only the unknown name is left.
    let err = App::new(config)
        .with_state(Stock)
        .only_listeners(["needs_stock", "no_such_listener"])
        .start()
        .await
        .err()
        .expect("the start fails")
        .to_string();
    assert!(!err.contains("State<"), "{err}");
    assert!(err.contains("no_such_listener"), "{err}");
}

fn write(dir: &Path, name: &str, yaml: &str) {
    std::fs::write(dir.join(name), yaml).unwrap();
}

fn clear_env() {
    for (k, _) in std::env::vars() {
        if k.starts_with("MQ_") {
            std::env::remove_var(k);
        }
    }
}

#[test]
fn configuration_layers_and_errors() {
    clear_env();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // Base file alone.
    write(
        d,
        "application.yaml",
        "mq:\n  application:\n    name: shop\n  kafka:\n    bootstrap-servers: base:9092\n  listener:\n    retry:\n      max-attempts: 4\n",
    );
    let c = Config::load_from(d).unwrap();
    assert_eq!(c.mq.application.name, "shop");
    assert_eq!(c.mq.kafka.bootstrap_servers, "base:9092");
    assert_eq!(c.mq.listener.retry.max_attempts, 4);

    // A profile file overrides the base; the environment overrides both.
    write(
        d,
        "application-dev.yaml",
        "mq:\n  kafka:\n    bootstrap-servers: dev:9092\n",
    );
    std::env::set_var("MQ_PROFILES_ACTIVE", "dev");
    let c = Config::load_from(d).unwrap();
    assert_eq!(c.mq.kafka.bootstrap_servers, "dev:9092");
    assert_eq!(c.mq.profiles.active, vec!["dev".to_owned()]);
    assert_eq!(c.sources().len(), 2);
    std::env::set_var("MQ_KAFKA__BOOTSTRAP_SERVERS", "env:9092");
    std::env::set_var("MQ_KAFKA__CONSUMER__GROUP_ID", "12345");
    std::env::set_var("MQ_KAFKA__CONSUMER__PROPERTIES__FETCH_MIN_BYTES", "1000");
    std::env::set_var("MQ_MANAGEMENT__SERVER__PORT", "9100");
    let c = Config::load_from(d).unwrap();
    assert_eq!(c.mq.kafka.bootstrap_servers, "env:9092");
    assert_eq!(
        c.mq.kafka.consumer.group_id.as_deref(),
        Some("12345"),
        "numeric env value kept as a string"
    );
    assert_eq!(
        mq_core::config::flatten_properties(&c.mq.kafka.consumer.properties),
        vec![("fetch.min.bytes".to_owned(), "1000".to_owned())]
    );
    assert_eq!(c.management.server.port, 9100);
    clear_env();

    // What a Kubernetes pod gets: service links of a Service named `mq` are ignored (and
    // listed), environment values stay strings.
    std::env::set_var("MQ_PORT", "tcp://10.0.0.1:5672");
    std::env::set_var("MQ_SERVICE_HOST", "10.0.0.1");
    std::env::set_var("MQ_SERVICE_PORT", "5672");
    std::env::set_var("MQ_PORT_5672_TCP_ADDR", "10.0.0.1");
    std::env::set_var("MQ_APPLICATION__VERSION", "1.10");
    std::env::set_var("MQ_KAFKA__CONSUMER__GROUP_ID", "007");
    std::env::set_var("MQ_CONFIG_DIR", d);
    let app = App::from_config().expect("foreign MQ_* variables do not stop the service");
    let c = app.config();
    assert_eq!(c.mq.application.version.as_deref(), Some("1.10"));
    assert_eq!(c.mq.kafka.consumer.group_id.as_deref(), Some("007"));
    assert_eq!(
        c.ignored_environment(),
        [
            "MQ_PORT",
            "MQ_PORT_5672_TCP_ADDR",
            "MQ_SERVICE_HOST",
            "MQ_SERVICE_PORT"
        ]
    );
    clear_env();

    // A duration that would mean a month elsewhere is refused, naming the variable.
    std::env::set_var("MQ_SHUTDOWN__TIMEOUT", "1M");
    let err = Config::load_from(d).unwrap_err().to_string();
    assert!(err.contains("MQ_SHUTDOWN__TIMEOUT"), "{err}");
    assert!(err.contains("write m for minutes"), "{err}");
    clear_env();

    // A bad value in the base file: the message names the file and the key.
    write(
        d,
        "application.yaml",
        "mq:\n  listener:\n    retry:\n      max-attempts: lots\n",
    );
    let err = Config::load_from(d).unwrap_err().to_string();
    assert!(err.contains("mq.listener.retry.max-attempts"), "{err}");
    assert!(
        err.contains(&d.join("application.yaml").display().to_string()),
        "{err}"
    );

    // A typo'd key is an error too, not silently ignored.
    write(
        d,
        "application.yaml",
        "mq:\n  kafka:\n    bootstrap-server: x:9092\n",
    );
    let err = Config::load_from(d).unwrap_err().to_string();
    assert!(err.contains("bootstrap-server"), "{err}");
    assert!(err.contains("application.yaml"), "{err}");

    // Broken YAML names the file.
    write(d, "application.yaml", "mq:\n  kafka: [unclosed\n");
    let err = Config::load_from(d).unwrap_err().to_string();
    assert!(err.contains("application.yaml"), "{err}");

    // A bad value in a profile file names that file.
    write(
        d,
        "application.yaml",
        "mq:\n  application:\n    name: shop\n",
    );
    write(
        d,
        "application-prod.yaml",
        "mq:\n  listener:\n    dlt:\n      enabled: maybe\n",
    );
    std::env::set_var("MQ_PROFILES_ACTIVE", "prod");
    let err = Config::load_from(d).unwrap_err().to_string();
    assert!(err.contains("mq.listener.dlt.enabled"), "{err}");
    assert!(err.contains("application-prod.yaml"), "{err}");
    clear_env();

    // A bad environment value names the variable.
    std::env::set_var("MQ_LISTENER__RETRY__MAX_ATTEMPTS", "often");
    let err = Config::load_from(d).unwrap_err().to_string();
    assert!(err.contains("MQ_LISTENER__RETRY__MAX_ATTEMPTS"), "{err}");
    clear_env();

    // Semantic checks name the key and file.
    write(
        d,
        "application.yaml",
        "mq:\n  listener:\n    retry:\n      multiplier: 0.5\n",
    );
    let err = Config::load_from(d).unwrap_err().to_string();
    assert!(err.contains("mq.listener.retry.multiplier"), "{err}");
    assert!(err.contains("application.yaml"), "{err}");

    // And App::from_config fails the same way, before any connection.
    std::env::set_var("MQ_CONFIG_DIR", d);
    let err = App::from_config()
        .err()
        .expect("invalid config")
        .to_string();
    assert!(err.contains("multiplier"), "{err}");
    clear_env();
}

#[tokio::test]
async fn a_bad_client_property_fails_the_start_even_without_a_broker() {
    let config = Config::from_yaml_str(
        "mq:\n  kafka:\n    bootstrap-servers: 127.0.0.1:1\n    consumer:\n      properties:\n        no.such.property: 1\nmanagement:\n  server:\n    enabled: false\n",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let err = App::new(config)
        .with_state(Stock)
        .only_listeners(["needs_stock"])
        .start()
        .await
        .err()
        .expect("the start fails")
        .to_string();
    assert!(
        err.contains("invalid consumer configuration") && err.contains("no.such.property"),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

//! Bad configuration fails at startup, before any connection, naming the file (or the
//! environment variable) and the key. Profiles and environment overrides layer as in
//! Spring Boot.
//!
//! The environment cases run in a child process each (`mq-config-probe`), so no test
//! changes the environment of this binary, which its other threads read; the startup
//! report of the listeners' wiring reads no environment.

use std::path::Path;

use mq_core::handler::State;
use mq_core::prelude::*;
use mq_core::{App, Config};
use serde_json::{json, Value};

use crate::support;

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
            p.contains("listener \"needs_stock\" takes State<offline::config_errors::Stock>")
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

/// The configuration a service in `dir` loads with `vars` as its `MQ_*` environment (in a
/// child process: see `support::load_config_with_env`).
fn load(dir: &Path, vars: &[(&str, &str)]) -> Result<Value, String> {
    support::load_config_with_env(env!("CARGO_BIN_EXE_mq-config-probe"), dir, vars, false)
}

fn at<'a>(v: &'a Value, pointer: &str) -> &'a Value {
    v.pointer(pointer)
        .unwrap_or_else(|| panic!("no {pointer} in {v}"))
}

#[test]
fn configuration_layers_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // Base file alone.
    write(
        d,
        "application.yaml",
        "mq:\n  application:\n    name: shop\n  kafka:\n    bootstrap-servers: base:9092\n  listener:\n    retry:\n      max-attempts: 4\n",
    );
    let c = load(d, &[]).unwrap();
    assert_eq!(at(&c, "/config/mq/application/name"), "shop");
    assert_eq!(at(&c, "/config/mq/kafka/bootstrap-servers"), "base:9092");
    assert_eq!(at(&c, "/config/mq/listener/retry/max-attempts"), 4);

    // A profile file overrides the base; the environment overrides both.
    write(
        d,
        "application-dev.yaml",
        "mq:\n  kafka:\n    bootstrap-servers: dev:9092\n",
    );
    let dev = [("MQ_PROFILES_ACTIVE", "dev")];
    let c = load(d, &dev).unwrap();
    assert_eq!(at(&c, "/config/mq/kafka/bootstrap-servers"), "dev:9092");
    assert_eq!(at(&c, "/config/mq/profiles/active"), &json!(["dev"]));
    assert_eq!(at(&c, "/sources").as_array().unwrap().len(), 2);
    let c = load(
        d,
        &[
            dev[0],
            ("MQ_KAFKA__BOOTSTRAP_SERVERS", "env:9092"),
            ("MQ_KAFKA__CONSUMER__GROUP_ID", "12345"),
            ("MQ_KAFKA__CONSUMER__PROPERTIES__FETCH_MIN_BYTES", "1000"),
            ("MQ_MANAGEMENT__SERVER__PORT", "9100"),
        ],
    )
    .unwrap();
    assert_eq!(at(&c, "/config/mq/kafka/bootstrap-servers"), "env:9092");
    assert_eq!(
        at(&c, "/config/mq/kafka/consumer/group-id"),
        "12345",
        "numeric env value kept as a string"
    );
    assert_eq!(
        at(&c, "/kafka_consumer_properties"),
        &json!([["fetch.min.bytes", "1000"]])
    );
    assert_eq!(at(&c, "/config/management/server/port"), 9100);

    // What a Kubernetes pod gets: service links of a Service named `mq` are ignored (and
    // listed), environment values stay strings.
    let pod = [
        ("MQ_PORT", "tcp://10.0.0.1:5672"),
        ("MQ_SERVICE_HOST", "10.0.0.1"),
        ("MQ_SERVICE_PORT", "5672"),
        ("MQ_PORT_5672_TCP_ADDR", "10.0.0.1"),
        ("MQ_APPLICATION__VERSION", "1.10"),
        ("MQ_KAFKA__CONSUMER__GROUP_ID", "007"),
    ];
    let c = support::load_config_with_env(env!("CARGO_BIN_EXE_mq-config-probe"), d, &pod, true)
        .expect("foreign MQ_* variables do not stop the service");
    assert_eq!(at(&c, "/config/mq/application/version"), "1.10");
    assert_eq!(at(&c, "/config/mq/kafka/consumer/group-id"), "007");
    assert_eq!(
        at(&c, "/ignored_environment"),
        &json!([
            "MQ_PORT",
            "MQ_PORT_5672_TCP_ADDR",
            "MQ_SERVICE_HOST",
            "MQ_SERVICE_PORT"
        ])
    );

    // A duration that would mean a month elsewhere is refused, naming the variable.
    let err = load(d, &[("MQ_SHUTDOWN__TIMEOUT", "1M")]).unwrap_err();
    assert!(err.contains("MQ_SHUTDOWN__TIMEOUT"), "{err}");
    assert!(err.contains("write m for minutes"), "{err}");

    // A bad value in the base file: the message names the file and the key.
    write(
        d,
        "application.yaml",
        "mq:\n  listener:\n    retry:\n      max-attempts: lots\n",
    );
    let err = load(d, &[]).unwrap_err();
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
    let err = load(d, &[]).unwrap_err();
    assert!(err.contains("bootstrap-server"), "{err}");
    assert!(err.contains("application.yaml"), "{err}");

    // Broken YAML names the file.
    write(d, "application.yaml", "mq:\n  kafka: [unclosed\n");
    let err = load(d, &[]).unwrap_err();
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
    let err = load(d, &[("MQ_PROFILES_ACTIVE", "prod")]).unwrap_err();
    assert!(err.contains("mq.listener.dlt.enabled"), "{err}");
    assert!(err.contains("application-prod.yaml"), "{err}");

    // A bad environment value names the variable.
    let err = load(d, &[("MQ_LISTENER__RETRY__MAX_ATTEMPTS", "often")]).unwrap_err();
    assert!(err.contains("MQ_LISTENER__RETRY__MAX_ATTEMPTS"), "{err}");

    // Semantic checks name the key and file.
    write(
        d,
        "application.yaml",
        "mq:\n  listener:\n    retry:\n      multiplier: 0.5\n",
    );
    let err = load(d, &[]).unwrap_err();
    assert!(err.contains("mq.listener.retry.multiplier"), "{err}");
    assert!(err.contains("application.yaml"), "{err}");

    // And App::from_config fails the same way, before any connection.
    let err = support::load_config_with_env(env!("CARGO_BIN_EXE_mq-config-probe"), d, &[], true)
        .unwrap_err();
    assert!(err.contains("multiplier"), "{err}");
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

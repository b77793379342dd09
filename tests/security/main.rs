//! TLS and SASL end to end against a secured broker of the test's own (`nisshi` with
//! `--cert/--key/--authentication`, certificates from rcgen): a listener and the publisher
//! round-trip over SASL_SSL with SCRAM-SHA-256 and SCRAM-SHA-512 (the mechanisms nisshi
//! offers), with a client certificate configured; then each misconfiguration fails the
//! start with the key to fix and the broker's reason. No secret may appear in any error,
//! log line (librdkafka's own included, at debug level) or actuator answer.
//!
//! One test function: the scenarios share the broker and the captured log.

use mq_tests as support;

mod broker;
use support::pki;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mq_core::prelude::*;
use support::{config_for, http, unique, Seen};

const WAIT: Duration = Duration::from_secs(60);

const ALICE_PASSWORD: &str = "alice-Pa55word-7f3e1c";
const BOB_PASSWORD: &str = "bob-Pa55word-91d2aa";
const WRONG_PASSWORD: &str = "not-alices-Pa55word-0b8d";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Ping {
    n: u64,
}

#[listener(topic = "secure-pings")]
async fn on_secure_ping(event: Event<Ping>, ctx: Context) -> Result<(), HandlerError> {
    ctx.state::<Seen>().record(&event, &ctx);
    Ok(())
}

/// Every line any subscriber writes, for the secret scan at the end.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// YAML for SASL_SSL with `user`'s credentials and `trust` as the CA, plus `extra` lines
/// under `mq.kafka` (indented 4).
fn sasl_ssl(
    mechanism: &str,
    username: &str,
    password_yaml: &str,
    trust: &str,
    extra: &str,
) -> String {
    format!(
        "mq:\n  kafka:\n    properties:\n      debug: security,broker,protocol\n    security:\n      protocol: SASL_SSL\n    ssl:\n      trust-certificates: {trust}\n    sasl:\n      mechanism: {mechanism}\n      username: {username}\n      {password_yaml}\n{extra}"
    )
}

fn yaml_block(pem: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let body: String = pem.lines().map(|l| format!("{pad}{l}\n")).collect();
    format!("|\n{body}")
}

/// Starts an app with only `on_secure_ping` on a fresh topic; returns it with its topic.
async fn round_trip(bootstrap: &str, yaml: &str, seen: &Seen) -> Vec<String> {
    let topic = unique("secure-pings");
    let yaml = format!(
        "{yaml}  listeners:\n    on_secure_ping:\n      topics: [\"{topic}\"]\n      group: \"{}\"\nmanagement:\n  endpoints:\n    web:\n      exposure:\n        include: \"*\"\n  endpoint:\n    health:\n      show-details: always\n",
        unique("g")
    );
    let app = App::new(config_for(bootstrap, &yaml))
        .with_state(seen.clone())
        .only_listeners(["on_secure_ping"])
        .start()
        .await
        .expect("the app starts over SASL_SSL");
    assert!(app.wait_assigned(WAIT).await, "no partitions over SASL_SSL");
    let before = seen.len();
    for n in 0..5 {
        app.publisher()
            .send(&topic, n.to_string(), Ping { n })
            .await
            .expect("published over SASL_SSL");
    }
    assert_eq!(seen.wait_for(before + 5, WAIT).await, before + 5);
    let got: Vec<u64> = seen.all()[before..]
        .iter()
        .map(|h| h.data["n"].as_u64().unwrap())
        .collect();
    assert_eq!(got, (0..5).collect::<Vec<_>>());

    // Every actuator answer, for the secret scan.
    let addr = app.actuator_addr().expect("actuator");
    let mut answers = Vec::new();
    for path in [
        "/actuator",
        "/actuator/health",
        "/actuator/info",
        "/actuator/metrics",
        "/actuator/prometheus",
    ] {
        let r = http(addr, "GET", path, None, None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        answers.push(format!("{path}: {}", r.body));
    }
    let health = http(addr, "GET", "/actuator/health", None, None)
        .await
        .json();
    assert_eq!(health["components"]["kafka"]["status"], "UP", "{health}");
    app.shutdown().await.unwrap();
    answers
}

async fn start_error(bootstrap: &str, yaml: &str) -> String {
    let started = App::new(config_for(bootstrap, yaml))
        .only_listeners(["on_secure_ping"])
        .start()
        .await;
    match started {
        Ok(app) => {
            app.shutdown().await.unwrap();
            panic!("the app started with {yaml}")
        }
        Err(e) => {
            eprintln!("start refused: {e}");
            e.to_string()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_round_trip_and_clear_failures_without_secrets() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let dir = tempfile::tempdir().unwrap();
    let pki = pki::Pki::new(dir.path());
    let users = [
        broker::User {
            name: "alice",
            password: ALICE_PASSWORD,
            mechanism: "scram256",
        },
        broker::User {
            name: "bob",
            password: BOB_PASSWORD,
            mechanism: "scram512",
        },
    ];
    let mut broker = broker::secured(
        dir.path(),
        &pki.broker.chain_file,
        &pki.broker.key_file,
        &users,
    );
    let bootstrap = broker.bootstrap();
    let password_file = dir.path().join("alice-password");
    std::fs::write(&password_file, format!("{ALICE_PASSWORD}\n")).unwrap(); // as a k8s mount
    let ca_file = pki.ca_file.display().to_string();
    let mut shown = Vec::new(); // every error, log and answer, scanned for secrets at the end

    // 1. SCRAM-SHA-256: CA as a file, password from a file with a trailing newline.
    let seen = Seen::default();
    let alice = sasl_ssl(
        "SCRAM-SHA-256",
        "alice",
        &format!("password-file: {}", password_file.display()),
        &ca_file,
        "",
    );
    shown.extend(round_trip(&bootstrap, &alice, &seen).await);

    // 2. SCRAM-SHA-512: CA and a client certificate and key as inline PEM (mTLS material;
    //    nisshi does not ask for it, see the README), password inline.
    let client_tls = format!(
        "      certificate: {}      private-key: {}",
        yaml_block(&pki.client.cert_pem, 8),
        yaml_block(&pki.client.key_pem, 8)
    );
    let bob = sasl_ssl(
        "SCRAM-SHA-512",
        "bob",
        &format!("password: {BOB_PASSWORD}"),
        &yaml_block(&pki.ca_pem, 8),
        "",
    )
    .replace("    sasl:\n", &format!("{client_tls}    sasl:\n"));
    shown.extend(round_trip(&bootstrap, &bob, &seen).await);

    // 3. The same through librdkafka's own properties, as before these keys existed.
    let raw = format!(
        "mq:\n  kafka:\n    properties:\n      security.protocol: SASL_SSL\n      ssl.ca.location: {ca_file}\n      sasl.mechanisms: SCRAM-SHA-256\n      sasl.username: alice\n      sasl.password: {ALICE_PASSWORD}\n"
    );
    shown.extend(round_trip(&bootstrap, &raw, &seen).await);

    // 4. While the app runs, the broker's certificate is replaced by one from a CA the
    //    client does not trust: health turns DOWN naming the key and the reason.
    let yaml = format!(
        "{alice}  listeners:\n    on_secure_ping:\n      topics: [\"{}\"]\n      group: \"{}\"\nmanagement:\n  endpoint:\n    health:\n      show-details: always\n",
        unique("secure-pings"),
        unique("g")
    );
    let app = App::new(config_for(&bootstrap, &yaml))
        .with_state(seen.clone())
        .only_listeners(["on_secure_ping"])
        .start()
        .await
        .expect("the app starts");
    let addr = app.actuator_addr().expect("actuator");
    broker.restart_with(
        dir.path(),
        &pki.foreign_broker.chain_file,
        &pki.foreign_broker.key_file,
    );
    let deadline = Instant::now() + WAIT;
    let down = loop {
        let r = http(addr, "GET", "/actuator/health", None, None).await;
        let kafka = r.json()["components"]["kafka"].clone();
        let error = kafka["details"]["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if kafka["status"] == "DOWN" && error.contains("mq.kafka.ssl.trust-certificates") {
            assert!(error.contains("certificate verify failed"), "{error}");
            eprintln!("health DOWN: {error}");
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "health never named the key: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(down.status, 503, "{}", down.body);
    shown.push(down.body);
    broker.restart_with(dir.path(), &pki.broker.chain_file, &pki.broker.key_file);
    app.shutdown().await.unwrap();

    // 5. A wrong password.
    let wrong = sasl_ssl(
        "SCRAM-SHA-256",
        "alice",
        &format!("password: {WRONG_PASSWORD}"),
        &ca_file,
        "",
    );
    let err = start_error(&bootstrap, &wrong).await;
    assert!(err.contains("mq.kafka.sasl.password"), "{err}");
    assert!(
        err.contains("SASL SCRAM authentication failed: broker responded with invalid-proof"),
        "the broker's reason: {err}"
    );
    shown.push(err);

    // 6. A broker certificate from a CA the client does not trust.
    let untrusted = sasl_ssl(
        "SCRAM-SHA-256",
        "alice",
        &format!("password: {ALICE_PASSWORD}"),
        &yaml_block(&pki.other_ca_pem, 8),
        "",
    );
    let err = start_error(&bootstrap, &untrusted).await;
    assert!(err.contains("mq.kafka.ssl.trust-certificates"), "{err}");
    assert!(
        err.contains("certificate verify failed"),
        "the broker's reason: {err}"
    );
    shown.push(err);

    // 7. A host the certificate does not name (it names 127.0.0.1, not localhost).
    let localhost = bootstrap.replace("127.0.0.1", "localhost");
    let err = start_error(&localhost, &alice).await;
    assert!(err.contains("mq.kafka.bootstrap-servers"), "{err}");
    assert!(err.contains("hostname mismatch"), "the reason: {err}");
    shown.push(err);

    // 8. Plaintext to the TLS listener.
    let err = start_error(
        &bootstrap,
        "mq:\n  kafka:\n    properties:\n      debug: broker\n",
    )
    .await;
    assert!(err.contains("mq.kafka.security.protocol"), "{err}");
    assert!(
        err.contains("connection closed by peer") && err.contains("APIVERSION_QUERY"),
        "librdkafka's reason: {err}"
    );
    shown.push(err);

    // 9. Mechanisms nisshi does not offer (it has SCRAM only): PLAIN and OAUTHBEARER (an
    //    unsecured JWS token) get as far as the SASL handshake, where the broker says no.
    for (mechanism, credentials) in [
        ("PLAIN", format!("password: {ALICE_PASSWORD}")),
        (
            "OAUTHBEARER",
            "password: unused\n    properties:\n      enable.sasl.oauthbearer.unsecure.jwt: true\n      sasl.oauthbearer.config: principal=alice".to_owned(),
        ),
    ] {
        let yaml = sasl_ssl(mechanism, "alice", &credentials, &ca_file, "").replace(
            "    properties:\n      debug: security,broker,protocol\n",
            "",
        );
        let err = start_error(&bootstrap, &yaml).await;
        assert!(err.contains("mq.kafka.sasl.mechanism"), "{mechanism}: {err}");
        assert!(err.contains("SCRAM-SHA-512,SCRAM-SHA-256"), "the broker's list: {err}");
        shown.push(err);
    }

    // 10. A client key that does not belong to the client certificate: refused before any
    //    connection, naming the keys, never quoting the key.
    let mismatched = format!(
        "      certificate: {}      private-key: {}",
        yaml_block(&pki.client.cert_pem, 8),
        yaml_block(&pki.broker.key_pem, 8)
    );
    let err = start_error(
        &bootstrap,
        &alice.replace("    sasl:\n", &format!("{mismatched}    sasl:\n")),
    )
    .await;
    assert!(err.contains("mq.kafka.ssl.private-key"), "{err}");
    shown.push(err);
    drop(broker);

    // 11. An expired broker certificate.
    let expired_dir = tempfile::tempdir().unwrap();
    let expired = broker::secured(
        expired_dir.path(),
        &pki.expired_broker.chain_file,
        &pki.expired_broker.key_file,
        &users[..1],
    );
    let err = start_error(&expired.bootstrap(), &alice).await;
    assert!(err.contains("certificate has expired"), "the reason: {err}");
    assert!(err.contains("renew it on the broker"), "{err}");
    shown.push(err);
    drop(expired);

    // The examples' `secure` profiles load over their application.yaml with
    // MQ_PROFILES_ACTIVE=secure, the CA path pointed at a real file and the password from
    // MQ_KAFKA__SASL__PASSWORD instead of the file (the two ways the profile offers).
    for service in ["order-service", "product-service"] {
        let example = format!("{}/../examples/{service}", env!("CARGO_MANIFEST_DIR"));
        let conf = tempfile::tempdir().unwrap();
        std::fs::copy(
            format!("{example}/application.yaml"),
            conf.path().join("application.yaml"),
        )
        .unwrap();
        let profile = std::fs::read_to_string(format!("{example}/application-secure.yaml"))
            .unwrap()
            .replace(&format!("/etc/{service}/kafka-ca.pem"), &ca_file)
            .lines()
            .filter(|l| !l.trim_start().starts_with("password-file:"))
            .map(|l| format!("{l}\n"))
            .collect::<String>();
        std::fs::write(conf.path().join("application-secure.yaml"), profile).unwrap();
        // In a child process with that environment (this one's is read by other threads).
        let loaded = support::load_config_with_env(
            env!("CARGO_BIN_EXE_mq-config-probe"),
            conf.path(),
            &[
                ("MQ_PROFILES_ACTIVE", "secure"),
                ("MQ_KAFKA__SASL__PASSWORD", BOB_PASSWORD),
            ],
            false,
        )
        .unwrap_or_else(|e| panic!("{service}: {e}"));
        let props: Vec<(String, String)> =
            serde_json::from_value(loaded["kafka_client_properties"].clone()).unwrap();
        for (key, value) in [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", service),
            ("sasl.password", BOB_PASSWORD),
            ("ssl.ca.pem", pki.ca_pem.as_str()),
        ] {
            assert!(
                props.iter().any(|(k, v)| k == key && v == value),
                "{service}: {key}"
            );
        }
    }

    // Nothing secret anywhere: errors, actuator answers, every log line (mq's and
    // librdkafka's at debug), and Debug of the configuration.
    let config = config_for(&bootstrap, &bob);
    shown.push(format!("{config:?}"));
    let log_text = logs.text();
    assert!(
        log_text.contains("librdkafka"),
        "librdkafka's log lines were captured"
    );
    shown.push(log_text);
    let key_lines: Vec<&str> = [&pki.client.key_pem, &pki.broker.key_pem]
        .iter()
        .flat_map(|k| k.lines())
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for text in &shown {
        for secret in [ALICE_PASSWORD, BOB_PASSWORD, WRONG_PASSWORD]
            .iter()
            .chain(&key_lines)
        {
            assert!(
                !text.contains(secret),
                "a secret leaked into: {}",
                &text[..text.len().min(2000)]
            );
        }
    }
}

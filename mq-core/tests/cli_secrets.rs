//! The `mq` command never prints a secret: its failures name the key to fix and the
//! broker's reason, with the password and key material left out. Runs the real binary
//! against the test broker (`scripts/kafka.sh start`, plaintext on 127.0.0.1:9092).

use std::process::Command;

const PASSWORD: &str = "cli-pa55word-that-must-not-leak";
const KEY_PASSWORD: &str = "cli-key-pa55-that-must-not-leak";

fn bootstrap() -> String {
    std::env::var("MQ_TEST_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// Runs `mq args` in a directory holding `application.yaml` = `yaml`, with `env` set.
fn mq(yaml: &str, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("mq-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("application.yaml"), yaml).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mq"));
    cmd.args(args)
        .current_dir(&dir)
        .env_remove("MQ_PROFILES_ACTIVE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("mq runs");
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn dlt_replay_against_a_broker_that_does_not_speak_tls_names_the_key_and_hides_the_secrets() {
    let yaml = format!(
        "mq:\n  kafka:\n    bootstrap-servers: \"{}\"\n    security:\n      protocol: SASL_SSL\n    sasl:\n      mechanism: SCRAM-SHA-256\n      username: alice\n",
        bootstrap()
    );
    // The password from the environment, as a Kubernetes secret would give it.
    let (ok, text) = mq(
        &yaml,
        &["dlt-replay", "orders-dlt", "--dry-run"],
        &[("MQ_KAFKA__SASL__PASSWORD", PASSWORD)],
    );
    assert!(!ok, "a plaintext broker cannot serve SASL_SSL: {text}");
    assert!(
        text.contains("mq.kafka.security.protocol"),
        "the error names the key to fix: {text}"
    );
    assert!(!text.contains(PASSWORD), "password printed: {text}");
}

#[test]
fn a_bad_configuration_is_reported_without_the_secret_in_it() {
    // A typo next to a secret: the error names the key, never the secret's value.
    let yaml = format!(
        "mq:\n  kafka:\n    bootstrap-servers: \"{}\"\n    sasl:\n      password: \"{PASSWORD}\"\n      pasword-file: /nope\n",
        bootstrap()
    );
    let (ok, text) = mq(&yaml, &["dlt-replay", "orders-dlt", "--dry-run"], &[]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("pasword-file"),
        "names the unknown key: {text}"
    );
    assert!(!text.contains(PASSWORD), "password printed: {text}");
    // A key password without its key: refused, naming both keys, hiding the value.
    let yaml = format!(
        "mq:\n  kafka:\n    bootstrap-servers: \"{}\"\n    ssl:\n      private-key-password: \"{KEY_PASSWORD}\"\n",
        bootstrap()
    );
    let (ok, text) = mq(&yaml, &["dlt-replay", "orders-dlt", "--dry-run"], &[]);
    assert!(!ok, "{text}");
    assert!(text.contains("mq.kafka.ssl.private-key"), "{text}");
    assert!(!text.contains(KEY_PASSWORD), "key password printed: {text}");
}

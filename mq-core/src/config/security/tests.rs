use crate::config::Config;

fn props(yaml: &str) -> Vec<(String, String)> {
    Config::from_yaml_str(yaml)
        .unwrap_or_else(|e| panic!("{e}"))
        .mq
        .kafka
        .security()
        .client_properties()
        .unwrap()
}

fn get<'a>(props: &'a [(String, String)], key: &str) -> Option<&'a str> {
    props
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn error(yaml: &str) -> String {
    Config::from_yaml_str(yaml).unwrap_err().to_string()
}

const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n";

#[test]
fn sasl_ssl_maps_onto_librdkafka_properties() {
    let p = props(
        "mq:\n  kafka:\n    security:\n      protocol: SASL_SSL\n    sasl:\n      mechanism: SCRAM-SHA-512\n      username: alice\n      password: \"00123\"\n",
    );
    assert_eq!(get(&p, "security.protocol"), Some("SASL_SSL"));
    assert_eq!(get(&p, "sasl.mechanisms"), Some("SCRAM-SHA-512"));
    assert_eq!(get(&p, "sasl.username"), Some("alice"));
    assert_eq!(get(&p, "sasl.password"), Some("00123"), "kept as text");
    assert_eq!(
        get(&p, "ssl.ca.location"),
        Some("probe"),
        "no trust-certificates: the system's CAs"
    );
}

#[test]
fn pem_is_a_path_or_inline_text_and_files_lose_their_newline() {
    let dir = std::env::temp_dir().join(format!("mq-security-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, CERT).unwrap();
    let password = dir.join("password");
    std::fs::write(&password, "s3cret\n").unwrap();
    let inline_key: String = KEY.lines().map(|l| format!("        {l}\n")).collect();
    let p = props(&format!(
        "mq:\n  kafka:\n    security:\n      protocol: SSL\n    ssl:\n      trust-certificates: {}\n      certificate: {}\n      private-key: |\n{inline_key}      private-key-password-file: {}\n",
        ca.display(),
        ca.display(),
        password.display()
    ));
    assert_eq!(get(&p, "ssl.ca.pem"), Some(CERT));
    assert_eq!(get(&p, "ssl.certificate.pem"), Some(CERT));
    assert_eq!(get(&p, "ssl.key.pem"), Some(KEY));
    assert_eq!(get(&p, "ssl.key.password"), Some("s3cret"));
    assert_eq!(get(&p, "ssl.ca.location"), None);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn mistakes_name_their_key_before_any_connection() {
    let cases = [
        (
            "mq:\n  kafka:\n    sasl:\n      mechanism: PLAIN\n      username: u\n      password: p\n",
            "mq.kafka.sasl is set but mq.kafka.security.protocol is not set",
        ),
        (
            "mq:\n  kafka:\n    security:\n      protocol: SASL_SSL\n",
            "mq.kafka.sasl.mechanism must be set",
        ),
        (
            "mq:\n  kafka:\n    security:\n      protocol: SASL_SSL\n    sasl:\n      mechanism: SCRAM-SHA-256\n      username: u\n",
            "mq.kafka.sasl.password must be set",
        ),
        (
            "mq:\n  kafka:\n    security:\n      protocol: SASL_SSL\n    sasl:\n      mechanism: PLAIN\n      username: u\n      password: p\n      password-file: /x\n",
            "mq.kafka.sasl.password and mq.kafka.sasl.password-file are both set",
        ),
        (
            "mq:\n  kafka:\n    security:\n      protocol: SASL_SSL\n    sasl:\n      mechanism: PLAIN\n      username: u\n      password-file: /nonexistent/mq-password\n",
            "mq.kafka.sasl.password-file cannot be read: /nonexistent/mq-password",
        ),
        (
            "mq:\n  kafka:\n    security:\n      protocol: SSL\n    ssl:\n      trust-certificates: /nonexistent/ca.pem\n",
            "mq.kafka.ssl.trust-certificates is neither PEM text nor a readable file",
        ),
        (
            "mq:\n  kafka:\n    ssl:\n      trust-certificates: /x\n",
            "mq.kafka.ssl is set but mq.kafka.security.protocol is not set",
        ),
        (
            "mq:\n  kafka:\n    security:\n      protocol: SASL_SSL\n    sasl:\n      mechanism: GSSAPI\n",
            "unknown variant",
        ),
        (
            "mq:\n  kafka:\n    security:\n      protocol: SASL_SSL\n    sasl:\n      mechanism: OAUTHBEARER\n",
            "mq.kafka.sasl.mechanism OAUTHBEARER needs mq.kafka.properties.enable.sasl.oauthbearer.unsecure.jwt: true",
        ),
        (
            "mq:\n  kafka:\n    security:\n      protocol: SASL_SSL\n    sasl:\n      mechanism: PLAIN\n      username: u\n      password: p\n    properties:\n      sasl.username: v\n",
            "mq.kafka.sasl.username and mq.kafka.properties.sasl.username both set librdkafka's sasl.username",
        ),
        (
            "mq:\n  kafka:\n    security:\n      protocol: SASL_SSL\n    sasl:\n      mechanism: PLAIN\n      username: u\n      password: p\n    consumer:\n      properties:\n        sasl.mechanism: PLAIN\n",
            "mq.kafka.sasl.mechanism and mq.kafka.consumer.properties.sasl.mechanism both set",
        ),
    ];
    for (yaml, expected) in cases {
        let err = error(yaml);
        assert!(err.contains(expected), "{yaml}\n-> {err}");
    }
    let cert_only = format!(
        "mq:\n  kafka:\n    security:\n      protocol: SSL\n    ssl:\n      certificate: |\n{}",
        CERT.lines()
            .map(|l| format!("        {l}\n"))
            .collect::<String>()
    );
    assert!(error(&cert_only)
        .contains("mq.kafka.ssl.certificate is set without mq.kafka.ssl.private-key"));
}

#[test]
fn the_properties_route_alone_still_works() {
    let p = props(
        "mq:\n  kafka:\n    properties:\n      security.protocol: SASL_SSL\n      sasl.mechanisms: PLAIN\n      sasl.username: u\n      sasl.password: p\n",
    );
    assert_eq!(get(&p, "ssl.ca.location"), Some("probe"));
    assert_eq!(get(&p, "sasl.password"), None, "left to the properties map");
}

#[test]
fn secrets_never_show_in_debug_serialization_or_errors() {
    let c = Config::from_yaml_str(
        "mq:\n  kafka:\n    security:\n      protocol: SASL_SSL\n    sasl:\n      mechanism: PLAIN\n      username: u\n      password: hunter2-secret\n    consumer:\n      properties:\n        ssl.key.password: k3y-pass\n        sasl:\n          oauthbearer.config: token-xyz\n",
    );
    let c = c.unwrap_or_else(|e| panic!("{e}"));
    let debug = format!("{c:?}");
    let json = serde_json::to_string(&c).unwrap();
    for secret in ["hunter2-secret", "k3y-pass", "token-xyz"] {
        assert!(!debug.contains(secret), "Debug shows {secret}: {debug}");
    }
    assert!(!json.contains("hunter2-secret"), "{json}");
    let secrets = c.mq.kafka.security().secrets();
    let scrubbed = super::scrub("auth failed: hunter2-secret / k3y-pass", &secrets);
    assert_eq!(scrubbed, "auth failed: ****** / ******");
}

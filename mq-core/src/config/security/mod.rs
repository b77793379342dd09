//! `mq.kafka.security.*`, `mq.kafka.ssl.*` and `mq.kafka.sasl.*`: TLS and SASL to the
//! brokers, shaped as Spring Boot's `spring.kafka.security.protocol`, `spring.kafka.ssl.*`
//! (PEM material as in its PEM SSL bundles: a file path or the PEM text itself) and a
//! JAAS-free `sasl` section.
//!
//! Each key maps onto librdkafka properties ([`KafkaSecurity::client_properties`]):
//!
//! | key | librdkafka |
//! |---|---|
//! | `mq.kafka.security.protocol` | `security.protocol` |
//! | `mq.kafka.ssl.trust-certificates` | `ssl.ca.pem` (unset: `ssl.ca.location=probe`, the system's CAs) |
//! | `mq.kafka.ssl.certificate` | `ssl.certificate.pem` |
//! | `mq.kafka.ssl.private-key` | `ssl.key.pem` |
//! | `mq.kafka.ssl.private-key-password` / `-file` | `ssl.key.password` |
//! | `mq.kafka.sasl.mechanism` | `sasl.mechanisms` |
//! | `mq.kafka.sasl.username` | `sasl.username` |
//! | `mq.kafka.sasl.password` / `password-file` | `sasl.password` |
//!
//! Setting a property both here and under a `properties` map is an error naming both keys
//! (one place per setting, no silent winner). Files are read when the configuration is
//! loaded, so a missing file fails the start naming its key; `*-file` keys (a mounted
//! Kubernetes secret) lose their trailing newline. Secrets read `******` in `Debug`, in
//! serialized configuration (`/actuator/info`) and in every error.

mod resolve;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

pub use resolve::KafkaSecurity;
// The PEM and secret-file readers, shared with `mq.rabbitmq.ssl`.
pub(in crate::config) use resolve::{pem, secret_or_file};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a secret reads in `Debug`, serialized configuration and error messages.
pub const REDACTED: &str = "******";

/// A secret string (a password, a private key): its `Debug` and `Serialize` show
/// [`REDACTED`], never the value.
///
/// ```
/// let s = mq_core::config::Secret::new("hunter2");
/// assert_eq!(format!("{s:?}"), "Secret(******)");
/// assert_eq!(s.expose(), "hunter2");
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that must pass it on (the client settings).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        // Values may arrive typed (a numeric password in YAML): keep them as text.
        super::lenient::string(d).map(Secret)
    }
}

/// `security.protocol`: how the client talks to the brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecurityProtocol {
    /// No TLS, no authentication (librdkafka's default).
    #[serde(rename = "PLAINTEXT", alias = "plaintext")]
    Plaintext,
    /// TLS; optionally a client certificate (mTLS).
    #[serde(rename = "SSL", alias = "ssl")]
    Ssl,
    /// SASL authentication without TLS.
    #[serde(rename = "SASL_PLAINTEXT", alias = "sasl_plaintext")]
    SaslPlaintext,
    /// SASL authentication over TLS (Confluent Cloud, MSK with SCRAM, Aiven, Redpanda Cloud).
    #[serde(rename = "SASL_SSL", alias = "sasl_ssl")]
    SaslSsl,
}

impl SecurityProtocol {
    fn parse(s: &str) -> Option<SecurityProtocol> {
        Some(match s.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => SecurityProtocol::Plaintext,
            "SSL" => SecurityProtocol::Ssl,
            "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
            "SASL_SSL" => SecurityProtocol::SaslSsl,
            _ => return None,
        })
    }

    /// The librdkafka spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// The SASL mechanisms this build of librdkafka offers (GSSAPI/Kerberos is not built in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaslMechanism {
    /// Username and password in the clear (inside TLS): Confluent Cloud API keys.
    #[serde(rename = "PLAIN")]
    Plain,
    /// Salted challenge-response with SHA-256 (MSK SCRAM, Aiven, Redpanda).
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// Salted challenge-response with SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
    /// OAuth 2 bearer tokens: librdkafka's unsecured JWS, with
    /// `mq.kafka.properties.enable.sasl.oauthbearer.unsecure.jwt: true` and the claims in
    /// `mq.kafka.properties.sasl.oauthbearer.config` (OIDC needs libcurl, not built in).
    #[serde(rename = "OAUTHBEARER")]
    OauthBearer,
}

impl SaslMechanism {
    /// The librdkafka spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::OauthBearer => "OAUTHBEARER",
        }
    }
}

/// `mq.kafka.security.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct SecurityConfig {
    /// `PLAINTEXT` (default), `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<SecurityProtocol>,
}

/// `mq.kafka.ssl.*`: PEM material, each a file path or the PEM text itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct SslConfig {
    /// CA certificates that sign the brokers' certificates. Unset: the system's CAs
    /// (what public clouds need).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust_certificates: Option<String>,
    /// The client's certificate chain, for mTLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// The client's private key (PKCS#8 or PKCS#1 PEM; encrypted with `private-key-password`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key: Option<Secret>,
    /// Password of an encrypted `private-key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key_password: Option<Secret>,
    /// A file holding `private-key-password` (trailing newline ignored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key_password_file: Option<PathBuf>,
}

/// `mq.kafka.sasl.*`: SASL authentication without a JAAS string.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct SaslConfig {
    /// `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512` or `OAUTHBEARER`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<SaslMechanism>,
    /// The user (an API key on Confluent Cloud).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The password (an API secret on Confluent Cloud). Prefer `password-file` or the
    /// `MQ_KAFKA__SASL__PASSWORD` variable to a password in a file under version control.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// A file holding the password, e.g. a mounted Kubernetes secret (trailing newline
    /// ignored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
}

/// librdkafka properties whose values are secret.
pub(crate) fn is_secret_property(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password")
        || key.contains("secret")
        || key.ends_with("key.pem")
        || key == "sasl.oauthbearer.config"
        || key == "sasl.jaas.config"
}

/// Replaces every occurrence of each secret in `text` (and each long line of a multi-line
/// secret, such as a PEM key) with [`REDACTED`].
///
/// ```
/// let t = mq_core::config::security::scrub("login failed for pw hunter2", &["hunter2".into()]);
/// assert_eq!(t, "login failed for pw ******");
/// ```
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for secret in secrets {
        if secret.is_empty() {
            continue;
        }
        out = out.replace(secret.as_str(), REDACTED);
        if secret.contains('\n') {
            for line in secret.lines().map(str::trim).filter(|l| l.len() >= 16) {
                out = out.replace(line, REDACTED);
            }
        }
    }
    out
}

/// `properties` for `Debug`: secret values masked.
pub(crate) struct DebugProperties<'a, V>(pub(crate) &'a BTreeMap<String, V>);

impl<V: fmt::Debug> fmt::Debug for DebugProperties<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (k, v) in self.0 {
            // Nested maps (`sasl: {password: ..}`) are masked whole.
            if is_secret_property(k) || k.starts_with("sasl") || k.starts_with("ssl") {
                map.entry(k, &REDACTED);
            } else {
                map.entry(k, v);
            }
        }
        map.finish()
    }
}

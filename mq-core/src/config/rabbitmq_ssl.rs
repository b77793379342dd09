//! `mq.rabbitmq.ssl.*`: TLS to RabbitMQ, shaped as Spring Boot's `spring.rabbitmq.ssl.*`
//! with the PEM material of `mq.kafka.ssl.*` (a file path or the PEM text itself, as in
//! Spring Boot's PEM SSL bundles) instead of Java key stores.
//!
//! | key | Spring Boot |
//! |---|---|
//! | `mq.rabbitmq.ssl.enabled` | `spring.rabbitmq.ssl.enabled` (default port 5671 then) |
//! | `mq.rabbitmq.ssl.trust-certificates` | `spring.rabbitmq.ssl.trust-store` (unset: the system's CAs) |
//! | `mq.rabbitmq.ssl.certificate` + `private-key` | `spring.rabbitmq.ssl.key-store` (mTLS) |
//! | `mq.rabbitmq.ssl.private-key-password` / `-file` | `spring.rabbitmq.ssl.key-store-password` |
//! | `mq.rabbitmq.ssl.verify-hostname` | `spring.rabbitmq.ssl.verify-hostname` (default true) |
//! | `mq.rabbitmq.ssl.validate-server-certificate` | the same key (default true) |
//! | `mq.rabbitmq.ssl.algorithm` | the same key: `TLSv1.2` or `TLSv1.3` pins the version |
//!
//! Files are read when the configuration is loaded: a missing file or a key without its
//! certificate fails the start naming the key.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::lenient;
use super::security::{pem, secret_or_file, Secret};

/// `mq.rabbitmq.ssl.*`
///
/// ```
/// let c = mq_core::Config::from_yaml_str(
///     "mq:\n  rabbitmq:\n    ssl:\n      enabled: true\n      verify-hostname: false\n",
/// ).unwrap();
/// assert!(c.mq.rabbitmq.ssl.enabled);
/// assert!(c.mq.rabbitmq.uris()[0].starts_with("amqps://"));
/// assert!(c.mq.rabbitmq.uris()[0].contains(":5671/"));
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RabbitSslConfig {
    /// Connect with TLS (`amqps`). Default false.
    pub enabled: bool,
    /// CA certificates that sign the broker's certificate (PEM text or a file). Unset: the
    /// system's CAs.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub trust_certificates: Option<String>,
    /// The client's certificate chain, for mTLS (PEM text or a file).
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
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
    /// Check that the broker's certificate names the host connected to. Default true.
    pub verify_hostname: bool,
    /// Check the broker's certificate at all. Default true; false accepts any broker (a
    /// test setup, never production).
    pub validate_server_certificate: bool,
    /// `TLSv1.2` or `TLSv1.3`: the one TLS version to use. Default: the newest both sides
    /// speak.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_string"
    )]
    pub algorithm: Option<String>,
}

impl Default for RabbitSslConfig {
    fn default() -> Self {
        RabbitSslConfig {
            enabled: false,
            trust_certificates: None,
            certificate: None,
            private_key: None,
            private_key_password: None,
            private_key_password_file: None,
            verify_hostname: true,
            validate_server_certificate: true,
            algorithm: None,
        }
    }
}

/// A TLS version `mq.rabbitmq.ssl.algorithm` can pin.
// Read by the RabbitMQ transport only.
#[cfg_attr(not(feature = "rabbitmq"), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsVersion {
    Tls12,
    Tls13,
}

/// `mq.rabbitmq.ssl` with its files read: what the client's TLS connector is built from.
#[cfg_attr(not(feature = "rabbitmq"), allow(dead_code))]
#[derive(Clone)]
pub(crate) struct RabbitTls {
    pub(crate) trust_certificates: Option<String>,
    /// Certificate chain and key (with its password), for mTLS.
    pub(crate) identity: Option<(String, String, Option<String>)>,
    pub(crate) verify_hostname: bool,
    pub(crate) validate_server_certificate: bool,
    pub(crate) version: Option<TlsVersion>,
}

impl RabbitSslConfig {
    /// The settings with their files read: `None` when TLS is off, every problem (each
    /// naming its key) when they do not fit together.
    pub(crate) fn resolve(&self) -> Result<Option<RabbitTls>, Vec<String>> {
        let mut problems = Vec::new();
        let material_set = self.trust_certificates.is_some()
            || self.certificate.is_some()
            || self.private_key.is_some()
            || self.algorithm.is_some();
        if !self.enabled {
            if material_set {
                problems.push(
                    "mq.rabbitmq.ssl.* is set but mq.rabbitmq.ssl.enabled is false: set it to true"
                        .to_owned(),
                );
            }
            return if problems.is_empty() {
                Ok(None)
            } else {
                Err(problems)
            };
        }
        let trust_certificates = match &self.trust_certificates {
            Some(t) => pem(t, "CERTIFICATE")
                .map_err(|e| problems.push(format!("mq.rabbitmq.ssl.trust-certificates {e}")))
                .ok(),
            None => None,
        };
        let password = secret_or_file(
            "mq.rabbitmq.ssl.private-key-password",
            self.private_key_password.as_ref(),
            self.private_key_password_file.as_deref(),
        )
        .map_err(|e| problems.push(e))
        .ok()
        .flatten();
        let identity = match (&self.certificate, &self.private_key) {
            (Some(cert), Some(key)) => {
                let cert = pem(cert, "CERTIFICATE")
                    .map_err(|e| problems.push(format!("mq.rabbitmq.ssl.certificate {e}")));
                let key = pem(key.expose(), "PRIVATE KEY")
                    .map_err(|e| problems.push(format!("mq.rabbitmq.ssl.private-key {e}")));
                match (cert, key) {
                    (Ok(c), Ok(k)) => Some((c, k, password.clone())),
                    _ => None,
                }
            }
            (Some(_), None) => {
                problems.push(
                    "mq.rabbitmq.ssl.certificate is set without mq.rabbitmq.ssl.private-key"
                        .to_owned(),
                );
                None
            }
            (None, Some(_)) => {
                problems.push(
                    "mq.rabbitmq.ssl.private-key is set without mq.rabbitmq.ssl.certificate"
                        .to_owned(),
                );
                None
            }
            (None, None) => None,
        };
        if password.is_some() && self.private_key.is_none() {
            problems.push(
                "mq.rabbitmq.ssl.private-key-password is set without mq.rabbitmq.ssl.private-key"
                    .to_owned(),
            );
        }
        let version = match self.algorithm.as_deref().map(str::to_ascii_lowercase) {
            None => None,
            Some(a) if a == "tlsv1.2" => Some(TlsVersion::Tls12),
            Some(a) if a == "tlsv1.3" => Some(TlsVersion::Tls13),
            Some(_) => {
                problems.push(format!(
                    "mq.rabbitmq.ssl.algorithm must be TLSv1.2 or TLSv1.3, not {:?}",
                    self.algorithm.as_deref().unwrap_or_default()
                ));
                None
            }
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Some(RabbitTls {
            trust_certificates,
            identity,
            verify_hostname: self.verify_hostname,
            validate_server_certificate: self.validate_server_certificate,
            version,
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn problems(yaml: &str) -> String {
        match Config::from_yaml_str(yaml) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn mistakes_name_their_key() {
        let e =
            problems("mq:\n  rabbitmq:\n    ssl:\n      trust-certificates: /nonexistent/ca.pem\n");
        assert!(e.contains("mq.rabbitmq.ssl.enabled is false"), "{e}");
        let e = problems(
            "mq:\n  rabbitmq:\n    ssl:\n      enabled: true\n      trust-certificates: /nonexistent/ca.pem\n      certificate: /nonexistent/c.pem\n      algorithm: SSLv3\n",
        );
        assert!(e.contains("mq.rabbitmq.ssl.trust-certificates is neither PEM text nor a readable file: /nonexistent/ca.pem"), "{e}");
        assert!(
            e.contains("mq.rabbitmq.ssl.certificate is set without mq.rabbitmq.ssl.private-key"),
            "{e}"
        );
        assert!(
            e.contains("mq.rabbitmq.ssl.algorithm must be TLSv1.2 or TLSv1.3"),
            "{e}"
        );
    }

    #[test]
    fn the_private_key_never_shows() {
        let c = Config::from_yaml_str(
            "mq:\n  rabbitmq:\n    ssl:\n      enabled: true\n      certificate: \"-----BEGIN CERTIFICATE-----\\nx\\n-----END CERTIFICATE-----\"\n      private-key: \"-----BEGIN PRIVATE KEY-----\\nsecretkeymaterial\\n-----END PRIVATE KEY-----\"\n",
        )
        .unwrap();
        assert!(!format!("{:?}", c.mq.rabbitmq).contains("secretkeymaterial"));
        let tls = c.mq.rabbitmq.ssl.resolve().unwrap().unwrap();
        assert!(tls.identity.unwrap().1.contains("secretkeymaterial"));
    }
}

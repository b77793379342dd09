//! Resolving `mq.kafka.{security,ssl,sasl}` (and the `properties` maps beside them) into
//! librdkafka properties: files read, consistency checked, conflicts refused.

use std::path::Path;

use super::{is_secret_property, SaslConfig, Secret, SecurityConfig, SecurityProtocol, SslConfig};

/// The security settings of every Kafka client, resolved into librdkafka properties
/// ([`KafkaConfig::security`](crate::config::KafkaConfig::security)).
///
/// ```
/// let c = mq_core::Config::from_yaml_str(
///     "mq:\n  kafka:\n    security:\n      protocol: SASL_SSL\n    sasl:\n      mechanism: PLAIN\n      username: key\n      password: s3cret\n",
/// ).unwrap();
/// let props = c.mq.kafka.security().client_properties().unwrap();
/// assert!(props.iter().any(|(k, v)| k == "sasl.username" && v == "key"));
/// assert!(!format!("{:?}", c).contains("s3cret"));
/// ```
#[derive(Debug, Clone)]
pub struct KafkaSecurity<'a> {
    security: &'a SecurityConfig,
    ssl: &'a SslConfig,
    sasl: &'a SaslConfig,
    /// Every `properties` map that reaches a client, flattened, by its key.
    properties: Vec<(&'static str, Vec<(String, String)>)>,
}

/// librdkafka properties each key sets, with the names librdkafka also accepts for them.
const MAPPED: [(&str, &str, &[&str]); 8] = [
    ("mq.kafka.security.protocol", "security.protocol", &[]),
    ("mq.kafka.ssl.trust-certificates", "ssl.ca.pem", &[]),
    ("mq.kafka.ssl.certificate", "ssl.certificate.pem", &[]),
    ("mq.kafka.ssl.private-key", "ssl.key.pem", &[]),
    ("mq.kafka.ssl.private-key-password", "ssl.key.password", &[]),
    (
        "mq.kafka.sasl.mechanism",
        "sasl.mechanisms",
        &["sasl.mechanism"],
    ),
    ("mq.kafka.sasl.username", "sasl.username", &[]),
    ("mq.kafka.sasl.password", "sasl.password", &[]),
];

impl<'a> KafkaSecurity<'a> {
    pub(crate) fn new(
        security: &'a SecurityConfig,
        ssl: &'a SslConfig,
        sasl: &'a SaslConfig,
        properties: Vec<(&'static str, Vec<(String, String)>)>,
    ) -> Self {
        KafkaSecurity {
            security,
            ssl,
            sasl,
            properties,
        }
    }

    /// The librdkafka properties these settings make (secrets included: pass them to the
    /// client only), or every problem found, each naming its key.
    pub fn client_properties(&self) -> Result<Vec<(String, String)>, Vec<String>> {
        let mut problems = Vec::new();
        let mut out: Vec<(&str, String)> = Vec::new();
        let user_set = |names: &[&str]| -> Option<(String, String)> {
            self.properties.iter().find_map(|(key, props)| {
                props
                    .iter()
                    .find(|(k, _)| names.contains(&k.as_str()))
                    .map(|(k, v)| (format!("{key}.{k}"), v.clone()))
            })
        };
        let protocol = match self.security.protocol {
            Some(p) => Some(p),
            None => user_set(&["security.protocol"]).and_then(|(_, v)| SecurityProtocol::parse(&v)),
        };
        if let Some(p) = self.security.protocol {
            out.push(("security.protocol", p.as_str().to_owned()));
        }
        let protocol_hint = |wanted: &str| match self.security.protocol {
            Some(p) => format!(
                "mq.kafka.security.protocol is {}: set it to {wanted}",
                p.as_str()
            ),
            None => format!("mq.kafka.security.protocol is not set: set it to {wanted}"),
        };

        let ssl = self.ssl;
        let ssl_set = ssl.trust_certificates.is_some()
            || ssl.certificate.is_some()
            || ssl.private_key.is_some();
        if ssl_set && !protocol.is_some_and(SecurityProtocol::tls) {
            problems.push(format!(
                "mq.kafka.ssl is set but {}",
                protocol_hint("SSL or SASL_SSL")
            ));
        }
        if let Some(trust) = &ssl.trust_certificates {
            match pem(trust, "CERTIFICATE") {
                Ok(pem) => out.push(("ssl.ca.pem", pem)),
                Err(e) => problems.push(format!("mq.kafka.ssl.trust-certificates {e}")),
            }
        } else if protocol.is_some_and(SecurityProtocol::tls)
            && user_set(&["ssl.ca.location", "ssl.ca.pem", "ssl.ca.certificate.stores"]).is_none()
        {
            // With OpenSSL built in, its default CA directory is not the system's: look
            // where the distributions keep theirs (as the JVM uses its cacerts).
            out.push(("ssl.ca.location", "probe".to_owned()));
        }
        match (&ssl.certificate, &ssl.private_key) {
            (Some(cert), Some(key)) => {
                match pem(cert, "CERTIFICATE") {
                    Ok(pem) => out.push(("ssl.certificate.pem", pem)),
                    Err(e) => problems.push(format!("mq.kafka.ssl.certificate {e}")),
                }
                match pem(key.expose(), "PRIVATE KEY") {
                    Ok(pem) => out.push(("ssl.key.pem", pem)),
                    Err(e) => problems.push(format!("mq.kafka.ssl.private-key {e}")),
                }
            }
            (Some(_), None) => problems.push(
                "mq.kafka.ssl.certificate is set without mq.kafka.ssl.private-key".to_owned(),
            ),
            (None, Some(_)) => problems.push(
                "mq.kafka.ssl.private-key is set without mq.kafka.ssl.certificate".to_owned(),
            ),
            (None, None) => {}
        }
        match secret_or_file(
            "mq.kafka.ssl.private-key-password",
            ssl.private_key_password.as_ref(),
            ssl.private_key_password_file.as_deref(),
        ) {
            Ok(Some(_)) if ssl.private_key.is_none() => {
                problems.push(
                    "mq.kafka.ssl.private-key-password is set without mq.kafka.ssl.private-key"
                        .to_owned(),
                );
            }
            Ok(Some(p)) => out.push(("ssl.key.password", p)),
            Ok(None) => {}
            Err(e) => problems.push(e),
        }

        let sasl = self.sasl;
        let password = match secret_or_file(
            "mq.kafka.sasl.password",
            sasl.password.as_ref(),
            sasl.password_file.as_deref(),
        ) {
            Ok(p) => p,
            Err(e) => {
                problems.push(e);
                None
            }
        };
        let sasl_set = sasl.mechanism.is_some() || sasl.username.is_some() || password.is_some();
        if sasl_set && !protocol.is_some_and(SecurityProtocol::sasl) {
            problems.push(format!(
                "mq.kafka.sasl is set but {}",
                protocol_hint("SASL_SSL (or SASL_PLAINTEXT)")
            ));
        }
        let mechanism = sasl.mechanism.map(|m| m.as_str().to_owned()).or_else(|| {
            user_set(&["sasl.mechanisms", "sasl.mechanism"]).map(|(_, v)| v.to_ascii_uppercase())
        });
        if protocol.is_some_and(SecurityProtocol::sasl) && mechanism.is_none() {
            problems.push(
                "mq.kafka.sasl.mechanism must be set with a SASL security.protocol: PLAIN, \
                 SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER"
                    .to_owned(),
            );
        }
        if let Some(m) = sasl.mechanism {
            out.push(("sasl.mechanisms", m.as_str().to_owned()));
        }
        if let Some(u) = &sasl.username {
            out.push(("sasl.username", u.clone()));
        }
        if let Some(p) = password {
            out.push(("sasl.password", p));
        }
        // librdkafka's own OAUTHBEARER token is the unsecured JWS of
        // `sasl.oauthbearer.config`, and only when enabled; without it (and with no OIDC,
        // which needs libcurl, not built) the client waits for a token for ever.
        let unsecured_jwt = user_set(&["enable.sasl.oauthbearer.unsecure.jwt"])
            .is_some_and(|(_, v)| v.eq_ignore_ascii_case("true"));
        if mechanism.as_deref() == Some("OAUTHBEARER") && !unsecured_jwt {
            problems.push(
                "mq.kafka.sasl.mechanism OAUTHBEARER needs \
                 mq.kafka.properties.enable.sasl.oauthbearer.unsecure.jwt: true and the token's \
                 claims in mq.kafka.properties.sasl.oauthbearer.config (OIDC token fetching is \
                 not built in)"
                    .to_owned(),
            );
        }
        let needs_credentials = matches!(
            mechanism.as_deref(),
            Some("PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512")
        );
        if needs_credentials {
            for (key, property) in [
                ("mq.kafka.sasl.username", "sasl.username"),
                ("mq.kafka.sasl.password", "sasl.password"),
            ] {
                if !out.iter().any(|(k, _)| *k == property) && user_set(&[property]).is_none() {
                    problems.push(format!(
                        "{key} must be set for SASL mechanism {}",
                        mechanism.as_deref().unwrap_or_default()
                    ));
                }
            }
        }

        // One place per setting: a mapped key and the same librdkafka property under a
        // `properties` map is a conflict, not a silent override.
        for (key, property, aliases) in MAPPED {
            if !out.iter().any(|(k, _)| *k == property) {
                continue;
            }
            let mut names = vec![property];
            names.extend_from_slice(aliases);
            if let Some((other, _)) = user_set(&names) {
                problems.push(format!(
                    "{key} and {other} both set librdkafka's {property}: keep one"
                ));
            }
        }
        if problems.is_empty() {
            Ok(out.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
        } else {
            Err(problems)
        }
    }

    /// The secret values of these settings (and of `*password*`, `*secret*`, `ssl.key.pem`
    /// properties), to scrub from any text before it is shown.
    pub fn secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(props) = self.client_properties() {
            out.extend(
                props
                    .into_iter()
                    .filter(|(k, _)| is_secret_property(k))
                    .map(|(_, v)| v),
            );
        }
        for (_, props) in &self.properties {
            out.extend(
                props
                    .iter()
                    .filter(|(k, _)| is_secret_property(k))
                    .map(|(_, v)| v.clone()),
            );
        }
        if let Some(key) = &self.ssl.private_key {
            out.push(key.expose().to_owned());
        }
        out.retain(|s| !s.trim().is_empty());
        out
    }
}

/// PEM text from inline PEM or a file path; the error never quotes the content.
pub(in crate::config) fn pem(value: &str, label: &str) -> Result<String, String> {
    let text = if value.trim_start().starts_with("-----BEGIN") {
        value.to_owned()
    } else {
        let path = Path::new(value.trim());
        std::fs::read_to_string(path).map_err(|e| {
            format!(
                "is neither PEM text nor a readable file: {}: {e}",
                path.display()
            )
        })?
    };
    if !text.contains(&format!("{label}-----")) {
        return Err(format!("holds no PEM block with \"{label}\""));
    }
    Ok(text)
}

/// A secret given inline or in a file (trailing newline dropped, as Kubernetes secret
/// mounts and `echo` leave one); both at once is an error.
pub(in crate::config) fn secret_or_file(
    key: &str,
    inline: Option<&Secret>,
    file: Option<&Path>,
) -> Result<Option<String>, String> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(format!("{key} and {key}-file are both set: keep one")),
        (Some(s), None) => Ok(Some(s.expose().to_owned())),
        (None, Some(path)) => {
            let mut text = std::fs::read_to_string(path)
                .map_err(|e| format!("{key}-file cannot be read: {}: {e}", path.display()))?;
            while text.ends_with('\n') || text.ends_with('\r') {
                text.pop();
            }
            if text.is_empty() {
                return Err(format!(
                    "{key}-file names an empty file: {}",
                    path.display()
                ));
            }
            Ok(Some(text))
        }
        (None, None) => Ok(None),
    }
}

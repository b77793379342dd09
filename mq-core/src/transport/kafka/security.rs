//! TLS and SASL failures in words a user can act on: the startup connection check, the
//! client context that keeps the broker's last reason (and scrubs secrets from librdkafka's
//! log lines and errors), and the table from a librdkafka reason to the key to fix.
//!
//! librdkafka reports a rejected password or an untrusted certificate only as an error
//! event and a log line; the request that failed just times out. So the first client of an
//! app asks the brokers for metadata with this context and, when the brokers refused it
//! for a reason of security, startup fails with that reason and the `mq.kafka.*` key to
//! fix. A broker that is merely unreachable is not decided here.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, ClientContext};

use crate::config::security::scrub;
use crate::config::Config;
use crate::error::Error;

/// How long the startup check waits for a verdict on an unreachable cluster.
const CHECK_FOR: Duration = Duration::from_secs(5);

/// A client context that remembers the last TLS or SASL error the client reported and passes
/// librdkafka's log lines and errors to `tracing` with the configured secrets scrubbed.
#[derive(Clone, Default)]
pub(crate) struct SecuredContext {
    secrets: Arc<Vec<String>>,
    last_error: Arc<Mutex<Option<String>>>,
    refused: Arc<std::sync::atomic::AtomicBool>,
}

impl SecuredContext {
    pub(crate) fn new(config: &Config) -> Self {
        SecuredContext {
            secrets: Arc::new(config.mq.kafka.security().secrets()),
            last_error: Arc::default(),
            refused: Arc::default(),
        }
    }

    /// `text` with every configured secret replaced by `******`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        scrub(text, &self.secrets)
    }

    /// Whether the client's connection attempts were refused (no broker listens).
    pub(crate) fn refused_connection(&self) -> bool {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The last TLS or SASL error the client reported since the last call, scrubbed.
    pub(crate) fn take_last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

impl SecuredContext {
    /// Keeps `reason` when it is about TLS or SASL: "all brokers are down" follows every
    /// refusal and must not hide it.
    fn keep_if_refusal(&self, reason: &str) {
        if reason.contains("Connection refused") {
            self.refused
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        if explain(reason).is_some() {
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.to_owned());
        }
    }
}

impl ClientContext for SecuredContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        let message = self.scrub(log_message);
        // A broker that closes the connection is reported as a FAIL log line, not as an
        // error event.
        if fac == "FAIL" {
            self.keep_if_refusal(&message);
        }
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "librdkafka", "{fac} {message}")
            }
            L::Warning => tracing::warn!(target: "librdkafka", "{fac} {message}"),
            L::Notice | L::Info => tracing::info!(target: "librdkafka", "{fac} {message}"),
            L::Debug => tracing::debug!(target: "librdkafka", "{fac} {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let reason = self.scrub(reason);
        tracing::debug!(target: "librdkafka", error = %error, "{reason}");
        self.keep_if_refusal(&reason);
    }
}

impl ConsumerContext for SecuredContext {}

/// What to change for a broker's reason, naming the key; `None` when the reason is not
/// about TLS or SASL (an unreachable broker, say).
pub(crate) fn explain(reason: &str) -> Option<&'static str> {
    let r = reason.to_ascii_lowercase();
    let hint = if r.contains("sasl authentication error") || r.contains("authentication failed") {
        "the brokers rejected the credentials: check mq.kafka.sasl.username and \
         mq.kafka.sasl.password (or mq.kafka.sasl.password-file)"
    } else if r.contains("unsupported sasl mechanism") || r.contains("no worthy mechs") {
        "the brokers do not offer this SASL mechanism: set mq.kafka.sasl.mechanism to one \
         they list"
    } else if r.contains("hostname mismatch") || r.contains("ip address mismatch") {
        "the broker's certificate does not name the host connected to: use a host from the \
         certificate in mq.kafka.bootstrap-servers (or fix the broker's certificate)"
    } else if r.contains("certificate has expired") || r.contains("certificate is not yet valid") {
        "the broker's certificate is outside its validity period: renew it on the broker \
         (mq.kafka.ssl.trust-certificates cannot fix that)"
    } else if r.contains("certificate verify failed") || r.contains("unable to get local issuer") {
        "the broker's certificate is not signed by a trusted CA: set \
         mq.kafka.ssl.trust-certificates to the CA that signed it"
    } else if r.contains("connecting to a ssl listener")
        || (r.contains("disconnected")
            && r.contains("in state apiversion_query")
            && !r.contains("ssl://"))
    {
        // A plaintext client's first request, answered by closing the connection: what a
        // TLS listener does with bytes that are not a TLS handshake.
        "the broker closed the connection at the first request, as a TLS listener does: \
         set mq.kafka.security.protocol to SSL or SASL_SSL"
    } else if r.contains("broker might require sasl authentication") {
        "the broker requires SASL: set mq.kafka.security.protocol to SASL_SSL (or \
         SASL_PLAINTEXT) and mq.kafka.sasl.*"
    } else if r.contains("wrong version number") || r.contains("packet length too long") {
        "the broker does not speak TLS on this port: set mq.kafka.security.protocol to \
         PLAINTEXT or SASL_PLAINTEXT, or use the broker's TLS port in mq.kafka.bootstrap-servers"
    } else if r.contains("ssl.key") || r.contains("private key") || r.contains("ssl.certificate") {
        "the client certificate or key is unusable: check mq.kafka.ssl.certificate, \
         mq.kafka.ssl.private-key and mq.kafka.ssl.private-key-password"
    } else if r.contains("ssl handshake failed") {
        "the TLS handshake failed: check mq.kafka.security.protocol and mq.kafka.ssl.*"
    } else {
        return None;
    };
    Some(hint)
}

/// Asks the brokers for metadata once with the app's settings and fails when they refuse
/// the client for a reason of TLS or SASL (the error names the key to fix and the broker's
/// reason, scrubbed). Success, or a cluster that does not answer within a few seconds, is
/// `Ok`: reachability is the health check's business.
pub(crate) async fn check_connection(config: &Config) -> Result<(), Error> {
    let context = SecuredContext::new(config);
    let mut client_config = super::admin_config(config)?;
    client_config
        .set(
            "client.id",
            format!("{}-security-check", config.mq.application.name),
        )
        .set("reconnect.backoff.max.ms", "1000");
    // Security settings given to the consumers alone (as the health probe does): the check
    // must connect as the listeners will.
    for (k, v) in crate::config::flatten_properties(&config.mq.kafka.consumer.properties) {
        if k.starts_with("security.") || k.starts_with("sasl.") || k.starts_with("ssl.") {
            client_config.set(k, v);
        }
    }
    let bootstrap = config.mq.kafka.bootstrap_servers.clone();
    let ctx = context.clone();
    tokio::task::spawn_blocking(move || verdict(client_config, ctx, &bootstrap))
        .await
        .map_err(|e| Error::Kafka(e.to_string()))?
}

fn verdict(
    client_config: ClientConfig,
    context: SecuredContext,
    bootstrap: &str,
) -> Result<(), Error> {
    let consumer: BaseConsumer<SecuredContext> = client_config
        .create_with_context(context.clone())
        .map_err(|e| {
            let reason = context.scrub(&e.to_string());
            let hint = explain(&reason).unwrap_or("check mq.kafka.security.* and mq.kafka.ssl.*");
            Error::Kafka(format!(
                "cannot create a Kafka client: {hint} (librdkafka: {reason})"
            ))
        })?;
    let started = Instant::now();
    let outcome = loop {
        if consumer
            .fetch_metadata(None, Duration::from_millis(500))
            .is_ok()
        {
            break Ok(());
        }
        serve_events(&consumer);
        if let Some(refusal) = refusal(&context, &client_config) {
            break Err(Error::Kafka(format!(
                "cannot connect to the Kafka brokers at {bootstrap}: {refusal}"
            )));
        }
        // Nothing listens: there is no TLS or SASL answer to wait for, and a broker that
        // is down at startup must not delay the start (it is health's to report).
        if context.refused_connection() {
            break Ok(());
        }
        if started.elapsed() >= CHECK_FOR {
            break Ok(());
        }
    };
    // Destroying a client can block; this is a blocking thread already.
    drop(consumer);
    outcome
}

/// Serves the client's queued events (log lines, errors: the error callback records the
/// broker's reason). One poll serves one event, and at librdkafka's debug levels hundreds
/// of log lines queue up between two metadata requests.
pub(crate) fn serve_events(consumer: &BaseConsumer<SecuredContext>) {
    for _ in 0..10_000 {
        let _ = consumer.poll(Duration::ZERO);
    }
}

/// The client's last error when it is a TLS or SASL refusal: the hint naming the key to
/// fix, then the broker's reason (scrubbed). `None` for anything else (an unreachable
/// broker, say).
pub(crate) fn refusal(context: &SecuredContext, client: &ClientConfig) -> Option<String> {
    let mut reason = context.take_last_error()?;
    if reason.contains("certificate verify failed") {
        // librdkafka does not say why: ask OpenSSL with the same trust settings.
        if let Some(why) = super::tls_check::certificate_problem(client) {
            reason = format!("{reason}; OpenSSL's verifier says: {why}");
        }
    }
    let hint = explain(&reason)?;
    Some(format!("{hint} (broker: {reason})"))
}

/// `e` with every secret of `secrets` replaced by `******`.
pub(crate) fn scrub_error(e: Error, secrets: &[String]) -> Error {
    match e {
        Error::Kafka(text) => Error::Kafka(scrub(&text, secrets)),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_security_reason_names_its_key() {
        let cases = [
            ("SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256", "mq.kafka.sasl.password"),
            ("ssl://127.0.0.1:1/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified, verify that ssl.ca.location is correctly configured or root CA certificates are installed (install ca-certificates package) (after 3ms in state SSL_HANDSHAKE)", "mq.kafka.ssl.trust-certificates"),
            ("SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: Hostname mismatch", "mq.kafka.bootstrap-servers"),
            ("SSL handshake failed: certificate verify failed: certificate has expired", "renew it on the broker"),
            ("127.0.0.1:1/bootstrap: Disconnected while requesting ApiVersion: might be caused by incorrect security.protocol configuration (connecting to a SSL listener?) or broker version is < 0.10 (see api.version.request)", "mq.kafka.security.protocol"),
            ("SSL handshake failed: error:0A00010B:SSL routines::wrong version number", "PLAINTEXT"),
            ("127.0.0.1:9093/bootstrap: Disconnected: connection closed by peer: receive 0 after POLLIN (after 0ms in state APIVERSION_QUERY)", "mq.kafka.security.protocol to SSL"),
        ];
        for (reason, key) in cases {
            let hint = explain(reason).unwrap_or_else(|| panic!("no hint for {reason}"));
            assert!(hint.contains(key), "{reason} -> {hint}");
        }
        assert_eq!(
            explain("Connection refused (after 0ms in state CONNECT)"),
            None
        );
    }

    #[test]
    fn the_context_scrubs_secrets_from_what_it_keeps() {
        let config = Config::from_yaml_str(
            "mq:\n  kafka:\n    security:\n      protocol: SASL_SSL\n    sasl:\n      mechanism: PLAIN\n      username: u\n      password: pa55word-xyz\n",
        )
        .unwrap();
        let context = SecuredContext::new(&config);
        context.error(
            KafkaError::Global(rdkafka::types::RDKafkaErrorCode::Authentication),
            "SASL authentication error: bad password pa55word-xyz",
        );
        assert_eq!(
            context.take_last_error().as_deref(),
            Some("SASL authentication error: bad password ******")
        );
    }
}

//! TLS to RabbitMQ with OpenSSL (the one librdkafka links already): a connector built from
//! `mq.rabbitmq.ssl.*`, handed to lapin as its connect function, and handshake failures in
//! words that name the key to fix.
//!
//! lapin's own TLS setup takes a CA and a PKCS#12 identity only, and always checks the
//! host name; building the OpenSSL connector here gives PEM client certificates,
//! `verify-hostname`, `validate-server-certificate` and `algorithm` as Spring Boot has
//! them, and OpenSSL's verifier result (why the certificate was refused) in the error.

use std::io;
use std::time::Duration;

use lapin::tcp::{HandshakeError, HandshakeResult, TcpStream};
use lapin::uri::AMQPUri;
use openssl::pkey::PKey;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode, SslVersion};
use openssl::x509::{X509VerifyResult, X509};

use crate::config::{RabbitTls, TlsVersion};

/// Where distributions keep their CA bundle (OpenSSL built from source looks elsewhere).
const SYSTEM_CA_FILES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// How long a TCP connect waits when the URI sets no `connection_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS connector for the broker.
pub(crate) struct Tls {
    connector: SslConnector,
    verify_hostname: bool,
}

impl Tls {
    /// The connector `settings` describe; the error names the key whose material OpenSSL
    /// refused.
    pub(crate) fn new(settings: &RabbitTls) -> Result<Tls, String> {
        let setup = |e: openssl::error::ErrorStack| format!("cannot set up TLS: {e}");
        let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(setup)?;
        match &settings.trust_certificates {
            Some(pem) => {
                let certs = X509::stack_from_pem(pem.as_bytes())
                    .ok()
                    .filter(|c| !c.is_empty())
                    .ok_or(
                        "mq.rabbitmq.ssl.trust-certificates holds no readable PEM certificate",
                    )?;
                for cert in certs {
                    builder
                        .cert_store_mut()
                        .add_cert(cert)
                        .map_err(|e| format!("mq.rabbitmq.ssl.trust-certificates: {e}"))?;
                }
            }
            None => {
                builder.set_default_verify_paths().map_err(setup)?;
                if let Some(file) = SYSTEM_CA_FILES
                    .iter()
                    .find(|f| std::path::Path::new(f).exists())
                {
                    builder.set_ca_file(file).map_err(setup)?;
                }
            }
        }
        if let Some((chain, key, password)) = &settings.identity {
            let mut certs = X509::stack_from_pem(chain.as_bytes())
                .map_err(|e| format!("mq.rabbitmq.ssl.certificate is not a PEM certificate: {e}"))?
                .into_iter();
            let leaf = certs
                .next()
                .ok_or("mq.rabbitmq.ssl.certificate holds no certificate")?;
            builder
                .set_certificate(&leaf)
                .map_err(|e| format!("mq.rabbitmq.ssl.certificate: {e}"))?;
            for cert in certs {
                builder
                    .add_extra_chain_cert(cert)
                    .map_err(|e| format!("mq.rabbitmq.ssl.certificate: {e}"))?;
            }
            let key = match password {
                Some(p) => PKey::private_key_from_pem_passphrase(key.as_bytes(), p.as_bytes()),
                None => PKey::private_key_from_pem(key.as_bytes()),
            }
            .map_err(|_| {
                // OpenSSL's text says nothing a user can act on ("bad decrypt" at best).
                "mq.rabbitmq.ssl.private-key cannot be read: not a PEM private key, or \
                 mq.rabbitmq.ssl.private-key-password is wrong"
                    .to_owned()
            })?;
            builder
                .set_private_key(&key)
                .map_err(|e| format!("mq.rabbitmq.ssl.private-key: {e}"))?;
            builder.check_private_key().map_err(|_| {
                "mq.rabbitmq.ssl.private-key does not belong to mq.rabbitmq.ssl.certificate"
                    .to_owned()
            })?;
        }
        if !settings.validate_server_certificate {
            builder.set_verify(SslVerifyMode::NONE);
        }
        if let Some(v) = settings.version {
            let v = match v {
                TlsVersion::Tls12 => SslVersion::TLS1_2,
                TlsVersion::Tls13 => SslVersion::TLS1_3,
            };
            builder.set_min_proto_version(Some(v)).map_err(setup)?;
            builder.set_max_proto_version(Some(v)).map_err(setup)?;
        }
        Ok(Tls {
            connector: builder.build(),
            verify_hostname: settings.verify_hostname && settings.validate_server_certificate,
        })
    }

    /// Connects to the broker of `uri` and completes the TLS handshake: a blocking
    /// stream (lapin's connect function runs on a blocking thread).
    pub(crate) fn open(&self, host: &str, port: u16, timeout: Duration) -> HandshakeResult {
        let tcp = TcpStream::connect_timeout((host, port), timeout)?;
        // A peer that accepts and never answers must not hold the thread for ever.
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_write_timeout(Some(timeout))?;
        let config = self
            .connector
            .configure()?
            .verify_hostname(self.verify_hostname);
        match config.connect(host, tcp) {
            Ok(stream) => Ok(stream.into()),
            Err(openssl::ssl::HandshakeError::Failure(mid)) => {
                let verified = mid.ssl().verify_result();
                let why = if verified == X509VerifyResult::OK {
                    format!("TLS handshake with {host}:{port} failed: {}", mid.error())
                } else {
                    format!(
                        "TLS handshake with {host}:{port} failed: certificate verify failed: {}",
                        verified.error_string()
                    )
                };
                Err(HandshakeError::Failure(io::Error::other(with_hint(why))))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// lapin's connect function: [`Tls::open`], then non-blocking for lapin's reactor.
    pub(crate) fn connect(&self, uri: &AMQPUri) -> HandshakeResult {
        let timeout = uri
            .query
            .connection_timeout
            .map_or(CONNECT_TIMEOUT, Duration::from_millis);
        let stream = self.open(&uri.authority.host, uri.authority.port, timeout)?;
        stream.set_read_timeout(None)?;
        stream.set_write_timeout(None)?;
        stream.set_nonblocking(true)?;
        Ok(stream)
    }
}

/// `why`, followed by what to change when it is a reason of TLS.
fn with_hint(why: String) -> String {
    match explain(&why) {
        Some(hint) => format!("{why}: {hint}"),
        None => why,
    }
}

/// What to change for a TLS failure, naming the key; `None` when `reason` is not about
/// TLS (an unreachable broker, say).
pub(crate) fn explain(reason: &str) -> Option<&'static str> {
    let r = reason.to_ascii_lowercase();
    Some(
        if r.contains("hostname mismatch") || r.contains("ip address mismatch") {
            "the broker's certificate does not name the host connected to: use a host from the \
             certificate in mq.rabbitmq.host (or mq.rabbitmq.addresses), or set \
             mq.rabbitmq.ssl.verify-hostname: false"
        } else if r.contains("certificate has expired") || r.contains("not yet valid") {
            "the broker's certificate is outside its validity period: renew it on the broker \
             (mq.rabbitmq.ssl.trust-certificates cannot fix that)"
        } else if r.contains("certificate verify failed") {
            "the broker's certificate is not signed by a trusted CA: set \
             mq.rabbitmq.ssl.trust-certificates to the CA that signed it"
        } else if r.contains("wrong version number") || r.contains("packet length too long") {
            "the broker does not speak TLS on this port: use its TLS port (5671) in \
             mq.rabbitmq.port or mq.rabbitmq.addresses, or set mq.rabbitmq.ssl.enabled: false"
        } else if r.contains("certificate required") || r.contains("alert handshake failure") {
            "the broker refused the client: it may require a client certificate \
             (mq.rabbitmq.ssl.certificate and mq.rabbitmq.ssl.private-key)"
        } else if r.contains("tls handshake") {
            "the TLS handshake failed: check mq.rabbitmq.ssl.*"
        } else {
            return None;
        },
    )
}

#[cfg(test)]
mod tests {
    use super::{explain, Tls};
    use crate::config::RabbitTls;

    fn settings() -> RabbitTls {
        RabbitTls {
            trust_certificates: None,
            identity: None,
            verify_hostname: true,
            validate_server_certificate: true,
            version: None,
        }
    }

    #[test]
    fn unusable_material_names_its_key() {
        let broken = "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n";
        let trust = RabbitTls {
            trust_certificates: Some(broken.to_owned()),
            ..settings()
        };
        let e = Tls::new(&trust).err().expect("refused");
        assert!(e.starts_with("mq.rabbitmq.ssl.trust-certificates"), "{e}");
        let identity = RabbitTls {
            identity: Some((broken.to_owned(), "key".to_owned(), None)),
            ..settings()
        };
        let e = Tls::new(&identity).err().expect("refused");
        assert!(e.starts_with("mq.rabbitmq.ssl.certificate"), "{e}");
        // The system's CAs when no trust certificates are given.
        assert!(Tls::new(&settings()).is_ok());
    }

    #[test]
    fn each_tls_reason_names_its_key() {
        let cases = [
            ("TLS handshake with localhost:1 failed: certificate verify failed: hostname mismatch", "verify-hostname"),
            ("TLS handshake with 127.0.0.1:1 failed: certificate verify failed: unable to get local issuer certificate", "mq.rabbitmq.ssl.trust-certificates"),
            ("certificate verify failed: certificate has expired", "renew it"),
            ("TLS handshake with 127.0.0.1:5672 failed: error:0A00010B:SSL routines:ssl3_get_record:wrong version number", "ssl.enabled: false"),
        ];
        for (reason, key) in cases {
            let hint = explain(reason).unwrap_or_else(|| panic!("no hint for {reason}"));
            assert!(hint.contains(key), "{reason} -> {hint}");
        }
        assert_eq!(explain("Connection refused (os error 111)"), None);
    }
}

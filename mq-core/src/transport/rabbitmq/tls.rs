//! TLS to RabbitMQ with OpenSSL (lapin's `openssl` feature; the one librdkafka links
//! already when `kafka` is on too): a connector built from `mq.rabbitmq.ssl.*`, used by
//! the connect function mq hands lapin, and handshake failures in words that name the key
//! to fix.
//!
//! lapin's own TLS setup (`OwnedTLSConfig`) takes a CA and an identity only, and always
//! checks the host name; building the OpenSSL connector here gives `verify-hostname`,
//! `validate-server-certificate` and `algorithm` as Spring Boot has them. The handshake
//! itself runs here (async-openssl, the stream type of lapin's `AsyncTcpStream::Openssl`)
//! so that OpenSSL's verify result (why the certificate was refused) reaches the error:
//! lapin's `into_openssl` drops the SSL object with it.

use std::io;
use std::pin::Pin;
use std::time::Duration;

use futures::{AsyncRead, AsyncWrite};
use lapin::tcp::{AsyncTcpStream, HandshakeError, HandshakeResult};
use lapin::uri::AMQPUri;
use openssl::pkey::PKey;
use openssl::ssl::{SslConnector, SslMethod, SslRef, SslVerifyMode, SslVersion};
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

    /// Connects to `host:port` and completes the TLS handshake: a blocking stream (the
    /// health check reads the broker's version with it).
    pub(crate) fn open(&self, host: &str, port: u16, timeout: Duration) -> HandshakeResult {
        let tcp = tcp_connect(host, port, timeout)?;
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
                let why = refusal(host, port, mid.ssl(), &mid.error().to_string());
                Err(HandshakeError::Failure(io::Error::other(why)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// lapin's connect function: TCP through lapin's runtime, then the TLS handshake with
    /// this connector, both within the URI's `connection_timeout` (else
    /// [`CONNECT_TIMEOUT`]). A refused handshake says why, from OpenSSL's verify result.
    pub(crate) async fn connect<S>(
        &self,
        uri: &AMQPUri,
        plain: impl Future<Output = io::Result<AsyncTcpStream<S>>>,
    ) -> io::Result<AsyncTcpStream<S>>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let timeout = uri
            .query
            .connection_timeout
            .map_or(CONNECT_TIMEOUT, Duration::from_millis);
        let (host, port) = (uri.authority.host.as_str(), uri.authority.port);
        let handshake = async {
            let AsyncTcpStream::Plain(tcp) = plain.await? else {
                return Err(io::Error::other("not a plain TCP stream"));
            };
            let ssl = self
                .connector
                .configure()
                .and_then(|c| c.verify_hostname(self.verify_hostname).into_ssl(host))
                .map_err(io::Error::other)?;
            let mut tls = async_openssl::SslStream::new(ssl, tcp).map_err(io::Error::other)?;
            match Pin::new(&mut tls).connect().await {
                Ok(()) => Ok(AsyncTcpStream::Openssl(tls)),
                Err(e) => Err(io::Error::other(refusal(
                    host,
                    port,
                    tls.ssl(),
                    &e.to_string(),
                ))),
            }
        };
        tokio::time::timeout(timeout, handshake)
            .await
            .unwrap_or_else(|_| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("TLS handshake with {host}:{port} timed out after {timeout:?}"),
                ))
            })
    }
}

/// A blocking TCP connection to the first address of `host:port` that answers.
fn tcp_connect(host: &str, port: u16, timeout: Duration) -> io::Result<std::net::TcpStream> {
    use std::net::ToSocketAddrs;
    let mut last = io::Error::other(format!("{host} resolves to no address"));
    for address in (host, port).to_socket_addrs()? {
        match std::net::TcpStream::connect_timeout(&address, timeout) {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Why the handshake with `host:port` failed: OpenSSL's verify result when the certificate
/// was refused (`error` only says "certificate verify failed"), with what to change.
fn refusal(host: &str, port: u16, ssl: &SslRef, error: &str) -> String {
    let verified = ssl.verify_result();
    let why = if verified == X509VerifyResult::OK {
        format!("TLS handshake with {host}:{port} failed: {error}")
    } else {
        format!(
            "TLS handshake with {host}:{port} failed: certificate verify failed: {}",
            verified.error_string()
        )
    };
    with_hint(why)
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

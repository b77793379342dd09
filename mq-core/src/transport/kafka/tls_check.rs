//! Why a broker's certificate failed verification. librdkafka reports only "certificate
//! verify failed"; an untrusted CA, an expired certificate and a host the certificate does
//! not name each need a different fix. So, after such a failure, one TLS handshake with the
//! same trust settings (OpenSSL, the library librdkafka uses) asks the verifier for its
//! reason.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use openssl::ssl::{HandshakeError, SslConnector, SslMethod};
use openssl::x509::{X509VerifyResult, X509};
use rdkafka::ClientConfig;

/// CA bundles of the common distributions (what `ssl.ca.location=probe` looks for).
const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

const TIMEOUT: Duration = Duration::from_secs(3);

/// OpenSSL's reason why the first bootstrap server's certificate does not verify under
/// `client`'s settings (`ssl.ca.pem` / `ssl.ca.location`, hostname check unless
/// `ssl.endpoint.identification.algorithm=none`), e.g. `certificate has expired` or
/// `hostname mismatch`. `None` when it verifies or the check could not run.
pub(crate) fn certificate_problem(client: &ClientConfig) -> Option<String> {
    let first = client.get("bootstrap.servers")?.split(',').next()?.trim();
    let first = first.rsplit_once("://").map_or(first, |(_, s)| s);
    let (host, port) = first.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().ok()?;

    let mut builder = SslConnector::builder(SslMethod::tls_client()).ok()?;
    match (client.get("ssl.ca.pem"), client.get("ssl.ca.location")) {
        (Some(pem), _) => {
            for cert in X509::stack_from_pem(pem.as_bytes()).ok()? {
                builder.cert_store_mut().add_cert(cert).ok()?;
            }
        }
        (None, Some(location)) if location != "probe" && Path::new(location).is_file() => {
            builder.set_ca_file(location).ok()?;
        }
        _ => {
            builder.set_default_verify_paths().ok()?;
            if let Some(bundle) = SYSTEM_BUNDLES.iter().find(|f| Path::new(f).exists()) {
                let _ = builder.set_ca_file(bundle);
            }
        }
    }
    let connector = builder.build();
    let verify_host = client
        .get("ssl.endpoint.identification.algorithm")
        .is_none_or(|v| !v.eq_ignore_ascii_case("none"));

    for addr in (host, port).to_socket_addrs().ok()? {
        let Ok(tcp) = TcpStream::connect_timeout(&addr, TIMEOUT) else {
            continue;
        };
        let _ = tcp.set_read_timeout(Some(TIMEOUT));
        let _ = tcp.set_write_timeout(Some(TIMEOUT));
        let mut configuration = connector.configure().ok()?;
        configuration.set_verify_hostname(verify_host);
        return match configuration.connect(host, tcp) {
            Ok(_) => None,
            Err(HandshakeError::Failure(mid)) | Err(HandshakeError::WouldBlock(mid)) => {
                let result = mid.ssl().verify_result();
                (result != X509VerifyResult::OK).then(|| result.error_string().to_owned())
            }
            Err(HandshakeError::SetupFailure(_)) => None,
        };
    }
    None
}

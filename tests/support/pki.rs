//! Certificates for the secured broker, made with rcgen: a CA, a broker certificate for
//! 127.0.0.1 (valid, and an expired one), a client certificate for mTLS, and a second CA
//! that signed none of them.

use std::path::{Path, PathBuf};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

/// A leaf certificate and its key, as PEM text and as files.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub chain_file: PathBuf,
    pub key_file: PathBuf,
}

/// Everything the tests need, written under one directory.
pub struct Pki {
    pub ca_pem: String,
    pub ca_file: PathBuf,
    pub other_ca_pem: String,
    pub broker: Leaf,
    /// A broker certificate for 127.0.0.1 from the other CA (a rotation gone wrong).
    pub foreign_broker: Leaf,
    pub expired_broker: Leaf,
    pub client: Leaf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA")
}

fn leaf(
    dir: &Path,
    name: &str,
    sans: &[&str],
    expired: bool,
    issuer: &CertifiedIssuer<'static, KeyPair>,
) -> Leaf {
    let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("leaf params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    if expired {
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2021, 1, 1);
    }
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, issuer).expect("signed leaf");
    let cert_pem = cert.pem();
    let key_pem = key.serialize_pem();
    let chain_file = dir.join(format!("{name}-chain.pem"));
    let key_file = dir.join(format!("{name}-key.pem"));
    std::fs::write(&chain_file, format!("{cert_pem}{}", issuer.pem())).unwrap();
    std::fs::write(&key_file, &key_pem).unwrap();
    Leaf {
        cert_pem,
        key_pem,
        chain_file,
        key_file,
    }
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        let other = ca("someone else's CA");
        let ca = ca("mq test CA");
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        Pki {
            ca_pem: ca.pem(),
            ca_file,
            other_ca_pem: other.pem(),
            foreign_broker: leaf(dir, "foreign-broker", &["127.0.0.1"], false, &other),
            // The broker's certificate names 127.0.0.1 only: `localhost` is a mismatch.
            broker: leaf(dir, "broker", &["127.0.0.1"], false, &ca),
            expired_broker: leaf(dir, "expired-broker", &["127.0.0.1"], true, &ca),
            client: leaf(dir, "client", &["mq-tests"], false, &ca),
        }
    }
}

//! TLS to RabbitMQ (`mq.rabbitmq.ssl.*`). The shared broker is not reconfigured: a
//! TLS-terminating proxy in the test (OpenSSL server side) forwards to 127.0.0.1:5672, with
//! certificates made by rcgen. A round trip over TLS works; an untrusted CA and a host name
//! the certificate does not carry fail the start, naming the cause and the key to fix.

use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use mq_core::prelude::*;
use mq_core::App;
use openssl::ssl::{Ssl, SslAcceptor, SslFiletype, SslMethod};

use super::*;

// The certificates of the secured-Kafka tests; this file uses a part of them.
use crate::support::pki;

/// A TLS server on an ephemeral port of 127.0.0.1 that forwards every session to the
/// local RabbitMQ. Counts the handshakes it completed.
struct TlsProxy {
    port: u16,
    handshakes: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tls_proxy(chain: &Path, key: &Path) -> TlsProxy {
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
    acceptor.set_certificate_chain_file(chain).unwrap();
    acceptor
        .set_private_key_file(key, SslFiletype::PEM)
        .unwrap();
    let acceptor = Arc::new(acceptor.build());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = Arc::new(AtomicU32::new(0));
    let counted = handshakes.clone();
    let task = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (acceptor, counted) = (acceptor.clone(), counted.clone());
            tokio::spawn(async move {
                let ssl = Ssl::new(acceptor.context()).unwrap();
                let mut tls = tokio_openssl::SslStream::new(ssl, socket).unwrap();
                if Pin::new(&mut tls).accept().await.is_err() {
                    return; // the client refused our certificate
                }
                counted.fetch_add(1, Ordering::Relaxed);
                let Ok(mut upstream) = tokio::net::TcpStream::connect("127.0.0.1:5672").await
                else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    });
    TlsProxy {
        port,
        handshakes,
        task,
    }
}

fn tls_yaml(host: &str, port: u16, ca: &Path, more: &str) -> String {
    format!(
        "  rabbitmq:\n    host: {host}\n    port: {port}\n    ssl:\n      enabled: true\n      trust-certificates: {}\n{more}",
        ca.display()
    )
}

async fn try_start(
    listener: &str,
    rabbit_yaml: &str,
) -> Result<mq_core::RunningApp, mq_core::Error> {
    let yaml = format!(
        "mq:\n  application:\n    name: rabbit-tls-test\n  kafka:\n    bootstrap-servers: 127.0.0.1:1\n{rabbit_yaml}management:\n  server:\n    enabled: false\n"
    );
    let config = mq_core::Config::from_yaml_str(&yaml).unwrap();
    App::new(config).only_listeners([listener]).start().await
}

static OVER_TLS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

#[listener(
    queue = "mq_t_tls_round_trip",
    exchange = "mq_t_tls",
    routing_key = "task"
)]
async fn on_tls(event: Event<Task>) -> Result<(), HandlerError> {
    OVER_TLS.lock().unwrap().push(event.data.n);
    Ok(())
}

#[tokio::test]
async fn round_trip_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::Pki::new(dir.path());
    let proxy = tls_proxy(&pki.broker.chain_file, &pki.broker.key_file).await;
    let (_c, ch) = channel().await;
    fresh(&ch, "mq_t_tls_round_trip").await;

    let yaml = tls_yaml("127.0.0.1", proxy.port, &pki.ca_file, "");
    let running = try_start("on_tls", &yaml).await.expect("starts over TLS");
    assert!(
        running.wait_assigned(Duration::from_secs(20)).await,
        "the queue consumer did not start over TLS"
    );
    // The publisher's `amqp://` sends share the app's (TLS) connection.
    for n in 0..20 {
        running
            .publisher()
            .send("amqp://mq_t_tls/task", "k", Task { n })
            .await
            .unwrap();
    }
    wait_for("20 handled over TLS", || {
        OVER_TLS.lock().unwrap().len() == 20
    })
    .await;
    assert_eq!(*OVER_TLS.lock().unwrap(), (0..20).collect::<Vec<_>>());
    assert!(
        proxy.handshakes.load(Ordering::Relaxed) >= 1,
        "the app connected through the TLS proxy"
    );
    running.shutdown().await.unwrap();
    assert!(
        drain(&ch, "mq_t_tls_round_trip").await.is_empty(),
        "all acked"
    );
}

#[listener(queue = "mq_t_tls_refused")]
async fn on_tls_refused(_event: Event<Task>) -> Result<(), HandlerError> {
    Ok(())
}

#[tokio::test]
async fn an_untrusted_broker_certificate_fails_the_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::Pki::new(dir.path());
    // The broker's certificate is signed by a CA the app does not trust.
    let proxy = tls_proxy(&pki.foreign_broker.chain_file, &pki.foreign_broker.key_file).await;
    let yaml = tls_yaml("127.0.0.1", proxy.port, &pki.ca_file, "");
    let err = try_start("on_tls_refused", &yaml)
        .await
        .err()
        .expect("an untrusted certificate fails the start")
        .to_string();
    println!("{err}");
    assert!(err.contains("certificate verify failed"), "{err}");
    assert!(err.contains("mq.rabbitmq.ssl.trust-certificates"), "{err}");
    assert!(!err.contains("guest:guest"), "no credentials in: {err}");
}

#[tokio::test]
async fn a_host_the_certificate_does_not_name_fails_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::Pki::new(dir.path());
    let proxy = tls_proxy(&pki.broker.chain_file, &pki.broker.key_file).await;
    let (_c, ch) = channel().await;
    fresh(&ch, "mq_t_tls_refused").await;
    // The certificate names 127.0.0.1 only.
    let yaml = tls_yaml("localhost", proxy.port, &pki.ca_file, "");
    let err = try_start("on_tls_refused", &yaml)
        .await
        .err()
        .expect("a host name mismatch fails the start")
        .to_string();
    println!("{err}");
    assert!(err.contains("hostname mismatch"), "{err}");
    assert!(err.contains("mq.rabbitmq.ssl.verify-hostname"), "{err}");
    // Spring's escape hatch: the same broker with the host check off starts.
    let yaml = tls_yaml(
        "localhost",
        proxy.port,
        &pki.ca_file,
        "      verify-hostname: false\n",
    );
    let running = try_start("on_tls_refused", &yaml)
        .await
        .expect("starts without the host check");
    assert!(running.wait_assigned(Duration::from_secs(20)).await);
    running.shutdown().await.unwrap();
}

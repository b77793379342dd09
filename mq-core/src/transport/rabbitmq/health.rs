//! The `rabbit` health component (Spring Boot's `RabbitHealthIndicator`): UP with the
//! broker's version and the address connected to when the app's connection is open or can
//! be opened, DOWN with the error otherwise. While the broker blocks a connection (a
//! resource alarm), `blocked` names it and gives the broker's reason; the component stays
//! UP, since consumers go on acknowledging (the `publisher` component is DOWN then).
//!
//! lapin does not hand out the server properties of the connection handshake, so the
//! version is read once from a handshake of our own (over TLS when the app's connection
//! uses it): the protocol header, the broker's `connection.start` (whose server
//! properties carry `version`), then the socket closed.

use std::io::{Read, Write};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use lapin::tcp::TcpStream;

use super::connection::Rabbit;
use crate::actuator::{Health, HealthFuture, HealthIndicator};

/// How long a health check waits for the broker.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Checks the app's RabbitMQ connection.
pub(crate) struct RabbitHealth {
    /// The consumers' connection.
    rabbit: Arc<Rabbit>,
    /// The publishing connection (only its block is shown).
    publishing: Arc<Rabbit>,
    version: OnceLock<String>,
}

impl RabbitHealth {
    pub(crate) fn new(rabbit: Arc<Rabbit>, publishing: Arc<Rabbit>) -> RabbitHealth {
        RabbitHealth {
            rabbit,
            publishing,
            version: OnceLock::new(),
        }
    }

    /// `{"publisher": reason, "consumers": reason}`, of the connections blocked now.
    fn blocked(&self) -> Option<serde_json::Value> {
        let mut blocked = serde_json::Map::new();
        for (name, rabbit) in [("consumers", &self.rabbit), ("publisher", &self.publishing)] {
            if let Some(reason) = rabbit.blocked() {
                blocked.insert(name.to_owned(), reason.into());
            }
        }
        (!blocked.is_empty()).then_some(serde_json::Value::Object(blocked))
    }

    async fn up(&self, address: String) -> Health {
        if self.version.get().is_none() {
            let (address, rabbit) = (address.clone(), self.rabbit.clone());
            let probe = tokio::task::spawn_blocking(move || {
                broker_version(&address, rabbit.tls().map(|t| &**t))
            });
            if let Ok(Ok(v)) = probe.await {
                let _ = self.version.set(v);
            }
        }
        let mut health = Health::up().with_detail("address", address);
        if let Some(v) = self.version.get() {
            health = health.with_detail("version", v);
        }
        match self.blocked() {
            Some(blocked) => health.with_detail("blocked", blocked),
            None => health,
        }
    }
}

impl HealthIndicator for RabbitHealth {
    fn health(&self) -> HealthFuture<'_> {
        Box::pin(async move {
            let address = self.rabbit.address();
            if self.rabbit.is_connected().await {
                return self.up(address).await;
            }
            match tokio::time::timeout(PROBE_TIMEOUT, self.rabbit.connection()).await {
                Ok(Ok(_)) => self.up(address).await,
                Ok(Err(e)) => Health::down()
                    .with_detail("address", address)
                    .with_detail("error", e),
                Err(_) => Health::down()
                    .with_detail("address", address)
                    .with_detail("error", "no answer within 2 s"),
            }
        })
    }
}

/// The `version` server property the broker at `address` announces in `connection.start`
/// (blocking, each step bounded by [`PROBE_TIMEOUT`]).
fn broker_version(address: &str, tls: Option<&super::tls::Tls>) -> Result<String, String> {
    let (host, port) = address
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        .ok_or("no host:port")?;
    let mut socket = match tls {
        Some(tls) => tls
            .open(host, port, PROBE_TIMEOUT)
            .map_err(|e| e.to_string())?,
        None => {
            let s = TcpStream::connect_timeout((host, port), PROBE_TIMEOUT)
                .map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(PROBE_TIMEOUT))
                .map_err(|e| e.to_string())?;
            s
        }
    };
    socket
        .write_all(b"AMQP\x00\x00\x09\x01")
        .map_err(|e| e.to_string())?;
    // Frame: type (1), channel (2), size (4), payload, end (0xCE).
    let mut header = [0u8; 7];
    socket.read_exact(&mut header).map_err(|e| e.to_string())?;
    let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]) as usize;
    if header[0] != 1 || size > 64 * 1024 {
        return Err("not a connection.start frame".to_owned());
    }
    let mut payload = vec![0u8; size];
    socket.read_exact(&mut payload).map_err(|e| e.to_string())?;
    // Payload: class 10, method 10, version major and minor, then the server properties.
    let table = payload.get(6..).ok_or("short connection.start")?;
    let (_, properties) =
        lapin::types::parsing::parse_field_table(table).map_err(|e| e.to_string())?;
    match properties.inner().get("version") {
        Some(lapin::types::AMQPValue::LongString(v)) => {
            Ok(String::from_utf8_lossy(v.as_bytes()).into_owned())
        }
        _ => Err("no version in the server properties".to_owned()),
    }
}

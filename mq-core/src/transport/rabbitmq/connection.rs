//! The one AMQP connection of an app, opened on first use (an app that never reads a
//! queue nor publishes to an exchange never connects) and opened again when it was lost.
//!
//! Recovery is mq's, not lapin's: lapin 4's automatic recovery
//! (`ConnectionProperties::enable_auto_recover`) stays off. It recovers whole connections
//! only (lapin 4 dropped channel recovery), so the channel losses a consumer has to survive
//! anyway (its queue deleted, `consumer_timeout`, a refused declaration) need mq's loop
//! ([`QueueConsumer`](super::consumer::QueueConsumer)) regardless; a consumer it recovers
//! goes on on a new channel with delivery tags from 1, which a lane (tags are its offsets,
//! acks never move back) cannot take without being closed and opened again, which is what
//! that loop does; and with it on (lapin 4.12.3), after the broker closed the connection
//! lapin reconnected, but the consumer's stream yielded no error to act on (nor a
//! `wait_for_recovery` to call) and the connection-loss test stalled for its 30 s
//! (`connections_lost_mid_stream_lose_nothing_the_broker_confirmed` in
//! tests/rabbitmq/operations.rs). So one path handles every loss: a lost connection is
//! opened again here on next use, by the consumers' loop (paced 250 ms doubling to 5 s),
//! the publisher and the queue-depth poller; lapin's own connect backoff stays at its
//! default (no retries).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;

use lapin::tcp::AMQPUriTcpExt;
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Connection, ConnectionProperties, Event};

use super::tls::Tls;
use crate::config::RabbitConfig;

/// The app's RabbitMQ connection.
pub(crate) struct Rabbit {
    config: RabbitConfig,
    /// What the broker's management UI and `rabbitmqctl list_connections` show.
    name: String,
    /// With `mq.rabbitmq.ssl.enabled`: the TLS connector.
    tls: Option<Arc<Tls>>,
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
    /// The `frame_max` the last connection negotiated (RabbitMQ's default before one).
    frame_max: Arc<AtomicU32>,
    /// Where the open connection goes (`host:port`), and whether the broker blocked it.
    state: Arc<Mutex<State>>,
}

/// What health shows of the connection.
#[derive(Default)]
struct State {
    /// The address of the open (or last) connection, of those configured.
    address: Option<String>,
    /// The broker's reason, while it blocks the connection (`connection.blocked`, e.g.
    /// "low on memory" under a memory alarm).
    blocked: Option<String>,
    /// Counts connections opened, so that a lost connection's late notices are ignored.
    generation: u64,
}

impl Rabbit {
    /// Not connected yet; `application` names the connection (with the process id). The
    /// error names the `mq.rabbitmq.ssl` key whose material OpenSSL refused.
    pub(crate) fn new(config: RabbitConfig, application: &str) -> Result<Rabbit, String> {
        let tls = match config.ssl.resolve() {
            Ok(Some(settings)) => Some(Arc::new(Tls::new(&settings)?)),
            Ok(None) => None,
            Err(problems) => return Err(problems.join("; ")),
        };
        Ok(Rabbit {
            config,
            name: format!("{application} (mq, pid {})", std::process::id()),
            tls,
            connection: tokio::sync::Mutex::new(None),
            frame_max: Arc::new(AtomicU32::new(super::frame::DEFAULT_FRAME_MAX)),
            state: Arc::default(),
        })
    }

    /// The TLS connector, when TLS is on.
    pub(crate) fn tls(&self) -> Option<&Arc<Tls>> {
        self.tls.as_ref()
    }

    /// With TLS on, connects once and fails when the broker's certificate (or the
    /// client's) was refused, naming the key to fix. A broker that does not answer is
    /// not decided here (it gets 5 s, as the Kafka check): health reports it, and the
    /// consumers wait for it.
    pub(crate) async fn check_tls(&self) -> Result<(), String> {
        if self.tls.is_none() {
            return Ok(());
        }
        match tokio::time::timeout(std::time::Duration::from_secs(5), self.connection()).await {
            Ok(Err(e)) if super::tls::explain(&e).is_some() => Err(e),
            _ => Ok(()),
        }
    }

    /// The `frame_max` negotiated with the broker, shared: what mq writes is cut to it.
    pub(crate) fn frame_max(&self) -> Arc<AtomicU32> {
        self.frame_max.clone()
    }

    /// `mq.rabbitmq.publisher.confirm-timeout`.
    pub(crate) fn confirm_timeout(&self) -> std::time::Duration {
        self.config.publisher.confirm_timeout
    }

    /// The broker, for logs and health (no credentials): the address of the open (or
    /// last) connection, else the first configured.
    pub(crate) fn address(&self) -> String {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .address
            .clone()
            .unwrap_or_else(|| self.config.display_address())
    }

    /// The broker's reason while it blocks this connection (RabbitMQ blocks publishing
    /// connections under a resource alarm; publishes wait until it lifts).
    pub(crate) fn blocked(&self) -> Option<String> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.blocked.clone()
    }

    /// Whether a connection is open right now.
    pub(crate) async fn is_connected(&self) -> bool {
        self.connection
            .lock()
            .await
            .as_ref()
            .is_some_and(|c| c.status().connected())
    }

    /// Closes the connection, if one is open (the app shuts down; its consumers have
    /// closed their channels already).
    pub(crate) async fn close(&self) {
        let connection = self.connection.lock().await.take();
        if let Some(c) = connection.filter(|c| c.status().connected()) {
            let _ = c.close(200, "shutdown".into()).await;
        }
    }

    /// The open connection, connecting (trying each address in order) when there is none
    /// or it was lost. The error names the broker, never the password.
    pub(crate) async fn connection(&self) -> Result<Arc<Connection>, String> {
        let mut current = self.connection.lock().await;
        if let Some(c) = current.as_ref().filter(|c| c.status().connected()) {
            return Ok(c.clone());
        }
        let mut last = String::new();
        let addresses = self.config.addresses_or_host();
        for (uri, address) in self.config.uris().into_iter().zip(addresses) {
            let properties =
                ConnectionProperties::default().with_connection_name(self.name.clone().into());
            let connected = match &self.tls {
                None => Connection::connect(&uri, properties).await,
                Some(tls) => match uri.parse::<AMQPUri>() {
                    Ok(parsed) => connect_tls(parsed, tls.clone(), properties).await,
                    Err(_) => {
                        // The URI holds the password: do not quote it.
                        last = "not a valid host:port in mq.rabbitmq.host/addresses".to_owned();
                        continue;
                    }
                },
            };
            match connected {
                Ok(c) => {
                    self.frame_max
                        .store(c.configuration().frame_max(), Ordering::Relaxed);
                    self.watch(&c, address);
                    let c = Arc::new(c);
                    *current = Some(c.clone());
                    return Ok(c);
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(format!(
            "cannot connect to RabbitMQ at {} as {}: {last}",
            self.address(),
            self.config.username
        ))
    }
}

impl Rabbit {
    /// Records that a new connection to `address` is open, and follows the broker's
    /// `connection.blocked` / `unblocked` notices on it until it is gone.
    fn watch(&self, connection: &Connection, address: String) {
        let generation = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.generation += 1;
            state.address = Some(address);
            state.blocked = None;
            state.generation
        };
        let mut events = connection.events_listener();
        let (state, name) = (self.state.clone(), self.name.clone());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // Ends with the connection (its notices' senders are dropped with it).
        runtime.spawn(async move {
            while let Some(event) = events.next().await {
                let blocked = match event {
                    Event::ConnectionBlocked(reason) => Some(reason),
                    Event::ConnectionUnblocked => None,
                    _ => continue,
                };
                let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
                if state.generation != generation {
                    return;
                }
                match &blocked {
                    Some(reason) => tracing::warn!(
                        connection = %name,
                        reason = %reason,
                        "RabbitMQ blocked the connection: what is published on it waits \
                         until the broker unblocks it (at most \
                         mq.rabbitmq.publisher.confirm-timeout per publish)"
                    ),
                    None => tracing::info!(connection = %name, "RabbitMQ unblocked the connection"),
                }
                state.blocked = blocked;
            }
        });
    }
}

/// A connection over TLS: lapin's runtime opens the TCP stream, [`Tls::connect`] does the
/// handshake with mq's connector, lapin speaks AMQP over it.
async fn connect_tls(
    uri: AMQPUri,
    tls: Arc<Tls>,
    properties: ConnectionProperties,
) -> lapin::Result<Connection> {
    let runtime = lapin::runtime::default_runtime()?;
    let connect = async move |uri: AMQPUri, runtime| {
        let plain = AMQPUri {
            scheme: AMQPScheme::AMQP,
            ..uri.clone()
        };
        let tcp = plain.connect_async(&runtime);
        Ok(tls.connect(&uri, tcp).await?)
    };
    Connection::connector(uri, runtime, connect, properties).await
}

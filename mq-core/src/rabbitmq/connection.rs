//! The one AMQP connection of an app, opened on first use (an app that never reads a
//! queue nor publishes to an exchange never connects) and opened again when it was lost.

use std::sync::Arc;

use lapin::{Connection, ConnectionProperties};

use crate::config::RabbitConfig;

/// The app's RabbitMQ connection.
pub(crate) struct Rabbit {
    config: RabbitConfig,
    /// What the broker's management UI and `rabbitmqctl list_connections` show.
    name: String,
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

impl Rabbit {
    /// Not connected yet; `application` names the connection (with the process id).
    pub(crate) fn new(config: RabbitConfig, application: &str) -> Rabbit {
        Rabbit {
            config,
            name: format!("{application} (mq, pid {})", std::process::id()),
            connection: tokio::sync::Mutex::new(None),
        }
    }

    /// The broker, for logs (no credentials).
    pub(crate) fn address(&self) -> String {
        self.config.display_address()
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
            let _ = c.close(200, "shutdown").await;
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
        for uri in self.config.uris() {
            let properties =
                ConnectionProperties::default().with_connection_name(self.name.clone().into());
            match Connection::connect(&uri, properties).await {
                Ok(c) => {
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

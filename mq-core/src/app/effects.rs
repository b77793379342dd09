//! The app's side of exactly-once effects: before the listeners start, the database pool,
//! mq's migrations and the inbox store (PostgreSQL or memory) for idempotent listeners;
//! once the publisher exists, the outbox relay, its lag watcher and the `outbox` health
//! component.

use tokio_util::sync::CancellationToken;

use super::{App, RunningApp};
use crate::error::Error;

/// What [`prepare`] set up, to be started with the running app.
pub(super) struct Effects {
    /// Cancelled when the app shuts down (the background tasks end with it).
    stop: CancellationToken,
    /// The pool, the relay's counters, and whether this instance runs the relay.
    #[cfg(feature = "postgres")]
    outbox: Option<(
        sqlx::PgPool,
        std::sync::Arc<crate::outbox::lag::RelayStats>,
        bool,
    )>,
}

/// Connects the datasource (lazily), applies the migrations, installs the inbox store and
/// registers the `outbox` health component and metrics.
pub(super) async fn prepare(app: &mut App) -> Result<Effects, Error> {
    let stop = CancellationToken::new();
    #[cfg(feature = "postgres")]
    {
        if app.datasource.is_none() {
            app.datasource = crate::datasource::pool(&app.config)?;
        }
        let pool = app.datasource.clone();
        if let Some(pool) = &pool {
            crate::outbox::prepare(&app.config, pool).await?;
        }
        let specs = app.listeners().unwrap_or_default();
        let idempotent = specs.iter().any(|s| s.idempotent);
        let store = crate::inbox::install(
            &app.config,
            pool.as_ref(),
            &mut app.state,
            &app.metrics,
            stop.clone(),
        );
        if idempotent {
            tracing::info!(
                store = crate::inbox::describe(&store),
                "idempotent listeners record handled events"
            );
            if pool.is_none() {
                // Once per process: a process that runs several apps (tests, the demo)
                // says it once.
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    tracing::warn!("no mq.datasource.url: idempotent listeners deduplicate in memory only (forgotten on restart, not atomic with the handler's writes)");
                });
            }
            for warning in crate::inbox::capacity_warnings(&store, &specs) {
                tracing::warn!("{warning}");
            }
        }
        // The backlog is the table's, whether or not this instance runs the relay.
        let outbox = pool.map(|pool| {
            let stats = std::sync::Arc::default();
            let health = crate::outbox::OutboxHealth::new(
                pool.clone(),
                &app.config.mq.outbox,
                std::sync::Arc::clone(&stats),
            );
            if !app.health_indicators.iter().any(|(n, _)| n == "outbox") {
                app.health_indicators
                    .push(("outbox".to_owned(), std::sync::Arc::new(health)));
            }
            (pool, stats, app.config.mq.outbox.enabled)
        });
        Ok(Effects { stop, outbox })
    }
    #[cfg(not(feature = "postgres"))]
    {
        crate::inbox::install(&app.config, &mut app.state, &app.metrics, stop.clone());
        Ok(Effects { stop })
    }
}

impl Effects {
    /// Starts the relay and the lag watcher on the running app's publisher; everything
    /// stops with the app.
    pub(super) fn start(self, running: &mut RunningApp) {
        let stop = self.stop;
        let app_shutdown = running.started.shutdown.clone();
        let linked = stop.clone();
        running.started.tasks.push(tokio::spawn(async move {
            app_shutdown.cancelled().await;
            linked.cancel();
        }));
        #[cfg(feature = "postgres")]
        if let Some((pool, stats, relay)) = self.outbox {
            let settings = &running.started.config.mq.outbox;
            running.started.tasks.push(crate::outbox::lag::watch(
                pool.clone(),
                settings,
                stats.clone(),
                &running.started.metrics,
                stop.clone(),
            ));
            if relay {
                let relay =
                    crate::outbox::Relay::with_stats(pool, running.publisher(), settings, stats);
                running.started.tasks.push(tokio::spawn(relay.run(stop)));
                tracing::info!(table = %settings.table, slots = settings.slots, "outbox relay started");
            }
        }
    }
}

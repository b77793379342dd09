//! Footprint: a fresh process per measurement, started by the benchmark itself
//! (`mq-bench --footprint-child ...`), reports when it reached `main`, when `App::start`
//! returned, when every listener was assigned, and its RSS once idle.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::common::{proc_status, unix_us, BenchResult, Sink};
use crate::{baseline, mq_app};

const MARKER: &str = "MQ_BENCH_FOOTPRINT ";

/// What a child reports (wall-clock µs, comparable with the parent's).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChildReport {
    pub main_us: u64,
    pub started_us: u64,
    pub assigned_us: u64,
    pub rss_kb: u64,
    pub hwm_kb: u64,
    pub threads: u64,
}

/// One footprint measurement, as the parent sees it.
#[derive(Debug, Clone)]
pub struct Footprint {
    /// spawn → `main` (exec, dynamic loading).
    pub to_main_ms: f64,
    /// spawn → `App::start` returned (ready but for the group join).
    pub to_started_ms: f64,
    /// `App::start` returned → every listener assigned (the broker's group join).
    pub join_ms: f64,
    /// spawn → every listener assigned.
    pub to_assigned_ms: f64,
    pub rss_kb: u64,
    pub hwm_kb: u64,
    pub threads: u64,
}

/// How long the child idles after its assignment before RSS is read.
const IDLE: Duration = Duration::from_secs(2);

/// The child's body: `kind` is `mq` (an `App` with one listener, mq's defaults) or
/// `rdkafka` (a bare StreamConsumer, for comparison).
pub fn child(kind: &str, bootstrap: &str, topic: &str) -> BenchResult<()> {
    let main_us = unix_us();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let report = rt.block_on(async {
        let group = crate::common::unique("mq-bench-idle");
        let sink = Sink::new(1, 1, false);
        match kind {
            "mq" => {
                let config = mq_app::config(bootstrap, topic, &group)?;
                let app = mq_core::App::new(config)
                    .with_state(sink)
                    .only_listeners([mq_app::LISTENER])
                    .start()
                    .await
                    .map_err(|e| format!("mq start: {e}"))?;
                let started_us = unix_us();
                let assigned_us = poll_assigned_us(|| app.all_assigned()).await?;
                tokio::time::sleep(IDLE).await;
                let report = measure(main_us, started_us, assigned_us);
                app.shutdown().await.map_err(|e| e.to_string())?;
                Ok(report)
            }
            "rdkafka" => {
                let running = baseline::start(bootstrap, &group, topic, sink)?;
                let started_us = unix_us();
                running.wait_assigned(Duration::from_secs(30)).await?;
                let assigned_us = unix_us();
                tokio::time::sleep(IDLE).await;
                let report = measure(main_us, started_us, assigned_us);
                running.task.abort();
                Ok(report)
            }
            other => Err(format!("unknown footprint kind {other:?}")),
        }
    })?;
    println!(
        "{MARKER}{}",
        serde_json::to_string(&report).map_err(|e| e.to_string())?
    );
    Ok(())
}

/// Polls every millisecond (`RunningApp::wait_assigned` polls every 20 ms, too coarse to
/// time with) until `assigned`; the time it saw it.
async fn poll_assigned_us(assigned: impl Fn() -> bool) -> BenchResult<u64> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !assigned() {
        if std::time::Instant::now() > deadline {
            return Err("not assigned within 30 s".to_owned());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(unix_us())
}

fn measure(main_us: u64, started_us: u64, assigned_us: u64) -> ChildReport {
    ChildReport {
        main_us,
        started_us,
        assigned_us,
        rss_kb: proc_status("VmRSS").unwrap_or(0),
        hwm_kb: proc_status("VmHWM").unwrap_or(0),
        threads: proc_status("Threads").unwrap_or(0),
    }
}

/// Runs one child of `kind` and reads its report.
pub async fn measure_child(kind: &str, bootstrap: &str, topic: &str) -> BenchResult<Footprint> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let (kind, bootstrap, topic) = (kind.to_owned(), bootstrap.to_owned(), topic.to_owned());
    let (spawn_us, out) = tokio::task::spawn_blocking(move || {
        let spawn_us = unix_us();
        let out = std::process::Command::new(exe)
            .args(["--footprint-child", &kind, &bootstrap, &topic])
            .env_remove("RUST_LOG")
            .output();
        (spawn_us, out)
    })
    .await
    .map_err(|e| e.to_string())?;
    let out = out.map_err(|e| format!("footprint child: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "footprint child failed ({}): {}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(MARKER))
        .ok_or_else(|| format!("footprint child printed no report: {stdout}"))?;
    let r: ChildReport = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let ms = |a: u64, b: u64| b.saturating_sub(a) as f64 / 1000.0;
    Ok(Footprint {
        to_main_ms: ms(spawn_us, r.main_us),
        to_started_ms: ms(spawn_us, r.started_us),
        join_ms: ms(r.started_us, r.assigned_us),
        to_assigned_ms: ms(spawn_us, r.assigned_us),
        rss_kb: r.rss_kb,
        hwm_kb: r.hwm_kb,
        threads: r.threads,
    })
}

//! The example binaries as child processes: built once into this test's target directory,
//! started with a configuration directory of their own, killed with SIGKILL on demand.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::support::bootstrap;
use super::support::examples::example_bins;
pub use super::support::examples::{config_dir, free_port};
use super::support::process;

/// A running example binary; killed when dropped, its log's tail printed when the test
/// is failing.
pub struct Service {
    name: &'static str,
    dir: PathBuf,
    child: Child,
    starts: usize,
}

impl Service {
    /// Starts `name` with the configuration in `dir` (profile `test`).
    pub fn start(name: &'static str, dir: &Path) -> Service {
        let mut s = Service {
            name,
            dir: dir.to_path_buf(),
            child: spawn(name, dir, 0),
            starts: 1,
        };
        s.check_alive();
        s
    }

    /// SIGKILL, then a new process with the same configuration.
    pub fn kill_and_restart(&mut self) {
        process::kill(&mut self.child);
        self.child = spawn(self.name, &self.dir, self.starts);
        self.starts += 1;
    }

    /// Panics when the process has exited.
    pub fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status})", self.name);
        }
    }

    /// SIGTERM and wait (at most [`process::EXIT_AFTER_SIGTERM`], else the test fails):
    /// true when it exited with success.
    pub fn terminate(&mut self) -> bool {
        process::terminate(&mut self.child, self.name).success()
    }
}

fn log_path(dir: &Path, name: &str, start: usize) -> PathBuf {
    dir.join(format!("{name}-{start}.log"))
}

fn spawn(name: &str, dir: &Path, start: usize) -> Child {
    let file = std::fs::File::create(log_path(dir, name, start)).expect("log file");
    let mut cmd = Command::new(example_bins().join(name));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("MQ_") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(dir)
        .env("MQ_CONFIG_DIR", dir)
        .env("MQ_PROFILES_ACTIVE", "test")
        .env("MQ_KAFKA__BOOTSTRAP_SERVERS", bootstrap())
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log file"))
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"))
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(log_path(&self.dir, self.name, self.starts - 1))
                .unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!(
                "---- last lines of {} ----\n{}",
                self.name,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

/// `POST path` with a JSON body; `Err` when the service cannot be reached or the
/// connection breaks (a killed process), else the status and body.
pub async fn post(addr: SocketAddr, path: &str, body: &str) -> Result<(u16, String), String> {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;

    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::post(path)
        .header(hyper::header::HOST, addr.to_string())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

//! A `nisshi` broker process of the test's own, on a free port: TLS-only with client
//! authentication (SCRAM) when given a certificate. Killed when dropped.
//!
//! nisshi keeps SCRAM credentials in its storage, and only the sqlite engine stores them;
//! `nisshi user create` speaks plaintext and unauthenticated. So users are created on a
//! plaintext broker first, which is then restarted with `--cert/--key/--authentication`
//! on the same database.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nisshi; killed on drop.
pub struct Nisshi {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Drop for Nisshi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The nisshi binary: on PATH, or where `cargo install` puts it.
fn nisshi() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let installed = home.join(".cargo/bin/nisshi");
    if installed.exists() {
        installed
    } else {
        PathBuf::from("nisshi")
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl Nisshi {
    fn start(dir: &Path, port: u16, tls: Option<(&Path, &Path)>, log_name: &str) -> Nisshi {
        let url = format!("tcp://127.0.0.1:{port}");
        let storage = format!("sqlite:///{}/nisshi.db", dir.display());
        let log = dir.join(log_name);
        let out = std::fs::File::create(&log).expect("broker log");
        let mut cmd = Command::new(nisshi());
        cmd.args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", &storage])
        .args(["--group-initial-rebalance-delay", "0s"])
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
        if let Some((cert, key)) = tls {
            cmd.arg("--cert")
                .arg(cert)
                .arg("--key")
                .arg(key)
                .arg("--authentication");
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start nisshi ({}): {e}", nisshi().display()));
        let mut broker = Nisshi { child, port, log };
        broker.wait_listening();
        broker
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nisshi exited ({status}): {}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "nisshi did not listen on {}: {}",
            self.port,
            self.log_text()
        );
    }

    /// Restarts on the same port and storage with another certificate.
    pub fn restart_with(&mut self, dir: &Path, chain: &Path, key: &Path) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let next = Nisshi::start(dir, self.port, Some((chain, key)), "broker-restarted.log");
        *self = next;
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// A SCRAM user: name, password, `nisshi user` mechanism (`scram256` or `scram512`).
pub struct User<'a> {
    pub name: &'a str,
    pub password: &'a str,
    pub mechanism: &'a str,
}

/// A TLS-only broker with authentication, serving `chain`/`key`, knowing `users`.
pub fn secured(dir: &Path, chain: &Path, key: &Path, users: &[User<'_>]) -> Nisshi {
    let port = free_port();
    {
        let plain = Nisshi::start(dir, port, None, "setup.log");
        for u in users {
            let (status, stdout, stderr) = crate::support::process::run(
                Command::new(nisshi())
                    .args([
                        "user",
                        "create",
                        "--broker",
                        &format!("tcp://127.0.0.1:{port}"),
                    ])
                    .args(["--mechanism", u.mechanism, u.name, u.password]),
                Duration::from_secs(60),
                "nisshi user create",
            );
            assert!(
                status.success(),
                "nisshi user create {}: {stdout}{stderr} (broker: {})",
                u.name,
                plain.log_text()
            );
        }
    }
    Nisshi::start(dir, port, Some((chain, key)), "broker.log")
}

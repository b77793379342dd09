//! The example services as separate processes: their binaries, built once per test
//! process into the test's own target directory and profile, and their configuration.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

/// Where this test's binaries live: `<target>/<profile>` (from `<target>/<profile>/deps/examples_flow-…`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary in <target>/<profile>/deps")
        .to_path_buf()
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

/// Builds the example binaries (once per test process) into this test's target directory
/// and profile, and returns the directory they are in. `MQ_EXAMPLES_BIN_DIR` skips the
/// build and uses binaries from there.
pub fn example_bins() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("MQ_EXAMPLES_BIN_DIR") {
            return PathBuf::from(dir);
        }
        let profile_dir = profile_dir();
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("profile dir name")
            .to_owned();
        // `<target>/<profile>`, or `<target>/<triple>/<profile>` when built with --target.
        let parent = profile_dir.parent().expect("target dir").to_path_buf();
        let (target_dir, triple) = if parent.join("CACHEDIR.TAG").exists() {
            (parent, None)
        } else {
            let triple = parent
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_owned);
            (parent.parent().expect("target dir").to_path_buf(), triple)
        };
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace_root())
            .args([
                "build",
                "--quiet",
                "-p",
                "order-service",
                "-p",
                "product-service",
                "-p",
                "demo",
            ])
            .arg("--target-dir")
            .arg(&target_dir);
        match profile.as_str() {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        if let Some(triple) = triple {
            cmd.args(["--target", &triple]);
        }
        let started = Instant::now();
        let out = cmd.output().expect("run cargo build");
        assert!(
            out.status.success(),
            "cargo build of the examples failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "examples built (or up to date) in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        profile_dir
    })
}

/// A free loopback port (released again: a small race, fine for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A configuration directory for `service`: its own `application.yaml` plus
/// `application-test.yaml` with `profile`.
pub fn config_dir(root: &Path, service: &str, profile: &str) -> PathBuf {
    let dir = root.join(service);
    std::fs::create_dir_all(&dir).expect("config dir");
    std::fs::copy(
        workspace_root()
            .join("examples")
            .join(service)
            .join("application.yaml"),
        dir.join("application.yaml"),
    )
    .expect("copy application.yaml");
    std::fs::write(dir.join("application-test.yaml"), profile).expect("write profile");
    dir
}

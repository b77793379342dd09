//! Child processes of crash tests: every wait on one is bounded, so a child that does not
//! exit fails its test by name instead of holding the whole suite until CI's time runs out.

use std::io::{Read, Seek};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a child mq app may take to exit after SIGTERM: its graceful shutdown
/// (`mq.shutdown.timeout`, 30 s by default) and the closing of its clients, with room for
/// a machine shared with other builds.
pub const EXIT_AFTER_SIGTERM: Duration = Duration::from_secs(90);

/// A child process killed (and reaped) when dropped: a crash test never leaves one behind.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits up to `within` for `child` to exit and returns its status. A child still running
/// then is killed, and the test fails naming `what`.
pub fn exit_within(child: &mut Child, within: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} (pid {}) did not exit within {within:?}", child.id());
            }
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    }
}

/// SIGTERM (a graceful stop, as Kubernetes sends it), then [`exit_within`]
/// [`EXIT_AFTER_SIGTERM`].
pub fn terminate(child: &mut Child, what: &str) -> ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {what}: {status}");
    exit_within(child, EXIT_AFTER_SIGTERM, what)
}

/// SIGKILL and reap: a SIGKILLed process always exits, and the kernel reaps it at once.
pub fn kill(child: &mut Child) {
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
}

/// Runs `cmd` to its end (blocking the thread) and returns its status, stdout and stderr.
/// One still running after `within` is killed and fails the test, naming `what`.
pub fn run(cmd: &mut Command, within: Duration, what: &str) -> (ExitStatus, String, String) {
    // Files, not pipes: nothing the command leaves running can hold its output open.
    let mut out = tempfile::tempfile().expect("temp file");
    let mut err = tempfile::tempfile().expect("temp file");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("temp file"))
        .stderr(err.try_clone().expect("temp file"))
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let status = exit_within(&mut child, within, what);
    let text = |f: &mut std::fs::File| {
        let mut bytes = Vec::new();
        f.rewind()
            .and_then(|()| f.read_to_end(&mut bytes))
            .expect("read the output");
        String::from_utf8_lossy(&bytes).into_owned()
    };
    (status, text(&mut out), text(&mut err))
}

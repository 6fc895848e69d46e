//! The binary's roles as child processes: free loopback ports, a process that is killed when
//! dropped and logs to a file, and waits for readiness, a port or a log line.
//!
//! Multi-process tests (crash loops, broker restarts, poison records, the guarantee test) need
//! the same few pieces; they live here once so a fix to, say, how a child is reaped reaches
//! every test.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_erp-toolkit");

/// The log filter children run with: ours at info, the embedded broker's chatter at warn.
pub const CHILD_LOG: &str = "info,tansu_broker=warn,tansu_storage=warn,tansu_sans_io=warn";

/// A port free on loopback right now (the OS picks it; a child binds it soon after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `127.0.0.1:<a free port>`.
pub fn free_address() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// A child process of the binary, writing stdout and stderr to one log file, killed (SIGKILL)
/// and reaped when dropped.
pub struct Role {
    child: Option<Child>,
    /// Names the process in assertion messages.
    pub name: String,
    /// Where its output goes.
    pub log: PathBuf,
}

impl Role {
    /// Starts `BIN args…` with `env` on top of the default log filter, logging to `log`.
    pub fn spawn(name: &str, args: &[&str], log: &Path, env: &[(&str, &str)]) -> Self {
        let out = std::fs::File::create(log).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env("RUST_LOG", CHILD_LOG)
            .env("NO_COLOR", "1")
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        for (key, value) in env {
            command.env(key, value);
        }
        Self {
            child: Some(command.spawn().expect("spawns")),
            name: name.to_owned(),
            log: log.to_path_buf(),
        }
    }

    /// What the process has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status if the process has ended.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.try_wait().is_none()
    }

    /// SIGKILL and reap: what a crashing pod or an OOM kill does.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits up to 40 s for the drain to end; the exit status.
    pub async fn terminate(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(40),
                "{} did not stop on SIGTERM within 40 s",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the log contains `needle`.
    pub async fn wait_log(&self, needle: &str, within: Duration) {
        let started = Instant::now();
        while !self.log_text().contains(needle) {
            assert!(
                started.elapsed() < within,
                "{} did not log {needle:?} within {within:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `url` answers 2xx; the log is in the message if it never does.
    pub async fn wait_ready(&self, url: &str, within: Duration) {
        let client = reqwest::Client::new();
        let started = Instant::now();
        while !client
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(
                started.elapsed() < within,
                "{} not ready at {url} within {within:?}: {}",
                self.name,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until something accepts TCP connections on `address`.
pub async fn wait_tcp(address: &str, within: Duration) {
    let started = Instant::now();
    while tokio::net::TcpStream::connect(address).await.is_err() {
        assert!(started.elapsed() < within, "{address} not listening");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

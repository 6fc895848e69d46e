//! The embedded Kafka-protocol broker (Tansu 0.6, SQLite storage) for `standalone` and `broker`.
//!
//! Tansu resolves a `sqlite:` storage path against the process's working directory, so the data
//! directory is handed to it as a relative path from there.

use std::net::{SocketAddr, TcpListener};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tansu_broker::NODE_ID;
use tansu_broker::broker::Broker;
use tansu_broker::coordinator::group::administrator::Controller;
use tansu_storage::StorageContainer;
use tokio::sync::oneshot;
use tracing::{error, info};

/// A running embedded broker.
///
/// The broker runs on a Tokio runtime of its own, on its own thread: stopping it shuts that
/// runtime down, which ends every task the broker spawned and closes its SQLite file, so the
/// same data directory can be opened again in the same process.
pub struct EmbeddedBroker {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EmbeddedBroker {
    /// Starts a broker storing its log in `<data_dir>/kafka.db`, listening on `listen` (port 0
    /// picks a free port), and waits until it accepts connections.
    pub async fn start(data_dir: &Path, listen: SocketAddr) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        // Binding first tells "port in use" apart from a broker that is slow to start (and keeps
        // us from talking to someone else's broker on that port).
        let address = free_port(listen)
            .with_context(|| format!("cannot listen on {listen}: is another broker running?"))?;
        let storage = storage_url(&data_dir.join("kafka.db"))?;
        let listener = url::Url::parse(&format!("tcp://{address}"))?;

        exit_on_broker_panic();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (failed_tx, mut failed_rx) = oneshot::channel::<String>();
        let thread = std::thread::Builder::new()
            .name("embedded-broker".into())
            .spawn(move || serve_on_own_runtime(storage, listener, stop_rx, failed_tx))
            .context("cannot start the broker thread")?;
        let mut broker = Self {
            address,
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        let started = Instant::now();
        loop {
            if let Ok(reason) = failed_rx.try_recv() {
                broker.stop().await;
                bail!("embedded broker failed to start: {reason}");
            }
            if tokio::net::TcpStream::connect(address).await.is_ok() {
                break;
            }
            if started.elapsed() > Duration::from_secs(15) {
                broker.stop().await;
                bail!("embedded broker did not listen on {address} within 15 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        info!(%address, data = %data_dir.display(), "embedded broker ready");
        Ok(broker)
    }

    /// Where clients connect.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops the broker and waits until its storage is closed. Its SQLite file is consistent
    /// after every request, so nothing acknowledged is lost.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Forgets every consumer group's members, leader and assignment in the broker's SQLite file
/// at `<data_dir>/kafka.db` (committed offsets are kept), before the broker opens it.
///
/// Only for `standalone`, whose broker and clients always start together: its groups' stored
/// members are all dead then. Tansu keeps a dead leader of a group and later accepts an empty
/// assignment from the restarted member, which then never gets a partition (defect B in
/// docs/embedded-broker.md); with the group documents gone the first join forms the group
/// afresh. Returns how many groups were reset.
pub async fn forget_group_members(data_dir: &Path) -> anyhow::Result<u64> {
    let file = data_dir.join("kafka.db");
    if !file.exists() {
        return Ok(0);
    }
    let db = libsql::Builder::new_local(&file)
        .build()
        .await
        .with_context(|| format!("cannot open {}", file.display()))?;
    let connection = db.connect()?;
    let exists = connection
        .query(
            "select 1 from sqlite_master where type = 'table' and name = 'consumer_group_detail'",
            (),
        )
        .await?
        .next()
        .await?
        .is_some();
    if !exists {
        return Ok(0);
    }
    let reset = connection
        .execute("delete from consumer_group_detail", ())
        .await
        .with_context(|| format!("cannot reset the consumer groups in {}", file.display()))?;
    Ok(reset)
}

/// The exit code of a process whose embedded broker panicked.
pub const BROKER_PANIC_EXIT: i32 = 70;

/// Makes a panic on the broker's threads end the process. Tansu's storage task runs there and
/// is never awaited: after it panics (docs/embedded-broker.md, defect A) the broker keeps
/// accepting connections and fails every request, a zombie nobody restarts. Exiting non-zero
/// lets the supervisor (Kubernetes, systemd) restart broker and clients together, which is what
/// recovers.
fn exit_on_broker_panic() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            let on_broker = std::thread::current()
                .name()
                .is_some_and(|name| name.starts_with("embedded-broker"));
            if on_broker {
                error!(%info, "the embedded broker panicked; exiting");
                eprintln!("the embedded broker panicked; exiting with code {BROKER_PANIC_EXIT}");
                std::process::exit(BROKER_PANIC_EXIT);
            }
        }));
    });
}

fn serve_on_own_runtime(
    storage: url::Url,
    listener: url::Url,
    stop: oneshot::Receiver<()>,
    failed: oneshot::Sender<String>,
) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("embedded-broker")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = failed.send(e.to_string());
            return;
        }
    };
    runtime.block_on(async move {
        let built = Broker::<Controller<StorageContainer>, StorageContainer>::builder()
            .node_id(NODE_ID)
            .cluster_id("erp-toolkit")
            .incarnation_id(uuid::Uuid::now_v7())
            .advertised_listener(listener.clone())
            .storage(storage)
            .listener(listener)
            .silent(true)
            .build()
            .await;
        let mut broker = match built {
            Ok(broker) => broker,
            Err(e) => {
                let _ = failed.send(e.to_string());
                return;
            }
        };
        tokio::select! {
            served = broker.serve(tokio::time::Instant::now()) => {
                if let Err(e) = served {
                    error!(error = %e, "embedded broker stopped");
                    let _ = failed.send(e.to_string());
                }
            }
            _ = stop => {}
        }
    });
    // Ends every task the broker spawned (connections, storage workers) before returning.
    runtime.shutdown_timeout(Duration::from_secs(5));
}

/// `listen` if it is free (with port 0: some free port).
fn free_port(listen: SocketAddr) -> std::io::Result<SocketAddr> {
    TcpListener::bind(listen)?.local_addr()
}

/// A `sqlite:` URL with an opaque relative path from the working directory to `file`. (An
/// opaque path is not normalised by URL parsing, so its `..` segments survive.)
fn storage_url(file: &Path) -> anyhow::Result<url::Url> {
    let cwd = std::env::current_dir()?;
    let absolute = absolute(file, &cwd);
    let depth = cwd
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count();
    let mut relative = "../".repeat(depth);
    let below_root: PathBuf = absolute
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    let below_root = below_root
        .to_str()
        .context("data directory path is not valid UTF-8")?;
    relative.push_str(below_root);
    let url = url::Url::parse(&format!("sqlite:{relative}"))?;
    if url.path() != relative {
        bail!(
            "data directory {} contains characters the embedded broker cannot address; \
             choose a path of letters, digits, '-', '_', '.' and '/'",
            file.display()
        );
    }
    Ok(url)
}

/// `path` made absolute against `cwd`, with `.` and `..` resolved lexically.
fn absolute(path: &Path, cwd: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    };
    let mut out = PathBuf::new();
    for component in joined.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_url_climbs_from_the_working_directory() {
        let cwd = std::env::current_dir().expect("cwd");
        let url = storage_url(Path::new("/tmp/erp/kafka.db")).expect("url");
        assert_eq!(
            absolute(&cwd.join(url.path()), &cwd),
            PathBuf::from("/tmp/erp/kafka.db")
        );
        // Paths the URL would alter are refused rather than silently moved.
        for path in [
            "/tmp/with space/kafka.db",
            "/tmp/per%cent/kafka.db",
            "/tmp/q?uery/kafka.db",
        ] {
            if let Ok(url) = storage_url(Path::new(path)) {
                assert_eq!(
                    absolute(&cwd.join(url.path()), &cwd),
                    PathBuf::from(path),
                    "{path}"
                );
            }
        }
    }
}

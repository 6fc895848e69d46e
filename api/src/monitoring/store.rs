//! The monitoring store: every span of `erp.monitoring`, queryable, with five-minute rollups and
//! the indexer's Kafka positions in the same database, written in one transaction per batch so a
//! span is indexed exactly once across crashes (the positions say where to resume, and the span
//! rows are keyed by their record's coordinates, so a batch applied twice changes nothing).
//!
//! A span written again (a stage redoing a batch after a crash repeats its derived span id) is
//! stored and counted once: span ids are unique per organisation.
//!
//! SQLite through `libsql` (the embedded broker's own SQLite library, so one copy of SQLite is
//! linked). Its local connection does its work synchronously inside its futures, so every call
//! runs on a blocking thread ([`Store::run`]), never on an async one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use libsql::{Connection, Value as SqlValue};

use erp_schemas::monitoring::MonitoringSpan;
use erp_schemas::timestamp::{millis_of, parse_rfc3339};

/// The width of a rollup bucket: the smallest time-series interval epilot offers (5 minutes).
pub const BUCKET_MS: i64 = 5 * 60 * 1000;

/// Errors of the monitoring store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("monitoring store {0}: {1}")]
    Sql(&'static str, String),
    #[error("monitoring store task failed: {0}")]
    Task(String),
    #[error("unsupported monitoring store {0:?}: use sqlite://<path>")]
    Unsupported(String),
}

impl From<StoreError> for erp_http::ApiError {
    fn from(error: StoreError) -> Self {
        erp_http::ApiError::internal("MONITORING_STORE_FAILED", error.to_string())
    }
}

fn sql(what: &'static str) -> impl Fn(libsql::Error) -> StoreError {
    move |e| StoreError::Sql(what, e.to_string())
}

/// Where the store lives: `sqlite://<path>` (a file, created when missing).
pub fn sqlite_path(url: &str) -> Result<PathBuf, StoreError> {
    url.strip_prefix("sqlite://")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| StoreError::Unsupported(url.to_owned()))
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS spans (
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL,
    org_id TEXT NOT NULL,
    integration_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    use_case_id TEXT NOT NULL,
    use_case_type TEXT NOT NULL,
    level TEXT NOT NULL,
    code TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    span TEXT NOT NULL,
    PRIMARY KEY (partition, offset, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS spans_by_id ON spans (org_id, id);
CREATE INDEX IF NOT EXISTS spans_by_time ON spans (org_id, integration_id, created_ms, id);
CREATE INDEX IF NOT EXISTS spans_by_event ON spans (org_id, integration_id, event_id, created_ms);
CREATE INDEX IF NOT EXISTS spans_by_correlation
    ON spans (org_id, integration_id, correlation_id, created_ms);
CREATE INDEX IF NOT EXISTS spans_by_level ON spans (org_id, integration_id, level, created_ms);
CREATE INDEX IF NOT EXISTS spans_by_created ON spans (created_ms);
CREATE TABLE IF NOT EXISTS rollups (
    org_id TEXT NOT NULL,
    integration_id TEXT NOT NULL,
    bucket_ms INTEGER NOT NULL,
    use_case_id TEXT NOT NULL,
    use_case_type TEXT NOT NULL,
    level TEXT NOT NULL,
    code TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (org_id, integration_id, bucket_ms, use_case_id, use_case_type, level, code)
);
CREATE TABLE IF NOT EXISTS alert_state (
    org_id TEXT NOT NULL,
    integration_id TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    state TEXT NOT NULL,
    last_fired_ms INTEGER,
    last_cleared_ms INTEGER,
    last_notified_ms INTEGER,
    last_evaluated_ms INTEGER,
    PRIMARY KEY (org_id, integration_id, rule_id)
);
CREATE TABLE IF NOT EXISTS alert_history (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    integration_id TEXT NOT NULL,
    type TEXT NOT NULL,
    occurred_ms INTEGER NOT NULL,
    row TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_history_by_time
    ON alert_history (org_id, integration_id, occurred_ms, id);
CREATE TABLE IF NOT EXISTS positions (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
);
";

/// One span with the coordinates of the record it came in.
#[derive(Debug, Clone)]
pub struct IndexedSpan {
    pub partition: i32,
    pub offset: i64,
    /// Its place in the record (a record may carry several spans).
    pub seq: i64,
    pub span: MonitoringSpan,
}

/// The monitoring store on one SQLite file.
#[derive(Clone)]
pub struct Store {
    connection: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating when missing) the store at `path`. Blocks briefly (opening a file and
    /// creating the schema) on a thread of its own, so it can be called from start-up code
    /// that is not async.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::Sql("directory", e.to_string()))?;
        }
        let owned = path.to_path_buf();
        let connection = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .map_err(|e| StoreError::Task(e.to_string()))?;
            runtime.block_on(async move {
                let db = libsql::Builder::new_local(&owned)
                    .build()
                    .await
                    .map_err(sql("open"))?;
                let connection = db.connect().map_err(sql("connect"))?;
                connection
                    .busy_timeout(Duration::from_secs(10))
                    .map_err(sql("busy timeout"))?;
                connection
                    .execute_batch(SCHEMA)
                    .await
                    .map_err(sql("schema"))?;
                Ok::<_, StoreError>(connection)
            })
        })
        .join()
        .map_err(|_| StoreError::Task("opening the store panicked".into()))??;
        Ok(Self {
            connection,
            path: path.to_path_buf(),
        })
    }

    /// The file the store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` with the connection on a blocking thread (also for the alert tables of
    /// [`crate::alerts`]).
    pub async fn run<T, F>(
        &self,
        work: impl FnOnce(Connection) -> F + Send + 'static,
    ) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = Result<T, StoreError>>,
        T: Send + 'static,
    {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            tokio::runtime::Handle::current().block_on(work(connection))
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// The next offset of every partition of `topic` the indexer has applied.
    pub async fn positions(&self, topic: &str) -> Result<BTreeMap<i32, i64>, StoreError> {
        let topic = topic.to_owned();
        self.run(move |c| async move {
            let mut rows = c
                .query(
                    "SELECT partition, next_offset FROM positions WHERE topic = ?1",
                    [topic],
                )
                .await
                .map_err(sql("positions"))?;
            let mut found = BTreeMap::new();
            while let Some(row) = rows.next().await.map_err(sql("positions"))? {
                let partition: i64 = row.get(0).map_err(sql("positions"))?;
                let next: i64 = row.get(1).map_err(sql("positions"))?;
                found.insert(partition as i32, next);
            }
            Ok(found)
        })
        .await
    }

    /// Applies one batch: its spans, their rollup counts and the partitions' new positions, all
    /// or nothing. A span already stored (same coordinates, or same id in its organisation) is
    /// not stored or counted again.
    pub async fn apply(
        &self,
        topic: &str,
        spans: Vec<IndexedSpan>,
        positions: BTreeMap<i32, i64>,
    ) -> Result<(), StoreError> {
        let topic = topic.to_owned();
        self.run(move |c| async move {
            let tx = c.transaction().await.map_err(sql("begin"))?;
            for indexed in &spans {
                let span = &indexed.span;
                let created = parse_rfc3339(&span.created_at).map_or(0, millis_of);
                let level = level_name(span);
                let inserted = tx
                    .execute(
                        "INSERT OR IGNORE INTO spans (partition, offset, seq, id, org_id, \
                         integration_id, event_id, correlation_id, use_case_id, use_case_type, \
                         level, code, created_ms, span) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                        vec![
                            SqlValue::Integer(i64::from(indexed.partition)),
                            SqlValue::Integer(indexed.offset),
                            SqlValue::Integer(indexed.seq),
                            SqlValue::Text(span.id.clone()),
                            SqlValue::Text(span.org_id.clone()),
                            SqlValue::Text(span.integration_id.clone()),
                            SqlValue::Text(span.event_id.clone()),
                            SqlValue::Text(span.correlation_id.clone()),
                            SqlValue::Text(span.use_case_id.clone()),
                            SqlValue::Text(span.use_case_type.clone()),
                            SqlValue::Text(level.to_owned()),
                            SqlValue::Text(span.code.clone()),
                            SqlValue::Integer(created),
                            SqlValue::Text(serde_json::to_string(span).unwrap_or_default()),
                        ],
                    )
                    .await
                    .map_err(sql("insert span"))?;
                if inserted == 0 {
                    continue;
                }
                tx.execute(
                    "INSERT INTO rollups (org_id, integration_id, bucket_ms, use_case_id, \
                     use_case_type, level, code, count) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1) \
                     ON CONFLICT (org_id, integration_id, bucket_ms, use_case_id, use_case_type, \
                     level, code) DO UPDATE SET count = count + 1",
                    vec![
                        SqlValue::Text(span.org_id.clone()),
                        SqlValue::Text(span.integration_id.clone()),
                        SqlValue::Integer(created.div_euclid(BUCKET_MS) * BUCKET_MS),
                        SqlValue::Text(span.use_case_id.clone()),
                        SqlValue::Text(span.use_case_type.clone()),
                        SqlValue::Text(level.to_owned()),
                        SqlValue::Text(span.code.clone()),
                    ],
                )
                .await
                .map_err(sql("rollup"))?;
            }
            for (partition, next) in positions {
                tx.execute(
                    "INSERT INTO positions (topic, partition, next_offset) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
                    vec![
                        SqlValue::Text(topic.clone()),
                        SqlValue::Integer(i64::from(partition)),
                        SqlValue::Integer(next),
                    ],
                )
                .await
                .map_err(sql("position"))?;
            }
            tx.commit().await.map_err(sql("commit"))
        })
        .await
    }

    /// Deletes spans and rollups older than `before_ms`; how many spans went.
    pub async fn prune(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.run(move |c| async move {
            let spans = c
                .execute("DELETE FROM spans WHERE created_ms < ?1", [before_ms])
                .await
                .map_err(sql("prune spans"))?;
            // A bucket goes only once all of it is past the retention.
            c.execute(
                "DELETE FROM rollups WHERE bucket_ms + ?2 <= ?1",
                [before_ms, BUCKET_MS],
            )
            .await
            .map_err(sql("prune rollups"))?;
            Ok(spans)
        })
        .await
    }
}

/// The level as stored: epilot's four, and `info` for the intermediate steps we record
/// (`MSG_ENQUEUED`, `ACK_PENDING`), which are no outcome: they show in traces, not in counts.
pub fn level_name(span: &MonitoringSpan) -> &'static str {
    use erp_schemas::monitoring::Level;
    match span.level {
        Level::Success => "success",
        Level::Info => "info",
        Level::Error => "error",
        Level::Skipped => "skipped",
        Level::Warning => "warning",
    }
}

//! A running replay: re-publishes its plan's selected records and counts as it goes.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rdkafka::producer::FutureProducer;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::info;

use erp_runtime::{ConfigView, Runtime};
use erp_schemas::inbound::InboundEventRecord;
use erp_schemas::monitoring::{Level, MonitoringSpan};
use erp_schemas::timestamp::{now_millis, now_rfc3339};

use super::Plan;

/// Records handed to the producer before waiting for their acknowledgements.
const CHUNK: usize = 500;

/// The visible state of one replay.
pub struct Progress {
    pub task_id: String,
    pub plan: Plan,
    pub read: AtomicU64,
    pub republished: AtomicU64,
    pub failed: AtomicU64,
    pub status: Mutex<&'static str>,
    pub error: Mutex<Option<String>>,
    pub started: Instant,
    pub cancel: CancellationToken,
}

impl Progress {
    /// What `GET …/replays/{taskId}` shows.
    pub fn json(&self) -> Value {
        let republished = self.republished.load(Ordering::Relaxed);
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        json!({
            "task_id": self.task_id,
            "plan_id": self.plan.plan_id,
            "status": *self.status.lock().map_or_else(|_| "failed".into(), |s| s.to_string()),
            "total": self.plan.selected,
            "read": self.read.load(Ordering::Relaxed),
            "done": republished,
            "failed": self.failed.load(Ordering::Relaxed),
            "rate_per_second": (republished as f64 / seconds * 10.0).round() / 10.0,
            "error": self.error.lock().ok().and_then(|e| e.clone()),
        })
    }

    fn set_status(&self, status: &'static str) {
        if let Ok(mut s) = self.status.lock() {
            *s = status;
        }
    }
}

/// The record re-published for `record` by plan `plan_id`.
pub fn replayed(record: InboundEventRecord, plan_id: &str) -> InboundEventRecord {
    let original = record.event_id.clone();
    InboundEventRecord {
        event_id: erp_schemas::ids::new_event_id(),
        received_at: now_millis(),
        deduplication_id: Some(format!("replay/{plan_id}/{original}")),
        replay_of: Some(original),
        ..record
    }
}

/// The audit span of a replay's start or end.
fn audit(progress: &Progress, level: Level, code: &str, message: String) -> MonitoringSpan {
    let selection = &progress.plan.selection;
    MonitoringSpan {
        id: erp_schemas::ids::derived_uuid(&[&progress.task_id, code]),
        org_id: selection.org_id.clone(),
        integration_id: selection.integration_id.clone(),
        event_id: progress.task_id.clone(),
        correlation_id: progress.task_id.clone(),
        use_case_id: selection.use_case_id.clone().unwrap_or_default(),
        use_case_type: if selection.use_case_id.is_some() {
            "inbound".into()
        } else {
            String::new()
        },
        level,
        code: code.to_owned(),
        message,
        detail: json!({
            "plan_id": progress.plan.plan_id,
            "ranges": progress.plan.ranges,
            "selected": progress.plan.selected,
            "republished": progress.republished.load(Ordering::Relaxed),
            "failed": progress.failed.load(Ordering::Relaxed),
        }),
        created_at: now_rfc3339(),
    }
}

async fn write_audit(runtime: &Runtime, producer: &FutureProducer, span: &MonitoringSpan) {
    crate::monitoring::write_audit_span(
        producer,
        &runtime.kafka.topics,
        &span.integration_id,
        span,
    )
    .await;
}

/// Runs the replay to its end (or cancellation): re-publishes the selected records in chunks,
/// each chunk acknowledged before the next is read, so `done` counts only acknowledged ones.
pub async fn run(
    runtime: Runtime,
    producer: FutureProducer,
    view: ConfigView,
    progress: Arc<Progress>,
) {
    let plan = progress.plan.clone();
    write_audit(
        &runtime,
        &producer,
        &audit(
            &progress,
            Level::Info,
            "REPLAY_STARTED",
            format!("replay of {} inbound events started", plan.selected),
        ),
    )
    .await;
    let outcome = republish(&runtime, &producer, &view, &progress).await;
    let (status, level, code, message) = match (&outcome, progress.cancel.is_cancelled()) {
        (Err(error), _) => ("failed", Level::Error, "REPLAY_FAILED", error.clone()),
        (Ok(()), true) => (
            "cancelled",
            Level::Warning,
            "REPLAY_CANCELLED",
            "replay cancelled".to_owned(),
        ),
        (Ok(()), false) => (
            "done",
            Level::Success,
            "REPLAY_FINISHED",
            "replay finished".to_owned(),
        ),
    };
    if let Err(error) = &outcome
        && let Ok(mut slot) = progress.error.lock()
    {
        *slot = Some(error.clone());
    }
    progress.set_status(status);
    write_audit(&runtime, &producer, &audit(&progress, level, code, message)).await;
    info!(task = %progress.task_id, status, "replay ended");
}

async fn republish(
    runtime: &Runtime,
    producer: &FutureProducer,
    view: &ConfigView,
    progress: &Progress,
) -> Result<(), String> {
    let plan = &progress.plan;
    // Whatever was read, the inbound events go back to the inbound topic.
    let topic = runtime.kafka.topics.inbound_events();
    let mut reader = super::scan::RangeReader::open(runtime, &plan.selection, &plan.ranges)?;
    let mut pending = Vec::with_capacity(CHUNK);
    loop {
        let next = reader.next(&progress.cancel).await;
        let end = next.is_none();
        if let Some(record) = next {
            progress.read.fetch_add(1, Ordering::Relaxed);
            if let Some(record) = record?.filter(|r| plan.selection.selects(r, view)) {
                let again = replayed(record, &plan.plan_id);
                let bytes = runtime
                    .kafka
                    .wire
                    .encode("inbound event", &topic, &again)
                    .await
                    .map_err(|e| e.to_string())?;
                let delivery = erp_runtime::kafka::enqueue(producer, &topic, &again.key(), &bytes)
                    .await
                    .map_err(|e| e.to_string())?;
                pending.push(delivery);
            }
        }
        if pending.len() >= CHUNK || (end && !pending.is_empty()) {
            let count = pending.len() as u64;
            match erp_runtime::kafka::await_deliveries(std::mem::take(&mut pending)).await {
                Ok(()) => {
                    progress.republished.fetch_add(count, Ordering::Relaxed);
                }
                Err(error) => {
                    progress.failed.fetch_add(count, Ordering::Relaxed);
                    return Err(format!("re-published records not acknowledged: {error}"));
                }
            }
        }
        if end {
            return Ok(());
        }
    }
}

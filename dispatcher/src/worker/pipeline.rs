//! What moves between the stages (events, jobs, outcomes) and the [`Core`] they share.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rdkafka::producer::FutureProducer;
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use erp_runtime::config::WebhookEntry;
use erp_runtime::{ConfigView, ConfigWriter};
use erp_schemas::dead_letter::SourceCoordinates;
use erp_schemas::delivery_task::Replay;
use erp_schemas::topics::Topics;

use crate::delivery::{Attempt, Sender};
use crate::isolation::Endpoints;
use crate::metrics::DispatcherMetrics;
use crate::ordering::Lanes;
use crate::schedule::Schedule;
use erp_webhooks::ConfigError;
use erp_webhooks::endpoint::EndpointConfig;
use erp_webhooks::redact::Redactor;

use super::settings::DispatcherSettings;

/// An endpoint's parsed configuration and the revision it was parsed from.
pub(super) type ParsedConfig = (i64, Result<Arc<EndpointConfig>, ConfigError>);

/// The fields of a core event the dispatcher routes and reports by.
#[derive(Debug, Clone, Default)]
pub(super) struct EventHead {
    pub(super) org_id: String,
    pub(super) event_id: String,
    pub(super) event_name: String,
    pub(super) integration_id: String,
    pub(super) use_case_id: String,
    /// The inbound event a mapped event came from: groups spans of one inbound event.
    pub(super) trace_event_id: String,
    pub(super) correlation_id: String,
    pub(super) use_case_type: String,
}

impl EventHead {
    /// The envelope fields of a core event, if it has them.
    pub(super) fn read(value: &Value) -> Option<Self> {
        let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        let event_id = text("_event_id")?;
        Some(Self {
            org_id: text("_org_id")?,
            event_name: text("_event_name")?,
            integration_id: text("integration_id").unwrap_or_default(),
            use_case_id: text("use_case_id").unwrap_or_default(),
            trace_event_id: text("inbound_event_id")
                .or_else(|| text("source_event_id"))
                .unwrap_or_else(|| event_id.clone()),
            correlation_id: text("correlation_id").unwrap_or_default(),
            use_case_type: match (value.get("_delivery"), value.get("use_case_id")) {
                (Some(_), _) => "outbound".into(),
                (None, Some(_)) => "inbound".into(),
                _ => String::new(),
            },
            event_id,
        })
    }
}

/// A core event read from a record.
pub(super) struct Event {
    pub(super) head: Arc<EventHead>,
    pub(super) value: Value,
    /// The record's value as text, carried by delivery tasks and dead letters.
    pub(super) text: Arc<str>,
}

impl Event {
    /// A core event from a record value, if it is one.
    pub(super) fn read(payload: &[u8]) -> Option<Self> {
        let value = serde_json::from_slice::<Value>(payload).ok()?;
        let head = EventHead::read(&value)?;
        Some(Self {
            head: Arc::new(head),
            value,
            text: Arc::from(String::from_utf8_lossy(payload).as_ref()),
        })
    }

    /// The body sent to endpoints: an outbound message's `payload`, else the whole event.
    pub(super) fn body(&self) -> Arc<[u8]> {
        if self.value.get("_delivery").is_some() {
            let payload = self.value.get("payload").unwrap_or(&Value::Null);
            Arc::from(serde_json::to_vec(payload).unwrap_or_default())
        } else {
            Arc::from(self.text.as_bytes())
        }
    }
}

/// One event for one endpoint.
pub(super) struct Job {
    pub(super) head: Arc<EventHead>,
    pub(super) endpoint: WebhookEntry,
    pub(super) body: Arc<[u8]>,
    pub(super) event: Arc<str>,
    pub(super) source: SourceCoordinates,
    pub(super) key: Option<String>,
    pub(super) attempts: u32,
    pub(super) deferrals: u32,
    pub(super) first_attempt_at: Option<String>,
    /// 0 on the main path, else the retry tier the job was read from.
    pub(super) tier: u32,
    /// Set for a replay or recovery asked for through the API.
    pub(super) replay: Option<Replay>,
    /// Whether `body` is the output of the endpoint's transform (the attempt span then keeps
    /// it, so a replay without `reapply_transform` can send the same bytes again).
    pub(super) transformed: bool,
    /// Held in a lane of an endpoint with per-key ordering: a retry waits in the lane, never in
    /// a tier.
    pub(super) ordered: bool,
    /// The `webhook-id` of the batch the job is sent in, for an endpoint with `batch`.
    pub(super) batch_id: Option<Arc<str>>,
    /// What keeps secrets out of what is recorded about the job; set by the prepare stage.
    pub(super) recording: Recording,
}

/// How a job is recorded once its endpoint is resolved: `endpoint` then holds the values of
/// `{{env.X}}` references, which spans, dead letters and errors must never show.
#[derive(Debug, Default, Clone)]
pub(super) struct Recording {
    /// The endpoint's url as stored, references unresolved (`None` until prepared).
    pub(super) url: Option<String>,
    /// The secrets the request carries: environment secrets, credentials, signing secrets.
    pub(super) secrets: Arc<Redactor>,
}

impl Job {
    /// The endpoint's url as recorded: the stored template, never the resolved one.
    pub(super) fn shown_url(&self) -> Option<&str> {
        self.recording
            .url
            .as_deref()
            .or(self.endpoint.webhook.url.as_deref())
    }

    /// The parts of an attempt or skip span id beyond event, stage and endpoint. A replay adds
    /// its id, so its attempts never collide with earlier ones while an automatic attempt keeps
    /// the id it always had.
    pub(super) fn span_suffix(&self, tail: &str) -> String {
        match &self.replay {
            Some(replay) => format!("{tail}/replay/{}", replay.replay_id),
            None => tail.to_owned(),
        }
    }
}

/// How one job ended for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Delivered,
    /// Dead-lettered after a terminal answer or its last retry.
    Failed,
    /// Dead-lettered because its endpoint is gone, disabled or deleted.
    Parked,
    /// Written to a retry tier after a failed attempt.
    Scheduled,
    /// Written to a retry tier without an attempt.
    Deferred,
    /// Not sent: the endpoint's filters do not let the event through.
    Skipped,
    /// Shutdown interrupted it; its batch stays uncommitted.
    Interrupted,
    /// An ordered delivery stays at the head of its lane until `due_at_ms`.
    Held {
        due_at_ms: i64,
        attempted: bool,
    },
}

/// A job after its endpoint's configuration, filters and transform.
pub(super) enum Ready {
    /// Send it, with the endpoint's parsed configuration.
    Send(Box<Job>, Arc<EndpointConfig>),
    /// Nothing to send: it ended so (skipped, or failed without a request).
    Ended(Outcome),
}

/// What became of a request that was asked for.
pub(super) enum Sent {
    /// It went out (or, in a tier, the open breaker answered for the endpoint).
    Attempt(Attempt),
    /// Not sent: defer it, for this reason (`circuit_open`, `throttled`, `saturated`).
    Deferred(&'static str),
    /// Shutdown interrupted it.
    Interrupted,
}

/// How a batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BatchEnd {
    Done,
    Interrupted,
    /// The batch's task panicked: a bug; the role stops so its supervisor restarts it.
    Crashed,
}

/// What the main path and the tiers share.
pub(super) struct Core {
    pub(super) sender: Sender,
    pub(super) producer: FutureProducer,
    pub(super) writer: ConfigWriter,
    pub(super) topics: Topics,
    pub(super) metrics: DispatcherMetrics,
    pub(super) settings: DispatcherSettings,
    pub(super) schedule: Schedule,
    pub(super) endpoints: Endpoints,
    pub(super) global: Arc<Semaphore>,
    /// Each endpoint's parsed configuration (compiled JSONata, OAuth token) by revision.
    pub(super) configs: Mutex<HashMap<String, ParsedConfig>>,
    pub(super) view: ConfigView,
    /// Stops polling.
    pub(super) shutdown: CancellationToken,
    /// Abandons deliveries in progress: `shutdown_grace` after `shutdown`.
    pub(super) interrupt: CancellationToken,
    /// Held deliveries of endpoints with per-key ordering.
    pub(super) lanes: Arc<Lanes>,
    /// Reads `erp.core.events` in either wire format (JSON, or Avro where chosen).
    pub(super) wire: erp_runtime::wire::Wire,
}

//! What the control plane's handlers can reach, and the one place that builds it from settings
//! (used by the `api` role and by `standalone`).

use std::path::PathBuf;
use std::sync::Arc;

use actix_web::web;
use rdkafka::producer::FutureProducer;
use tokio::task::JoinHandle;

use erp_http::{ApiError, Caller};
use erp_runtime::event_schemas::EventSchemas;
use erp_runtime::{ConfigView, ConfigWriter, Runtime};
use erp_schemas::topics::Topics;

use crate::acks::{AckSettings, AckTracker};
use crate::events::log::EventLog;
use crate::monitoring::store::Store as MonitoringStore;
use crate::poll::{PollQueue, PollSettings};
use crate::webhooks::attempt_log::{AttemptLog, AttemptLogSettings};

/// Shared state of the control plane.
pub struct ApiState {
    /// The deployment admin's organisation (the first one).
    pub org_id: String,
    /// Appends configuration changes and reads them back.
    pub config: ConfigWriter,
    /// Producer for replays, triggers and ACK records.
    pub producer: FutureProducer,
    /// Topic names.
    pub topics: Topics,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Schemas of the catalog's platform events (listed by `configured-events`).
    pub event_schemas: Option<Arc<EventSchemas>>,
    /// The inbound event log's index (`None`: the event log routes answer 503).
    pub event_log: Option<Arc<EventLog>>,
    /// The webhook attempt log's index (`None`: its routes answer 503).
    pub attempt_log: Option<Arc<AttemptLog>>,
    /// ACK tracking (`None`: every acknowledgement is unknown).
    pub acks: Option<Arc<AckTracker>>,
    /// The deployment's signing key, from which each organisation's `v1a` key derives.
    pub signing_keys: Option<Arc<erp_webhooks::org_key::SigningKeys>>,
    /// The poll queue (`None`: poll endpoints answer 503).
    pub poll: Option<Arc<PollQueue>>,
    /// The monitoring store (`None`: the monitoring routes answer 503).
    pub monitoring: Option<MonitoringStore>,
    /// Replay plans and running replays of this process.
    pub replays: crate::replay::Replays,
    /// Consumer-group reset plans of this process.
    pub group_resets: crate::groups::plans::ResetPlans,
    /// Kafka settings, metrics and the shutdown signal, for work started by a request.
    pub runtime: Runtime,
}

/// How to build the control plane's state.
#[derive(Clone)]
pub struct ApiSettings {
    /// The deployment admin's organisation.
    pub org_id: String,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// ACK tracking.
    pub acks: AckSettings,
    /// The poll queue (`None`: not served).
    pub poll: Option<PollSettings>,
    /// Where the event log and the attempt log keep their indexes (`None`: not kept).
    pub data_dir: Option<PathBuf>,
    /// The attempt log's retention and recovery rate.
    pub attempt_log: AttemptLogSettings,
    /// The deployment's signing key (organisation keys derive from it).
    pub signing_keys: Option<Arc<erp_webhooks::org_key::SigningKeys>>,
    /// The catalog's platform event schemas.
    pub event_schemas: Option<Arc<EventSchemas>>,
    /// The monitoring store's address (`sqlite://<path>`); `None`: `<data_dir>/monitoring.db`
    /// when there is a data directory, else no store.
    pub monitoring_store: Option<String>,
    /// How long monitoring spans are kept (28 days by default, epilot's replay promise).
    pub monitoring_retention: std::time::Duration,
    /// How often alert rules are evaluated.
    pub alert_sweep: std::time::Duration,
}

/// The state and the background tasks that keep it (index followers, ACK timeouts, poll
/// streams, resumed recoveries).
pub struct Started {
    pub state: web::Data<ApiState>,
    pub tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl ApiState {
    /// Starts every part of the control plane that `settings` asks for and builds the state.
    pub fn start(
        runtime: &Runtime,
        producer: FutureProducer,
        view: ConfigView,
        settings: ApiSettings,
    ) -> Result<Started, ApiError> {
        let mut tasks: Vec<(&'static str, JoinHandle<()>)> = Vec::new();
        let named = |name: &'static str, handles: Vec<JoinHandle<()>>| {
            handles.into_iter().map(move |handle| (name, handle))
        };
        let (acks, ack_tasks) = AckTracker::start(runtime, producer.clone(), settings.acks)?;
        tasks.extend(named("ack tracking", ack_tasks));
        let poll = match settings.poll {
            Some(poll_settings) => {
                let (queue, poll_tasks) =
                    PollQueue::start(runtime, producer.clone(), poll_settings)?;
                tasks.extend(named("poll queue", poll_tasks));
                Some(queue)
            }
            None => None,
        };
        let (event_log, attempt_log) = match &settings.data_dir {
            Some(dir) => {
                let (event_log, task) = EventLog::start(runtime, &dir.join("event-log"))?;
                tasks.push(("event log", task));
                let (attempt_log, log_tasks) =
                    AttemptLog::start(runtime, &dir.join("attempt-log"), settings.attempt_log)?;
                tasks.extend(named("attempt log", log_tasks));
                (Some(event_log), Some(attempt_log))
            }
            None => (None, None),
        };
        let monitoring = match (&settings.monitoring_store, &settings.data_dir) {
            (Some(url), _) => Some(
                crate::monitoring::store::sqlite_path(url)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?,
            ),
            (None, Some(dir)) => Some(dir.join("monitoring.db")),
            (None, None) => None,
        };
        let monitoring = match monitoring {
            Some(path) => {
                let store = MonitoringStore::open(&path)
                    .map_err(|e| ApiError::unavailable("MONITORING_UNAVAILABLE", e.to_string()))?;
                tasks.push((
                    "alert sweep",
                    tokio::spawn(crate::alerts::sweep::run(
                        runtime.clone(),
                        store.clone(),
                        view.clone(),
                        producer.clone(),
                        settings.alert_sweep,
                    )),
                ));
                tasks.push((
                    "monitoring indexer",
                    crate::monitoring::indexer::spawn(
                        runtime,
                        store.clone(),
                        settings.monitoring_retention,
                    ),
                ));
                Some(store)
            }
            None => None,
        };
        let topics = runtime.kafka.topics.clone();
        if let Some(log) = &attempt_log {
            let resumed = crate::webhooks::recovery::resume(log, &producer, &topics);
            tasks.extend(named("recovery", resumed));
        }
        let state = web::Data::new(ApiState {
            org_id: settings.org_id,
            config: ConfigWriter::new(runtime, producer.clone(), view),
            producer,
            topics,
            body_limit: settings.body_limit,
            event_schemas: settings.event_schemas,
            event_log,
            attempt_log,
            acks: Some(acks),
            signing_keys: settings.signing_keys,
            poll,
            monitoring,
            replays: Default::default(),
            group_resets: Default::default(),
            runtime: runtime.clone(),
        });
        Ok(Started { state, tasks })
    }

    /// Appends a configuration change made by `caller`, stamped now, and waits until this
    /// process's view has applied it.
    pub async fn record(
        &self,
        caller: &Caller,
        change: erp_schemas::config::ConfigChange,
    ) -> Result<(), ApiError> {
        self.record_in(&caller.org_id, caller, change).await
    }

    /// Like [`Self::record`], for an object of organisation `org_id` (the deployment admin
    /// creating another organisation's token).
    ///
    /// The change carries the revision its object has in this process's view (handlers decide
    /// under [`ConfigWriter::exclusive`], so that is the revision they decided on): when
    /// another process (a dispatcher disabling the endpoint, another API replica) wrote the
    /// object first, the change is skipped and answered 409 `REVISION_CONFLICT`.
    pub async fn record_in(
        &self,
        org_id: &str,
        caller: &Caller,
        change: erp_schemas::config::ConfigChange,
    ) -> Result<(), ApiError> {
        let base_revision = self.view().snapshot().revision_of(org_id, &change);
        self.config
            .append(&erp_schemas::config::ConfigRecord {
                org_id: org_id.to_owned(),
                at: erp_schemas::timestamp::now_rfc3339(),
                actor: Some(caller.actor.clone()),
                base_revision,
                change,
            })
            .await?;
        Ok(())
    }

    /// The configuration view.
    pub fn view(&self) -> &ConfigView {
        self.config.view()
    }

    /// The integration `id` of the caller's organisation: 404 otherwise, whoever owns it.
    pub fn caller_integration(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<erp_schemas::config::Integration, ApiError> {
        self.view()
            .snapshot()
            .integration(&caller.org_id, id)
            .cloned()
            .ok_or_else(|| ApiError::integration_not_found(id))
    }

    /// The monitoring store: 503 when this process keeps none.
    pub fn monitoring_store(&self) -> Result<&MonitoringStore, ApiError> {
        self.monitoring.as_ref().ok_or_else(|| {
            ApiError::unavailable(
                "MONITORING_UNAVAILABLE",
                "this process keeps no monitoring store (start it with a data directory or --monitoring-store)",
            )
        })
    }
}

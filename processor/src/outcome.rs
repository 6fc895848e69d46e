//! What becomes of one inbound record, and the records that outcome writes: the core event, the
//! monitoring span and, for failures, the dead letter.

use serde_json::{Value, json};

use erp_runtime::config::UseCaseEntry;
use erp_schemas::ack::{AckRecord, AckState};
use erp_schemas::core_event::{
    CoreEvent, Envelope, INBOUND_EVENT_MAPPED, INBOUND_EVENT_MAPPED_VERSION, InboundEventMapped,
};
use erp_schemas::dead_letter::{DeadLetter, SourceCoordinates};
use erp_schemas::ids::{derived_ulid, derived_uuid};
use erp_schemas::inbound::InboundEventRecord;
use erp_schemas::monitoring::{Level, MonitoringSpan};
use erp_schemas::poll::{
    DEFAULT_MAX_DELIVERY_ATTEMPTS, DEFAULT_RETENTION_DAYS, PoisonPolicy, PollItem,
};
use erp_schemas::timestamp::{format_millis, millis_of, now_millis, now_rfc3339, parse_rfc3339};

use erp_mapping::outbound::OutboundOutcome;
use erp_mapping::{MappingError, MappingResult};

/// The fate of one record.
#[derive(Debug)]
pub enum Outcome {
    /// Mapped; emit the core event.
    Mapped {
        record: Box<InboundEventRecord>,
        use_case: Box<UseCaseEntry>,
        result: MappingResult,
        /// The output's violations of the core entity schemas (`validation: warn`): also in
        /// `result.warnings`, and reported in a warning span of their own.
        violations: Vec<erp_schemas::catalog::OutputViolation>,
    },
    /// Another event with the same dedup id was accepted within the window.
    Duplicate {
        record: Box<InboundEventRecord>,
        first_event_id: String,
    },
    /// No enabled use case (or integration) for it.
    Ignored {
        record: Box<InboundEventRecord>,
        code: &'static str,
        message: String,
        use_case: Option<Box<UseCaseEntry>>,
    },
    /// It reached a use case but cannot be mapped.
    Failed {
        record: Box<InboundEventRecord>,
        use_case: Box<UseCaseEntry>,
        error: MappingError,
    },
    /// The record itself cannot be read.
    Poison { reason: String },
    /// A platform event and what each matching outbound use case made of it.
    Outbound {
        head: PlatformHead,
        results: Vec<(Box<UseCaseEntry>, Result<OutboundOutcome, MappingError>)>,
    },
    /// A platform event no enabled outbound use case subscribes to.
    NotSubscribed,
    /// A platform event that breaks the core event catalog: an error span per subscribed
    /// outbound use case (or one for the organisation) and a dead letter; no use case runs.
    InvalidEvent {
        head: PlatformHead,
        error: erp_schemas::catalog::EventCheckError,
        use_cases: Vec<Box<UseCaseEntry>>,
    },
}

/// The envelope fields of a platform core event the processor needs.
#[derive(Debug, Clone)]
pub struct PlatformHead {
    pub org_id: String,
    pub event_id: String,
    pub event_name: String,
    pub event_time: String,
    pub event_version: String,
    pub ack_id: Option<String>,
    pub trigger_source_type: Option<String>,
    pub trigger_source: Option<String>,
    /// The whole event, as the filter and mappings see it.
    pub event: Value,
}

impl PlatformHead {
    /// Reads the envelope; `None` when a required field is missing.
    pub fn read(event: Value) -> Option<Self> {
        let text = |key: &str| event.get(key).and_then(Value::as_str).map(str::to_owned);
        Some(Self {
            org_id: text("_org_id")?,
            event_id: text("_event_id")?,
            event_name: text("_event_name")?,
            event_time: text("_event_time").unwrap_or_default(),
            event_version: text("_event_version").unwrap_or_else(|| "1.0".into()),
            ack_id: text("_ack_id"),
            trigger_source_type: text("_trigger_source_type"),
            trigger_source: text("_trigger_source"),
            event,
        })
    }
}

impl Outcome {
    /// The metrics label of this outcome.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Mapped { .. } => "success",
            Outcome::Duplicate { .. } => "skipped",
            Outcome::Ignored { .. } => "ignored",
            Outcome::Failed { .. } | Outcome::Poison { .. } | Outcome::InvalidEvent { .. } => {
                "error"
            }
            Outcome::Outbound { results, .. } => {
                if results.iter().any(|(_, r)| r.is_err()) {
                    "error"
                } else {
                    "outbound"
                }
            }
            Outcome::NotSubscribed => "ignored",
        }
    }
}

/// The core event id of a mapped record. Derived, so that processing the same record again
/// gives the same id: from the integration and dedup id when the sender gave one (two deliveries
/// of one logical event then share it), else from the record's position in the log.
pub fn core_event_id(record: &InboundEventRecord, source: &SourceCoordinates) -> String {
    let millis = parse_rfc3339(&record.timestamp)
        .map(millis_of)
        .unwrap_or(record.received_at);
    let id = match &record.deduplication_id {
        Some(dedup) => derived_ulid(millis, &[&record.integration_id, "dedup", dedup]),
        None => {
            let partition = source.partition.to_string();
            let offset = source.offset.to_string();
            derived_ulid(millis, &[&source.topic, &partition, &offset])
        }
    };
    id.to_string()
}

/// The `InboundEventMapped` core event of a mapped record.
pub fn core_event(
    record: &InboundEventRecord,
    use_case: &UseCaseEntry,
    result: &MappingResult,
    source: &SourceCoordinates,
) -> CoreEvent {
    let event_id = core_event_id(record, source);
    let body = InboundEventMapped {
        integration_id: record.integration_id.clone(),
        use_case_id: use_case.use_case.id.clone(),
        use_case_slug: use_case.use_case.slug.clone(),
        inbound_event_id: record.event_id.clone(),
        correlation_id: record.correlation_id.clone(),
        deduplication_id: record.deduplication_id.clone(),
        event_timestamp: record.timestamp.clone(),
        entity_updates: result
            .entity_updates
            .iter()
            .filter_map(|u| serde_json::to_value(u).ok())
            .collect(),
        meter_readings_updates: result.meter_readings_updates.clone(),
        prune_scope_updates: result.prune_scope_updates.clone(),
        meter_readings_prune_scope_updates: result.meter_readings_prune_scope_updates.clone(),
        warnings: result.warnings.clone(),
    };
    let body = match serde_json::to_value(body) {
        Ok(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    CoreEvent {
        envelope: Envelope {
            _org_id: record.org_id.clone(),
            _event_time: format_millis(record.received_at),
            _ack_id: derived_uuid(&[&event_id, "ack"]),
            _event_id: event_id,
            _event_name: INBOUND_EVENT_MAPPED.to_owned(),
            _event_version: INBOUND_EVENT_MAPPED_VERSION.to_owned(),
            _event_source: Some("erp-toolkit.processor".to_owned()),
            _trigger_source_type: Some("api".to_owned()),
            _trigger_source: Some(record.integration_id.clone()),
        },
        body,
    }
}

/// The monitoring span of an inbound outcome (`None` for platform events, which have their own).
pub fn span(outcome: &Outcome, source: &SourceCoordinates) -> Option<MonitoringSpan> {
    let (record, use_case, level, code, message, detail): (
        Option<&InboundEventRecord>,
        Option<&UseCaseEntry>,
        Level,
        &str,
        String,
        Value,
    ) = match outcome {
        Outcome::Mapped {
            record,
            use_case,
            result,
            ..
        } => (
            Some(record),
            Some(use_case),
            Level::Success,
            "",
            format!(
                "mapped to {} entity update(s), {} meter reading update(s)",
                result.entity_updates.len(),
                result.meter_readings_updates.len()
            ),
            json!({"core_event_id": core_event_id(record, source), "warnings": result.warnings}),
        ),
        Outcome::Duplicate {
            record,
            first_event_id,
        } => (
            Some(record),
            None,
            Level::Skipped,
            "DUPLICATE_EVENT",
            "duplicate deduplication_id within the dedup window".to_owned(),
            json!({"deduplication_id": record.deduplication_id, "first_event_id": first_event_id}),
        ),
        Outcome::Ignored {
            record,
            code,
            message,
            use_case,
        } => (
            Some(record),
            use_case.as_deref(),
            Level::Skipped,
            code,
            message.clone(),
            json!({"use_case_slug": record.use_case_slug, "event_name": record.event_name}),
        ),
        Outcome::Failed {
            record,
            use_case,
            error,
        } => (
            Some(record),
            Some(use_case),
            Level::Error,
            error.code(),
            error.to_string(),
            failure_detail(error, source),
        ),
        Outcome::Poison { reason } => (
            None,
            None,
            Level::Error,
            "POISON_RECORD",
            reason.clone(),
            json!({"source": source}),
        ),
        Outcome::Outbound { .. } | Outcome::NotSubscribed | Outcome::InvalidEvent { .. } => {
            return None;
        }
    };
    let event_id = record.map_or_else(
        || format!("{}/{}/{}", source.topic, source.partition, source.offset),
        |r| r.event_id.clone(),
    );
    Some(MonitoringSpan {
        id: derived_uuid(&[&event_id, "processor", code]),
        org_id: record.map(|r| r.org_id.clone()).unwrap_or_default(),
        integration_id: record.map(|r| r.integration_id.clone()).unwrap_or_default(),
        correlation_id: record.map(|r| r.correlation_id.clone()).unwrap_or_default(),
        event_id,
        use_case_id: use_case.map(|u| u.use_case.id.clone()).unwrap_or_default(),
        use_case_type: use_case
            .map(|u| u.use_case.kind.clone())
            .unwrap_or_default(),
        level,
        code: code.to_owned(),
        message,
        detail,
        created_at: now_rfc3339(),
    })
}

/// The detail of a failure's span: the JSONata code, the source coordinates and, for output
/// that breaks the entity schemas, each violation with its path (never the value).
fn failure_detail(error: &MappingError, source: &SourceCoordinates) -> Value {
    let mut detail = json!({"jsonata_code": error.jsonata_code(), "source": source});
    if let MappingError::SchemaViolation { violations } = error {
        detail["violations"] = json!(violations);
    }
    detail
}

/// The warning span of a mapped record whose output breaks the core entity schemas
/// (`validation: warn`); `None` when it does not.
pub fn schema_warning_span(
    outcome: &Outcome,
    source: &SourceCoordinates,
) -> Option<MonitoringSpan> {
    let Outcome::Mapped {
        record,
        use_case,
        violations,
        ..
    } = outcome
    else {
        return None;
    };
    if violations.is_empty() {
        return None;
    }
    let summary: Vec<String> = violations.iter().take(5).map(ToString::to_string).collect();
    Some(MonitoringSpan {
        id: derived_uuid(&[&record.event_id, "processor", "SCHEMA_VIOLATION"]),
        org_id: record.org_id.clone(),
        integration_id: record.integration_id.clone(),
        event_id: record.event_id.clone(),
        correlation_id: record.correlation_id.clone(),
        use_case_id: use_case.use_case.id.clone(),
        use_case_type: use_case.use_case.kind.clone(),
        level: Level::Warning,
        code: "SCHEMA_VIOLATION".into(),
        message: format!(
            "mapped, with {} violation(s) of the core entity schemas: {}",
            violations.len(),
            summary.join("; ")
        ),
        detail: json!({
            "core_event_id": core_event_id(record, source),
            "validation": "warn",
            "violations": violations,
            "source": source,
        }),
        created_at: now_rfc3339(),
    })
}

/// What a platform event yields.
#[derive(Debug, Default)]
pub struct OutboundRecords {
    /// Core events for the dispatcher, each addressed to its delivery.
    pub events: Vec<CoreEvent>,
    /// Messages for the integrations' poll streams (`erp.outbound.poll`).
    pub poll_items: Vec<PollItem>,
    /// One span per matching use case, plus `ACK_PENDING` per tracking use case.
    pub spans: Vec<MonitoringSpan>,
    /// One per failed use case.
    pub letters: Vec<DeadLetter>,
    /// The ACK tracking row, when a use case with `ack_tracking` on produced messages.
    pub ack: Option<AckRecord>,
}

/// What a platform event yields: see [`OutboundRecords`].
pub fn outbound_records(
    head: &PlatformHead,
    results: &[(Box<UseCaseEntry>, Result<OutboundOutcome, MappingError>)],
    source: &SourceCoordinates,
    key: Option<&str>,
    value: &str,
) -> OutboundRecords {
    let (mut events, mut spans, mut letters) = (Vec::new(), Vec::new(), Vec::new());
    let mut poll_items = Vec::new();
    let mut tracking: Vec<(&UseCaseEntry, Vec<String>)> = Vec::new();
    let millis = parse_rfc3339(&head.event_time).map(millis_of).unwrap_or(0);
    let ack_id = head
        .ack_id
        .clone()
        .unwrap_or_else(|| derived_uuid(&[&head.event_id, "ack"]));
    for (use_case, result) in results {
        let uc = &use_case.use_case;
        let ack_tracking = uc
            .configuration
            .as_ref()
            .and_then(|c| c.get("ack_tracking"))
            .and_then(Value::as_str)
            != Some("off");
        let (level, code, message, detail) = match result {
            Ok(OutboundOutcome::Filtered) => (
                Level::Skipped,
                "EVENT_FILTERED",
                "the use case's event_filter did not match".to_owned(),
                json!({}),
            ),
            Ok(OutboundOutcome::Messages(messages)) => {
                let mut ids = Vec::new();
                for message in messages {
                    let event_id =
                        derived_ulid(millis, &[&head.event_id, &uc.id, &message.mapping_id])
                            .to_string();
                    ids.push(event_id.clone());
                    if message.delivery.get("type").and_then(Value::as_str) == Some("poll") {
                        let item =
                            poll_item(head, uc, &message.delivery, &message.payload, &event_id);
                        spans.push(MonitoringSpan {
                            id: derived_uuid(&[&item.id, "MSG_ENQUEUED"]),
                            org_id: head.org_id.clone(),
                            integration_id: uc.integration_id.clone(),
                            event_id: head.event_id.clone(),
                            correlation_id: String::new(),
                            use_case_id: uc.id.clone(),
                            use_case_type: "outbound".into(),
                            level: Level::Info,
                            code: "MSG_ENQUEUED".into(),
                            message: "enqueued on the integration's poll stream".into(),
                            detail: json!({"message_id": item.id}),
                            created_at: now_rfc3339(),
                        });
                        poll_items.push(item);
                        continue;
                    }
                    let body = json!({
                        "integration_id": uc.integration_id,
                        "use_case_id": uc.id,
                        "use_case_slug": uc.slug,
                        "mapping_id": message.mapping_id,
                        "source_event_id": head.event_id,
                        "ack_tracking": ack_tracking,
                        "_delivery": message.delivery,
                        "payload": message.payload,
                    });
                    events.push(CoreEvent {
                        envelope: Envelope {
                            _org_id: head.org_id.clone(),
                            _event_time: head.event_time.clone(),
                            _ack_id: ack_id.clone(),
                            _event_id: event_id,
                            _event_name: head.event_name.clone(),
                            _event_version: head.event_version.clone(),
                            _event_source: Some("erp-toolkit.processor".to_owned()),
                            _trigger_source_type: head.trigger_source_type.clone(),
                            _trigger_source: head.trigger_source.clone(),
                        },
                        body: match body {
                            Value::Object(map) => map,
                            _ => serde_json::Map::new(),
                        },
                    });
                }
                if ack_tracking && !ids.is_empty() {
                    tracking.push((use_case, ids.clone()));
                }
                (
                    Level::Success,
                    "",
                    format!("{} outbound message(s) for delivery", messages.len()),
                    json!({"core_event_ids": ids, "ack_tracking": ack_tracking}),
                )
            }
            Err(error) => {
                letters.push(DeadLetter {
                    stage: "processor".into(),
                    code: error.code().into(),
                    reason: format!("outbound use case {}: {error}", uc.id),
                    source: source.clone(),
                    org_id: Some(head.org_id.clone()),
                    integration_id: Some(uc.integration_id.clone()),
                    event_id: Some(head.event_id.clone()),
                    webhook_id: None,
                    key: key.map(str::to_owned),
                    value: value.to_owned(),
                    failed_at: now_rfc3339(),
                });
                (
                    Level::Error,
                    error.code(),
                    error.to_string(),
                    json!({"jsonata_code": error.jsonata_code(), "source": source}),
                )
            }
        };
        spans.push(MonitoringSpan {
            id: derived_uuid(&[&head.event_id, "processor", &uc.id]),
            org_id: head.org_id.clone(),
            integration_id: uc.integration_id.clone(),
            event_id: head.event_id.clone(),
            correlation_id: String::new(),
            use_case_id: uc.id.clone(),
            use_case_type: "outbound".into(),
            level,
            code: code.to_owned(),
            message,
            detail,
            created_at: now_rfc3339(),
        });
    }
    let ack = (!tracking.is_empty()).then(|| {
        for (use_case, ids) in &tracking {
            let uc = &use_case.use_case;
            spans.push(MonitoringSpan {
                id: derived_uuid(&[&ack_id, "ACK_PENDING", &uc.id]),
                org_id: head.org_id.clone(),
                integration_id: uc.integration_id.clone(),
                event_id: head.event_id.clone(),
                correlation_id: String::new(),
                use_case_id: uc.id.clone(),
                use_case_type: "outbound".into(),
                level: Level::Info,
                code: "ACK_PENDING".into(),
                message: "waiting for the ERP's acknowledgement".into(),
                detail: json!({"ack_id": ack_id, "core_event_ids": ids}),
                created_at: now_rfc3339(),
            });
        }
        let now = now_millis();
        AckRecord {
            ack_id: ack_id.clone(),
            org_id: head.org_id.clone(),
            event_id: head.event_id.clone(),
            event_name: head.event_name.clone(),
            integration_ids: tracking
                .iter()
                .map(|(u, _)| u.use_case.integration_id.clone())
                .collect(),
            use_case_ids: tracking
                .iter()
                .map(|(u, _)| u.use_case.id.clone())
                .collect(),
            core_event_ids: tracking.iter().flat_map(|(_, ids)| ids.clone()).collect(),
            state: AckState::Pending,
            created_at: format_millis(now),
            created_at_ms: now,
        }
    });
    OutboundRecords {
        events,
        poll_items,
        spans,
        letters,
        ack,
    }
}

/// The poll stream message of a poll mapping. Its id is `msg_` + the id a core event would have
/// had, so re-processing the platform event repeats it and the stream drops the copy.
fn poll_item(
    head: &PlatformHead,
    use_case: &erp_schemas::config::UseCase,
    delivery: &Value,
    payload: &Value,
    event_id: &str,
) -> PollItem {
    let number = |key: &str, default: u32| {
        delivery
            .get(key)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(default)
    };
    let now = now_millis();
    PollItem {
        id: format!("msg_{event_id}"),
        org_id: head.org_id.clone(),
        integration_id: use_case.integration_id.clone(),
        use_case_id: use_case.id.clone(),
        event_name: head.event_name.clone(),
        event_id: head.event_id.clone(),
        payload: payload.clone(),
        enqueued_at: format_millis(now),
        enqueued_at_ms: now,
        retention_days: number("retention_days", DEFAULT_RETENTION_DAYS),
        max_delivery_attempts: number("max_delivery_attempts", DEFAULT_MAX_DELIVERY_ATTEMPTS),
        poison_policy: match delivery.get("poison_policy").and_then(Value::as_str) {
            Some("block") => PoisonPolicy::Block,
            _ => PoisonPolicy::DeadLetter,
        },
    }
}

/// The dead letter of a failed outcome; `None` for outcomes that are not failures.
pub fn dead_letter(
    outcome: &Outcome,
    source: SourceCoordinates,
    key: Option<String>,
    value: String,
) -> Option<DeadLetter> {
    let (code, reason, record) = match outcome {
        Outcome::Failed { record, error, .. } => (error.code(), error.to_string(), Some(record)),
        Outcome::Poison { reason } => ("POISON_RECORD", reason.clone(), None),
        _ => return None,
    };
    Some(DeadLetter {
        stage: "processor".into(),
        code: code.into(),
        reason,
        source,
        org_id: record.map(|r| r.org_id.clone()),
        integration_id: record.map(|r| r.integration_id.clone()),
        event_id: record.map(|r| r.event_id.clone()),
        webhook_id: None,
        key,
        value,
        failed_at: now_rfc3339(),
    })
}

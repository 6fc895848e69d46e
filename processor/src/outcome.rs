//! What becomes of one inbound record, and the records that outcome writes: the core event, the
//! monitoring span and, for failures, the dead letter.

use serde_json::{Value, json};

use erp_runtime::config_view::UseCaseEntry;
use erp_schemas::core_event::{
    CoreEvent, Envelope, INBOUND_EVENT_MAPPED, INBOUND_EVENT_MAPPED_VERSION, InboundEventMapped,
};
use erp_schemas::dead_letter::{DeadLetter, SourceCoordinates};
use erp_schemas::ids::{derived_ulid, derived_uuid};
use erp_schemas::inbound::InboundEventRecord;
use erp_schemas::monitoring::{Level, MonitoringSpan};
use erp_schemas::timestamp::{format_millis, millis_of, now_rfc3339, parse_rfc3339};

use crate::mapping::{MappingError, MappingResult};

/// The fate of one record.
#[derive(Debug)]
pub enum Outcome {
    /// Mapped; emit the core event.
    Mapped {
        record: Box<InboundEventRecord>,
        use_case: Box<UseCaseEntry>,
        result: MappingResult,
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
}

impl Outcome {
    /// The metrics label of this outcome.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Mapped { .. } => "success",
            Outcome::Duplicate { .. } => "skipped",
            Outcome::Ignored { .. } => "ignored",
            Outcome::Failed { .. } | Outcome::Poison { .. } => "error",
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

/// The monitoring span of an outcome.
pub fn span(outcome: &Outcome, source: &SourceCoordinates) -> MonitoringSpan {
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
            json!({"jsonata_code": error.jsonata_code(), "source": source}),
        ),
        Outcome::Poison { reason } => (
            None,
            None,
            Level::Error,
            "POISON_RECORD",
            reason.clone(),
            json!({"source": source}),
        ),
    };
    let event_id = record.map_or_else(
        || format!("{}/{}/{}", source.topic, source.partition, source.offset),
        |r| r.event_id.clone(),
    );
    MonitoringSpan {
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

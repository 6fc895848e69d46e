//! The per-record guard: the mapping stage of a batch under the poison-record guard
//! (`erp_runtime::poison`), every record's mapping under `catch_unwind`, and the payload limits
//! checked before a payload is read. Whatever one record does, it ends as an outcome of its own
//! (an error span and a dead letter at worst) and the partition moves on; what cannot be caught
//! (a stack overflow, an abort) is remembered durably and set aside after repeated crashes.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use erp_mapping::payload;
use erp_mapping::{FileProxyContext, MappingContext, MappingError, map_document};
use erp_runtime::poison::{PoisonGuard, RecordAt, test_abort_on};
use erp_schemas::catalog::{OutputViolation, ValidationLevel};
use erp_schemas::dead_letter::SourceCoordinates;
use erp_schemas::limits::PayloadLimits;

use crate::error::ProcessorError;
use crate::outcome::Outcome;

use super::map::{Work, mapping_environment};

/// What every record's mapping shares.
pub(super) struct Shared {
    pub(super) timeout: Duration,
    pub(super) file_proxy_base_url: Option<String>,
    pub(super) config: Arc<erp_runtime::ConfigState>,
    pub(super) limits: PayloadLimits,
    pub(super) poison: Arc<PoisonGuard>,
}

/// Where a record was read, as the guard names it.
pub(super) fn record_at(source: &SourceCoordinates) -> RecordAt {
    RecordAt {
        topic: source.topic.clone(),
        partition: source.partition,
        offset: source.offset,
    }
}

/// The outcome of a record the guard sets aside unprocessed.
pub(super) fn poison_outcome(threshold: u32) -> Outcome {
    Outcome::Poison {
        reason: format!(
            "the processor exited abnormally (crash, abort) {threshold} time(s) while processing this record alone; set aside unprocessed. Replay it after a fix (see docs/hostile-input.md)"
        ),
    }
}

/// Maps a batch's work (on a blocking thread): records that were in flight during an abnormal
/// exit are marked and mapped one at a time, the others marked together around the lot.
pub(super) fn map_all(
    shared: &Shared,
    work: Vec<(usize, RecordAt, Work)>,
) -> Result<Vec<(usize, Outcome)>, ProcessorError> {
    let mut suspects = Vec::new();
    let mut together = Vec::new();
    for item in work {
        if shared.poison.is_suspect(&item.1)? {
            suspects.push(item);
        } else {
            together.push(item);
        }
    }
    let mut outcomes = Vec::with_capacity(suspects.len() + together.len());
    let marked: Vec<RecordAt> = together.iter().map(|(_, at, _)| at.clone()).collect();
    shared.poison.mark(&marked)?;
    for (index, _, work) in together {
        outcomes.push((index, map_guarded(shared, work)));
    }
    shared.poison.unmark(&marked)?;
    for (index, at, work) in suspects {
        let alone = [at];
        shared.poison.mark(&alone)?;
        outcomes.push((index, map_guarded(shared, work)));
        shared.poison.unmark(&alone)?;
        shared.poison.forget(&alone)?;
    }
    Ok(outcomes)
}

/// The text of a caught panic.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

fn caught<T>(run: impl FnOnce() -> Result<T, MappingError>) -> Result<T, MappingError> {
    catch_unwind(AssertUnwindSafe(run))
        .unwrap_or_else(|panic| Err(MappingError::Internal(panic_text(panic.as_ref()))))
}

/// One record's mapping; a panic becomes that record's failure.
fn map_guarded(shared: &Shared, work: Work) -> Outcome {
    let (record, use_case, compiled) = match work {
        Work::Inbound(record, use_case, compiled) => (record, use_case, compiled),
        Work::Outbound(head, use_cases) => {
            let results = use_cases
                .into_iter()
                .map(|(use_case, compiled)| {
                    let result =
                        caught(|| compiled.apply_for_delivery(&head.event, shared.timeout));
                    (use_case, result)
                })
                .collect();
            return Outcome::Outbound {
                head: *head,
                results,
            };
        }
    };
    let file_proxy = shared
        .file_proxy_base_url
        .as_ref()
        .map(|base_url| FileProxyContext {
            base_url: base_url.clone(),
            org_id: record.org_id.clone(),
            integration_id: record.integration_id.clone(),
            streaming_use_cases: Default::default(),
        });
    let mut context = MappingContext::processing(shared.timeout, file_proxy);
    context.environment = Some(mapping_environment(&shared.config, &record.org_id));
    let result = caught(|| {
        test_abort_on(record.payload.as_bytes());
        // The payload limits first: the converters stop at the first node past one, before a
        // tree deeper than the limit exists.
        payload::parse_document(record.format, &record.payload, &shared.limits)
            .and_then(|document| map_document(&compiled, document, &context))
    });
    match result.and_then(|result| checked(&compiled, result)) {
        Ok((result, violations)) => Outcome::Mapped {
            record,
            use_case,
            result,
            violations,
        },
        Err(error) => Outcome::Failed {
            record,
            use_case,
            error,
        },
    }
}

/// The mapping output against the core entity schemas, at the use case's `validation` level:
/// `warn` keeps the result, its violations added to `warnings[]` and returned for the warning
/// span; `strict` makes any violation the record's failure (error span, dead letter).
fn checked(
    compiled: &erp_mapping::CompiledConfiguration,
    mut result: erp_mapping::MappingResult,
) -> Result<(erp_mapping::MappingResult, Vec<OutputViolation>), MappingError> {
    let level = compiled.validation();
    let violations = erp_mapping::validation::check(level, &result);
    if violations.is_empty() {
        return Ok((result, violations));
    }
    if level == ValidationLevel::Strict {
        return Err(MappingError::SchemaViolation { violations });
    }
    result
        .warnings
        .extend(violations.iter().map(OutputViolation::to_warning));
    Ok((result, violations))
}

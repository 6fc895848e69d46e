//! Plan: each record's fate before mapping: dropped as a duplicate (the dedup store), ignored
//! (no integration or use case), or handed to the mapping with its compiled configuration.

use std::sync::Arc;
use std::time::Duration;

use erp_runtime::config::{Route, UseCaseEntry};
use erp_schemas::inbound::InboundEventRecord;

use crate::error::ProcessorError;
use crate::outcome::{Outcome, PlatformHead};
use crate::state::{PendingState, Verdict};
use erp_mapping::CompiledConfiguration;
use erp_mapping::outbound::CompiledOutbound;

use super::map::MappingCache;
use super::pipeline::*;

/// Finds the enabled outbound use cases of the event's organisation subscribed to its name. A
/// use case whose configuration no longer compiles is reported as failed for this event; the
/// healthy ones still run.
pub(super) fn plan_outbound(
    config: &erp_runtime::ConfigState,
    cache: &mut MappingCache,
    head: PlatformHead,
    timeout: Duration,
) -> Plan {
    let mut use_cases = Vec::new();
    let mut failed = Vec::new();
    for entry in config.enabled_use_cases(&head.org_id, "outbound") {
        match cache.outbound(entry) {
            Ok(compiled) if compiled.event == head.event_name => {
                use_cases.push((Box::new(entry.clone()), compiled))
            }
            Ok(_) => {}
            Err(error) => failed.push((Box::new(entry.clone()), Err(error))),
        }
    }
    if use_cases.is_empty() && failed.is_empty() {
        return Plan::Done(Outcome::NotSubscribed);
    }
    if !failed.is_empty() {
        let mut results = failed;
        for (entry, compiled) in use_cases {
            let result = compiled.apply_for_delivery(&head.event, timeout);
            results.push((entry, result));
        }
        return Plan::Done(Outcome::Outbound { head, results });
    }
    Plan::Outbound { head, use_cases }
}

/// A platform event checked against the core event catalog: planned as [`plan_outbound`] when
/// valid, else an [`Outcome::InvalidEvent`] naming the outbound use cases subscribed to it.
pub(super) fn plan_platform(
    config: &erp_runtime::ConfigState,
    cache: &mut MappingCache,
    head: PlatformHead,
    timeout: Duration,
) -> Plan {
    let Err(error) = erp_schemas::catalog::events().check(&head.event) else {
        return plan_outbound(config, cache, head, timeout);
    };
    let use_cases = config
        .enabled_use_cases(&head.org_id, "outbound")
        .into_iter()
        .filter(|entry| {
            cache
                .outbound(entry)
                .is_ok_and(|compiled| compiled.event == head.event_name)
        })
        .map(|entry| Box::new(entry.clone()))
        .collect();
    Plan::Done(Outcome::InvalidEvent {
        head,
        error,
        use_cases,
    })
}

/// A record's fate before mapping.
pub(super) enum Plan {
    Done(Outcome),
    Map {
        record: Box<InboundEventRecord>,
        use_case: Box<UseCaseEntry>,
        compiled: Arc<CompiledConfiguration>,
    },
    Outbound {
        head: PlatformHead,
        use_cases: Vec<(Box<UseCaseEntry>, Arc<CompiledOutbound>)>,
    },
}

impl Worker {
    /// Decides an inbound record: unknown integration or use case (ignored), duplicate within
    /// the window (skipped), or mapped with its compiled configuration.
    pub(super) fn plan(
        &self,
        config: &erp_runtime::ConfigState,
        cache: &mut MappingCache,
        pending: &mut PendingState,
        record: InboundEventRecord,
        partition: i32,
    ) -> Result<Plan, ProcessorError> {
        let record = Box::new(record);
        if config
            .integration(&record.org_id, &record.integration_id)
            .is_none()
        {
            return Ok(Plan::Done(Outcome::Ignored {
                message: format!(
                    "integration {} does not exist (any more)",
                    record.integration_id
                ),
                record,
                code: "INTEGRATION_NOT_FOUND",
                use_case: None,
            }));
        }
        if let Some(dedup_id) = &record.deduplication_id {
            let verdict = self.store.check(
                pending,
                &record.integration_id,
                dedup_id,
                &record.event_id,
                record.received_at,
                partition,
            )?;
            if let Verdict::Duplicate { first_event_id, .. } = verdict {
                return Ok(Plan::Done(Outcome::Duplicate {
                    record,
                    first_event_id,
                }));
            }
        }
        let route = config.route(
            &record.org_id,
            &record.integration_id,
            record.use_case_slug.as_deref(),
            record.event_name.as_deref(),
        );
        let routing_key = record
            .use_case_slug
            .clone()
            .or_else(|| record.event_name.clone())
            .unwrap_or_default();
        Ok(match route {
            Route::NotFound => Plan::Done(Outcome::Ignored {
                message: format!("no inbound use case matches {routing_key:?}"),
                record,
                code: "USE_CASE_NOT_FOUND",
                use_case: None,
            }),
            Route::Disabled(entry) => Plan::Done(Outcome::Ignored {
                message: format!("use case {:?} is disabled", entry.use_case.name),
                record,
                code: "USE_CASE_DISABLED",
                use_case: Some(Box::new(entry.clone())),
            }),
            Route::Matched(entry) => match cache.get(entry) {
                Ok(compiled) => Plan::Map {
                    record,
                    use_case: Box::new(entry.clone()),
                    compiled,
                },
                Err(error) => Plan::Done(Outcome::Failed {
                    record,
                    use_case: Box::new(entry.clone()),
                    error,
                }),
            },
        })
    }
}

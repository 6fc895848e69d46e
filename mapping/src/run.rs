//! One mapping run: what the entity and meter-reading mappings share while they walk a payload.

use jsonata_core::value::JValue;

use crate::compile::ReadingMode;
use crate::context::MappingContext;
use crate::jsonata::Evaluation;

/// One mapping run: the payload, its evaluation and the context.
pub(crate) struct Run<'a> {
    pub(crate) evaluation: Evaluation,
    pub(crate) context: &'a MappingContext,
    pub(crate) root: JValue,
}

/// The items a (pre-processed) value fans out to.
pub(crate) fn items_of(data: &JValue) -> Vec<JValue> {
    match data {
        JValue::Undefined => Vec::new(),
        JValue::Array(items) => items.iter().cloned().collect(),
        other => vec![other.clone()],
    }
}

/// Used by the meter-reading mapping: whether the mode prunes.
pub(crate) fn prunes(mode: ReadingMode) -> bool {
    mode == ReadingMode::UpsertPruneScope
}

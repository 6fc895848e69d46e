//! Limits on untrusted payloads: how deep, how large and how many nodes an ERP event's payload
//! may be. One definition, so the ingest (which refuses a violating event at the door) and the
//! processor (which checks again before mapping, for records written before the limits or by
//! another producer) agree on what is acceptable.
//!
//! The defaults are far above any real ERP document and far below what the code reading a
//! payload can handle: the deepest recursion over a payload tree is bounded by `max_depth`, and
//! the converters refuse to build a deeper tree at all.

use serde::{Deserialize, Serialize};

/// Default deepest nesting of a payload (elements in XML, objects and arrays in JSON).
pub const DEFAULT_MAX_DEPTH: usize = 64;
/// Highest `max_depth` a deployment may configure: code that walks a payload tree recurses once
/// per level, and this many levels fit every thread's stack that does so.
pub const HARD_MAX_DEPTH: usize = 1000;
/// Default largest payload, in bytes (UTF-8).
pub const DEFAULT_MAX_BYTES: usize = 5 * 1024 * 1024;
/// Default most nodes of a payload (XML elements and attributes; JSON values).
pub const DEFAULT_MAX_ELEMENTS: usize = 200_000;
/// Default longest single string (an XML attribute value or text, a JSON string), in bytes.
pub const DEFAULT_MAX_STRING_BYTES: usize = 1024 * 1024;

/// The limits a payload is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadLimits {
    /// Deepest nesting: the root element (or the top-level object) is depth 1.
    pub max_depth: usize,
    /// Largest payload text, in bytes.
    pub max_bytes: usize,
    /// Most nodes (XML: elements and attributes; JSON: objects, arrays and scalar values).
    pub max_elements: usize,
    /// Longest single attribute value, text or string, in bytes.
    pub max_string_bytes: usize,
}

impl Default for PayloadLimits {
    fn default() -> Self {
        Self {
            max_depth: DEFAULT_MAX_DEPTH,
            max_bytes: DEFAULT_MAX_BYTES,
            max_elements: DEFAULT_MAX_ELEMENTS,
            max_string_bytes: DEFAULT_MAX_STRING_BYTES,
        }
    }
}

/// Which limit a payload exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `max_depth`.
    Depth,
    /// `max_bytes`.
    Bytes,
    /// `max_elements`.
    Elements,
    /// `max_string_bytes`.
    StringBytes,
}

impl Limit {
    /// The limit's name as operators configure it (the flag without `--payload-`).
    pub fn name(self) -> &'static str {
        match self {
            Limit::Depth => "max-depth",
            Limit::Bytes => "max-bytes",
            Limit::Elements => "max-elements",
            Limit::StringBytes => "max-string-bytes",
        }
    }
}

/// A payload over one of its limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payload exceeds the {} limit of {allowed}{}", limit.name(), self.detail())]
pub struct LimitExceeded {
    /// Which limit.
    pub limit: Limit,
    /// The configured value.
    pub allowed: usize,
    /// The value found, when the check measured it whole (sizes); `None` when it stopped at the
    /// first node past the limit (depth, counts).
    pub found: Option<usize>,
}

impl LimitExceeded {
    /// The error code of every limit violation.
    pub const CODE: &'static str = "PAYLOAD_LIMIT_EXCEEDED";

    fn detail(&self) -> String {
        match self.found {
            Some(found) => format!(" ({found})"),
            None => String::new(),
        }
    }
}

impl PayloadLimits {
    /// `Err` when `value` is over `allowed` for `limit`.
    pub fn check(limit: Limit, allowed: usize, value: usize) -> Result<(), LimitExceeded> {
        if value > allowed {
            Err(LimitExceeded {
                limit,
                allowed,
                found: matches!(limit, Limit::Bytes | Limit::StringBytes).then_some(value),
            })
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_violation_names_its_limit() {
        let error = PayloadLimits::check(Limit::Depth, 64, 65).unwrap_err();
        assert_eq!(
            error.to_string(),
            "payload exceeds the max-depth limit of 64"
        );
        let error = PayloadLimits::check(Limit::Bytes, 10, 12).unwrap_err();
        assert_eq!(
            error.to_string(),
            "payload exceeds the max-bytes limit of 10 (12)"
        );
        assert!(PayloadLimits::check(Limit::Elements, 3, 3).is_ok());
    }
}

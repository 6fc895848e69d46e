use crate::jsonata::JsonataError;

/// Why a configuration cannot be used or a payload cannot be mapped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MappingError {
    /// The configuration does not follow the mapping grammar. Found when a use case is saved or
    /// simulated; `location` names the entity, field and key at fault.
    #[error("invalid mapping configuration at {location}: {message}")]
    InvalidConfiguration { location: String, message: String },
    /// A JSONata expression of the configuration does not parse.
    #[error("invalid JSONata at {location} (`{expression}`): {error}")]
    InvalidExpression {
        location: String,
        expression: String,
        error: JsonataError,
    },
    /// A JSONata expression failed while mapping a payload.
    #[error("JSONata at {location} (`{expression}`) failed: {error}")]
    ExpressionFailed {
        location: String,
        expression: String,
        error: JsonataError,
    },
    /// A unique identifier attribute was not mapped or is empty.
    #[error("required unique identifier field is empty: {entity_schema}.{attribute} at {location}")]
    MissingIdentifier {
        location: String,
        entity_schema: String,
        attribute: String,
    },
    /// A meter reading misses a required attribute or has one the metering API rejects.
    #[error("invalid meter reading at {location}: {message}")]
    InvalidReading { location: String, message: String },
    /// The payload cannot be read in its declared format.
    #[error("payload is not valid {format}: {message}")]
    InvalidPayload { format: String, message: String },
    /// The payload is over one of the deployment's payload limits.
    #[error(transparent)]
    PayloadLimit(#[from] erp_schemas::limits::LimitExceeded),
    /// The mapping code failed internally (a panic, caught): a defect, reported for this
    /// record only.
    #[error("internal failure while mapping: {0}")]
    Internal(String),
    /// An outbound mapping's delivery type has no runtime in this deployment (`file_proxy`,
    /// stored before the API refused it on save): the event is dead-lettered, never reported
    /// as delivered.
    #[error("{location}: delivery type {delivery} is not supported by this deployment")]
    DeliveryNotSupported { location: String, delivery: String },
    /// The mapping output breaks the core entity schemas and the use case's `validation` is
    /// `strict`: the event is dead-lettered, never half-applied.
    #[error(
        "the mapping output does not match the core entity schemas: {}",
        violation_summary(violations)
    )]
    SchemaViolation {
        violations: Vec<erp_schemas::catalog::OutputViolation>,
    },
}

/// `a; b; c` of the first few violations (paths and rules, never values).
fn violation_summary(violations: &[erp_schemas::catalog::OutputViolation]) -> String {
    const SHOWN: usize = 5;
    let mut text = violations
        .iter()
        .take(SHOWN)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    if violations.len() > SHOWN {
        text.push_str(&format!(" (+{} more)", violations.len() - SHOWN));
    }
    text
}

impl MappingError {
    /// The monitoring / error code of this failure.
    pub fn code(&self) -> &'static str {
        match self {
            MappingError::InvalidConfiguration { .. } | MappingError::InvalidExpression { .. } => {
                "USE_CASE_INVALID_CONFIG"
            }
            MappingError::ExpressionFailed { .. } => "MAPPING_EXPRESSION_FAILED",
            MappingError::MissingIdentifier { .. } => "MISSING_IDENTIFIER",
            MappingError::InvalidReading { .. } => "METER_READING_INVALID",
            MappingError::InvalidPayload { .. } => "INVALID_PAYLOAD",
            MappingError::PayloadLimit(_) => erp_schemas::limits::LimitExceeded::CODE,
            MappingError::Internal(_) => "MAPPING_PANICKED",
            // The API's code for the same refusal on save.
            MappingError::DeliveryNotSupported { .. } => "DELIVERY_TYPE_NOT_SUPPORTED",
            MappingError::SchemaViolation { .. } => "SCHEMA_VIOLATION",
        }
    }

    /// The JSONata error code behind this failure, if any.
    pub fn jsonata_code(&self) -> Option<&str> {
        match self {
            MappingError::InvalidExpression { error, .. }
            | MappingError::ExpressionFailed { error, .. } => error.code.as_deref(),
            _ => None,
        }
    }
}

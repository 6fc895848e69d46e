//! Reading an event's payload in its declared format into the JSON tree the mapping sees.

use serde_json::Value;

use crate::mapping::MappingError;
use erp_schemas::inbound::PayloadFormat;

/// Parses a payload. JSON only in this version; XML payloads are accepted by the ingest and
/// dead-lettered here with `INVALID_PAYLOAD` until XML mapping lands, so they can be replayed.
pub fn parse(format: PayloadFormat, text: &str) -> Result<Value, MappingError> {
    match format {
        PayloadFormat::Json => {
            serde_json::from_str(text).map_err(|e| MappingError::InvalidPayload {
                format: "json".into(),
                message: e.to_string(),
            })
        }
        PayloadFormat::Xml => Err(MappingError::InvalidPayload {
            format: "xml".into(),
            message: "XML payloads are not mapped by this version".into(),
        }),
    }
}

//! An endpoint's `batch` setting (our extension of `WebhookConfig`): `{maxEvents}`, events per
//! request, which the dispatcher groups from one poll batch.

use serde_json::{Map, Value};

use crate::error::ConfigError;

/// The most events one request may carry: a retried batch is one Kafka record holding every
/// member, which has to stay well below the broker's record size limit.
pub const MAX_EVENTS: usize = 100;

/// An endpoint's `batch` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Most events per request.
    pub max_events: usize,
}

impl BatchConfig {
    /// Reads the endpoint's `batch` field, if set. Errors name the field.
    pub fn parse(config: &Map<String, Value>) -> Result<Option<Self>, ConfigError> {
        let Some(value) = config.get("batch").filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        let Some(map) = value.as_object() else {
            return Err(ConfigError::new("batch", "must be an object"));
        };
        if let Some(key) = map.keys().find(|k| *k != "maxEvents") {
            return Err(ConfigError::new(
                format!("batch.{key}"),
                "is not a known field (maxEvents)",
            ));
        }
        match map.get("maxEvents").and_then(Value::as_u64) {
            Some(n) if (1..=MAX_EVENTS as u64).contains(&n) => Ok(Some(Self {
                max_events: n as usize,
            })),
            _ => Err(ConfigError::new(
                "batch.maxEvents",
                format!("must be a whole number from 1 to {MAX_EVENTS}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<Option<BatchConfig>, ConfigError> {
        let Value::Object(map) = json!({ "batch": value }) else {
            unreachable!()
        };
        BatchConfig::parse(&map)
    }

    #[test]
    fn parses_and_names_the_field_in_errors() {
        assert_eq!(
            parse(json!({"maxEvents": 50})),
            Ok(Some(BatchConfig { max_events: 50 }))
        );
        assert_eq!(parse(Value::Null), Ok(None));
        let field = |v| parse(v).err().map(|e| e.field);
        assert_eq!(field(json!(true)).as_deref(), Some("batch"));
        assert_eq!(field(json!({})).as_deref(), Some("batch.maxEvents"));
        assert_eq!(
            field(json!({"maxEvents": 0})).as_deref(),
            Some("batch.maxEvents")
        );
        assert_eq!(
            field(json!({"maxEvents": 101})).as_deref(),
            Some("batch.maxEvents")
        );
        assert_eq!(
            field(json!({"maxEvents": 5, "maxWaitMs": 10})).as_deref(),
            Some("batch.maxWaitMs")
        );
    }
}

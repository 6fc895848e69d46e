//! An endpoint's `ordering` setting (our extension of `WebhookConfig`): `"none"` (the default)
//! or `"per_key"`, strict order per Kafka record key, which the dispatcher keeps with lanes.

use serde_json::{Map, Value};

use crate::error::ConfigError;

/// The `WebhookConfig` field that turns per-key ordering on.
pub const ORDERING_FIELD: &str = "ordering";
/// `ordering` value: events of one key are delivered one after another, in topic order.
pub const PER_KEY: &str = "per_key";
/// `ordering` value (and the default): deliveries are concurrent, retries take their own way.
pub const UNORDERED: &str = "none";

/// Validates the `ordering` field; returns whether it asks for per-key order.
pub fn parse_mode(config: &Map<String, Value>) -> Result<bool, ConfigError> {
    match config.get(ORDERING_FIELD) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::String(mode)) if mode == UNORDERED => Ok(false),
        Some(Value::String(mode)) if mode == PER_KEY => Ok(true),
        Some(_) => Err(ConfigError::new(
            ORDERING_FIELD,
            format!("must be \"{UNORDERED}\" or \"{PER_KEY}\""),
        )),
    }
}

/// Whether an endpoint's configuration asks for per-key order (an invalid value, which the API
/// refuses on save, counts as no).
pub fn is_ordered(config: &Map<String, Value>) -> bool {
    parse_mode(config).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_mode_is_validated() {
        let config = |v: Value| {
            json!({ "ordering": v })
                .as_object()
                .cloned()
                .unwrap_or_default()
        };
        assert_eq!(parse_mode(&Map::new()), Ok(false));
        assert_eq!(parse_mode(&config(Value::Null)), Ok(false));
        assert_eq!(parse_mode(&config(json!("none"))), Ok(false));
        assert_eq!(parse_mode(&config(json!("per_key"))), Ok(true));
        let error = parse_mode(&config(json!("fifo"))).unwrap_err();
        assert_eq!(error.field, "ordering");
        assert!(parse_mode(&config(json!(true))).is_err());
    }
}

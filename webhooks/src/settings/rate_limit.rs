//! An endpoint's `rateLimit` setting (our extension of `WebhookConfig`; epilot's API has no
//! such field): `{requestsPerSecond, burst?}`. The dispatcher enforces it with a token bucket.

use serde_json::{Map, Value};

use crate::error::ConfigError;

/// The largest `requestsPerSecond` and `burst` accepted: beyond that a limit limits nothing a
/// single dispatcher could send anyway.
pub const MAX_RATE: f64 = 100_000.0;

/// A rate limit: `per_second` requests on average, at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Tokens regained per second.
    pub per_second: f64,
    /// The bucket's size: requests that may go out back to back after a quiet spell.
    pub burst: u32,
}

impl RateLimit {
    /// A limit of `per_second` with `burst` (`None`: one second's worth, at least 1).
    pub fn new(per_second: f64, burst: Option<u32>) -> Result<Self, String> {
        if !per_second.is_finite() || per_second <= 0.0 || per_second > MAX_RATE {
            return Err(format!("must be a number above 0 and at most {MAX_RATE}"));
        }
        let burst = burst.unwrap_or_else(|| per_second.ceil() as u32).max(1);
        Ok(Self { per_second, burst })
    }

    /// Reads the endpoint's `rateLimit` field, if set. Errors name the field.
    pub fn parse(config: &Map<String, Value>) -> Result<Option<Self>, ConfigError> {
        let Some(value) = config.get("rateLimit").filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        let Some(map) = value.as_object() else {
            return Err(ConfigError::new("rateLimit", "must be an object"));
        };
        for key in map.keys() {
            if key != "requestsPerSecond" && key != "burst" {
                return Err(ConfigError::new(
                    format!("rateLimit.{key}"),
                    "is not a known field (requestsPerSecond, burst)",
                ));
            }
        }
        let per_second = match map.get("requestsPerSecond") {
            Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
            None | Some(Value::Null) => {
                return Err(ConfigError::new(
                    "rateLimit.requestsPerSecond",
                    "is required",
                ));
            }
            Some(_) => {
                return Err(ConfigError::new(
                    "rateLimit.requestsPerSecond",
                    "must be a number",
                ));
            }
        };
        let burst = match map.get("burst") {
            None | Some(Value::Null) => None,
            Some(value) => match value.as_u64() {
                Some(n) if n >= 1 && n as f64 <= MAX_RATE => Some(n as u32),
                _ => {
                    return Err(ConfigError::new(
                        "rateLimit.burst",
                        format!("must be a whole number from 1 to {MAX_RATE}"),
                    ));
                }
            },
        };
        Self::new(per_second, burst)
            .map(Some)
            .map_err(|message| ConfigError::new("rateLimit.requestsPerSecond", message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<Option<RateLimit>, ConfigError> {
        let Value::Object(map) = json!({ "rateLimit": value }) else {
            unreachable!()
        };
        RateLimit::parse(&map)
    }

    #[test]
    fn parses_and_names_the_field_in_errors() {
        assert_eq!(
            parse(json!({"requestsPerSecond": 2.5})).ok().flatten(),
            Some(RateLimit {
                per_second: 2.5,
                burst: 3
            })
        );
        assert_eq!(
            parse(json!({"requestsPerSecond": 10, "burst": 1}))
                .ok()
                .flatten()
                .map(|l| l.burst),
            Some(1)
        );
        assert_eq!(parse(Value::Null), Ok(None));
        let field = |v| parse(v).err().map(|e| e.field);
        assert_eq!(field(json!(5)).as_deref(), Some("rateLimit"));
        assert_eq!(
            field(json!({})).as_deref(),
            Some("rateLimit.requestsPerSecond")
        );
        assert_eq!(
            field(json!({"requestsPerSecond": 0})).as_deref(),
            Some("rateLimit.requestsPerSecond")
        );
        assert_eq!(
            field(json!({"requestsPerSecond": "5"})).as_deref(),
            Some("rateLimit.requestsPerSecond")
        );
        assert_eq!(
            field(json!({"requestsPerSecond": 5, "burst": 0})).as_deref(),
            Some("rateLimit.burst")
        );
        assert_eq!(
            field(json!({"requestsPerSecond": 5, "burst": 1.5})).as_deref(),
            Some("rateLimit.burst")
        );
        assert_eq!(
            field(json!({"requestsPerSecond": 5, "perMinute": 1})).as_deref(),
            Some("rateLimit.perMinute")
        );
    }
}

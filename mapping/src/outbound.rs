//! Outbound use cases (epilot spec §8.1): a platform core event (`erp.platform.events`) that
//! matches an enabled outbound use case's `event_catalog_event` and passes its `event_filter`
//! becomes, per enabled mapping, one message for the ERP side: the mapping's `jsonata_expression`
//! output for a webhook delivery, the raw event for the poll stream.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::MappingError;
use crate::jsonata::{Evaluation, Expression, to_json, to_jvalue};

/// Where a mapping's messages go.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    Webhook { webhook_id: String },
    Poll,
    FileProxy { use_case_slug: String },
}

/// One compiled outbound mapping.
#[derive(Debug, Clone)]
pub struct CompiledOutboundMapping {
    pub id: String,
    pub name: String,
    pub enabled: bool,
    pub expression: Option<Expression>,
    pub delivery: Delivery,
    /// The delivery configuration as written, carried on the message.
    pub delivery_config: Value,
}

/// A compiled outbound configuration.
#[derive(Debug, Clone)]
pub struct CompiledOutbound {
    pub event: String,
    pub filter: Option<Expression>,
    pub ack_tracking: bool,
    pub mappings: Vec<CompiledOutboundMapping>,
}

/// One message an event yields.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundMessage {
    pub mapping_id: String,
    pub delivery: Value,
    pub payload: Value,
}

/// What an outbound use case makes of an event.
#[derive(Debug, Clone, PartialEq)]
pub enum OutboundOutcome {
    /// The filter said no.
    Filtered,
    /// Messages to deliver (possibly none, when every mapping is disabled).
    Messages(Vec<OutboundMessage>),
}

fn invalid(location: &str, message: impl Into<String>) -> MappingError {
    MappingError::InvalidConfiguration {
        location: location.to_owned(),
        message: message.into(),
    }
}

fn expression(location: &str, source: &str) -> Result<Expression, MappingError> {
    Expression::compile(source).map_err(|error| MappingError::InvalidExpression {
        location: location.to_owned(),
        expression: source.to_owned(),
        error,
    })
}

fn text<'a>(
    object: &'a Map<String, Value>,
    location: &str,
    key: &str,
) -> Result<Option<&'a str>, MappingError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(&format!("{location}.{key}"), "must be a string")),
    }
}

impl CompiledOutbound {
    /// Compiles an outbound use case's `configuration`. Mappings without an `id` get `mapping-<n>`
    /// (the API assigns real ids before saving).
    pub fn compile(configuration: &Value) -> Result<Self, MappingError> {
        let location = "configuration";
        let object = configuration
            .as_object()
            .ok_or_else(|| invalid(location, "must be an object"))?;
        let event = text(object, location, "event_catalog_event")?
            .filter(|e| !e.is_empty())
            .ok_or_else(|| invalid(location, "event_catalog_event is required"))?
            .to_owned();
        let filter = text(object, location, "event_filter")?
            .filter(|f| !f.trim().is_empty())
            .map(|f| expression(&format!("{location}.event_filter"), f))
            .transpose()?;
        let ack_tracking = match text(object, location, "ack_tracking")? {
            None | Some("on") => true,
            Some("off") => false,
            Some(other) => {
                return Err(invalid(
                    &format!("{location}.ack_tracking"),
                    format!("must be on or off, not {other:?}"),
                ));
            }
        };
        let mappings = match object.get("mappings") {
            Some(Value::Array(mappings)) if !mappings.is_empty() => mappings,
            _ => return Err(invalid(location, "mappings is required (at least one)")),
        };
        let mut compiled = Vec::with_capacity(mappings.len());
        for (index, mapping) in mappings.iter().enumerate() {
            let here = format!("{location}.mappings[{index}]");
            let mapping = mapping
                .as_object()
                .ok_or_else(|| invalid(&here, "must be an object"))?;
            let name = text(mapping, &here, "name")?
                .filter(|n| !n.is_empty())
                .ok_or_else(|| invalid(&here, "name is required"))?
                .to_owned();
            let here = format!("{here} ({name})");
            let enabled = match mapping.get("enabled") {
                None => true,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(invalid(&format!("{here}.enabled"), "must be a boolean")),
            };
            let delivery_config = mapping
                .get("delivery")
                .filter(|d| d.is_object())
                .cloned()
                .ok_or_else(|| {
                    invalid(
                        &here,
                        "delivery is required ({type: webhook|poll|file_proxy, …})",
                    )
                })?;
            let delivery_object = delivery_config.as_object().cloned().unwrap_or_default();
            let delivery_location = format!("{here}.delivery");
            let delivery = match text(&delivery_object, &delivery_location, "type")? {
                Some("webhook") => Delivery::Webhook {
                    webhook_id: text(&delivery_object, &delivery_location, "webhook_id")?
                        .filter(|w| !w.is_empty())
                        .ok_or_else(|| {
                            invalid(
                                &delivery_location,
                                "webhook_id is required for webhook delivery",
                            )
                        })?
                        .to_owned(),
                },
                Some("poll") => {
                    for (key, range) in [
                        ("retention_days", 1..=90),
                        ("max_delivery_attempts", 1..=100),
                    ] {
                        if let Some(value) = delivery_object.get(key) {
                            let ok = value.as_i64().is_some_and(|n| range.contains(&n));
                            if !ok {
                                return Err(invalid(
                                    &delivery_location,
                                    format!("{key} must be {} to {}", range.start(), range.end()),
                                ));
                            }
                        }
                    }
                    if let Some(policy) =
                        text(&delivery_object, &delivery_location, "poison_policy")?
                        && policy != "dead_letter"
                        && policy != "block"
                    {
                        return Err(invalid(
                            &delivery_location,
                            "poison_policy must be dead_letter or block",
                        ));
                    }
                    Delivery::Poll
                }
                Some("file_proxy") => Delivery::FileProxy {
                    use_case_slug: text(&delivery_object, &delivery_location, "use_case_slug")?
                        .ok_or_else(|| {
                            invalid(
                                &delivery_location,
                                "use_case_slug is required for file_proxy delivery",
                            )
                        })?
                        .to_owned(),
                },
                _ => {
                    return Err(invalid(
                        &delivery_location,
                        "type must be webhook, poll or file_proxy",
                    ));
                }
            };
            let source = text(mapping, &here, "jsonata_expression")?;
            // Required for webhook; ignored (not even parsed) for poll; rejected for file_proxy.
            let expression = match (&delivery, source) {
                (Delivery::Webhook { .. }, Some(source)) => {
                    Some(expression(&format!("{here}.jsonata_expression"), source)?)
                }
                (Delivery::Webhook { .. }, None) => {
                    return Err(invalid(
                        &here,
                        "jsonata_expression is required for webhook delivery",
                    ));
                }
                (Delivery::FileProxy { .. }, Some(_)) => {
                    return Err(invalid(
                        &here,
                        "jsonata_expression is not allowed for file_proxy delivery",
                    ));
                }
                _ => None,
            };
            compiled.push(CompiledOutboundMapping {
                id: text(mapping, &here, "id")?
                    .map_or_else(|| format!("mapping-{index}"), str::to_owned),
                name,
                enabled,
                expression,
                delivery,
                delivery_config,
            });
        }
        if compiled
            .iter()
            .filter(|m| m.delivery == Delivery::Poll)
            .count()
            > 1
        {
            return Err(invalid(location, "at most one poll mapping per use case"));
        }
        Ok(Self {
            event,
            filter,
            ack_tracking,
            mappings: compiled,
        })
    }

    /// What [`Self::apply`] yields, for delivery: a message for a `file_proxy` mapping is an
    /// error, since nothing runs a file proxy yet and such a message would be reported as a
    /// success (with a pending ACK) and never delivered. The processor calls this; templates
    /// and simulations call `apply` and see what the mapping makes.
    pub fn apply_for_delivery(
        &self,
        event: &Value,
        timeout: Duration,
    ) -> Result<OutboundOutcome, MappingError> {
        let outcome = self.apply(event, timeout)?;
        if let OutboundOutcome::Messages(messages) = &outcome
            && let Some(mapping) = self.mappings.iter().find(|m| {
                matches!(m.delivery, Delivery::FileProxy { .. })
                    && messages.iter().any(|message| message.mapping_id == m.id)
            })
        {
            return Err(MappingError::DeliveryNotSupported {
                location: format!("configuration.mappings ({}).delivery", mapping.name),
                delivery: "file_proxy".into(),
            });
        }
        Ok(outcome)
    }

    /// Applies the use case to an event: filter, then every enabled mapping. A filter or
    /// mapping that throws is an error (the caller records it; nothing is delivered for this use
    /// case).
    pub fn apply(&self, event: &Value, timeout: Duration) -> Result<OutboundOutcome, MappingError> {
        let root = to_jvalue(event);
        let evaluation = Evaluation::new(&root, timeout);
        if let Some(filter) = &self.filter {
            let passes = evaluation.evaluate(filter, &root).map_err(|error| {
                MappingError::ExpressionFailed {
                    location: "configuration.event_filter".into(),
                    expression: filter.source().to_owned(),
                    error,
                }
            })?;
            if !truthy_json(to_json(&passes)) {
                return Ok(OutboundOutcome::Filtered);
            }
        }
        let mut messages = Vec::new();
        for mapping in self.mappings.iter().filter(|m| m.enabled) {
            let payload = match (&mapping.delivery, &mapping.expression) {
                (Delivery::Webhook { .. }, Some(expression)) => {
                    let output = evaluation.evaluate(expression, &root).map_err(|error| {
                        MappingError::ExpressionFailed {
                            location: format!(
                                "configuration.mappings ({}).jsonata_expression",
                                mapping.name
                            ),
                            expression: expression.source().to_owned(),
                            error,
                        }
                    })?;
                    match to_json(&output) {
                        Some(payload) => payload,
                        // Nothing to send for this event.
                        None => continue,
                    }
                }
                _ => event.clone(),
            };
            messages.push(OutboundMessage {
                mapping_id: mapping.id.clone(),
                delivery: mapping.delivery_config.clone(),
                payload,
            });
        }
        Ok(OutboundOutcome::Messages(messages))
    }
}

fn truthy_json(value: Option<Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|n| n != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(items)) => items.into_iter().any(|i| truthy_json(Some(i))),
        Some(Value::Object(map)) => !map.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_file_proxy_mapping_fails_its_event_instead_of_reporting_success() {
        let compiled = CompiledOutbound::compile(&json!({
            "event_catalog_event": "ContractUpdated",
            "mappings": [{"name": "Upload", "enabled": true,
                "delivery": {"type": "file_proxy", "use_case_slug": "upload-documents"}}]
        }))
        .expect("compiles: stored configurations stay readable");
        let event = json!({"contract": 1});
        assert!(
            compiled.apply(&event, Duration::from_secs(1)).is_ok(),
            "the mapping itself works"
        );
        let error = compiled
            .apply_for_delivery(&event, Duration::from_secs(1))
            .expect_err("no file proxy runs");
        assert_eq!(error.code(), "DELIVERY_TYPE_NOT_SUPPORTED");
    }

    const T: Duration = Duration::from_secs(1);

    fn config() -> Value {
        json!({"event_catalog_event": "InstallmentUpdated", "event_filter": "contract.installment_amount > 0",
        "mappings": [
          {"id": "m1", "name": "ERP", "enabled": true,
           "jsonata_expression": "{\"acknowledgeId\": _ack_id, \"contract_number\": contract.contract_number, \"value\": $string(contract.installment_amount)}",
           "delivery": {"type": "webhook", "webhook_id": "wh-1"}},
          {"id": "m2", "name": "Queue", "enabled": true, "delivery": {"type": "poll", "retention_days": 30}},
          {"id": "m3", "name": "Off", "enabled": false, "jsonata_expression": "1", "delivery": {"type": "webhook", "webhook_id": "wh-2"}}
        ]})
    }

    #[test]
    fn filter_then_every_enabled_mapping() {
        let compiled = CompiledOutbound::compile(&config()).expect("compiles");
        let event = json!({"_ack_id": "a-1", "_event_name": "InstallmentUpdated", "contract": {"contract_number": "V-1", "installment_amount": 8900}});
        let OutboundOutcome::Messages(messages) = compiled.apply(&event, T).expect("applies")
        else {
            panic!("filtered")
        };
        assert_eq!(messages.len(), 2);
        assert_eq!(
            messages[0].payload,
            json!({"acknowledgeId": "a-1", "contract_number": "V-1", "value": "8900"})
        );
        assert_eq!(messages[1].payload, event);
        let zero = json!({"contract": {"installment_amount": 0}});
        assert_eq!(
            compiled.apply(&zero, T).expect("applies"),
            OutboundOutcome::Filtered
        );
    }

    #[test]
    fn a_throwing_filter_is_an_error() {
        let mut config = config();
        config["event_filter"] = json!("$error('no')");
        let compiled = CompiledOutbound::compile(&config).expect("compiles");
        assert_eq!(
            compiled.apply(&json!({}), T).unwrap_err().code(),
            "MAPPING_EXPRESSION_FAILED"
        );
    }

    #[test]
    fn configuration_rules() {
        let cases = [
            (json!({"mappings": []}), "event_catalog_event"),
            (
                json!({"event_catalog_event": "X", "mappings": []}),
                "at least one",
            ),
            (
                json!({"event_catalog_event": "X", "mappings": [{"name": "a", "delivery": {"type": "webhook", "webhook_id": "w"}}]}),
                "jsonata_expression is required",
            ),
            (
                json!({"event_catalog_event": "X", "mappings": [{"name": "a", "delivery": {"type": "poll"}}, {"name": "b", "delivery": {"type": "poll"}}]}),
                "at most one poll",
            ),
            (
                json!({"event_catalog_event": "X", "event_filter": "((", "mappings": [{"name": "a", "delivery": {"type": "poll"}}]}),
                "event_filter",
            ),
            (
                json!({"event_catalog_event": "X", "mappings": [{"name": "a", "delivery": {"type": "poll", "retention_days": 365}}]}),
                "retention_days",
            ),
        ];
        for (config, expected) in cases {
            let text = CompiledOutbound::compile(&config).unwrap_err().to_string();
            assert!(text.contains(expected), "{expected:?} not in {text}");
        }
        // Poll mappings carry no expression: it is not even parsed.
        let poll = json!({"event_catalog_event": "X", "mappings": [{"name": "a", "jsonata_expression": "((", "delivery": {"type": "poll"}}]});
        assert!(CompiledOutbound::compile(&poll).is_ok());
    }
}

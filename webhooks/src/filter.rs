//! Endpoint filters: which events an endpoint receives beyond its `eventName`. Both epilot forms
//! are understood: the legacy `filter {keyToFilter, supportedValues}` and `filterConditions`
//! (up to 10 conditions, each a field comparison or a JSONata expression, joined by AND or OR).
//! When both are set, an event must pass both.

use std::cmp::Ordering;
use std::time::Duration;

use serde_json::{Map, Value};

use erp_mapping::jsonata::{self, Expression};

use crate::error::ConfigError;

/// Most conditions in `filterConditions` (epilot's limit).
pub const MAX_CONDITIONS: usize = 10;

/// Longest `jsonata_expression` of a condition (epilot's limit).
const MAX_JSONATA_LEN: usize = 15_000;

/// The operations of a field condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Equals,
    NotEquals,
    AnyOf,
    NoneOf,
    Contains,
    NotContains,
    StartsWith,
    EndsWith,
    GreaterThan,
    LessThan,
    GreaterThanOrEquals,
    LessThanOrEquals,
    IsEmpty,
    IsNotEmpty,
    LengthEquals,
    LengthNotEquals,
    LengthGreaterThan,
    LengthLessThan,
    LengthGreaterThanOrEquals,
    LengthLessThanOrEquals,
}

impl Operation {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "equals" => Self::Equals,
            "not_equals" => Self::NotEquals,
            "any_of" => Self::AnyOf,
            "none_of" => Self::NoneOf,
            "contains" => Self::Contains,
            "not_contains" => Self::NotContains,
            "starts_with" => Self::StartsWith,
            "ends_with" => Self::EndsWith,
            "greater_than" => Self::GreaterThan,
            "less_than" => Self::LessThan,
            "greater_than_or_equals" => Self::GreaterThanOrEquals,
            "less_than_or_equals" => Self::LessThanOrEquals,
            "is_empty" => Self::IsEmpty,
            "is_not_empty" => Self::IsNotEmpty,
            "length_equals" => Self::LengthEquals,
            "length_not_equals" => Self::LengthNotEquals,
            "length_greater_than" => Self::LengthGreaterThan,
            "length_less_than" => Self::LengthLessThan,
            "length_greater_than_or_equals" => Self::LengthGreaterThanOrEquals,
            "length_less_than_or_equals" => Self::LengthLessThanOrEquals,
            _ => return None,
        })
    }

    fn needs_values(self) -> bool {
        !matches!(self, Self::IsEmpty | Self::IsNotEmpty)
    }

    fn length_cmp(self) -> Option<fn(Ordering) -> bool> {
        Some(match self {
            Self::LengthEquals => Ordering::is_eq,
            Self::LengthNotEquals => Ordering::is_ne,
            Self::LengthGreaterThan => Ordering::is_gt,
            Self::LengthLessThan => Ordering::is_lt,
            Self::LengthGreaterThanOrEquals => Ordering::is_ge,
            Self::LengthLessThanOrEquals => Ordering::is_le,
            _ => return None,
        })
    }
}

/// How a field's values compare (`field_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldType {
    String,
    Number,
    Boolean,
    Date,
}

#[derive(Debug, Clone)]
enum Condition {
    Field {
        path: Vec<String>,
        operation: Operation,
        values: Vec<String>,
        field_type: FieldType,
    },
    Jsonata(Expression),
}

/// The filters of one endpoint, parsed and compiled.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Legacy `filter`: the value at the path must be one of the strings.
    legacy: Option<(Vec<String>, Vec<String>)>,
    conditions: Vec<Condition>,
    /// `logical_operator: OR`.
    any: bool,
}

impl Filter {
    /// Parses `filter` and `filterConditions` of a `WebhookConfig` (either may be absent or
    /// null), compiling JSONata conditions.
    pub fn parse(config: &Map<String, Value>) -> Result<Self, ConfigError> {
        let mut filter = Self::default();
        if let Some(legacy) = present(config, "filter") {
            let legacy = legacy
                .as_object()
                .ok_or_else(|| ConfigError::new("filter", "must be an object"))?;
            let key = legacy
                .get("keyToFilter")
                .and_then(Value::as_str)
                .filter(|k| !k.is_empty())
                .ok_or_else(|| {
                    ConfigError::new("filter.keyToFilter", "is required (a dot path)")
                })?;
            let values = strings(legacy.get("supportedValues"), "filter.supportedValues")?;
            filter.legacy = Some((path(key), values));
        }
        let Some(group) = present(config, "filterConditions") else {
            return Ok(filter);
        };
        let group = group
            .as_object()
            .ok_or_else(|| ConfigError::new("filterConditions", "must be an object"))?;
        filter.any = match group.get("logical_operator") {
            None | Some(Value::Null) => false,
            Some(Value::String(op)) if op == "AND" => false,
            Some(Value::String(op)) if op == "OR" => true,
            Some(_) => {
                return Err(ConfigError::new(
                    "filterConditions.logical_operator",
                    "must be AND or OR",
                ));
            }
        };
        let conditions = match group.get("conditions") {
            None | Some(Value::Null) => &Vec::new(),
            Some(Value::Array(items)) => items,
            Some(_) => {
                return Err(ConfigError::new(
                    "filterConditions.conditions",
                    "must be an array",
                ));
            }
        };
        if conditions.len() > MAX_CONDITIONS {
            return Err(ConfigError::new(
                "filterConditions.conditions",
                format!(
                    "at most {MAX_CONDITIONS} conditions, got {}",
                    conditions.len()
                ),
            ));
        }
        for (i, condition) in conditions.iter().enumerate() {
            filter.conditions.push(parse_condition(
                condition,
                &format!("filterConditions.conditions[{i}]"),
            )?);
        }
        Ok(filter)
    }

    /// Whether any filter is set (an endpoint without one receives every event it subscribes
    /// to, without the payload being looked at).
    pub fn is_active(&self) -> bool {
        self.legacy.is_some() || !self.conditions.is_empty()
    }

    /// Whether the event payload passes. `Err` when a JSONata condition fails to evaluate
    /// (including its time limit): the caller decides, never silently.
    pub fn matches(&self, payload: &Value, timeout: Duration) -> Result<bool, String> {
        if let Some((path, values)) = &self.legacy {
            let found = lookup(payload, path);
            let passes = match found {
                Some(Value::Array(items)) => items
                    .iter()
                    .any(|item| values.iter().any(|v| equals(item, v, FieldType::String))),
                Some(value) => values.iter().any(|v| equals(value, v, FieldType::String)),
                None => false,
            };
            if !passes {
                return Ok(false);
            }
        }
        if self.conditions.is_empty() {
            return Ok(true);
        }
        for condition in &self.conditions {
            let passes = evaluate(condition, payload, timeout)?;
            // Short-circuit: OR stops at the first pass, AND at the first failure.
            if passes == self.any {
                return Ok(passes);
            }
        }
        Ok(!self.any)
    }
}

/// A field that is present and not null.
fn present<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|v| !v.is_null())
}

fn strings(value: Option<&Value>, field: &str) -> Result<Vec<String>, ConfigError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                // epilot's schema says strings; numbers and booleans are what users mean.
                Value::Number(n) => Ok(n.to_string()),
                Value::Bool(b) => Ok(b.to_string()),
                _ => Err(ConfigError::new(field, "must be an array of strings")),
            })
            .collect(),
        Some(_) => Err(ConfigError::new(field, "must be an array of strings")),
    }
}

fn parse_condition(value: &Value, at: &str) -> Result<Condition, ConfigError> {
    let map = value
        .as_object()
        .ok_or_else(|| ConfigError::new(at, "must be an object"))?;
    if let Some(source) = present(map, "jsonata_expression") {
        let field = format!("{at}.jsonata_expression");
        if present(map, "field").is_some() || present(map, "operation").is_some() {
            return Err(ConfigError::new(
                at,
                "jsonata_expression and field/operation are mutually exclusive",
            ));
        }
        let source = source
            .as_str()
            .ok_or_else(|| ConfigError::new(&field, "must be a string"))?;
        if source.len() > MAX_JSONATA_LEN {
            return Err(ConfigError::new(
                &field,
                format!("at most {MAX_JSONATA_LEN} characters"),
            ));
        }
        let expression = Expression::compile(source)
            .map_err(|e| ConfigError::new(&field, format!("does not compile: {e}")))?;
        return Ok(Condition::Jsonata(expression));
    }
    let field = present(map, "field")
        .and_then(Value::as_str)
        .filter(|f| !f.is_empty())
        .ok_or_else(|| {
            ConfigError::new(
                format!("{at}.field"),
                "is required (a dot path) unless jsonata_expression is given",
            )
        })?;
    let name = present(map, "operation")
        .and_then(Value::as_str)
        .ok_or_else(|| ConfigError::new(format!("{at}.operation"), "is required"))?;
    let operation = Operation::parse(name).ok_or_else(|| {
        ConfigError::new(
            format!("{at}.operation"),
            format!("unknown operation {name:?}"),
        )
    })?;
    let values = strings(map.get("values"), &format!("{at}.values"))?;
    if operation.needs_values() && values.is_empty() {
        return Err(ConfigError::new(
            format!("{at}.values"),
            format!("{name} needs at least one value"),
        ));
    }
    if operation.length_cmp().is_some() && values[0].parse::<u64>().is_err() {
        return Err(ConfigError::new(
            format!("{at}.values"),
            format!("{name} needs a non-negative integer, got {:?}", values[0]),
        ));
    }
    let field_type = match present(map, "field_type").and_then(Value::as_str) {
        None | Some("string") => FieldType::String,
        Some("number") => FieldType::Number,
        Some("boolean") => FieldType::Boolean,
        Some("date" | "datetime") => FieldType::Date,
        Some(other) => {
            return Err(ConfigError::new(
                format!("{at}.field_type"),
                format!("unknown field_type {other:?}"),
            ));
        }
    };
    Ok(Condition::Field {
        path: path(field),
        operation,
        values,
        field_type,
    })
}

/// `a.b[1].c` and `a.b.1.c` alike.
fn path(field: &str) -> Vec<String> {
    field
        .replace('[', ".")
        .replace(']', "")
        .split('.')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn lookup<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |current, key| match current {
        Value::Object(map) => map.get(key),
        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

fn evaluate(condition: &Condition, payload: &Value, timeout: Duration) -> Result<bool, String> {
    match condition {
        Condition::Jsonata(expression) => jsonata::evaluate_json(expression, payload, timeout)
            .map(|value| value.as_ref().is_some_and(truthy))
            .map_err(|e| format!("filter expression failed: {e}")),
        Condition::Field {
            path,
            operation,
            values,
            field_type,
        } => Ok(field_matches(
            lookup(payload, path),
            *operation,
            values,
            *field_type,
        )),
    }
}

/// JSONata's `$boolean`.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => items.iter().any(truthy),
        Value::Object(map) => !map.is_empty(),
    }
}

fn is_empty(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(items)) => items.is_empty(),
        Some(Value::Object(map)) => map.is_empty(),
        Some(_) => false,
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn millis(text: &str) -> Option<i128> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(at) = time::OffsetDateTime::parse(text, &Rfc3339) {
        return Some(at.unix_timestamp_nanos() / 1_000_000);
    }
    let date = time::Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    );
    date.ok()
        .map(|d| d.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000)
}

/// Orders a field value against a configured value: numerically when both are numbers (or the
/// field type says number), as instants for dates, else as text.
fn compare(value: &Value, wanted: &str, field_type: FieldType) -> Option<Ordering> {
    let numeric = field_type == FieldType::Number || value.is_number();
    if numeric && let (Some(a), Ok(b)) = (number(value), wanted.trim().parse::<f64>()) {
        return a.partial_cmp(&b);
    }
    let have = text(value)?;
    if field_type == FieldType::Date
        && let (Some(a), Some(b)) = (millis(&have), millis(wanted))
    {
        return Some(a.cmp(&b));
    }
    Some(have.as_str().cmp(wanted))
}

fn equals(value: &Value, wanted: &str, field_type: FieldType) -> bool {
    match field_type {
        FieldType::Boolean => text(value).is_some_and(|t| t.eq_ignore_ascii_case(wanted)),
        _ => compare(value, wanted, field_type) == Some(Ordering::Equal),
    }
}

/// A scalar condition over one value, or over the items of an array (any item passes).
fn scalar(value: Option<&Value>, test: &dyn Fn(&Value) -> bool) -> bool {
    match value {
        Some(Value::Array(items)) => items.iter().any(test),
        Some(value) => test(value),
        None => false,
    }
}

fn field_matches(
    value: Option<&Value>,
    operation: Operation,
    values: &[String],
    field_type: FieldType,
) -> bool {
    let first = values.first().map(String::as_str).unwrap_or_default();
    let any_equal = |v: &Value| values.iter().any(|w| equals(v, w, field_type));
    let ordered = |accept: fn(Ordering) -> bool| {
        scalar(value, &|v: &Value| {
            compare(v, first, field_type).is_some_and(accept)
        })
    };
    let contains = || match value {
        Some(Value::Array(items)) => items.iter().any(any_equal),
        Some(other) => text(other).is_some_and(|t| values.iter().any(|w| t.contains(w.as_str()))),
        None => false,
    };
    if let Some(accept) = operation.length_cmp() {
        let length = match value {
            None | Some(Value::Null) => 0,
            Some(Value::Array(items)) => items.len() as u64,
            Some(_) => 1,
        };
        return first.parse::<u64>().is_ok_and(|n| accept(length.cmp(&n)));
    }
    match operation {
        Operation::Equals => scalar(value, &|v: &Value| equals(v, first, field_type)),
        Operation::NotEquals => !scalar(value, &|v: &Value| equals(v, first, field_type)),
        Operation::AnyOf => scalar(value, &any_equal),
        Operation::NoneOf => !scalar(value, &any_equal),
        Operation::Contains => contains(),
        Operation::NotContains => !contains(),
        Operation::StartsWith => scalar(value, &|v: &Value| {
            text(v).is_some_and(|t| values.iter().any(|w| t.starts_with(w.as_str())))
        }),
        Operation::EndsWith => scalar(value, &|v: &Value| {
            text(v).is_some_and(|t| values.iter().any(|w| t.ends_with(w.as_str())))
        }),
        Operation::GreaterThan => ordered(Ordering::is_gt),
        Operation::LessThan => ordered(Ordering::is_lt),
        Operation::GreaterThanOrEquals => ordered(Ordering::is_ge),
        Operation::LessThanOrEquals => ordered(Ordering::is_le),
        Operation::IsEmpty => is_empty(value),
        Operation::IsNotEmpty => !is_empty(value),
        // Handled above.
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T: Duration = Duration::from_millis(500);

    fn filter(config: Value) -> Result<Filter, ConfigError> {
        Filter::parse(config.as_object().expect("object"))
    }

    fn passes(config: Value, payload: Value) -> bool {
        filter(config)
            .expect("valid filter")
            .matches(&payload, T)
            .expect("evaluates")
    }

    fn one(field: &str, operation: &str, values: Value) -> Value {
        json!({"filterConditions": {"conditions": [
            {"field": field, "operation": operation, "values": values}
        ]}})
    }

    #[test]
    fn field_operations() {
        let doc = json!({"entity": {"status": "active", "amount": 42, "tags": ["a", "b"],
            "name": "Meter 7", "items": [{"id": "x"}, {"id": "y"}], "empty": "",
            "at": "2025-01-15T10:00:00Z"}});
        let cases = [
            ("entity.status", "equals", json!(["active"]), true),
            ("entity.status", "not_equals", json!(["active"]), false),
            ("entity.status", "any_of", json!(["x", "active"]), true),
            ("entity.status", "none_of", json!(["x", "active"]), false),
            ("entity.name", "contains", json!(["ter"]), true),
            ("entity.tags", "contains", json!(["b"]), true),
            ("entity.tags", "not_contains", json!(["c"]), true),
            ("entity.name", "starts_with", json!(["Met"]), true),
            ("entity.name", "ends_with", json!(["8"]), false),
            ("entity.amount", "greater_than", json!(["9"]), true),
            ("entity.amount", "less_than_or_equals", json!(["42"]), true),
            ("entity.amount", "equals", json!(["42.0"]), true),
            ("entity.empty", "is_empty", json!([]), true),
            ("entity.missing", "is_empty", json!([]), true),
            ("entity.status", "is_not_empty", json!([]), true),
            ("entity.items[1].id", "equals", json!(["y"]), true),
            ("entity.items.0.id", "equals", json!(["x"]), true),
            ("entity.items", "length_equals", json!(["2"]), true),
            ("entity.missing", "length_greater_than", json!(["0"]), false),
            ("entity.missing", "not_equals", json!(["x"]), true),
        ];
        for (field, operation, values, expected) in cases {
            assert_eq!(
                passes(one(field, operation, values.clone()), doc.clone()),
                expected,
                "{field} {operation} {values}"
            );
        }
        let dated = json!({"filterConditions": {"conditions": [{"field": "entity.at",
            "operation": "greater_than", "values": ["2025-01-15"], "field_type": "date"}]}});
        assert!(passes(dated, doc));
    }

    #[test]
    fn logical_operators_jsonata_and_legacy() {
        let doc = json!({"type": "meter", "value": 5});
        let and = json!({"filterConditions": {"conditions": [
            {"field": "type", "operation": "equals", "values": ["meter"]},
            {"jsonata_expression": "value > 10"}
        ]}});
        assert!(!passes(and, doc.clone()));
        let or = json!({"filterConditions": {"logical_operator": "OR", "conditions": [
            {"field": "type", "operation": "equals", "values": ["meter"]},
            {"jsonata_expression": "value > 10"}
        ]}});
        assert!(passes(or, doc.clone()));
        let legacy = json!({"filter": {"keyToFilter": "type", "supportedValues": ["contract"]}});
        assert!(!passes(legacy, doc.clone()));
        assert!(!filter(json!({})).expect("valid").is_active());
        assert!(passes(json!({"filterConditions": {"conditions": []}}), doc));
    }

    #[test]
    fn invalid_filters_name_the_field() {
        let cases = [
            (
                json!({"filterConditions": {"conditions": [{"jsonata_expression": "a["}]}}),
                "filterConditions.conditions[0].jsonata_expression",
            ),
            (
                json!({"filterConditions": {"conditions": [{"field": "a", "operation": "like", "values": ["x"]}]}}),
                "filterConditions.conditions[0].operation",
            ),
            (
                json!({"filterConditions": {"conditions": [{"field": "a", "operation": "equals"}]}}),
                "filterConditions.conditions[0].values",
            ),
            (
                json!({"filterConditions": {"logical_operator": "XOR"}}),
                "filterConditions.logical_operator",
            ),
            (
                json!({"filterConditions": {"conditions": vec![json!({"field": "a", "operation": "is_empty"}); 11]}}),
                "filterConditions.conditions",
            ),
            (
                json!({"filter": {"supportedValues": ["a"]}}),
                "filter.keyToFilter",
            ),
        ];
        for (config, field) in cases {
            match filter(config.clone()) {
                Err(error) => assert_eq!(error.field, field, "{config}: {error}"),
                Ok(_) => panic!("{config} should be refused"),
            }
        }
    }

    #[test]
    fn a_failing_jsonata_condition_is_an_error() {
        let f = filter(json!({"filterConditions": {"conditions": [
            {"jsonata_expression": "$error('nope')"}
        ]}}))
        .expect("compiles");
        assert!(f.matches(&json!({}), T).is_err());
    }
}

//! Meter readings (epilot spec §4.7): each reading item becomes a `MeterReadingUpdate` addressed
//! to a meter (and optionally a counter) by unique ids, with the required attributes checked and
//! the timestamp normalised the way the metering API expects.

use serde_json::{Map, Value, json};

use crate::compile::{CompiledMeterReading, ReadingMode};
use crate::error::MappingError;
use crate::result::MappingResult;
use crate::run::{Run, items_of, prunes};
use crate::source::run;

/// Allowed `source` values.
pub const SOURCES: [&str; 4] = ["ERP", "ECP", "360", "journey-submission"];
/// Allowed `reason` values (besides empty and null).
pub const REASONS: [&str; 7] = [
    "regular",
    "irregular",
    "last",
    "first",
    "meter_change",
    "contract_change",
    "meter_adjustment",
];
/// Allowed `direction` values.
pub const DIRECTIONS: [&str; 2] = ["feed-in", "feed-out"];
/// Allowed `status` values.
pub const STATUSES: [&str; 3] = ["valid", "in-validation", "implausible"];

fn invalid(location: &str, message: String) -> MappingError {
    MappingError::InvalidReading {
        location: location.to_owned(),
        message,
    }
}

pub(super) fn map(
    run_: &Run<'_>,
    reading: &CompiledMeterReading,
    result: &mut MappingResult,
) -> Result<(), MappingError> {
    let data = match &reading.pre {
        Some(expression) => run(
            &run_.evaluation,
            &format!("{}.jsonataExpression", reading.location),
            expression,
            &run_.root,
        )?,
        None => run_.root.clone(),
    };
    let items = items_of(&data);
    // Per meter (+ counter): the external ids this payload keeps.
    let mut scopes: Vec<(Value, Option<Value>, Vec<Value>)> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let location = format!("{} item {index}", reading.location);
        let mut attributes =
            run_.fields(&reading.fields, item, "meter_reading", &mut result.warnings)?;
        check_attributes(
            &location,
            &mut attributes,
            run_.context.strict,
            &mut result.warnings,
        )?;
        let meter = ids(run_, &reading.meter, item, &location)?;
        let counter = match &reading.counter {
            Some(counter) => Some(ids(run_, counter, item, &location)?),
            None => None,
        };
        let mut update = Map::new();
        update.insert("meter".into(), json!({"$entity_unique_ids": meter}));
        if let Some(counter) = &counter {
            update.insert(
                "meter_counter".into(),
                json!({"$entity_unique_ids": counter}),
            );
        }
        if prunes(reading.mode) {
            let external_id = attributes
                .get("external_id")
                .cloned()
                .unwrap_or(Value::Null);
            let meter = Value::Object(meter);
            let counter = counter.map(Value::Object);
            match scopes
                .iter_mut()
                .find(|(m, c, _)| *m == meter && *c == counter)
            {
                Some((_, _, keep)) => keep.push(external_id),
                None => scopes.push((meter, counter, vec![external_id])),
            }
        }
        update.insert("attributes".into(), Value::Object(attributes));
        let mode = if reading.mode == ReadingMode::Delete {
            "delete"
        } else {
            "upsert"
        };
        update.insert("mode".into(), json!(mode));
        result.meter_readings_updates.push(Value::Object(update));
    }
    if prunes(reading.mode) {
        if items.is_empty() {
            // No readings: the meter must come from the payload root; then every reading of
            // it in scope would be deleted.
            let location = format!("{} (no readings)", reading.location);
            let meter = ids(run_, &reading.meter, &run_.root, &location)?;
            let counter = match &reading.counter {
                Some(counter) => Some(Value::Object(ids(run_, counter, &run_.root, &location)?)),
                None => None,
            };
            scopes.push((Value::Object(meter), counter, Vec::new()));
        }
        for (meter, counter, keep) in scopes {
            let mut update = Map::new();
            update.insert("meter".into(), json!({"$entity_unique_ids": meter}));
            if let Some(counter) = counter {
                update.insert(
                    "meter_counter".into(),
                    json!({"$entity_unique_ids": counter}),
                );
            }
            update.insert("keep_external_ids".into(), Value::Array(keep));
            if let Some(source) = &reading.scope_source {
                update.insert("source".into(), json!(source));
            }
            result
                .meter_readings_prune_scope_updates
                .push(Value::Object(update));
        }
    }
    Ok(())
}

fn ids(
    run_: &Run<'_>,
    ids: &crate::source::UniqueIds,
    item: &jsonata_core::value::JValue,
    location: &str,
) -> Result<Map<String, Value>, MappingError> {
    ids.eval(&run_.evaluation, item)?
        .map_err(|attribute| MappingError::MissingIdentifier {
            location: location.to_owned(),
            entity_schema: if ids.location.ends_with("meter_counter") {
                "meter_counter"
            } else {
                "meter"
            }
            .to_owned(),
            attribute,
        })
}

/// Checks the attributes the metering API needs and normalises `timestamp` and `external_id`.
fn check_attributes(
    location: &str,
    attributes: &mut Map<String, Value>,
    strict: bool,
    warnings: &mut Vec<Value>,
) -> Result<(), MappingError> {
    let external_id = match attributes.get("external_id") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(invalid(location, "external_id is empty".into())),
    };
    attributes.insert("external_id".into(), json!(external_id));
    if matches!(attributes.get("value"), None | Some(Value::Null)) {
        return Err(invalid(location, "value is empty".into()));
    }
    match attributes.get("source") {
        Some(Value::String(s)) if SOURCES.contains(&s.as_str()) => {}
        other => {
            return Err(invalid(
                location,
                format!(
                    "source must be one of {}, got {}",
                    SOURCES.join(", "),
                    shown(other)
                ),
            ));
        }
    }
    let timestamp = match attributes.get("timestamp") {
        Some(Value::String(text)) => normalize_timestamp(text).ok_or_else(|| {
            invalid(
                location,
                format!("timestamp {text:?} is not YYYY-MM-DD or YYYY-MM-DDTHH:mm:ss[.fff][Z|±HH:mm] with a real date"),
            )
        })?,
        other => return Err(invalid(location, format!("timestamp must be an ISO 8601 string, got {}", shown(other)))),
    };
    attributes.insert("timestamp".into(), json!(timestamp));
    for (key, allowed, empty_ok) in [
        ("reason", &REASONS[..], true),
        ("direction", &DIRECTIONS[..], false),
        ("status", &STATUSES[..], false),
    ] {
        let ok = match attributes.get(key) {
            None => true,
            Some(Value::Null) => empty_ok,
            Some(Value::String(s)) if s.is_empty() => empty_ok,
            Some(Value::String(s)) => allowed.contains(&s.as_str()),
            Some(_) => false,
        };
        if !ok {
            let message = format!(
                "{key} must be one of {}, got {}",
                allowed.join(", "),
                shown(attributes.get(key))
            );
            if strict {
                return Err(invalid(location, message));
            }
            warnings.push(json!({"entity_schema": "meter_reading", "field": key,
                                 "message": format!("{location}: {message} (rejected when processed)")}));
        }
    }
    Ok(())
}

fn shown(value: Option<&Value>) -> String {
    value.map_or_else(|| "nothing".to_owned(), Value::to_string)
}

/// `YYYY-MM-DD` → `YYYY-MM-DDT00:00:00.000Z`; `YYYY-MM-DDTHH:mm:ss[.fff]` → with `Z` appended
/// (anchored to UTC); with `Z` or `±HH:mm` → unchanged. `None` for anything else, including
/// dates that do not exist (2025-02-30).
pub fn normalize_timestamp(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = text.get(range)?;
        (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit())).then(|| part.parse().ok())?
    };
    let year = digits(0..4)?;
    let month = digits(5..7)?;
    let day = digits(8..10)?;
    if bytes.get(4) != Some(&b'-') || bytes.get(7) != Some(&b'-') {
        return None;
    }
    let month = time::Month::try_from(u8::try_from(month).ok()?).ok()?;
    time::Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day).ok()?)
        .ok()?;
    if text.len() == 10 {
        return Some(format!("{text}T00:00:00.000Z"));
    }
    if bytes.get(10) != Some(&b'T') || bytes.get(13) != Some(&b':') || bytes.get(16) != Some(&b':')
    {
        return None;
    }
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let len = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if len == 0 {
            return None;
        }
        rest = &fraction[len..];
    }
    match rest {
        "" => Some(format!("{text}Z")),
        "Z" => Some(text.to_owned()),
        offset => {
            let b = offset.as_bytes();
            let valid = b.len() == 6
                && (b[0] == b'+' || b[0] == b'-')
                && b[3] == b':'
                && offset[1..3].parse::<u32>().is_ok_and(|h| h <= 23)
                && offset[4..6].parse::<u32>().is_ok_and(|m| m <= 59);
            valid.then(|| text.to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_timestamp;

    #[test]
    fn timestamps_are_validated_and_normalised() {
        let cases = [
            ("2025-01-15", Some("2025-01-15T00:00:00.000Z")),
            ("2025-01-15T10:00:00", Some("2025-01-15T10:00:00Z")),
            ("2025-01-15T10:00:00.123", Some("2025-01-15T10:00:00.123Z")),
            ("2025-01-15T10:00:00Z", Some("2025-01-15T10:00:00Z")),
            (
                "2025-01-15T10:00:00.5+01:00",
                Some("2025-01-15T10:00:00.5+01:00"),
            ),
            ("2024-02-29", Some("2024-02-29T00:00:00.000Z")),
            ("2025-02-30", None),
            ("2025-02-29", None),
            ("15.01.2025", None),
            ("1736935200000", None),
            ("2025-01-15T25:00:00Z", None),
            ("2025-01-15T10:00", None),
            ("2025-01-15T10:00:00+0100", None),
            ("2025-1-15", None),
            ("", None),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_timestamp(input).as_deref(), expected, "{input}");
        }
    }
}

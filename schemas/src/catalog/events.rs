//! The core event catalog (spec §6): every catalog event with its versions and JSON Schema, the
//! envelope every event carries, and the check of one event against them.
//!
//! Versions are `MAJOR.MINOR`. A minor version only adds (optional fields, enum values), so an
//! event is checked against the schema of its major version with the highest minor known here;
//! an unknown major is refused. An event without `_event_version` is checked against the latest
//! version. Events whose name is not in the catalog (custom events) are checked against the
//! envelope only.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::entities::compile;
use super::files::{bundle, paths_under};
use super::violation::{Violation, collect, summary};
use crate::SchemaError;

/// An event schema version, `MAJOR.MINOR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventVersion {
    pub major: u32,
    pub minor: u32,
}

impl EventVersion {
    /// `major.minor`.
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }
}

impl fmt::Display for EventVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl FromStr for EventVersion {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("{text:?} is not a MAJOR.MINOR version");
        let (major, minor) = text.split_once('.').ok_or_else(invalid)?;
        let number = |part: &str| {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            part.parse::<u32>().map_err(|_| invalid())
        };
        Ok(Self::new(number(major)?, number(minor)?))
    }
}

impl Serialize for EventVersion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EventVersion {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One version of one catalog event.
pub struct EventSchema {
    name: String,
    version: EventVersion,
    title: String,
    description: String,
    path: &'static str,
    schema: Value,
    validator: jsonschema::Validator,
}

impl fmt::Debug for EventSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSchema")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl EventSchema {
    fn load(path: &'static str) -> Result<Self, SchemaError> {
        let schema = bundle(path)?;
        let text = |key: &str| -> Result<String, SchemaError> {
            schema
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| SchemaError::Catalog(format!("{path} has no {key}")))
        };
        let name = text("x-event-name")?;
        let version = text("x-event-version")?
            .parse()
            .map_err(|e| SchemaError::Catalog(format!("{path}: x-event-version {e}")))?;
        Ok(Self {
            title: text("title")?,
            description: text("description")?,
            validator: compile(&schema, path)?,
            name,
            version,
            path,
            schema,
        })
    }

    /// The catalog name, e.g. `MeterReadingAdded`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The schema version.
    pub fn version(&self) -> EventVersion {
        self.version
    }

    /// The human title (epilot's `event_title`).
    pub fn title(&self) -> &str {
        &self.title
    }

    /// What triggers the event.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The source file under `schemas/json/`.
    pub fn path(&self) -> &'static str {
        self.path
    }

    /// The JSON Schema, self-contained (bundled).
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// The violations of `event` (paths relative to the event).
    pub fn check(&self, event: &Value) -> Vec<Violation> {
        collect(&self.validator, event)
    }
}

/// Why an event was refused, or a lookup failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventCheckError {
    /// The event is not a JSON object.
    NotAnObject,
    /// No catalog event has this name (lookups only: custom events pass `check`).
    UnknownEvent { name: String },
    /// `_event_version` is not `MAJOR.MINOR`.
    InvalidVersion { name: String, version: String },
    /// The catalog has no schema of this major version.
    UnknownVersion {
        name: String,
        version: EventVersion,
        known: Vec<EventVersion>,
    },
    /// The event breaks its schema (or, for custom events and events without a name, the envelope).
    Invalid {
        name: String,
        version: Option<EventVersion>,
        violations: Vec<Violation>,
    },
}

impl EventCheckError {
    /// A stable code for API answers, spans and dead letters.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotAnObject => "EVENT_NOT_AN_OBJECT",
            Self::UnknownEvent { .. } => "EVENT_NOT_FOUND",
            Self::InvalidVersion { .. } => "INVALID_EVENT_VERSION",
            Self::UnknownVersion { .. } => "UNKNOWN_EVENT_VERSION",
            Self::Invalid { .. } => "EVENT_SCHEMA_VIOLATION",
        }
    }

    /// The schema violations (empty for the other refusals).
    pub fn violations(&self) -> &[Violation] {
        match self {
            Self::Invalid { violations, .. } => violations,
            _ => &[],
        }
    }
}

impl fmt::Display for EventCheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnObject => f.write_str("a core event must be a JSON object"),
            Self::UnknownEvent { name } => write!(f, "{name:?} is not a catalog event"),
            Self::InvalidVersion { name, version } => write!(
                f,
                "{name}: _event_version {version:?} is not a MAJOR.MINOR version"
            ),
            Self::UnknownVersion {
                name,
                version,
                known,
            } => {
                let known: Vec<String> = known.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "{name}: no schema of major version {} (_event_version {version}); known: {}",
                    version.major,
                    known.join(", ")
                )
            }
            Self::Invalid {
                name,
                version,
                violations,
            } => {
                let which = match (name.is_empty(), version) {
                    (true, _) => "the core event envelope".to_owned(),
                    (false, Some(version)) => format!("the {name} {version} schema"),
                    (false, None) => format!("the core event envelope ({name} is a custom event)"),
                };
                write!(f, "does not match {which}: {}", summary(violations))
            }
        }
    }
}

impl std::error::Error for EventCheckError {}

/// What an event was checked against.
#[derive(Debug, Clone, Copy)]
pub enum Checked<'a> {
    /// A catalog event: the schema version that was applied.
    Catalog(&'a EventSchema),
    /// A name outside the catalog: only the envelope was checked.
    Custom,
}

/// The catalog: events by name, each with its versions (ascending), and the envelope.
pub struct EventCatalog {
    events: BTreeMap<String, Vec<EventSchema>>,
    envelope: Value,
    envelope_validator: jsonschema::Validator,
}

/// The path of the envelope schema.
const ENVELOPE: &str = "events/envelope.schema.json";

impl EventCatalog {
    pub(crate) fn load() -> Result<Self, SchemaError> {
        let mut events: BTreeMap<String, Vec<EventSchema>> = BTreeMap::new();
        for path in paths_under("events").filter(|path| *path != ENVELOPE) {
            let schema = EventSchema::load(path)?;
            let versions = events.entry(schema.name.clone()).or_default();
            if versions.iter().any(|v| v.version == schema.version) {
                return Err(SchemaError::Catalog(format!(
                    "{path}: {} {} is defined twice",
                    schema.name, schema.version
                )));
            }
            versions.push(schema);
            versions.sort_by_key(|v| v.version);
        }
        let envelope = bundle(ENVELOPE)?;
        Ok(Self {
            envelope_validator: compile(&envelope, ENVELOPE)?,
            envelope,
            events,
        })
    }

    /// The catalog event names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.events.keys().map(String::as_str)
    }

    /// Whether `name` is a catalog event.
    pub fn contains(&self, name: &str) -> bool {
        self.events.contains_key(name)
    }

    /// Every version of an event, oldest first.
    pub fn versions(&self, name: &str) -> Result<&[EventSchema], EventCheckError> {
        self.events
            .get(name)
            .map(Vec::as_slice)
            .ok_or_else(|| EventCheckError::UnknownEvent {
                name: name.to_owned(),
            })
    }

    /// The latest version of an event.
    pub fn latest(&self, name: &str) -> Result<&EventSchema, EventCheckError> {
        self.versions(name)?
            .last()
            .ok_or_else(|| EventCheckError::UnknownEvent {
                name: name.to_owned(),
            })
    }

    /// The schema that applies to `name` at `version`: that version, else the highest minor of
    /// its major (minor versions only add).
    pub fn lookup(&self, name: &str, version: &str) -> Result<&EventSchema, EventCheckError> {
        let versions = self.versions(name)?;
        let parsed: EventVersion =
            version
                .parse()
                .map_err(|_| EventCheckError::InvalidVersion {
                    name: name.to_owned(),
                    version: version.to_owned(),
                })?;
        versions
            .iter()
            .find(|v| v.version == parsed)
            .or_else(|| {
                versions
                    .iter()
                    .filter(|v| v.version.major == parsed.major)
                    .max_by_key(|v| v.version)
            })
            .ok_or_else(|| EventCheckError::UnknownVersion {
                name: name.to_owned(),
                version: parsed,
                known: versions.iter().map(|v| v.version).collect(),
            })
    }

    /// The envelope schema (bundled).
    pub fn envelope(&self) -> &Value {
        &self.envelope
    }

    /// Checks one core event: the envelope, then, for a catalog event, its schema version.
    pub fn check(&self, event: &Value) -> Result<Checked<'_>, EventCheckError> {
        if !event.is_object() {
            return Err(EventCheckError::NotAnObject);
        }
        let name = event
            .get("_event_name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let envelope = collect(&self.envelope_validator, event);
        if !envelope.is_empty() {
            return Err(EventCheckError::Invalid {
                name: name.to_owned(),
                version: None,
                violations: envelope,
            });
        }
        if !self.contains(name) {
            return Ok(Checked::Custom);
        }
        let schema = match event.get("_event_version").and_then(Value::as_str) {
            Some(version) => self.lookup(name, version)?,
            None => self.latest(name)?,
        };
        let violations = schema.check(event);
        if violations.is_empty() {
            Ok(Checked::Catalog(schema))
        } else {
            Err(EventCheckError::Invalid {
                name: name.to_owned(),
                version: Some(schema.version),
                violations,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_strictly() {
        assert_eq!("2.1".parse(), Ok(EventVersion::new(2, 1)));
        assert_eq!(EventVersion::new(10, 0).to_string(), "10.0");
        for bad in ["2", "2.", ".1", "2.1.0", "v2.1", "2.x", "-1.0", "+1.0"] {
            assert!(bad.parse::<EventVersion>().is_err(), "{bad}");
        }
        assert!(EventVersion::new(1, 10) > EventVersion::new(1, 9));
    }
}

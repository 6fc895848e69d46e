//! Confluent's compatibility levels and the check of a new Avro schema against a subject's
//! registered ones, on `apache-avro`'s schema resolution rules.

use std::fmt;
use std::str::FromStr;

use apache_avro::Schema;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use serde::{Deserialize, Serialize};

use super::error::RegistryError;

/// A subject's compatibility level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CompatibilityLevel {
    /// The new schema reads data written with the latest one (consumers upgrade first).
    #[default]
    Backward,
    /// … with every earlier one.
    BackwardTransitive,
    /// The latest schema reads data written with the new one (producers upgrade first).
    Forward,
    /// … every earlier one does.
    ForwardTransitive,
    /// Both, with the latest.
    Full,
    /// Both, with every earlier one.
    FullTransitive,
    /// Anything goes.
    None,
}

impl CompatibilityLevel {
    /// Every level.
    pub const ALL: [CompatibilityLevel; 7] = [
        Self::Backward,
        Self::BackwardTransitive,
        Self::Forward,
        Self::ForwardTransitive,
        Self::Full,
        Self::FullTransitive,
        Self::None,
    ];

    /// `BACKWARD`, `FULL_TRANSITIVE`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Backward => "BACKWARD",
            Self::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Self::Forward => "FORWARD",
            Self::ForwardTransitive => "FORWARD_TRANSITIVE",
            Self::Full => "FULL",
            Self::FullTransitive => "FULL_TRANSITIVE",
            Self::None => "NONE",
        }
    }

    fn transitive(self) -> bool {
        matches!(
            self,
            Self::BackwardTransitive | Self::ForwardTransitive | Self::FullTransitive
        )
    }

    fn backward(self) -> bool {
        matches!(
            self,
            Self::Backward | Self::BackwardTransitive | Self::Full | Self::FullTransitive
        )
    }

    fn forward(self) -> bool {
        matches!(
            self,
            Self::Forward | Self::ForwardTransitive | Self::Full | Self::FullTransitive
        )
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CompatibilityLevel {
    type Err = RegistryError;

    /// Case-insensitive, as Confluent's.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| RegistryError::InvalidCompatibilityLevel {
                level: text.to_owned(),
            })
    }
}

/// Whether data written with `writer` reads as `reader`, by the Avro specification's resolution
/// rules. A partial match (a reader enum or union missing some of the writer's symbols or
/// branches) is a failure, as in Confluent's registry: it breaks on the first such record.
pub fn can_read(writer: &Schema, reader: &Schema) -> Result<(), String> {
    match SchemaCompatibility::can_read(writer, reader) {
        Ok(Compatibility::Full) => Ok(()),
        Ok(Compatibility::Partial) => {
            Err("the reader lacks some enum symbols or union branches of the writer".to_owned())
        }
        Err(error) => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            Err(text)
        }
    }
}

/// Checks `new` against a subject's live versions (`existing`: `(version, schema)`, oldest first)
/// under `level`: the problems found, empty when compatible.
pub fn check(level: CompatibilityLevel, new: &Schema, existing: &[(u32, &Schema)]) -> Vec<String> {
    let against: &[(u32, &Schema)] = match (level, existing.split_last()) {
        (CompatibilityLevel::None, _) | (_, None) => &[],
        (level, Some((last, _))) if !level.transitive() => std::slice::from_ref(last),
        _ => existing,
    };
    let mut problems = Vec::new();
    for (version, old) in against.iter().rev() {
        if level.backward()
            && let Err(reason) = can_read(old, new)
        {
            problems.push(format!(
                "{{compatibility: '{level}', oldSchemaVersion: {version}, direction: 'the new schema cannot read data written with version {version}', description: '{reason}'}}"
            ));
        }
        if level.forward()
            && let Err(reason) = can_read(new, old)
        {
            problems.push(format!(
                "{{compatibility: '{level}', oldSchemaVersion: {version}, direction: 'version {version} cannot read data written with the new schema', description: '{reason}'}}"
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(fields: &str) -> Schema {
        Schema::parse_str(&format!(
            r#"{{"type": "record", "name": "R", "fields": [{fields}]}}"#
        ))
        .expect("parses")
    }

    #[test]
    fn levels_decide_the_directions_and_the_versions_checked() {
        let v1 = schema(r#"{"name": "a", "type": "string"}"#);
        // v2 adds a field with a default: both directions work.
        let v2 = schema(
            r#"{"name": "a", "type": "string"}, {"name": "b", "type": ["null", "long"], "default": null}"#,
        );
        // v3 adds a field without a default: old data cannot be read with it (not backward).
        let v3 = schema(r#"{"name": "a", "type": "string"}, {"name": "c", "type": "long"}"#);
        // v4 drops a: old readers without a default for a cannot read its data (not forward).
        let v4 = schema(r#"{"name": "b", "type": ["null", "long"], "default": null}"#);
        let history = [(1, &v1), (2, &v2)];
        for level in CompatibilityLevel::ALL {
            assert!(check(level, &v2, &[(1, &v1)]).is_empty(), "{level}");
        }
        assert!(!check(CompatibilityLevel::Backward, &v3, &history).is_empty());
        assert!(check(CompatibilityLevel::Forward, &v3, &history).is_empty());
        assert!(check(CompatibilityLevel::Backward, &v4, &history).is_empty());
        assert!(!check(CompatibilityLevel::Forward, &v4, &history).is_empty());
        assert!(!check(CompatibilityLevel::Full, &v4, &history).is_empty());
        assert!(check(CompatibilityLevel::None, &v3, &history).is_empty());
        // Transitive levels look past the latest version: x was a string in v1, dropped in v2,
        // and comes back as a number with a default.
        let x1 = schema(r#"{"name": "x", "type": "string"}"#);
        let x2 = schema("");
        let x3 = schema(r#"{"name": "x", "type": "long", "default": 0}"#);
        let history = [(1, &x1), (2, &x2)];
        assert!(check(CompatibilityLevel::Backward, &x3, &history).is_empty());
        assert_eq!(
            check(CompatibilityLevel::BackwardTransitive, &x3, &history).len(),
            1
        );
        assert!(check(CompatibilityLevel::Full, &x3, &history).is_empty());
        assert_eq!(
            check(CompatibilityLevel::FullTransitive, &x3, &history).len(),
            2
        );
        let narrowed = schema(r#"{"name": "a", "type": "int"}"#);
        let long = schema(r#"{"name": "a", "type": "long"}"#);
        assert!(check(CompatibilityLevel::Backward, &long, &[(1, &narrowed)]).is_empty());
        assert!(!check(CompatibilityLevel::Forward, &long, &[(1, &narrowed)]).is_empty());
    }

    #[test]
    fn a_partial_enum_match_is_incompatible() {
        let writer = Schema::parse_str(r#"{"type": "enum", "name": "E", "symbols": ["a", "b"]}"#)
            .expect("parses");
        let reader = Schema::parse_str(r#"{"type": "enum", "name": "E", "symbols": ["a"]}"#)
            .expect("parses");
        assert!(can_read(&writer, &reader).is_err());
        assert!(can_read(&reader, &writer).is_ok());
    }

    #[test]
    fn levels_parse_like_confluent() {
        assert_eq!(
            "backward_transitive".parse(),
            Ok(CompatibilityLevel::BackwardTransitive)
        );
        assert_eq!("FULL".parse(), Ok(CompatibilityLevel::Full));
        assert_eq!(
            "SOMETIMES"
                .parse::<CompatibilityLevel>()
                .map_err(|e| e.error_code()),
            Err(42203)
        );
        assert_eq!(
            serde_json::to_string(&CompatibilityLevel::FullTransitive).expect("json"),
            "\"FULL_TRANSITIVE\""
        );
    }
}

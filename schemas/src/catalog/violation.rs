//! What a schema check reports: violations with a JSON pointer to the offending value, and the
//! per-use-case level that says what a violation of mapping output does.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// One way a value breaks its schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// JSON pointer (RFC 6901) of the offending value, relative to what was checked: for an entity
    /// update the attributes object (`/email/0/email`), for an event the event (`/contract/status`).
    /// A missing required property is pointed at by its would-be location.
    pub path: String,
    /// The schema keyword broken: `type`, `enum`, `format`, `required`, `pattern`, …
    pub keyword: String,
    /// The rule broken, without the offending value (values can be personal data and end up in
    /// spans and dead letters).
    pub message: String,
}

impl Violation {
    /// A violation with the pointer, keyword and message given.
    pub fn new(path: impl Into<String>, keyword: &str, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            keyword: keyword.to_owned(),
            message: message.into(),
        }
    }

    /// The top-level attribute (first pointer segment, unescaped) the violation is in.
    pub fn attribute(&self) -> String {
        let first = self
            .path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("");
        first.replace("~1", "/").replace("~0", "~")
    }

    /// As an entry of a mapping simulation's `warnings[]` (epilot `MappingSimulationWarning`):
    /// `field` is the attribute, the message leads with the precise path.
    pub fn to_warning(&self, entity_schema: &str) -> Value {
        json!({
            "entity_schema": entity_schema,
            "field": self.attribute(),
            "message": format!("schema violation at {}: {}", self.pointer(), self.message),
        })
    }

    /// The pointer, `/` for the checked value itself.
    pub fn pointer(&self) -> &str {
        if self.path.is_empty() {
            "/"
        } else {
            &self.path
        }
    }

    /// The same violation under `prefix` (a JSON pointer).
    pub fn under(mut self, prefix: &str) -> Self {
        self.path = format!("{prefix}{}", self.path);
        self
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pointer(), self.message)
    }
}

/// `a; b; c` of the first few violations, `(+n more)` for the rest.
pub fn summary(violations: &[Violation]) -> String {
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

/// Escapes one JSON pointer segment.
pub fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// The violations of `instance` against `validator`, with masked messages; `anyOf` failures are
/// replaced by the errors of the one alternative of the right type, when there is one.
pub fn collect(validator: &jsonschema::Validator, instance: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    for error in validator.iter_errors(instance) {
        push(&error, &mut out);
    }
    out
}

fn push(error: &jsonschema::ValidationError<'_>, out: &mut Vec<Violation>) {
    use jsonschema::error::ValidationErrorKind;
    let keyword = error
        .schema_path()
        .as_str()
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_owned();
    let path = error.instance_path().as_str().to_owned();
    match error.kind() {
        ValidationErrorKind::Required { property } => {
            let name = property
                .as_str()
                .map_or_else(|| property.to_string(), str::to_owned);
            out.push(Violation {
                path: format!("{path}/{}", escape(&name)),
                keyword,
                message: format!("{name:?} is required"),
            });
        }
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            // The alternatives that failed on more than the value's type are the ones the value
            // was meant to match; when exactly one is, its errors say what is wrong.
            let typed: Vec<_> = context
                .iter()
                .filter(|errors| {
                    !errors.iter().any(|e| {
                        e.instance_path().as_str() == path
                            && matches!(e.kind(), ValidationErrorKind::Type { .. })
                    })
                })
                .collect();
            match typed.as_slice() {
                [errors] => errors.iter().for_each(|e| push(e, out)),
                _ => out.push(Violation {
                    path,
                    keyword,
                    message: error.masked().to_string(),
                }),
            }
        }
        _ => out.push(Violation {
            path,
            keyword,
            message: error.masked().to_string(),
        }),
    }
}

/// What a use case does when its mapping output breaks the entity schemas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValidationLevel {
    /// Not checked.
    Off,
    /// Checked: each violation becomes a warning span and a `warnings[]` entry of the simulation;
    /// the event is processed.
    #[default]
    Warn,
    /// Checked: a violation makes the event an error span and a dead letter.
    Strict,
}

impl ValidationLevel {
    /// `off`, `warn`, `strict`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Warn => "warn",
            Self::Strict => "strict",
        }
    }
}

impl fmt::Display for ValidationLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ValidationLevel {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "off" => Ok(Self::Off),
            "warn" => Ok(Self::Warn),
            "strict" => Ok(Self::Strict),
            other => Err(format!(
                "validation must be off, warn or strict, not {other:?}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_attribute_and_reads_as_a_warning() {
        let violation = Violation::new("/a~1b/0/email", "format", "value is not a \"email\"");
        assert_eq!(violation.attribute(), "a/b");
        assert_eq!(
            violation.to_warning("contact"),
            json!({"entity_schema": "contact", "field": "a/b",
                   "message": "schema violation at /a~1b/0/email: value is not a \"email\""})
        );
        assert_eq!(Violation::new("", "type", "x").to_string(), "/: x");
    }

    #[test]
    fn levels_parse_and_default_to_warn() {
        assert_eq!(ValidationLevel::default(), ValidationLevel::Warn);
        assert_eq!("strict".parse(), Ok(ValidationLevel::Strict));
        assert!("loud".parse::<ValidationLevel>().is_err());
        assert_eq!(
            serde_json::from_value::<ValidationLevel>(json!("off")).expect("parses"),
            ValidationLevel::Off
        );
    }
}

//! Standard use cases as templates (epilot spec §7): for each standard inbound and outbound
//! flow, a use-case configuration with placeholders, what the ERP is expected to do and
//! acknowledge, a realistic sample and the exact output that sample gives.
//!
//! The documents are data files under `schemas/templates/{inbound,outbound}/<slug>.json`,
//! compiled in ([`catalogue`]). [`UseCaseTemplate::instantiate`] fills the placeholders by the
//! rule of [`placeholders`]. Nothing here maps or validates a configuration against the mapping
//! grammar: the tests run every template's sample through the real engine and compare it with
//! its `expected`.

mod catalogue;
mod error;
pub mod placeholders;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::inbound::PayloadFormat;
pub use catalogue::{DOCUMENTS, catalogue, find, summaries};
pub use error::TemplateError;
use placeholders::{Substitution, is_placeholder_name, markers};

/// Capabilities a template may need that this version of erp-toolkit may not run yet.
pub const KNOWN_REQUIREMENTS: [&str; 1] = ["file_proxy"];

/// The use-case type a template makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TemplateKind {
    Inbound,
    Outbound,
}

impl TemplateKind {
    /// The use case `type`: `inbound` or `outbound`.
    pub fn as_str(self) -> &'static str {
        match self {
            TemplateKind::Inbound => "inbound",
            TemplateKind::Outbound => "outbound",
        }
    }
}

/// The JSON type a placeholder's value must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlaceholderType {
    String,
    Number,
    /// A number without fraction that fits in 64 bits.
    Integer,
    Boolean,
    Object,
    Array,
}

impl PlaceholderType {
    /// The name used in documents and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            PlaceholderType::String => "string",
            PlaceholderType::Number => "number",
            PlaceholderType::Integer => "integer",
            PlaceholderType::Boolean => "boolean",
            PlaceholderType::Object => "object",
            PlaceholderType::Array => "array",
        }
    }

    /// Whether `value` (not `null`) has this type.
    pub fn admits(self, value: &Value) -> bool {
        match (self, value) {
            (PlaceholderType::String, Value::String(_))
            | (PlaceholderType::Number, Value::Number(_))
            | (PlaceholderType::Boolean, Value::Bool(_))
            | (PlaceholderType::Object, Value::Object(_))
            | (PlaceholderType::Array, Value::Array(_)) => true,
            (PlaceholderType::Integer, Value::Number(n)) => n.is_i64() || n.is_u64(),
            _ => false,
        }
    }
}

/// The JSON type of a value, for messages.
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads a member that is present, even when it is `null` (`Some(Value::Null)`); an absent
/// member stays `None` through `#[serde(default)]`.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// One value the user supplies when creating a use case from a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placeholder {
    /// `^[a-z][a-z0-9_]{0,63}$`; written `{{name}}` in the configuration.
    pub name: String,
    pub description: String,
    #[serde(rename = "type")]
    pub kind: PlaceholderType,
    /// A required placeholder has no default; an optional one must have one (`null` removes
    /// what its marker stands for).
    pub required: bool,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub default: Option<Value>,
    /// When given, the only values accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<Value>>,
    /// A realistic value: the one the template's sample and expected output are made with.
    pub example: Value,
}

impl Placeholder {
    /// Checks a value given for this placeholder: `null` only for an optional one, then the
    /// type, then the allowed values.
    pub fn check(&self, template: &str, value: &Value) -> Result<(), TemplateError> {
        let wrong = |message: String| TemplateError::PlaceholderType {
            template: template.to_owned(),
            placeholder: self.name.clone(),
            message,
        };
        if value.is_null() {
            return if self.required {
                Err(wrong("is required and cannot be null".into()))
            } else {
                Ok(())
            };
        }
        if !self.kind.admits(value) {
            return Err(wrong(format!(
                "must be {} {}, not {}",
                if self.kind == PlaceholderType::Integer {
                    "an"
                } else {
                    "a"
                },
                self.kind.as_str(),
                kind_of(value)
            )));
        }
        match &self.allowed {
            Some(allowed) if !allowed.contains(value) => {
                Err(TemplateError::PlaceholderNotAllowed {
                    template: template.to_owned(),
                    placeholder: self.name.clone(),
                    allowed: allowed
                        .iter()
                        .map(Value::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    value: value.to_string(),
                })
            }
            _ => Ok(()),
        }
    }
}

/// What the ERP side is expected to do with the flow, and how it acknowledges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErpBehaviour {
    pub description: String,
    /// How the ERP confirms (outbound with `ack_tracking` on); `None` when it sends no ACK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<String>,
}

/// A sample input: an ERP payload (inbound) or a core event (outbound, always JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSample {
    #[serde(default = "json_format")]
    pub format: PayloadFormat,
    /// An object, or the payload text (always text for XML).
    pub payload: Value,
}

fn json_format() -> PayloadFormat {
    PayloadFormat::Json
}

/// A further sample showing another branch of the template, with its exact output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdditionalSample {
    pub description: String,
    #[serde(default = "json_format")]
    pub format: PayloadFormat,
    pub payload: Value,
    pub expected: Value,
}

/// One standard use case as a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UseCaseTemplate {
    /// Unique in the catalogue; also the suggested use-case slug.
    pub slug: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: TemplateKind,
    pub summary: String,
    /// The core entities the flow reads or writes.
    pub entities: Vec<String>,
    /// Capabilities of [`KNOWN_REQUIREMENTS`] the flow needs at run time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
    pub erp_behaviour: ErpBehaviour,
    pub placeholders: Vec<Placeholder>,
    /// The use case `configuration`, with markers.
    pub configuration: Value,
    pub sample: TemplateSample,
    /// Inbound: the `MappingSimulationResponse` of the sample. Outbound: `{"messages":
    /// [{"mapping", "payload"}]}` per enabled mapping, or `{"filtered": true}`. Both made with
    /// every placeholder at its `example`.
    pub expected: Value,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_samples: Vec<AdditionalSample>,
}

/// What `GET /v1/use-case-templates` will list: a template without its configuration and
/// samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TemplateSummary {
    pub slug: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: TemplateKind,
    pub summary: String,
    pub entities: Vec<String>,
    /// Outbound: the catalog event that triggers it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
    pub erp_behaviour: ErpBehaviour,
    pub placeholders: Vec<Placeholder>,
}

impl UseCaseTemplate {
    /// Reads and checks one template document.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let template: Self = serde_json::from_str(text).map_err(|e| TemplateError::Invalid {
            template: serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|v| v.get("slug").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| "?".into()),
            message: e.to_string(),
        })?;
        template.validate()?;
        Ok(template)
    }

    /// Outbound: the catalog event of the configuration.
    pub fn event(&self) -> Option<&str> {
        self.configuration
            .get("event_catalog_event")
            .and_then(Value::as_str)
    }

    /// Every placeholder at its `example`: the values the samples are made with.
    pub fn example_values(&self) -> Map<String, Value> {
        self.placeholders
            .iter()
            .map(|p| (p.name.clone(), p.example.clone()))
            .collect()
    }

    /// The listing entry.
    pub fn summary(&self) -> TemplateSummary {
        TemplateSummary {
            slug: self.slug.clone(),
            name: self.name.clone(),
            kind: self.kind,
            summary: self.summary.clone(),
            entities: self.entities.clone(),
            event: self.event().map(str::to_owned),
            requires: self.requires.clone(),
            erp_behaviour: self.erp_behaviour.clone(),
            placeholders: self.placeholders.clone(),
        }
    }

    /// The use-case configuration with `values` filled in (see [`placeholders`] for the rule).
    /// A placeholder without a value takes its default; one without either is
    /// `TEMPLATE_PLACEHOLDER_MISSING`; a value for a name the template does not declare is
    /// `TEMPLATE_PLACEHOLDER_UNKNOWN`; a value of the wrong type `TEMPLATE_PLACEHOLDER_TYPE`.
    pub fn instantiate(&self, values: &Map<String, Value>) -> Result<Value, TemplateError> {
        if let Some(unknown) = values
            .keys()
            .find(|name| !self.placeholders.iter().any(|p| &p.name == *name))
        {
            return Err(TemplateError::PlaceholderUnknown {
                template: self.slug.clone(),
                placeholder: unknown.clone(),
                known: self
                    .placeholders
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let mut resolved = BTreeMap::new();
        for placeholder in &self.placeholders {
            let value = match (values.get(&placeholder.name), &placeholder.default) {
                (Some(value), _) => {
                    placeholder.check(&self.slug, value)?;
                    value.clone()
                }
                (None, Some(default)) => default.clone(),
                (None, None) => {
                    return Err(TemplateError::PlaceholderMissing {
                        template: self.slug.clone(),
                        placeholder: placeholder.name.clone(),
                    });
                }
            };
            resolved.insert(placeholder.name.clone(), value);
        }
        let substitution = Substitution {
            template: &self.slug,
            values: &resolved,
        };
        Ok(substitution
            .apply(&self.configuration)?
            .unwrap_or(Value::Null))
    }

    fn invalid(&self, message: impl Into<String>) -> TemplateError {
        TemplateError::Invalid {
            template: self.slug.clone(),
            message: message.into(),
        }
    }

    /// The rules a document must follow beyond its shape.
    fn validate(&self) -> Result<(), TemplateError> {
        let slug_ok = self
            .slug
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && self
                .slug
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !slug_ok {
            return Err(self.invalid("slug must match ^[a-z0-9][a-z0-9_-]*$"));
        }
        for (what, text) in [
            ("name", &self.name),
            ("summary", &self.summary),
            ("erp_behaviour.description", &self.erp_behaviour.description),
        ] {
            if text.trim().is_empty() {
                return Err(self.invalid(format!("{what} is empty")));
            }
        }
        if self.entities.is_empty() {
            return Err(self.invalid("entities is empty"));
        }
        if let Some(unknown) = self
            .requires
            .iter()
            .find(|r| !KNOWN_REQUIREMENTS.contains(&r.as_str()))
        {
            return Err(self.invalid(format!("requires names unknown capability {unknown:?}")));
        }
        self.validate_placeholders()?;
        self.validate_markers()?;
        self.validate_kind()?;
        let samples = std::iter::once((&self.sample.format, &self.sample.payload)).chain(
            self.additional_samples
                .iter()
                .map(|s| (&s.format, &s.payload)),
        );
        for (index, (format, payload)) in samples.enumerate() {
            let ok = match (self.kind, format) {
                (_, PayloadFormat::Xml) => {
                    payload.is_string() && self.kind == TemplateKind::Inbound
                }
                (TemplateKind::Inbound, PayloadFormat::Json) => {
                    payload.is_string() || payload.is_object()
                }
                (TemplateKind::Outbound, PayloadFormat::Json) => payload.is_object(),
            };
            if !ok {
                return Err(self.invalid(format!(
                    "sample {index}: an XML payload is a string, a JSON one an object (or text, inbound); outbound samples are JSON core events"
                )));
            }
        }
        Ok(())
    }

    fn validate_placeholders(&self) -> Result<(), TemplateError> {
        let mut seen = BTreeSet::new();
        for placeholder in &self.placeholders {
            let name = &placeholder.name;
            if !is_placeholder_name(name) {
                return Err(self.invalid(format!(
                    "placeholder name {name:?} must match ^[a-z][a-z0-9_]{{0,63}}$"
                )));
            }
            if !seen.insert(name) {
                return Err(self.invalid(format!("placeholder {name:?} is declared twice")));
            }
            if placeholder.description.trim().is_empty() {
                return Err(self.invalid(format!("placeholder {name:?} has no description")));
            }
            match (placeholder.required, &placeholder.default) {
                (true, Some(_)) => {
                    return Err(self.invalid(format!(
                        "placeholder {name:?} is required and has a default"
                    )));
                }
                (false, None) => {
                    return Err(self.invalid(format!(
                        "placeholder {name:?} is optional and has no default (null is one)"
                    )));
                }
                (false, Some(default)) => placeholder
                    .check(&self.slug, default)
                    .map_err(|e| self.invalid(format!("default: {e}")))?,
                (true, None) => {}
            }
            if placeholder.example.is_null() {
                return Err(self.invalid(format!("placeholder {name:?} has a null example")));
            }
            placeholder
                .check(&self.slug, &placeholder.example)
                .map_err(|e| self.invalid(format!("example: {e}")))?;
        }
        Ok(())
    }

    fn validate_markers(&self) -> Result<(), TemplateError> {
        let (mut used, mut bad_keys) = (Vec::new(), Vec::new());
        markers(&self.configuration, &mut used, &mut bad_keys);
        if let Some(key) = bad_keys.first() {
            return Err(self.invalid(format!(
                "object key {key:?} holds a marker; markers go in string values only"
            )));
        }
        if let Some(name) = used
            .iter()
            .find(|name| !self.placeholders.iter().any(|p| &p.name == *name))
        {
            return Err(self.invalid(format!(
                "marker {{{{{name}}}}} names no declared placeholder"
            )));
        }
        if let Some(unused) = self.placeholders.iter().find(|p| !used.contains(&p.name)) {
            return Err(self.invalid(format!(
                "placeholder {:?} is declared but never used",
                unused.name
            )));
        }
        Ok(())
    }

    fn validate_kind(&self) -> Result<(), TemplateError> {
        let Some(configuration) = self.configuration.as_object() else {
            return Err(self.invalid("configuration must be an object"));
        };
        match self.kind {
            TemplateKind::Inbound => {
                if configuration.contains_key("event_catalog_event") {
                    return Err(self.invalid("an inbound configuration has no event_catalog_event"));
                }
                if self.erp_behaviour.ack.is_some() {
                    return Err(self.invalid(
                        "erp_behaviour.ack is for outbound flows (the ERP acknowledges what it receives)",
                    ));
                }
            }
            TemplateKind::Outbound => {
                let event = self.event().unwrap_or_default();
                let mut names = Vec::new();
                markers(
                    &Value::String(event.to_owned()),
                    &mut names,
                    &mut Vec::new(),
                );
                if event.is_empty() || !names.is_empty() {
                    return Err(self.invalid(
                        "an outbound configuration names its event_catalog_event, without a marker",
                    ));
                }
                let tracked =
                    configuration.get("ack_tracking").and_then(Value::as_str) != Some("off");
                if tracked != self.erp_behaviour.ack.is_some() {
                    return Err(self.invalid(
                        "erp_behaviour.ack must be given exactly when ack_tracking is on",
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

//! The wire formats of our topics: JSON (the default) and Avro in the Confluent wire format —
//! magic byte `0`, the schema id as 4 bytes big-endian, the Avro binary datum. A deployment chooses
//! per topic; readers of our topics accept both, so a topic can switch without a flag day.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::SchemaError;
use crate::avro::AvroRecord;

/// The Confluent wire format's magic byte.
pub const MAGIC: u8 = 0;
/// Magic byte and schema id.
pub const HEADER_LEN: usize = 5;

/// `bytes` framed for Confluent: magic byte, `schema_id` big-endian, datum.
pub fn frame(schema_id: u32, datum: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(HEADER_LEN + datum.len());
    framed.push(MAGIC);
    framed.extend_from_slice(&schema_id.to_be_bytes());
    framed.extend_from_slice(datum);
    framed
}

/// A JSON array of `items`, each already JSON text, in order: for values put together from
/// encoded parts without parsing them again (a webhook batch body, a span batch).
pub fn json_array<'a>(items: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut array = vec![b'['];
    for (index, item) in items.into_iter().enumerate() {
        if index > 0 {
            array.push(b',');
        }
        array.extend_from_slice(item);
    }
    array.push(b']');
    array
}

/// What a record value holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framed<'a> {
    /// JSON text (its first non-blank byte is `{` or `[`, never the magic byte).
    Json(&'a [u8]),
    /// A Confluent-framed datum.
    Confluent { schema_id: u32, datum: &'a [u8] },
}

/// Tells the formats apart by the first byte.
pub fn sniff(bytes: &[u8]) -> Result<Framed<'_>, SchemaError> {
    match bytes.first() {
        None => Err(SchemaError::Wire("empty record value".into())),
        Some(&MAGIC) => {
            let Some(id) = bytes.get(1..HEADER_LEN) else {
                return Err(SchemaError::Wire(format!(
                    "{} bytes: too short for the Confluent header",
                    bytes.len()
                )));
            };
            let mut id_bytes = [0u8; 4];
            id_bytes.copy_from_slice(id);
            Ok(Framed::Confluent {
                schema_id: u32::from_be_bytes(id_bytes),
                datum: &bytes[HEADER_LEN..],
            })
        }
        Some(_) => Ok(Framed::Json(bytes)),
    }
}

/// How a topic's values are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireFormat {
    /// JSON text.
    #[default]
    Json,
    /// Avro, Confluent-framed, the schema registered under `<topic>-value`.
    Avro,
}

impl fmt::Display for WireFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Json => "json",
            Self::Avro => "avro",
        })
    }
}

impl FromStr for WireFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "json" => Ok(Self::Json),
            "avro" => Ok(Self::Avro),
            other => Err(format!("wire format must be json or avro, not {other:?}")),
        }
    }
}

/// The wire format of each topic that has an Avro schema; JSON unless chosen otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicFormats {
    chosen: BTreeMap<AvroRecord, WireFormat>,
}

impl TopicFormats {
    /// The format of the topic with this suffix (JSON for topics without an Avro schema).
    pub fn of(&self, suffix: &str) -> WireFormat {
        AvroRecord::for_topic_suffix(suffix)
            .and_then(|record| self.chosen.get(&record).copied())
            .unwrap_or_default()
    }

    /// The format of a record's topic.
    pub fn of_record(&self, record: AvroRecord) -> WireFormat {
        self.chosen.get(&record).copied().unwrap_or_default()
    }

    /// Sets a record's topic format.
    pub fn set(&mut self, record: AvroRecord, format: WireFormat) {
        self.chosen.insert(record, format);
    }

    /// Whether any topic is written as Avro (then a registry is needed).
    pub fn any_avro(&self) -> bool {
        self.chosen.values().any(|f| *f == WireFormat::Avro)
    }
}

impl FromStr for TopicFormats {
    type Err = String;

    /// `core.events=avro,inbound.events=json` (topic suffixes); a bare `avro` or `json` means
    /// `core.events`, the first topic to switch. Empty: everything JSON.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut formats = Self::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (suffix, format) = part.split_once('=').unwrap_or(("core.events", part));
            let record = AvroRecord::for_topic_suffix(suffix.trim()).ok_or_else(|| {
                let known: Vec<&str> = AvroRecord::ALL.iter().map(|r| r.topic_suffix()).collect();
                format!(
                    "{suffix:?} is not a topic with an Avro schema ({})",
                    known.join(", ")
                )
            })?;
            formats.set(record, format.trim().parse()?);
        }
        Ok(formats)
    }
}

impl fmt::Display for TopicFormats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .chosen
            .iter()
            .map(|(record, format)| format!("{}={format}", record.topic_suffix()))
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_sniffs() {
        let framed = frame(0x01020304, b"datum");
        assert_eq!(&framed[..5], &[0, 1, 2, 3, 4]);
        assert_eq!(
            sniff(&framed).expect("framed"),
            Framed::Confluent {
                schema_id: 0x01020304,
                datum: b"datum"
            }
        );
        assert_eq!(
            sniff(b"{\"a\":1}").expect("json"),
            Framed::Json(b"{\"a\":1}")
        );
        assert!(sniff(&[0, 1, 2]).is_err());
        assert!(sniff(b"").is_err());
        assert_eq!(
            sniff(&frame(7, b"")).expect("empty datum"),
            Framed::Confluent {
                schema_id: 7,
                datum: b""
            }
        );
    }

    #[test]
    fn topic_formats_parse_and_default_to_json() {
        let formats: TopicFormats = "core.events=avro, inbound.events=json"
            .parse()
            .expect("parses");
        assert_eq!(formats.of("core.events"), WireFormat::Avro);
        assert_eq!(formats.of("inbound.events"), WireFormat::Json);
        assert_eq!(formats.of("platform.events"), WireFormat::Json);
        assert_eq!(formats.of("monitoring"), WireFormat::Json);
        assert!(formats.any_avro());
        assert_eq!(formats.to_string(), "inbound.events=json,core.events=avro");
        assert_eq!(
            "avro"
                .parse::<TopicFormats>()
                .expect("bare")
                .of("core.events"),
            WireFormat::Avro
        );
        assert!(!"".parse::<TopicFormats>().expect("empty").any_avro());
        assert!("monitoring=avro".parse::<TopicFormats>().is_err());
        assert!("core.events=protobuf".parse::<TopicFormats>().is_err());
    }
}

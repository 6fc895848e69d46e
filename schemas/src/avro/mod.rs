//! Avro schemas of the records on our topics (`schemas/avro/*.avsc`, embedded) and the codec
//! between our JSON records and Avro datums in the Confluent wire format.
//!
//! Subjects follow Confluent's TopicNameStrategy (`<topic>-value`); keys stay plain strings.

mod convert;

use std::sync::LazyLock;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use serde_json::Value;

use crate::SchemaError;
use crate::topics::{self, Topics};
use crate::wire;

use convert::{Names, from_avro, names_of, to_avro};

/// A record type with an Avro schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AvroRecord {
    /// `erp.inbound.events`: [`crate::inbound::InboundEventRecord`].
    InboundEvent,
    /// `erp.core.events`: [`crate::core_event::CoreEvent`] (`InboundEventMapped` events and
    /// outbound messages).
    CoreEvent,
    /// `erp.platform.events`: core events of the customer platform.
    PlatformEvent,
}

struct Compiled {
    schema: Schema,
    names: Names,
}

fn parse(record: AvroRecord) -> Result<Compiled, String> {
    let schema = Schema::parse_str(record.schema_text())
        .map_err(|e| format!("{}.avsc does not parse: {e}", record.name()))?;
    Ok(Compiled {
        names: names_of(&schema),
        schema,
    })
}

static COMPILED: LazyLock<[Result<Compiled, String>; 3]> =
    LazyLock::new(|| AvroRecord::ALL.map(parse));

impl AvroRecord {
    /// Every record type.
    pub const ALL: [AvroRecord; 3] = [Self::InboundEvent, Self::CoreEvent, Self::PlatformEvent];

    /// The record's simple name (and `.avsc` file stem).
    pub fn name(self) -> &'static str {
        match self {
            Self::InboundEvent => "InboundEvent",
            Self::CoreEvent => "CoreEvent",
            Self::PlatformEvent => "PlatformEvent",
        }
    }

    /// The record's full name, e.g. `erp_toolkit.CoreEvent`.
    pub fn full_name(self) -> String {
        format!("erp_toolkit.{}", self.name())
    }

    /// The `.avsc` text as committed.
    pub fn schema_text(self) -> &'static str {
        match self {
            Self::InboundEvent => include_str!("../../avro/InboundEvent.avsc"),
            Self::CoreEvent => include_str!("../../avro/CoreEvent.avsc"),
            Self::PlatformEvent => include_str!("../../avro/PlatformEvent.avsc"),
        }
    }

    fn compiled(self) -> Result<&'static Compiled, SchemaError> {
        let index = Self::ALL
            .iter()
            .position(|r| *r == self)
            .unwrap_or_default();
        COMPILED[index]
            .as_ref()
            .map_err(|e| SchemaError::Catalog(e.clone()))
    }

    /// The parsed schema.
    pub fn schema(self) -> Result<&'static Schema, SchemaError> {
        self.compiled().map(|c| &c.schema)
    }

    /// The topic suffix the record is written to (see [`crate::topics`]).
    pub fn topic_suffix(self) -> &'static str {
        match self {
            Self::InboundEvent => topics::INBOUND_EVENTS,
            Self::CoreEvent => topics::CORE_EVENTS,
            Self::PlatformEvent => topics::PLATFORM_EVENTS,
        }
    }

    /// The record type of a topic suffix, if it has one.
    pub fn for_topic_suffix(suffix: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.topic_suffix() == suffix)
    }

    /// The registry subject of the record's values: `<topic>-value` (TopicNameStrategy).
    pub fn subject(self, topics: &Topics) -> String {
        format!("{}-value", topics.name(self.topic_suffix()))
    }

    /// The Avro value of a JSON record.
    pub fn avro_value(self, json: &Value) -> Result<apache_avro::types::Value, SchemaError> {
        let compiled = self.compiled()?;
        to_avro(&compiled.schema, &compiled.names, json)
    }

    /// The JSON record of an Avro value of this record's schema.
    pub fn json_value(self, value: &apache_avro::types::Value) -> Result<Value, SchemaError> {
        let compiled = self.compiled()?;
        from_avro(&compiled.schema, &compiled.names, value)
    }

    /// The Avro binary datum of a JSON record (no framing).
    pub fn encode_datum(self, json: &Value) -> Result<Vec<u8>, SchemaError> {
        let compiled = self.compiled()?;
        let value = to_avro(&compiled.schema, &compiled.names, json)?;
        let writer = GenericDatumWriter::builder(&compiled.schema)
            .build()
            .map_err(|e| self.avro_error(e))?;
        writer
            .write_value_to_vec(value)
            .map_err(|e| self.avro_error(e))
    }

    /// A JSON record in the Confluent wire format: magic byte, `schema_id`, Avro datum.
    pub fn encode(self, schema_id: u32, json: &Value) -> Result<Vec<u8>, SchemaError> {
        Ok(wire::frame(schema_id, &self.encode_datum(json)?))
    }

    /// The JSON record of a datum written with `writer` (the schema its id names in the
    /// registry), resolved to this record's schema by Avro's rules, so a consumer of a newer or
    /// older compatible schema reads it.
    pub fn decode_datum(self, writer: &Schema, datum: &[u8]) -> Result<Value, SchemaError> {
        let compiled = self.compiled()?;
        let mut input = datum;
        let builder = GenericDatumReader::builder(writer);
        let reader = if writer == &compiled.schema {
            builder.build()
        } else {
            builder.reader_schema(&compiled.schema).build()
        }
        .map_err(|e| self.avro_error(e))?;
        let value = reader
            .read_value(&mut input)
            .map_err(|e| self.avro_error(e))?;
        if !input.is_empty() {
            return Err(SchemaError::Wire(format!(
                "{} bytes after the {} datum",
                input.len(),
                self.full_name()
            )));
        }
        from_avro(&compiled.schema, &compiled.names, &value)
    }

    fn avro_error(self, error: apache_avro::Error) -> SchemaError {
        SchemaError::Avro {
            record: self.full_name(),
            at: "/".into(),
            message: error.to_string(),
        }
    }
}

/// Writer schemas by registry id: what a reader of Confluent-framed records needs. The in-memory
/// registry implements it; a client of an external registry implements it over its cache.
pub trait WriterSchemas {
    /// The parsed schema registered under `id`, if known.
    fn writer_schema(&self, id: u32) -> Option<std::sync::Arc<Schema>>;
}

/// Reads one record value of `record`'s topic in either format: JSON as it is, Confluent-framed
/// Avro through the writer schema its id names. For consumers during a migration between formats.
pub fn read_record(
    record: AvroRecord,
    bytes: &[u8],
    schemas: &dyn WriterSchemas,
) -> Result<Value, SchemaError> {
    match wire::sniff(bytes)? {
        wire::Framed::Json(text) => {
            serde_json::from_slice(text).map_err(|source| SchemaError::Decode {
                what: "JSON record",
                source,
            })
        }
        wire::Framed::Confluent { schema_id, datum } => {
            let writer = schemas.writer_schema(schema_id).ok_or_else(|| {
                SchemaError::Wire(format!("schema id {schema_id} is not in the registry"))
            })?;
            record.decode_datum(&writer, datum)
        }
    }
}

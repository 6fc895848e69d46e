//! JSON ↔ Avro for our record schemas, driven by the schema: a field maps to the JSON member of
//! its name. Free-form parts (attributes, payloads, hydrated entities) are Avro strings holding
//! JSON text; such fields carry the custom attribute `"erp.json": true`. A record's field marked
//! `"erp.rest": true` holds, as JSON text of an object, every member no other field names, so a
//! record with open content loses nothing. A member of a record without such a field that no field
//! names is refused: nothing is dropped silently.
//!
//! An optional field (`["null", T]`) that is absent or `null` in JSON is Avro `null`, and Avro
//! `null` becomes an absent member; a JSON-text field keeps an explicit `null` (as the text
//! `null`).

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::schema::{Name, RecordField, RecordSchema};
use apache_avro::types::Value as Avro;
use serde_json::{Map, Number, Value};

use crate::SchemaError;
use crate::error::json_kind as kind;

/// Named types of a schema, to follow `Schema::Ref`.
pub(crate) type Names = HashMap<Name, Schema>;

/// Every named type defined in `schema`.
pub(crate) fn names_of(schema: &Schema) -> Names {
    let mut names = HashMap::new();
    collect_names(schema, &mut names);
    names
}

fn collect_names(schema: &Schema, names: &mut Names) {
    match schema {
        Schema::Record(record) => {
            names.insert(record.name.clone(), schema.clone());
            for field in &record.fields {
                collect_names(&field.schema, names);
            }
        }
        Schema::Enum(e) => {
            names.insert(e.name.clone(), schema.clone());
        }
        Schema::Fixed(f) => {
            names.insert(f.name.clone(), schema.clone());
        }
        Schema::Array(array) => collect_names(&array.items, names),
        Schema::Map(map) => collect_names(&map.types, names),
        Schema::Union(union) => union
            .variants()
            .iter()
            .for_each(|v| collect_names(v, names)),
        _ => {}
    }
}

fn flag(field: &RecordField, attribute: &str) -> bool {
    field.custom_attributes.get(attribute) == Some(&Value::Bool(true))
}

struct Converter<'a> {
    record: &'a str,
    names: &'a Names,
}

impl Converter<'_> {
    fn error(&self, at: &str, message: impl Into<String>) -> SchemaError {
        SchemaError::Avro {
            record: self.record.to_owned(),
            at: if at.is_empty() {
                "/".into()
            } else {
                at.to_owned()
            },
            message: message.into(),
        }
    }

    fn resolve<'s>(&'s self, schema: &'s Schema, at: &str) -> Result<&'s Schema, SchemaError> {
        match schema {
            Schema::Ref { name } => self
                .names
                .get(name)
                .ok_or_else(|| self.error(at, format!("unknown type {}", name.fullname(None)))),
            other => Ok(other),
        }
    }

    fn encode(&self, schema: &Schema, value: &Value, at: &str) -> Result<Avro, SchemaError> {
        let mismatch = |want: &str| self.error(at, format!("{want} expected, not {}", kind(value)));
        Ok(match (self.resolve(schema, at)?, value) {
            (Schema::Null, Value::Null) => Avro::Null,
            (Schema::Boolean, Value::Bool(b)) => Avro::Boolean(*b),
            (Schema::Int, Value::Number(n)) => Avro::Int(
                n.as_i64()
                    .and_then(|i| i32::try_from(i).ok())
                    .ok_or_else(|| mismatch("a 32-bit integer"))?,
            ),
            (Schema::Long, Value::Number(n)) => {
                Avro::Long(n.as_i64().ok_or_else(|| mismatch("an integer"))?)
            }
            (Schema::TimestampMillis, Value::Number(n)) => {
                Avro::TimestampMillis(n.as_i64().ok_or_else(|| mismatch("milliseconds"))?)
            }
            (Schema::Double, Value::Number(n)) => {
                Avro::Double(n.as_f64().ok_or_else(|| mismatch("a number"))?)
            }
            (Schema::Float, Value::Number(n)) => {
                Avro::Float(n.as_f64().ok_or_else(|| mismatch("a number"))? as f32)
            }
            (Schema::String, Value::String(s)) => Avro::String(s.clone()),
            (Schema::Enum(e), Value::String(s)) => {
                let index = e
                    .symbols
                    .iter()
                    .position(|symbol| symbol == s)
                    .ok_or_else(|| {
                        self.error(at, format!("{s:?} is not one of {:?}", e.symbols))
                    })?;
                Avro::Enum(index as u32, s.clone())
            }
            (Schema::Array(array), Value::Array(items)) => Avro::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.encode(&array.items, item, &format!("{at}/{i}")))
                    .collect::<Result<_, _>>()?,
            ),
            (Schema::Map(map), Value::Object(members)) => Avro::Map(
                members
                    .iter()
                    .map(|(k, v)| {
                        Ok((k.clone(), self.encode(&map.types, v, &format!("{at}/{k}"))?))
                    })
                    .collect::<Result<_, SchemaError>>()?,
            ),
            (Schema::Union(union), value) => {
                let variants = union.variants();
                let null = variants.iter().position(|v| matches!(v, Schema::Null));
                match (value, null) {
                    (Value::Null, Some(index)) => Avro::Union(index as u32, Box::new(Avro::Null)),
                    _ => {
                        // Our schemas only use ["null", T]: the first variant that takes the value.
                        let mut last = None;
                        for (index, variant) in variants.iter().enumerate() {
                            if matches!(variant, Schema::Null) {
                                continue;
                            }
                            match self.encode(variant, value, at) {
                                Ok(converted) => {
                                    return Ok(Avro::Union(index as u32, Box::new(converted)));
                                }
                                Err(e) => last = Some(e),
                            }
                        }
                        return Err(last.unwrap_or_else(|| mismatch("null")));
                    }
                }
            }
            (Schema::Record(record), Value::Object(members)) => {
                self.encode_record(record, members, at)?
            }
            (Schema::Record(_), _) => return Err(mismatch("an object")),
            (Schema::Array(_), _) => return Err(mismatch("an array")),
            (Schema::Map(_), _) => return Err(mismatch("an object")),
            (Schema::String | Schema::Enum(_), _) => return Err(mismatch("a string")),
            (Schema::Boolean, _) => return Err(mismatch("a boolean")),
            (Schema::Null, _) => return Err(mismatch("null")),
            (
                Schema::Int
                | Schema::Long
                | Schema::Double
                | Schema::Float
                | Schema::TimestampMillis,
                _,
            ) => {
                return Err(mismatch("a number"));
            }
            (other, _) => return Err(self.error(at, format!("unsupported Avro type {other:?}"))),
        })
    }

    fn encode_record(
        &self,
        record: &RecordSchema,
        members: &Map<String, Value>,
        at: &str,
    ) -> Result<Avro, SchemaError> {
        let mut fields = Vec::with_capacity(record.fields.len());
        let mut rest_field = None;
        for field in &record.fields {
            let here = format!("{at}/{}", field.name);
            if flag(field, "erp.rest") {
                rest_field = Some(fields.len());
                fields.push((field.name.clone(), Avro::Null));
                continue;
            }
            let member = members.get(&field.name);
            let value = if flag(field, "erp.json") {
                match member {
                    Some(member) => {
                        let text = serde_json::to_string(member)
                            .map_err(|e| self.error(&here, e.to_string()))?;
                        self.encode(&field.schema, &Value::String(text), &here)?
                    }
                    None => self.encode(&field.schema, &Value::Null, &here)?,
                }
            } else {
                self.encode(&field.schema, member.unwrap_or(&Value::Null), &here)
                    .map_err(|e| match (member, e) {
                        (None, SchemaError::Avro { .. }) => self.error(&here, "is required"),
                        (_, e) => e,
                    })?
            };
            fields.push((field.name.clone(), value));
        }
        let others: Map<String, Value> = members
            .iter()
            .filter(|(name, _)| !record.lookup.contains_key(*name))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        match rest_field {
            Some(index) if !others.is_empty() => {
                let field = &record.fields[index];
                let text =
                    serde_json::to_string(&others).map_err(|e| self.error(at, e.to_string()))?;
                fields[index].1 = self.encode(
                    &field.schema,
                    &Value::String(text),
                    &format!("{at}/{}", field.name),
                )?;
            }
            Some(_) => {}
            None => {
                if let Some(name) = others.keys().next() {
                    return Err(self.error(
                        &format!("{at}/{name}"),
                        format!("{} has no field {name:?}", record.name.fullname(None)),
                    ));
                }
            }
        }
        Ok(Avro::Record(fields))
    }

    fn decode(&self, schema: &Schema, value: &Avro, at: &str) -> Result<Value, SchemaError> {
        let schema = self.resolve(schema, at)?;
        Ok(match (schema, value) {
            (_, Avro::Null) => Value::Null,
            (_, Avro::Boolean(b)) => Value::Bool(*b),
            (_, Avro::Int(i)) => Value::from(*i),
            (_, Avro::Long(i) | Avro::TimestampMillis(i)) => Value::from(*i),
            (_, Avro::Double(d)) => Number::from_f64(*d).map_or(Value::Null, Value::Number),
            (_, Avro::Float(f)) => {
                Number::from_f64(f64::from(*f)).map_or(Value::Null, Value::Number)
            }
            (_, Avro::String(s) | Avro::Enum(_, s)) => Value::String(s.clone()),
            (Schema::Union(union), Avro::Union(index, inner)) => {
                let variant = union
                    .variants()
                    .get(*index as usize)
                    .ok_or_else(|| self.error(at, format!("no union variant {index}")))?;
                self.decode(variant, inner, at)?
            }
            (Schema::Array(array), Avro::Array(items)) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.decode(&array.items, item, &format!("{at}/{i}")))
                    .collect::<Result<_, _>>()?,
            ),
            (Schema::Map(map), Avro::Map(members)) => Value::Object(
                members
                    .iter()
                    .map(|(k, v)| {
                        Ok((k.clone(), self.decode(&map.types, v, &format!("{at}/{k}"))?))
                    })
                    .collect::<Result<_, SchemaError>>()?,
            ),
            (Schema::Record(record), Avro::Record(fields)) => {
                self.decode_record(record, fields, at)?
            }
            (schema, value) => {
                return Err(self.error(at, format!("{value:?} does not fit {schema:?}")));
            }
        })
    }

    fn decode_record(
        &self,
        record: &RecordSchema,
        values: &[(String, Avro)],
        at: &str,
    ) -> Result<Value, SchemaError> {
        let mut members = Map::new();
        for (name, value) in values {
            let here = format!("{at}/{name}");
            let Some(field) = record.lookup.get(name).and_then(|i| record.fields.get(*i)) else {
                continue;
            };
            let converted = self.decode(&field.schema, value, &here)?;
            let json_text = flag(field, "erp.json");
            let rest = flag(field, "erp.rest");
            match converted {
                Value::Null => {}
                Value::String(text) if json_text || rest => {
                    let parsed: Value = serde_json::from_str(&text)
                        .map_err(|e| self.error(&here, format!("not JSON text: {e}")))?;
                    if rest {
                        match parsed {
                            Value::Object(others) => members.extend(others),
                            _ => return Err(self.error(&here, "JSON text of an object expected")),
                        }
                    } else {
                        members.insert(name.clone(), parsed);
                    }
                }
                other => {
                    members.insert(name.clone(), other);
                }
            }
        }
        Ok(Value::Object(members))
    }
}

/// The Avro value of a JSON record under `schema` (whose named types are `names`).
pub(crate) fn to_avro(schema: &Schema, names: &Names, json: &Value) -> Result<Avro, SchemaError> {
    let record = schema
        .name()
        .map_or_else(|| "record".to_owned(), |n| n.fullname(None));
    Converter {
        record: &record,
        names,
    }
    .encode(schema, json, "")
}

/// The JSON record of an Avro value read with (or resolved to) `schema`.
pub(crate) fn from_avro(
    schema: &Schema,
    names: &Names,
    value: &Avro,
) -> Result<Value, SchemaError> {
    let record = schema
        .name()
        .map_or_else(|| "record".to_owned(), |n| n.fullname(None));
    Converter {
        record: &record,
        names,
    }
    .decode(schema, value, "")
}

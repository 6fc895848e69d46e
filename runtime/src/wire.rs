//! The wire format of our topics at run time: which topics are written as Avro (opt-in per
//! topic, `--avro-topics`), the schema registry the ids come from, and the one codec every
//! producer and consumer of our topics goes through.
//!
//! Producers register (or look up) a record's schema once under `<topic>-value` and cache the
//! id. Consumers read both formats whatever the setting (the first byte tells them apart, see
//! [`erp_schemas::wire`]), so a topic switches from JSON to Avro, or back, without a flag day:
//! records already on the topic stay readable. Avro records are turned into the same JSON the
//! JSON format carries, right after they are read, so everything downstream (mapping, dead
//! letters, spans) sees one shape.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use apache_avro::Schema;
use futures::future::BoxFuture;
use rdkafka::message::{Message, OwnedMessage};
use serde::Serialize;
use tracing::warn;

use crate::error::RuntimeError;
use erp_schemas::avro::AvroRecord;
use erp_schemas::topics::Topics;
use erp_schemas::wire::{self as framing, Framed, TopicFormats, WireFormat};

/// Where schema ids come from: our own registry (in this process) or an external
/// Confluent-compatible one.
pub trait SchemaSource: Send + Sync {
    /// Registers `schema` (Avro JSON text) under `subject`, or finds it registered; its id.
    fn register<'a>(
        &'a self,
        subject: &'a str,
        schema: &'a str,
    ) -> BoxFuture<'a, Result<u32, RuntimeError>>;

    /// The schema text registered under `id`.
    fn schema_by_id(&self, id: u32) -> BoxFuture<'_, Result<String, RuntimeError>>;
}

/// The codec of our topics. Cheap to clone (shared caches).
#[derive(Clone)]
pub struct Wire {
    inner: Arc<Inner>,
}

struct Inner {
    topics: Topics,
    formats: TopicFormats,
    registry: Option<Arc<dyn SchemaSource>>,
    /// Our schema's id per record type, registered once.
    ids: tokio::sync::Mutex<HashMap<AvroRecord, u32>>,
    /// Writer schemas of the ids met on our topics.
    writers: RwLock<HashMap<u32, Arc<Schema>>>,
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wire")
            .field("formats", &self.inner.formats.to_string())
            .field("registry", &self.inner.registry.is_some())
            .finish()
    }
}

impl Wire {
    /// Every topic JSON, no registry: Avro records met on a topic cannot be read.
    pub fn json(topics: Topics) -> Self {
        Self::new(topics, TopicFormats::default(), None)
    }

    /// Topics written as `formats` says, ids from `registry`. Avro on any topic needs a
    /// registry: [`Self::prepare`] says so at start.
    pub fn new(
        topics: Topics,
        formats: TopicFormats,
        registry: Option<Arc<dyn SchemaSource>>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                topics,
                formats,
                registry,
                ids: tokio::sync::Mutex::new(HashMap::new()),
                writers: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// The chosen formats.
    pub fn formats(&self) -> &TopicFormats {
        &self.inner.formats
    }

    /// The record type of a full topic name, if the topic has an Avro schema.
    pub fn record_of(&self, topic: &str) -> Option<AvroRecord> {
        AvroRecord::ALL
            .into_iter()
            .find(|r| self.inner.topics.name(r.topic_suffix()) == topic)
    }

    /// How `topic` is written.
    pub fn format_of(&self, topic: &str) -> WireFormat {
        self.record_of(topic)
            .map(|r| self.inner.formats.of_record(r))
            .unwrap_or_default()
    }

    fn registry(&self) -> Result<&Arc<dyn SchemaSource>, RuntimeError> {
        self.inner.registry.as_ref().ok_or_else(|| {
            RuntimeError::RegistryUnavailable("no schema registry configured".into())
        })
    }

    /// Our schema's id for `record`: registered under `<topic>-value` on first use, then cached.
    pub async fn schema_id(&self, record: AvroRecord) -> Result<u32, RuntimeError> {
        let mut ids = self.inner.ids.lock().await;
        if let Some(id) = ids.get(&record) {
            return Ok(*id);
        }
        let subject = record.subject(&self.inner.topics);
        let id = self
            .registry()?
            .register(&subject, record.schema_text())
            .await?;
        ids.insert(record, id);
        // Our own records need no look-up of the writer schema.
        if let Ok(schema) = record.schema()
            && let Ok(mut writers) = self.inner.writers.write()
        {
            writers.insert(id, Arc::new(schema.clone()));
        }
        Ok(id)
    }

    /// Registers the schemas of every Avro topic now, so a registry that refuses one (409: not
    /// compatible with what is registered) stops the start instead of the first write.
    pub async fn prepare(&self) -> Result<(), RuntimeError> {
        if self.inner.formats.any_avro() && self.inner.registry.is_none() {
            return Err(RuntimeError::Setting(format!(
                "Avro on {} needs a schema registry: --schema-registry-url (standalone serves \
                 its own)",
                self.inner.formats
            )));
        }
        for record in AvroRecord::ALL {
            if self.inner.formats.of_record(record) == WireFormat::Avro {
                self.schema_id(record).await?;
            }
        }
        Ok(())
    }

    /// `value` as the bytes of a record on `topic`: JSON, or Avro in the Confluent wire format.
    pub async fn encode<T: Serialize>(
        &self,
        what: &'static str,
        topic: &str,
        value: &T,
    ) -> Result<Vec<u8>, RuntimeError> {
        match self.avro_record(topic) {
            None => Ok(erp_schemas::error::encode(what, value)?),
            Some(record) => {
                let json = serde_json::to_value(value)
                    .map_err(|source| erp_schemas::SchemaError::Encode { what, source })?;
                let id = self.schema_id(record).await?;
                Ok(record.encode(id, &json)?)
            }
        }
    }

    /// JSON record bytes as the bytes of a record on `topic` (unchanged where it is JSON).
    pub async fn encode_json<'a>(
        &self,
        what: &'static str,
        topic: &str,
        json: &'a [u8],
    ) -> Result<Cow<'a, [u8]>, RuntimeError> {
        match self.avro_record(topic) {
            None => Ok(Cow::Borrowed(json)),
            Some(record) => {
                let value: serde_json::Value = erp_schemas::error::decode(what, json)?;
                let id = self.schema_id(record).await?;
                Ok(Cow::Owned(record.encode(id, &value)?))
            }
        }
    }

    fn avro_record(&self, topic: &str) -> Option<AvroRecord> {
        self.record_of(topic)
            .filter(|r| self.inner.formats.of_record(*r) == WireFormat::Avro)
    }

    async fn writer_schema(&self, id: u32) -> Result<Arc<Schema>, RuntimeError> {
        if let Some(schema) = self
            .inner
            .writers
            .read()
            .ok()
            .and_then(|w| w.get(&id).cloned())
        {
            return Ok(schema);
        }
        let text = self.registry()?.schema_by_id(id).await?;
        let schema = Arc::new(Schema::parse_str(&text).map_err(|e| {
            RuntimeError::RegistryUnavailable(format!("schema {id} does not parse: {e}"))
        })?);
        if let Ok(mut writers) = self.inner.writers.write() {
            writers.insert(id, Arc::clone(&schema));
        }
        Ok(schema)
    }

    /// The JSON of a record value read from `topic`, in whichever format it was written: JSON
    /// as it is, Avro through the writer schema its id names. Errors: the record is not readable
    /// ([`RuntimeError::Schema`]) or the registry could not be asked
    /// ([`RuntimeError::RegistryUnavailable`], worth a retry).
    pub async fn to_json<'a>(
        &self,
        topic: &str,
        payload: &'a [u8],
    ) -> Result<Cow<'a, [u8]>, RuntimeError> {
        let Ok(Framed::Confluent { schema_id, datum }) = framing::sniff(payload) else {
            return Ok(Cow::Borrowed(payload));
        };
        let record = self
            .record_of(topic)
            .ok_or_else(|| erp_schemas::SchemaError::Wire(format!("{topic} has no Avro schema")))?;
        let writer = self.writer_schema(schema_id).await?;
        let value = record.decode_datum(&writer, datum)?;
        Ok(Cow::Owned(erp_schemas::error::encode("record", &value)?))
    }

    /// [`Self::to_json`] for synchronous callers (index followers, blocking fetches). A writer
    /// schema not cached yet is fetched by blocking this thread on the registry call, which
    /// needs a multi-threaded tokio runtime (every role runs on one).
    pub fn to_json_sync<'a>(
        &self,
        topic: &str,
        payload: &'a [u8],
    ) -> Result<Cow<'a, [u8]>, RuntimeError> {
        let Ok(Framed::Confluent { schema_id, datum }) = framing::sniff(payload) else {
            return Ok(Cow::Borrowed(payload));
        };
        let record = self
            .record_of(topic)
            .ok_or_else(|| erp_schemas::SchemaError::Wire(format!("{topic} has no Avro schema")))?;
        let cached = self
            .inner
            .writers
            .read()
            .ok()
            .and_then(|w| w.get(&schema_id).cloned());
        let writer = match cached {
            Some(writer) => writer,
            None => {
                let handle = tokio::runtime::Handle::try_current().map_err(|_| {
                    RuntimeError::RegistryUnavailable(format!(
                        "schema {schema_id} is not cached and there is no runtime to ask for it"
                    ))
                })?;
                if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
                    return Err(RuntimeError::RegistryUnavailable(format!(
                        "schema {schema_id} is not cached (single-threaded runtime)"
                    )));
                }
                tokio::task::block_in_place(|| handle.block_on(self.writer_schema(schema_id)))?
            }
        };
        let value = record.decode_datum(&writer, datum)?;
        Ok(Cow::Owned(erp_schemas::error::encode("record", &value)?))
    }

    /// A record decoded from `topic` in either format.
    pub async fn decode<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        topic: &str,
        payload: &[u8],
    ) -> Result<T, RuntimeError> {
        let json = self.to_json(topic, payload).await?;
        Ok(erp_schemas::error::decode(what, &json)?)
    }

    /// The messages with their Avro values turned into JSON, for consumers of our topics whose
    /// stages read JSON. A registry that cannot be asked is asked again (with backoff, up to a
    /// minute): a record is never dead-lettered because the registry was away. A value that
    /// cannot be decoded is left as it is, so the stage that reads it sets it aside as it does
    /// with any unreadable record.
    pub async fn normalise(&self, messages: Vec<OwnedMessage>) -> Vec<OwnedMessage> {
        let mut out = Vec::with_capacity(messages.len());
        for message in messages {
            out.push(self.normalise_one(message).await);
        }
        out
    }

    /// One message of [`Self::normalise`].
    pub async fn normalise_one(&self, message: OwnedMessage) -> OwnedMessage {
        if message.payload().and_then(|p| p.first()) != Some(&framing::MAGIC) {
            return message;
        }
        let mut backoff = Duration::from_millis(200);
        let mut waited = Duration::ZERO;
        loop {
            let payload = message.payload().unwrap_or_default();
            match self.to_json(message.topic(), payload).await {
                Ok(json) => {
                    let json = json.into_owned();
                    return message.set_payload(Some(json));
                }
                Err(RuntimeError::RegistryUnavailable(error))
                    if waited < Duration::from_secs(60) =>
                {
                    warn!(topic = message.topic(), offset = message.offset(), %error,
                        "schema registry unavailable; asking again");
                    tokio::time::sleep(backoff).await;
                    waited += backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(error) => {
                    warn!(topic = message.topic(), offset = message.offset(), %error,
                        "Avro record not decodable");
                    return message;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::WireArgs;

    #[test]
    fn topics_are_json_unless_chosen_and_avro_needs_a_registry() {
        let args = WireArgs {
            avro_topics: vec!["core".into(), "erp.inbound.events".into()],
            ..WireArgs::default()
        };
        let wire = args.wire(Topics::new("acme"), None).expect("wire");
        assert_eq!(wire.format_of("acme.core.events"), WireFormat::Avro);
        assert_eq!(wire.format_of("acme.inbound.events"), WireFormat::Avro);
        assert_eq!(wire.format_of("acme.platform.events"), WireFormat::Json);
        assert_eq!(wire.format_of("acme.monitoring"), WireFormat::Json);
        assert_eq!(
            wire.format_of("erp.core.events"),
            WireFormat::Json,
            "another prefix"
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        assert!(matches!(
            runtime.block_on(wire.prepare()),
            Err(RuntimeError::Setting(_))
        ));
        // JSON passes through untouched, whatever the topic.
        let json = br#"{"a":1}"#;
        assert!(matches!(
            runtime.block_on(wire.to_json("acme.core.events", json)),
            Ok(Cow::Borrowed(_))
        ));
        let bad = WireArgs {
            avro_topics: vec!["monitoring".into()],
            ..WireArgs::default()
        };
        assert!(bad.formats().is_err());
    }

    #[test]
    fn registry_credentials_are_one_kind_and_never_printed() {
        let both = WireArgs {
            schema_registry_user: Some("key".into()),
            schema_registry_password: Some("secret-value".into()),
            schema_registry_token: Some("token-value".into()),
            ..WireArgs::default()
        };
        assert!(both.auth().is_err());
        let printed = format!("{both:?}");
        assert!(!printed.contains("secret-value") && !printed.contains("token-value"));
        let basic = WireArgs {
            schema_registry_user: Some("key".into()),
            schema_registry_password: Some("secret-value".into()),
            ..WireArgs::default()
        };
        assert!(matches!(
            basic.auth(),
            Ok(crate::registry_client::RegistryAuth::Basic { .. })
        ));
        assert_eq!(
            format!("{:?}", basic.auth().expect("basic")),
            "Basic",
            "no secret in the Debug form"
        );
    }
}

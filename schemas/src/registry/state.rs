//! The registry state and its decisions (see the module documentation of [`super`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use apache_avro::Schema;

use super::compatibility::{CompatibilityLevel, check};
use super::error::RegistryError;
use super::record::RegistryRecord;
use super::{
    CompatibilityAnswer, Registration, SchemaById, SchemaReference, SchemaRequest, SubjectVersion,
};
use crate::avro::WriterSchemas;

pub(super) const AVRO: &str = "AVRO";

/// A schema stored under an id.
#[derive(Debug, Clone)]
pub(super) struct Stored {
    pub(super) schema: String,
    pub(super) references: Vec<SchemaReference>,
    parsed: Option<Arc<Schema>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Version {
    pub(super) id: u32,
    pub(super) deleted: bool,
}

/// Subjects, versions, ids and compatibility levels.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    pub(super) schemas: BTreeMap<u32, Stored>,
    subjects: BTreeMap<String, BTreeMap<u32, Version>>,
    global: Option<CompatibilityLevel>,
    pub(super) configs: BTreeMap<String, CompatibilityLevel>,
    id_floor: u32,
}

/// A parsed request schema: its normalised text and parsed form.
struct Parsed {
    text: String,
    schema: Schema,
    references: Vec<SchemaReference>,
}

/// `latest`, `-1` or a version number ≥ 1.
pub(super) fn parse_version(version: &str) -> Result<Option<u32>, RegistryError> {
    match version.trim() {
        "latest" | "-1" => Ok(None),
        text => text
            .parse::<u32>()
            .ok()
            .filter(|v| (1..=i32::MAX as u32).contains(v))
            .map(Some)
            .ok_or_else(|| RegistryError::InvalidVersion {
                version: version.to_owned(),
            }),
    }
}

impl Registry {
    /// An empty registry (global level BACKWARD).
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds one record into the state.
    pub fn apply(&mut self, record: &RegistryRecord) {
        match record {
            RegistryRecord::Schema {
                subject,
                version,
                id,
                schema,
                references,
                deleted,
                ..
            } => {
                if !self.schemas.contains_key(id) {
                    let parsed = self.parse_stored(schema, references).map(Arc::new);
                    self.schemas.insert(
                        *id,
                        Stored {
                            schema: schema.clone(),
                            references: references.clone(),
                            parsed,
                        },
                    );
                }
                self.subjects.entry(subject.clone()).or_default().insert(
                    *version,
                    Version {
                        id: *id,
                        deleted: *deleted,
                    },
                );
            }
            RegistryRecord::Purged { subject, version } => {
                if let Some(versions) = self.subjects.get_mut(subject) {
                    versions.remove(version);
                    if versions.is_empty() {
                        self.subjects.remove(subject);
                    }
                }
                let used: std::collections::BTreeSet<u32> = self
                    .subjects
                    .values()
                    .flat_map(|versions| versions.values().map(|v| v.id))
                    .collect();
                self.schemas.retain(|id, _| used.contains(id));
            }
            RegistryRecord::Config {
                subject,
                compatibility,
            } => match (subject, compatibility) {
                (None, level) => self.global = *level,
                (Some(subject), Some(level)) => {
                    self.configs.insert(subject.clone(), *level);
                }
                (Some(subject), None) => {
                    self.configs.remove(subject);
                }
            },
            RegistryRecord::IdFloor { next_id } => self.id_floor = self.id_floor.max(*next_id),
        }
    }

    /// The parsed schema of stored text (references resolved against the current state).
    fn parse_stored(&self, schema: &str, references: &[SchemaReference]) -> Option<Schema> {
        let texts = self.reference_texts(references).ok()?;
        if texts.is_empty() {
            Schema::parse_str(schema).ok()
        } else {
            Schema::parse_str_with_list(schema, texts)
                .ok()
                .map(|(s, _)| s)
        }
    }

    fn reference_texts(
        &self,
        references: &[SchemaReference],
    ) -> Result<Vec<String>, RegistryError> {
        references
            .iter()
            .map(|reference| {
                let version = if reference.version < 0 {
                    "latest".to_owned()
                } else {
                    reference.version.to_string()
                };
                self.version(&reference.subject, &version, true)
                    .map(|v| v.schema)
                    .map_err(|_| RegistryError::InvalidSchema {
                        reason: format!(
                            "reference {} to subject {:?} version {} is not registered",
                            reference.name, reference.subject, reference.version
                        ),
                    })
            })
            .collect()
    }

    fn parse_request(&self, request: &SchemaRequest) -> Result<Parsed, RegistryError> {
        let kind = request.schema_type.as_deref().unwrap_or(AVRO);
        if !kind.eq_ignore_ascii_case(AVRO) {
            return Err(RegistryError::InvalidSchema {
                reason: format!("of type {kind}: this registry serves AVRO schemas"),
            });
        }
        let texts = self.reference_texts(&request.references)?;
        let parsed = if texts.is_empty() {
            Schema::parse_str(&request.schema)
        } else {
            Schema::parse_str_with_list(&request.schema, texts).map(|(s, _)| s)
        }
        .map_err(|e| RegistryError::InvalidSchema {
            reason: format!("{:?}: {e}", truncate(&request.schema)),
        })?;
        let text = serde_json::to_string(&parsed).map_err(|e| RegistryError::InvalidSchema {
            reason: e.to_string(),
        })?;
        Ok(Parsed {
            text,
            schema: parsed,
            references: request.references.clone(),
        })
    }

    /// The subjects, sorted; soft-deleted ones too with `deleted`; only those starting with
    /// `prefix` when given.
    pub fn subjects(&self, deleted: bool, prefix: Option<&str>) -> Vec<String> {
        self.subjects
            .iter()
            .filter(|(_, versions)| deleted || versions.values().any(|v| !v.deleted))
            .filter(|(subject, _)| prefix.is_none_or(|p| subject.starts_with(p)))
            .map(|(subject, _)| subject.clone())
            .collect()
    }

    pub(super) fn live(
        &self,
        subject: &str,
        deleted: bool,
    ) -> Result<Vec<(u32, Version)>, RegistryError> {
        let versions: Vec<(u32, Version)> = self
            .subjects
            .get(subject)
            .into_iter()
            .flatten()
            .filter(|(_, v)| deleted || !v.deleted)
            .map(|(n, v)| (*n, *v))
            .collect();
        if versions.is_empty() {
            return Err(RegistryError::SubjectNotFound {
                subject: subject.to_owned(),
            });
        }
        Ok(versions)
    }

    /// The version numbers of a subject (soft-deleted ones too with `deleted`).
    pub fn versions(&self, subject: &str, deleted: bool) -> Result<Vec<u32>, RegistryError> {
        Ok(self
            .live(subject, deleted)?
            .into_iter()
            .map(|(n, _)| n)
            .collect())
    }

    /// One version (`latest`, `-1` or a number) of a subject.
    pub fn version(
        &self,
        subject: &str,
        version: &str,
        deleted: bool,
    ) -> Result<SubjectVersion, RegistryError> {
        let wanted = parse_version(version)?;
        let versions = self.live(subject, deleted)?;
        let (number, entry) = match wanted {
            None => versions.last().copied(),
            Some(n) => versions.iter().find(|(v, _)| *v == n).copied(),
        }
        .ok_or(RegistryError::VersionNotFound {
            subject: subject.to_owned(),
            version: wanted.unwrap_or_default(),
        })?;
        self.subject_version(subject, number, entry.id)
    }

    fn subject_version(
        &self,
        subject: &str,
        version: u32,
        id: u32,
    ) -> Result<SubjectVersion, RegistryError> {
        let stored = self
            .schemas
            .get(&id)
            .ok_or(RegistryError::SchemaNotFound { id: Some(id) })?;
        Ok(SubjectVersion {
            subject: subject.to_owned(),
            version,
            id,
            schema: stored.schema.clone(),
            references: stored.references.clone(),
        })
    }

    /// A schema by id.
    pub fn schema_by_id(&self, id: u32) -> Result<SchemaById, RegistryError> {
        let stored = self
            .schemas
            .get(&id)
            .ok_or(RegistryError::SchemaNotFound { id: Some(id) })?;
        Ok(SchemaById {
            id,
            schema: stored.schema.clone(),
            references: stored.references.clone(),
        })
    }

    /// The subject versions that hold schema `id` (`GET /schemas/ids/{id}/versions`).
    pub fn versions_of_id(&self, id: u32) -> Vec<(String, u32)> {
        self.subjects
            .iter()
            .flat_map(|(subject, versions)| {
                versions
                    .iter()
                    .filter(move |(_, v)| v.id == id && !v.deleted)
                    .map(move |(n, _)| (subject.clone(), *n))
            })
            .collect()
    }

    /// `POST /subjects/{s}`: the version of `subject` holding this schema.
    pub fn lookup(
        &self,
        subject: &str,
        request: &SchemaRequest,
        deleted: bool,
    ) -> Result<SubjectVersion, RegistryError> {
        let versions = self.live(subject, deleted)?;
        let parsed = self.parse_request(request)?;
        versions
            .iter()
            .rev()
            .find(|(_, v)| self.same(v.id, &parsed))
            .map(|(n, v)| self.subject_version(subject, *n, v.id))
            .unwrap_or(Err(RegistryError::SchemaNotFound { id: None }))
    }

    fn same(&self, id: u32, parsed: &Parsed) -> bool {
        self.schemas
            .get(&id)
            .is_some_and(|s| s.schema == parsed.text && s.references == parsed.references)
    }

    /// The compatibility level that applies to `subject` (its own, else the global one).
    pub fn level_of(&self, subject: &str) -> CompatibilityLevel {
        self.configs
            .get(subject)
            .copied()
            .unwrap_or_else(|| self.global.unwrap_or_default())
    }

    /// `GET /config` (`subject: None`) or `GET /config/{s}`: 40408 for a subject without its
    /// own level unless `default_to_global`.
    pub fn config(
        &self,
        subject: Option<&str>,
        default_to_global: bool,
    ) -> Result<CompatibilityLevel, RegistryError> {
        match subject {
            None => Ok(self.global.unwrap_or_default()),
            Some(subject) => match self.configs.get(subject) {
                Some(level) => Ok(*level),
                None if default_to_global => Ok(self.global.unwrap_or_default()),
                None => Err(RegistryError::SubjectCompatibilityNotConfigured {
                    subject: subject.to_owned(),
                }),
            },
        }
    }

    /// `PUT /config[/{s}]`: the record to append.
    pub fn set_config(&self, subject: Option<&str>, level: CompatibilityLevel) -> RegistryRecord {
        RegistryRecord::Config {
            subject: subject.map(str::to_owned),
            compatibility: Some(level),
        }
    }

    /// `DELETE /config[/{s}]`: the level that applied before, and the record to append.
    pub fn delete_config(
        &self,
        subject: Option<&str>,
    ) -> Result<(CompatibilityLevel, RegistryRecord), RegistryError> {
        let previous = self.config(subject, subject.is_none())?;
        Ok((
            previous,
            RegistryRecord::Config {
                subject: subject.map(str::to_owned),
                compatibility: None,
            },
        ))
    }

    fn problems(&self, subject: &str, parsed: &Parsed, level: CompatibilityLevel) -> Vec<String> {
        let existing: Vec<(u32, Arc<Schema>)> = self
            .subjects
            .get(subject)
            .into_iter()
            .flatten()
            .filter(|(_, v)| !v.deleted)
            .filter_map(|(n, v)| {
                let schema = self.schemas.get(&v.id)?.parsed.clone()?;
                Some((*n, schema))
            })
            .collect();
        let existing: Vec<(u32, &Schema)> =
            existing.iter().map(|(n, s)| (*n, s.as_ref())).collect();
        check(level, &parsed.schema, &existing)
    }

    /// `POST /subjects/{s}/versions`: the id (an existing version's when the schema is already
    /// registered under the subject, else the id of the same schema elsewhere, else a new one),
    /// after checking compatibility with the subject's level (409).
    pub fn register(
        &self,
        subject: &str,
        request: &SchemaRequest,
    ) -> Result<Registration, RegistryError> {
        let parsed = self.parse_request(request)?;
        let versions = self.subjects.get(subject);
        if let Some((number, version)) = versions
            .into_iter()
            .flatten()
            .filter(|(_, v)| !v.deleted)
            .find(|(_, v)| self.same(v.id, &parsed))
        {
            return Ok(Registration {
                id: version.id,
                version: *number,
                records: Vec::new(),
            });
        }
        let problems = self.problems(subject, &parsed, self.level_of(subject));
        if !problems.is_empty() {
            return Err(RegistryError::Incompatible {
                subject: subject.to_owned(),
                messages: problems,
            });
        }
        let id = self
            .schemas
            .iter()
            .find(|(id, _)| self.same(**id, &parsed))
            .map(|(id, _)| *id)
            .unwrap_or_else(|| self.next_id());
        let version = versions
            .and_then(|v| v.keys().next_back().copied())
            .unwrap_or(0)
            + 1;
        Ok(Registration {
            id,
            version,
            records: vec![RegistryRecord::Schema {
                subject: subject.to_owned(),
                version,
                id,
                schema_type: AVRO.to_owned(),
                schema: parsed.text,
                references: parsed.references,
                deleted: false,
            }],
        })
    }

    pub(super) fn next_id(&self) -> u32 {
        let highest = self.schemas.keys().next_back().copied().unwrap_or(0);
        (highest + 1).max(self.id_floor).max(1)
    }

    /// `POST /compatibility/subjects/{s}/versions[/{v}]`: against one version (`Some`, with the
    /// subject level's directions) or against what the subject's level demands (`None`; a subject
    /// without versions takes anything).
    pub fn test_compatibility(
        &self,
        subject: &str,
        version: Option<&str>,
        request: &SchemaRequest,
    ) -> Result<CompatibilityAnswer, RegistryError> {
        let level = self.level_of(subject);
        let problems = match version {
            None => {
                let parsed = self.parse_request(request)?;
                self.problems(subject, &parsed, level)
            }
            Some(version) => {
                let target = self.version(subject, version, false)?;
                let parsed = self.parse_request(request)?;
                let old = self
                    .schemas
                    .get(&target.id)
                    .and_then(|s| s.parsed.clone())
                    .ok_or(RegistryError::SchemaNotFound {
                        id: Some(target.id),
                    })?;
                // One version: the level's directions, without its transitivity.
                let single = match level {
                    CompatibilityLevel::BackwardTransitive => CompatibilityLevel::Backward,
                    CompatibilityLevel::ForwardTransitive => CompatibilityLevel::Forward,
                    CompatibilityLevel::FullTransitive => CompatibilityLevel::Full,
                    other => other,
                };
                check(single, &parsed.schema, &[(target.version, old.as_ref())])
            }
        };
        Ok(CompatibilityAnswer {
            is_compatible: problems.is_empty(),
            messages: problems,
        })
    }
}

impl WriterSchemas for Registry {
    fn writer_schema(&self, id: u32) -> Option<Arc<Schema>> {
        self.schemas.get(&id)?.parsed.clone()
    }
}

fn truncate(text: &str) -> String {
    const MAX: usize = 120;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

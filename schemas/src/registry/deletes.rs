//! Confluent's delete rules: soft first, then permanent; a permanent delete keeps ids from being
//! given out again.

use super::error::RegistryError;
use super::record::RegistryRecord;
use super::state::{AVRO, Registry, Version, parse_version};

impl Registry {
    /// `DELETE /subjects/{s}[?permanent=true]`: the versions deleted and the records to append.
    /// A permanent delete needs a soft delete first (40405); a soft delete of a soft-deleted
    /// subject is 40404.
    pub fn delete_subject(
        &self,
        subject: &str,
        permanent: bool,
    ) -> Result<(Vec<u32>, Vec<RegistryRecord>), RegistryError> {
        let all = self.live(subject, true)?;
        let live: Vec<&(u32, Version)> = all.iter().filter(|(_, v)| !v.deleted).collect();
        if permanent {
            if !live.is_empty() {
                return Err(RegistryError::SubjectNotSoftDeleted {
                    subject: subject.to_owned(),
                });
            }
            let numbers: Vec<u32> = all.iter().map(|(n, _)| *n).collect();
            let mut records: Vec<RegistryRecord> = numbers
                .iter()
                .map(|version| RegistryRecord::Purged {
                    subject: subject.to_owned(),
                    version: *version,
                })
                .collect();
            records.push(RegistryRecord::IdFloor {
                next_id: self.next_id(),
            });
            if self.configs.contains_key(subject) {
                records.push(RegistryRecord::Config {
                    subject: Some(subject.to_owned()),
                    compatibility: None,
                });
            }
            return Ok((numbers, records));
        }
        if live.is_empty() {
            return Err(RegistryError::SubjectSoftDeleted {
                subject: subject.to_owned(),
            });
        }
        let mut numbers = Vec::new();
        let mut records = Vec::new();
        for (number, version) in live {
            numbers.push(*number);
            records.push(self.soft_deleted(subject, *number, version.id)?);
        }
        Ok((numbers, records))
    }

    fn soft_deleted(
        &self,
        subject: &str,
        version: u32,
        id: u32,
    ) -> Result<RegistryRecord, RegistryError> {
        let stored = self
            .schemas
            .get(&id)
            .ok_or(RegistryError::SchemaNotFound { id: Some(id) })?;
        Ok(RegistryRecord::Schema {
            subject: subject.to_owned(),
            version,
            id,
            schema_type: AVRO.to_owned(),
            schema: stored.schema.clone(),
            references: stored.references.clone(),
            deleted: true,
        })
    }

    /// `DELETE /subjects/{s}/versions/{v}[?permanent=true]`: the version deleted and the records
    /// to append. A permanent delete needs a soft delete first (40407); soft-deleting a
    /// soft-deleted version is 40406.
    pub fn delete_version(
        &self,
        subject: &str,
        version: &str,
        permanent: bool,
    ) -> Result<(u32, Vec<RegistryRecord>), RegistryError> {
        let wanted = parse_version(version)?;
        let all = self.live(subject, true)?;
        let found = match wanted {
            // `latest` is the latest live version.
            None => all
                .iter()
                .rev()
                .find(|(_, v)| !v.deleted || permanent)
                .copied(),
            Some(n) => all.iter().find(|(v, _)| *v == n).copied(),
        };
        let (number, entry) = found.ok_or(RegistryError::VersionNotFound {
            subject: subject.to_owned(),
            version: wanted.unwrap_or_default(),
        })?;
        match (permanent, entry.deleted) {
            (true, false) => Err(RegistryError::VersionNotSoftDeleted {
                subject: subject.to_owned(),
                version: number,
            }),
            (true, true) => Ok((
                number,
                vec![
                    RegistryRecord::Purged {
                        subject: subject.to_owned(),
                        version: number,
                    },
                    RegistryRecord::IdFloor {
                        next_id: self.next_id(),
                    },
                ],
            )),
            (false, true) => Err(RegistryError::VersionSoftDeleted {
                subject: subject.to_owned(),
                version: number,
            }),
            (false, false) => Ok((number, vec![self.soft_deleted(subject, number, entry.id)?])),
        }
    }
}

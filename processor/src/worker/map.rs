//! Map: the CPU work of a batch (epilot mappings, outbound use cases) off the async threads,
//! with compiled configurations cached per use-case revision.

use std::collections::HashMap;
use std::sync::Arc;

use erp_runtime::config::UseCaseEntry;
use erp_schemas::inbound::InboundEventRecord;

use crate::outcome::PlatformHead;
use erp_mapping::outbound::CompiledOutbound;
use erp_mapping::{CompiledConfiguration, MappingError};

/// Compiled configurations by use case, valid for one revision each.
#[derive(Default)]
pub(super) struct MappingCache {
    pub(super) inbound: HashMap<String, (i64, Result<Arc<CompiledConfiguration>, MappingError>)>,
    pub(super) outbound: HashMap<String, (i64, Result<Arc<CompiledOutbound>, MappingError>)>,
}

/// The entry's compiled configuration from `cache`, compiled with `compile` when the use case
/// changed since.
pub(super) fn cached<T>(
    cache: &mut HashMap<String, (i64, Result<Arc<T>, MappingError>)>,
    entry: &UseCaseEntry,
    compile: impl FnOnce(&serde_json::Value) -> Result<T, MappingError>,
) -> Result<Arc<T>, MappingError> {
    if let Some((revision, compiled)) = cache.get(&entry.use_case.id)
        && *revision == entry.revision
    {
        return compiled.clone();
    }
    let empty = serde_json::json!({});
    let compiled = compile(entry.use_case.configuration.as_ref().unwrap_or(&empty)).map(Arc::new);
    cache.insert(
        entry.use_case.id.clone(),
        (entry.revision, compiled.clone()),
    );
    compiled
}

impl MappingCache {
    /// The compiled inbound configuration of a use case revision.
    pub(super) fn get(
        &mut self,
        entry: &UseCaseEntry,
    ) -> Result<Arc<CompiledConfiguration>, MappingError> {
        cached(&mut self.inbound, entry, CompiledConfiguration::compile)
    }

    /// The compiled outbound configuration of a use case revision.
    pub(super) fn outbound(
        &mut self,
        entry: &UseCaseEntry,
    ) -> Result<Arc<CompiledOutbound>, MappingError> {
        cached(&mut self.outbound, entry, CompiledOutbound::compile)
    }
}

/// The organisation's environment as `env_var_ref` mappings see it: `SecretString` values are
/// marked secret and never decrypted here (a mapping reads a secret as missing, spec §4), so the
/// processor needs no secrets key.
pub(super) fn mapping_environment(
    config: &erp_runtime::ConfigState,
    org_id: &str,
) -> std::collections::HashMap<String, erp_mapping::EnvValue> {
    config
        .environment(org_id)
        .into_iter()
        .flatten()
        .map(|(key, entry)| {
            let secret = entry.value_type == erp_schemas::config::EnvValueType::SecretString;
            let value = if secret {
                String::new()
            } else {
                entry.stored.clone()
            };
            (key.clone(), erp_mapping::EnvValue { value, secret })
        })
        .collect()
}

/// The CPU work of a batch, done off the async threads.
pub(super) enum Work {
    Inbound(
        Box<InboundEventRecord>,
        Box<UseCaseEntry>,
        Arc<CompiledConfiguration>,
    ),
    Outbound(
        Box<PlatformHead>,
        Vec<(Box<UseCaseEntry>, Arc<CompiledOutbound>)>,
    ),
}

#[cfg(test)]
mod tests {
    use super::*;
    use erp_runtime::ConfigState;
    use erp_schemas::config::{ConfigChange, ConfigRecord, EnvValueType};

    fn value(org_id: &str, key: &str, value_type: EnvValueType, value: &str) -> ConfigRecord {
        ConfigRecord {
            org_id: org_id.into(),
            at: "t".into(),
            actor: None,
            base_revision: None,
            change: ConfigChange::EnvironmentValueSet {
                key: key.into(),
                value_type,
                value: value.into(),
                updated_at: "t".into(),
            },
        }
    }

    #[test]
    fn mappings_see_their_organisations_values_and_never_a_secret() {
        let mut config = ConfigState::default();
        config.apply(
            value("org", "erp.host", EnvValueType::String, "erp.example"),
            0,
        );
        config.apply(
            value(
                "org",
                "erp.token",
                EnvValueType::SecretString,
                "erpenc:v1:k:sealed",
            ),
            1,
        );
        config.apply(
            value("other", "erp.host", EnvValueType::String, "elsewhere"),
            2,
        );
        let environment = mapping_environment(&config, "org");
        let host = &environment["erp.host"];
        assert_eq!((host.value.as_str(), host.secret), ("erp.example", false));
        let token = &environment["erp.token"];
        assert_eq!((token.value.as_str(), token.secret), ("", true));
        assert!(mapping_environment(&config, "nobody").is_empty());
    }
}

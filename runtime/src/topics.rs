//! Topic creation at start-up. Creating is idempotent: a topic that exists is left as it is
//! (its partition count included, since not every broker can add partitions), but checked
//! (`topic_check.rs`): a critical difference refuses the start, a minor one is logged.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use tracing::{info, warn};

use crate::error::RuntimeError;
use crate::kafka::KafkaSettings;
use crate::topic_check::{Described, Needed, Severity, compare};

/// A topic and how it must be created.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub configs: Vec<(&'static str, &'static str)>,
}

/// Every topic of an installation, with the retention each needs.
pub fn standard_topics(settings: &KafkaSettings) -> Vec<TopicSpec> {
    let t = &settings.topics;
    let n = settings.partitions;
    let keep_forever = vec![("retention.ms", "-1"), ("retention.bytes", "-1")];
    let mut specs = vec![
        // The configuration log: one partition for one total order, history kept forever.
        TopicSpec {
            name: t.config(),
            partitions: 1,
            configs: keep_forever.clone(),
        },
        TopicSpec {
            name: t.inbound_events(),
            partitions: n,
            configs: vec![],
        },
        TopicSpec {
            name: t.platform_events(),
            partitions: n,
            configs: vec![],
        },
        TopicSpec {
            name: t.core_events(),
            partitions: n,
            configs: vec![],
        },
        // ACK tracking rows, keyed by `_ack_id`: the latest state per id is what counts.
        TopicSpec {
            name: t.acks(),
            partitions: n,
            configs: vec![("cleanup.policy", "compact")],
        },
        TopicSpec {
            name: t.monitoring(),
            partitions: n,
            configs: vec![],
        },
        // Dead letters are the last copy of what failed: never expire them silently.
        TopicSpec {
            name: t.dlq(),
            partitions: n,
            configs: keep_forever,
        },
        // Poll items, keyed by integration: one stream, one partition. Kept past the longest
        // item retention (90 days) so a stream whose consumer is away can still be read.
        TopicSpec {
            name: t.outbound_poll(),
            partitions: n,
            configs: vec![("retention.ms", "8640000000")],
        },
        // Poll stream consumer state and DLQ entries: the latest record per key is what counts.
        TopicSpec {
            name: t.outbound_poll_state(),
            partitions: n,
            configs: vec![("cleanup.policy", "compact")],
        },
        TopicSpec {
            name: t.processor_state(),
            partitions: n,
            configs: vec![("cleanup.policy", "compact")],
        },
        // Held deliveries of endpoints with per-key ordering, keyed by endpoint, key and input
        // offset (tombstoned when done); partition p holds the lanes of `core.events` partition
        // p, so the owner of an input partition restores exactly its own lanes.
        TopicSpec {
            name: t.dispatch_lanes(),
            partitions: n,
            configs: vec![("cleanup.policy", "compact")],
        },
        // The schema registry's log: one partition for one order of registrations (ids are
        // given out once), the latest record per subject version is its state.
        TopicSpec {
            name: t.schemas(),
            partitions: 1,
            configs: vec![("cleanup.policy", "compact")],
        },
    ];
    // The dispatcher's retry tiers hold delivery tasks until they are due. The longest wait is
    // hours, so the broker default retention (7 days) is ample; a task is committed only after
    // it moved on (delivered, next tier or dead letter).
    specs.extend(
        (1..=erp_schemas::topics::RETRY_TIERS).map(|tier| TopicSpec {
            name: t.retry(tier),
            partitions: n,
            configs: vec![],
        }),
    );
    specs
}

/// Creates the topics that do not exist yet.
pub async fn ensure_topics(
    settings: &KafkaSettings,
    specs: &[TopicSpec],
) -> Result<(), RuntimeError> {
    let admin: AdminClient<DefaultClientContext> =
        settings.client_config("erp-toolkit-admin").create()?;
    // Ask first: some brokers log a create of an existing topic as an error.
    let existing: std::collections::HashMap<String, i32> = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(30))?
        .topics()
        .iter()
        .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
        .collect();
    check_existing(settings, &admin, specs, &existing).await?;
    let missing: Vec<&TopicSpec> = specs
        .iter()
        .filter(|spec| !existing.contains_key(&spec.name))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let new_topics: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|spec| {
            spec.configs.iter().fold(
                NewTopic::new(
                    &spec.name,
                    spec.partitions,
                    TopicReplication::Fixed(settings.replication_factor),
                ),
                |topic, (key, value)| topic.set(key, value),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics(&new_topics, &options).await?;
    for result in results {
        match result {
            Ok(topic) => info!(topic, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(RuntimeError::TopicCreation {
                    topic,
                    message: code.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Compares every topic of `specs` that exists with what it needs: logs the minor differences,
/// fails with every critical one.
async fn check_existing(
    settings: &KafkaSettings,
    admin: &AdminClient<DefaultClientContext>,
    specs: &[TopicSpec],
    existing: &std::collections::HashMap<String, i32>,
) -> Result<(), RuntimeError> {
    let present: Vec<&TopicSpec> = specs
        .iter()
        .filter(|spec| existing.contains_key(&spec.name))
        .collect();
    if present.is_empty() {
        return Ok(());
    }
    let resources: Vec<ResourceSpecifier<'_>> = present
        .iter()
        .map(|spec| ResourceSpecifier::Topic(&spec.name))
        .collect();
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    // A principal without `DescribeConfigs` (or a broker without the API) leaves the topics
    // unchecked rather than stopping every role.
    let described = match admin.describe_configs(&resources, &options).await {
        Ok(described) => described,
        Err(error) => {
            warn!(%error, "cannot read the topics' configuration; not checked");
            return Ok(());
        }
    };
    let config_topic = settings.topics.config();
    let mut critical = Vec::new();
    for (spec, result) in present.iter().zip(described) {
        let configs = match result {
            Ok(resource) => resource
                .entries
                .into_iter()
                .filter_map(|entry| Some((entry.name, entry.value?)))
                .collect(),
            Err(code) => {
                warn!(topic = spec.name, %code, "cannot read the topic's configuration; not checked");
                continue;
            }
        };
        let described = Described {
            partitions: existing.get(&spec.name).copied().unwrap_or_default(),
            configs,
        };
        let needed = Needed {
            name: &spec.name,
            partitions: spec.partitions,
            configs: &spec.configs,
        };
        for mismatch in compare(needed, &described, &config_topic) {
            match mismatch.severity {
                Severity::Minor => {
                    warn!(topic = mismatch.topic, "{}", mismatch.message);
                }
                Severity::Critical => {
                    critical.push(format!("- {}: {}", mismatch.topic, mismatch.message));
                }
            }
        }
    }
    if critical.is_empty() {
        Ok(())
    } else {
        Err(RuntimeError::TopicMismatch(critical.join("\n")))
    }
}

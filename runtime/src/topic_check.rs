//! Topics are checked, not assumed: at start every topic of the installation that already exists
//! is compared with what the project needs (`topics::standard_topics`). A mismatch that
//! loses data or order (the configuration log compacted, with a finite retention or more than
//! one partition; a state topic that is not compacted) refuses the start with what to change; a
//! minor one (fewer partitions than configured, another retention of dead letters or poll
//! items) is logged as a warning.

use std::collections::HashMap;

/// What the project needs of a topic (a `topics::TopicSpec`, seen from here; this module imports
/// none of `topics`, which calls it).
#[derive(Debug, Clone, Copy)]
pub struct Needed<'a> {
    /// The topic.
    pub name: &'a str,
    /// Partitions it is created with.
    pub partitions: i32,
    /// Configs it is created with.
    pub configs: &'a [(&'static str, &'static str)],
}

/// How bad a difference is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The start is refused: running on it would lose data or order.
    Critical,
    /// Logged; the role starts.
    Minor,
}

/// One difference between a topic as it is and as the project needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The topic.
    pub topic: String,
    /// How bad it is.
    pub severity: Severity,
    /// What is wrong and what to change.
    pub message: String,
}

/// What an existing topic looks like: its partition count and the configs the broker reports
/// (a config it leaves out is at the broker's default).
#[derive(Debug, Clone, Default)]
pub struct Described {
    /// Partitions of the topic.
    pub partitions: i32,
    /// Config values by name.
    pub configs: HashMap<String, String>,
}

/// Broker defaults assumed for a config the broker does not report.
fn default_of(key: &str) -> &'static str {
    match key {
        "cleanup.policy" => "delete",
        "retention.ms" => "604800000",
        "retention.bytes" => "-1",
        _ => "",
    }
}

/// The differences of `described` from `spec`. `config_topic` names the configuration log,
/// whose order and history every role depends on.
pub fn compare(spec: Needed<'_>, described: &Described, config_topic: &str) -> Vec<Mismatch> {
    let value = |key: &str| {
        described
            .configs
            .get(key)
            .map(String::as_str)
            .unwrap_or_else(|| default_of(key))
            .to_owned()
    };
    let alter = |key: &str, want: &str| {
        format!(
            "kafka-configs.sh --alter --entity-type topics --entity-name {} --add-config {key}={want}",
            spec.name
        )
    };
    let mut found = Vec::new();
    let mut push = |severity, message: String| {
        found.push(Mismatch {
            topic: spec.name.to_owned(),
            severity,
            message,
        })
    };
    let is_config = spec.name == config_topic;
    if is_config && described.partitions != 1 {
        push(
            Severity::Critical,
            format!(
                "has {} partitions, needs 1 (one total order of configuration changes): \
                 recreate it with one partition and copy its records over in order",
                described.partitions
            ),
        );
    } else if !is_config && described.partitions < spec.partitions {
        push(
            Severity::Minor,
            format!(
                "has {} partitions, fewer than the {} configured: consumers scale only to {}",
                described.partitions, spec.partitions, described.partitions
            ),
        );
    }
    let policy = value("cleanup.policy");
    if is_config && policy.contains("compact") {
        push(
            Severity::Critical,
            format!(
                "cleanup.policy is {policy:?}: compaction drops earlier snapshots of an \
                 integration (its use-case history); {}",
                alter("cleanup.policy", "delete")
            ),
        );
    }
    for (key, want) in spec.configs {
        let have = value(key);
        if have == *want {
            continue;
        }
        let compacted = *key == "cleanup.policy" && want.contains("compact");
        if compacted && have.contains("compact") {
            continue;
        }
        let critical = compacted || (is_config && key.starts_with("retention."));
        let why = if compacted {
            "a state topic that is not compacted loses the latest state of old keys"
        } else if critical {
            "the configuration log must be kept forever"
        } else {
            "the project creates it so"
        };
        push(
            if critical {
                Severity::Critical
            } else {
                Severity::Minor
            },
            format!(
                "{key} is {have:?}, needs {want:?} ({why}): {}",
                alter(key, want)
            ),
        );
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(
        name: &'a str,
        partitions: i32,
        configs: &'a [(&'static str, &'static str)],
    ) -> Needed<'a> {
        Needed {
            name,
            partitions,
            configs,
        }
    }

    fn described(partitions: i32, configs: &[(&str, &str)]) -> Described {
        Described {
            partitions,
            configs: configs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn the_configuration_log_must_be_one_ordered_partition_kept_forever() {
        let config = spec(
            "erp.config",
            1,
            &[("retention.ms", "-1"), ("retention.bytes", "-1")],
        );
        let good = described(1, &[("retention.ms", "-1"), ("retention.bytes", "-1")]);
        assert!(compare(config, &good, "erp.config").is_empty());
        let finite = described(1, &[("retention.bytes", "-1")]);
        let found = compare(config, &finite, "erp.config");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].severity, Severity::Critical);
        assert!(found[0].message.contains("retention.ms=-1"), "{found:?}");
        let compacted = described(3, &[("retention.ms", "-1"), ("cleanup.policy", "compact")]);
        let found = compare(config, &compacted, "erp.config");
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.iter().all(|m| m.severity == Severity::Critical));
    }

    #[test]
    fn state_topics_must_be_compacted_and_the_rest_is_minor() {
        let state = spec("erp.acks", 6, &[("cleanup.policy", "compact")]);
        let found = compare(state, &described(6, &[]), "erp.config");
        assert_eq!(found[0].severity, Severity::Critical, "{found:?}");
        let both = described(6, &[("cleanup.policy", "compact,delete")]);
        assert!(compare(state, &both, "erp.config").is_empty());
        let few = compare(
            state,
            &described(2, &[("cleanup.policy", "compact")]),
            "erp.config",
        );
        assert_eq!(few.len(), 1);
        assert_eq!(few[0].severity, Severity::Minor);
        let dlq = spec("erp.dlq", 6, &[("retention.ms", "-1")]);
        let found = compare(
            dlq,
            &described(6, &[("retention.ms", "1000")]),
            "erp.config",
        );
        assert_eq!(found[0].severity, Severity::Minor, "{found:?}");
    }
}

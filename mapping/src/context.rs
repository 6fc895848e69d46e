//! What the mapping may know beyond the payload: the integration it runs for (to build file
//! proxy URLs), the integration's environment (for `env_var_ref`), and whether it runs for real
//! or as a simulation.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// One environment variable of an integration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvValue {
    pub value: String,
    /// `SecretString` values are never given to a mapping: a secret reads as missing.
    pub secret: bool,
}

/// Where file proxy URLs point and for whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProxyContext {
    /// The download endpoint, e.g. `https://files.example-utility.de/download`.
    pub base_url: String,
    pub org_id: String,
    pub integration_id: String,
    /// Slugs and ids of file proxy use cases with `prevent_indirect_serving: true`: their URLs
    /// use the streaming endpoint (`/stream/download`).
    pub streaming_use_cases: HashSet<String>,
}

/// The context of one mapping run.
#[derive(Debug, Clone)]
pub struct MappingContext {
    /// Time limit of each JSONata evaluation.
    pub timeout: Duration,
    /// `None` in a simulation without integration: `file_proxy_url` fields are skipped.
    pub file_proxy: Option<FileProxyContext>,
    /// The integration's environment; `None` reads as an empty one.
    pub environment: Option<HashMap<String, EnvValue>>,
    /// Processing (true) rejects readings with an invalid `reason`, `direction` or `status`;
    /// a simulation (false) passes them through with a warning.
    pub strict: bool,
}

impl MappingContext {
    /// The context of a simulation: no integration, lenient.
    pub fn simulation(timeout: Duration) -> Self {
        Self {
            timeout,
            file_proxy: None,
            environment: None,
            strict: false,
        }
    }

    /// The context of processing for an integration.
    pub fn processing(timeout: Duration, file_proxy: Option<FileProxyContext>) -> Self {
        Self {
            timeout,
            file_proxy,
            environment: None,
            strict: true,
        }
    }
}

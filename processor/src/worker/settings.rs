//! The processor's settings.

use std::path::PathBuf;
use std::time::Duration;

/// How the processor runs.
#[derive(Debug, Clone)]
pub struct ProcessorSettings {
    /// Where the dedup store lives.
    pub data_dir: PathBuf,
    /// Consumer group of all processor instances.
    pub group_id: String,
    /// How long a dedup id suppresses later events with the same id.
    pub dedup_window: Duration,
    /// Time limit of one JSONata evaluation.
    pub mapping_timeout: Duration,
    /// Most records per poll batch.
    pub max_batch: usize,
    /// Root URL of the file proxy that `file_proxy_url` fields point at (`None`: such fields
    /// are left out).
    pub file_proxy_base_url: Option<String>,
    /// Whether a successfully mapped event gets a `success` span too (skips and errors always
    /// do). Off halves the monitoring volume of high-volume streams; the counters remain.
    pub success_spans: bool,
    /// Limits a payload must stay within to be mapped (the ingest checks the same ones).
    pub payload_limits: erp_schemas::limits::PayloadLimits,
    /// Abnormal exits a record may be in flight during before it is dead-lettered as
    /// `POISON_RECORD` (at least 1).
    pub poison_after_crashes: u32,
}

impl Default for ProcessorSettings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data/processor"),
            group_id: "erp-toolkit-processor".into(),
            dedup_window: Duration::from_secs(24 * 3600),
            mapping_timeout: Duration::from_secs(1),
            max_batch: 500,
            file_proxy_base_url: None,
            success_spans: true,
            payload_limits: erp_schemas::limits::PayloadLimits::default(),
            poison_after_crashes: 2,
        }
    }
}

//! Topic names. Every name is `<prefix>.<suffix>`; the prefix (default `erp`) lets several
//! installations share one cluster.

/// Suffix of the configuration log (single partition, kept forever).
pub const CONFIG: &str = "config";
/// Suffix of accepted raw ERP events.
pub const INBOUND_EVENTS: &str = "inbound.events";
/// Suffix of core events from the customer platform (outbound flow).
pub const PLATFORM_EVENTS: &str = "platform.events";
/// Suffix of the outbound topic the dispatcher delivers from.
pub const CORE_EVENTS: &str = "core.events";
/// Suffix of ACKs from the ERP.
pub const ACKS: &str = "acks";
/// Suffix of monitoring spans.
pub const MONITORING: &str = "monitoring";
/// Suffix of dead letters.
pub const DLQ: &str = "dlq";
/// Suffix of the pollable outbound queue (one ordered stream per integration).
pub const OUTBOUND_POLL: &str = "outbound.poll";
/// Suffix of the compacted consumer state of the poll streams (cursor, lease, DLQ).
pub const OUTBOUND_POLL_STATE: &str = "outbound.poll.state";
/// Suffix of the compacted changelog of the processor's dedup store.
pub const PROCESSOR_STATE: &str = "processor.state";
/// Suffix of the compacted topic of held deliveries to endpoints with per-key ordering.
pub const DISPATCH_LANES: &str = "dispatch.lanes";
/// Suffix of the compacted log of the schema registry this installation serves (single
/// partition: one order of registrations, so ids are given out once).
pub const SCHEMAS: &str = "schemas";
/// Suffix prefix of the dispatcher's retry tiers: tier `n` is `core.retry.<n>`.
pub const CORE_RETRY: &str = "core.retry";
/// How many retry tiers an installation has (epilot's schedule has five waits, and
/// `retryPolicy.maxAttempts` is at most 5).
pub const RETRY_TIERS: u32 = 5;

/// The topic names of one installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    /// Topic names under `prefix` (without the trailing dot).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The full name of the topic with this suffix.
    pub fn name(&self, suffix: &str) -> String {
        format!("{}.{}", self.prefix, suffix)
    }

    /// `erp.config`
    pub fn config(&self) -> String {
        self.name(CONFIG)
    }
    /// `erp.inbound.events`
    pub fn inbound_events(&self) -> String {
        self.name(INBOUND_EVENTS)
    }
    /// `erp.platform.events`
    pub fn platform_events(&self) -> String {
        self.name(PLATFORM_EVENTS)
    }
    /// `erp.core.events`
    pub fn core_events(&self) -> String {
        self.name(CORE_EVENTS)
    }
    /// `erp.acks`
    pub fn acks(&self) -> String {
        self.name(ACKS)
    }
    /// `erp.monitoring`
    pub fn monitoring(&self) -> String {
        self.name(MONITORING)
    }
    /// `erp.dlq`
    pub fn dlq(&self) -> String {
        self.name(DLQ)
    }
    /// `erp.outbound.poll`
    pub fn outbound_poll(&self) -> String {
        self.name(OUTBOUND_POLL)
    }
    /// `erp.outbound.poll.state`
    pub fn outbound_poll_state(&self) -> String {
        self.name(OUTBOUND_POLL_STATE)
    }
    /// `erp.processor.state`
    pub fn processor_state(&self) -> String {
        self.name(PROCESSOR_STATE)
    }
    /// `erp.dispatch.lanes`
    pub fn dispatch_lanes(&self) -> String {
        self.name(DISPATCH_LANES)
    }
    /// `erp.schemas`
    pub fn schemas(&self) -> String {
        self.name(SCHEMAS)
    }
    /// `erp.core.retry.<tier>`: retry tier `tier` (1-based) of the dispatcher.
    pub fn retry(&self, tier: u32) -> String {
        self.name(&format!("{CORE_RETRY}.{tier}"))
    }
}

impl Default for Topics {
    fn default() -> Self {
        Self::new("erp")
    }
}

//! Benchmarks of erp-toolkit. `loadgen` drives the whole pipeline; component benchmarks live in
//! `benches/`.

/// What a run cost: records per topic and CPU time by thread.
pub mod counting;
/// Percentiles, and the matching of deliveries to the events they carry.
pub mod latency;
/// The meter-reading workload the load generators send.
pub mod workload;

//! Benchmarks of erp-toolkit. `loadgen` drives the whole pipeline; component benchmarks live in
//! `benches/`.

/// The meter-reading workload the load generators send.
pub mod workload;

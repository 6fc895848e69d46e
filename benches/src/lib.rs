//! Benchmarks of erp-toolkit. `loadgen` drives the whole pipeline; component benchmarks live in
//! `benches/`.

pub mod workload;

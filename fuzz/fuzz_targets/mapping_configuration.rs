//! Mapping configuration compilation: inbound (v2), outbound, and the v1 translation.
#![no_main]

use erp_mapping::outbound::CompiledOutbound;
use erp_mapping::{CompiledConfiguration, legacy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(configuration) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let _ = CompiledConfiguration::compile(&configuration);
    let _ = CompiledOutbound::compile(&configuration);
    if let Ok(translated) = legacy::configuration_for(&configuration, "contact") {
        let _ = CompiledConfiguration::compile(&translated);
    }
});

//! Webhook endpoint configuration parsing (auth, headers, filter, batching, rate limits,
//! payload templates), as the API validates it on save.
#![no_main]

use erp_webhooks::endpoint::EndpointConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(serde_json::Value::Object(config)) = serde_json::from_slice(data) {
        let _ = EndpointConfig::parse(&config);
    }
});

//! Ingest request bodies (v1, v2, v3): JSON parsing, request validation, the payload limits.
//! The first byte picks the endpoint version; the rest is the body.
#![no_main]

use erp_ingest::events::{Version, parse_request};
use erp_schemas::limits::PayloadLimits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let version = match selector % 3 {
        0 => Version::V1,
        1 => Version::V2,
        _ => Version::V3,
    };
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    if let Ok(request) = parse_request(&body, version) {
        let events = request
            .events
            .iter()
            .map(|e| (e.format, e.payload.as_str()));
        let _ = erp_ingest::limits::check_events(events, &PayloadLimits::default());
    }
});

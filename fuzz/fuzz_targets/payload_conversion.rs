//! Payload conversion into the mapping's input (JSON and XML) under the payload limits, and the
//! limit scan the ingest runs. Checks that the scan and the converters agree: a payload the scan
//! refuses is never converted.
#![no_main]

use erp_mapping::{limits, payload};
use erp_schemas::inbound::PayloadFormat;
use erp_schemas::limits::PayloadLimits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, text)) = data.split_first() else {
        return;
    };
    let format = if selector & 1 == 0 {
        PayloadFormat::Json
    } else {
        PayloadFormat::Xml
    };
    let text = String::from_utf8_lossy(text);
    // Small limits so the fuzzer reaches them with short inputs.
    let limits = PayloadLimits {
        max_depth: 8,
        max_bytes: 4096,
        max_elements: 64,
        max_string_bytes: 256,
    };
    let scanned = limits::check(format, &text, &limits);
    let parsed = payload::parse(format, &text, &limits);
    if scanned.is_err() {
        assert!(
            parsed.is_err(),
            "the scan refused what the converter accepted"
        );
    }
    let _ = payload::parse_document(format, &text, &limits);
});

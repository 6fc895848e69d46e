//! JSONata through our adapter: an expression and a JSON document separated by a NUL byte,
//! evaluated with a short time limit on the mapping thread, as the processor evaluates.
#![no_main]

use std::time::Duration;

use erp_mapping::jsonata::{Expression, evaluate_json, on_mapping_stack};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (expression, document) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b"{}"[..]),
    };
    let Ok(expression) = std::str::from_utf8(expression) else {
        return;
    };
    let Ok(expression) = Expression::compile(expression) else {
        return;
    };
    let document = serde_json::from_slice(document).unwrap_or(serde_json::Value::Null);
    let outcome = on_mapping_stack(move || {
        let _ = evaluate_json(&expression, &document, Duration::from_millis(50));
    });
    // A panic inside the engine is caught by the adapter; one escaping it is a finding.
    assert!(outcome.is_ok(), "{outcome:?}");
});

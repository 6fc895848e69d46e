//! Hostile payloads, configurations and expressions through the mapping's public doors: each is
//! answered with an error (or mapped), never a crash. The tests run on the harness's ordinary
//! threads (2 MiB stacks) unless they say otherwise, so a recursion the bounds miss fails here
//! as a stack overflow.

use std::time::Duration;

use erp_mapping::jsonata::{Expression, MAX_RESULT_DEPTH, evaluate_json, on_mapping_stack};
use serde_json::json;

const T: Duration = Duration::from_millis(2000);

#[test]
fn a_jsonata_result_nested_deeper_than_the_bound_is_refused() {
    // No recursion in the expression: `$reduce` builds one level per item.
    let expression = Expression::compile("$reduce([1..20000], function($a, $v){ {'a': $a} }, {})")
        .expect("parses");
    let error = evaluate_json(&expression, &json!({}), T).unwrap_err();
    assert_eq!(error.code.as_deref(), Some("U1001"), "{error}");
    assert!(
        error.message.contains(&MAX_RESULT_DEPTH.to_string()),
        "{error}"
    );
    let shallow =
        Expression::compile("$reduce([1..50], function($a, $v){ {'a': $a} }, {})").expect("parses");
    assert!(evaluate_json(&shallow, &json!({}), T).is_ok());
}

#[test]
fn a_deep_value_dropped_inside_the_engine_fits_the_mapping_stack() {
    // The deep value is bound and dropped inside the engine, or cut short by the time limit:
    // only the mapping thread's stack holds its drop.
    for (source, timeout) in [
        (
            "($x := $reduce([1..300000], function($a, $v){ {'a': $a} }, {}); 1)",
            Duration::from_secs(30),
        ),
        (
            "$reduce([1..10000000], function($a, $v){ {'a': $a} }, {})",
            Duration::from_millis(1000),
        ),
    ] {
        let expression = Expression::compile(source).expect("parses");
        let outcome = on_mapping_stack(move || {
            evaluate_json(&expression, &json!({}), timeout).map_err(|e| e.to_string())
        })
        .expect("the mapping thread survives");
        eprintln!("{source}: {outcome:?}");
    }
}

mod properties {
    use erp_mapping::{limits, payload};
    use erp_schemas::inbound::PayloadFormat;
    use erp_schemas::limits::{Limit, PayloadLimits};
    use proptest::prelude::*;

    fn limits_of(max_depth: usize) -> PayloadLimits {
        PayloadLimits {
            max_depth,
            ..PayloadLimits::default()
        }
    }

    proptest! {
        /// Nested XML and JSON of any depth: refused exactly when deeper than the limit, by the
        /// scan and the converters alike.
        #[test]
        fn depth_is_judged_exactly(depth in 1usize..300, max_depth in 1usize..150, attribute in any::<bool>()) {
            let open = if attribute { "<e a=\"1\">" } else { "<e>" };
            let xml = format!("{}{}", open.repeat(depth), "</e>".repeat(depth));
            let json = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let limits = limits_of(max_depth);
            for (format, text) in [(PayloadFormat::Xml, &xml), (PayloadFormat::Json, &json)] {
                let scanned = limits::check(format, text, &limits);
                prop_assert_eq!(scanned.is_err(), depth > max_depth, "{:?} {}", format, depth);
                if let Err(exceeded) = scanned {
                    prop_assert_eq!(exceeded.limit, Limit::Depth);
                }
                let parsed = payload::parse(format, text, &limits);
                // JSON deeper than serde_json's 128 is refused by the parser itself.
                let refused = depth > max_depth || (format == PayloadFormat::Json && depth > 127);
                prop_assert_eq!(parsed.is_err(), refused, "{:?} {}", format, depth);
            }
        }

        /// Arbitrary text in either format is answered (mapped or an error), never a panic, and
        /// what the scan refuses the converter refuses too.
        #[test]
        fn arbitrary_text_never_panics(text in "[<>/a-c=\"'&;#x0-9 \\[\\]{}:,!?-]{0,200}", xml in any::<bool>()) {
            let format = if xml { PayloadFormat::Xml } else { PayloadFormat::Json };
            let limits = PayloadLimits { max_depth: 3, max_elements: 8, max_string_bytes: 16, ..PayloadLimits::default() };
            let scanned = limits::check(format, &text, &limits);
            let parsed = payload::parse(format, &text, &limits);
            if scanned.is_err() {
                prop_assert!(parsed.is_err());
            }
        }
    }
}

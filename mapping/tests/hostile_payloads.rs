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

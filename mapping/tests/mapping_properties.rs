//! Properties of the mapping that must hold for any input: undefined values omit an attribute
//! while every defined value (null, "", 0, false included) is kept as it is, and the array
//! operations mean what epilot documents.

use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Value, json};

use erp_mapping::arrays::ArrayOperation;
use erp_mapping::{CompiledConfiguration, MappingContext, map_payload};

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-1000i64..1000).prop_map(Value::from),
        "[a-zA-Z0-9 ]{0,8}".prop_map(Value::from),
        Just(json!("")),
        Just(json!(0)),
    ]
}

fn maybe_value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![Just(None), scalar().prop_map(Some)]
}

proptest! {
    #[test]
    fn defined_values_are_kept_and_undefined_ones_omitted(value in maybe_value()) {
        let payload = match &value {
            Some(v) => json!({"v": v}),
            None => json!({}),
        };
        let config = json!({"entities": [{"entity_schema": "contact", "unique_ids": [], "fields": [
            {"attribute": "by_key", "field": "v"},
            {"attribute": "by_path", "field": "$.v"},
            {"attribute": "by_jsonata", "jsonataExpression": "v"}
        ]}]});
        let compiled = CompiledConfiguration::compile(&config).expect("compiles");
        let result = map_payload(&compiled, &payload, &MappingContext::simulation(Duration::from_secs(1))).expect("maps");
        let attributes = &result.entity_updates[0].attributes;
        for key in ["by_key", "by_path", "by_jsonata"] {
            prop_assert_eq!(attributes.get(key), value.as_ref(), "{}", key);
        }
    }

    #[test]
    fn append_adds_only_what_is_missing_and_keeps_order(
        existing in proptest::collection::vec(0u8..6, 0..8),
        added in proptest::collection::vec(0u8..6, 0..8),
    ) {
        let existing: Vec<Value> = existing.into_iter().map(Value::from).collect();
        let added: Vec<Value> = added.into_iter().map(Value::from).collect();
        let result = ArrayOperation::Append(added.clone()).apply(Some(&existing));
        prop_assert_eq!(&result[..existing.len()], &existing[..]);
        for item in &added {
            prop_assert!(result.contains(item));
        }
        for item in &result[existing.len()..] {
            prop_assert!(!existing.contains(item));
            prop_assert_eq!(result[existing.len()..].iter().filter(|x| *x == item).count(), 1);
        }
        // Appending the same items again changes nothing.
        prop_assert_eq!(ArrayOperation::Append(added.clone()).apply(Some(&result)), result.clone());
        let all = ArrayOperation::AppendAll(added.clone()).apply(Some(&existing));
        prop_assert_eq!(all.len(), existing.len() + added.len());
        prop_assert_eq!(ArrayOperation::Set(added.clone()).apply(Some(&existing)), added.clone());
        // Without an existing entity every operation is a set.
        prop_assert_eq!(ArrayOperation::Append(added.clone()).apply(None), added.clone());
        prop_assert_eq!(ArrayOperation::AppendAll(added.clone()).apply(None), added);
    }

    #[test]
    fn array_operations_round_trip_through_their_json_form(items in proptest::collection::vec(0u8..6, 0..5)) {
        let items: Vec<Value> = items.into_iter().map(Value::from).collect();
        prop_assert_eq!(ArrayOperation::read(&Value::Array(items.clone())), Some(ArrayOperation::Set(items.clone())));
        prop_assert_eq!(ArrayOperation::read(&json!({"_append": items})), Some(ArrayOperation::Append(items.clone())));
        prop_assert_eq!(ArrayOperation::read(&json!({"_append_all": items})), Some(ArrayOperation::AppendAll(items)));
    }
}

#[test]
fn mapping_passes_array_operations_through_unchanged() {
    let config = json!({"entities": [{"entity_schema": "contact", "unique_ids": [], "fields": [
        {"attribute": "_tags", "jsonataExpression": "{\"_append\": [\"NEW_TAG\"]}"},
        {"attribute": "industry", "constant": ["energy"]}
    ]}]});
    let compiled = CompiledConfiguration::compile(&config).expect("compiles");
    let result = map_payload(
        &compiled,
        &json!({"a": 1}),
        &MappingContext::simulation(Duration::from_secs(1)),
    )
    .expect("maps");
    assert_eq!(
        result.entity_updates[0].attributes["_tags"],
        json!({"_append": ["NEW_TAG"]})
    );
    assert_eq!(
        result.entity_updates[0].attributes["industry"],
        json!(["energy"])
    );
}

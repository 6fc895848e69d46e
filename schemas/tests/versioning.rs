//! The versioning rules (`erp_schemas::release`) against the committed snapshot of the previous
//! release's schemas in `schemas/released/`. After a release, record its schemas with
//! `ERP_SCHEMAS_SNAPSHOT=1 cargo test -p erp-schemas --test versioning` (writes
//! `schemas/released/<crate version>.json`) and commit the file.

use std::path::PathBuf;

use erp_schemas::release::{check_against, snapshot};
use serde_json::{Value, json};

fn released_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("released")
}

/// The snapshot of the highest release in `schemas/released/`.
fn latest_snapshot() -> (String, Value) {
    let mut releases: Vec<(Vec<u64>, PathBuf)> = std::fs::read_dir(released_dir())
        .expect("schemas/released exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter_map(|path| {
            let stem = path
                .file_name()?
                .to_str()?
                .strip_suffix(".json")?
                .to_owned();
            let version = stem
                .split('.')
                .map(|p| p.parse().ok())
                .collect::<Option<Vec<u64>>>()?;
            Some((version, path))
        })
        .collect();
    releases.sort();
    let (_, path) = releases.pop().expect("at least one released snapshot");
    let text = std::fs::read_to_string(&path).expect("readable");
    (
        path.display().to_string(),
        serde_json::from_str(&text).expect("JSON"),
    )
}

#[test]
fn our_schemas_keep_the_rules_against_the_last_release() {
    if std::env::var("ERP_SCHEMAS_SNAPSHOT").is_ok_and(|v| v == "1") {
        let version = env!("CARGO_PKG_VERSION");
        let path = released_dir().join(format!("{version}.json"));
        let text =
            serde_json::to_string_pretty(&snapshot(version).expect("snapshots")).expect("JSON");
        std::fs::write(&path, text + "\n").expect("writes the snapshot");
        eprintln!("wrote {}", path.display());
    }
    let (path, released) = latest_snapshot();
    let problems = check_against(&released);
    assert!(
        problems.is_empty(),
        "against {path}:\n{}",
        problems.join("\n")
    );
}

/// The current schemas as a snapshot, changed by `edit` — a release that was wider than today.
fn released_with(edit: impl FnOnce(&mut Value)) -> Vec<String> {
    let mut released = snapshot("0.0.1").expect("snapshots");
    edit(&mut released);
    check_against(&released)
}

#[test]
fn breaking_changes_are_caught() {
    assert_eq!(released_with(|_| {}), Vec::<String>::new());
    // The released CoreEvent had a field without a default that ours lacks: released consumers
    // cannot read what we write now.
    let problems = released_with(|s| {
        if let Some(fields) = s["avro"]["CoreEvent"]["fields"].as_array_mut() {
            fields.push(json!({"name": "zone", "type": "string"}));
        }
    });
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("Avro record CoreEvent: not FORWARD-compatible with 0.0.1"),
        "{problems:?}"
    );
    // A released record is gone.
    let problems = released_with(|s| {
        s["avro"]["Retired"] = json!({"type": "record", "name": "Retired", "fields": []});
    });
    assert_eq!(
        problems,
        ["Avro record Retired: released in 0.0.1, now missing"]
    );
    // An entity enum value we no longer accept: a break of the entity, and of every event that
    // hydrates a contact (at an unchanged version).
    let problems = released_with(|s| {
        let path = "/json/entities~1contact.schema.json/properties/salutation/enum";
        if let Some(values) = s.pointer_mut(path).and_then(Value::as_array_mut) {
            values.push(json!("Baron"));
        }
    });
    assert!(
        problems[0]
            .starts_with("entities/contact.schema.json: since 0.0.1: /salutation: enum_narrowed"),
        "{problems:?}"
    );
    assert!(problems.contains(&"InstallmentUpdated 1.0 → 1.0: since 0.0.1: /customer/salutation: enum_narrowed: new refuses [\"Baron\"]".to_owned()), "{problems:?}");
    assert!(problems.contains(&"InstallmentUpdated 1.0: the schema changed since 0.0.1 without a version bump (bump the minor)".to_owned()), "{problems:?}");
    assert!(
        !problems.iter().any(|p| p.starts_with("FileCreated")),
        "FileCreated hydrates no contact: {problems:?}"
    );
    // A released major version is gone.
    let problems = released_with(|s| {
        s["json"]["events/InstallmentUpdated.schema.json"]["x-event-version"] = json!("2.0");
    });
    assert_eq!(
        problems,
        ["InstallmentUpdated 2.0: released in 0.0.1, its major version is gone from the catalog"]
    );
    // The released version described a field ours does not, at the same version: a break, and a
    // change without a minor bump.
    let problems = released_with(|s| {
        s["json"]["events/InstallmentUpdated.schema.json"]["properties"]["reason"] =
            json!({"type": "string"});
    });
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].contains("/reason: missing_property"),
        "{problems:?}"
    );
    assert!(
        problems[1].ends_with("without a version bump (bump the minor)"),
        "{problems:?}"
    );
    // A change of wording only is no change.
    assert_eq!(
        released_with(|s| {
            s["json"]["events/InstallmentUpdated.schema.json"]["description"] = json!("Reworded.");
        }),
        Vec::<String>::new()
    );
}

/// What the rules allow: a schema that widens with a minor bump, a new event or major version
/// since the release, an Avro field added as an optional one. (A narrowing change can only ship
/// as a new major file beside the released one, which `breaking_changes_are_caught` shows by
/// the failures of every other way.)
#[test]
fn widening_with_a_minor_bump_and_new_majors_pass() {
    // Released: MeterReadingAdded 2.0 without `remarks`; ours added it (optional) and is 2.1.
    let problems = released_with(|s| {
        let file = &mut s["json"]["events/MeterReadingAdded.schema.json"];
        file["x-event-version"] = json!("2.0");
        if let Some(properties) = file["properties"].as_object_mut() {
            properties.remove("remarks");
        }
    });
    assert_eq!(problems, Vec::<String>::new());
    // The same widening at an unchanged version is a change without a bump.
    let problems = released_with(|s| {
        if let Some(properties) =
            s["json"]["events/MeterReadingAdded.schema.json"]["properties"].as_object_mut()
        {
            properties.remove("remarks");
        }
    });
    assert_eq!(
        problems,
        [
            "MeterReadingAdded 2.1: the schema changed since 0.0.1 without a version bump (bump the minor)"
        ]
    );
    // An event (or a major version) the release did not have is no break.
    let problems = released_with(|s| {
        if let Some(files) = s["json"].as_object_mut() {
            files.remove("events/LocationMoveRequested.schema.json");
        }
    });
    assert_eq!(problems, Vec::<String>::new());
    // An Avro field we added as ["null", T] with default null: released readers skip it, our
    // readers fill it in for released records (BACKWARD and FORWARD).
    let problems = released_with(|s| {
        if let Some(fields) = s["avro"]["CoreEvent"]["fields"].as_array_mut() {
            fields.retain(|f| f["name"] != "use_case_slug");
        }
    });
    assert_eq!(problems, Vec::<String>::new());
}

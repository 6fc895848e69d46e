//! Tests of the configuration fold (`fold.rs`).

use super::*;

fn use_case(id: &str, name: &str, slug: Option<&str>, enabled: bool) -> ConfigRecord {
    ConfigRecord {
        org_id: "org".into(),
        at: "t".into(),
        actor: None,
        base_revision: None,
        change: ConfigChange::UseCaseUpserted {
            use_case: UseCase {
                id: id.into(),
                integration_id: "int".into(),
                name: name.into(),
                slug: slug.map(Into::into),
                kind: "inbound".into(),
                enabled,
                configuration: None,
                change_description: None,
                changed_by: None,
                created_at: format!("t{id}"),
                updated_at: "t".into(),
            },
        },
    }
}

#[test]
fn routes_to_the_enabled_match_and_reports_disabled_ones() {
    let mut state = ConfigState::default();
    state.apply(use_case("1", "Customer", Some("customer"), false), 0);
    assert!(matches!(
        state.route("org", "int", Some("customer"), None),
        Route::Disabled(_)
    ));
    state.apply(use_case("2", "Customer", Some("customer-v2"), true), 1);
    match state.route("org", "int", None, Some("Customer")) {
        Route::Matched(entry) => assert_eq!(entry.use_case.id, "2"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        state.route("other-org", "int", Some("customer"), None),
        Route::NotFound
    );
    assert_eq!(
        state.route("org", "int", Some("nope"), None),
        Route::NotFound
    );
}

#[test]
fn tokens_are_found_by_hash_until_revoked() {
    let token = AccessToken {
        id: "t1".into(),
        org_id: "org".into(),
        name: "ci".into(),
        roles: vec!["integration:view".into()],
        hash: "abc".into(),
        created_at: "t".into(),
        created_by: None,
    };
    let record = |change| ConfigRecord {
        org_id: "org".into(),
        at: "t".into(),
        actor: None,
        base_revision: None,
        change,
    };
    let mut state = ConfigState::default();
    state.apply(record(ConfigChange::TokenCreated { token }), 0);
    assert_eq!(
        state.token_by_hash("abc").map(|t| t.id.as_str()),
        Some("t1")
    );
    assert_eq!(state.tokens("org").len(), 1);
    assert!(state.tokens("other").is_empty());
    state.apply(
        record(ConfigChange::TokenRevoked {
            token_id: "t1".into(),
        }),
        1,
    );
    assert!(state.token_by_hash("abc").is_none());
    assert!(state.tokens("org").is_empty());
}

#[test]
fn mappings_and_pages_go_with_their_integration_and_use_case() {
    let record = |change| ConfigRecord {
        org_id: "org".into(),
        at: "t".into(),
        actor: None,
        base_revision: None,
        change,
    };
    let integration = Integration {
        id: "int".into(),
        org_id: "org".into(),
        name: "SAP".into(),
        description: None,
        extra: Default::default(),
        created_at: "t".into(),
        updated_at: "t".into(),
    };
    let page = |id: &str| DocumentationPage {
        id: id.into(),
        integration_id: "int".into(),
        scope: if id == GENERAL_PAGE {
            "integration"
        } else {
            "use_case"
        }
        .into(),
        use_case_id: (id != GENERAL_PAGE).then(|| id.to_owned()),
        title: "t".into(),
        content: "c".into(),
        created_at: "t".into(),
        created_by: None,
        updated_at: "t".into(),
        updated_by: None,
    };
    let mut state = ConfigState::default();
    state.apply(record(ConfigChange::IntegrationUpserted { integration }), 0);
    state.apply(use_case("1", "A", Some("a"), true), 1);
    state.apply(
        record(ConfigChange::AppMappingSet {
            mapping: AppMapping {
                app_id: "app".into(),
                component_id: "comp".into(),
                integration_id: "int".into(),
                created_at: "t".into(),
                updated_at: "t".into(),
            },
        }),
        2,
    );
    state.apply(
        record(ConfigChange::DocumentationPageUpserted { page: page("1") }),
        3,
    );
    state.apply(
        record(ConfigChange::DocumentationPageUpserted {
            page: page(GENERAL_PAGE),
        }),
        4,
    );
    let ids: Vec<_> = state
        .documentation_pages("org", "int")
        .iter()
        .map(|p| p.id.as_str())
        .collect();
    assert_eq!(ids, [GENERAL_PAGE, "1"], "general page first");
    assert!(state.app_mapping("org", "app", "comp").is_some());
    assert!(state.app_mapping("other", "app", "comp").is_none());
    assert!(
        state
            .documentation_page("other", "int", GENERAL_PAGE)
            .is_none()
    );

    state.apply(
        record(ConfigChange::UseCaseDeleted {
            integration_id: "int".into(),
            use_case_id: "1".into(),
        }),
        5,
    );
    assert!(state.documentation_page("org", "int", "1").is_none());
    assert!(
        state
            .documentation_page("org", "int", GENERAL_PAGE)
            .is_some()
    );
    state.apply(
        record(ConfigChange::IntegrationDeleted {
            integration_id: "int".into(),
        }),
        6,
    );
    assert!(state.app_mapping("org", "app", "comp").is_none());
    assert!(state.documentation.is_empty());
}

#[test]
fn deleting_an_integration_removes_its_use_cases() {
    let mut state = ConfigState::default();
    state.apply(use_case("1", "A", Some("a"), true), 0);
    state.apply(
        ConfigRecord {
            org_id: "org".into(),
            at: "t".into(),
            actor: None,
            base_revision: None,
            change: ConfigChange::IntegrationDeleted {
                integration_id: "int".into(),
            },
        },
        1,
    );
    assert!(state.use_cases("org", "int").is_empty());
}

/// Identity is (organisation, id): another organisation's records carrying A's ids neither
/// replace nor delete A's objects (issue 10: B's create with A's use-case id deleted it).
#[test]
fn records_of_another_organisation_never_touch_a() {
    let mut state = ConfigState::default();
    state.apply(use_case("1", "A", Some("a"), true), 0);
    let mut foreign = use_case("1", "stolen", Some("a"), true);
    foreign.org_id = "beta".into();
    state.apply(foreign, 1);
    let a = state.use_case("org", "int", "1").expect("A's use case");
    assert_eq!(a.use_case.name, "A");
    assert!(
        state.use_case_history("org", "1").is_empty(),
        "no version replaced"
    );
    assert!(state.id_taken("1"));
    for change in [
        ConfigChange::IntegrationDeleted {
            integration_id: "int".into(),
        },
        ConfigChange::UseCaseDeleted {
            integration_id: "int".into(),
            use_case_id: "1".into(),
        },
    ] {
        state.apply(
            ConfigRecord {
                org_id: "beta".into(),
                at: "t".into(),
                actor: None,
                base_revision: None,
                change,
            },
            2,
        );
    }
    assert!(state.use_case("org", "int", "1").is_some());
    assert!(state.use_case("beta", "int", "1").is_none());
}

fn webhook(enabled: bool, secret: &str, base_revision: Option<i64>) -> ConfigRecord {
    ConfigRecord {
        org_id: "org".into(),
        at: "t".into(),
        actor: None,
        base_revision,
        change: ConfigChange::WebhookUpserted {
            webhook: serde_json::from_value(serde_json::json!({
                "id": "w", "name": "n", "eventName": "e", "url": "https://erp.example/hook",
                "enabled": enabled, "creationTime": "t", "updatedTime": "t"
            }))
            .expect("endpoint"),
            signing_secret: secret.into(),
            previous_secrets: Vec::new(),
        },
    }
}

/// No lost updates (issue 10, item 7): the dispatcher read the endpoint at revision 3 and
/// disables it after a 410 while the API rotates its secret (revision 5): every fold skips the
/// disable instead of restoring the old secret; decided again on revision 5, it applies and
/// keeps the rotated secret.
#[test]
fn a_change_based_on_a_replaced_revision_is_skipped_by_every_fold() {
    let mut state = ConfigState::default();
    state.apply(webhook(true, "whsec_old", Some(-1)), 3);
    assert_eq!(state.webhook("org", "w").map(|w| w.revision), Some(3));
    state.apply(webhook(true, "whsec_rotated", Some(3)), 5);
    state.apply(webhook(false, "whsec_old", Some(3)), 6);
    assert!(state.was_rejected(6));
    let current = state.webhook("org", "w").expect("endpoint");
    assert_eq!(current.signing_secret, "whsec_rotated");
    assert!(current.webhook.enabled);
    assert_eq!(current.revision, 5);

    state.apply(webhook(false, "whsec_rotated", Some(5)), 7);
    assert!(!state.was_rejected(7));
    let current = state.webhook("org", "w").expect("endpoint");
    assert!(!current.webhook.enabled);
    assert_eq!(current.signing_secret, "whsec_rotated");

    // A create based on "absent" loses to an earlier create; no base: applied regardless.
    state.apply(webhook(true, "whsec_other", Some(-1)), 8);
    assert!(state.was_rejected(8));
    state.apply(webhook(true, "whsec_forced", None), 9);
    assert_eq!(
        state.webhook("org", "w").map(|w| w.signing_secret.as_str()),
        Some("whsec_forced")
    );
}

#[test]
fn environment_changes_are_based_on_the_organisations_environment_revision() {
    let set = |value: &str, base| ConfigRecord {
        org_id: "org".into(),
        at: "t".into(),
        actor: None,
        base_revision: base,
        change: ConfigChange::EnvironmentValueSet {
            key: "k".into(),
            value_type: erp_schemas::config::EnvValueType::String,
            value: value.into(),
            updated_at: "t".into(),
        },
    };
    let mut state = ConfigState::default();
    state.apply(set("one", Some(-1)), 1);
    state.apply(set("two", Some(1)), 2);
    state.apply(set("stale", Some(1)), 3);
    assert!(state.was_rejected(3));
    assert_eq!(state.env_value("org", "k", None).as_deref(), Ok("two"));
}

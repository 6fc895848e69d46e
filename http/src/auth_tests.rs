//! Unit tests of `auth.rs`: permissions, the route table, tokens.
use super::*;

#[test]
fn compares_exactly() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
}

#[test]
fn roles_grant_their_permissions() {
    let view = Permissions::of_roles(["integration:view"]);
    assert!(view.allows(Permissions::VIEW));
    assert!(!view.allows(Permissions::MANAGE));
    assert_eq!(Permissions::of_roles(["erp:read"]), view);
    let manage = Permissions::of_roles(["erp:write"]);
    assert!(manage.allows(Permissions::VIEW) && manage.allows(Permissions::CONSUME));
    assert!(!manage.allows(Permissions::OWNER));
    assert_eq!(
        Permissions::of_roles(["erp:*"]),
        Permissions::INTEGRATION_ALL
    );
    assert_eq!(Permissions::of_roles(["nope"]), Permissions::default());
    assert!(Permissions::of_role("owner").is_some_and(|p| p.allows(Permissions::OWNER)));
}

#[test]
fn routes_need_their_permission() {
    let consume = Permissions::CONSUME;
    let poll = "/v1/integrations/{id}/outbound/messages/poll";
    assert!(consume.allows(required(&Method::POST, poll)));
    let dlq = "/v1/integrations/{id}/outbound/messages/dlq";
    assert!(!consume.allows(required(&Method::GET, dlq)));
    assert!(!consume.allows(required(&Method::POST, "/v1/integrations/{id}/use-cases")));
    assert!(consume.allows(required(&Method::POST, "/v1/erp/tracking/acknowledgement")));
    let view = Permissions::VIEW;
    assert!(view.allows(required(&Method::GET, "/v1/integrations")));
    assert!(!view.allows(required(&Method::PUT, "/v1/integrations/{id}")));
    assert!(!view.allows(required(&Method::POST, "/v3/erp/updates/events")));
    assert!(Permissions::EVENTS.allows(required(&Method::POST, "/v3/erp/updates/events")));
    assert!(!Permissions::INTEGRATION_ALL.allows(required(&Method::GET, "/v1/access-tokens")));
    assert!(view.allows(required(&Method::GET, "/v1/environments")));
    assert!(!view.allows(required(&Method::PUT, "/v1/environments/{key}")));
    assert!(!view.allows(required(&Method::DELETE, "/v1/environments/{key}")));
    // Unknown routes need manage, never view or "open".
    assert_eq!(required(&Method::DELETE, "/v9/new"), Permissions::MANAGE);
    assert_eq!(required(&Method::GET, "/v9/new"), Permissions::MANAGE);
    assert!(
        !view.allows(required(&Method::GET, dlq)),
        "the DLQ listing needs manage"
    );
}

#[test]
fn tokens_are_random_and_hashed() {
    let (a, b) = (new_token(), new_token());
    assert!(a.starts_with("erpt_") && a.len() > 40);
    assert_ne!(a, b);
    assert_eq!(token_hash(&a).len(), 64);
    assert_ne!(token_hash(&a), token_hash(&b));
}

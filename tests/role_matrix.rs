//! Role × route, derived from the one route table (`erp_http::auth::ROUTES`): every role's token
//! against every route of both services. A role without the route's permission gets 403 before
//! the handler runs; a role with it never does (nor 401); no token is 401; public routes answer
//! without one. The table itself is checked against the registered routes by
//! `api/src/openapi/mod.rs` (`the_permission_table_lists_exactly_the_routes`).

mod common;

use reqwest::{Method, StatusCode};
use serde_json::json;

use common::Harness;
use erp_http::auth::{Need, Permissions, ROUTES};

/// The roles a token can have (`http/src/auth.rs`).
const ROLES: &[&str] = &[
    "integration:view",
    "erp:read",
    "erp:monitoring",
    "integration:consume",
    "erp:events",
    "integration:manage",
    "erp:write",
    "integration:*",
    "erp:*",
    "owner",
];

/// Ids no object has: the permission check runs before any lookup, so they are enough.
fn fill(pattern: &str) -> String {
    pattern
        .replace("{id}", "00000000-0000-4000-8000-0000000000f1")
        .replace("{use_case_id}", "00000000-0000-4000-8000-0000000000f2")
        .replace("{doc_id}", "general")
        .replace("{key}", "matrix_key")
        .replace("{event_id}", "01JP00000000000000000000F3")
        .replace("{task_id}", "00000000-0000-4000-8000-0000000000f4")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_meets_every_route_as_the_table_says() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut options = common::options(dir.path());
    // Hundreds of requests of one organisation: the rate limit is tested elsewhere.
    options.rate_limit_per_minute = 0;
    let h = Harness::start_with(options).await;

    let mut checked = 0;
    for role in ROLES {
        let (status, created) = h
            .post(
                "/v1/access-tokens",
                json!({"name": format!("matrix {role}"), "roles": [role]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let token = created["token"].as_str().expect("token").to_owned();
        let held = Permissions::of_roles([*role]);
        // `/metrics` on the API listener: no organisation's token, not even an owner's.
        let metrics = h
            .client
            .get(format!("{}/metrics", h.base))
            .bearer_auth(&token)
            .send()
            .await
            .expect("answered")
            .status();
        assert_eq!(metrics, StatusCode::FORBIDDEN, "{role} GET /metrics");
        for rule in ROUTES {
            let Need::Any(needed) = rule.need else {
                continue;
            };
            let method = Method::from_bytes(rule.method.as_bytes()).expect("method");
            let mut request = h
                .client
                .request(method, format!("{}{}", h.base, fill(rule.pattern)))
                .bearer_auth(&token);
            if rule.method != "GET" && rule.method != "DELETE" {
                request = request.json(&json!({}));
            }
            let response = request.send().await.expect("answered");
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            let case = format!("{role} {} {}: {status} {body}", rule.method, rule.pattern);
            if held.allows(needed) {
                assert!(
                    status != StatusCode::FORBIDDEN && status != StatusCode::UNAUTHORIZED,
                    "allowed by the table but refused: {case}"
                );
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{case}");
                assert!(body.contains("\"code\""), "epilot-shaped: {case}");
            }
            checked += 1;
        }
    }
    assert!(checked > ROLES.len() * 50, "only {checked} cases");

    // The defect that was: the poll queue's DLQ listing is manage, not view.
    let dlq = ROUTES
        .iter()
        .find(|r| r.method == "GET" && r.pattern == "/v1/integrations/{id}/outbound/messages/dlq")
        .expect("the DLQ listing is in the table");
    assert_eq!(dlq.need, Need::Any(Permissions::MANAGE));

    // No token: every protected route is 401, every public one answers.
    for rule in ROUTES {
        let method = Method::from_bytes(rule.method.as_bytes()).expect("method");
        let status = h
            .client
            .request(method, format!("{}{}", h.base, fill(rule.pattern)))
            .send()
            .await
            .expect("answered")
            .status();
        match rule.need {
            Need::Any(_) => assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{} {}",
                rule.method,
                rule.pattern
            ),
            Need::DeploymentAdmin => assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{} {}",
                rule.method,
                rule.pattern
            ),
            Need::Public => assert!(
                status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                "{} {}: {status}",
                rule.method,
                rule.pattern
            ),
        }
    }
}

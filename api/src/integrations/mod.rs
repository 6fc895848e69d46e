//! Integrations and what hangs off them.

/// `PUT`, `DELETE /v1/integrations/{id}/app-mapping`: legacy app/component routing.
pub mod app_mapping;
/// `/v1/integrations/{id}/documentation`: an integration's documentation pages.
pub mod documentation;
/// Checking file proxy use cases (their JSONata and parameters) on save.
pub mod file_proxy;
/// `GET /v1/integrations/{id}/outbound-status`: whether each outbound use case can deliver.
pub mod outbound_status;
/// `/v1/integrations/{id}/use-cases`: inbound, outbound and file proxy use cases.
pub mod use_cases;
/// `/v1/integrations`: integrations with their v1 mapping.
pub mod v1;
/// `/v2/integrations`: declarative integrations with their use cases.
pub mod v2;

//! The template documents compiled into the binary, read once.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use super::{TemplateError, TemplateSummary, UseCaseTemplate};

macro_rules! documents {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!("../../templates/", $path, ".json")))),*]
    };
}

/// Every template document as `("<type>/<slug>", text)`, in catalogue order: inbound in the
/// order of spec §7.1, then outbound in the order of §7.2.
pub const DOCUMENTS: &[(&str, &str)] = documents![
    "inbound/sync-customer",
    "inbound/sync-contract",
    "inbound/sync-billing-account",
    "inbound/sync-billing-account-invoice-address",
    "inbound/sync-billing-account-payment-method",
    "inbound/sync-meter",
    "inbound/sync-meter-readings",
    "inbound/sync-documents",
    "inbound/sync-billing-events",
    "inbound/sync-installment-schedule",
    "inbound/sync-portal-user",
    "outbound/submit-meter-reading",
    "outbound/submit-service-meter-reading",
    "outbound/submit-new-order",
    "outbound/switch-tariff",
    "outbound/change-installment",
    "outbound/change-payment-method",
    "outbound/change-billing-address",
    "outbound/remove-billing-account-connection",
    "outbound/update-customer-details",
    "outbound/submit-general-request",
    "outbound/request-customer-sync",
    "outbound/request-contract-sync",
    "outbound/contract-move",
    "outbound/terminate-contract",
    "outbound/upload-documents",
    "outbound/simulate-invoice",
];

fn read_all() -> Result<Vec<UseCaseTemplate>, TemplateError> {
    let mut slugs = BTreeSet::new();
    let mut templates = Vec::with_capacity(DOCUMENTS.len());
    for (path, text) in DOCUMENTS {
        let template = UseCaseTemplate::parse(text)?;
        if *path != format!("{}/{}", template.kind.as_str(), template.slug) {
            return Err(TemplateError::Invalid {
                template: template.slug.clone(),
                message: format!("is stored as {path}.json, not under its type and slug"),
            });
        }
        if !slugs.insert(template.slug.clone()) {
            return Err(TemplateError::Invalid {
                template: template.slug.clone(),
                message: "slug is used twice".into(),
            });
        }
        templates.push(template);
    }
    Ok(templates)
}

/// Every template, parsed and checked once. An error here is a bug of the catalogue (the
/// tests read every document), never of the caller.
pub fn catalogue() -> Result<&'static [UseCaseTemplate], TemplateError> {
    static CATALOGUE: OnceLock<Result<Vec<UseCaseTemplate>, TemplateError>> = OnceLock::new();
    match CATALOGUE.get_or_init(read_all) {
        Ok(templates) => Ok(templates),
        Err(error) => Err(error.clone()),
    }
}

/// The template with `slug`.
pub fn find(slug: &str) -> Result<&'static UseCaseTemplate, TemplateError> {
    catalogue()?
        .iter()
        .find(|t| t.slug == slug)
        .ok_or_else(|| TemplateError::NotFound {
            slug: slug.to_owned(),
        })
}

/// The listing of every template, in catalogue order.
pub fn summaries() -> Result<Vec<TemplateSummary>, TemplateError> {
    Ok(catalogue()?.iter().map(UseCaseTemplate::summary).collect())
}

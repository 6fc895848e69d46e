//! Reading spans: a filtered page newest first (the events listing), and every span of one
//! event or one correlation id in order (associated events, traces).

use libsql::Value as SqlValue;
use serde_json::Value;

use super::store::{Store, StoreError};

/// The filters of `POST …/monitoring/events`.
#[derive(Debug, Clone, Default)]
pub struct SpanFilter {
    pub use_case_id: Option<String>,
    /// With `use_case_id = "__unknown__"`: ids of the integration's configured use cases.
    pub known_use_cases: Vec<String>,
    pub use_case_type: Option<String>,
    pub level: Option<String>,
    pub code: Option<String>,
    pub event_id: Option<String>,
    pub correlation_id: Option<String>,
    /// Inclusive, ms.
    pub from: Option<i64>,
    /// Inclusive, ms.
    pub to: Option<i64>,
    /// Only spans before this (created_ms, tie), newest first.
    pub before: Option<(i64, String)>,
    pub limit: usize,
    /// What breaks ties of `created_ms` in the order and the cursor: `id` unless set (the v1
    /// listings page by an event id, e.g. `event_id`).
    pub tie: Option<&'static str>,
    /// List the `info` steps (the access log) instead of the outcomes.
    pub info: bool,
    /// Further SQL conditions with their `?` parameters (the v1 listings' filters on a span's
    /// detail).
    pub clauses: Vec<(String, Vec<SqlValue>)>,
}

/// The marker epilot uses for spans of use cases that are no longer configured.
pub const UNKNOWN_USE_CASE: &str = "__unknown__";

/// One page: the spans (as stored) and whether more follow.
#[derive(Debug)]
pub struct Page {
    pub spans: Vec<(i64, Value)>,
    pub has_more: bool,
}

fn listing_error(e: libsql::Error) -> StoreError {
    StoreError::Sql("listing", e.to_string())
}

impl Store {
    /// A page of `org_id`'s spans of `integration_id` matching `filter`, newest first. Steps
    /// that are no outcome (`info`) are not listed unless `filter.info` asks for them alone:
    /// they have no level in epilot's listing.
    pub async fn page(
        &self,
        org_id: &str,
        integration_id: &str,
        filter: SpanFilter,
    ) -> Result<Page, StoreError> {
        let (org_id, integration_id) = (org_id.to_owned(), integration_id.to_owned());
        self.run(move |c| async move {
            let mut clauses = vec![
                "org_id = ?".to_owned(),
                "integration_id = ?".to_owned(),
                if filter.info {
                    "level = 'info'"
                } else {
                    "level != 'info'"
                }
                .to_owned(),
            ];
            let mut params = vec![SqlValue::Text(org_id), SqlValue::Text(integration_id)];
            let tie = filter.tie.unwrap_or("id");
            let mut equal = |column: &str, value: &Option<String>| {
                if let Some(value) = value {
                    clauses.push(format!("{column} = ?"));
                    params.push(SqlValue::Text(value.clone()));
                }
            };
            match filter.use_case_id.as_deref() {
                Some(UNKNOWN_USE_CASE) => {}
                other => equal("use_case_id", &other.map(str::to_owned)),
            }
            equal("use_case_type", &filter.use_case_type);
            equal("level", &filter.level);
            equal("code", &filter.code);
            equal("event_id", &filter.event_id);
            equal("correlation_id", &filter.correlation_id);
            if filter.use_case_id.as_deref() == Some(UNKNOWN_USE_CASE) {
                clauses.push("use_case_id != ''".to_owned());
                if !filter.known_use_cases.is_empty() {
                    let marks = vec!["?"; filter.known_use_cases.len()].join(", ");
                    clauses.push(format!("use_case_id NOT IN ({marks})"));
                    params.extend(filter.known_use_cases.iter().cloned().map(SqlValue::Text));
                }
            }
            if let Some(from) = filter.from {
                clauses.push("created_ms >= ?".to_owned());
                params.push(SqlValue::Integer(from));
            }
            if let Some(to) = filter.to {
                clauses.push("created_ms <= ?".to_owned());
                params.push(SqlValue::Integer(to));
            }
            for (clause, values) in &filter.clauses {
                clauses.push(clause.clone());
                params.extend(values.iter().cloned());
            }
            if let Some((at, id)) = &filter.before {
                clauses.push(format!(
                    "(created_ms < ? OR (created_ms = ? AND {tie} < ?))"
                ));
                params.push(SqlValue::Integer(*at));
                params.push(SqlValue::Integer(*at));
                params.push(SqlValue::Text(id.clone()));
            }
            let query = format!(
                "SELECT created_ms, span FROM spans WHERE {} \
                 ORDER BY created_ms DESC, {tie} DESC, id DESC LIMIT {}",
                clauses.join(" AND "),
                filter.limit + 1
            );
            let mut rows = c.query(&query, params).await.map_err(listing_error)?;
            let mut spans = Vec::new();
            while let Some(row) = rows.next().await.map_err(listing_error)? {
                let at: i64 = row.get(0).map_err(listing_error)?;
                let text: String = row.get(1).map_err(listing_error)?;
                spans.push((at, serde_json::from_str(&text).unwrap_or(Value::Null)));
            }
            let has_more = spans.len() > filter.limit;
            spans.truncate(filter.limit);
            Ok(Page { spans, has_more })
        })
        .await
    }

    /// Up to `cap` spans of `org_id`'s integration sharing `column` = `value`, oldest first;
    /// and whether there were more.
    pub async fn chronological(
        &self,
        org_id: &str,
        integration_id: &str,
        column: Shared,
        value: &str,
        cap: usize,
    ) -> Result<(Vec<Value>, bool), StoreError> {
        let params = vec![
            SqlValue::Text(org_id.to_owned()),
            SqlValue::Text(integration_id.to_owned()),
            SqlValue::Text(value.to_owned()),
        ];
        self.run(move |c| async move {
            let query = format!(
                "SELECT span FROM spans WHERE org_id = ?1 AND integration_id = ?2 AND {} = ?3 \
                 ORDER BY created_ms ASC, id ASC LIMIT {}",
                column.column(),
                cap + 1
            );
            let mut rows = c.query(&query, params).await.map_err(listing_error)?;
            let mut spans = Vec::new();
            while let Some(row) = rows.next().await.map_err(listing_error)? {
                let text: String = row.get(0).map_err(listing_error)?;
                spans.push(serde_json::from_str(&text).unwrap_or(Value::Null));
            }
            let more = spans.len() > cap;
            spans.truncate(cap);
            Ok((spans, more))
        })
        .await
    }
}

/// What spans of one trace share.
#[derive(Debug, Clone, Copy)]
pub enum Shared {
    EventId,
    CorrelationId,
}

impl Shared {
    fn column(self) -> &'static str {
        match self {
            Shared::EventId => "event_id",
            Shared::CorrelationId => "correlation_id",
        }
    }
}

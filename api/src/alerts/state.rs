//! The alert tables of the monitoring store: each rule's state, and the history of decisions.

use libsql::Value as SqlValue;
use serde_json::Value;

use crate::monitoring::store::{Store, StoreError};

/// A rule's state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleState {
    pub alerting: bool,
    pub last_fired_ms: Option<i64>,
    pub last_cleared_ms: Option<i64>,
    pub last_notified_ms: Option<i64>,
    pub last_evaluated_ms: Option<i64>,
}

fn failed(e: libsql::Error) -> StoreError {
    StoreError::Sql("alerts", e.to_string())
}

fn optional(value: SqlValue) -> Option<i64> {
    match value {
        SqlValue::Integer(n) => Some(n),
        _ => None,
    }
}

fn nullable(value: Option<i64>) -> SqlValue {
    value.map_or(SqlValue::Null, SqlValue::Integer)
}

impl Store {
    /// The states of the integration's rules, by rule id.
    pub async fn rule_states(
        &self,
        org_id: &str,
        integration_id: &str,
    ) -> Result<std::collections::BTreeMap<String, RuleState>, StoreError> {
        let params = vec![
            SqlValue::Text(org_id.to_owned()),
            SqlValue::Text(integration_id.to_owned()),
        ];
        self.run(move |c| async move {
            let mut rows = c
                .query(
                    "SELECT rule_id, state, last_fired_ms, last_cleared_ms, last_notified_ms, \
                     last_evaluated_ms FROM alert_state WHERE org_id = ?1 AND integration_id = ?2",
                    params,
                )
                .await
                .map_err(failed)?;
            let mut found = std::collections::BTreeMap::new();
            while let Some(row) = rows.next().await.map_err(failed)? {
                let state: String = row.get(1).map_err(failed)?;
                found.insert(
                    row.get::<String>(0).map_err(failed)?,
                    RuleState {
                        alerting: state == "alerting",
                        last_fired_ms: optional(row.get_value(2).map_err(failed)?),
                        last_cleared_ms: optional(row.get_value(3).map_err(failed)?),
                        last_notified_ms: optional(row.get_value(4).map_err(failed)?),
                        last_evaluated_ms: optional(row.get_value(5).map_err(failed)?),
                    },
                );
            }
            Ok(found)
        })
        .await
    }

    /// Saves a rule's state and, with it, a history row (one transaction).
    pub async fn save_rule(
        &self,
        org_id: &str,
        integration_id: &str,
        rule_id: &str,
        state: RuleState,
        history: Option<(String, String, i64, Value)>,
    ) -> Result<(), StoreError> {
        let key = [
            SqlValue::Text(org_id.to_owned()),
            SqlValue::Text(integration_id.to_owned()),
        ];
        let rule_id = rule_id.to_owned();
        self.run(move |c| async move {
            let tx = c.transaction().await.map_err(failed)?;
            let mut params = key.to_vec();
            params.extend([
                SqlValue::Text(rule_id),
                SqlValue::Text(if state.alerting { "alerting" } else { "ok" }.into()),
                nullable(state.last_fired_ms),
                nullable(state.last_cleared_ms),
                nullable(state.last_notified_ms),
                nullable(state.last_evaluated_ms),
            ]);
            tx.execute(
                "INSERT INTO alert_state (org_id, integration_id, rule_id, state, last_fired_ms, \
                 last_cleared_ms, last_notified_ms, last_evaluated_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT (org_id, integration_id, rule_id) DO UPDATE SET \
                 state = excluded.state, last_fired_ms = excluded.last_fired_ms, \
                 last_cleared_ms = excluded.last_cleared_ms, \
                 last_notified_ms = excluded.last_notified_ms, \
                 last_evaluated_ms = excluded.last_evaluated_ms",
                params,
            )
            .await
            .map_err(failed)?;
            if let Some((id, kind, at, row)) = history {
                let mut params = vec![SqlValue::Text(id)];
                params.extend(key.iter().cloned());
                params.extend([
                    SqlValue::Text(kind),
                    SqlValue::Integer(at),
                    SqlValue::Text(row.to_string()),
                ]);
                tx.execute(
                    "INSERT OR IGNORE INTO alert_history (id, org_id, integration_id, type, \
                     occurred_ms, row) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params,
                )
                .await
                .map_err(failed)?;
            }
            tx.commit().await.map_err(failed)
        })
        .await
    }

    /// History rows newest first, before `(occurred_ms, id)`, optionally of one type.
    pub async fn alert_history(
        &self,
        org_id: &str,
        integration_id: &str,
        kind: Option<String>,
        before: Option<(i64, String)>,
        limit: usize,
    ) -> Result<(Vec<(i64, String, Value)>, bool), StoreError> {
        let mut params = vec![
            SqlValue::Text(org_id.to_owned()),
            SqlValue::Text(integration_id.to_owned()),
        ];
        let mut clauses = String::new();
        if let Some(kind) = kind {
            clauses.push_str(" AND type = ?");
            params.push(SqlValue::Text(kind));
        }
        if let Some((at, id)) = before {
            clauses.push_str(" AND (occurred_ms < ? OR (occurred_ms = ? AND id < ?))");
            params.extend([
                SqlValue::Integer(at),
                SqlValue::Integer(at),
                SqlValue::Text(id),
            ]);
        }
        self.run(move |c| async move {
            let query = format!(
                "SELECT occurred_ms, id, row FROM alert_history \
                 WHERE org_id = ? AND integration_id = ?{clauses} \
                 ORDER BY occurred_ms DESC, id DESC LIMIT {}",
                limit + 1
            );
            let mut rows = c.query(&query, params).await.map_err(failed)?;
            let mut found = Vec::new();
            while let Some(row) = rows.next().await.map_err(failed)? {
                let text: String = row.get(2).map_err(failed)?;
                found.push((
                    row.get(0).map_err(failed)?,
                    row.get(1).map_err(failed)?,
                    serde_json::from_str(&text).unwrap_or(Value::Null),
                ));
            }
            let more = found.len() > limit;
            found.truncate(limit);
            Ok((found, more))
        })
        .await
    }
}

//! Counting spans over a time window: whole five-minute buckets from the rollups, the partial
//! buckets at either edge from the spans themselves, so stats and time series are exact for
//! any window without scanning every span in it.

use libsql::Value as SqlValue;

use super::store::{BUCKET_MS, Store, StoreError};

/// Spans of one (bucket, use case, type, level, code) cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub bucket_ms: i64,
    pub use_case_id: String,
    pub use_case_type: String,
    pub level: String,
    pub code: String,
    pub count: i64,
}

/// Counts per outcome level of some cells (`info` steps are no outcome), and ACK timeouts.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub success: i64,
    pub error: i64,
    pub warning: i64,
    pub skipped: i64,
    pub ack_timeout: i64,
}

impl Tally {
    /// Adds a cell's spans.
    pub fn add(&mut self, cell: &Cell) {
        match cell.level.as_str() {
            "success" => self.success += cell.count,
            "error" => self.error += cell.count,
            "warning" => self.warning += cell.count,
            "skipped" => self.skipped += cell.count,
            _ => {}
        }
        if cell.code == "ACK_TIMEOUT" {
            self.ack_timeout += cell.count;
        }
    }

    /// All outcomes.
    pub fn total(&self) -> i64 {
        self.success + self.error + self.warning + self.skipped
    }

    /// `success_count`, `error_count`, `warning_count`, `skipped_count`, as epilot names them.
    pub fn json(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        out.insert("success_count".into(), self.success.into());
        out.insert("error_count".into(), self.error.into());
        out.insert("warning_count".into(), self.warning.into());
        out.insert("skipped_count".into(), self.skipped.into());
        out
    }
}

/// The pieces a window `[from, to)` splits into: the half-open ranges read from raw spans and
/// the range of whole buckets read from the rollups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pieces {
    pub raw: Vec<(i64, i64)>,
    pub rollup: Option<(i64, i64)>,
}

/// Splits `[from, to)` at bucket boundaries.
pub fn pieces(from: i64, to: i64) -> Pieces {
    if to <= from {
        return Pieces {
            raw: Vec::new(),
            rollup: None,
        };
    }
    let first_full = from.div_euclid(BUCKET_MS) * BUCKET_MS
        + if from.rem_euclid(BUCKET_MS) == 0 {
            0
        } else {
            BUCKET_MS
        };
    let end_full = to.div_euclid(BUCKET_MS) * BUCKET_MS;
    if first_full >= end_full {
        return Pieces {
            raw: vec![(from, to)],
            rollup: None,
        };
    }
    let mut raw = Vec::new();
    if from < first_full {
        raw.push((from, first_full));
    }
    if end_full < to {
        raw.push((end_full, to));
    }
    Pieces {
        raw,
        rollup: Some((first_full, end_full)),
    }
}

/// What to count.
#[derive(Debug, Clone)]
pub struct Window {
    pub org_id: String,
    pub integration_id: String,
    /// Inclusive start, in ms.
    pub from: i64,
    /// Exclusive end, in ms.
    pub to: i64,
    /// Only these use-case types (all when empty).
    pub use_case_types: Vec<String>,
}

fn type_filter(types: &[String], first: usize) -> String {
    if types.is_empty() {
        return String::new();
    }
    let marks: Vec<String> = (0..types.len())
        .map(|i| format!("?{}", first + i))
        .collect();
    format!(" AND use_case_type IN ({})", marks.join(", "))
}

impl Store {
    /// Every cell of `window` (outcome levels only: `info` steps are no outcome).
    pub async fn cells(&self, window: Window) -> Result<Vec<Cell>, StoreError> {
        self.run(move |c| async move {
            let split = pieces(window.from, window.to);
            let mut cells = Vec::new();
            let mut queries: Vec<(String, i64, i64)> = Vec::new();
            for (from, to) in split.raw {
                queries.push((
                    format!(
                        "SELECT (created_ms / {BUCKET_MS}) * {BUCKET_MS}, use_case_id, \
                         use_case_type, level, code, COUNT(*) FROM spans \
                         WHERE org_id = ?1 AND integration_id = ?2 AND created_ms >= ?3 \
                         AND created_ms < ?4 AND level != 'info'{} \
                         GROUP BY 1, 2, 3, 4, 5",
                        type_filter(&window.use_case_types, 5)
                    ),
                    from,
                    to,
                ));
            }
            if let Some((from, to)) = split.rollup {
                queries.push((
                    format!(
                        "SELECT bucket_ms, use_case_id, use_case_type, level, code, count \
                         FROM rollups WHERE org_id = ?1 AND integration_id = ?2 \
                         AND bucket_ms >= ?3 AND bucket_ms < ?4 AND level != 'info'{}",
                        type_filter(&window.use_case_types, 5)
                    ),
                    from,
                    to,
                ));
            }
            for (query, from, to) in queries {
                let mut params = vec![
                    SqlValue::Text(window.org_id.clone()),
                    SqlValue::Text(window.integration_id.clone()),
                    SqlValue::Integer(from),
                    SqlValue::Integer(to),
                ];
                params.extend(window.use_case_types.iter().cloned().map(SqlValue::Text));
                let mut rows = c.query(&query, params).await.map_err(cells_error)?;
                while let Some(row) = rows.next().await.map_err(cells_error)? {
                    cells.push(Cell {
                        bucket_ms: row.get(0).map_err(cells_error)?,
                        use_case_id: row.get(1).map_err(cells_error)?,
                        use_case_type: row.get(2).map_err(cells_error)?,
                        level: row.get(3).map_err(cells_error)?,
                        code: row.get(4).map_err(cells_error)?,
                        count: row.get(5).map_err(cells_error)?,
                    });
                }
            }
            Ok(cells)
        })
        .await
    }

    /// The newest error span's time in `window`, in ms.
    pub async fn last_error(&self, window: Window) -> Result<Option<i64>, StoreError> {
        self.run(move |c| async move {
            let query = format!(
                "SELECT MAX(created_ms) FROM spans WHERE org_id = ?1 AND integration_id = ?2 \
                 AND level = 'error' AND created_ms >= ?3 AND created_ms < ?4{}",
                type_filter(&window.use_case_types, 5)
            );
            let mut params = vec![
                SqlValue::Text(window.org_id.clone()),
                SqlValue::Text(window.integration_id.clone()),
                SqlValue::Integer(window.from),
                SqlValue::Integer(window.to),
            ];
            params.extend(window.use_case_types.iter().cloned().map(SqlValue::Text));
            let mut rows = c.query(&query, params).await.map_err(cells_error)?;
            match rows.next().await.map_err(cells_error)? {
                Some(row) => match row.get_value(0).map_err(cells_error)? {
                    SqlValue::Integer(at) => Ok(Some(at)),
                    _ => Ok(None),
                },
                None => Ok(None),
            }
        })
        .await
    }

    /// Distinct inbound events received in `window`, per use case (stats `source: incoming`).
    pub async fn incoming(&self, window: Window) -> Result<Vec<(String, i64)>, StoreError> {
        self.run(move |c| async move {
            let mut rows = c
                .query(
                    "SELECT use_case_id, COUNT(DISTINCT event_id) FROM spans \
                     WHERE org_id = ?1 AND integration_id = ?2 AND created_ms >= ?3 \
                     AND created_ms < ?4 AND use_case_type = 'inbound' GROUP BY 1",
                    vec![
                        SqlValue::Text(window.org_id.clone()),
                        SqlValue::Text(window.integration_id.clone()),
                        SqlValue::Integer(window.from),
                        SqlValue::Integer(window.to),
                    ],
                )
                .await
                .map_err(cells_error)?;
            let mut found = Vec::new();
            while let Some(row) = rows.next().await.map_err(cells_error)? {
                found.push((
                    row.get(0).map_err(cells_error)?,
                    row.get(1).map_err(cells_error)?,
                ));
            }
            Ok(found)
        })
        .await
    }
}

fn cells_error(e: libsql::Error) -> StoreError {
    StoreError::Sql("count", e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: i64 = BUCKET_MS;

    #[test]
    fn a_window_inside_one_bucket_is_read_raw() {
        assert_eq!(
            pieces(B + 10, B + 20),
            Pieces {
                raw: vec![(B + 10, B + 20)],
                rollup: None
            }
        );
    }

    #[test]
    fn aligned_windows_are_read_from_rollups_only() {
        assert_eq!(
            pieces(B, 4 * B),
            Pieces {
                raw: vec![],
                rollup: Some((B, 4 * B))
            }
        );
    }

    #[test]
    fn ragged_edges_are_read_raw_and_the_middle_from_rollups() {
        assert_eq!(
            pieces(B + 1, 4 * B + 7),
            Pieces {
                raw: vec![(B + 1, 2 * B), (4 * B, 4 * B + 7)],
                rollup: Some((2 * B, 4 * B))
            }
        );
        assert_eq!(
            pieces(5, 5),
            Pieces {
                raw: vec![],
                rollup: None
            }
        );
    }
}

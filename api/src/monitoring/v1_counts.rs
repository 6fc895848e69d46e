//! epilot's monitoring v1 counts (spec §2.9): `POST /v1/integrations/{id}/monitoring/stats` and
//! `…/timeseries`. Inbound counts come from the rollups, like v2's ([`Store::cells`]); outbound
//! deliveries are dispatcher spans, which the rollups cannot tell from the processor's outbound
//! spans, so they are counted per five-minute bucket from the spans of the window, through the
//! `(org, integration, created_ms)` index.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use libsql::Value as SqlValue;
use serde_json::{Map, Value, json};

use erp_http::ApiError;
use erp_http::auth::Caller;
use erp_http::body::opt_date_ms;
use erp_schemas::timestamp::format_millis;

use super::counts::{Cell, Tally, Window};
use super::routes::{
    Series, enum_array, one_of, owned_request, series_request, success_rate, window,
};
use super::store::{BUCKET_MS, Store, StoreError};
use super::time_series;
use super::v1_shape::{self as shape, UseCaseFacts, detail};
use crate::state::ApiState;

/// Deliveries of one (bucket, event name, webhook, level).
#[derive(Debug, Clone)]
pub struct DeliveryCell {
    pub bucket_ms: i64,
    pub use_case_id: String,
    pub use_case_type: String,
    pub code: String,
    pub event_name: String,
    pub webhook_config_id: String,
    pub level: String,
    pub count: i64,
}

/// Delivery counts: succeeded, failed, pending (a retry scheduled or held).
#[derive(Debug, Default, Clone, Copy)]
struct Deliveries {
    success: i64,
    error: i64,
    pending: i64,
}

impl Deliveries {
    fn add(&mut self, cell: &DeliveryCell) {
        match cell.level.as_str() {
            "success" => self.success += cell.count,
            "error" => self.error += cell.count,
            _ => self.pending += cell.count,
        }
    }

    fn total(&self) -> i64 {
        self.success + self.error + self.pending
    }

    fn json(&self, total_key: &str) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("success_count".into(), json!(self.success));
        out.insert("error_count".into(), json!(self.error));
        out.insert("pending_count".into(), json!(self.pending));
        out.insert(total_key.into(), json!(self.total()));
        out
    }
}

fn count_error(e: libsql::Error) -> StoreError {
    StoreError::Sql("delivery count", e.to_string())
}

impl Store {
    /// The deliveries of `window` per five-minute bucket, event name, webhook and level; and
    /// the newest failure's time.
    pub async fn delivery_cells(
        &self,
        window: Window,
    ) -> Result<(Vec<DeliveryCell>, Option<i64>), StoreError> {
        self.run(move |c| async move {
            let (deliveries, _) = shape::delivery_clause();
            let query = format!(
                "SELECT (created_ms / {BUCKET_MS}) * {BUCKET_MS}, {}, {}, level, COUNT(*), \
                 MAX(CASE WHEN level = 'error' THEN created_ms END), use_case_id, \
                 use_case_type, code FROM spans \
                 WHERE org_id = ?1 AND integration_id = ?2 AND created_ms >= ?3 \
                 AND created_ms < ?4 AND {deliveries} GROUP BY 1, 2, 3, 4, 7, 8, 9",
                detail("event_name"),
                detail("webhook_config_id"),
            );
            let params = vec![
                SqlValue::Text(window.org_id.clone()),
                SqlValue::Text(window.integration_id.clone()),
                SqlValue::Integer(window.from),
                SqlValue::Integer(window.to),
            ];
            let mut rows = c.query(&query, params).await.map_err(count_error)?;
            let (mut cells, mut last_error) = (Vec::new(), None::<i64>);
            let text = |value: SqlValue| match value {
                SqlValue::Text(text) => text,
                _ => String::new(),
            };
            while let Some(row) = rows.next().await.map_err(count_error)? {
                cells.push(DeliveryCell {
                    bucket_ms: row.get(0).map_err(count_error)?,
                    event_name: text(row.get_value(1).map_err(count_error)?),
                    webhook_config_id: text(row.get_value(2).map_err(count_error)?),
                    level: row.get(3).map_err(count_error)?,
                    count: row.get(4).map_err(count_error)?,
                    use_case_id: row.get(6).map_err(count_error)?,
                    use_case_type: row.get(7).map_err(count_error)?,
                    code: row.get(8).map_err(count_error)?,
                });
                if let SqlValue::Integer(at) = row.get_value(5).map_err(count_error)? {
                    last_error = last_error.max(Some(at));
                }
            }
            Ok((cells, last_error))
        })
        .await
    }
}

/// The inbound cells of a window: the rollups' (whole buckets; raw spans at the edges) less
/// the dispatcher's deliveries of inbound use cases' events, which the rollups count under the
/// same type but which are outbound deliveries.
async fn inbound_cells(
    store: &Store,
    mut window: Window,
    deliveries: &[DeliveryCell],
) -> Result<Vec<Cell>, ApiError> {
    window.use_case_types = vec!["inbound".into(), String::new()];
    let mut cells = store.cells(window).await?;
    let mut taken: BTreeMap<(i64, &str, &str, &str, &str), i64> = BTreeMap::new();
    for d in deliveries {
        *taken
            .entry((
                d.bucket_ms,
                &d.use_case_id,
                &d.use_case_type,
                &d.level,
                &d.code,
            ))
            .or_default() += d.count;
    }
    for cell in &mut cells {
        let key = (
            cell.bucket_ms,
            cell.use_case_id.as_str(),
            cell.use_case_type.as_str(),
            cell.level.as_str(),
            cell.code.as_str(),
        );
        if let Some(n) = taken.get_mut(&key) {
            let less = (*n).min(cell.count);
            cell.count -= less;
            *n -= less;
        }
    }
    Ok(cells
        .into_iter()
        .filter(|c| c.count > 0 && shape::is_inbound(&c.use_case_type, &c.code))
        .collect())
}

fn day(bucket_ms: i64) -> String {
    format_millis(bucket_ms).get(..10).unwrap_or("").to_owned()
}

/// Breakdown rows: one per distinct combination of the `keys`' values.
fn breakdown<T: Copy + Default>(
    rows: impl Iterator<Item = (Vec<Value>, T)>,
    keys: &[String],
    add: impl Fn(&mut T, &T),
    json_of: impl Fn(&T) -> Map<String, Value>,
) -> Vec<Value> {
    if keys.is_empty() {
        return Vec::new();
    }
    let mut groups: BTreeMap<String, (Vec<Value>, T)> = BTreeMap::new();
    for (values, counts) in rows {
        let entry = groups
            .entry(Value::Array(values.clone()).to_string())
            .or_insert_with(|| (values, T::default()));
        add(&mut entry.1, &counts);
    }
    groups
        .into_values()
        .map(|(values, counts)| {
            let mut row = json_of(&counts);
            for (key, value) in keys.iter().zip(values) {
                row.insert(key.clone(), value);
            }
            Value::Object(row)
        })
        .collect()
}

fn tally_of(cell: &Cell) -> Tally {
    let mut tally = Tally::default();
    tally.add(cell);
    tally
}

fn add_tally(into: &mut Tally, other: &Tally) {
    into.success += other.success;
    into.error += other.error;
    into.warning += other.warning;
    into.skipped += other.skipped;
    into.ack_timeout += other.ack_timeout;
}

/// The newest inbound error's time in the request's window: the newest span of the inbound
/// listing's query, filtered to errors.
async fn last_inbound_error(
    store: &Store,
    caller: &Caller,
    integration_id: &str,
    fields: &Map<String, Value>,
) -> Result<Option<i64>, ApiError> {
    let filter = super::listing::SpanFilter {
        from: opt_date_ms(fields, "from_date")?,
        to: opt_date_ms(fields, "to_date")?,
        level: Some("error".into()),
        limit: 1,
        clauses: vec![shape::inbound_clause()],
        ..Default::default()
    };
    let page = store.page(&caller.org_id, integration_id, filter).await?;
    Ok(page.spans.first().map(|(at, _)| *at))
}

/// `POST /v1/integrations/{id}/monitoring/stats`
pub async fn stats(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let integration_id = path.into_inner();
    let (fields, store, _) = owned_request(&state, &caller, &integration_id, payload).await?;
    let inbound_keys = enum_array(
        &fields,
        "inbound_group_by",
        &[
            "use_case_id",
            "sync_type",
            "status",
            "error_category",
            "object_type",
            "event_name",
            "date",
        ],
    )?;
    let outbound_keys = enum_array(
        &fields,
        "outbound_group_by",
        &["event_name", "status", "webhook_config_id", "date"],
    )?;
    let window = window(
        &caller,
        &integration_id,
        opt_date_ms(&fields, "from_date")?,
        opt_date_ms(&fields, "to_date")?,
        Vec::new(),
    )?;
    let snapshot = state.view().snapshot();
    let facts = UseCaseFacts::of(&snapshot.use_cases(&caller.org_id, &integration_id));

    let (deliveries, last_failure) = store.delivery_cells(window.clone()).await?;
    let cells = inbound_cells(&store, window, &deliveries).await?;
    let last_error = last_inbound_error(&store, &caller, &integration_id, &fields).await?;
    let mut all = Tally::default();
    cells.iter().for_each(|c| all.add(c));
    let rows = cells.iter().map(|cell| {
        let values = inbound_keys
            .iter()
            .map(|key| match key.as_str() {
                "use_case_id" => json!(cell.use_case_id),
                "sync_type" => json!(facts.sync_type(&cell.use_case_id)),
                "status" => json!(cell.level),
                "error_category" if cell.level == "error" => json!(shape::category(&cell.code)),
                "error_category" => Value::Null,
                "object_type" | "event_name" => json!(facts.slug(&cell.use_case_id)),
                _ => json!(day(cell.bucket_ms)),
            })
            .collect();
        (values, tally_of(cell))
    });
    let inbound_breakdown = breakdown(rows, &inbound_keys, add_tally, |t| {
        let mut row = t.json();
        row.insert("total_events".into(), json!(t.total()));
        row
    });
    let mut inbound = all.json();
    inbound.insert("total_events".into(), json!(all.total()));
    inbound.insert("success_rate".into(), json!(success_rate(&all)));
    inbound.insert("last_error_at".into(), json!(last_error.map(format_millis)));
    inbound.insert("breakdown".into(), Value::Array(inbound_breakdown));

    let mut sent = Deliveries::default();
    deliveries.iter().for_each(|c| sent.add(c));
    let rows = deliveries.iter().map(|cell| {
        let values = outbound_keys
            .iter()
            .map(|key| match key.as_str() {
                "event_name" => json!(cell.event_name),
                "status" => json!(shape::delivery_status(&cell.level)),
                "webhook_config_id" => json!(cell.webhook_config_id),
                _ => json!(day(cell.bucket_ms)),
            })
            .collect();
        let mut one = Deliveries::default();
        one.add(cell);
        (values, one)
    });
    let add = |into: &mut Deliveries, other: &Deliveries| {
        into.success += other.success;
        into.error += other.error;
        into.pending += other.pending;
    };
    let outbound_breakdown = breakdown(rows, &outbound_keys, add, |d| d.json("total_events"));
    let mut outbound = sent.json("total_events");
    let rate = if sent.total() == 0 {
        100.0
    } else {
        (sent.success as f64 * 10_000.0 / sent.total() as f64).round() / 100.0
    };
    outbound.insert("success_rate".into(), json!(rate));
    outbound.insert(
        "last_error_at".into(),
        json!(last_failure.map(format_millis)),
    );
    outbound.insert("breakdown".into(), Value::Array(outbound_breakdown));
    Ok(HttpResponse::Ok().json(json!({"inbound": inbound, "outbound": outbound})))
}

/// `POST /v1/integrations/{id}/monitoring/timeseries`: at most
/// [`time_series::MAX_BUCKETS`] buckets, a 400 beyond.
pub async fn series(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let integration_id = path.into_inner();
    let (fields, store, _) = owned_request(&state, &caller, &integration_id, payload).await?;
    let direction = one_of(&fields, "direction", &["inbound", "outbound", "both"])?
        .unwrap_or_else(|| "both".to_owned());
    let Series {
        window,
        starts,
        interval,
        interval_name,
    } = series_request(&caller, &integration_id, &fields, Vec::new())?;
    let (from_ms, to_ms) = (window.from, window.to - 1);
    let (deliveries, _) = store.delivery_cells(window.clone()).await?;
    let inbound = if direction != "outbound" {
        let cells = inbound_cells(&store, window, &deliveries).await?;
        Some(time_series::buckets(&starts, interval, &cells, None))
    } else {
        None
    };
    let outbound = if direction != "inbound" {
        let cells = deliveries;
        let mut per: BTreeMap<i64, Deliveries> =
            starts.iter().map(|s| (*s, Deliveries::default())).collect();
        for cell in &cells {
            if let Some(bucket) = per.get_mut(&(cell.bucket_ms.div_euclid(interval) * interval)) {
                bucket.add(cell);
            }
        }
        Some(per)
    } else {
        None
    };
    let buckets: Vec<Value> = starts
        .iter()
        .enumerate()
        .map(|(n, start)| {
            let inbound = inbound.as_ref().and_then(|b| b.get(n)).map(|bucket| {
                let mut counts = bucket.as_object().cloned().unwrap_or_default();
                counts.remove("timestamp");
                Value::Object(counts)
            });
            let outbound = outbound
                .as_ref()
                .and_then(|per| per.get(start))
                .map(|d| Value::Object(d.json("total_count")));
            json!({"timestamp": format_millis(*start), "inbound": inbound, "outbound": outbound})
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "interval": interval_name,
        "from_date": format_millis(from_ms),
        "to_date": format_millis(to_ms),
        "buckets": buckets,
    })))
}

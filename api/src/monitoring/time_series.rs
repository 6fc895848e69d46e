//! Time-series buckets (spec §2.9, `…/monitoring/time-series`): bucket starts aligned to the
//! interval (UTC), counts summed from five-minute cells, optional breakdown per bucket.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use erp_schemas::timestamp::format_millis;

use super::counts::{Cell, Tally};

/// One day, in ms.
pub const DAY_MS: i64 = 86_400_000;
/// The intervals epilot offers.
pub const INTERVAL_NAMES: [&str; 6] = ["5m", "10m", "30m", "1h", "3h", "1d"];
/// Most buckets one answer holds (epilot's v1 limit, applied to v2 as well).
pub const MAX_BUCKETS: usize = 200;

/// The length of interval `name`, in ms.
pub fn interval_ms(name: &str) -> Option<i64> {
    const MINUTE: i64 = 60_000;
    Some(match name {
        "5m" => 5 * MINUTE,
        "10m" => 10 * MINUTE,
        "30m" => 30 * MINUTE,
        "1h" => 60 * MINUTE,
        "3h" => 180 * MINUTE,
        "1d" => DAY_MS,
        _ => return None,
    })
}

/// The starts of the buckets covering `[from, to)`; `None` when more than [`MAX_BUCKETS`].
pub fn bucket_starts(from: i64, to: i64, interval: i64) -> Option<Vec<i64>> {
    let first = from.div_euclid(interval) * interval;
    let mut starts = Vec::new();
    let mut at = first;
    while at < to {
        if starts.len() == MAX_BUCKETS {
            return None;
        }
        starts.push(at);
        at += interval;
    }
    Some(starts)
}

/// A bucket's counts, with its `total_count`.
fn bucket_json(tally: &Tally) -> Map<String, Value> {
    let mut out = tally.json();
    out.insert("total_count".into(), json!(tally.total()));
    out
}

/// The buckets at `starts` with the counts of `cells` (five-minute aligned, so each falls in
/// exactly one bucket) and, with `group_by` (`use_case_type` or `use_case`), a breakdown.
pub fn buckets(
    starts: &[i64],
    interval: i64,
    cells: &[Cell],
    group_by: Option<&str>,
) -> Vec<Value> {
    let mut totals: BTreeMap<i64, Tally> = starts.iter().map(|s| (*s, Tally::default())).collect();
    let mut groups: BTreeMap<(i64, String), Tally> = BTreeMap::new();
    for cell in cells {
        let start = cell.bucket_ms.div_euclid(interval) * interval;
        let Some(total) = totals.get_mut(&start) else {
            continue;
        };
        total.add(cell);
        let key = match group_by {
            Some("use_case_type") => Some(cell.use_case_type.clone()),
            Some("use_case") => Some(cell.use_case_id.clone()),
            _ => None,
        };
        if let Some(key) = key {
            groups.entry((start, key)).or_default().add(cell);
        }
    }
    totals
        .into_iter()
        .map(|(start, tally)| {
            let mut bucket = bucket_json(&tally);
            bucket.insert("timestamp".into(), json!(format_millis(start)));
            if let Some(field) = group_by {
                let field = if field == "use_case" {
                    "use_case_id"
                } else {
                    field
                };
                let breakdown: Vec<Value> = groups
                    .range((start, String::new())..)
                    .take_while(|((s, _), _)| *s == start)
                    // Spans of no use case ("General") have no type to group by.
                    .filter(|((_, key), _)| !(field == "use_case_type" && key.is_empty()))
                    .map(|((_, key), tally)| {
                        let mut row = bucket_json(tally);
                        row.insert(field.to_owned(), json!(key));
                        Value::Object(row)
                    })
                    .collect();
                bucket.insert("breakdown".into(), Value::Array(breakdown));
            }
            Value::Object(bucket)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(bucket_ms: i64, level: &str, count: i64) -> Cell {
        Cell {
            bucket_ms,
            use_case_id: "u1".into(),
            use_case_type: "inbound".into(),
            level: level.into(),
            code: String::new(),
            count,
        }
    }

    #[test]
    fn buckets_align_to_the_interval_and_are_bounded() {
        let hour = interval_ms("1h").unwrap_or_default();
        assert_eq!(
            bucket_starts(hour + 5, 3 * hour, hour),
            Some(vec![hour, 2 * hour])
        );
        assert_eq!(bucket_starts(0, 201 * hour, hour), None);
        assert_eq!(
            bucket_starts(0, 200 * hour, hour).map(|s| s.len()),
            Some(200)
        );
    }

    #[test]
    fn cells_sum_into_their_bucket_with_a_breakdown() {
        let hour = interval_ms("1h").unwrap_or_default();
        let cells = [
            cell(0, "success", 3),
            cell(300_000, "error", 1),
            cell(hour, "skipped", 2),
        ];
        let out = buckets(&[0, hour], hour, &cells, Some("use_case_type"));
        assert_eq!(out[0]["total_count"], 4);
        assert_eq!(out[0]["error_count"], 1);
        assert_eq!(out[1]["skipped_count"], 2);
        assert_eq!(out[0]["breakdown"][0]["use_case_type"], "inbound");
        assert_eq!(out[0]["breakdown"][0]["total_count"], 4);
    }
}

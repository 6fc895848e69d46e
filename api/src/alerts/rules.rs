//! `settings.notifications` (spec §2.4.5) read from an integration, and the pure evaluation of
//! one rule over the counts of its window.

use serde_json::Value;

use crate::monitoring::counts::Cell;

/// An integration's notification settings, as far as evaluation needs them.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub enabled: bool,
    /// Until when notifications are muted (ms).
    pub mute_until: Option<i64>,
    /// Only these use cases count (all when empty).
    pub monitored_use_cases: Vec<String>,
    /// The integration's code scope (default `_error_`).
    pub monitored_codes: Vec<String>,
    pub rules: Vec<Rule>,
}

/// One rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: String,
    pub kind: String,
    pub name: Option<String>,
    pub enabled: bool,
    pub codes: Vec<String>,
    /// A count, or a percentage for `success_rate_drop`; `auto` falls back to
    /// `fallbackThreshold` (the anomaly baseline is not computed here).
    pub threshold: Option<f64>,
    pub window_ms: i64,
    pub min_sample_size: i64,
    pub quiet_period_ms: i64,
}

/// `15m`, `1h`, `24h`, `30s`, `2d` in ms.
pub fn duration_ms(text: &str) -> Option<i64> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = number.parse().ok()?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(unit_ms).filter(|ms| *ms > 0)
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Reads `integration.settings.notifications`; `None` when absent.
pub fn settings(extra: &serde_json::Map<String, Value>) -> Option<Settings> {
    let config = extra.get("settings")?.get("notifications")?;
    let mute_until = config["muteUntil"]
        .as_str()
        .and_then(erp_schemas::timestamp::parse_rfc3339)
        .map(erp_schemas::timestamp::millis_of);
    let rules = config["rules"]
        .as_array()
        .map(|rules| {
            rules
                .iter()
                .enumerate()
                .filter_map(|(index, rule)| {
                    let kind = rule["type"].as_str()?.to_owned();
                    let threshold = match &rule["threshold"] {
                        Value::Number(n) => n.as_f64(),
                        _ => rule["fallbackThreshold"].as_f64(),
                    };
                    Some(Rule {
                        // A rule without an id keeps its state by position.
                        id: rule["id"]
                            .as_str()
                            .map_or_else(|| format!("rule-{index}"), str::to_owned),
                        name: rule["name"].as_str().map(str::to_owned),
                        enabled: rule["enabled"].as_bool().unwrap_or(false),
                        codes: strings(&rule["codes"]),
                        threshold,
                        window_ms: rule["window"]
                            .as_str()
                            .and_then(duration_ms)
                            .unwrap_or(15 * 60_000),
                        min_sample_size: rule["minSampleSize"].as_i64().unwrap_or(20),
                        quiet_period_ms: rule["quietPeriod"]
                            .as_str()
                            .and_then(duration_ms)
                            .unwrap_or(0),
                        kind,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Settings {
        enabled: config["enabled"].as_bool().unwrap_or(false),
        mute_until,
        monitored_use_cases: strings(&config["monitoredUseCases"]),
        monitored_codes: strings(&config["monitoredCodes"]),
        rules,
    })
}

/// Whether `cell` is in a code scope (`_error_`, `_warning_`, `_success_`, `_info_`, `_any_`,
/// or concrete codes).
fn in_scope(cell: &Cell, scope: &[String]) -> bool {
    scope.iter().any(|code| match code.as_str() {
        "_any_" => true,
        "_error_" => cell.level == "error",
        "_warning_" => cell.level == "warning",
        "_success_" => cell.level == "success",
        "_info_" => cell.level == "info",
        concrete => cell.code == concrete,
    })
}

/// What one evaluation found.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub firing: bool,
    /// The measured value (a count, or a success rate in percent).
    pub value: f64,
    pub threshold: f64,
    pub severity: &'static str,
    pub title: String,
}

/// Evaluates `rule` of `settings` over the cells of its window. `None` for rules that are no
/// condition (`recovery`) or unknown types.
pub fn evaluate(settings: &Settings, rule: &Rule, cells: &[Cell]) -> Option<Finding> {
    let cells: Vec<&Cell> = cells
        .iter()
        .filter(|c| {
            settings.monitored_use_cases.is_empty()
                || settings.monitored_use_cases.contains(&c.use_case_id)
        })
        .collect();
    let integration_scope = if settings.monitored_codes.is_empty() {
        vec!["_error_".to_owned()]
    } else {
        settings.monitored_codes.clone()
    };
    let scope = |default: &str| -> Vec<String> {
        let codes = if rule.codes.is_empty() {
            vec![default.to_owned()]
        } else {
            rule.codes.clone()
        };
        codes
            .into_iter()
            .flat_map(|c| {
                if c == "_parent_" {
                    integration_scope.clone()
                } else {
                    vec![c]
                }
            })
            .collect()
    };
    let count = |scope: &[String], level: Option<&str>| -> f64 {
        cells
            .iter()
            .filter(|c| level.is_none_or(|l| c.level == l) && in_scope(c, scope))
            .map(|c| c.count)
            .sum::<i64>() as f64
    };
    let name = rule
        .name
        .clone()
        .unwrap_or_else(|| rule.kind.replace('_', " "));
    Some(match rule.kind.as_str() {
        "critical_error" => {
            let errors = count(&scope("_parent_"), Some("error"));
            Finding {
                firing: errors >= 1.0,
                value: errors,
                threshold: 1.0,
                severity: "error",
                title: format!("{name}: {errors} error(s)"),
            }
        }
        "error_threshold" | "warning_threshold" => {
            let level = if rule.kind == "error_threshold" {
                "error"
            } else {
                "warning"
            };
            let default_scope = if level == "error" {
                "_parent_"
            } else {
                "_warning_"
            };
            let found = count(&scope(default_scope), Some(level));
            let threshold = rule.threshold.unwrap_or(5.0);
            Finding {
                firing: found >= threshold,
                value: found,
                threshold,
                severity: if level == "error" { "error" } else { "warning" },
                title: format!("{name}: {found} {level}s (threshold {threshold})"),
            }
        }
        "success_rate_drop" => {
            let all = ["_any_".to_owned()];
            let total = count(&all, None);
            let success = count(&all, Some("success"));
            let rate = if total > 0.0 {
                success * 100.0 / total
            } else {
                100.0
            };
            let threshold = rule.threshold.unwrap_or(90.0);
            Finding {
                firing: total >= rule.min_sample_size as f64 && rate < threshold,
                value: (rate * 100.0).round() / 100.0,
                threshold,
                severity: "error",
                title: format!("{name}: success rate {rate:.1}% (threshold {threshold}%)"),
            }
        }
        "silence" => {
            let seen = count(&scope("_any_"), None);
            Finding {
                firing: seen == 0.0,
                value: seen,
                threshold: 0.0,
                severity: "warning",
                title: format!("{name}: no events in the window"),
            }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cell(level: &str, code: &str, count: i64) -> Cell {
        Cell {
            bucket_ms: 0,
            use_case_id: "uc".into(),
            use_case_type: "inbound".into(),
            level: level.into(),
            code: code.into(),
            count,
        }
    }

    fn rule(kind: &str, extra: Value) -> (Settings, Rule) {
        let mut rule = json!({"type": kind, "enabled": true});
        if let (Some(rule), Some(extra)) = (rule.as_object_mut(), extra.as_object()) {
            rule.extend(extra.clone());
        }
        let integration =
            json!({"settings": {"notifications": {"enabled": true, "rules": [rule]}}});
        let settings = settings(integration.as_object().expect("object")).expect("settings");
        let rule = settings.rules[0].clone();
        (settings, rule)
    }

    #[test]
    fn windows_and_periods_are_read() {
        assert_eq!(duration_ms("15m"), Some(900_000));
        assert_eq!(duration_ms("24h"), Some(86_400_000));
        assert_eq!(duration_ms("0m"), None);
        assert_eq!(duration_ms("5 minutes"), None);
    }

    #[test]
    fn thresholds_fire_at_the_threshold() {
        let (s, r) = rule("error_threshold", json!({"threshold": 3}));
        let cells = [cell("error", "MAPPING_ERROR", 2), cell("success", "", 10)];
        assert!(!evaluate(&s, &r, &cells).expect("finding").firing);
        let cells = [cell("error", "MAPPING_ERROR", 3)];
        assert!(evaluate(&s, &r, &cells).expect("finding").firing);
        // `auto` falls back.
        let (s, r) = rule(
            "error_threshold",
            json!({"threshold": "auto", "fallbackThreshold": 1}),
        );
        assert!(
            evaluate(&s, &r, &[cell("error", "X", 1)])
                .expect("finding")
                .firing
        );
    }

    #[test]
    fn codes_scope_what_counts() {
        let (s, r) = rule("critical_error", json!({"codes": ["HTTP_502"]}));
        assert!(
            !evaluate(&s, &r, &[cell("error", "MAPPING_ERROR", 5)])
                .expect("f")
                .firing
        );
        assert!(
            evaluate(&s, &r, &[cell("error", "HTTP_502", 1)])
                .expect("f")
                .firing
        );
    }

    #[test]
    fn a_success_rate_needs_its_sample() {
        let (s, r) = rule(
            "success_rate_drop",
            json!({"threshold": 90, "minSampleSize": 10}),
        );
        assert!(
            !evaluate(&s, &r, &[cell("error", "X", 5)])
                .expect("f")
                .firing
        );
        let f = evaluate(&s, &r, &[cell("error", "X", 5), cell("success", "", 15)]).expect("f");
        assert!(f.firing);
        assert_eq!(f.value, 75.0);
    }

    #[test]
    fn silence_fires_on_nothing() {
        let (s, r) = rule("silence", json!({}));
        assert!(evaluate(&s, &r, &[]).expect("f").firing);
        assert!(
            !evaluate(&s, &r, &[cell("skipped", "", 1)])
                .expect("f")
                .firing
        );
        let (s, r) = rule("recovery", json!({}));
        assert_eq!(evaluate(&s, &r, &[]), None);
    }
}

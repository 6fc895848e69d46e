//! `/healthz`, `/readyz` and `/metrics`, served by every role.
//!
//! Liveness means the process answers; readiness means every registered check (configuration
//! caught up, consumers started, …) has reported ready, so Kubernetes sends no traffic to a
//! process that would answer from a stale configuration.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::metrics::Metrics;

/// The readiness checks of a process.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Arc<Mutex<BTreeMap<String, bool>>>,
    /// Why a check is not ready, when its owner said (`/readyz` shows it).
    reasons: Arc<Mutex<BTreeMap<String, String>>>,
}

/// One readiness check; starts not ready.
#[derive(Clone)]
pub struct ReadyFlag {
    name: String,
    readiness: Readiness,
}

impl ReadyFlag {
    /// Reports this check ready or not.
    pub fn set(&self, ready: bool) {
        if let Ok(mut checks) = self.readiness.checks.lock() {
            checks.insert(self.name.clone(), ready);
        }
        if let Ok(mut reasons) = self.readiness.reasons.lock() {
            reasons.remove(&self.name);
        }
    }

    /// Reports this check not ready, saying why.
    pub fn unready(&self, reason: impl Into<String>) {
        self.set(false);
        if let Ok(mut reasons) = self.readiness.reasons.lock() {
            reasons.insert(self.name.clone(), reason.into());
        }
    }
}

impl Readiness {
    /// No checks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a check, not ready until its flag says so.
    pub fn flag(&self, name: impl Into<String>) -> ReadyFlag {
        let flag = ReadyFlag {
            name: name.into(),
            readiness: self.clone(),
        };
        flag.set(false);
        flag
    }

    /// Every check and its state.
    pub fn checks(&self) -> BTreeMap<String, bool> {
        self.checks.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Why checks are not ready, for those whose owner said.
    pub fn reasons(&self) -> BTreeMap<String, String> {
        self.reasons.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Whether every check is ready.
    pub fn is_ready(&self) -> bool {
        self.checks().values().all(|ready| *ready)
    }
}

/// Adds `/healthz`, `/readyz` and `/metrics`: the routes of an operational listener. Needs
/// `Readiness` and `Metrics` as app data.
pub fn routes(cfg: &mut web::ServiceConfig) {
    probe_routes(cfg);
    cfg.route("/metrics", web::get().to(metrics));
}

/// Adds `/healthz` and `/readyz` only: the probes every listener answers (a public API listener
/// serves `/metrics` behind the admin token, or not at all). Needs `Readiness` as app data.
pub fn probe_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
}

/// The `/metrics` answer: the registry in the Prometheus text format.
pub fn metrics_page(metrics: &Metrics) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics.encode())
}

/// `erp_ready{role}`: 1 while every readiness check of the process passes, else 0. Read from
/// the checks at each scrape, so it can never disagree with `/readyz`.
#[derive(Clone)]
pub struct ReadyGauge {
    role: String,
    readiness: Readiness,
    gauge: prometheus::IntGaugeVec,
}

impl ReadyGauge {
    /// Exports the readiness of `role` in `metrics`.
    pub fn export(metrics: &Metrics, readiness: &Readiness, role: &str) {
        let gauge = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "erp_ready",
                "1 while every readiness check of the process passes (as /readyz), else 0",
            ),
            &["role"],
        )
        .expect("static metric definition");
        metrics.register(&Self {
            role: role.to_owned(),
            readiness: readiness.clone(),
            gauge,
        });
    }
}

impl prometheus::core::Collector for ReadyGauge {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.gauge
            .with_label_values(&[self.role.as_str()])
            .set(i64::from(self.readiness.is_ready()));
        self.gauge.collect()
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn readyz(readiness: web::Data<Readiness>) -> HttpResponse {
    let checks = readiness.checks();
    let ready = checks.values().all(|ready| *ready);
    let mut body = json!({"status": if ready { "ready" } else { "not ready" }, "checks": checks});
    let reasons = readiness.reasons();
    if !reasons.is_empty() {
        body["reasons"] = json!(reasons);
    }
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics(metrics: web::Data<Metrics>) -> HttpResponse {
    metrics_page(&metrics)
}

/// Serves only the operational routes (`/metrics`, `/healthz`, `/readyz`): the listener of the
/// worker roles, and the `--metrics-listen` listener of the HTTP roles.
pub fn serve_ops(
    listen: &str,
    metrics: Metrics,
    readiness: Readiness,
) -> std::io::Result<(std::net::SocketAddr, actix_web::dev::Server)> {
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(web::Data::new(metrics.clone()))
            .app_data(web::Data::new(readiness.clone()))
            .configure(routes)
    })
    .workers(1)
    .disable_signals()
    .bind(listen)?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| std::io::Error::other("listener has no address"))?;
    Ok((addr, server.run()))
}

//! The metrics every HTTP service of a process shares.

use prometheus::{IntCounterVec, Opts};

use erp_runtime::Metrics;

/// Counters of the HTTP conventions: requests refused before their handler, requests answered.
#[derive(Clone)]
pub struct HttpMetrics {
    /// API requests refused before their handler, by code (`UNAUTHORIZED`, `FORBIDDEN`,
    /// `RATE_LIMITED`).
    pub denied: IntCounterVec,
    /// `erp_http_requests_total{service,status}`: requests answered, by service and status.
    pub requests: IntCounterVec,
}

impl HttpMetrics {
    /// Creates the collectors and registers them.
    pub fn new(metrics: &Metrics) -> Self {
        let denied = metrics.shared("erp_api_denied_requests_total", || {
            IntCounterVec::new(
                Opts::new(
                    "erp_api_denied_requests_total",
                    "API requests refused by authentication, permission or rate limit, by code",
                ),
                &["code"],
            )
            .expect("static metric definition")
        });
        let requests = metrics.shared("erp_http_requests_total", || {
            IntCounterVec::new(
                Opts::new(
                    "erp_http_requests_total",
                    "HTTP requests answered, by service (ingest, api) and status code",
                ),
                &["service", "status"],
            )
            .expect("static metric definition")
        });
        Self { denied, requests }
    }

    /// Counts one answered request.
    pub fn answered(&self, service: &str, status: actix_web::http::StatusCode) {
        self.requests
            .with_label_values(&[service, status.as_str()])
            .inc();
    }
}

/// The service a request path belongs to on a listener that serves both (`standalone`): the
/// ingest's routes (`erp_ingest::routes`) are `ingest`, everything else (control plane, probes,
/// unknown paths) is `api`.
pub fn service_of_path(path: &str) -> &'static str {
    const INGEST: [&str; 4] = [
        "/v1/erp/updates/",
        "/v2/erp/updates/",
        "/v3/erp/updates/",
        "/v1/events",
    ];
    if INGEST
        .iter()
        .any(|prefix| path.starts_with(prefix) && (prefix.ends_with('/') || path == *prefix))
    {
        "ingest"
    } else {
        "api"
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_belong_to_their_service() {
        use super::service_of_path;
        assert_eq!(service_of_path("/v3/erp/updates/events"), "ingest");
        assert_eq!(
            service_of_path("/v1/erp/updates/mapping_simulation"),
            "ingest"
        );
        assert_eq!(service_of_path("/v1/events"), "ingest");
        assert_eq!(service_of_path("/v1/events/x"), "api");
        assert_eq!(service_of_path("/v1/integrations"), "api");
        assert_eq!(service_of_path("/healthz"), "api");
    }
}

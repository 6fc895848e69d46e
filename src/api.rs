//! The HTTP server of the API role: ingest, configuration and operational routes on one
//! listener.

use std::net::SocketAddr;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};

use erp_ingest::ApiState;
use erp_runtime::{Metrics, Readiness, health};

/// Binds the API to `listen`. Returns the bound address (useful with port 0) and the server to
/// run.
pub fn server(
    listen: &str,
    state: web::Data<ApiState>,
    metrics: Metrics,
    readiness: Readiness,
) -> std::io::Result<(SocketAddr, Server)> {
    let metrics = web::Data::new(metrics);
    let readiness = web::Data::new(readiness);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(metrics.clone())
            .app_data(readiness.clone())
            .configure(erp_ingest::routes)
            .configure(health::routes)
            .default_service(web::to(erp_ingest::not_found))
    })
    .workers(2)
    .disable_signals()
    .shutdown_timeout(30)
    .bind(listen)?;
    let address = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| std::io::Error::other("listener has no address"))?;
    Ok((address, server.run()))
}

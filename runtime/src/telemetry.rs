//! Structured logs through `tracing`.

use tracing_subscriber::EnvFilter;

use crate::settings::{LogArgs, LogFormat};

/// Installs the global subscriber. A second call (several roles, or tests) keeps the first.
pub fn init(args: &LogArgs) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&args.log))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match args.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

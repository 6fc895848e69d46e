//! The ops CLI: `erp-toolkit replay …`, `events …`, `groups …`, `dlq …` and `blueprint …`,
//! speaking to the control plane API with a token, for the daily questions of integration
//! support ("what happened to this event, and re-run that window", "how far behind is the
//! dispatcher", "send the dead letters again", "install this integration in the next
//! organisation").
//!
//! Output is a readable table, or `--output json` (the API's answer as it came) for scripts.
//! Exit codes an operator can rely on: 0 done, 1 the API refused the request (4xx), 3 the API
//! could not be reached or failed (5xx), 4 a replay that ended `failed` or `cancelled`; clap
//! answers 2 for a wrong command line.

pub mod blueprint;
pub mod client;
pub mod dlq;
pub mod events;
pub mod groups;
pub mod replay;

use clap::{Args, ValueEnum};

/// How to reach the API, and how to print.
#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// The control plane's base URL.
    #[arg(
        long,
        env = "ERP_TOOLKIT_API_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub api: String,
    /// A token of the organisation (view for reading, manage for replays).
    #[arg(long, env = "ERP_TOOLKIT_TOKEN", hide_env_values = true)]
    pub token: String,
    /// `table` for people, `json` for scripts.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Output format.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

/// What a command ends with: the process's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    Refused = 1,
    Unavailable = 3,
    Unfinished = 4,
}

/// Prints `value` as JSON (for `--output json`).
pub fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

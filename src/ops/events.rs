//! `erp-toolkit events search|trace`: the monitoring v2 routes (docs/operations.md, "The
//! monitoring store").

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::client::{Client, Failure};
use super::{Connection, Exit, Output, print_json};

/// `erp-toolkit events …`
#[derive(Args, Debug, Clone)]
pub struct EventsArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// The integration.
    #[arg(long)]
    pub integration: String,
    #[command(subcommand)]
    pub command: EventsCommand,
}

/// What to ask.
#[derive(Subcommand, Debug, Clone)]
pub enum EventsCommand {
    /// Spans newest first, filtered.
    Search {
        #[arg(long)]
        level: Option<String>,
        #[arg(long)]
        code: Option<String>,
        #[arg(long)]
        event_id: Option<String>,
        #[arg(long)]
        correlation_id: Option<String>,
        #[arg(long)]
        use_case: Option<String>,
        /// RFC 3339.
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339.
        #[arg(long)]
        to: Option<String>,
        /// Most spans, 1 to 100.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Every span of one correlation id, across ingest, processor, dispatcher and partners.
    Trace { correlation_id: String },
}

/// Runs the command; the exit code.
pub async fn run(args: EventsArgs) -> Exit {
    let client = Client::new(&args.connection);
    let base = format!("/v2/integrations/{}/monitoring", args.integration);
    let output = args.connection.output;
    let outcome: Result<Value, Failure> = match args.command {
        EventsCommand::Search {
            level,
            code,
            event_id,
            correlation_id,
            use_case,
            from,
            to,
            limit,
        } => {
            let mut body = json!({"limit": limit});
            for (key, value) in [
                ("level", level),
                ("code", code),
                ("event_id", event_id),
                ("correlation_id", correlation_id),
                ("use_case_id", use_case),
                ("from_date", from),
                ("to_date", to),
            ] {
                if let Some(value) = value {
                    body[key] = json!(value);
                }
            }
            client
                .post(&format!("{base}/events"), &body)
                .await
                .map(|page| {
                    if output == Output::Table {
                        spans(page["data"].as_array().map(Vec::as_slice).unwrap_or(&[]));
                        if page["has_more"] == true {
                            println!(
                                "… more (narrow the filters or use --output json and the cursor)"
                            );
                        }
                    }
                    page
                })
        }
        EventsCommand::Trace { correlation_id } => client
            .get(&format!("{base}/traces/{correlation_id}"))
            .await
            .map(|trace| {
                if output == Output::Table {
                    println!(
                        "trace {correlation_id}: {}, {} spans{}",
                        trace["status"].as_str().unwrap_or_default(),
                        trace["span_count"],
                        if trace["truncated"] == true {
                            " (truncated)"
                        } else {
                            ""
                        }
                    );
                    spans(trace["spans"].as_array().map(Vec::as_slice).unwrap_or(&[]));
                }
                trace
            }),
    };
    match outcome {
        Ok(answer) => {
            if output == Output::Json {
                print_json(&answer);
            }
            Exit::Ok
        }
        Err(Failure { exit, message }) => {
            eprintln!("erp-toolkit events: {message}");
            exit
        }
    }
}

fn spans(spans: &[Value]) {
    println!(
        "{:<24}  {:<8}  {:<26}  {:<28}  message",
        "created_at", "level", "code", "event_id"
    );
    for span in spans {
        println!(
            "{:<24}  {:<8}  {:<26}  {:<28}  {}",
            span["created_at"].as_str().unwrap_or_default(),
            span["level"].as_str().unwrap_or_default(),
            span["code"].as_str().unwrap_or_default(),
            span["event_id"].as_str().unwrap_or_default(),
            span["message"].as_str().unwrap_or_default()
        );
    }
}

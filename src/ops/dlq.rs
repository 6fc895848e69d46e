//! `erp-toolkit dlq list|redrive`: the dead letters of an integration's outbound poll queue
//! (docs/poll-queue.md), through the API's DLQ routes, page by page.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::client::{Client, Failure};
use super::{Connection, Exit, Output, print_json};

/// Most ids one redrive request carries (the API's limit).
const REDRIVE_BATCH: usize = 100;

/// `erp-toolkit dlq …`
#[derive(Args, Debug, Clone)]
pub struct DlqArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// The integration whose poll queue's dead letters are read.
    #[arg(long)]
    pub integration: String,
    #[command(subcommand)]
    pub command: DlqCommand,
}

/// The DLQ commands.
#[derive(Subcommand, Debug, Clone)]
pub enum DlqCommand {
    /// The dead letters, oldest first (one page, or `--all`).
    List {
        /// Entries per page (1 to 100).
        #[arg(long, default_value_t = 25)]
        limit: u32,
        /// Follow `next_token` to the end.
        #[arg(long)]
        all: bool,
    },
    /// Puts dead letters back into the queue (each gets a new message id).
    Redrive {
        /// A dead letter's id (repeatable).
        #[arg(long = "id", required_unless_present = "all")]
        ids: Vec<String>,
        /// Every dead letter listed right now.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
}

/// Runs the command; the exit code (1 also when a redriven id was not found).
pub async fn run(args: DlqArgs) -> Exit {
    let client = Client::new(&args.connection);
    let base = format!(
        "/v1/integrations/{}/outbound/messages/dlq",
        args.integration
    );
    let output = args.connection.output;
    let outcome = match args.command {
        DlqCommand::List { limit, all } => list(&client, &base, limit, all)
            .await
            .map(|items| show_items(&items, output)),
        DlqCommand::Redrive { ids, all } => {
            let ids = if all {
                list(&client, &base, 100, true).await.map(|items| {
                    items
                        .iter()
                        .filter_map(|i| i["id"].as_str().map(str::to_owned))
                        .collect()
                })
            } else {
                Ok(ids)
            };
            match ids {
                Ok(ids) => redrive(&client, &base, &ids)
                    .await
                    .map(|r| show_results(&r, output)),
                Err(failure) => Err(failure),
            }
        }
    };
    match outcome {
        Ok(exit) => exit,
        Err(Failure { exit, message }) => {
            eprintln!("erp-toolkit dlq: {message}");
            exit
        }
    }
}

/// The entries of one page, or of every page with `all`.
async fn list(client: &Client, base: &str, limit: u32, all: bool) -> Result<Vec<Value>, Failure> {
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let query = match &token {
            Some(token) => format!("?limit={limit}&next_token={token}"),
            None => format!("?limit={limit}"),
        };
        let page = client.get(&format!("{base}{query}")).await?;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        token = page["next_token"].as_str().map(str::to_owned);
        if !all || token.is_none() {
            return Ok(items);
        }
    }
}

/// Redrives `ids` in batches the API accepts; every result.
async fn redrive(client: &Client, base: &str, ids: &[String]) -> Result<Vec<Value>, Failure> {
    let mut results = Vec::new();
    for chunk in ids.chunks(REDRIVE_BATCH) {
        let answer = client
            .post(&format!("{base}/redrive"), &json!({ "ids": chunk }))
            .await?;
        results.extend(answer["results"].as_array().cloned().unwrap_or_default());
    }
    Ok(results)
}

fn show_items(items: &[Value], output: Output) -> Exit {
    if output == Output::Json {
        print_json(&json!({ "items": items }));
        return Exit::Ok;
    }
    println!(
        "{:<40}  {:<28}  {:<24}  {:>8}  reason",
        "id", "event", "dead-lettered at", "attempts"
    );
    for item in items {
        println!(
            "{:<40}  {:<28}  {:<24}  {:>8}  {}",
            item["id"].as_str().unwrap_or_default(),
            item["event_name"].as_str().unwrap_or_default(),
            item["dead_lettered_at"].as_str().unwrap_or_default(),
            item["delivery_attempts"],
            item["reason"].as_str().unwrap_or_default()
        );
    }
    Exit::Ok
}

fn show_results(results: &[Value], output: Output) -> Exit {
    if output == Output::Json {
        print_json(&json!({ "results": results }));
    } else {
        for result in results {
            println!(
                "{}: {}",
                result["id"].as_str().unwrap_or_default(),
                result["status"].as_str().unwrap_or_default()
            );
        }
    }
    if results.iter().all(|r| r["status"] == "redriven") {
        Exit::Ok
    } else {
        Exit::Refused
    }
}

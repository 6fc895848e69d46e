//! `erp-toolkit replay plan|run|watch|cancel`: the replay routes of the API
//! (docs/operations.md, "Replaying a window of inbound events").

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::client::{Client, Failure};
use super::{Connection, Exit, Output, print_json};

/// `erp-toolkit replay …`
#[derive(Args, Debug, Clone)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// The integration whose inbound events are replayed.
    #[arg(long)]
    pub integration: String,
    #[command(subcommand)]
    pub command: ReplayCommand,
}

/// The replay steps.
#[derive(Subcommand, Debug, Clone)]
pub enum ReplayCommand {
    /// The dry run: offsets and records a window covers (nothing is re-published).
    Plan {
        /// Start of the window (RFC 3339).
        #[arg(long)]
        from: Option<String>,
        /// End of the window (RFC 3339, inclusive); default now.
        #[arg(long)]
        to: Option<String>,
        /// Instead of a window: ranges `PARTITION:START-END` (end exclusive), repeatable.
        #[arg(long = "offsets", value_parser = parse_range)]
        offsets: Vec<(i32, i64, i64)>,
        /// Only events routed to this use case.
        #[arg(long)]
        use_case: Option<String>,
        /// `dlq`: re-publish the inbound events of this integration's dead letters in the
        /// window instead (after a mapping fix).
        #[arg(long, default_value = "inbound", value_parser = ["inbound", "dlq"])]
        source: String,
        /// With `--source dlq`: only dead letters with this code (repeatable).
        #[arg(long = "code")]
        codes: Vec<String>,
    },
    /// Runs a plan; with `--watch`, follows it to its end.
    Run {
        /// The plan's id (from `replay plan`).
        #[arg(long)]
        plan: String,
        #[arg(long)]
        watch: bool,
    },
    /// Follows a running replay to its end with a progress bar.
    Watch { task: String },
    /// Stops a running replay.
    Cancel { task: String },
}

/// `PARTITION:START-END`.
fn parse_range(text: &str) -> Result<(i32, i64, i64), String> {
    let bad = || format!("{text:?} is not PARTITION:START-END");
    let (partition, range) = text.split_once(':').ok_or_else(bad)?;
    let (start, end) = range.split_once('-').ok_or_else(bad)?;
    Ok((
        partition.parse().map_err(|_| bad())?,
        start.parse().map_err(|_| bad())?,
        end.parse().map_err(|_| bad())?,
    ))
}

/// Runs the command; the exit code.
pub async fn run(args: ReplayArgs) -> Exit {
    let client = Client::new(&args.connection);
    let base = format!("/v1/integrations/{}/replays", args.integration);
    let output = args.connection.output;
    let outcome = match args.command {
        ReplayCommand::Plan {
            from,
            to,
            offsets,
            use_case,
            source,
            codes,
        } => {
            let mut body = json!({ "source": source });
            if !codes.is_empty() {
                body["codes"] = json!(codes);
            }
            if let Some(from) = from {
                body["from_date"] = json!(from);
            }
            if let Some(to) = to {
                body["to_date"] = json!(to);
            }
            if !offsets.is_empty() {
                body["offsets"] = offsets
                    .iter()
                    .map(|(p, s, e)| (p.to_string(), json!({"start": s, "end": e})))
                    .collect::<serde_json::Map<_, _>>()
                    .into();
            }
            if let Some(use_case) = use_case {
                body["use_case_id"] = json!(use_case);
            }
            client
                .post(&format!("{base}/plan"), &body)
                .await
                .map(|plan| show_plan(&plan, output))
        }
        ReplayCommand::Run { plan, watch } => {
            match client.post(&base, &json!({"plan_id": plan})).await {
                Ok(task) if watch => {
                    let id = task["task_id"].as_str().unwrap_or_default().to_owned();
                    follow(&client, &base, &id, output).await
                }
                Ok(task) => Ok(show_task(&task, output)),
                Err(failure) => Err(failure),
            }
        }
        ReplayCommand::Watch { task } => follow(&client, &base, &task, output).await,
        ReplayCommand::Cancel { task } => client
            .call(reqwest::Method::DELETE, &format!("{base}/{task}"), None)
            .await
            .map(|task| show_task(&task, output)),
    };
    match outcome {
        Ok(exit) => exit,
        Err(Failure { exit, message }) => {
            eprintln!("erp-toolkit replay: {message}");
            exit
        }
    }
}

fn show_plan(plan: &Value, output: Output) -> Exit {
    if output == Output::Json {
        print_json(plan);
        return Exit::Ok;
    }
    println!("plan {}", plan["plan_id"].as_str().unwrap_or_default());
    println!(
        "{:>9}  {:>12}  {:>12}  {:>9}",
        "partition", "start", "end", "records"
    );
    for p in plan["partitions"].as_array().into_iter().flatten() {
        println!(
            "{:>9}  {:>12}  {:>12}  {:>9}",
            p["partition"], p["start_offset"], p["end_offset"], p["records"]
        );
    }
    println!(
        "{} records, {} selected{}; run it with: erp-toolkit replay --integration … run --plan {}",
        plan["records"],
        plan["selected"],
        if plan["selected_counted"] == false {
            " (at most)"
        } else {
            ""
        },
        plan["plan_id"].as_str().unwrap_or_default()
    );
    Exit::Ok
}

fn show_task(task: &Value, output: Output) -> Exit {
    if output == Output::Json {
        print_json(task);
    } else {
        println!(
            "replay {}: {} — {} of {} re-published, {} failed",
            task["task_id"].as_str().unwrap_or_default(),
            task["status"].as_str().unwrap_or_default(),
            task["done"],
            task["total"],
            task["failed"]
        );
    }
    match task["status"].as_str() {
        Some("failed" | "cancelled") => Exit::Unfinished,
        _ => Exit::Ok,
    }
}

/// Polls the task until it ends, with a progress bar (tables) or silently (JSON).
async fn follow(client: &Client, base: &str, task: &str, output: Output) -> Result<Exit, Failure> {
    let bar = (output == Output::Table).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} re-published, {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    loop {
        let progress = client.get(&format!("{base}/{task}")).await?;
        if let Some(bar) = &bar {
            bar.set_length(progress["total"].as_u64().unwrap_or(0));
            bar.set_position(progress["done"].as_u64().unwrap_or(0));
            bar.set_message(format!("{}/s", progress["rate_per_second"]));
        }
        if progress["status"] != "running" {
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            return Ok(show_task(&progress, output));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

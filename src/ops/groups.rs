//! `erp-toolkit groups list|show|plan-reset|reset`: consumer-group lag and resets through the
//! API (deployment admin token; docs/operations.md, "Consumer groups: lag and resets").

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use super::client::{Client, Failure};
use super::{Connection, Exit, Output, print_json};

/// `erp-toolkit groups …`
#[derive(Args, Debug, Clone)]
pub struct GroupsArgs {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub command: GroupsCommand,
}

/// Where a reset moves a group.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum To {
    Earliest,
    Latest,
    Timestamp,
    Offset,
}

/// The group commands.
#[derive(Subcommand, Debug, Clone)]
pub enum GroupsCommand {
    /// Every consumer group with its lag in records and seconds.
    List,
    /// One group's lag per partition.
    Show {
        group: String,
        /// Only these topics (comma-separated).
        #[arg(long)]
        topics: Option<String>,
    },
    /// The dry run of a reset: per partition the current and target offsets (nothing moves).
    PlanReset {
        group: String,
        #[arg(long, value_enum)]
        to: To,
        /// With `--to timestamp` (RFC 3339).
        #[arg(long)]
        timestamp: Option<String>,
        /// With `--to offset`.
        #[arg(long)]
        offset: Option<i64>,
        /// Only these topics (repeatable).
        #[arg(long = "topic")]
        topics: Vec<String>,
        /// Only these partitions (repeatable).
        #[arg(long = "partition")]
        partitions: Vec<i32>,
    },
    /// Applies a plan (refused while the group has active members).
    Reset {
        group: String,
        #[arg(long)]
        plan: String,
        /// The broker cannot describe groups (the embedded broker): the operator confirms the
        /// group's role is stopped.
        #[arg(long)]
        assume_stopped: bool,
    },
}

/// Runs the command; the exit code.
pub async fn run(args: GroupsArgs) -> Exit {
    let client = Client::new(&args.connection);
    let output = args.connection.output;
    let base = "/v1/ops/consumer-groups";
    let outcome = match args.command {
        GroupsCommand::List => client.get(base).await.map(|v| show_list(&v, output)),
        GroupsCommand::Show { group, topics } => {
            let query = topics.map(|t| format!("?topics={t}")).unwrap_or_default();
            client
                .get(&format!("{base}/{group}{query}"))
                .await
                .map(|v| show_group(&v, output))
        }
        GroupsCommand::PlanReset {
            group,
            to,
            timestamp,
            offset,
            topics,
            partitions,
        } => {
            let to = match to {
                To::Earliest => "earliest",
                To::Latest => "latest",
                To::Timestamp => "timestamp",
                To::Offset => "offset",
            };
            let mut body = json!({ "to": to });
            if let Some(timestamp) = timestamp {
                body["timestamp"] = json!(timestamp);
            }
            if let Some(offset) = offset {
                body["offset"] = json!(offset);
            }
            if !topics.is_empty() {
                body["topics"] = json!(topics);
            }
            if !partitions.is_empty() {
                body["partitions"] = json!(partitions);
            }
            client
                .post(&format!("{base}/{group}/reset/plan"), &body)
                .await
                .map(|v| show_plan(&v, output))
        }
        GroupsCommand::Reset {
            group,
            plan,
            assume_stopped,
        } => client
            .post(
                &format!("{base}/{group}/reset"),
                &json!({"plan_id": plan, "assume_stopped": assume_stopped}),
            )
            .await
            .map(|v| show_applied(&v, output)),
    };
    match outcome {
        Ok(exit) => exit,
        Err(Failure { exit, message }) => {
            eprintln!("erp-toolkit groups: {message}");
            exit
        }
    }
}

/// A JSON number or `unknown`.
fn known(value: &Value) -> String {
    if value.is_null() {
        "unknown".into()
    } else {
        value.to_string()
    }
}

fn show_list(list: &Value, output: Output) -> Exit {
    if output == Output::Json {
        print_json(list);
        return Exit::Ok;
    }
    println!(
        "{:<34}  {:<10}  {:>10}  {:>12}  {:>8}",
        "group", "role", "lag", "lag seconds", "members"
    );
    for g in list["groups"].as_array().into_iter().flatten() {
        println!(
            "{:<34}  {:<10}  {:>10}  {:>12}  {:>8}",
            g["group_id"].as_str().unwrap_or_default(),
            g["role"].as_str().unwrap_or_default(),
            known(&g["lag_records"]),
            known(&g["lag_seconds"]),
            known(&g["members"]),
        );
    }
    Exit::Ok
}

fn show_group(group: &Value, output: Output) -> Exit {
    if output == Output::Json {
        print_json(group);
        return Exit::Ok;
    }
    println!(
        "{} ({}): state {}, members {}",
        group["group_id"].as_str().unwrap_or_default(),
        group["role"].as_str().unwrap_or_default(),
        known(&group["state"]),
        known(&group["members"])
    );
    println!(
        "{:<24}  {:>9}  {:>10}  {:>10}  {:>10}  {:>8}  {:>10}",
        "topic", "partition", "committed", "log start", "log end", "lag", "lag secs"
    );
    for p in group["partitions"].as_array().into_iter().flatten() {
        println!(
            "{:<24}  {:>9}  {:>10}  {:>10}  {:>10}  {:>8}  {:>10}",
            p["topic"].as_str().unwrap_or_default(),
            p["partition"],
            known(&p["committed_offset"]),
            p["log_start_offset"],
            p["log_end_offset"],
            p["lag_records"],
            known(&p["lag_seconds"])
        );
    }
    Exit::Ok
}

fn show_plan(plan: &Value, output: Output) -> Exit {
    if output == Output::Json {
        print_json(plan);
        return Exit::Ok;
    }
    println!(
        "plan {} for {} (to {})",
        plan["plan_id"].as_str().unwrap_or_default(),
        plan["group_id"].as_str().unwrap_or_default(),
        plan["to"].as_str().unwrap_or_default()
    );
    println!(
        "{:<24}  {:>9}  {:>10}  {:>10}  {:>9}  {:>9}",
        "topic", "partition", "current", "target", "re-read", "skipped"
    );
    for p in plan["partitions"].as_array().into_iter().flatten() {
        println!(
            "{:<24}  {:>9}  {:>10}  {:>10}  {:>9}  {:>9}",
            p["topic"].as_str().unwrap_or_default(),
            p["partition"],
            known(&p["current_offset"]),
            p["target_offset"],
            p["records_to_reread"],
            p["records_to_skip"]
        );
    }
    println!(
        "{} records to read again, {} to skip; apply with: erp-toolkit groups reset {} --plan {}",
        plan["records_to_reread"],
        plan["records_to_skip"],
        plan["group_id"].as_str().unwrap_or_default(),
        plan["plan_id"].as_str().unwrap_or_default()
    );
    Exit::Ok
}

fn show_applied(applied: &Value, output: Output) -> Exit {
    if output == Output::Json {
        print_json(applied);
        return Exit::Ok;
    }
    for p in applied["partitions"].as_array().into_iter().flatten() {
        println!(
            "{}/{}: {} -> {}",
            p["topic"].as_str().unwrap_or_default(),
            p["partition"],
            known(&p["previous_offset"]),
            known(&p["committed_offset"])
        );
    }
    println!(
        "group {} reset",
        applied["group_id"].as_str().unwrap_or_default()
    );
    Exit::Ok
}

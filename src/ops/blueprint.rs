//! `erp-toolkit blueprint export|plan|apply`: move an integration between organisations or
//! deployments (docs/blueprints.md). `export` writes the document, `plan` shows what installing
//! it would do, `apply` installs it as one configuration event.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::client::{Client, Failure};
use super::{Connection, Exit, Output, print_json};

/// `erp-toolkit blueprint …`
#[derive(Args, Debug, Clone)]
pub struct BlueprintArgs {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub command: BlueprintCommand,
}

/// What to do.
#[derive(Subcommand, Debug, Clone)]
pub enum BlueprintCommand {
    /// Write an integration's blueprint (to stdout, or to --file).
    Export {
        /// The integration (of the token's organisation).
        #[arg(long)]
        integration: String,
        /// Where to write it.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Show what installing a blueprint into the token's organisation would do.
    Plan {
        /// The blueprint (`-`: stdin).
        #[arg(long)]
        file: PathBuf,
    },
    /// Install a blueprint into the token's organisation, all or nothing.
    Apply {
        /// The blueprint (`-`: stdin).
        #[arg(long)]
        file: PathBuf,
        /// The fingerprint of a plan: refuse when the organisation changed since.
        #[arg(long)]
        fingerprint: Option<String>,
    },
}

fn read(file: &PathBuf) -> Result<Value, Failure> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(file)
    }
    .map_err(|e| Failure {
        exit: Exit::Refused,
        message: format!("cannot read {}: {e}", file.display()),
    })?;
    serde_json::from_str(&text).map_err(|e| Failure {
        exit: Exit::Refused,
        message: format!("{} is not JSON: {e}", file.display()),
    })
}

/// Runs the command; the exit code.
pub async fn run(args: BlueprintArgs) -> Exit {
    let client = Client::new(&args.connection);
    let output = args.connection.output;
    let outcome: Result<Value, Failure> = match args.command {
        BlueprintCommand::Export { integration, file } => {
            match client
                .get(&format!("/v1/integrations/{integration}/blueprint"))
                .await
            {
                Ok(blueprint) => match file {
                    Some(file) => {
                        let text = serde_json::to_string_pretty(&blueprint)
                            .unwrap_or_else(|_| blueprint.to_string());
                        match std::fs::write(&file, text + "\n") {
                            Ok(()) => {
                                eprintln!("wrote {}", file.display());
                                Ok(Value::Null)
                            }
                            Err(e) => Err(Failure {
                                exit: Exit::Refused,
                                message: format!("cannot write {}: {e}", file.display()),
                            }),
                        }
                    }
                    None => {
                        print_json(&blueprint);
                        Ok(Value::Null)
                    }
                },
                Err(failure) => Err(failure),
            }
        }
        BlueprintCommand::Plan { file } => match read(&file) {
            Ok(blueprint) => {
                client
                    .post("/v1/blueprints/plan", &json!({"blueprint": blueprint}))
                    .await
            }
            Err(failure) => Err(failure),
        },
        BlueprintCommand::Apply { file, fingerprint } => match read(&file) {
            Ok(blueprint) => {
                let mut body = json!({"blueprint": blueprint});
                if let Some(fingerprint) = fingerprint {
                    body["fingerprint"] = json!(fingerprint);
                }
                client.post("/v1/blueprints/apply", &body).await
            }
            Err(failure) => Err(failure),
        },
    };
    match outcome {
        Ok(Value::Null) => Exit::Ok,
        Ok(plan) => {
            match output {
                Output::Json => print_json(&plan),
                Output::Table => table(&plan),
            }
            Exit::Ok
        }
        Err(Failure { exit, message }) => {
            eprintln!("erp-toolkit blueprint: {message}");
            exit
        }
    }
}

/// A plan (or an applied plan) for people.
fn table(plan: &Value) {
    println!("{:<14}  {:<40}  {:<10}  detail", "kind", "ref", "action");
    for object in plan["objects"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let detail = match (object["changes"].as_array(), object["reason"].as_str()) {
            (Some(changes), _) => changes
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            (None, Some(reason)) => reason.to_owned(),
            (None, None) if object["installed_disabled"] == true => "installed disabled".into(),
            (None, None) => String::new(),
        };
        println!(
            "{:<14}  {:<40}  {:<10}  {detail}",
            object["kind"].as_str().unwrap_or_default(),
            object["ref"].as_str().unwrap_or_default(),
            object["action"].as_str().unwrap_or_default(),
        );
    }
    for missing in plan["missing_environment"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        println!(
            "missing environment value: {} ({})",
            missing["name"].as_str().unwrap_or_default(),
            missing["type"].as_str().unwrap_or_default()
        );
    }
    for disabled in plan["disabled_endpoints"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let reasons: Vec<&str> = disabled["reasons"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        println!(
            "endpoint {} installed disabled: {}",
            disabled["webhook"].as_str().unwrap_or_default(),
            reasons.join("; ")
        );
    }
    if let Some(applied) = plan["applied"].as_bool() {
        println!(
            "{}",
            if applied {
                "applied as one configuration event"
            } else {
                "nothing to apply: the organisation already matches"
            }
        );
    } else {
        println!(
            "fingerprint: {}",
            plan["fingerprint"].as_str().unwrap_or_default()
        );
    }
}

//! gitops: a pull-based GitOps agent. CLI definition, dispatch, and the error-to-exit-code map.

mod apply;
mod checkout;
mod config;
mod exit;
mod git;
mod state;
mod status;
mod sync;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use time::OffsetDateTime;

use crate::config::{Options, Settings};
use crate::exit::{code_of, fail, Exit};

/// Pull-based GitOps for Linux machines: fetch one branch, run its entry point when it moves,
/// report what happened.
#[derive(Parser, Debug)]
#[command(name = "gitops", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    options: Options,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// One fetch–compare–apply pass, then exit (what gitops.service runs)
    Sync,
    /// What is applied, how the last pass ended, what is pending; exits 1 if the last pass failed
    Status {
        /// Print state.json's schema instead of the summary
        #[arg(long)]
        json: bool,
    },
    /// Carry out the reboot the repository asks for (not implemented yet)
    RebootPlan {
        /// Say what would happen without rebooting
        #[arg(long)]
        dry_run: bool,
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// Write and enable the systemd units and the env file (not implemented yet)
    InstallUnits {
        /// Install into this root instead of the running system (image builds)
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    let code = match run() {
        Ok(code) => code,
        Err(e) => {
            // `{:#}` keeps the chain on one line and never prints a backtrace, whatever
            // RUST_BACKTRACE says.
            eprintln!("gitops: error: {}", sync::one_line(&e));
            code_of(&e)
        }
    };
    ExitCode::from(i32::from(code) as u8)
}

/// clap's message, on the one line every other error gets.
fn usage_error(e: &clap::Error) -> anyhow::Error {
    let text = e.to_string();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("For more information") && !l.starts_with("Usage:")
        })
        .collect();
    let joined = lines.join(" ");
    let message = joined.strip_prefix("error: ").unwrap_or(&joined);
    fail(Exit::Usage, format!("{message} (see gitops --help)"))
}

fn run() -> anyhow::Result<Exit> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The env file sits below flags and the process environment, and clap reads the
    // environment: load it first, then parse once.
    config::load_env_file(config::config_flag(&args).as_deref())?;
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => return Err(usage_error(&e)),
    };
    let now = OffsetDateTime::now_utc;
    match cli.command {
        Command::Sync => {
            let settings = Settings::for_sync(&cli.options)?;
            sync::run(&settings, &now)?;
            Ok(Exit::Ok)
        }
        Command::Status { json } => status::run(&cli.options.state_dir, json, now()),
        Command::RebootPlan { .. } => {
            Err(fail(Exit::Internal, "reboot-plan is not implemented yet"))
        }
        Command::InstallUnits { .. } => {
            Err(fail(Exit::Internal, "install-units is not implemented yet"))
        }
    }
}

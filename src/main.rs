//! gitops: a pull-based GitOps agent. CLI definition, dispatch, and the error-to-exit-code map.

/// Print a line to stdout, ignoring a reader that has gone away (`gitops status | head`):
/// println! would panic there, and a pass must still get to record its outcome.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// The same for stderr, where the pass reports what it does: every line of ours goes through
/// here, which gives it its journal priority when stderr is the journal (report/journal.rs).
macro_rules! say {
    ($($t:tt)*) => {{
        $crate::report::journal::line(&format!($($t)*));
    }};
}

mod config;
mod docs;
mod exit;
mod files;
mod fleet;
mod git;
mod http;
mod install;
mod pass;
mod reboot;
mod redact;
mod report;
mod signals;
mod trigger;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use time::OffsetDateTime;

use crate::config::{Options, Settings};
use crate::exit::{code_of, fail, Exit};

/// Pull-based GitOps for Linux machines: fetch one branch, run its entry point when it moves,
/// report what happened.
#[derive(Parser, Debug)]
#[command(
    name = "gitops",
    version,
    about,
    propagate_version = true,
    arg_required_else_help = true
)]
struct Cli {
    /// Env file of KEY=VALUE lines, read as systemd's EnvironmentFile= reads it [default: /etc/gitops/gitops.env]
    #[arg(long, global = true, env = "GITOPS_CONFIG", value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// One fetch–compare–apply pass, then exit (what gitops.service runs)
    Sync(Options),
    /// What the next sync would do, doing nothing: the commits, files and entry point diff,
    /// the signature, health, suspension and reboot verdicts; exits 10 if it would apply
    Plan(pass::plan::Args),
    /// What is applied, how the last pass ended, what is pending; exits 1 if the last pass failed,
    /// a pass died while applying, or none ran within --max-age
    Status(report::status::Args),
    /// Check the notification destinations: `gitops notify --test` sends each a test event now
    /// and says what it answered (exits 0 only if all took it)
    Notify(report::notify::test::Args),
    /// The reboot the applied commit requests (.gitops/reboot), or --at TIME: print the plan
    /// and its reason; without --dry-run, carry it out (once per request, never in a loop)
    RebootPlan(reboot::act::Args),
    /// Hold applies back for --for (default --max-suspend) or until gitops resume: passes still
    /// fetch and report what they would apply, and run nothing from the repository
    Suspend(pass::suspend::SuspendArgs),
    /// End a suspension now: the next pass applies what was held back (exits 0 when none was)
    Resume(pass::suspend::ResumeArgs),
    /// Serve a forge's webhook on the socket systemd passes in (gitops-trigger.socket): an
    /// authenticated push starts a pass, and nothing else; exits when idle
    Trigger(trigger::options::Args),
    /// Write and enable the units and the env file, on a live system or into an image's root.
    /// The env file gets the settings given as flags here (--repo-url, --branch, --ssh-key, …)
    InstallUnits {
        /// The settings to write into the env file
        #[command(flatten)]
        options: Options,
        /// Install into this root instead of the running system (kickstart %post, Packer, debootstrap)
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: std::path::PathBuf,
        /// How the periodic pass runs
        #[arg(long, value_enum, default_value_t = install::Init::Systemd)]
        init: install::Init,
        /// On the running system, also reload systemd and start the timer now
        #[arg(long)]
        now: bool,
        /// Replace files an administrator edited (their diff is shown without --force)
        #[arg(long)]
        force: bool,
        /// Remove what install-units installed (and stop the timer on the running system)
        #[arg(long)]
        uninstall: bool,
        /// Print what would be written or removed, change nothing
        #[arg(long)]
        dry_run: bool,
        /// The systemctl program to run for --now and --uninstall
        #[arg(
            long,
            env = "GITOPS_SYSTEMCTL",
            value_name = "PROGRAM",
            default_value = "systemctl"
        )]
        systemctl: String,
        /// The webhook trigger (--trigger and its settings)
        #[command(flatten)]
        trigger: install::TriggerArgs,
    },
    /// Write the man pages and shell completions into DIR (packaging/build.sh runs it)
    #[command(hide = true)]
    GenerateDocs {
        #[arg(value_name = "DIR")]
        dir: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    // One line, never a backtrace, even with RUST_BACKTRACE=1: a panic is a bug to report, not
    // something an operator should have to read through.
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let what = what.split_whitespace().collect::<Vec<_>>().join(" ");
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        say!("gitops: internal error{place}: {what} (please report it)");
        // The documented code for an internal error, instead of the abort (and core dump,
        // which could hold credentials) that `panic = "abort"` would bring next.
        std::process::exit(70);
    }));
    let code = match run() {
        Ok(code) => code,
        Err(e) => {
            // `{:#}` keeps the chain on one line and never prints a backtrace, whatever
            // RUST_BACKTRACE says.
            say!("gitops: error: {}", pass::one_line(&e));
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

fn parse(args: &[std::ffi::OsString]) -> anyhow::Result<(Cli, clap::ArgMatches)> {
    let matches = match Cli::command().try_get_matches_from(args) {
        Ok(matches) => matches,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        // `gitops` alone (or with options but no subcommand, GITOPS_* variables count as
        // options): the whole help, as clap formats it, on stderr with exit 2.
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                    | clap::error::ErrorKind::MissingSubcommand
            ) =>
        {
            say!("{}", Cli::command().render_help());
            std::process::exit(i32::from(Exit::Usage));
        }
        Err(e) => return Err(usage_error(&blame_the_variable(e, args))),
    };
    let cli = Cli::from_arg_matches(&matches).map_err(|e| usage_error(&e))?;
    Ok((cli, matches))
}

/// A bad value that came from a variable (the process environment or the env file), not from
/// the command line: name the variable instead of a flag the operator never typed.
fn blame_the_variable(e: clap::Error, args: &[std::ffi::OsString]) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        e.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return e;
    }
    let Some(ContextValue::String(shown)) = e.get(ContextKind::InvalidArg) else {
        return e;
    };
    let Some(long) = shown
        .strip_prefix("--")
        .and_then(|s| s.split([' ', '=']).next())
    else {
        return e;
    };
    let typed = args.iter().skip(1).take_while(|a| *a != "--").any(|a| {
        a.to_str()
            .and_then(|a| a.strip_prefix("--"))
            .is_some_and(|a| a == long || a.starts_with(&format!("{long}=")))
    });
    if typed {
        return e;
    }
    let Some(var) = config::variable_of(&Cli::command(), long) else {
        return e;
    };
    let text = e.to_string().replacen(
        &format!("'{shown}'"),
        &format!("{var} (from the environment or the env file)"),
        1,
    );
    // `raw` puts its own "error: " in front.
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    clap::Error::raw(ErrorKind::InvalidValue, text)
}

/// A `gitops sync` whose command line or variables did not parse: the state directory it would
/// have used, from the raw arguments (`sync … --state-dir X`), else `GITOPS_STATE_DIR` (the
/// env file's too, loaded here as best it can be), else the default. None for other commands.
fn sync_state_dir_from_raw(args: &[std::ffi::OsString]) -> Option<std::path::PathBuf> {
    let words: Vec<&str> = args.iter().skip(1).filter_map(|a| a.to_str()).collect();
    // The subcommand is the first word that is neither the global --config nor its value:
    // `gitops status --json sync` is a mistyped status, not a sync to record.
    let mut sync = None;
    let mut i = 0;
    while let Some(word) = words.get(i) {
        match *word {
            "--config" => i += 2,
            w if w.starts_with("--config=") => i += 1,
            "sync" => {
                sync = Some(i);
                break;
            }
            _ => break,
        }
    }
    let sync = sync?;
    let value_of = |name: &str, from: usize| {
        let flag = format!("--{name}");
        let mut found = None;
        for (i, w) in words.iter().enumerate().skip(from) {
            if *w == "--" {
                break;
            }
            if *w == flag {
                found = words.get(i + 1).map(|v| v.to_string());
            } else if let Some(v) = w.strip_prefix(&format!("{flag}=")) {
                found = Some(v.to_string());
            }
        }
        found.filter(|v| !v.is_empty())
    };
    if let Some(dir) = value_of("state-dir", sync) {
        return Some(dir.into());
    }
    let env_file = value_of("config", 0).or_else(|| {
        std::env::var("GITOPS_CONFIG")
            .ok()
            .filter(|v| !v.is_empty())
    });
    let known = config::known_variables(&Cli::command());
    let before = std::env::var_os("GITOPS_STATE_DIR").filter(|v| !v.is_empty());
    if config::load_env_file(env_file.as_deref().map(std::path::Path::new), &known).is_err() {
        // Not the default directory: this machine's state may live elsewhere, as the env file
        // would have said. status reads the same file and fails on it, so the failure shows.
        return before.map(std::path::PathBuf::from);
    }
    Some(
        std::env::var_os("GITOPS_STATE_DIR")
            .filter(|v| !v.is_empty())
            .map_or_else(|| "/var/lib/gitops".into(), std::path::PathBuf::from),
    )
}

/// The state directory a sync would have used, when the options with the env file no longer
/// parse: the flag, else the variable (the env file's, now loaded), else what parsed before.
fn state_dir_despite(options: &Options, matches: &clap::ArgMatches) -> std::path::PathBuf {
    if matches.value_source("state_dir") == Some(clap::parser::ValueSource::CommandLine) {
        return options.state.state_dir.clone();
    }
    std::env::var_os("GITOPS_STATE_DIR")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| options.state.state_dir.clone())
}

/// The state directory to record an env file that cannot be loaded in: only one named by the
/// flag or the process environment. The default may not be this machine's (the env file may
/// have named another), and a pass must never create or write a directory it was not given.
fn state_dir_without_env_file(
    options: &Options,
    matches: &clap::ArgMatches,
) -> Option<std::path::PathBuf> {
    use clap::parser::ValueSource;
    matches!(
        matches.value_source("state_dir"),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
    .then(|| options.state.state_dir.clone())
}

/// The time every command goes by. Test builds only: `GITOPS_TEST_CLOCK_OFFSET=<seconds>` moves
/// it, so the tests reach an expiry (--max-suspend's 24h) without waiting for it; a release
/// build never reads the variable.
fn clock() -> OffsetDateTime {
    #[cfg(debug_assertions)]
    if let Some(offset) = std::env::var("GITOPS_TEST_CLOCK_OFFSET")
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
    {
        let now = OffsetDateTime::now_utc();
        return now
            .checked_add(time::Duration::seconds(offset))
            .unwrap_or(now);
    }
    OffsetDateTime::now_utc()
}

fn run() -> anyhow::Result<Exit> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    config::forget_empty_variables();
    config::forget_variables_given_as_flags(&Cli::command(), &args);
    let (cli, matches) = match parse(&args) {
        Ok(parsed) => parsed,
        Err(e) => {
            if let Some(state_dir) = sync_state_dir_from_raw(&args) {
                pass::record_config_error(&state_dir, &e, None, OffsetDateTime::now_utc());
            }
            return Err(e);
        }
    };
    // Everything but install-units reads the env file below flags and the process environment.
    // clap reads the environment, so the file is loaded and the line parsed again. install-units
    // writes an env file and must not read this machine's into an image it builds.
    // The trigger reads only its own settings: its unit hands them over through systemd
    // (EnvironmentFile=/etc/gitops/trigger.env), and the pass's env file, which may hold the
    // repository's credentials, is none of its business (nor readable by its user).
    let (cli, matches) = if matches!(matches.subcommand_name(), Some("install-units" | "trigger")) {
        (cli, matches)
    } else {
        let known = config::known_variables(&Cli::command());
        let loaded = config::load_env_file(cli.config.as_deref(), &known);
        let env_file_failed = loaded.is_err();
        let reparsed = loaded.and_then(|()| {
            config::forget_variables_given_as_flags(&Cli::command(), &args);
            parse(&args)
        });
        match reparsed {
            Ok(parsed) => parsed,
            Err(e) => {
                if let (Command::Sync(options), Some(sub)) =
                    (&cli.command, matches.subcommand_matches("sync"))
                {
                    let state_dir = if env_file_failed {
                        state_dir_without_env_file(options, sub)
                    } else {
                        Some(state_dir_despite(options, sub))
                    };
                    if let Some(state_dir) = state_dir {
                        pass::record_config_error(&state_dir, &e, None, OffsetDateTime::now_utc());
                    }
                }
                return Err(e);
            }
        }
    };
    let now = clock;
    match cli.command {
        Command::Sync(options) => {
            let settings = Settings::for_sync(&options).inspect_err(|e| {
                // The destinations, when they are not what is wrong: the error is news.
                let notifier = options.notify.resolve().ok();
                let state_dir = &options.state.state_dir;
                pass::record_config_error(state_dir, e, notifier.as_ref(), now());
            })?;
            // The entry point inherits this environment: the alias must not hand it the
            // password the URL holds (GITOPS_REPO_URL is set for it, redacted).
            if std::env::var_os("REPO_URL").is_some() {
                // Single-threaded still: the pass starts its threads later.
                std::env::set_var("REPO_URL", &settings.repo_url.redacted);
            }
            pass::run(&settings, &now)?;
            Ok(Exit::Ok)
        }
        Command::Plan(args) => pass::plan::run(&args, &now),
        Command::Status(status) => report::status::run(&status.state.state_dir, &status, now()),
        Command::Notify(args) => report::notify::test::run(&args, now()),
        Command::RebootPlan(args) => reboot::act::run(&args, now()),
        Command::Suspend(args) => pass::suspend::suspend(&args, now()),
        Command::Resume(args) => pass::suspend::resume(&args, now()),
        Command::Trigger(args) => trigger::run(&args),
        Command::InstallUnits {
            options: _,
            root,
            init,
            now,
            force,
            uninstall,
            dry_run,
            systemctl,
            trigger,
        } => {
            let sub = matches
                .subcommand_matches("install-units")
                .expect("clap matched install-units");
            let env = config::given_on_command_line(sub)?;
            install::run(&install::Request {
                root,
                init,
                now,
                force,
                uninstall,
                dry_run,
                env,
                systemctl,
                trigger,
            })?;
            Ok(Exit::Ok)
        }
        Command::GenerateDocs { dir } => {
            docs::generate(Cli::command(), &dir)?;
            Ok(Exit::Ok)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where a sync records that its env file did not load, by where the state directory came
    /// from: never the default, which may not be this machine's (the file may name another).
    #[test]
    fn an_env_file_that_does_not_load_is_recorded_only_in_a_state_dir_given() {
        if std::env::var_os("GITOPS_STATE_DIR").is_some() {
            return; // the test's own environment would be the source
        }
        let args =
            |words: &[&str]| -> Vec<std::ffi::OsString> { words.iter().map(Into::into).collect() };
        let missing = "/nonexistent/gitops-test/gitops.env";
        let table: [(&[&str], Option<&str>); 3] = [
            (&["gitops", "--config", missing, "sync", "--bogus"], None),
            (
                &["gitops", "--config", missing, "sync", "--state-dir", "/x"],
                Some("/x"),
            ),
            (
                &[
                    "gitops",
                    "sync",
                    "--config",
                    missing,
                    "--state-dir=/y",
                    "--bogus",
                ],
                Some("/y"),
            ),
        ];
        for (words, want) in table {
            assert_eq!(
                sync_state_dir_from_raw(&args(words)),
                want.map(std::path::PathBuf::from),
                "{words:?}"
            );
        }
        for (words, want) in [
            (&["gitops", "sync"][..], None),
            (&["gitops", "sync", "--state-dir", "/z"][..], Some("/z")),
        ] {
            let matches = Cli::command().try_get_matches_from(words).unwrap();
            let cli = Cli::from_arg_matches(&matches).unwrap();
            let Command::Sync(options) = cli.command else {
                unreachable!()
            };
            let sub = matches.subcommand_matches("sync").unwrap();
            assert_eq!(
                state_dir_without_env_file(&options, sub),
                want.map(std::path::PathBuf::from),
                "{words:?}"
            );
        }
    }
}

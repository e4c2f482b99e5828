//! Configuration: the options of a pass, their environment variables, the env file, and the
//! validated `Settings` a pass runs with.

mod envfile;
mod url;
mod values;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use clap::{Args, ValueEnum};

use crate::exit::{fail, Exit, ResultExt};

/// Where the env file lives when neither `--config` nor `GITOPS_CONFIG` names one.
pub const DEFAULT_CONFIG: &str = "/etc/gitops/gitops.env";

/// The options of a pass (`gitops sync`), which `install-units` also takes to write them into
/// the env file.
#[derive(Args, Debug, Clone)]
pub struct Options {
    /// Git URL of the configuration repository (ssh://, user@host:path, git://, http(s)://, file:// or an absolute path). Also read from REPO_URL.
    #[arg(long, env = "GITOPS_REPO_URL", value_name = "URL")]
    pub repo_url: Option<String>,

    /// Branch to follow [default: the remote's default branch]
    #[arg(long, env = "GITOPS_BRANCH", value_name = "NAME")]
    pub branch: Option<String>,

    #[command(flatten)]
    pub state: StateDir,

    /// Path of the symlink that points at the checked-out tree of the commit being applied
    #[arg(
        long,
        env = "GITOPS_CHECKOUT",
        value_name = "PATH",
        default_value = "/gitops"
    )]
    pub checkout: PathBuf,

    /// Entry points to look for, relative to the repository root, space separated: the first the commit has runs; {host} and {group} are this machine's
    #[arg(
        long,
        env = "GITOPS_ENTRYPOINT",
        value_name = "FILES",
        default_value = crate::fleet::entry::DEFAULT_TEMPLATES
    )]
    pub entrypoint: String,

    #[command(flatten)]
    pub identity: crate::fleet::identity::IdentityOptions,

    #[command(flatten)]
    pub watch: crate::fleet::watch::WatchOptions,

    /// When to run the entry point: on-change (a new commit, or a failed one to retry) or always (every pass, to correct drift)
    #[arg(long, env = "GITOPS_APPLY", value_enum, default_value_t = ApplyPolicy::OnChange)]
    pub apply: ApplyPolicy,

    /// Kill the entry point's whole process group after this long (30s, 5min, 2h)
    #[arg(long, env = "GITOPS_APPLY_TIMEOUT", value_name = "DURATION", default_value = "30min", value_parser = parse_duration)]
    pub apply_timeout: Duration,

    /// Give up on a fetch that has not finished after this long
    #[arg(long, env = "GITOPS_FETCH_TIMEOUT", value_name = "DURATION", default_value = "5min", value_parser = parse_duration)]
    pub fetch_timeout: Duration,

    /// Apply a remote tip that does not descend from the applied commit (force-push, rollback) instead of refusing it
    #[arg(long, env = "GITOPS_ALLOW_REWIND", value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_rewind: bool,

    /// Private deploy key for ssh:// URLs; must not be readable by group or others
    #[arg(long, env = "GITOPS_SSH_KEY", value_name = "FILE")]
    pub ssh_key: Option<PathBuf>,

    /// known_hosts file pinning the Git server's host key; the host must be in it
    #[arg(long, env = "GITOPS_KNOWN_HOSTS", value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,

    /// How long to wait for another pass to release the lock before exiting 75
    #[arg(long, env = "GITOPS_LOCK_TIMEOUT", value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub lock_timeout: Duration,

    /// Refuse a commit with a file larger than this, before reading it (512K, 256M, 1G, 256MiB, bytes)
    #[arg(long, env = "GITOPS_MAX_FILE_SIZE", value_name = "SIZE", default_value = "256M", value_parser = parse_size)]
    pub max_file_size: u64,

    /// The longest a suspension may last from now: a pass ends one recorded to last longer (written by hand, or while the clock was wrong) this long after it sees it; also gitops suspend's limit
    #[arg(long, env = "GITOPS_MAX_SUSPEND", value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    pub max_suspend: Duration,

    #[command(flatten)]
    pub health: crate::pass::health::HealthOptions,

    #[command(flatten)]
    pub notify: crate::report::notify::options::NotifyOptions,

    #[command(flatten)]
    pub reboot: crate::reboot::act::RebootOptions,

    #[command(flatten)]
    pub trust: crate::git::trust::options::TrustOptions,

    #[command(flatten)]
    pub transport: crate::git::options::TransportOptions,

    /// Write gitops.prom into this directory after every pass, for node_exporter's textfile collector (Debian: /var/lib/prometheus/node-exporter)
    #[arg(long, env = "GITOPS_METRICS_DIR", value_name = "DIR")]
    pub metrics_dir: Option<PathBuf>,

    #[command(flatten)]
    pub trigger: crate::trigger::options::StatsDir,
}

/// Where the passes keep their state: the pass writes it, `status` reads it.
#[derive(Args, Debug, Clone)]
pub struct StateDir {
    /// Directory for the object store, checked-out trees, logs and state.json
    #[arg(
        long,
        env = "GITOPS_STATE_DIR",
        value_name = "DIR",
        default_value = "/var/lib/gitops"
    )]
    pub state_dir: PathBuf,
}

/// When the entry point runs.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyPolicy {
    /// Only for a commit that has not been applied yet (or failed and is retried).
    OnChange,
    /// On every pass, even when nothing changed: drift correction.
    Always,
}

/// Everything a pass needs, validated once.
#[derive(Debug, Clone)]
pub struct Settings {
    pub repo_url: RepoUrl,
    pub branch: Option<String>,
    pub state_dir: PathBuf,
    pub checkout: PathBuf,
    /// `--entrypoint`'s templates, in order.
    pub entrypoints: Vec<String>,
    pub identity: crate::fleet::identity::Identity,
    /// `--watch` and `--sparse`: the part of the repository this machine reads.
    pub watch: crate::fleet::watch::Watch,
    pub apply: ApplyPolicy,
    pub apply_timeout: Duration,
    pub fetch_timeout: Duration,
    pub allow_rewind: bool,
    pub ssh_key: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub lock_timeout: Duration,
    pub max_file_size: u64,
    /// The longest a suspension lasts from the pass that sees it.
    pub max_suspend: Duration,
    /// The health check after the entry point.
    pub health: crate::pass::health::HealthOptions,
    /// Where the pass's events go; empty when notifications are off.
    pub notifier: crate::report::notify::options::Notifier,
    pub reboot: crate::reboot::act::RebootOptions,
    pub metrics_dir: Option<PathBuf>,
    /// The trigger's state directory: its counters go into the metrics.
    pub trigger_state_dir: PathBuf,
    /// Which commits may run; None when no signers are given.
    pub trust: Option<crate::git::trust::Trust>,
    /// A tip committed longer ago than this is reported stale.
    pub max_commit_age: Option<Duration>,
    /// ssh trust on first use, the https token, --max-repo-size.
    pub transport: crate::git::options::Transport,
}

impl Settings {
    /// Validate the options for a pass: every problem here is a usage error (exit 2).
    pub fn for_sync(opts: &Options) -> Result<Settings> {
        let raw_url = opts
            .repo_url
            .clone()
            .filter(|u| !u.trim().is_empty())
            .or_else(|| std::env::var("REPO_URL").ok())
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| {
                fail(
                    Exit::Usage,
                    format!(
                        "no repository URL: pass --repo-url URL or set GITOPS_REPO_URL in {}",
                        env_file_used().display()
                    ),
                )
            })?;
        let repo_url = RepoUrl::parse(raw_url.trim())?;
        crate::redact::remember(repo_url.secrets());
        if let Some(branch) = &opts.branch {
            let valid = gix::validate::reference::name_partial(
                format!("refs/heads/{branch}").as_str().into(),
            )
            .is_ok();
            if !valid || branch.is_empty() {
                return Err(fail(
                    Exit::Usage,
                    format!(
                        "--branch {branch:?} is not a valid branch name: use a name such as main"
                    ),
                ));
            }
        }
        let entrypoints =
            crate::fleet::entry::parse(&opts.entrypoint).map_err(|why| fail(Exit::Usage, why))?;
        let identity =
            crate::fleet::identity::resolve(&opts.identity, crate::fleet::identity::hostname)
                .map_err(|why| fail(Exit::Usage, why))?;
        let watch = opts.watch.resolve().map_err(|why| fail(Exit::Usage, why))?;
        if opts.max_suspend < Duration::from_secs(1) {
            return Err(fail(
                Exit::Usage,
                format!(
                    "--max-suspend {} is shorter than a second: it is how long a suspension lasts at most; give one such as 24h",
                    format_duration(opts.max_suspend)
                ),
            ));
        }
        if let Some(key) = &opts.ssh_key {
            check_deploy_key(key)?;
        }
        if let Some(known_hosts) = &opts.known_hosts {
            open_regular(known_hosts).map_err(|e| {
                fail(
                    Exit::Usage,
                    format!(
                        "cannot read the known_hosts file {} ({e}): point --known-hosts at a file that pins the Git server's host key",
                        known_hosts.display()
                    ),
                )
            })?;
        }
        // Trailing slashes dropped (`co/` names the link itself, not the tree it points at),
        // so the link is inspected and replaced rather than followed.
        let checkout: PathBuf = absolute(&opts.checkout).components().collect();
        let state_dir = absolute(&opts.state.state_dir);
        check_checkout_outside(&checkout, &state_dir)?;
        check_checkout_parent(&checkout)?;
        if std::fs::symlink_metadata(&checkout).is_ok_and(|m| !m.file_type().is_symlink()) {
            return Err(fail(
                Exit::Usage,
                format!(
                    "the checkout path {} exists and is not a symlink: move it away (gitops manages it as a link to the applied tree) or choose another --checkout",
                    checkout.display()
                ),
            ));
        }
        let metrics_dir = opts.metrics_dir.as_deref().map(absolute);
        if let Some(dir) = &metrics_dir {
            check_metrics_dir(dir)?;
        }
        let transport = opts
            .transport
            .resolve(&repo_url, opts.known_hosts.as_deref())?;
        Ok(Settings {
            repo_url,
            branch: opts.branch.clone(),
            state_dir,
            checkout,
            entrypoints,
            identity,
            watch,
            apply: opts.apply,
            apply_timeout: opts.apply_timeout,
            fetch_timeout: opts.fetch_timeout,
            allow_rewind: opts.allow_rewind,
            ssh_key: opts.ssh_key.as_deref().map(absolute),
            known_hosts: opts.known_hosts.as_deref().map(absolute),
            lock_timeout: opts.lock_timeout,
            max_file_size: opts.max_file_size,
            max_suspend: opts.max_suspend,
            notifier: opts.notify.resolve()?,
            health: opts.health.clone(),
            reboot: opts.reboot.clone(),
            metrics_dir,
            trigger_state_dir: opts.trigger.trigger_state_dir.clone(),
            trust: opts.trust.resolve()?,
            max_commit_age: opts.trust.max_commit_age(),
            transport,
        })
    }
}

/// The metrics directory must exist: it belongs to node_exporter's package, and a directory
/// gitops created on a typo would be one nothing reads.
fn check_metrics_dir(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        found => Err(fail(
            Exit::Usage,
            format!(
                "--metrics-dir {} {}: point it at node_exporter's textfile directory (Debian: /var/lib/prometheus/node-exporter), or unset GITOPS_METRICS_DIR",
                dir.display(),
                match found {
                    Ok(_) => "is not a directory".to_string(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => "does not exist".to_string(),
                    Err(e) => format!("cannot be used ({e})"),
                }
            ),
        )),
    }
}

/// The checkout link must not be inside the state directory: the pass would replace or prune
/// its own files (a link named `state.json`, `lock`, a tree), and `trees` is pruned by name.
/// Compared as the kernel resolves them, so a symlinked alias of the state directory is caught;
/// the checkout's own name is not resolved (it is the link gitops manages).
fn check_checkout_outside(checkout: &Path, state_dir: &Path) -> Result<()> {
    let (checkout, state_dir) = (normalize(checkout), normalize(state_dir));
    let real_checkout = match (checkout.parent(), checkout.file_name()) {
        (Some(parent), Some(name)) => crate::pass::guard::canonical_prefix(parent).join(name),
        _ => checkout.clone(),
    };
    let real_state_dir = crate::pass::guard::canonical_prefix(&state_dir);
    if checkout.starts_with(&state_dir) || real_checkout.starts_with(&real_state_dir) {
        return Err(fail(
            Exit::Usage,
            format!(
                "the checkout path {} is inside the state directory {}; choose a --checkout outside it (default /gitops)",
                checkout.display(),
                state_dir.display()
            ),
        ));
    }
    Ok(())
}

/// Whoever can write the directory the checkout link is in can rename their own link onto it,
/// and the next pass runs their code: refuse such a place, as for the state directory.
fn check_checkout_parent(checkout: &Path) -> Result<()> {
    let checkout = normalize(checkout);
    let parent = checkout.parent().unwrap_or(Path::new("/"));
    match crate::pass::guard::ancestor_problem(parent, "the checkout link") {
        Some(problem) => Err(fail(Exit::Usage, problem)),
        None => Ok(()),
    }
}

/// `a/./b/../c` as `a/c`, without touching the file system (the paths may not exist yet).
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// ssh refuses keys that others can read, with a message that is easy to miss in a journal;
/// say it up front, with the fix.
fn check_deploy_key(key: &Path) -> Result<()> {
    let meta = std::fs::metadata(key).or_exit(Exit::Usage, || {
        format!(
            "cannot read the deploy key {}: point --ssh-key at the private key file",
            key.display()
        )
    })?;
    if !meta.is_file() {
        return Err(fail(
            Exit::Usage,
            format!(
                "the deploy key {} is not a regular file: point --ssh-key at the private key file",
                key.display()
            ),
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(fail(
            Exit::Usage,
            format!(
                "the deploy key {} is readable by group or others (mode {mode:04o}): run chmod 600 {}",
                key.display(),
                key.display()
            ),
        ));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(fail(
            Exit::Usage,
            format!(
                "the deploy key {} belongs to uid {}, not to the user running gitops (uid {me}): chown it",
                key.display(),
                meta.uid()
            ),
        ));
    }
    Ok(())
}

/// The settings given as flags on this command line, as `GITOPS_*` env-file entries, in the
/// order `gitops --help` lists them (install-units writes them to the env file). Values come
/// as typed, so `30min` stays `30min`; the URL is validated like sync validates it.
pub fn given_on_command_line(matches: &clap::ArgMatches) -> Result<Vec<(String, String)>> {
    // Every option of a pass that has a variable, read off its definition: a new option is
    // written to the env file without anyone keeping a list.
    let options = <Options as clap::Args>::augment_args(clap::Command::new("options"));
    let settings: Vec<(String, String, bool)> = options
        .get_arguments()
        .filter_map(|arg| {
            let var = arg.get_env()?.to_str()?.to_string();
            Some((
                arg.get_id().to_string(),
                var,
                arg.get_action().takes_values(),
            ))
        })
        .collect();
    let mut out = Vec::new();
    for (id, var, takes_values) in settings {
        let id = id.as_str();
        if matches.value_source(id) != Some(clap::parser::ValueSource::CommandLine) {
            continue;
        }
        let value = if !takes_values {
            // A switch (--allow-rewind): given is true.
            "true".to_string()
        } else {
            // Every value of a flag given more than once (--notify-url A --notify-url B).
            matches
                .get_raw(id)
                .map(|v| {
                    v.map(|v| v.to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default()
        };
        if id == "repo_url" {
            RepoUrl::parse(&value)?;
        }
        if id == "notify_url" {
            // The URLs only: the files may be meant for the image being built.
            crate::report::notify::options::NotifyOptions {
                notify_url: vec![value.clone()],
                notify_url_file: None,
                notify_format: crate::report::notify::format::Format::Auto,
                notify_secret_file: None,
            }
            .resolve()?;
        }
        out.push((var.to_string(), value));
    }
    Ok(out)
}

use envfile::env_file_used;
#[cfg(test)]
pub use envfile::parse_env_file;
pub use envfile::{
    forget_empty_variables, forget_variables_given_as_flags, known_variables, load_env_file,
    open_regular, read_regular_file, variable_of,
};
pub use url::RepoUrl;
pub use values::{format_duration, parse_duration, parse_size, show_size};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_flags_given_are_written_as_typed() {
        let command = <Options as clap::Args>::augment_args(clap::Command::new("t"));
        let matches = command
            .try_get_matches_from([
                "t",
                "--notify-url",
                "http://a/x",
                "--notify-url=http://b/y,http://c/z",
                "--notify-format",
                "slack",
                "--notify-url-file",
                "/etc/gitops/urls",
            ])
            .unwrap();
        let given = given_on_command_line(&matches).unwrap();
        let given: Vec<(&str, &str)> = given
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            given,
            [
                ("GITOPS_NOTIFY_URL", "http://a/x http://b/y,http://c/z"),
                ("GITOPS_NOTIFY_URL_FILE", "/etc/gitops/urls"),
                ("GITOPS_NOTIFY_FORMAT", "slack"),
            ]
        );
        let bad = <Options as clap::Args>::augment_args(clap::Command::new("t"))
            .try_get_matches_from(["t", "--notify-url", "gopher://h/x"])
            .unwrap();
        let err = given_on_command_line(&bad).unwrap_err();
        assert_eq!(crate::exit::code_of(&err), Exit::Usage);
    }

    #[test]
    fn every_setting_has_a_known_variable() {
        let command = clap::Command::new("t").args(
            <Options as clap::Args>::augment_args(clap::Command::new("o"))
                .get_arguments()
                .cloned(),
        );
        let known = known_variables(&command);
        for var in [
            "GITOPS_REPO_URL",
            "GITOPS_BRANCH",
            "GITOPS_LOCK_TIMEOUT",
            "GITOPS_STATE_DIR",
        ] {
            assert!(known.iter().any(|k| k == var), "{var} in {known:?}");
        }
    }
}

//! Configuration: the options of a pass, their environment variables, the env file, and the
//! validated `Settings` a pass runs with.

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

    /// Entry point to run, relative to the repository root
    #[arg(
        long,
        env = "GITOPS_ENTRYPOINT",
        value_name = "FILE",
        default_value = "run.sh"
    )]
    pub entrypoint: String,

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
    pub entrypoint: String,
    pub apply: ApplyPolicy,
    pub apply_timeout: Duration,
    pub fetch_timeout: Duration,
    pub allow_rewind: bool,
    pub ssh_key: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub lock_timeout: Duration,
    pub max_file_size: u64,
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

/// A repository URL together with the form of it that is safe to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoUrl {
    /// What gix connects to. For http(s) the user and password are taken out (they go to the
    /// server through the credentials callback), so no gix error message can carry them.
    pub raw: String,
    /// What logs, state and status show.
    pub redacted: String,
    pub scheme: gix::url::Scheme,
    /// http(s) user and password from the URL.
    pub credentials: Option<(String, String)>,
    /// The password (and the http(s) user) as typed in the URL, whatever characters it holds.
    typed_secrets: Vec<String>,
}

impl RepoUrl {
    /// Strings that must never be printed: the password of any scheme, and the user name of
    /// http(s) URLs (tokens are often sent as the user). Short ones are left to the URL
    /// pattern of `redact::scrub`: masking "git" wherever it appears would garble every line.
    pub fn secrets(&self) -> Vec<String> {
        let mut secrets = match &self.credentials {
            Some((user, password)) => vec![user.clone(), password.clone()],
            None => Vec::new(),
        };
        // Read from the text as typed, not from gix's parse: gix takes `file://u:p@/path` apart
        // without a password, and then quotes the whole URL in its error.
        secrets.extend(self.typed_secrets.iter().cloned());
        secrets.retain(|s| s.len() >= 4);
        secrets.sort();
        secrets.dedup();
        secrets
    }
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
        let entrypoint = opts.entrypoint.trim().to_string();
        if entrypoint.is_empty()
            || Path::new(&entrypoint).is_absolute()
            || entrypoint.split('/').any(|c| c == "..")
        {
            return Err(fail(
                Exit::Usage,
                format!("--entrypoint {entrypoint:?} must be a path inside the repository, such as run.sh"),
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
            entrypoint,
            apply: opts.apply,
            apply_timeout: opts.apply_timeout,
            fetch_timeout: opts.fetch_timeout,
            allow_rewind: opts.allow_rewind,
            ssh_key: opts.ssh_key.as_deref().map(absolute),
            known_hosts: opts.known_hosts.as_deref().map(absolute),
            lock_timeout: opts.lock_timeout,
            max_file_size: opts.max_file_size,
            notifier: opts.notify.resolve()?,
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

impl RepoUrl {
    /// Accept the URL forms Git users write, reject the rest with the reason.
    pub fn parse(raw: &str) -> Result<RepoUrl> {
        use gix::url::Scheme;
        let bad = |why: &str| {
            fail(
                Exit::Usage,
                format!(
                    "--repo-url {:?} is not a usable Git URL ({why}): use ssh://host/path, user@host:path, git://, http(s):// or an absolute path",
                    unusable_url_shown(raw)
                ),
            )
        };
        // A relative path would change meaning with the working directory of whoever runs us.
        let raw = if raw.starts_with('.') {
            absolute(Path::new(raw)).display().to_string()
        } else {
            raw.to_string()
        };
        // The user part is read from the text (a password may hold `/ ? # @ :`, which gix
        // would take for the path or the host), and gix never sees a password: http(s)
        // credentials go to the server through the credentials callback, and ssh, git and file
        // URLs have no use for one (ssh authenticates with the key), so no gix message can
        // quote it.
        let (redacted, typed_secrets) = crate::redact::redact_url(&raw);
        let mut credentials = None;
        let mut fetch_url = raw.clone();
        if let Some((scheme, userinfo, remainder)) = crate::redact::split_userinfo(&raw) {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            if scheme.eq_ignore_ascii_case("http") {
                return Err(bad(
                    "credentials would travel in clear text over http: use https://",
                ));
            }
            if scheme.eq_ignore_ascii_case("https") {
                credentials = Some((percent_decoded(user), percent_decoded(password)));
                fetch_url = format!("{scheme}://{remainder}");
            } else if user.is_empty() {
                fetch_url = format!("{scheme}://{remainder}");
            } else {
                fetch_url = format!("{scheme}://{user}@{remainder}");
            }
        }
        let url = gix::url::parse(gix::bstr::BStr::new(fetch_url.as_str()))
            .map_err(|_| bad("it does not parse"))?;
        match url.scheme {
            Scheme::File => {
                if !Path::new(&url.path.to_string()).is_absolute() {
                    return Err(bad("a local path must be absolute"));
                }
            }
            Scheme::Http if url.password().is_some() || url.user().is_some() => {
                return Err(bad(
                    "credentials would travel in clear text over http: use https://",
                ))
            }
            Scheme::Git | Scheme::Http | Scheme::Https | Scheme::Ssh => {
                if url.host().is_none_or(str::is_empty) {
                    return Err(bad("it names no host"));
                }
                if url.path.is_empty() || url.path == "/" {
                    return Err(bad("it names no repository path"));
                }
            }
            Scheme::Ext | Scheme::Helper(_) | Scheme::HelperUrl(_) => {
                return Err(bad("only ssh, git, http(s) and file URLs are supported"))
            }
        }
        Ok(RepoUrl {
            redacted,
            typed_secrets,
            scheme: url.scheme,
            raw: fetch_url,
            credentials,
        })
    }
}

/// A URL that did not parse, fit to print: the user part masked as in a configured URL, or,
/// when even that rule does not find a host after it, everything from `://` to the last `@`.
/// A password may hold spaces and quotes, which end a URL for `redact::mask_urls`.
fn unusable_url_shown(raw: &str) -> String {
    if crate::redact::split_userinfo(raw).is_some() {
        return crate::redact::redact_url(raw).0;
    }
    match (raw.split_once("://"), raw.rfind('@')) {
        (Some((scheme, _)), Some(at)) if at > scheme.len() + 3 => {
            format!("{scheme}://***@{}", &raw[at + 1..])
        }
        _ => crate::redact::mask_urls(raw),
    }
}

/// `%XX` escapes decoded, as Git decodes the user part of a URL; anything else kept as written.
fn percent_decoded(text: &str) -> String {
    String::from_utf8_lossy(&crate::http::percent_decoded(text)).into_owned()
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

/// The longest duration any option accepts. A bound at parse time keeps every sum and deadline
/// built from these options (Instant + timeout, install-units' TimeoutStartSec=) far from
/// overflow, and no pass sensibly waits longer than a year.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86400);

/// How `MAX_DURATION` is written in messages and the README.
pub const MAX_DURATION_TEXT: &str = "365d";

/// Parse a duration the way systemd writes them: `90`, `30s`, `5min`, `2h`, `1h 30min`, `1w`,
/// `500ms`, `250us`; at most `MAX_DURATION`. Fractions (`1.5h`), months and years are refused:
/// a month or a year has no fixed length, and no setting here needs them.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let invalid = || format!("{text:?} is not a duration: write it like 30s, 5min or 2h");
    let too_long = || {
        format!(
            "{:?} is too long: durations are at most {MAX_DURATION_TEXT}",
            text.trim()
        )
    };
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(invalid());
        }
        // Any run of digits is a number, however long: too many of them is "too long", not
        // "not a duration".
        let number: u64 = rest[..digits].parse().unwrap_or(u64::MAX);
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = rest[unit_len..].trim_start();
        let term = match unit {
            "ms" | "msec" => Duration::from_millis(number),
            "" | "s" | "sec" | "second" | "seconds" => Duration::from_secs(number),
            "m" | "min" | "minute" | "minutes" => Duration::from_secs(number.saturating_mul(60)),
            "h" | "hr" | "hour" | "hours" => Duration::from_secs(number.saturating_mul(3600)),
            "d" | "day" | "days" => Duration::from_secs(number.saturating_mul(86400)),
            "w" | "week" | "weeks" => Duration::from_secs(number.saturating_mul(7 * 86400)),
            "us" | "usec" => Duration::from_micros(number),
            _ => return Err(invalid()),
        };
        total = total
            .checked_add(term)
            .filter(|t| *t <= MAX_DURATION)
            .ok_or_else(too_long)?;
    }
    Ok(total)
}

/// The largest --max-file-size accepted: beyond it the limit protects nothing.
pub const MAX_FILE_SIZE_LIMIT: u64 = 1 << 40;

/// Parse a size as systemd and coreutils write them, in powers of 1024: `4096`, `512K`,
/// `256M`, `1G`, `256MiB`.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let invalid = || format!("{text:?} is not a size: write it like 512K, 256M or 1G");
    let trimmed = text.trim();
    let digits = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    if digits == 0 {
        return Err(invalid());
    }
    let number: u64 = trimmed[..digits].parse().map_err(|_| invalid())?;
    let shift = match trimmed[digits..].trim_start() {
        "" | "B" => 0,
        "K" | "k" | "KiB" | "KB" => 10,
        "M" | "MiB" | "MB" => 20,
        "G" | "GiB" | "GB" => 30,
        "T" | "TiB" | "TB" => 40,
        _ => return Err(invalid()),
    };
    let too_big = || {
        format!(
            "{text:?} is too large: the maximum is {}",
            show_size(MAX_FILE_SIZE_LIMIT)
        )
    };
    let bytes = number.checked_mul(1u64 << shift).ok_or_else(too_big)?;
    if bytes > MAX_FILE_SIZE_LIMIT {
        return Err(too_big());
    }
    if bytes == 0 {
        return Err(format!(
            "{text:?} would refuse every file: give at least 1 byte"
        ));
    }
    Ok(bytes)
}

/// A size the way an operator reads it: `2.0 KiB`, `500.0 MiB`, or bytes below 1 KiB.
pub fn show_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A duration as people (and `parse_duration`) read it, in one unit: the largest that counts
/// it exactly, at least twice above seconds (`500ms`, `60s`, `90s`, `5min`, `90min`, `2h`).
pub fn format_duration(d: Duration) -> String {
    const UNITS: [(&str, u128); 6] = [
        ("d", 86_400_000_000_000),
        ("h", 3_600_000_000_000),
        ("min", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
    ];
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    let seconds = 1_000_000_000;
    UNITS
        .iter()
        .find(|(_, len)| nanos.is_multiple_of(*len) && (nanos / len >= 2 || *len <= seconds))
        .map_or_else(
            || format!("{}us", nanos / 1_000),
            |(unit, len)| format!("{}{unit}", nanos / len),
        )
}

/// Parse an env file as systemd's `EnvironmentFile=` does: `KEY=VALUE` lines, `#` and `;`
/// comments, optional single or double quotes, a trailing backslash continuing the line.
pub fn parse_env_file(text: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut logical = String::new();
    let mut start_line = 0;
    for (number, line) in text.lines().enumerate() {
        if logical.is_empty() {
            start_line = number + 1;
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
                continue;
            }
        }
        if let Some(stripped) = line.strip_suffix('\\') {
            logical.push_str(stripped);
            continue;
        }
        logical.push_str(line);
        let entry = std::mem::take(&mut logical);
        let (key, value) = entry
            .split_once('=')
            .ok_or_else(|| format!("line {start_line} is not KEY=VALUE"))?;
        let key = key.trim();
        let key = key.strip_prefix("export ").map(str::trim).unwrap_or(key);
        if key.is_empty()
            || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || key.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(format!(
                "line {start_line}: {key:?} is not a valid variable name"
            ));
        }
        let value = unquote(value.trim());
        // No environment variable can hold one (set_var would panic on it), and systemd
        // refuses the file too.
        if value.contains('\0') {
            return Err(format!(
                "line {start_line}: the value of {key} holds a NUL byte, which no environment variable can hold"
            ));
        }
        out.push((key.to_string(), value));
    }
    if !logical.is_empty() {
        return Err(format!(
            "line {start_line} ends with a backslash and nothing follows"
        ));
    }
    Ok(out)
}

fn unquote(value: &str) -> String {
    let bytes = value.as_bytes();
    if bytes.len() >= 2 && bytes[0] == b'\'' && bytes[bytes.len() - 1] == b'\'' {
        return value[1..value.len() - 1].to_string();
    }
    if bytes.len() >= 2 && bytes[0] == b'"' && bytes[bytes.len() - 1] == b'"' {
        let mut out = String::new();
        let mut chars = value[1..value.len() - 1].chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            } else {
                out.push(c);
            }
        }
        return out;
    }
    value.to_string()
}

/// Whether a variable is one of ours: a `GITOPS_*` setting or the `REPO_URL` alias.
fn is_ours(key: &str) -> bool {
    key.starts_with("GITOPS_") || key == "REPO_URL"
}

/// An empty value means unset, for every option alike: take empty `GITOPS_*` variables out of
/// the process environment before clap reads it. clap takes an empty variable as an empty
/// value, so `GITOPS_CHECKOUT=` would beat the default, fail a flag's own value check
/// ("a value is required"), or make `GITOPS_BRANCH=` an invalid branch.
pub fn forget_empty_variables() {
    let empty: Vec<std::ffi::OsString> = std::env::vars_os()
        .filter(|(key, value)| value.is_empty() && key.to_str().is_some_and(is_ours))
        .map(|(key, _)| key)
        .collect();
    for key in empty {
        // Single-threaded still: nothing else reads the environment while it changes.
        std::env::remove_var(key);
    }
}

/// A flag beats its variable: take the variable of every option given on the command line out
/// of the environment before clap reads it. clap reads a global option's variable at every
/// level of the command line, so an invalid `GITOPS_APPLY_TIMEOUT` in the environment or env
/// file would fail `gitops sync --apply-timeout 5min` although the flag replaces it.
pub fn forget_variables_given_as_flags(command: &clap::Command, args: &[std::ffi::OsString]) {
    let given: Vec<&str> = args
        .iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .filter_map(|a| a.to_str()?.strip_prefix("--"))
        .map(|a| a.split_once('=').map_or(a, |(name, _)| name))
        .collect();
    fn walk(command: &clap::Command, given: &[&str]) {
        for arg in command.get_arguments() {
            if let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) {
                if given.contains(&long) {
                    // Single-threaded still: nothing else reads the environment meanwhile.
                    std::env::remove_var(env);
                }
            }
        }
        for sub in command.get_subcommands() {
            walk(sub, given);
        }
    }
    walk(command, &given);
}

/// Every variable the command line reads (`GITOPS_*`), from clap's definition, so that a
/// setting added later is known here without a second list to keep up to date.
pub fn known_variables(command: &clap::Command) -> Vec<String> {
    let mut known: Vec<String> = command
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .filter_map(|env| env.to_str().map(str::to_string))
        .collect();
    for sub in command.get_subcommands() {
        known.extend(known_variables(sub));
    }
    known.sort();
    known.dedup();
    known
}

/// The variable of the option `--long`, anywhere in the command line's definition.
pub fn variable_of(command: &clap::Command, long: &str) -> Option<String> {
    command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(long))
        .and_then(|arg| arg.get_env())
        .and_then(|env| env.to_str().map(str::to_string))
        .or_else(|| {
            command
                .get_subcommands()
                .find_map(|sub| variable_of(sub, long))
        })
}

/// The known variable a mistyped one most likely meant: the nearest by edit distance (a swap
/// of two neighbours counts as one edit), if it is near enough to be a typo.
pub fn nearest_variable<'a>(key: &str, known: &'a [String]) -> Option<&'a str> {
    let (distance, nearest) = known
        .iter()
        .map(|k| (edit_distance(key, k), k.as_str()))
        .min_by_key(|(d, _)| *d)?;
    (distance <= 3).then_some(nearest)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and transpositions
/// of adjacent characters, each costing one.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The largest env file read: a few settings take a few hundred bytes.
pub const MAX_ENV_FILE: u64 = 1024 * 1024;

/// Read a regular file of at most `limit` bytes, opened without blocking so that a FIFO or a
/// device at the path is refused ("not a regular file") instead of hanging the pass, and
/// never read beyond the limit (`/dev/zero` would otherwise fill the memory).
pub fn read_regular_file(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    // `--config /dev/null` is the usual way to say "no env file".
    if std::fs::metadata(path).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_char_device() && m.rdev() == nix::libc::makedev(1, 3)
    }) {
        return Ok(Vec::new());
    }
    let file = open_regular(path)?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "too large to be an env file: more than {} KiB",
            limit / 1024
        )));
    }
    Ok(bytes)
}

/// Open a file for reading without blocking on a FIFO, and refuse anything but a regular file.
pub fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other(if meta.is_dir() {
            "a directory, not a regular file"
        } else {
            "not a regular file"
        }));
    }
    Ok(file)
}

/// The env file last read by `load_env_file` (--config, GITOPS_CONFIG or the default), for
/// advice that tells the operator where to set something.
static ENV_FILE_USED: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

fn env_file_used() -> PathBuf {
    ENV_FILE_USED
        .lock()
        .ok()
        .and_then(|used| used.clone())
        .unwrap_or_else(|| DEFAULT_CONFIG.into())
}

/// The env file's text: UTF-8, with a byte-order mark (which some editors write) skipped.
fn env_file_text(bytes: &[u8]) -> std::result::Result<&str, std::str::Utf8Error> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes)
}

/// Load the env file into the process environment, below variables already set, so that a
/// manual run sees what the timer's run sees (systemd exports the same file to the service).
/// A missing default file is fine; a missing file that was asked for is an error. An empty
/// value means unset, as it does in the process environment (`forget_empty_variables`). A
/// `GITOPS_*` key that is not in `known` gets a warning naming the nearest known one.
pub fn load_env_file(explicit: Option<&Path>, known: &[String]) -> Result<()> {
    let path = explicit.unwrap_or(Path::new(DEFAULT_CONFIG));
    if let Ok(mut used) = ENV_FILE_USED.lock() {
        *used = Some(path.to_path_buf());
    }
    let bytes = match read_regular_file(path, MAX_ENV_FILE) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(fail(
                Exit::Usage,
                format!(
                    "cannot read the config file {} ({e}): create it or point --config at an existing file",
                    path.display()
                ),
            ))
        }
        Err(e) => {
            return Err(fail(
                Exit::Usage,
                format!(
                    "cannot read the config file {} ({e}): point --config at an env file of KEY=VALUE lines",
                    path.display()
                ),
            ))
        }
    };
    let text = env_file_text(&bytes).map_err(|e| {
        fail(
            Exit::Usage,
            format!(
                "the config file {} is not UTF-8 text (invalid byte at offset {}): save it as UTF-8",
                path.display(),
                e.valid_up_to()
            ),
        )
    })?;
    let pairs = parse_env_file(text).map_err(|why| {
        fail(
            Exit::Usage,
            format!(
                "the config file {} is malformed: {why}; fix it (KEY=VALUE per line)",
                path.display()
            ),
        )
    })?;
    for (key, _) in &pairs {
        if key.starts_with("GITOPS_") && !known.contains(key) {
            let hint = match nearest_variable(key, known) {
                Some(near) => format!("did you mean {near}?"),
                None => "it is ignored".to_string(),
            };
            say!(
                "gitops: warning: the config file {} sets {key}, which is not a gitops setting: {hint}",
                path.display()
            );
        }
    }
    // Either spelling of the URL in the process environment beats both spellings in the file.
    let set = |key: &str| std::env::var_os(key).is_some_and(|v| !v.is_empty());
    let url_in_process = set("GITOPS_REPO_URL") || set("REPO_URL");
    for (key, value) in pairs {
        let is_url = key == "GITOPS_REPO_URL" || key == "REPO_URL";
        let empty_and_ours = value.is_empty() && is_ours(&key);
        let beaten = set(&key) || (is_url && url_in_process);
        if !beaten && !empty_and_ours {
            std::env::set_var(&key, value);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_systemd() {
        let table = [
            ("30s", 30),
            ("5min", 300),
            ("2h", 7200),
            ("90", 90),
            ("1h 30min", 5400),
            ("1d", 86400),
            (" 10 s ", 10),
        ];
        for (text, secs) in table {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(14 * 86400)));
        assert_eq!(parse_duration("1 week"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("1usec"), Ok(Duration::from_micros(1)));
        assert!(parse_duration("53w").unwrap_err().contains("at most 365d"));
        for bad in ["", "abc", "5 parsecs", "min", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(parse_duration("365d"), Ok(MAX_DURATION));
        for huge in [
            "366d",
            "365d 1s",
            "99999999999999999999d",
            "18446744073709551615s",
            "9223372036854775807",
            "18446744073709551615ms 18446744073709551615ms",
        ] {
            let err = parse_duration(huge).unwrap_err();
            assert!(err.contains("at most 365d"), "{huge:?}: {err}");
        }
    }

    #[test]
    fn durations_are_shown_as_people_write_them() {
        let table = [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_micros(1500), "1500us"),
            (Duration::from_secs(1), "1s"),
            (Duration::from_secs(60), "60s"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(300), "5min"),
            (Duration::from_secs(3600), "60min"),
            (Duration::from_secs(5400), "90min"),
            (Duration::from_secs(7200), "2h"),
            (Duration::from_secs(86400 + 1), "86401s"),
            (MAX_DURATION, "365d"),
        ];
        for (d, shown) in table {
            assert_eq!(format_duration(d), shown);
            assert_eq!(parse_duration(shown), Ok(d), "{shown} reads back");
        }
    }

    /// Durations as an operator might mistype them: digits of any length, any unit or none.
    const DURATION_TEXT: &str =
        "[0-9 ]{0,30}(ms|s|min|h|d|days|x|)( [0-9]{1,25}(ms|s|min|h|d)){0,3}";

    /// Each unit and its length in nanoseconds.
    const UNITS: [(&str, u128); 5] = [
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("min", 60_000_000_000),
        ("h", 3_600_000_000_000),
        ("d", 86_400_000_000_000),
    ];

    proptest::proptest! {
        /// Whatever the text, the parser answers without panicking, never beyond the maximum.
        #[test]
        fn any_duration_text_parses_or_is_refused(text in DURATION_TEXT) {
            if let Ok(d) = parse_duration(&text) {
                proptest::prop_assert!(d <= MAX_DURATION);
            }
        }

        /// A number with a unit is that many units when it fits, and "at most 365d" when not.
        #[test]
        fn a_number_with_a_unit_is_exact_or_too_long(
            n in proptest::prop_oneof![0u64..40_000_000_000, proptest::num::u64::ANY],
            unit in 0usize..UNITS.len(),
        ) {
            let (name, nanos_per) = UNITS[unit];
            let expected = u128::from(n) * nanos_per;
            match parse_duration(&format!("{n}{name}")) {
                Ok(d) => proptest::prop_assert_eq!(d.as_nanos(), expected),
                Err(e) => {
                    proptest::prop_assert!(expected > MAX_DURATION.as_nanos());
                    proptest::prop_assert!(e.contains("at most 365d"), "{}", e);
                }
            }
        }
    }

    #[test]
    fn sizes_read_like_systemd() {
        let table = [
            ("4096", 4096),
            ("1K", 1024),
            ("512K", 512 << 10),
            ("256M", 256 << 20),
            ("256MiB", 256 << 20),
            ("1G", 1 << 30),
            ("2 GiB", 2 << 30),
            ("1T", 1 << 40),
            (" 10B ", 10),
        ];
        for (text, bytes) in table {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for bad in [
            "",
            "K",
            "1X",
            "-1K",
            "1.5G",
            "0",
            "2T",
            "18446744073709551615K",
            "99999999999999999999999",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_size("2T").unwrap_err().contains("maximum is 1.0 TiB"));
        assert_eq!(show_size(2048), "2.0 KiB");
        assert_eq!(show_size(500 << 20), "500.0 MiB");
        assert_eq!(show_size(1000), "1000 B");
    }

    #[test]
    fn env_file_follows_environmentfile_syntax() {
        let text = "# comment\n; other comment\n\nGITOPS_REPO_URL=git://h/r\n  GITOPS_BRANCH = prod \nQ1='a b'\nQ2=\"x \\\"y\\\"\"\nLONG=one \\\ntwo\nexport E=1\nEMPTY=\n";
        let parsed = parse_env_file(text).unwrap();
        let expect = [
            ("GITOPS_REPO_URL", "git://h/r"),
            ("GITOPS_BRANCH", "prod"),
            ("Q1", "a b"),
            ("Q2", "x \"y\""),
            ("LONG", "one two"),
            ("E", "1"),
            ("EMPTY", ""),
        ];
        let got: Vec<(&str, &str)> = parsed
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, expect);
        assert!(parse_env_file("just words\n")
            .unwrap_err()
            .contains("line 1"));
        assert!(parse_env_file("A=1\n9X=2\n")
            .unwrap_err()
            .contains("line 2"));
        assert!(parse_env_file("A=1 \\").is_err());
        assert_eq!(
            parse_env_file("A=1\nB=x\0y\n").unwrap_err(),
            "line 2: the value of B holds a NUL byte, which no environment variable can hold"
        );
        assert!(parse_env_file("A\0=1\n")
            .unwrap_err()
            .starts_with("line 1: \"A\\0\" is not a valid variable name"));
    }

    #[test]
    fn a_mistyped_variable_is_matched_to_the_nearest_known_one() {
        let known: Vec<String> = [
            "GITOPS_BRANCH",
            "GITOPS_REPO_URL",
            "GITOPS_CHECKOUT",
            "GITOPS_APPLY",
            "GITOPS_APPLY_TIMEOUT",
            "GITOPS_SSH_KEY",
        ]
        .map(String::from)
        .to_vec();
        let table = [
            ("GITOPS_BRANHC", Some("GITOPS_BRANCH")),
            ("GITOPS_BRANCHES", Some("GITOPS_BRANCH")),
            ("GITOPS_REPOURL", Some("GITOPS_REPO_URL")),
            ("GITOPS_REPO_ULR", Some("GITOPS_REPO_URL")),
            ("GITOPS_APLY", Some("GITOPS_APPLY")),
            ("GITOPS_APPLY_TIMOUT", Some("GITOPS_APPLY_TIMEOUT")),
            ("GITOPS_SSHKEY", Some("GITOPS_SSH_KEY")),
            ("GITOPS_SOMETHING_ELSE", None),
            ("GITOPS_Ä", None),
        ];
        for (key, nearest) in table {
            assert_eq!(nearest_variable(key, &known), nearest, "{key}");
        }
        assert_eq!(nearest_variable("GITOPS_X", &[]), None);
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn env_file_text_skips_a_bom_and_refuses_other_encodings() {
        assert_eq!(env_file_text(b"\xEF\xBB\xBFA=1\n"), Ok("A=1\n"));
        assert_eq!(env_file_text(b"A=1\n"), Ok("A=1\n"));
        let latin1 = b"GITOPS_BRANCH=caf\xE9\n";
        assert_eq!(env_file_text(latin1).unwrap_err().valid_up_to(), 17);
    }

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

    #[test]
    fn urls_are_redacted() {
        let table = [
            ("https://user:tok@host/r.git", "https://***@host/r.git"),
            ("https://tok@host/r.git", "https://***@host/r.git"),
            ("http://host/r.git", "http://host/r.git"),
            ("ssh://git@host/r.git", "ssh://git@host/r.git"),
            ("ssh://git:pw@host/r.git", "ssh://git:***@host/r.git"),
            ("git@host:org/r.git", "git@host:org/r.git"),
            ("/srv/r.git", "/srv/r.git"),
            ("file://u:S3c/ret@/srv/r.git", "file://u:***@/srv/r.git"),
        ];
        for (url, shown) in table {
            assert_eq!(
                RepoUrl::parse(url).map(|u| u.redacted).ok(),
                Some(shown.to_string()),
                "{url}"
            );
        }
    }

    #[test]
    fn urls_are_validated() {
        for good in [
            "git://127.0.0.1:9418/r",
            "https://h/r.git",
            "ssh://git@h:22/r",
            "git@h:org/r.git",
            "/srv/r.git",
            "file:///srv/r.git",
        ] {
            assert!(RepoUrl::parse(good).is_ok(), "{good} should parse");
        }
        for bad in [
            "ftp://h/r",
            "git://",
            "http:///r",
            "https://h",
            "file://relative",
        ] {
            let err = RepoUrl::parse(bad).unwrap_err();
            assert_eq!(crate::exit::code_of(&err), Exit::Usage, "{bad}");
        }
        let err = RepoUrl::parse("ftp://u:secret@h/r").unwrap_err();
        assert!(!format!("{err:#}").contains("secret"));
        let err = RepoUrl::parse("ftp://u:se/cr?et#@h/r").unwrap_err();
        let text = format!("{err:#}");
        assert!(!text.contains("se/cr") && !text.contains("et#"), "{text}");
        let path = RepoUrl::parse("https://h/a@b/r.git").unwrap();
        assert_eq!(
            path.raw, "https://h/a@b/r.git",
            "an @ in the path is not a user"
        );
        assert_eq!(path.credentials, None);
        let url = RepoUrl::parse("https://u:se/cr?et#@h/r").unwrap();
        assert_eq!(
            (url.raw.as_str(), url.redacted.as_str()),
            ("https://h/r", "https://***@h/r")
        );
    }

    #[test]
    fn urls_that_fail_to_parse_show_no_password_whatever_it_holds() {
        let table = [
            (
                "http://u:my secret@127.0.0.1:1/r.git",
                "http://***@127.0.0.1:1/r.git",
                "my secret",
            ),
            (
                "http://u:q\"uo<te>@127.0.0.1:1/r.git",
                "http://***@127.0.0.1:1/r.git",
                "uo<te",
            ),
            ("ftp://u:a b@h/r", "ftp://u:***@h/r", "a b"),
            // No host after the user part: everything up to the last @ goes.
            ("http://u:my secret@", "http://***@", "my secret"),
            ("git://u:p w@@/", "git://***@/", "p w"),
        ];
        for (raw, shown, secret) in table {
            assert_eq!(unusable_url_shown(raw), shown, "{raw}");
            let err = format!("{:#}", RepoUrl::parse(raw).unwrap_err());
            assert!(!err.contains(secret), "{raw}: {err}");
        }
    }

    #[test]
    fn https_credentials_are_kept_out_of_the_url_gix_sees() {
        let url = RepoUrl::parse("https://deploy:t0ken-x@git.example.com/org/cfg.git").unwrap();
        assert_eq!(url.raw, "https://git.example.com/org/cfg.git");
        assert_eq!(url.redacted, "https://***@git.example.com/org/cfg.git");
        assert_eq!(url.credentials, Some(("deploy".into(), "t0ken-x".into())));
        assert_eq!(url.secrets(), ["deploy", "t0ken-x"]);
        let url = RepoUrl::parse("https://de%40ploy:t0k#en/x@h/r.git").unwrap();
        assert_eq!(url.raw, "https://h/r.git");
        assert_eq!(url.credentials, Some(("de@ploy".into(), "t0k#en/x".into())));
        let ssh = RepoUrl::parse("ssh://git@h/r.git").unwrap();
        assert_eq!(ssh.raw, "ssh://git@h/r.git");
        assert!(ssh.secrets().is_empty());
        for (other, fetched) in [
            ("ssh://git:pa55word@h/r.git", "ssh://git@h/r.git"),
            ("file://u:pa55word@/srv/r.git", "file://u@/srv/r.git"),
        ] {
            let url = RepoUrl::parse(other).unwrap();
            assert_eq!(url.raw, fetched, "gix never sees the password of {other}");
            assert_eq!(url.secrets(), ["pa55word"], "{other}");
            assert!(!url.redacted.contains("pa55word"), "{other}");
        }
    }
}

//! `gitops status`: what is applied, how the last pass ended, what is pending.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use time::OffsetDateTime;

use crate::exit::Exit;
use crate::pass::run::unfinished_error;
use crate::pass::state::{self, Layout, State};

/// The options of `gitops status`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub state: crate::config::StateDir,
    /// Print state.json as it is instead of the summary
    #[arg(long)]
    pub json: bool,
    /// Exit 1 when the last pass finished longer ago than this (a stopped timer); 0 turns it off
    #[arg(
        long,
        env = "GITOPS_STATUS_MAX_AGE",
        value_name = "DURATION",
        default_value = "1h",
        value_parser = crate::config::parse_duration
    )]
    pub max_age: Duration,
    /// Print the metrics instead of the summary: the Prometheus text --metrics-dir gets
    #[arg(long, conflicts_with = "json")]
    pub prometheus: bool,
    /// Print an apply's log as it is: the last apply's, or the newest for COMMIT (4 or more hex digits of it)
    #[arg(long, value_name = "COMMIT", num_args = 0..=1, conflicts_with_all = ["json", "prometheus"])]
    pub log: Option<Option<String>>,
    #[command(flatten)]
    pub trigger: crate::trigger::options::StatsDir,
    /// The systemctl program asked when gitops.timer runs next [default: systemctl, on a machine booted with systemd]
    #[arg(long, env = "GITOPS_SYSTEMCTL", value_name = "PROGRAM")]
    pub systemctl: Option<String>,
}

/// Print the status and return the exit code: 0 when healthy, 1 otherwise, so the command
/// serves as a health check. Reads only: it never creates or modifies anything.
pub fn run(state_dir: &Path, args: &Args, now: OffsetDateTime) -> Result<Exit> {
    let layout = Layout::new(state_dir);
    if let Some(commit) = &args.log {
        return print_log(&layout, commit.as_deref());
    }
    // What would stop every sync before it records anything: the last recorded pass may look
    // fine while every pass since was refused.
    let blocked = Blocked {
        refused: crate::pass::guard::private_problem_for(&layout, "status"),
        lock: layout.lock_problem(),
    };
    // A health check reads exit 1 as "not healthy"; an unreadable state is not healthy either.
    let recorded = state::read(&layout).map_err(|e| {
        crate::exit::fail(
            Exit::ApplyFailed,
            unreadable(&e, blocked.refused.as_deref()),
        )
    })?;
    let running = Lock::found(&layout, recorded.as_ref());
    let outbox_events = crate::report::notify::outbox::len(&layout);
    let trigger = crate::trigger::record::read_for_report(&args.trigger.trigger_state_dir);
    let colour = colour_wanted();
    let Some(state) = recorded else {
        if args.json {
            out!("{}", serde_json::to_string_pretty(&State::default())?);
        } else if args.prometheus {
            print_raw(
                crate::report::metrics::render(&State::default(), outbox_events, trigger.as_ref())
                    .as_bytes(),
            );
        } else {
            out!(
                "no pass has run yet: gitops sync has recorded nothing in {} (is --state-dir the one gitops.service uses?)",
                state_dir.display()
            );
            let lines: Vec<Line> = blocked
                .reasons()
                .into_iter()
                .map(|reason| Line::new("unhealthy", Tone::Bad, reason))
                .collect();
            if !lines.is_empty() {
                out!("{}", format_lines(&lines, colour).trim_end());
            }
        }
        return Ok(Exit::ApplyFailed);
    };
    let (healthy, reasons) = health(&state, &running, &blocked, now, args.max_age);
    if args.json {
        out!("{}", serde_json::to_string_pretty(&state)?);
    } else if args.prometheus {
        print_raw(
            crate::report::metrics::render(&state, outbox_events, trigger.as_ref()).as_bytes(),
        );
    } else {
        let seen = Seen {
            next_pass: systemctl_program(args.systemctl.as_deref())
                .and_then(|program| ask_next_elapse(&program))
                .and_then(|text| parse_next_elapse(&text, now, monotonic_now())),
            outbox_events,
            trigger,
        };
        let mut lines = summary(&state, running == Lock::Pass, now, &seen);
        lines.extend(
            reasons
                .into_iter()
                .map(|reason| Line::new("unhealthy", Tone::Bad, reason)),
        );
        out!("{}", format_lines(&lines, colour).trim_end());
    }
    Ok(if healthy { Exit::Ok } else { Exit::ApplyFailed })
}

/// Bytes to stdout as they are, a reader that went away ignored (`gitops status --log | head`).
fn print_raw(bytes: &[u8]) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(bytes).and_then(|()| stdout.flush());
}

/// Colour only for a person at a terminal, and not when they asked for none (no-color.org: a
/// NO_COLOR set and not empty).
fn colour_wanted() -> bool {
    use std::io::IsTerminal as _;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// How long status waits for systemctl: a health check must answer even when systemd does not.
const SYSTEMCTL_BOUND: Duration = Duration::from_secs(2);

/// The program to ask about the timer: the one named (--systemctl, GITOPS_SYSTEMCTL), else
/// systemctl on a machine booted with systemd (sd_booted(3)'s test); none elsewhere.
fn systemctl_program(named: Option<&str>) -> Option<String> {
    match named.filter(|p| !p.is_empty()) {
        Some(program) => Some(program.to_string()),
        None => Path::new("/run/systemd/system")
            .is_dir()
            .then(|| "systemctl".to_string()),
    }
}

/// What systemctl says of gitops.timer's next run (both clocks: `parse_next_elapse`).
fn ask_next_elapse(program: &str) -> Option<String> {
    bounded_output(
        program,
        &[
            "show",
            "gitops.timer",
            "-p",
            "NextElapseUSecRealtime",
            "-p",
            "NextElapseUSecMonotonic",
        ],
    )
}

/// What `program ARGS` prints, if it exits 0 within `SYSTEMCTL_BOUND`, in UTC and the C locale
/// so that times can be read back. None otherwise: systemd's tools may hang or be missing.
pub fn bounded_output(program: &str, args: &[&str]) -> Option<String> {
    use std::io::Read as _;
    use std::process::{Command, Stdio};
    let mut child = Command::new(program)
        .args(args)
        .env("TZ", "UTC")
        .env("LC_ALL", "C")
        .env("SYSTEMD_PAGER", "")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = std::time::Instant::now() + SYSTEMCTL_BOUND;
    let mut stdout = child.stdout.take()?;
    let (tx, rx) = std::sync::mpsc::channel();
    // Read apart: a process it left behind may hold the pipe open long after it exits.
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = (&mut stdout).take(4096).read_to_end(&mut bytes);
        let _ = tx.send(bytes);
    });
    let bytes = rx.recv_timeout(SYSTEMCTL_BOUND).ok();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    status.filter(|s| s.success())?;
    String::from_utf8(bytes?).ok()
}

/// When the timer fires next, from systemctl's `NextElapseUSecRealtime=` (a calendar timer:
/// "Wed 2026-12-02 18:30:00 UTC", in UTC as asked, or "@1796230200") or, for a timer on
/// monotonic time as gitops.timer is (OnBootSec=, OnUnitInactiveSec=), `NextElapseUSecMonotonic=`
/// (a time span since boot, "1h 5min 3.250000s") against the monotonic clock now. None for a
/// timer with no next run ("", "n/a", "infinity", "0") or anything else.
pub fn parse_next_elapse(
    text: &str,
    now: OffsetDateTime,
    monotonic_now: Duration,
) -> Option<OffsetDateTime> {
    let value = |key: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(key)?.strip_prefix('='))
            .map(str::trim)
    };
    if let Some(at) = value("NextElapseUSecRealtime").and_then(parse_realtime) {
        return Some(at);
    }
    let since_boot = value("NextElapseUSecMonotonic").and_then(parse_timespan)?;
    if since_boot.is_zero() {
        return None;
    }
    let left = since_boot.saturating_sub(monotonic_now);
    Some(now + time::Duration::try_from(left).ok()?)
}

fn parse_realtime(text: &str) -> Option<OffsetDateTime> {
    if let Some(secs) = text.strip_prefix('@') {
        return OffsetDateTime::from_unix_timestamp(secs.parse().ok()?).ok();
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let [_weekday, date, clock, "UTC"] = words.as_slice() else {
        return None;
    };
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::PrimitiveDateTime::parse(&format!("{date} {clock}"), format)
        .ok()
        .map(time::PrimitiveDateTime::assume_utc)
}

/// A time span as systemd prints one (format_timespan): "2min 10.5s", "1d 3h", "500ms", "0".
fn parse_timespan(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    for word in text.split_whitespace() {
        let unit_at = word.find(|c: char| c.is_ascii_alphabetic())?;
        let (number, unit) = word.split_at(unit_at);
        let number: f64 = number
            .parse()
            .ok()
            .filter(|n: &f64| n.is_finite() && *n >= 0.0)?;
        let seconds = match unit {
            "y" => 31_557_600.0,
            "month" => 2_629_800.0,
            "w" => 604_800.0,
            "d" => 86_400.0,
            "h" => 3_600.0,
            "min" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "μs" => 1e-6,
            _ => return None,
        };
        total += number * seconds;
    }
    (total > 0.0 && total < 1e12).then(|| Duration::from_secs_f64(total))
}

/// CLOCK_MONOTONIC, the clock of a monotonic timer's next elapse.
fn monotonic_now() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| {
            Duration::new(
                t.tv_sec().max(0) as u64,
                t.tv_nsec().clamp(0, 999_999_999) as u32,
            )
        })
        .unwrap_or_default()
}

/// `gitops status --log [COMMIT]`: print an apply's log as it is. Exit 1 when there is none.
fn print_log(layout: &Layout, commit: Option<&str>) -> Result<Exit> {
    use crate::exit::fail;
    let logs = layout.logs();
    if let Some(prefix) = commit {
        let hex = prefix.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex || !(4..=64).contains(&prefix.len()) {
            return Err(fail(
                Exit::Usage,
                format!(
                    "--log {prefix:?} is not a commit: give 4 or more hex digits of one (gitops status --log 3f2a91c), or nothing for the last apply's log"
                ),
            ));
        }
    }
    let present = log_files(&logs)?;
    // What state.json names, by file name only: a log is read from logs/ and nowhere else.
    let state = state::read(layout).ok().flatten().unwrap_or_default();
    let recorded: Vec<String> = [
        state.applied.as_ref().and_then(|a| a.log.clone()),
        state.pending.as_ref().and_then(|p| p.log.clone()),
        state.in_progress.as_ref().and_then(|p| p.log.clone()),
    ]
    .into_iter()
    .flatten()
    .filter_map(|path| {
        Path::new(&path)
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
    })
    .collect();
    let Some(name) = choose_log(&recorded, &present, commit) else {
        return Err(fail(
            Exit::ApplyFailed,
            match commit {
                Some(prefix) => format!(
                    "no apply log for a commit starting {prefix} in {}: gitops keeps the logs of the last {} applies (ls {})",
                    logs.display(),
                    crate::pass::apply::KEEP_LOGS,
                    logs.display()
                ),
                None => format!(
                    "no apply log in {}: no pass has run an entry point yet",
                    logs.display()
                ),
            },
        ));
    };
    let unreadable = |e: std::io::Error| {
        let why = match e.raw_os_error() {
            Some(nix::libc::ELOOP) => {
                "it is a symlink, and status never follows one out of logs/".to_string()
            }
            _ => e.to_string(),
        };
        fail(
            Exit::ApplyFailed,
            format!(
                "could not read the apply log {}: {why}",
                logs.join(&name).display()
            ),
        )
    };
    let mut file = open_log(&logs, &name).map_err(unreadable)?;
    // Streamed: a chatty entry point's log can be large.
    match std::io::copy(&mut file, &mut std::io::stdout().lock()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(unreadable(e)),
        _ => Ok(Exit::Ok),
    }
}

/// A log file in logs/: its name and when it was last written.
pub type LogFile = (String, std::time::SystemTime);

/// The log files in logs/; none if there is no logs/ or it is not a directory of its own (a
/// symlink). One that cannot be listed (root's, read by another user) is an error.
fn log_files(logs: &Path) -> Result<Vec<LogFile>> {
    if !std::fs::symlink_metadata(logs).is_ok_and(|m| m.is_dir()) {
        return Ok(Vec::new());
    }
    let entries = std::fs::read_dir(logs).map_err(|e| {
        let fix = match e.kind() {
            std::io::ErrorKind::PermissionDenied if !nix::unistd::geteuid().is_root() => {
                "; run gitops as root (sudo gitops status --log)"
            }
            _ => "",
        };
        crate::exit::fail(
            Exit::ApplyFailed,
            format!(
                "could not list the apply logs in {}: {e}{fix}",
                logs.display()
            ),
        )
    })?;
    Ok(entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let modified = e.metadata().and_then(|m| m.modified()).ok()?;
            Some((e.file_name().into_string().ok()?, modified))
        })
        .filter(|(name, _)| name.ends_with(".log"))
        .collect())
}

/// Which log to print. Names start with the second the apply started (apply.rs log_path:
/// `<stamp>-<commit>.log`); two applies in one second are told apart by when their logs were
/// last written. With a commit prefix: the newest log of a commit it starts; without: the
/// newest of those state.json names (applied, pending, in progress), else the newest there is.
pub fn choose_log(
    recorded: &[String],
    present: &[LogFile],
    commit: Option<&str>,
) -> Option<String> {
    let newest = |files: &mut dyn Iterator<Item = &LogFile>| {
        files
            .max_by_key(|(name, modified)| {
                (
                    name.split('-').next().map(str::to_string),
                    *modified,
                    name.clone(),
                )
            })
            .map(|(name, _)| name.clone())
    };
    match commit {
        Some(prefix) => {
            let prefix = prefix.to_ascii_lowercase();
            newest(&mut present.iter().filter(|(name, _)| {
                name.split_once('-')
                    .is_some_and(|(_, rest)| rest.starts_with(&prefix))
            }))
        }
        None => newest(&mut present.iter().filter(|(name, _)| recorded.contains(name)))
            .or_else(|| newest(&mut present.iter())),
    }
}

/// Open `logs/<name>`, relative to logs/ without following a link and without blocking
/// on a FIFO, and only if it is a regular file.
fn open_log(logs: &Path, name: &str) -> std::io::Result<std::fs::File> {
    use nix::fcntl::OFlag;
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NOFOLLOW)
        .open(logs)?;
    let fd = nix::fcntl::openat(
        &dir,
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let file = std::fs::File::from(fd);
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// Why `state.json` could not be read, with the fix: a state directory that is root's, read by
/// another user, is for root to look at, never to be handed to that user.
fn unreadable(e: &anyhow::Error, refused: Option<&str>) -> String {
    let denied = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
    });
    let line = crate::pass::one_line(e);
    match refused {
        Some(refused) if denied => format!("{line}; {refused}"),
        _ if denied && !nix::unistd::geteuid().is_root() => {
            format!("{line}; run gitops as root (sudo gitops status)")
        }
        _ => line,
    }
}

/// What stops every `gitops sync` before it can record anything, found by looking at the state
/// directory.
#[derive(Debug, Default)]
pub struct Blocked {
    /// Why sync refuses the state directory (its sentence, with the fix).
    pub refused: Option<String>,
    /// Why sync cannot take the lock (something other than a file is there).
    pub lock: Option<String>,
}

impl Blocked {
    fn reasons(&self) -> Vec<String> {
        self.refused
            .iter()
            .chain(self.lock.iter())
            .cloned()
            .collect()
    }
}

/// Who holds the pass lock, as far as status can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lock {
    /// Nobody: no pass is running.
    Free,
    /// A pass: applying (the pid recorded in `in_progress` is a live gitops), or fetching, or
    /// another program (no `in_progress`), which status cannot tell apart.
    Pass,
    /// The pass recorded in `in_progress` is dead, yet the lock is held: processes its entry
    /// point started (named, when /proc tells) keep it, and every sync waits for them.
    Orphaned(Option<String>),
}

impl Lock {
    fn found(layout: &Layout, state: Option<&State>) -> Lock {
        if !layout.pass_running() {
            return Lock::Free;
        }
        match state.and_then(|s| s.in_progress.as_ref()) {
            Some(p) if !state::pid_is_live_gitops(p.pid) => Lock::Orphaned(layout.lock_holders()),
            _ => Lock::Pass,
        }
    }
}

/// How far in the future the last pass may seem to have finished before the clock is suspect:
/// room for a little skew between the machine's clock and an NTP step.
const FUTURE_SLACK_SECS: i64 = 300;

/// Whether the machine is healthy, and why not: no sync is blocked before it can record, the
/// last pass succeeded, no pass died while applying, and the last pass is recent enough
/// (`max_age` zero: any age) and not in the future.
pub fn health(
    state: &State,
    lock: &Lock,
    blocked: &Blocked,
    now: OffsetDateTime,
    max_age: Duration,
) -> (bool, Vec<String>) {
    let mut reasons = blocked.reasons();
    if let Some(unfinished) = &state.in_progress {
        match lock {
            Lock::Free => reasons.push(unfinished_error(unfinished)),
            Lock::Pass => {}
            Lock::Orphaned(holders) => reasons.push(format!(
                "the pass applying {} (pid {}) was killed; processes it started still hold the lock, so every sync waits for them: let them finish, or stop them{}",
                short(&unfinished.commit),
                unfinished.pid,
                holders
                    .as_deref()
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default()
            )),
        }
    }
    if let Some(stale) = &state.stale {
        reasons.push(crate::pass::run::stale_error(stale, now));
    }
    match &state.last_pass {
        None => reasons.push("no pass has finished yet".to_string()),
        Some(pass) => {
            if !pass.outcome.is_success() {
                reasons.push(format!("the last pass ended {}", pass.outcome.as_str()));
            }
            let ahead = parse_time(&pass.finished_at).map(|then| (then - now).whole_seconds());
            if let Some(ahead) = ahead.filter(|&a| a > FUTURE_SLACK_SECS) {
                reasons.push(format!(
                    "the last pass finished at {}, {} from now: is the clock right? (timedatectl)",
                    pass.finished_at,
                    span(ahead)
                ));
            }
            if !max_age.is_zero() {
                match parse_time(&pass.finished_at) {
                    Some(then) => {
                        let secs = (now - then).whole_seconds().max(0);
                        if u64::try_from(secs).unwrap_or(0) > max_age.as_secs() {
                            reasons.push(format!(
                                "no pass for {}: is gitops.timer running?",
                                span(secs)
                            ));
                        }
                    }
                    None => reasons.push(format!(
                        "the last pass's time {:?} is unreadable",
                        pass.finished_at
                    )),
                }
            }
        }
    }
    (reasons.is_empty(), reasons)
}

/// What status sees beside state.json: the timer's next run and the outbox.
#[derive(Debug, Default)]
pub struct Seen {
    /// When gitops.timer runs next, as systemd says; None where it cannot tell.
    pub next_pass: Option<OffsetDateTime>,
    pub outbox_events: usize,
    /// The trigger's counters, when it has run here.
    pub trigger: Option<crate::trigger::record::Stats>,
}

/// How a line's text is coloured on a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Plain,
    /// Applied, a successful pass.
    Good,
    /// Failures, errors, why the machine is unhealthy.
    Bad,
    /// A commit waiting to apply.
    Pending,
}

/// One line of the summary: a label ("  error" is under the line above) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub label: &'static str,
    pub tone: Tone,
    pub text: String,
}

impl Line {
    fn new(label: &'static str, tone: Tone, text: String) -> Line {
        Line { label, tone, text }
    }
}

/// Where the texts start: one column, so the eye runs down it.
const COLUMN: usize = 14;

/// The lines, labels padded to one column, texts coloured by their tone when `colour`.
pub fn format_lines(lines: &[Line], colour: bool) -> String {
    let mut out = String::new();
    for line in lines {
        let label = format!("{}:", line.label);
        let width = COLUMN.max(label.chars().count() + 1);
        let text = match (colour, line.tone) {
            (false, _) | (_, Tone::Plain) => line.text.clone(),
            (true, Tone::Good) => format!("\x1b[32m{}\x1b[0m", line.text),
            (true, Tone::Bad) => format!("\x1b[31m{}\x1b[0m", line.text),
            (true, Tone::Pending) => format!("\x1b[33m{}\x1b[0m", line.text),
        };
        let _ = writeln!(out, "{label:<width$}{text}");
    }
    out
}

/// The human summary, without colour: what the tests read.
#[cfg(test)]
fn render(state: &State, pass_running: bool, now: OffsetDateTime, seen: &Seen) -> String {
    format_lines(&summary(state, pass_running, now, seen), false)
}

/// The human summary's lines.
pub fn summary(state: &State, pass_running: bool, now: OffsetDateTime, seen: &Seen) -> Vec<Line> {
    let mut out = Vec::new();
    if let (Some(p), true) = (&state.in_progress, pass_running) {
        out.push(Line::new(
            "running",
            Tone::Plain,
            format!(
                "a pass is applying {} (pid {}), started {}",
                short(&p.commit),
                p.pid,
                age(&p.started_at, now)
            ),
        ));
    }
    let Some(pass) = &state.last_pass else {
        out.push(Line::new(
            "last pass",
            Tone::Plain,
            "none has finished yet".into(),
        ));
        out.extend(notify_lines(state, now, seen));
        return out;
    };
    out.push(Line::new(
        "repository",
        Tone::Plain,
        format!(
            "{} (branch {})",
            state.repo_url.as_deref().unwrap_or("?"),
            state.branch.as_deref().unwrap_or("?")
        ),
    ));
    out.push(match &state.applied {
        Some(a) => Line::new(
            "applied",
            Tone::Good,
            format!(
                "{} {:?}, {}",
                short(&a.commit),
                a.subject.as_deref().unwrap_or(""),
                age(&a.applied_at, now)
            ),
        ),
        None => Line::new("applied", Tone::Plain, "nothing yet".into()),
    });
    if let Some(signer) = state.applied.as_ref().and_then(|a| a.signer.as_ref()) {
        out.push(Line::new(
            "  signed by",
            Tone::Plain,
            format!(
                "{} ({} key {})",
                signer.principal, signer.method, signer.fingerprint
            ),
        ));
    }
    if let Some(stale) = &state.stale {
        out.push(Line::new(
            "stale",
            Tone::Bad,
            crate::pass::run::stale_error(stale, now),
        ));
    }
    out.push(Line::new(
        "last pass",
        if pass.outcome.is_success() {
            Tone::Good
        } else {
            Tone::Bad
        },
        format!("{}, {}", pass.outcome.as_str(), age(&pass.finished_at, now)),
    ));
    if let Some(error) = &pass.error {
        out.push(Line::new("  error", Tone::Bad, error.clone()));
    }
    if let Some(next) = seen.next_pass {
        let secs = (next - now).whole_seconds();
        let when = match secs {
            ..=0 => "due now".to_string(),
            secs => format!("in {}", span(secs)),
        };
        out.push(Line::new(
            "next pass",
            Tone::Plain,
            format!("{} ({when})", crate::pass::run::rfc3339(next)),
        ));
    }
    if let Some(p) = &state.pending {
        let subject = p
            .subject
            .as_deref()
            .map(|s| format!(" {s:?}"))
            .unwrap_or_default();
        let attempts = format!(
            "{} failed attempt{}",
            p.attempts,
            if p.attempts == 1 { "" } else { "s" }
        );
        // The usual case: the last pass was this commit's failed attempt, whose error is shown
        // just above.
        let text = if pass.error.as_deref() == Some(p.last_error.as_str()) {
            format!("{}{subject} after {attempts}", short(&p.commit))
        } else {
            format!(
                "{}{subject} after {attempts}: {}",
                short(&p.commit),
                p.last_error
            )
        };
        out.push(Line::new("pending", Tone::Pending, text));
        if let Some(log) = &p.log {
            out.push(Line::new("  log", Tone::Plain, log.clone()));
        }
    }
    if state.consecutive_failures > 0 {
        out.push(Line::new(
            "failures",
            Tone::Bad,
            format!("{} consecutive", state.consecutive_failures),
        ));
    }
    out.extend(notify_lines(state, now, seen));
    out.extend(reboot_line(state, now));
    out.extend(trigger_line(seen.trigger.as_ref(), now));
    out
}

/// The trigger's last request and its counters; nothing where it has never run.
fn trigger_line(
    trigger: Option<&crate::trigger::record::Stats>,
    now: OffsetDateTime,
) -> Option<Line> {
    let t = trigger?;
    let last = match &t.last {
        Some(last) => format!(
            "last {} request from {} {}: {}",
            last.forge,
            last.source,
            age(&last.time, now),
            last.answer
        ),
        None => "no request accepted yet".to_string(),
    };
    let refused: u64 = t.refused.values().sum();
    let reasons: Vec<String> = t
        .refused
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    let reasons = match reasons.is_empty() {
        true => String::new(),
        false => format!(" ({})", reasons.join(", ")),
    };
    let failed = match t.start_failed {
        0 => String::new(),
        n => format!(", {n} could not start one (see journalctl -u gitops-trigger)"),
    };
    Some(Line::new(
        "trigger",
        if t.start_failed > 0 { Tone::Bad } else { Tone::Plain },
        format!(
            "{last}; {} accepted, {} started a pass{failed}, {} coalesced, {} ignored, {refused} refused{reasons}",
            t.accepted, t.started, t.coalesced, t.ignored
        ),
    ))
}

/// The reboot plan as the last pass saw it; nothing while no reboot is requested.
fn reboot_line(state: &State, now: OffsetDateTime) -> Option<Line> {
    let reboot = state.reboot.as_ref().filter(|r| r.decision != "none")?;
    let tone = match reboot.decision.as_str() {
        "satisfied" => Tone::Good,
        "scheduled" | "reboot-now" => Tone::Pending,
        _ => Tone::Bad,
    };
    let when = match reboot.evaluated_at.as_str() {
        "" => String::new(),
        at => format!("; seen {}", age(at, now)),
    };
    Some(Line::new(
        "reboot",
        tone,
        format!(
            "{}{when}",
            crate::reboot::plan::shown(&reboot.decision, &crate::pass::run::shown(&reboot.reason))
        ),
    ))
}

/// The notifications: what waits in the outbox and the last delivery that failed. Shown when
/// notifications are configured or events wait; a failed delivery is shown, and never makes
/// the machine unhealthy (the pass it tells of did what it did).
fn notify_lines(state: &State, now: OffsetDateTime, seen: &Seen) -> Vec<Line> {
    let mut out = Vec::new();
    if state.notify.is_none() && seen.outbox_events == 0 {
        return out;
    }
    let waiting = match seen.outbox_events {
        0 => "no event waiting".to_string(),
        1 => "1 event waiting to be sent".to_string(),
        n => format!("{n} events waiting to be sent"),
    };
    let delivered = state
        .notify
        .as_ref()
        .and_then(|n| n.last_delivered_at.as_deref())
        .map(|at| format!(", last delivered {}", age(at, now)))
        .unwrap_or_default();
    out.push(Line::new(
        "notify",
        if seen.outbox_events == 0 {
            Tone::Plain
        } else {
            Tone::Pending
        },
        format!("{waiting}{delivered}"),
    ));
    if let Some(notify) = &state.notify {
        if let Some(error) = &notify.last_error {
            let when = notify
                .last_error_at
                .as_deref()
                .map(|at| format!(", {}", age(at, now)))
                .unwrap_or_default();
            out.push(Line::new(
                "  error",
                Tone::Bad,
                format!(
                    "{}{when}",
                    crate::pass::run::shown(&crate::redact::scrub(error))
                ),
            ));
        }
    }
    out
}

fn parse_time(stamp: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).ok()
}

/// "3h 5min".
fn span(secs: i64) -> String {
    match secs {
        ..60 => format!("{secs}s"),
        60..3600 => format!("{}min", secs / 60),
        3600..86400 => format!("{}h {}min", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86400, secs % 86400 / 3600),
    }
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// "3h 5min ago (2026-11-25T10:00:00Z)".
fn age(stamp: &str, now: OffsetDateTime) -> String {
    let Some(then) = parse_time(stamp) else {
        return stamp.to_string();
    };
    let secs = (now - then).whole_seconds().max(0);
    format!("{} ago ({stamp})", span(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pass::state::{Applied, LastPass, Outcome, Pending};

    #[test]
    fn summary_names_applied_last_pass_and_pending() {
        let state = State {
            repo_url: Some("git://h/r".into()),
            branch: Some("main".into()),
            applied: Some(Applied {
                commit: "a".repeat(40),
                applied_at: "2026-11-25T08:00:00Z".into(),
                log: None,
                subject: Some("Set the motd".into()),
                committed_at: None,
                signer: None,
            }),
            last_pass: Some(LastPass {
                started_at: "2026-11-25T09:59:58Z".into(),
                finished_at: "2026-11-25T09:59:59Z".into(),
                outcome: Outcome::ApplyFailed,
                remote_commit: Some("b".repeat(40)),
                error: Some("run.sh exited with status 3".into()),
                duration_ms: None,
            }),
            pending: Some(Pending {
                commit: "b".repeat(40),
                attempts: 2,
                last_error: "run.sh exited with status 3".into(),
                log: Some("/var/lib/gitops/logs/x.log".into()),
                subject: Some("Break the motd".into()),
            }),
            consecutive_failures: 2,
            in_progress: None,
            ..State::default()
        };
        let now = time::macros::datetime!(2026-11-25 10:00:00 UTC);
        let text = render(&state, false, now, &Seen::default());
        assert!(
            text.contains("applied:      aaaaaaaaaaaa \"Set the motd\", 2h 0min ago"),
            "{text}"
        );
        assert!(
            text.contains("last pass:    apply-failed, 1s ago"),
            "{text}"
        );
        assert!(
            text.contains(
                "pending:      bbbbbbbbbbbb \"Break the motd\" after 2 failed attempts\n"
            ),
            "{text}"
        );
        assert_eq!(
            text.matches("run.sh exited with status 3").count(),
            1,
            "one error, under one heading: {text}"
        );
        assert!(text.contains("failures:     2 consecutive"), "{text}");
    }

    fn passed(outcome: Outcome, finished_at: &str) -> State {
        State {
            last_pass: Some(LastPass {
                started_at: finished_at.into(),
                finished_at: finished_at.into(),
                outcome,
                remote_commit: None,
                error: None,
                duration_ms: None,
            }),
            ..State::default()
        }
    }

    #[test]
    fn health_is_a_recent_successful_pass_that_no_crash_followed() {
        let now = time::macros::datetime!(2026-11-25 10:00:00 UTC);
        let hour = Duration::from_secs(3600);
        let off = Duration::ZERO;
        let recent = "2026-11-25T09:55:00Z";
        let old = "2026-11-25T06:55:00Z";
        let killed = |mut s: State| {
            s.in_progress = Some(crate::pass::state::InProgress {
                commit: "c".repeat(40),
                started_at: "2026-11-25T09:58:00Z".into(),
                pid: 42,
                log: None,
            });
            s
        };
        let table: Vec<(State, Lock, Duration, bool, &[&str])> = vec![
            (passed(Outcome::Applied, recent), Lock::Free, hour, true, &[]),
            (passed(Outcome::UpToDate, recent), Lock::Free, hour, true, &[]),
            (
                passed(Outcome::ApplyFailed, recent), Lock::Free,
                hour,
                false,
                &["the last pass ended apply-failed"],
            ),
            (
                passed(Outcome::ConfigError, recent), Lock::Free,
                hour,
                false,
                &["the last pass ended config-error"],
            ),
            (
                passed(Outcome::Applied, old), Lock::Free,
                hour,
                false,
                &["no pass for 3h 5min: is gitops.timer running?"],
            ),
            (passed(Outcome::Applied, old), Lock::Free, off, true, &[]),
            (
                killed(passed(Outcome::Applied, recent)), Lock::Free,
                hour,
                false,
                &["the pass applying cccccccccccc started at 2026-11-25T09:58:00Z did not finish: killed or crashed"],
            ),
            // Still running: the lock says so, and the last finished pass decides.
            (killed(passed(Outcome::Applied, recent)), Lock::Pass, hour, true, &[]),
            // The recorded pass is dead but the lock is held: its processes keep every sync out.
            (
                killed(passed(Outcome::Applied, recent)),
                Lock::Orphaned(Some("process pid 303 (sleep)".into())),
                hour,
                false,
                &["the pass applying cccccccccccc (pid 42) was killed; processes it started still hold the lock, so every sync waits for them: let them finish, or stop them (process pid 303 (sleep))"],
            ),
            (
                killed(passed(Outcome::Applied, recent)),
                Lock::Orphaned(None),
                hour,
                false,
                &["the pass applying cccccccccccc (pid 42) was killed; processes it started still hold the lock, so every sync waits for them: let them finish, or stop them"],
            ),
            // Held with nothing in progress: a pass fetching, or another program; as before.
            (passed(Outcome::Applied, recent), Lock::Pass, hour, true, &[]),
            (
                killed(State::default()),
                Lock::Pass,
                hour,
                false,
                &["no pass has finished yet"],
            ),
            (
                passed(Outcome::Applied, "yesterday"), Lock::Free,
                hour,
                false,
                &["the last pass's time \"yesterday\" is unreadable"],
            ),
        ];
        for (state, running, max_age, healthy, reasons) in table {
            let (got_healthy, got_reasons) =
                health(&state, &running, &Blocked::default(), now, max_age);
            assert_eq!(
                (got_healthy, got_reasons.as_slice()),
                (
                    healthy,
                    reasons
                        .iter()
                        .map(|r| r.to_string())
                        .collect::<Vec<_>>()
                        .as_slice()
                ),
                "{state:?} running={running:?} max_age={max_age:?}"
            );
        }
    }

    #[test]
    fn a_blocked_sync_or_a_pass_from_the_future_is_unhealthy() {
        let now = time::macros::datetime!(2026-11-25 10:00:00 UTC);
        let hour = Duration::from_secs(3600);
        let off = Duration::ZERO;
        let fine = Blocked::default();
        let refused = Blocked {
            refused: Some("the state directory /s is open to others (mode 0755), who could make gitops run any code; run chmod 700 /s".into()),
            lock: None,
        };
        let fifo = Blocked {
            refused: None,
            lock: Some("the lock file /s/lock is a FIFO, not a file".into()),
        };
        let recent = "2026-11-25T09:55:00Z";
        let table: Vec<(State, &Blocked, Duration, &[&str])> = vec![
            (passed(Outcome::Applied, recent), &fine, hour, &[]),
            (
                passed(Outcome::Applied, recent),
                &refused,
                hour,
                &["the state directory /s is open to others (mode 0755), who could make gitops run any code; run chmod 700 /s"],
            ),
            (
                passed(Outcome::Applied, recent),
                &fifo,
                hour,
                &["the lock file /s/lock is a FIFO, not a file"],
            ),
            (
                State::default(),
                &fifo,
                hour,
                &[
                    "the lock file /s/lock is a FIFO, not a file",
                    "no pass has finished yet",
                ],
            ),
            // A little skew is not a broken clock.
            (passed(Outcome::Applied, "2026-11-25T10:05:00Z"), &fine, hour, &[]),
            (
                passed(Outcome::Applied, "2026-11-25T10:05:01Z"),
                &fine,
                hour,
                &["the last pass finished at 2026-11-25T10:05:01Z, 5min from now: is the clock right? (timedatectl)"],
            ),
            // --max-age 0 turns off the age check, not the clock check.
            (
                passed(Outcome::Applied, "2031-01-01T00:00:00Z"),
                &fine,
                off,
                &["the last pass finished at 2031-01-01T00:00:00Z, 1497d 14h from now: is the clock right? (timedatectl)"],
            ),
        ];
        for (state, blocked, max_age, reasons) in table {
            let (healthy, got) = health(&state, &Lock::Free, blocked, now, max_age);
            let want: Vec<String> = reasons.iter().map(|r| r.to_string()).collect();
            assert_eq!(
                (healthy, got),
                (want.is_empty(), want),
                "{state:?} {blocked:?}"
            );
        }
    }

    #[test]
    fn labels_share_one_column_and_colour_only_when_asked() {
        let lines = vec![
            Line::new("applied", Tone::Good, "abc".into()),
            Line::new("  error", Tone::Bad, "it broke".into()),
            Line::new("pending", Tone::Pending, "def".into()),
            Line::new("repository", Tone::Plain, "git://h/r".into()),
            Line::new("a label longer than the column", Tone::Plain, "x".into()),
        ];
        assert_eq!(
            format_lines(&lines, false),
            "applied:      abc\n  error:      it broke\npending:      def\nrepository:   git://h/r\na label longer than the column: x\n"
        );
        let coloured = format_lines(&lines, true);
        assert!(
            coloured.contains("applied:      \x1b[32mabc\x1b[0m\n"),
            "{coloured:?}"
        );
        assert!(
            coloured.contains("  error:      \x1b[31mit broke\x1b[0m\n"),
            "{coloured:?}"
        );
        assert!(
            coloured.contains("pending:      \x1b[33mdef\x1b[0m\n"),
            "{coloured:?}"
        );
        assert!(
            coloured.contains("repository:   git://h/r\n"),
            "{coloured:?}"
        );
    }

    #[test]
    fn the_timer_s_next_run_is_read_as_systemctl_prints_it() {
        let at = time::macros::datetime!(2026-12-02 18:30:00 UTC);
        let now = time::macros::datetime!(2026-12-02 18:00:00 UTC);
        // The machine booted an hour ago (monotonic clock).
        let up = Duration::from_secs(3600);
        let mono =
            |span: &str| format!("NextElapseUSecRealtime=\nNextElapseUSecMonotonic={span}\n");
        let real = |text: &str| {
            format!("NextElapseUSecRealtime={text}\nNextElapseUSecMonotonic=infinity\n")
        };
        let table = [
            (real("Wed 2026-12-02 18:30:00 UTC"), Some(at)),
            (real("@1796236200"), Some(at)),
            (mono("1h 30min"), Some(at)),
            (
                mono("1h 29min 59.5s"),
                Some(at - time::Duration::milliseconds(500)),
            ),
            (mono("5400s"), Some(at)),
            (mono("59min"), Some(now)),
            (mono("infinity"), None),
            (mono("0"), None),
            (mono(""), None),
            (mono("soon"), None),
            (mono("5 min"), None),
            (real(""), None),
            (real("n/a"), None),
            (real("Wed 2026-12-02 18:30:00 CET"), None),
            (real("2026-12-02 18:30:00"), None),
            (real("@soon"), None),
            (String::new(), None),
        ];
        for (text, want) in table {
            assert_eq!(parse_next_elapse(&text, now, up), want, "{text:?}");
        }
    }

    #[test]
    fn the_log_shown_is_the_newest_asked_for() {
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let at = |secs| std::time::UNIX_EPOCH + Duration::from_secs(secs);
        let present: Vec<LogFile> = [
            ("20261201T100000Z-aaaa1111.log", 4),
            ("20261202T100000Z-bbbb2222.log", 3),
            ("20261202T110000Z-bbbb2222-2.log", 2),
            ("20261203T100000Z-cccc3333.log", 1),
            // Started in the same second as the one above and written before it.
            ("20261203T100000Z-ffff0000.log", 0),
        ]
        .into_iter()
        .map(|(name, secs)| (name.to_string(), at(secs)))
        .collect();
        let table: [(&[&str], Option<&str>, Option<&str>); 8] = [
            (&[], None, Some("20261203T100000Z-cccc3333.log")),
            (
                &[
                    "20261201T100000Z-aaaa1111.log",
                    "20261202T110000Z-bbbb2222-2.log",
                ],
                None,
                Some("20261202T110000Z-bbbb2222-2.log"),
            ),
            // A recorded log that is gone: the newest there is.
            (
                &["20261130T100000Z-ffff.log"],
                None,
                Some("20261203T100000Z-cccc3333.log"),
            ),
            (&[], Some("aaaa"), Some("20261201T100000Z-aaaa1111.log")),
            (&[], Some("BBBB22"), Some("20261202T110000Z-bbbb2222-2.log")),
            (&[], Some("dddd"), None),
            (&[], Some("ffff"), Some("20261203T100000Z-ffff0000.log")),
            (&[], Some("1000"), None),
        ];
        for (recorded, commit, want) in table {
            assert_eq!(
                choose_log(&names(recorded), &present, commit).as_deref(),
                want,
                "{recorded:?} {commit:?}"
            );
        }
        assert_eq!(choose_log(&[], &[], None), None);
    }

    #[test]
    fn notifications_are_shown_when_configured_or_waiting() {
        let now = time::macros::datetime!(2026-11-25 10:00:00 UTC);
        let quiet = passed(Outcome::Applied, "2026-11-25T09:55:00Z");
        let lines = |state: &State, events| {
            let seen = Seen {
                next_pass: None,
                outbox_events: events,
                trigger: None,
            };
            render(state, false, now, &seen)
        };
        assert!(
            !lines(&quiet, 0).contains("notify:"),
            "{}",
            lines(&quiet, 0)
        );
        assert!(
            lines(&quiet, 3).contains("notify:       3 events waiting to be sent\n"),
            "{}",
            lines(&quiet, 3)
        );
        let failing = State {
            notify: Some(crate::pass::state::NotifyRecord {
                last_error: Some("https://discord.com/api/webhooks/***: 500".into()),
                last_error_at: Some("2026-11-25T09:50:00Z".into()),
                last_delivered_at: Some("2026-11-25T08:00:00Z".into()),
                ..Default::default()
            }),
            ..quiet.clone()
        };
        let text = lines(&failing, 1);
        assert!(
            text.contains("notify:       1 event waiting to be sent, last delivered 2h 0min ago (2026-11-25T08:00:00Z)\n  error:      https://discord.com/api/webhooks/***: 500, 10min ago (2026-11-25T09:50:00Z)\n"),
            "{text}"
        );
        let (healthy, _) = health(
            &failing,
            &Lock::Free,
            &Blocked::default(),
            now,
            Duration::ZERO,
        );
        assert!(
            healthy,
            "a failed notification never makes the machine unhealthy"
        );
    }

    #[test]
    fn the_trigger_s_last_request_and_counters_are_shown_once_it_ran() {
        use crate::trigger::record::{Last, Stats};
        let now = time::macros::datetime!(2026-11-25 10:00:00 UTC);
        let state = passed(Outcome::Applied, "2026-11-25T09:55:00Z");
        let with = |trigger: Option<Stats>| {
            let seen = Seen {
                next_pass: None,
                outbox_events: 0,
                trigger,
            };
            render(&state, false, now, &seen)
        };
        assert!(!with(None).contains("trigger:"));
        let stats = Stats {
            accepted: 5,
            started: 3,
            coalesced: 1,
            ignored: 1,
            refused: [("signature".to_string(), 2), ("path".to_string(), 0)]
                .into_iter()
                .collect(),
            last: Some(Last {
                time: "2026-11-25T09:58:00Z".into(),
                source: "192.0.2.1".into(),
                forge: "github".into(),
                answer: "started".into(),
            }),
            last_start_unix: None,
            start_failed: 0,
        };
        let text = with(Some(stats));
        assert!(
            text.contains("trigger:      last github request from 192.0.2.1 2min ago (2026-11-25T09:58:00Z): started; 5 accepted, 3 started a pass, 1 coalesced, 1 ignored, 2 refused (signature 2)\n"),
            "{text}"
        );
        assert!(with(Some(Stats::default()))
            .contains("trigger:      no request accepted yet; 0 accepted"));
    }

    #[test]
    fn the_next_pass_is_shown_with_how_soon() {
        let now = time::macros::datetime!(2026-11-25 10:00:00 UTC);
        let state = passed(Outcome::UpToDate, "2026-11-25T09:55:00Z");
        let seen = Seen {
            next_pass: Some(time::macros::datetime!(2026-11-25 10:03:10 UTC)),
            outbox_events: 0,
            trigger: None,
        };
        let text = render(&state, false, now, &seen);
        assert!(
            text.contains("next pass:    2026-11-25T10:03:10Z (in 3min)\n"),
            "{text}"
        );
    }
}

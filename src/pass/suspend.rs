//! Suspension: applies held back by an operator until an expiry, recorded in
//! `STATE/suspended.json`: `gitops suspend`, `gitops resume`, and the pass's part (hold an
//! apply back while a suspension lasts, end one that has expired).

use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::decide::{Action, Reason};
use super::lock::Held;
use super::state::{self, not_a_file, read_private, Layout, State};
use crate::config::{format_duration, parse_duration, Settings, StateDir};
use crate::exit::{fail, Exit, ResultExt};
use crate::report::notify::event::Kind;
use crate::report::notify::options::{Notifier, NotifyOptions};
use crate::report::text::{one_line, rfc3339, shown};

/// What `gitops suspend` records: who held applies back, when, until when, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suspension {
    /// `$SUDO_USER`, else `$USER`, else the uid.
    pub by: String,
    /// RFC 3339, when the suspension began.
    pub at: String,
    /// RFC 3339, when it ends by itself.
    pub until: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The commit the passes hold back, written by the first pass that held it: what status
    /// shows, and what makes the notification once per commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<HeldBack>,
}

/// A commit a pass would have applied, and did not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldBack {
    pub commit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

impl Suspension {
    /// When the suspension ends. An expiry that cannot be read has ended: a record nobody can
    /// read must not hold a machine back forever.
    pub fn ends(&self) -> Option<OffsetDateTime> {
        OffsetDateTime::parse(&self.until, &time::format_description::well_known::Rfc3339).ok()
    }

    /// Whether applies are held back at `now`.
    pub fn active_at(&self, now: OffsetDateTime) -> bool {
        self.ends().is_some_and(|until| now < until)
    }

    /// The end a pass gives a suspension recorded to last more than `max` from `now` (a
    /// minute's slack for `gitops suspend`'s rounding and a clock that steps back a little):
    /// `max` from now. None: the record's own end stands.
    pub fn capped(&self, max: Duration, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let until = self.ends()?;
        let cap = now.checked_add(time::Duration::try_from(max).ok()?)?;
        (until > cap + time::Duration::MINUTE).then_some(cap)
    }

    /// "alice until 2026-12-03T12:00:00Z (reason: db migration)": who, until when, why.
    pub fn described(&self) -> String {
        let reason = self
            .reason
            .as_deref()
            .map(|r| format!(" (reason: {r})"))
            .unwrap_or_default();
        format!("{} until {}{reason}", self.by, self.until)
    }
}

/// The longest `--reason`, in characters: it is shown in status and in every notification,
/// inside lines bounded to `crate::report::text::MAX_MESSAGE_CHARS`.
pub const MAX_REASON_CHARS: usize = 500;
/// The longest name recorded as who suspended (`$SUDO_USER`, `$USER`).
const MAX_BY_CHARS: usize = 64;
/// A record larger than this is not one `gitops suspend` wrote.
const MAX_RECORD_BYTES: u64 = 64 * 1024;

/// The options of `gitops suspend`.
#[derive(clap::Args, Debug, Clone)]
pub struct SuspendArgs {
    /// How long to hold applies back (30min, 2h, 1d); at most --max-suspend [default: --max-suspend]
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Why, shown in status and the notifications (at most 500 characters)
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// How long a suspension without --for lasts, and the longest --for accepted
    #[arg(long, env = "GITOPS_MAX_SUSPEND", value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    pub max_suspend: Duration,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// The options of `gitops resume`.
#[derive(clap::Args, Debug, Clone)]
pub struct ResumeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
}

/// What `suspend` and `resume` share with a pass: where its state is, how long to wait for
/// it, and where its events go.
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    #[command(flatten)]
    pub state: StateDir,
    /// How long to wait for a running pass to finish before exiting 75
    #[arg(long, env = "GITOPS_LOCK_TIMEOUT", value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub lock_timeout: Duration,
    #[command(flatten)]
    pub notify: NotifyOptions,
}

/// The suspension on record, active or expired; None when there is none. Its texts come back
/// printable and bounded: the file may have been written by hand.
pub fn read(layout: &Layout) -> Result<Option<Suspension>> {
    let path = layout.suspension_file();
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("could not read {}", path.display())),
        Ok(meta) => {
            if let Some(kind) = not_a_file(&meta.file_type()) {
                anyhow::bail!("{} is a {kind}, not a file", path.display());
            }
            if meta.len() > MAX_RECORD_BYTES {
                anyhow::bail!(
                    "{} is {} bytes, more than a suspension's record ever is",
                    path.display(),
                    meta.len()
                );
            }
        }
    }
    let Some(bytes) = read_private(&path)? else {
        return Ok(None);
    };
    let mut record: Suspension = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is unreadable", path.display()))?;
    record.by = clean(&record.by, MAX_BY_CHARS);
    record.at = clean(&record.at, 64);
    record.until = clean(&record.until, 64);
    record.reason = record.reason.map(|r| clean(&r, MAX_REASON_CHARS));
    if let Some(held) = &mut record.held {
        held.commit = clean(&held.commit, 64);
        held.subject = held.subject.as_deref().map(shown);
    }
    Ok(Some(record))
}

/// Text shown to an operator: control characters written out, at most `max` characters.
fn clean(text: &str, max: usize) -> String {
    let text = shown(text);
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

/// Record `suspension`, whole or not at all (0600, renamed over the old record, even one that
/// is a link or a FIFO: the rename replaces the name, never what it points at).
fn write(layout: &Layout, suspension: &Suspension) -> Result<()> {
    let path = layout.suspension_file();
    let mut json = serde_json::to_vec_pretty(suspension).context("could not serialize")?;
    json.push(b'\n');
    crate::files::write_atomic(&path, &json, true)
        .with_context(|| format!("could not write {}", path.display()))
}

/// Remove the record, whatever it is (a link is removed, never followed; a directory only
/// when empty).
fn remove(layout: &Layout) -> Result<()> {
    let path = layout.suspension_file();
    let removed = match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir(&path),
        _ => std::fs::remove_file(&path),
    };
    match removed {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("could not remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The pass's part, once it knows what it would do. An expired or unreadable record is
/// removed and its end told; while a suspension lasts, an apply is not carried out: said with
/// who, until when and why, told once per commit held back. Returns whether the pass stops
/// here (its outcome: suspended), having run nothing from the repository.
pub(super) fn holds_back(
    settings: &Settings,
    layout: &Layout,
    state: &mut State,
    action: &Action,
    tip: &str,
    now: OffsetDateTime,
) -> bool {
    let notifier = Some(&settings.notifier);
    let mut record = match read(layout) {
        Ok(Some(record)) => record,
        Ok(None) => return false,
        Err(e) => {
            let why = one_line(&e);
            match remove(layout) {
                Ok(()) => {
                    let why = format!("{why}; removed it: applies are not suspended (gitops suspend holds them back again)");
                    say!("gitops: warning: {why}");
                    tell(layout, notifier, state, Kind::Resumed, &why, None, now);
                }
                Err(e) => say!(
                    "gitops: warning: {why}, and {}: applies are not suspended; remove it by hand",
                    one_line(&e)
                ),
            }
            return false;
        }
    };
    if !record.active_at(now) {
        let why = format!(
            "the suspension by {} ended at {}: applying again",
            record.by, record.until
        );
        match remove(layout) {
            Ok(()) => {
                say!("gitops: {why}");
                tell(layout, notifier, state, Kind::Resumed, &why, None, now);
            }
            Err(e) => say!("gitops: warning: {why}, but {}", one_line(&e)),
        }
        return false;
    }
    // A record that would outlast --max-suspend from now was not written by `gitops suspend`
    // under this configuration: by hand, or while the clock was wrong (a machine that booted
    // years ahead and was corrected keeps its suspension for those years), or with a
    // --max-suspend typed on the command line above the env file's. The env file's limit is
    // what makes a suspension impossible to forget, so it ends this long after this pass at
    // the latest, and the record says so from now on.
    if let Some(cap) = record.capped(settings.max_suspend, now) {
        let was = std::mem::replace(&mut record.until, rfc3339(cap));
        match write(layout, &record) {
            Ok(()) => say!(
                "gitops: warning: the suspension by {} was recorded to last until {was}, more than --max-suspend {} from now (written by hand, or while the clock was wrong?): it ends at {} instead",
                record.by,
                format_duration(settings.max_suspend),
                record.until
            ),
            Err(e) => say!(
                "gitops: warning: the suspension by {} lasts until {was}, more than --max-suspend {} from now, and could not be shortened: {}; gitops resume ends it",
                record.by,
                format_duration(settings.max_suspend),
                one_line(&e)
            ),
        }
    }
    let Action::Apply { reason, .. } = action else {
        // Nothing to apply (the branch went back to the applied commit): nothing held back.
        if record.held.take().is_some() {
            if let Err(e) = write(layout, &record) {
                say!("gitops: warning: {}", one_line(&e));
            }
        }
        return false;
    };
    let short = tip.get(..12).unwrap_or(tip);
    let what = match reason {
        Reason::FirstApply => "first apply",
        Reason::NewCommit => "new commit",
        Reason::Retry => "retry",
        Reason::Always => "--apply always",
        Reason::Rewind => "rewind allowed by --allow-rewind",
    };
    say!(
        "gitops: applies are suspended by {}: not applying {short} ({what}); gitops resume applies it now",
        record.described()
    );
    if record.held.as_ref().is_none_or(|h| h.commit != tip) {
        let subject = gix::ObjectId::from_hex(tip.as_bytes())
            .ok()
            .and_then(|id| {
                let repo = crate::git::open_store(&layout.repo(), settings).ok()?;
                crate::git::subject(&repo, id)
            })
            .map(|s| shown(&s));
        record.held = Some(HeldBack {
            commit: tip.to_string(),
            subject,
        });
        match write(layout, &record) {
            // Told once per commit: the record says which was told. A commit already applied
            // (`--apply always` runs it again) is no news.
            Ok(()) if state.applied.as_ref().is_none_or(|a| a.commit != tip) => {
                let why = format!(
                    "{short} held back: applies are suspended by {}",
                    record.described()
                );
                let held = record
                    .held
                    .as_ref()
                    .map(|h| (h.commit.as_str(), h.subject.as_deref()));
                tell(
                    layout,
                    notifier,
                    state,
                    Kind::SuspendBlocked,
                    &why,
                    held,
                    now,
                );
            }
            Ok(()) => {}
            Err(e) => say!("gitops: warning: {}", one_line(&e)),
        }
    }
    true
}

/// Queue a suspension's event; a failure is a warning, never the pass's or the command's outcome.
fn tell(
    layout: &Layout,
    notifier: Option<&Notifier>,
    state: &mut State,
    kind: Kind,
    why: &str,
    commit: Option<(&str, Option<&str>)>,
    now: OffsetDateTime,
) {
    let queued =
        crate::report::notify::deliver::queue_news(layout, notifier, state, kind, why, commit, now);
    if let Err(e) = queued {
        say!(
            "gitops: warning: could not queue the suspension's notification: {}",
            one_line(&e)
        );
    }
}

/// Who is suspending or resuming: `$SUDO_USER` (the person behind sudo), else `$USER`, else
/// the uid.
fn who() -> String {
    ["SUDO_USER", "USER"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .map(|value| value.trim().to_string())
        .find(|value| !value.is_empty())
        .map(|value| clean(&value, MAX_BY_CHARS))
        .unwrap_or_else(|| format!("uid {}", nix::unistd::getuid()))
}

/// The state directory checked as a pass checks it, and the pass lock, waited for up to
/// `--lock-timeout`: a suspension is never written while a pass is deciding or applying, so
/// once `gitops suspend` returns, no pass runs anything from the repository until it ends.
/// `create`: make the state directory as a pass would (a suspension before the first pass).
fn take(common: &CommonArgs, command: &str, create: bool) -> Result<Option<(Layout, Held)>> {
    crate::signals::install();
    let dir = &common.state.state_dir;
    let layout = Layout::new(&std::path::absolute(dir).unwrap_or(dir.clone()));
    if let Some(problem) = super::guard::private_problem_for(&layout, command) {
        return Err(fail(Exit::Usage, problem));
    }
    if !layout.root.is_dir() {
        if !create {
            return Ok(None);
        }
        layout.create()?;
    }
    let (lock, _) = layout
        .lock(common.lock_timeout)
        .with_context(|| match command {
            "suspend" => "applies are not suspended",
            _ => "the suspension is not ended",
        })?;
    Ok(Some((layout, Held::new(lock))))
}

/// Queue an event of the command, and send what waits now when destinations are configured (a
/// pass sends it otherwise). state.json keeps the delivery's record when there is one; none is
/// created for it.
fn tell_now(layout: &Layout, options: &NotifyOptions, kind: Kind, why: &str, now: OffsetDateTime) {
    let notifier = match options.resolve() {
        Ok(notifier) => Some(notifier),
        Err(e) => {
            say!(
                "gitops: warning: {}; the notification waits for a pass that can send it",
                one_line(&e)
            );
            None
        }
    };
    let (mut state, recorded) = match state::read(layout) {
        Ok(Some(state)) => (state, true),
        _ => (State::default(), false),
    };
    tell(layout, notifier.as_ref(), &mut state, kind, why, None, now);
    if let Some(notifier) = notifier.filter(|n| !n.is_empty()) {
        let record = state.notify.get_or_insert_with(Default::default);
        crate::report::notify::deliver(
            layout,
            &notifier,
            record,
            now,
            crate::report::notify::deliver::PER_PASS,
        );
    }
    if recorded {
        if let Err(e) = state::save(layout, &state, false) {
            say!("gitops: warning: {}", one_line(&e));
        }
    }
}

/// `gitops suspend`: record a suspension (replacing any), tell it, and say what it does.
pub fn suspend(args: &SuspendArgs, now: OffsetDateTime) -> Result<Exit> {
    let second = Duration::from_secs(1);
    let limit = args.max_suspend;
    if limit < second {
        return Err(fail(
            Exit::Usage,
            format!(
                "--max-suspend {} is shorter than a second: it is how long a suspension lasts at most; give one such as 24h",
                format_duration(limit)
            ),
        ));
    }
    let length = match args.duration {
        None => limit,
        Some(d) if d < second => {
            return Err(fail(
                Exit::Usage,
                format!(
                    "--for {} would end the suspension as it begins: give a duration such as 2h (gitops resume ends a suspension)",
                    format_duration(d)
                ),
            ))
        }
        Some(d) if d > limit => {
            return Err(fail(
                Exit::Usage,
                format!(
                    "--for {} is longer than --max-suspend {}: suspend for at most that, or raise --max-suspend (GITOPS_MAX_SUSPEND) if a longer hold is meant",
                    format_duration(d),
                    format_duration(limit)
                ),
            ))
        }
        Some(d) => d,
    };
    let reason = args
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    if let Some(reason) = reason {
        let count = reason.chars().count();
        if count > MAX_REASON_CHARS {
            return Err(fail(
                Exit::Usage,
                format!(
                    "--reason is {count} characters long; keep it to {MAX_REASON_CHARS}: it is shown in status and in every notification"
                ),
            ));
        }
    }
    // Both to the second the record keeps, rounded up: a suspension lasts at least --for, and
    // its record says exactly how long.
    let at = match now.nanosecond() {
        0 => Some(now),
        _ => now
            .replace_nanosecond(0)
            .ok()
            .and_then(|t| t.checked_add(time::Duration::SECOND)),
    };
    let until = time::Duration::try_from(length)
        .ok()
        .zip(at)
        .and_then(|(d, at)| at.checked_add(d))
        .ok_or_else(|| {
            fail(
                Exit::Usage,
                "--for reaches past the calendar: give a shorter duration",
            )
        })?;
    let at = at.unwrap_or(now);
    let Some((layout, _lock)) = take(&args.common, "suspend", true)? else {
        return Err(fail(Exit::Internal, "the state directory vanished"));
    };
    let replaced = match read(&layout) {
        Ok(Some(old)) if old.active_at(now) => {
            format!("; it replaces the suspension by {}", old.described())
        }
        Ok(_) => String::new(),
        Err(e) => format!(
            "; it replaces a record that could not be read ({})",
            one_line(&e)
        ),
    };
    // The rename that records it cannot replace a directory: an empty one goes, another is
    // for the operator to look into.
    if std::fs::symlink_metadata(layout.suspension_file()).is_ok_and(|m| m.is_dir()) {
        remove(&layout).or_exit(Exit::Usage, || {
            let path = layout.suspension_file();
            format!(
                "{} is a directory, not a file: remove it (rm -r {}) and suspend again",
                path.display(),
                path.display()
            )
        })?;
    }
    let record = Suspension {
        by: who(),
        at: rfc3339(at),
        until: rfc3339(until),
        reason: reason.map(|r| clean(r, MAX_REASON_CHARS)),
        held: None,
    };
    write(&layout, &record).or_exit(Exit::Usage, || {
        "could not record the suspension (is the state directory writable by this user, the one gitops.service runs as?)".to_string()
    })?;
    let lasts = match args.duration {
        Some(d) => format_duration(d),
        None => format!("{}, --max-suspend", format_duration(limit)),
    };
    let reason = record
        .reason
        .as_deref()
        .map(|r| format!(" (reason: {r})"))
        .unwrap_or_default();
    let why = format!(
        "applies suspended by {} for {lasts}, until {}{reason}{replaced}",
        record.by, record.until
    );
    out!("gitops: {why}; passes still fetch and report what they would apply, and run nothing; gitops resume ends it sooner");
    tell_now(&layout, &args.common.notify, Kind::Suspended, &why, now);
    Ok(Exit::Ok)
}

/// `gitops resume`: end the suspension now (removing its record), tell it. Nothing suspended
/// is not an error.
pub fn resume(args: &ResumeArgs, now: OffsetDateTime) -> Result<Exit> {
    let taken = take(&args.common, "resume", false)?;
    let Some((layout, _lock)) = taken else {
        out!("gitops: applies are not suspended: nothing to resume");
        return Ok(Exit::Ok);
    };
    let why = match read(&layout) {
        Ok(None) => {
            out!("gitops: applies are not suspended: nothing to resume");
            return Ok(Exit::Ok);
        }
        Ok(Some(old)) if old.active_at(now) => format!(
            "applies resumed by {}: the suspension by {} ended",
            who(),
            old.described()
        ),
        Ok(Some(old)) => format!(
            "the suspension by {} had already ended at {}; its record is removed",
            old.by, old.until
        ),
        Err(e) => format!("{}; removed it: applies were not suspended", one_line(&e)),
    };
    remove(&layout).or_exit(Exit::Usage, || {
        let path = layout.suspension_file();
        format!(
            "could not end the suspension: remove {} by hand (rm -r {})",
            path.display(),
            path.display()
        )
    })?;
    out!("gitops: {why}; the next pass applies what was held back");
    tell_now(&layout, &args.common.notify, Kind::Resumed, &why, now);
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(until: &str) -> Suspension {
        Suspension {
            by: "alice".into(),
            at: "2026-12-03T10:00:00Z".into(),
            until: until.into(),
            reason: None,
            held: None,
        }
    }

    #[test]
    fn a_suspension_is_active_until_its_expiry_and_an_unreadable_one_never() {
        let now = time::macros::datetime!(2026-12-03 12:00 UTC);
        #[rustfmt::skip]
        let table = [
            ("2026-12-03T12:00:01Z", true),
            ("2026-12-03T12:00:00Z", false), // ends at its expiry
            ("2026-12-03T11:00:00Z", false),
            ("tomorrow", false),
        ];
        for (until, active) in table {
            assert_eq!(record(until).active_at(now), active, "{until}");
        }
    }

    #[test]
    fn a_suspension_lasts_at_most_max_suspend_from_the_pass_that_sees_it() {
        let now = time::macros::datetime!(2026-12-03 12:00 UTC);
        let day = Duration::from_secs(86400);
        #[rustfmt::skip]
        let table = [
            // until                   max  capped at
            ("2026-12-04T12:00:00Z",   day, None),                 // exactly --max-suspend
            ("2026-12-04T12:01:00Z",   day, None),                 // within the slack
            ("2026-12-04T12:01:01Z",   day, Some("2026-12-04T12:00:00Z")),
            ("2999-01-01T00:00:00Z",   day, Some("2026-12-04T12:00:00Z")),
            ("2026-12-03T11:00:00Z",   day, None),                 // already over
            ("tomorrow",               day, None),                 // over: unreadable
        ];
        for (until, max, want) in table {
            let got = record(until).capped(max, now).map(rfc3339);
            assert_eq!(got.as_deref(), want, "{until}");
        }
    }

    #[test]
    fn a_record_read_back_is_printable_and_bounded_whatever_the_file_says() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        assert_eq!(read(&layout).unwrap(), None);
        let mut hostile = record("2026-12-03T12:00:01Z");
        hostile.by = format!("\x1b[2J{}", "m".repeat(5000));
        hostile.reason = Some(format!("line\r\x1b[31m{}", "r".repeat(5000)));
        write(&layout, &hostile).unwrap();
        let back = read(&layout).unwrap().unwrap();
        assert!(!back.by.contains('\x1b') && back.by.chars().count() <= MAX_BY_CHARS + 1);
        let reason = back.reason.unwrap();
        assert!(!reason.contains(['\x1b', '\r']), "{reason}");
        assert!(reason.chars().count() <= MAX_REASON_CHARS + 1);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(layout.suspension_file())
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        for garbage in [&b"{\"by\": tru"[..], b"[]", b"\xff\xfe"] {
            std::fs::write(layout.suspension_file(), garbage).unwrap();
            let e = read(&layout).unwrap_err();
            assert!(format!("{e:#}").contains("is unreadable"), "{e:#}");
        }
        std::fs::remove_file(layout.suspension_file()).unwrap();
        nix::unistd::mkfifo(
            &layout.suspension_file(),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let e = read(&layout).unwrap_err();
        assert!(format!("{e:#}").contains("is a FIFO, not a file"), "{e:#}");
        remove(&layout).unwrap();
        assert!(!layout.suspension_file().exists());
        remove(&layout).unwrap();
    }
}

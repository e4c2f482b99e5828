//! Carrying the plan out: the options, reading the applied commit's request, recording the
//! reboot before asking for it (exactly once per request), and `gitops reboot-plan`.

use std::path::{Component, Path};
use std::time::Duration;

use anyhow::Result;
use time::OffsetDateTime;

use super::facts;
use super::plan::{self, Asked, Decision, Facts, Guard, Policy};
use super::request::{self, Request};
use crate::exit::{fail, Exit};
use crate::pass::state::{Layout, RebootRecord, State};
use crate::pass::suspend::Suspension;
use crate::report::text::rfc3339;

/// How reboots are carried out (`gitops sync`, `gitops reboot-plan`).
#[derive(clap::Args, Debug, Clone)]
pub struct RebootOptions {
    /// The reboot request in the repository: `after = TIME` and optional window, splay, group
    #[arg(
        long,
        env = "GITOPS_REBOOT_FILE",
        value_name = "PATH",
        default_value = ".gitops/reboot",
        value_parser = path_in_repository
    )]
    pub reboot_file: String,
    /// The command that reboots the machine: words split on spaces, run without a shell
    #[arg(
        long,
        env = "GITOPS_REBOOT_COMMAND",
        value_name = "COMMAND",
        default_value = "systemctl reboot",
        value_parser = reboot_command
    )]
    pub reboot_command: String,
    /// Never reboot a machine that has been up for less than this (a reboot just happened)
    #[arg(long, env = "GITOPS_REBOOT_MIN_UPTIME", value_name = "DURATION", default_value = "15min", value_parser = crate::config::parse_duration)]
    pub reboot_min_uptime: Duration,
    /// Reboot only with a synchronised clock (timesyncd's flag, or timedatectl's NTPSynchronized, where either can tell)
    #[arg(long, env = "GITOPS_REBOOT_REQUIRE_CLOCK_SYNC", value_name = "BOOL", default_value = "true", action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub reboot_require_clock_sync: bool,
    /// FleetLock server (airlock, fleetlock): a due reboot waits for its lock (POST /v1/pre-reboot), released after the boot (/v1/steady-state)
    #[arg(long, env = "GITOPS_FLEET_LOCK_URL", value_name = "URL")]
    pub fleet_lock_url: Option<String>,
    /// The machine's identity for the splay and the fleet lock (containers or images that share one /etc/machine-id can be given their own)
    #[arg(
        long,
        env = "GITOPS_MACHINE_ID_FILE",
        value_name = "FILE",
        default_value = "/etc/machine-id"
    )]
    pub machine_id_file: std::path::PathBuf,
}

/// A command with a program in it: a blank one is refused at the start, not found out when a
/// reboot is due (and recorded as asked).
fn reboot_command(text: &str) -> std::result::Result<String, String> {
    if text.trim().is_empty() {
        return Err(
            "the reboot command is blank: give the command that reboots this machine, such as systemctl reboot"
                .to_string(),
        );
    }
    Ok(text.to_string())
}

/// A path inside the repository: relative, no `..`.
fn path_in_repository(text: &str) -> std::result::Result<String, String> {
    let path = Path::new(text);
    let inside = !text.is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if inside {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} must be a path inside the repository, such as .gitops/reboot"
        ))
    }
}

impl RebootOptions {
    /// The machine id (32 hex digits), from --machine-id-file.
    fn machine_id(&self) -> std::result::Result<String, String> {
        let bytes = crate::config::read_regular_file(&self.machine_id_file, 256).map_err(|e| {
            format!(
                "cannot read the machine id {} ({e}): run systemd-machine-id-setup, or point --machine-id-file at the machine's id",
                self.machine_id_file.display()
            )
        })?;
        Ok(String::from_utf8_lossy(&bytes).trim().to_string())
    }

    /// The fleet lock client, when --fleet-lock-url is set; `group` from the request.
    fn fleet_lock(
        &self,
        group: Option<&str>,
    ) -> Option<std::result::Result<super::fleetlock::FleetLock, String>> {
        let url = self.fleet_lock_url.as_deref().filter(|u| !u.is_empty())?;
        Some(
            self.machine_id()
                .and_then(|id| super::fleetlock::FleetLock::new(url, &id, group)),
        )
    }

    fn policy(&self) -> Policy {
        Policy {
            min_uptime: self.reboot_min_uptime,
            require_clock_sync: self.reboot_require_clock_sync,
        }
    }
}

/// The request of a commit's tree: None when it has none. The file, and every directory on
/// the way to it, must be the commit's own (no symlink: a link could make gitops read, and
/// quote in its error, any file of this machine).
pub fn request_in_tree(tree: &Path, file: &str) -> std::result::Result<Option<Request>, String> {
    let mut path = tree.to_path_buf();
    for part in Path::new(file).components() {
        let Component::Normal(part) = part else {
            continue;
        };
        path.push(part);
        match std::fs::symlink_metadata(&path) {
            Err(_) => return Ok(None),
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(format!(
                    "{file} is a symlink in this commit: commit the request as a regular file"
                ))
            }
            Ok(_) => {}
        }
    }
    let bytes = crate::config::read_regular_file(&path, request::MAX_FILE)
        .map_err(|e| format!("{file} cannot be read ({e}): commit it as a small regular file"))?;
    let text = String::from_utf8(bytes).map_err(|_| format!("{file} is not UTF-8 text"))?;
    request::parse(&text)
        .map(Some)
        .map_err(|e| format!("{file}: {e}"))
}

/// The plan evaluated now, with what it was made from.
pub struct Evaluated {
    pub request: Option<Request>,
    pub facts: Facts,
    pub decision: Decision,
    pub reason: String,
}

/// The reboot asked for, also kept beside state.json: a state.json found unreadable is moved
/// aside and the pass starts afresh, which without this copy would ask again in the same boot.
fn marker(layout: &Layout) -> std::path::PathBuf {
    layout.root.join("reboot-asked.json")
}

/// The copy of the reboot asked for; None when there is none or it cannot be read.
pub fn read_marker(layout: &Layout) -> Option<Asked> {
    let bytes = crate::config::read_regular_file(&marker(layout), 4096).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Write the reboot just recorded as asked beside state.json, durably; the caller runs the
/// reboot command only when this succeeded.
pub fn write_marker(layout: &Layout, state: &State) -> Result<()> {
    let Some(asked) = state.reboot.as_ref().and_then(|r| r.asked.as_ref()) else {
        return Ok(());
    };
    let path = marker(layout);
    crate::files::write_atomic(&path, &serde_json::to_vec(asked)?, true)
        .map_err(|e| anyhow::anyhow!("could not write {}: {e}", path.display()))
}

/// The reboot asked for the request: state's record, else the copy beside it.
fn asked_for<'a>(
    request: Option<&Request>,
    state: &'a State,
    marker: Option<&'a Asked>,
) -> Option<&'a Asked> {
    let recorded = state.reboot.as_ref().and_then(|r| r.asked.as_ref());
    let same = |a: &&Asked| {
        OffsetDateTime::parse(&a.after, &time::format_description::well_known::Rfc3339)
            .is_ok_and(|after| request.is_some_and(|r| r.after == after))
    };
    recorded.filter(same).or(marker.filter(same)).or(recorded)
}

/// Evaluate the plan for `request` against this machine now and what state recorded (`marker`:
/// the copy of the reboot asked for, `read_marker`).
pub fn evaluate(
    request: Option<Request>,
    state: &State,
    marker: Option<&Asked>,
    suspension: Option<&Suspension>,
    options: &RebootOptions,
    now: OffsetDateTime,
) -> std::result::Result<Evaluated, String> {
    let mut facts = facts::read(now)?;
    let splay = match &request {
        Some(r) => request::splay_offset(&options.machine_id().unwrap_or_default(), r),
        None => Duration::ZERO,
    };
    let asked = asked_for(request.as_ref(), state, marker);
    let policy = options.policy();
    let mut decision = plan::decide(request.as_ref(), splay, &facts, &policy, asked);
    // The clock is asked about only when it matters: a reboot that is due.
    if decision == Decision::RebootNow && policy.require_clock_sync {
        facts.clock_synchronised = facts::clock_synchronised();
        decision = plan::decide(request.as_ref(), splay, &facts, &policy, asked);
    }
    decision = held_by_suspension(decision, suspension, now);
    let reason = plan::reason(&decision, request.as_ref(), &facts);
    Ok(Evaluated {
        request,
        facts,
        decision,
        reason,
    })
}

/// A due reboot waits while applies are suspended, until the suspension ends: whoever suspended
/// them is working on the machine, and "runs nothing" must cover the reboot the applied commit
/// asks for (a pass during a suspension rebooted the machine under the operator's hands). Not
/// asked, it is asked by the first pass after the end, as any blocked reboot.
fn held_by_suspension(
    decision: Decision,
    suspension: Option<&Suspension>,
    now: OffsetDateTime,
) -> Decision {
    match suspension.filter(|s| s.active_at(now)) {
        Some(s) if decision == Decision::RebootNow => Decision::Blocked {
            guard: Guard::Suspended(s.by.clone()),
            until: s.ends(),
        },
        _ => decision,
    }
}

/// Write the evaluation into state (status shows it); with `ask`, also the reboot about to be
/// asked for, which the caller saves durably before running the command.
pub fn record(state: &mut State, evaluated: &Evaluated, ask: bool) {
    let record = state.reboot.get_or_insert_with(RebootRecord::default);
    record.decision = evaluated.decision.name().to_string();
    record.reason = evaluated.reason.clone();
    record.requested_after = evaluated.request.as_ref().map(|r| rfc3339(r.after));
    record.reboot_at = reboot_at(evaluated).map(rfc3339);
    record.evaluated_at = rfc3339(evaluated.facts.now);
    if ask {
        if let Some(request) = &evaluated.request {
            record.asked = Some(Asked {
                // To the nanosecond: the plan compares it with the request's time exactly.
                after: exact(request.after),
                boot_id: evaluated.facts.boot_id.clone(),
                asked_at: rfc3339(evaluated.facts.now),
            });
        }
    }
}

/// RFC 3339 with the fraction the time has, unlike `rfc3339` (to the second).
fn exact(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// When the machine will reboot, as far as is known.
fn reboot_at(evaluated: &Evaluated) -> Option<OffsetDateTime> {
    match &evaluated.decision {
        Decision::Scheduled { at } => Some(*at),
        Decision::RebootNow => Some(evaluated.facts.now),
        Decision::Blocked { until, .. } => *until,
        _ => None,
    }
}

/// How long the fleet lock server gets to answer.
const FLEET_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// A due reboot asks the fleet lock first, when one is configured; not granted, it is blocked.
/// Returns the group whose lock is now held.
fn take_fleet_lock(options: &RebootOptions, evaluated: &mut Evaluated) -> Option<String> {
    if evaluated.decision != Decision::RebootNow {
        return None;
    }
    let group = evaluated.request.as_ref().and_then(|r| r.group.clone());
    let client = options.fleet_lock(group.as_deref())?;
    match client.and_then(|c| c.pre_reboot(FLEET_LOCK_TIMEOUT).map(|()| c)) {
        Ok(client) => Some(client.group().to_string()),
        Err(why) => {
            evaluated.decision = Decision::Blocked {
                guard: Guard::FleetLock(why),
                until: None,
            };
            evaluated.reason = plan::reason(
                &evaluated.decision,
                evaluated.request.as_ref(),
                &evaluated.facts,
            );
            None
        }
    }
}

/// A fleet lock taken for a reboot is released on the passes after it (after the boot, or
/// in the same boot when the reboot did not happen, so the fleet is not held up), until the
/// server answers 200.
fn release_fleet_lock(options: &RebootOptions, state: &mut State, now: OffsetDateTime) {
    let Some(record) = state.reboot.as_mut() else {
        return;
    };
    let Some(group) = record.fleet_lock_held.clone() else {
        return;
    };
    if !may_release(record.asked.as_ref(), facts::boot_id().as_deref(), now) {
        return;
    }
    let Some(client) = options.fleet_lock(Some(&group)) else {
        // No server configured any more: nothing to release.
        record.fleet_lock_held = None;
        return;
    };
    match client.and_then(|c| c.steady_state(FLEET_LOCK_TIMEOUT)) {
        Ok(()) => {
            say!("gitops: released the fleet lock (steady state)");
            record.fleet_lock_held = None;
        }
        Err(why) => {
            say!("gitops: warning: the fleet lock is still held: {why}; trying again next pass")
        }
    }
}

/// How long a reboot asked for may take in the same boot before its fleet lock is given back:
/// a command may return long before the machine goes down (`shutdown -r +5`, a slow stop of
/// services), and a lock released meanwhile lets one more machine of the group reboot with it.
pub const REBOOT_GRACE: Duration = Duration::from_secs(15 * 60);

/// Whether the fleet lock taken for `asked` may be released now: after the boot, or in the
/// same boot once the reboot is overdue by `REBOOT_GRACE` (either way round, for a clock that
/// jumped). A boot id that cannot be read, or no record of the ask, releases: holding the lock
/// for ever would stop the group.
pub fn may_release(asked: Option<&Asked>, boot_id: Option<&str>, now: OffsetDateTime) -> bool {
    let Some(asked) = asked else {
        return true;
    };
    if boot_id.is_none_or(|id| id != asked.boot_id) {
        return true;
    }
    let Ok(at) = OffsetDateTime::parse(
        &asked.asked_at,
        &time::format_description::well_known::Rfc3339,
    ) else {
        return true;
    };
    (now - at).unsigned_abs() >= REBOOT_GRACE
}

/// Run the reboot command, bounded: `systemctl reboot` queues the reboot and returns; one
/// that has not returned after two minutes is not going to reboot this machine.
pub fn run_command(command: &str) -> std::result::Result<(), String> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let Some((program, args)) = words.split_first() else {
        return Err("--reboot-command is empty".to_string());
    };
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("could not run the reboot command {program} ({e})"))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                return Err(format!(
                    "the reboot command {program} failed ({status}); not asking again in this boot"
                ))
            }
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the reboot command {program} did not return within 2 minutes; not asking again in this boot"
                ));
            }
        }
    }
}

/// What the pass does about reboots once its outcome is recorded: evaluate the applied
/// commit's request, record the plan, and when a reboot is due record it as asked. Returns the
/// command to run once the pass has released its lock, and the event to tell, if any.
pub fn for_pass(
    options: &RebootOptions,
    layout: &Layout,
    state: &mut State,
    now: OffsetDateTime,
) -> (bool, Option<(crate::report::notify::event::Kind, String)>) {
    use crate::report::notify::event::Kind;
    let Some(applied) = state.applied.as_ref().map(|a| a.commit.clone()) else {
        return (false, None);
    };
    release_fleet_lock(options, state, now);
    let told_before = state.reboot.as_ref().and_then(|r| r.told.clone());
    let request = match request_in_tree(&layout.trees().join(&applied), &options.reboot_file) {
        Ok(request) => request,
        Err(why) => {
            let why = format!(
                "the reboot request of {} cannot be used, no reboot until it is fixed: {why}",
                applied.get(..12).unwrap_or(&applied)
            );
            say!("gitops: warning: {why}");
            let record = state.reboot.get_or_insert_with(RebootRecord::default);
            record.decision = "invalid".to_string();
            record.reason = why.clone();
            record.requested_after = None;
            record.reboot_at = None;
            record.evaluated_at = rfc3339(now);
            return tell_once(
                state,
                told_before,
                format!("invalid:{applied}"),
                Kind::RebootInvalid,
                why,
            );
        }
    };
    let Some(request) = request else {
        // The usual pass: no request, nothing read from /proc.
        if let Some(record) = state.reboot.as_mut() {
            record.decision = Decision::None.name().to_string();
            record.reason = "no reboot is requested".to_string();
            record.requested_after = None;
            record.reboot_at = None;
            record.evaluated_at = rfc3339(now);
            record.told = None;
        }
        return (false, None);
    };
    // Unreadable is not suspended, as for the pass (which has removed such a record by now).
    let suspension = crate::pass::suspend::read(layout).ok().flatten();
    let mut evaluated = match evaluate(
        Some(request),
        state,
        read_marker(layout).as_ref(),
        suspension.as_ref(),
        options,
        now,
    ) {
        Ok(evaluated) => evaluated,
        Err(why) => {
            say!("gitops: warning: no reboot plan: {why}");
            return (false, None);
        }
    };
    let held = take_fleet_lock(options, &mut evaluated);
    let due = evaluated.decision == Decision::RebootNow;
    record(state, &evaluated, due);
    if held.is_some() {
        state
            .reboot
            .get_or_insert_with(RebootRecord::default)
            .fleet_lock_held = held;
    }
    match &evaluated.decision {
        Decision::RebootNow => {
            say!("gitops: {}", evaluated.reason);
            let key = format!("reboot:{}", evaluated.facts.boot_id);
            let (_, tell) = tell_once(
                state,
                told_before,
                key,
                Kind::Reboot,
                evaluated.reason.clone(),
            );
            (true, tell)
        }
        Decision::Blocked {
            guard: Guard::CommandDidNotReboot,
            ..
        } => {
            let key = format!("failed:{}", evaluated.facts.boot_id);
            tell_once(
                state,
                told_before,
                key,
                Kind::RebootFailed,
                evaluated.reason,
            )
        }
        Decision::Blocked { .. } | Decision::Scheduled { .. } => (false, None),
        Decision::None | Decision::Satisfied => {
            if let Some(record) = state.reboot.as_mut() {
                record.told = None;
            }
            (false, None)
        }
    }
}

/// An event told once per key (a reboot per boot, a failure per boot, a bad request per
/// commit), however many passes see the same thing.
fn tell_once(
    state: &mut State,
    told_before: Option<String>,
    key: String,
    kind: crate::report::notify::event::Kind,
    why: String,
) -> (bool, Option<(crate::report::notify::event::Kind, String)>) {
    if told_before.as_deref() == Some(key.as_str()) {
        return (false, None);
    }
    state.reboot.get_or_insert_with(RebootRecord::default).told = Some(key);
    (false, Some((kind, why)))
}

/// The options of `gitops reboot-plan`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub state: crate::config::StateDir,
    #[command(flatten)]
    pub reboot: RebootOptions,
    /// Say what would happen, change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// The decision as JSON: decision, requested_after, booted_at, reboot_at, reason
    #[arg(long)]
    pub json: bool,
    /// Plan for this request instead of the applied commit's: RFC 3339, or YYYY-MM-DD HH:MM[:SS] in local time
    #[arg(long, value_name = "TIME", value_parser = at_time)]
    pub at: Option<OffsetDateTime>,
}

fn at_time(text: &str) -> std::result::Result<OffsetDateTime, String> {
    request::parse_time(text)
}

/// `gitops reboot-plan`: print the decision and its reason; without --dry-run, carry it out.
pub fn run(args: &Args, now: OffsetDateTime) -> Result<Exit> {
    use crate::pass::state::{self, Layout};
    let layout = Layout::new(&args.state.state_dir);
    // Acting writes state: the pass's checks and lock apply. A dry run only reads.
    let lock = if args.dry_run {
        None
    } else {
        crate::pass::guard::check_private(&layout)?;
        layout.create()?;
        Some(layout.lock(Duration::from_secs(60))?.0)
    };
    let mut state = state::read(&layout)?.unwrap_or_default();
    let request = match args.at {
        Some(after) => Some(Request {
            after,
            window: None,
            splay: Duration::ZERO,
            group: None,
        }),
        None => match state.applied.as_ref().map(|a| a.commit.clone()) {
            Some(applied) => request_in_tree(
                &layout.trees().join(&applied),
                &args.reboot.reboot_file,
            )
            .map_err(|why| {
                fail(
                    Exit::Usage,
                    format!("the reboot request of the applied commit cannot be used: {why}"),
                )
            })?,
            None => None,
        },
    };
    if lock.is_some() {
        release_fleet_lock(&args.reboot, &mut state, now);
    }
    let marker = read_marker(&layout);
    let suspension = crate::pass::suspend::read(&layout).ok().flatten();
    let mut evaluated = evaluate(
        request,
        &state,
        marker.as_ref(),
        suspension.as_ref(),
        &args.reboot,
        now,
    )
    .map_err(|why| fail(Exit::Internal, why))?;
    let held = match lock {
        Some(_) => take_fleet_lock(&args.reboot, &mut evaluated),
        None => None,
    };
    let due = evaluated.decision == Decision::RebootNow && !args.dry_run;
    if args.json {
        let json = serde_json::json!({
            "decision": evaluated.decision.name(),
            "requested_after": evaluated.request.as_ref().map(|r| rfc3339(r.after)),
            "booted_at": rfc3339(evaluated.facts.booted_at),
            "boot_id": evaluated.facts.boot_id,
            "reboot_at": reboot_at(&evaluated).map(rfc3339),
            "reason": evaluated.reason,
            "dry_run": args.dry_run,
        });
        out!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        out!(
            "{}",
            plan::shown(evaluated.decision.name(), &evaluated.reason)
        );
    }
    if lock.is_none() {
        return Ok(Exit::Ok);
    }
    record(&mut state, &evaluated, due);
    if held.is_some() {
        state
            .reboot
            .get_or_insert_with(RebootRecord::default)
            .fleet_lock_held = held;
    }
    if due {
        write_marker(&layout, &state).map_err(|e| {
            fail(
                Exit::Internal,
                format!("not rebooting: the reboot could not be recorded first: {e}"),
            )
        })?;
    }
    state::save(&layout, &state, due)?;
    drop(lock);
    if due {
        run_command(&args.reboot.reboot_command).map_err(|why| fail(Exit::Internal, why))?;
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_due_reboot_waits_for_a_suspension_to_end() {
        let now = datetime!(2026-12-24 03:05:00 UTC);
        let suspension = |until: &str| Suspension {
            by: "alice".into(),
            at: "2026-12-24T03:00:00Z".into(),
            until: until.into(),
            reason: None,
            held: None,
        };
        let (active, ended) = (
            suspension("2026-12-24T05:00:00Z"),
            suspension("2026-12-24T03:05:00Z"),
        );
        let scheduled = Decision::Scheduled { at: now };
        let held = Decision::Blocked {
            guard: Guard::Suspended("alice".into()),
            until: Some(datetime!(2026-12-24 05:00:00 UTC)),
        };
        #[rustfmt::skip]
        let table = [
            (Decision::RebootNow, None,          Decision::RebootNow),
            (Decision::RebootNow, Some(&active), held),
            (Decision::RebootNow, Some(&ended),  Decision::RebootNow),
            (scheduled.clone(),   Some(&active), scheduled),
            (Decision::Satisfied, Some(&active), Decision::Satisfied),
        ];
        for (decision, suspension, want) in table {
            assert_eq!(
                held_by_suspension(decision.clone(), suspension, now),
                want,
                "{decision:?} {suspension:?}"
            );
        }
    }

    #[test]
    fn the_fleet_lock_is_released_after_the_boot_or_once_the_reboot_is_overdue() {
        let asked = Asked {
            after: "2026-12-24T03:00:00Z".into(),
            boot_id: "this-boot".into(),
            asked_at: "2026-12-24T03:05:00Z".into(),
        };
        let garbled = Asked {
            asked_at: "soon".into(),
            ..asked.clone()
        };
        let at = datetime!(2026-12-24 03:05:00 UTC);
        let minutes = |m: i64| at + time::Duration::minutes(m);
        #[rustfmt::skip]
        let table = [
            ("nothing asked", None, Some("this-boot"), at, true),
            ("another boot", Some(&asked), Some("next-boot"), minutes(1), true),
            ("same boot, just asked", Some(&asked), Some("this-boot"), minutes(1), false),
            ("same boot, 14 min", Some(&asked), Some("this-boot"), minutes(14), false),
            ("same boot, 15 min", Some(&asked), Some("this-boot"), minutes(15), true),
            ("same boot, clock back a day", Some(&asked), Some("this-boot"), minutes(-1440), true),
            ("boot id unknown", Some(&asked), None, minutes(1), true),
            ("asked_at garbled", Some(&garbled), Some("this-boot"), minutes(1), true),
        ];
        for (what, asked, boot, now, want) in table {
            assert_eq!(may_release(asked, boot, now), want, "{what}");
        }
    }
}

//! The pass's side of notifications: queue the event a pass tells, then deliver what waits,
//! within a bounded time, keeping whatever was not delivered for the next pass.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use time::OffsetDateTime;

use super::event::{self, Facts};
use super::options::Notifier;
use super::outbox::{self, Queued};
use super::send::{self, Answer};
use crate::pass::state::{Layout, NotifyRecord, State, Told};
use crate::report::text::rfc3339;

/// The longest one destination gets to answer one event.
pub const PER_DESTINATION: Duration = Duration::from_secs(5);
/// The longest a pass spends delivering, whatever waits: a receiver that never answers must not
/// hold the pass (and the lock) much past its work.
pub const PER_PASS: Duration = Duration::from_secs(10);
/// Below this, a send is not started: it could not even connect.
const TOO_LITTLE: Duration = Duration::from_millis(200);
/// The least a destination is given when the time left is shared: enough for a TLS handshake
/// to a distant receiver.
const MIN_SHARE: Duration = Duration::from_secs(1);

/// Queue the event this pass tells, if any, durably, before the pass records its outcome: a
/// crash in between repeats the event at worst, never loses it. `notifier` is None when the
/// options did not parse (a configuration error): the event is queued only where notifications
/// Whether events are queued: notifications configured, or, when the options did not resolve
/// (`None`), where they were on before (the outbox exists).
fn notifying(layout: &Layout, notifier: Option<&Notifier>) -> bool {
    match notifier {
        Some(notifier) => !notifier.is_empty(),
        None => outbox::dir(layout).is_dir(),
    }
}

/// were on before (the outbox exists), for the first pass that can send it.
pub fn queue_for_pass(
    layout: &Layout,
    notifier: Option<&Notifier>,
    before: &State,
    after: &mut State,
    exit_code: i32,
    now: OffsetDateTime,
) -> Result<()> {
    if !notifying(layout, notifier) {
        return Ok(());
    }
    let telling = event::tell(before, after, now);
    let succeeded = after
        .last_pass
        .as_ref()
        .is_some_and(|p| p.outcome.is_success());
    let record = after.notify.get_or_insert_with(NotifyRecord::default);
    if succeeded {
        record.told = None;
    }
    let Some(telling) = telling else {
        return Ok(());
    };
    let (_, _, log) = event::subject_of(telling.kind, after);
    let facts = Facts {
        id: event_id()?,
        host: host(),
        machine_id: machine_id(),
        exit_code,
        log_tail: log.as_deref().and_then(|l| log_tail(Path::new(l))),
    };
    let built = event::build(telling, before, after, facts);
    let key = event::failure_key(after);
    let record = after.notify.get_or_insert_with(NotifyRecord::default);
    bound(layout, record, now);
    outbox::queue(
        layout,
        &Queued {
            queued_at: rfc3339(now),
            log,
            done: Vec::new(),
            event: built,
        },
        OffsetDateTime::now_utc(),
    )?;
    if telling.kind.is_failure() {
        record.told = key.map(|key| Told {
            key,
            at: rfc3339(now),
        });
    }
    Ok(())
}

/// Queue an event beside the pass's outcome (a reboot asked for, one that did not happen, a
/// request that cannot be read, a stale branch); `why` is said as its error.
pub fn queue_event(
    layout: &Layout,
    notifier: &Notifier,
    state: &mut State,
    kind: event::Kind,
    why: &str,
    now: OffsetDateTime,
) -> Result<()> {
    if notifier.is_empty() {
        return Ok(());
    }
    let facts = Facts {
        id: event_id()?,
        host: host(),
        machine_id: machine_id(),
        exit_code: 0,
        log_tail: None,
    };
    let telling = event::Telling {
        kind,
        reminder: false,
    };
    let mut built = event::build(telling, state, state, facts);
    built.error = Some(crate::report::text::shown(why));
    let record = state.notify.get_or_insert_with(NotifyRecord::default);
    bound(layout, record, now);
    outbox::queue(
        layout,
        &Queued {
            queued_at: rfc3339(now),
            log: None,
            done: Vec::new(),
            event: built,
        },
        OffsetDateTime::now_utc(),
    )?;
    Ok(())
}

/// Queue an event that is no pass's outcome: a suspension begun or ended (by `gitops suspend`,
/// `gitops resume`, or the pass that found it expired) or a commit it holds back. Its outcome
/// is its kind, `commit` (with its subject) what it is about, `why` said as its error.
/// `notifier` None: the options did not resolve, and the event is queued only where
/// notifications were on before (the outbox exists), for the first pass that can send it.
pub fn queue_news(
    layout: &Layout,
    notifier: Option<&Notifier>,
    state: &mut State,
    kind: event::Kind,
    why: &str,
    commit: Option<(&str, Option<&str>)>,
    now: OffsetDateTime,
) -> Result<()> {
    if !notifying(layout, notifier) {
        return Ok(());
    }
    let at = rfc3339(now);
    let applied = state.applied.as_ref().map(|a| a.commit.clone());
    let built = event::Event {
        version: 1,
        id: event_id()?,
        event: kind,
        reminder: false,
        host: host(),
        machine_id: machine_id(),
        outcome: kind.as_str().to_string(),
        repo_url: state.repo_url.clone(),
        branch: state.branch.clone(),
        commit: commit.map(|(c, _)| c.to_string()),
        subject: commit.and_then(|(_, s)| s.map(crate::report::text::shown)),
        previous_commit: applied.filter(|a| Some(a.as_str()) != commit.map(|(c, _)| c)),
        attempt: None,
        started_at: at.clone(),
        finished_at: at.clone(),
        duration_seconds: 0.0,
        exit_code: 0,
        error: Some(crate::report::text::shown(why)),
        log_tail: None,
    };
    let record = state.notify.get_or_insert_with(NotifyRecord::default);
    bound(layout, record, now);
    outbox::queue(
        layout,
        &Queued {
            queued_at: at,
            log: None,
            done: Vec::new(),
            event: built,
        },
        OffsetDateTime::now_utc(),
    )?;
    Ok(())
}

/// Drop what the outbox's bound says must go, counted and said.
fn bound(layout: &Layout, record: &mut NotifyRecord, now: OffsetDateTime) {
    let (entries, strangers) = outbox::list(layout);
    let times: Vec<&str> = entries
        .iter()
        .map(|e| e.queued.queued_at.as_str())
        .collect();
    // Room for the event about to be queued.
    let over = outbox::over_bound(&times, outbox::MAX_EVENTS - 1, now);
    let dropped = over
        .iter()
        .filter(|&&i| std::fs::remove_file(&entries[i].path).is_ok())
        .count()
        + strangers;
    if dropped > 0 {
        record.dropped_total = record.dropped_total.saturating_add(dropped as u64);
        say!(
            "gitops: warning: dropped {dropped} undelivered notification(s): older than 7 days, beyond {} waiting, or unreadable; see gitops status",
            outbox::MAX_EVENTS
        );
    }
}

/// Send what waits in the outbox, oldest first, to every destination that does not have it
/// yet, within `budget` in all. 2xx marks a destination done; 429, 5xx or a network error keeps
/// the event and stops sending to that destination for this pass (and until its `Retry-After`);
/// another 4xx drops the event for that destination, with a warning.
pub fn deliver(
    layout: &Layout,
    notifier: &Notifier,
    record: &mut NotifyRecord,
    now: OffsetDateTime,
    budget: Duration,
) {
    let started = Instant::now();
    let (entries, strangers) = outbox::list(layout);
    if strangers > 0 {
        record.dropped_total = record.dropped_total.saturating_add(strangers as u64);
    }
    if entries.is_empty() {
        record.wait_until.clear();
        return;
    }
    let waiting_until = |key: &str| {
        record
            .wait_until
            .get(key)
            .and_then(|t| {
                OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            })
            .filter(|until| *until > now)
    };
    let mut resting: BTreeSet<String> = notifier
        .destinations
        .iter()
        .filter(|d| waiting_until(&d.key).is_some())
        .map(|d| d.key.clone())
        .collect();
    record.wait_until.retain(|key, _| resting.contains(key));
    let mut failed = false;
    'events: for mut entry in entries {
        let mut changed = false;
        for (i, dest) in notifier.destinations.iter().enumerate() {
            if entry.queued.done.contains(&dest.key) || resting.contains(&dest.key) {
                continue;
            }
            let left = budget.saturating_sub(started.elapsed());
            if left < TOO_LITTLE {
                failed = true;
                record.last_error = Some(format!(
                    "notifications still waiting after {}s of delivery in this pass; the rest go with the next pass",
                    budget.as_secs()
                ));
                record.last_error_at = Some(rfc3339(now));
                break 'events;
            }
            // The time left shared with the destinations still to try: two receivers that
            // hang must not take it all, pass after pass, from a third that answers.
            let to_try = notifier.destinations[i..]
                .iter()
                .filter(|d| !entry.queued.done.contains(&d.key) && !resting.contains(&d.key))
                .count();
            let share = (left / u32::try_from(to_try).unwrap_or(u32::MAX).max(1))
                .max(MIN_SHARE)
                .min(left)
                .min(PER_DESTINATION);
            let log = entry.queued.log.as_deref().map(Path::new);
            match send::send(notifier, dest, &entry.queued.event, log, share) {
                Answer::Delivered { .. } => {
                    entry.queued.done.push(dest.key.clone());
                    record.delivered_total = record.delivered_total.saturating_add(1);
                    record.last_delivered_at = Some(rfc3339(now));
                    changed = true;
                }
                Answer::Rejected { why, .. } => {
                    let why = crate::redact::scrub(&why);
                    say!(
                        "gitops: warning: {why}; event {} is dropped for it",
                        entry.queued.event.id
                    );
                    entry.queued.done.push(dest.key.clone());
                    record.dropped_total = record.dropped_total.saturating_add(1);
                    record.last_error = Some(why);
                    record.last_error_at = Some(rfc3339(now));
                    failed = true;
                    changed = true;
                }
                Answer::Retry { why, after } => {
                    let why = crate::redact::scrub(&why);
                    say!("gitops: warning: {why}; the event waits for the next pass");
                    resting.insert(dest.key.clone());
                    if let Some(after) = after {
                        let after = time::Duration::try_from(after).unwrap_or(time::Duration::HOUR);
                        record
                            .wait_until
                            .insert(dest.key.clone(), rfc3339(now + after));
                    }
                    record.last_error = Some(why);
                    record.last_error_at = Some(rfc3339(now));
                    failed = true;
                }
            }
        }
        let everywhere = notifier
            .destinations
            .iter()
            .all(|d| entry.queued.done.contains(&d.key));
        let kept = if everywhere {
            std::fs::remove_file(&entry.path).map_err(anyhow::Error::from)
        } else if changed {
            outbox::write(&entry.path, &entry.queued)
        } else {
            Ok(())
        };
        if let Err(e) = kept {
            // Sent again next pass at worst: the receiver can tell by the event id.
            say!(
                "gitops: warning: could not update the outbox: {}",
                crate::pass::one_line(&e)
            );
        }
    }
    if !failed && outbox::len(layout) == 0 {
        record.last_error = None;
        record.last_error_at = None;
    }
}

/// A new event id: 32 hex digits from the kernel's random source.
pub fn event_id() -> std::io::Result<String> {
    let random = crate::files::random_suffix;
    Ok(format!("{}{}", random()?, random()?))
}

/// The name the machine goes by.
pub fn host() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| crate::report::text::shown(&h))
        .unwrap_or_else(|| "unknown".to_string())
}

/// /etc/machine-id, when it holds one (32 hex digits).
pub fn machine_id() -> Option<String> {
    let bytes = crate::config::read_regular_file(Path::new("/etc/machine-id"), 64).ok()?;
    let id = String::from_utf8(bytes).ok()?.trim().to_string();
    (id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit())).then_some(id)
}

/// The end of an apply's log, at most `LOG_TAIL_BYTES`, from a line's start, masked.
pub fn log_tail(path: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = crate::config::open_regular(path).ok()?;
    let len = file.metadata().ok()?.len();
    let want = event::LOG_TAIL_BYTES as u64;
    let start = len.saturating_sub(want);
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut bytes = Vec::with_capacity(want as usize);
    file.take(want).read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let text = match (start > 0, text.find('\n')) {
        (true, Some(newline)) => &text[newline + 1..],
        _ => &text[..],
    };
    Some(crate::redact::scrub(text))
}

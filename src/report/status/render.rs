//! The human summary: one line per fact, labels in one column, coloured by tone.

use std::fmt::Write as _;

use time::OffsetDateTime;

use crate::pass::state::{Outcome, State};

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
    pub(super) fn new(label: &'static str, tone: Tone, text: String) -> Line {
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
pub(super) fn render(
    state: &State,
    pass_running: bool,
    now: OffsetDateTime,
    seen: &Seen,
) -> String {
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
    if let Some(entry) = state.applied.as_ref().and_then(|a| a.entrypoint.as_ref()) {
        out.push(Line::new(
            "  entry point",
            Tone::Plain,
            format!("{} ({})", entry.path, entry.why),
        ));
    }
    let skipped = state.current_seen();
    if let Some(s) = skipped {
        out.push(Line::new(
            "skipped",
            Tone::Plain,
            format!(
                "{} {:?}, {}: {}",
                short(&s.commit),
                s.subject.as_deref().unwrap_or(""),
                age(&s.seen_at, now),
                s.why
            ),
        ));
    }
    if let Some(w) = &state.waiting {
        let when =
            time::OffsetDateTime::parse(&w.at, &time::format_description::well_known::Rfc3339)
                .map(|at| match (at - now).whole_seconds() {
                    ..=0 => "due now".to_string(),
                    secs => format!("in {}", span(secs)),
                })
                .unwrap_or_else(|_| "?".to_string());
        out.push(Line::new(
            "waiting",
            Tone::Pending,
            format!(
                "{} {:?} for wave {} at {} ({when}; waves 0 to {})",
                short(&w.commit),
                w.subject.as_deref().unwrap_or(""),
                w.wave,
                w.at,
                w.waves.saturating_sub(1)
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
            format!("{} ({when})", crate::report::text::rfc3339(next)),
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
        let when = p.reverted_at.as_deref().map(|at| age(at, now));
        let when = when.as_deref().unwrap_or("?");
        match p.outcome {
            Some(Outcome::Reverted) => out.push(Line::new(
                "  reverted",
                Tone::Pending,
                format!("{when}, to the applied commit; held back until the branch moves (or --retry-reverted has passed)"),
            )),
            Some(Outcome::RevertFailed) => out.push(Line::new(
                "  revert failed",
                Tone::Bad,
                format!("{when}; nothing runs until the branch moves: repair the machine"),
            )),
            _ => {}
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
            crate::reboot::plan::shown(
                &reboot.decision,
                &crate::report::text::shown(&reboot.reason)
            )
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
                    crate::report::text::shown(&crate::redact::scrub(error))
                ),
            ));
        }
    }
    out
}

pub(super) fn parse_time(stamp: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).ok()
}

/// "3h 5min".
pub(super) fn span(secs: i64) -> String {
    match secs {
        ..60 => format!("{secs}s"),
        60..3600 => format!("{}min", secs / 60),
        3600..86400 => format!("{}h {}min", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86400, secs % 86400 / 3600),
    }
}

pub(super) fn short(commit: &str) -> &str {
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

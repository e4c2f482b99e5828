//! Metrics for Prometheus: `gitops.prom` in node_exporter's textfile directory, written after
//! every pass, and `gitops status --prometheus`, which prints the same text. Everything comes
//! from state.json (its counters keep growing across the oneshot runs) and the outbox.

use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use time::OffsetDateTime;

use crate::config::Settings;
use crate::pass::state::{Layout, Outcome, State};
use crate::trigger::record::Stats;

/// The file node_exporter's textfile collector reads (it reads `*.prom` only, so the temporary
/// file beside it, named otherwise, is never half read).
pub const FILE_NAME: &str = "gitops.prom";

/// The metrics as Prometheus text exposition (format 0.0.4): HELP and TYPE before each family,
/// no timestamps (node_exporter stamps them when it scrapes). A value state.json does not have
/// yet (no successful pass, nothing applied) leaves its family out rather than inventing a 0
/// an alert would read as 1970.
pub fn render(state: &State, outbox_events: usize, trigger: Option<&Stats>) -> String {
    let mut out = Families::default();
    out.gauge(
        "gitops_build_info",
        "The gitops version that wrote these metrics.",
        &[(&[("version", env!("CARGO_PKG_VERSION"))], "1".into())],
    );
    let pass = state.last_pass.as_ref();
    if let Some(t) = pass.and_then(|p| unix_seconds(&p.finished_at)) {
        out.gauge(
            "gitops_last_pass_timestamp_seconds",
            "When the last pass finished, in seconds since the epoch.",
            &[(&[], t.to_string())],
        );
    }
    if let Some(t) = state.last_success_at.as_deref().and_then(unix_seconds) {
        out.gauge(
            "gitops_last_success_timestamp_seconds",
            "When the last pass that ended up-to-date or applied finished, in seconds since the epoch.",
            &[(&[], t.to_string())],
        );
    }
    if let Some(pass) = pass {
        out.gauge(
            "gitops_last_pass_success",
            "1 if the last pass ended up-to-date or applied, 0 if it failed.",
            &[(&[], u8::from(pass.outcome.is_success()).to_string())],
        );
    }
    if let Some(ms) = pass.and_then(|p| p.duration_ms) {
        out.gauge(
            "gitops_pass_duration_seconds",
            "How long the last pass took.",
            &[(&[], seconds(ms))],
        );
    }
    if let Some(ms) = state.last_apply_ms {
        out.gauge(
            "gitops_apply_duration_seconds",
            "How long the entry point ran the last time it ran, whether it succeeded or not.",
            &[(&[], seconds(ms))],
        );
    }
    if let Some(applied) = &state.applied {
        let branch = state.branch.as_deref().unwrap_or_default();
        out.gauge(
            "gitops_applied_commit_info",
            "The commit applied last (its entry point exited 0) and the branch followed.",
            &[(
                &[("commit", applied.commit.as_str()), ("branch", branch)],
                "1".into(),
            )],
        );
        if let Some(t) = applied.committed_at.as_deref().and_then(unix_seconds) {
            out.gauge(
                "gitops_applied_commit_timestamp_seconds",
                "The committer time of the applied commit, in seconds since the epoch.",
                &[(&[], t.to_string())],
            );
        }
        if let Some(signer) = &applied.signer {
            out.gauge(
                "gitops_applied_commit_signer_info",
                "Who signed the applied commit: the principal (SSH) or user id (OpenPGP) and the key's fingerprint.",
                &[(
                    &[
                        ("method", signer.method.as_str()),
                        ("principal", signer.principal.as_str()),
                        ("fingerprint", signer.fingerprint.as_str()),
                    ],
                    "1".into(),
                )],
            );
        }
    }
    out.gauge(
        "gitops_branch_stale",
        "1 if the branch's tip was committed longer ago than --max-commit-age (a Git host may be withholding commits); 0 otherwise or with the option off.",
        &[(&[], u8::from(state.stale.is_some()).to_string())],
    );
    out.gauge(
        "gitops_consecutive_failures",
        "Passes that failed in a row since the last success.",
        &[(&[], state.consecutive_failures.to_string())],
    );
    out.gauge(
        "gitops_pending_attempts",
        "Failed attempts of the commit waiting to apply; 0 when none waits.",
        &[(
            &[],
            state.pending.as_ref().map_or(0, |p| p.attempts).to_string(),
        )],
    );
    // A reverted commit waits without retries: a number of attempts does not show that.
    let held = state
        .pending
        .as_ref()
        .is_some_and(|p| matches!(p.outcome, Some(Outcome::Reverted | Outcome::RevertFailed)));
    out.gauge(
        "gitops_held_back",
        "1 while the branch's tip failed, was reverted (--on-failure revert) and is held back until the branch moves; 0 otherwise.",
        &[(&[], u8::from(held).to_string())],
    );
    out.gauge(
        "gitops_rollout_waiting",
        "Whether the branch's tip waits for this machine's rollout wave (.gitops/rollout): 1 while it does, else 0.",
        &[(&[], u8::from(state.waiting.is_some()).to_string())],
    );
    let wave_at = state.waiting.as_ref().and_then(|w| {
        time::OffsetDateTime::parse(&w.at, &time::format_description::well_known::Rfc3339).ok()
    });
    if let Some(at) = wave_at {
        out.gauge(
            "gitops_rollout_wave_timestamp_seconds",
            "When this machine's rollout wave begins for the waiting tip, in seconds since the epoch.",
            &[(&[], at.unix_timestamp().to_string())],
        );
    }
    out.gauge(
        "gitops_notify_outbox_events",
        "Notification events written and not yet delivered to every destination.",
        &[(&[], outbox_events.to_string())],
    );
    let passes: Vec<([(&str, &str); 1], String)> = Outcome::ALL
        .iter()
        .map(|o| {
            let count = state.passes_total.get(o.as_str()).copied().unwrap_or(0);
            ([("outcome", o.as_str())], count.to_string())
        })
        .collect();
    let passes: Vec<(&[(&str, &str)], String)> = passes
        .iter()
        .map(|(labels, value)| (&labels[..], value.clone()))
        .collect();
    out.counter(
        "gitops_passes_total",
        "Passes recorded since this state directory began, by outcome.",
        &passes,
    );
    if let Some(reboot) = state.reboot.as_ref().filter(|r| !r.decision.is_empty()) {
        out.gauge(
            "gitops_reboot_plan",
            "The reboot plan the last pass evaluated (none, satisfied, scheduled, reboot-now, blocked, invalid).",
            &[(&[("decision", reboot.decision.as_str())], "1".to_string())],
        );
        let at = |t: Option<&str>| t.and_then(unix_seconds);
        if let Some(after) = at(reboot.requested_after.as_deref()) {
            out.gauge(
                "gitops_reboot_requested_after_timestamp_seconds",
                "The applied commit's reboot request: the machine must have booted at or after this time.",
                &[(&[], after.to_string())],
            );
        }
        if let Some(asked) = at(reboot.asked.as_ref().map(|a| a.asked_at.as_str())) {
            out.gauge(
                "gitops_reboot_asked_timestamp_seconds",
                "When gitops last ran the reboot command.",
                &[(&[], asked.to_string())],
            );
        }
    }
    out.counter(
        "gitops_notify_dropped_total",
        "Notification events dropped undelivered: past the outbox's bound, or refused by a destination.",
        &[(
            &[],
            state
                .notify
                .as_ref()
                .map_or(0, |n| n.dropped_total)
                .to_string(),
        )],
    );
    if let Some(trigger) = trigger {
        trigger_families(&mut out, trigger);
    }
    out.0
}

/// The suspension's families, from its own record (`gitops suspend` writes it, not a pass):
/// whether applies are held back now, and until when. A record that cannot be read holds
/// nothing back (the next pass removes it), so it counts as none.
pub fn render_suspension(layout: &Layout, now: OffsetDateTime) -> String {
    let active = crate::pass::suspend::read(layout)
        .ok()
        .flatten()
        .filter(|s| s.active_at(now));
    let mut out = Families::default();
    out.gauge(
        "gitops_suspended",
        "1 while gitops suspend holds applies back (passes fetch and run nothing), 0 otherwise.",
        &[(&[], u8::from(active.is_some()).to_string())],
    );
    if let Some(until) = active.and_then(|s| s.ends()) {
        out.gauge(
            "gitops_suspended_until_timestamp_seconds",
            "When the suspension ends by itself, in seconds since the epoch.",
            &[(&[], until.unix_timestamp().to_string())],
        );
    }
    out.0
}

/// The trigger's counters, when it has run on this machine. `refused` lists every reason,
/// 0 included, so a rate over it never starts from a missing series.
fn trigger_families(out: &mut Families, trigger: &Stats) {
    for (name, help, value) in [
        (
            "gitops_trigger_accepted_total",
            "Webhook requests the trigger authenticated, whatever they asked for.",
            trigger.accepted,
        ),
        (
            "gitops_trigger_started_total",
            "Passes the trigger started.",
            trigger.started,
        ),
        (
            "gitops_trigger_start_failed_total",
            "Passes the trigger could not ask for (its pulse file or command failed); the request was answered 503.",
            trigger.start_failed,
        ),
        (
            "gitops_trigger_coalesced_total",
            "Authenticated requests folded into a pass already started within --trigger-min-interval.",
            trigger.coalesced,
        ),
        (
            "gitops_trigger_ignored_total",
            "Authenticated requests for another branch or event, and pings.",
            trigger.ignored,
        ),
    ] {
        out.counter(name, help, &[(&[], value.to_string())]);
    }
    let refused: Vec<([(&str, &str); 1], String)> = crate::trigger::record::REASONS
        .iter()
        .map(|reason| {
            let count = trigger.refused.get(*reason).copied().unwrap_or(0);
            ([("reason", *reason)], count.to_string())
        })
        .collect();
    let refused: Vec<(&[(&str, &str)], String)> = refused
        .iter()
        .map(|(labels, value)| (&labels[..], value.clone()))
        .collect();
    out.counter(
        "gitops_trigger_refused_total",
        "Webhook requests the trigger refused, by reason.",
        &refused,
    );
    if let Some(last) = &trigger.last {
        if let Some(t) = unix_seconds(&last.time) {
            out.gauge(
                "gitops_trigger_last_request_timestamp_seconds",
                "When the trigger last accepted a request, in seconds since the epoch.",
                &[(&[], t.to_string())],
            );
        }
        out.gauge(
            "gitops_trigger_last_request_info",
            "The last accepted request: the forge's form, the source address and the answer.",
            &[(
                &[
                    ("forge", last.forge.as_str()),
                    ("source", last.source.as_str()),
                    ("answer", last.answer.as_str()),
                ],
                "1".into(),
            )],
        );
    }
}

/// The exposition text, family by family.
#[derive(Default)]
struct Families(String);

type Sample<'a> = (&'a [(&'a str, &'a str)], String);

impl Families {
    fn gauge(&mut self, name: &str, help: &str, samples: &[Sample<'_>]) {
        self.family(name, "gauge", help, samples);
    }

    fn counter(&mut self, name: &str, help: &str, samples: &[Sample<'_>]) {
        self.family(name, "counter", help, samples);
    }

    fn family(&mut self, name: &str, kind: &str, help: &str, samples: &[Sample<'_>]) {
        let _ = writeln!(self.0, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                .collect();
            match labels.is_empty() {
                true => {
                    let _ = writeln!(self.0, "{name} {value}");
                }
                false => {
                    let _ = writeln!(self.0, "{name}{{{}}} {value}", labels.join(","));
                }
            }
        }
    }
}

/// A label value as the exposition format quotes it: backslash, double quote and line feed
/// escaped (a branch name is the repository's to choose).
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text escapes only backslash and line feed.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

fn unix_seconds(stamp: &str) -> Option<i64> {
    OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

/// Milliseconds as seconds, exactly: "1.5", "0.007", "12".
fn seconds(ms: u64) -> String {
    match ms % 1000 {
        0 => (ms / 1000).to_string(),
        frac => format!("{}.{:03}", ms / 1000, frac)
            .trim_end_matches('0')
            .to_string(),
    }
}

/// Write the metrics after a pass, when `--metrics-dir` asks for them. A failure is said as a
/// warning: monitoring that cannot be written must not turn a good pass into a failed one.
pub fn after_pass(settings: &Settings, layout: &Layout, state: &State, now: OffsetDateTime) {
    let Some(dir) = &settings.metrics_dir else {
        return;
    };
    let trigger = crate::trigger::record::read_for_report(&settings.trigger_state_dir);
    let mut text = render(
        state,
        crate::report::notify::outbox::len(layout),
        trigger.as_ref(),
    );
    text.push_str(&render_suspension(layout, now));
    if let Err(e) = write(dir, &text) {
        say!(
            "gitops: warning: {}; the pass itself is recorded (make --metrics-dir writable by gitops)",
            crate::pass::one_line(&e)
        );
    }
}

/// Replace `DIR/gitops.prom` atomically: a temporary file with a name nobody can guess (created
/// new, never through a link), readable by all (node_exporter runs as its own user), synced,
/// then renamed over the old one, so a scrape reads the old file or the new, never half of one.
pub fn write(dir: &Path, text: &str) -> Result<()> {
    let target = dir.join(FILE_NAME);
    let failed = || format!("could not write the metrics {}", target.display());
    let tmp: PathBuf = dir.join(format!(
        ".{FILE_NAME}.tmp-{}",
        crate::files::random_suffix().with_context(failed)?
    ));
    let written = (|| -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&tmp)?;
        // The pass runs with umask 077; the mode asked for at creation is masked by it.
        file.set_permissions(fs::Permissions::from_mode(0o644))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, &target)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.with_context(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pass::state::{Applied, LastPass, NotifyRecord, Pending};

    #[test]
    fn label_values_are_escaped() {
        let table = [
            ("main", "main"),
            (r#"a"b"#, r#"a\"b"#),
            (r"a\b", r"a\\b"),
            ("a\nb", r"a\nb"),
            ("é", "é"),
        ];
        for (value, escaped) in table {
            assert_eq!(escape_label(value), escaped, "{value:?}");
        }
    }

    #[test]
    fn milliseconds_are_written_as_exact_seconds() {
        let table = [
            (0, "0"),
            (7, "0.007"),
            (1500, "1.5"),
            (12000, "12"),
            (61234, "61.234"),
        ];
        for (ms, text) in table {
            assert_eq!(seconds(ms), text, "{ms}");
        }
    }

    fn sample_lines(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn a_fresh_state_has_the_counters_at_zero_and_no_invented_times() {
        let text = render(&State::default(), 0, None);
        let version = env!("CARGO_PKG_VERSION");
        let build_info = format!("gitops_build_info{{version=\"{version}\"}} 1");
        let want = [
            build_info.as_str(),
            "gitops_branch_stale 0",
            "gitops_consecutive_failures 0",
            "gitops_pending_attempts 0",
            "gitops_held_back 0",
            "gitops_rollout_waiting 0",
            "gitops_notify_outbox_events 0",
            "gitops_passes_total{outcome=\"up-to-date\"} 0",
            "gitops_passes_total{outcome=\"applied\"} 0",
            "gitops_passes_total{outcome=\"apply-failed\"} 0",
            "gitops_passes_total{outcome=\"fetch-failed\"} 0",
            "gitops_passes_total{outcome=\"refused\"} 0",
            "gitops_passes_total{outcome=\"untrusted\"} 0",
            "gitops_passes_total{outcome=\"config-error\"} 0",
            "gitops_passes_total{outcome=\"reverted\"} 0",
            "gitops_passes_total{outcome=\"revert-failed\"} 0",
            "gitops_passes_total{outcome=\"suspended\"} 0",
            "gitops_notify_dropped_total 0",
        ];
        assert_eq!(sample_lines(&text), want, "{text}");
    }

    #[test]
    fn every_recorded_fact_becomes_a_sample() {
        let state = State {
            repo_url: Some("git://h/r".into()),
            branch: Some("re\"lease\\1".into()),
            applied: Some(Applied {
                commit: "a".repeat(40),
                applied_at: "2026-11-25T08:00:00Z".into(),
                log: None,
                subject: None,
                committed_at: Some("2026-11-25T07:59:00Z".into()),
                signer: None,
                entrypoint: None,
            }),
            last_pass: Some(LastPass {
                started_at: "2026-11-25T09:59:58Z".into(),
                finished_at: "2026-11-25T10:00:00Z".into(),
                outcome: Outcome::ApplyFailed,
                remote_commit: None,
                error: Some("run.sh exited with status 3".into()),
                duration_ms: Some(2250),
            }),
            last_success_at: Some("2026-11-25T09:55:00Z".into()),
            pending: Some(Pending {
                commit: "b".repeat(40),
                attempts: 3,
                last_error: "x".into(),
                log: None,
                subject: None,
                ..Default::default()
            }),
            consecutive_failures: 3,
            passes_total: [("applied".to_string(), 4), ("apply-failed".to_string(), 3)]
                .into_iter()
                .collect(),
            last_apply_ms: Some(1800),
            notify: Some(NotifyRecord {
                dropped_total: 2,
                ..NotifyRecord::default()
            }),
            waiting: Some(crate::pass::state::Waiting {
                commit: "c".repeat(40),
                subject: None,
                wave: 2,
                waves: 4,
                at: "2026-11-25T10:00:00Z".into(),
                since: None,
            }),
            ..State::default()
        };
        let text = render(&state, 5, None);
        let samples = sample_lines(&text);
        let want = [
            "gitops_last_pass_timestamp_seconds 1795600800",
            "gitops_last_success_timestamp_seconds 1795600500",
            "gitops_last_pass_success 0",
            "gitops_pass_duration_seconds 2.25",
            "gitops_apply_duration_seconds 1.8",
            &format!(
                "gitops_applied_commit_info{{commit=\"{}\",branch=\"re\\\"lease\\\\1\"}} 1",
                "a".repeat(40)
            ),
            "gitops_applied_commit_timestamp_seconds 1795593540",
            "gitops_consecutive_failures 3",
            "gitops_pending_attempts 3",
            "gitops_held_back 0",
            "gitops_rollout_waiting 1",
            "gitops_rollout_wave_timestamp_seconds 1795600800",
            "gitops_notify_outbox_events 5",
            "gitops_passes_total{outcome=\"applied\"} 4",
            "gitops_passes_total{outcome=\"apply-failed\"} 3",
            "gitops_passes_total{outcome=\"up-to-date\"} 0",
            "gitops_notify_dropped_total 2",
        ];
        for line in want {
            assert!(samples.contains(&line), "{line} missing from\n{text}");
        }
        // HELP and TYPE once per family, before its samples, and no timestamps after a value.
        for line in &samples {
            assert_eq!(line.rsplit(' ').count(), 2, "{line}");
            let name = line.split(['{', ' ']).next().unwrap();
            let help = text.find(&format!("# HELP {name} ")).unwrap();
            let kind = text.find(&format!("# TYPE {name} ")).unwrap();
            let at = text.find(line).unwrap();
            assert!(help < kind && kind < at, "{name}");
        }
        let up = State {
            last_pass: Some(LastPass {
                outcome: Outcome::UpToDate,
                ..state.last_pass.clone().unwrap()
            }),
            ..state
        };
        assert!(sample_lines(&render(&up, 0, None)).contains(&"gitops_last_pass_success 1"));
    }

    #[test]
    fn the_file_is_replaced_whole_and_readable_by_node_exporter() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a 1\n").unwrap();
        write(dir.path(), "a 2\n").unwrap();
        let file = dir.path().join(FILE_NAME);
        assert_eq!(fs::read_to_string(&file).unwrap(), "a 2\n");
        let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left");
        let missing = dir.path().join("nowhere");
        let e = write(&missing, "a 1\n").unwrap_err();
        assert!(
            format!("{e:#}").contains("could not write the metrics"),
            "{e:#}"
        );
    }

    #[test]
    fn the_trigger_s_counters_are_families_of_their_own() {
        use crate::trigger::record::{Last, Stats};
        let stats = Stats {
            accepted: 4,
            started: 2,
            coalesced: 1,
            ignored: 1,
            refused: [("signature".to_string(), 3)].into_iter().collect(),
            last: Some(Last {
                time: "2026-11-25T10:00:00Z".into(),
                source: "2001:db8::1".into(),
                forge: "gitlab-signed".into(),
                answer: "coalesced".into(),
            }),
            last_start_unix: Some(1),
            start_failed: 1,
        };
        let without = render(&State::default(), 0, None);
        assert!(!without.contains("gitops_trigger_"));
        let text = render(&State::default(), 0, Some(&stats));
        let samples = sample_lines(&text);
        for want in [
            "gitops_trigger_accepted_total 4",
            "gitops_trigger_started_total 2",
            "gitops_trigger_coalesced_total 1",
            "gitops_trigger_ignored_total 1",
            "gitops_trigger_start_failed_total 1",
            "gitops_trigger_refused_total{reason=\"signature\"} 3",
            "gitops_trigger_refused_total{reason=\"replay\"} 0",
            "gitops_trigger_last_request_timestamp_seconds 1795600800",
            "gitops_trigger_last_request_info{forge=\"gitlab-signed\",source=\"2001:db8::1\",answer=\"coalesced\"} 1",
        ] {
            assert!(samples.contains(&want), "{want} missing in\n{text}");
        }
    }
}

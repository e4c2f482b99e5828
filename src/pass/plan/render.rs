//! The plan as a person reads it: the headline, then what it is made of.

use super::*;

pub(super) fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

pub(super) fn described(commit: &CommitShown) -> String {
    match &commit.subject {
        Some(subject) => format!("{} \"{subject}\"", short(&commit.commit)),
        None => short(&commit.commit).to_string(),
    }
}

/// The headline for the pass's outcome.
fn headline(plan: &Plan, tip: &str, outcome: &str) -> String {
    match outcome {
        "applied" => format!(
            "the next sync would apply {tip} ({}, attempt {}): exit 10",
            match plan.reason {
                Some("first-apply") => "first apply",
                Some("new-commit") => "new commit",
                Some("retry") => "retry of a failed commit",
                Some("always") => "--apply always",
                Some("rewind") => "rewind allowed by --allow-rewind",
                _ => "apply",
            },
            plan.attempt.unwrap_or(1)
        ),
        "up-to-date" => format!("up to date at {tip}: the next sync would run nothing"),
        "refused" => format!(
            "the next sync would refuse {tip}: {} no longer descends from the applied commit {} (force-push or rollback); nothing would run (sync exits 4; --allow-rewind would apply it)",
            plan.branch,
            plan.applied.as_ref().map(|a| short(&a.commit)).unwrap_or_default()
        ),
        "untrusted" => format!(
            "the next sync would refuse {tip} as untrusted: nothing would run (sync exits 5)"
        ),
        "suspended" => format!(
            "the next sync would hold {tip} back: applies are suspended; nothing would run"
        ),
        "reverted" => format!(
            "the next sync would hold {tip} back: it failed and was reverted; nothing would run until the branch moves (sync exits 1; --retry-reverted tries it again)"
        ),
        "revert-failed" => format!(
            "the next sync would hold {tip} back: it failed and so did its revert; nothing would run until the branch moves (sync exits 1)"
        ),
        other => format!("the next sync's outcome: {other}"),
    }
}

/// The plan for a person: the headline (what the next sync would do), then what it is made of.
pub(super) fn render(plan: &Plan) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    let tip = short(&plan.tip.commit);
    let gate = plan.gate.as_ref();
    let rollout = gate.and_then(|g| g.rollout.as_ref());
    let headline = match (gate.map(|g| g.verdict), plan.outcome) {
        (Some("held"), outcome @ ("reverted" | "revert-failed")) => format!(
            "the next sync would hold {} back: it failed and {}; {tip} changes nothing else this machine reads, so nothing would run until a commit does (sync exits 1)",
            plan.pending.as_ref().map(|p| short(&p.commit)).unwrap_or("the pending commit"),
            match outcome {
                "revert-failed" => "so did its revert",
                _ => "was reverted",
            }
        ),
        (Some("wait"), "applied") => format!(
            "the next sync would wait for wave {} at {} with {tip}, and run the applied commit again meanwhile (--apply always): exit 10",
            rollout.and_then(|r| r.wave).unwrap_or_default(),
            rollout.and_then(|r| r.at.as_deref()).unwrap_or("?")
        ),
        (Some("skip"), "up-to-date") => format!(
            "the next sync would skip {tip}: no change under {}; nothing would run",
            gate.and_then(|g| g.watch.as_deref()).unwrap_or("the watched paths")
        ),
        (Some("wait"), "up-to-date") => format!(
            "the next sync would wait for wave {} at {}: {tip} reaches this machine then; nothing would run",
            rollout.and_then(|r| r.wave).unwrap_or_default(),
            rollout.and_then(|r| r.at.as_deref()).unwrap_or("?")
        ),
        (_, outcome) => headline(plan, tip, outcome),
    };
    line(format!("gitops plan: {headline}"));
    line(format!(
        "repository:  {} (branch {})",
        plan.repo_url, plan.branch
    ));
    match &plan.applied {
        Some(applied) => line(format!("applied:     {}", described(applied))),
        None => line("applied:     nothing yet".to_string()),
    }
    line(format!("tip:         {}", described(&plan.tip)));
    if let Some(watch) = gate.and_then(|g| g.watch.as_deref()) {
        let changed = match (
            gate.and_then(|g| g.watched_changed),
            gate.map(|g| g.verdict),
        ) {
            (Some(true), _) => "changed",
            (Some(false), Some("run")) => "unchanged; --apply always runs it all the same",
            (Some(false), _) => "unchanged: nothing would run",
            (None, _) => "not compared",
        };
        line(format!("watch:       {watch} ({changed})"));
    }
    if let Some(r) = rollout {
        match (r.changes_rollout, r.wave, r.waves, r.at.as_deref()) {
            (true, ..) => line(format!(
                "rollout:     the commit changes {}: every machine at once",
                crate::fleet::rollout::FILE
            )),
            _ if gate.is_some_and(|g| g.own_only) => line(
                "rollout:     the commit changes only this machine's hosts/ directory: no wave holds it"
                    .to_string(),
            ),
            (false, Some(wave), Some(waves), Some(at)) => line(format!(
                "rollout:     this machine is in wave {wave} (waves 0 to {}), which begins at {at}{}",
                waves.saturating_sub(1),
                match gate.map(|g| g.verdict) {
                    Some("wait") => ": not yet",
                    _ => ": begun",
                }
            )),
            _ => {}
        }
    }
    if let Some(p) = &plan.pending {
        line(format!(
            "pending:     {} after {} failed attempt{}: {}",
            short(&p.commit),
            p.attempts,
            if p.attempts == 1 { "" } else { "s" },
            p.last_error
        ));
    }
    let c = &plan.commits;
    if c.total > 0 || c.dropped.is_some() {
        let more = if c.more { "more than " } else { "" };
        let whose = match &plan.applied {
            Some(_) => "new",
            None => "on the branch",
        };
        line(format!("commits:     {more}{} {whose}", c.total));
        for commit in &c.list {
            line(format!("  {}", described(commit)));
        }
        if c.list.len() < c.total {
            line(format!("  … and {more}{} more", c.total - c.list.len()));
        }
        if let Some(dropped) = c.dropped {
            line(dropped_line(dropped));
        }
    }
    let f = &plan.files;
    if f.total > 0 {
        let against = match &f.base {
            Some(_) => "",
            None => " (against an empty tree)",
        };
        let uncounted = match f.uncounted {
            0 => String::new(),
            n => format!(", {n} not counted"),
        };
        line(format!(
            "files:       {} changed, {} insertion{}(+), {} deletion{}(-){uncounted}{against}",
            f.total,
            f.insertions,
            if f.insertions == 1 { "" } else { "s" },
            f.deletions,
            if f.deletions == 1 { "" } else { "s" },
        ));
        let width = f
            .list
            .iter()
            .map(|c| c.path.chars().count())
            .max()
            .unwrap_or(0)
            .min(50);
        for change in &f.list {
            line(format!("  {}", stat_line(change, width)));
        }
        if f.list.len() < f.total {
            line(format!("  … and {} more files", f.total - f.list.len()));
        }
    }
    let e = &plan.entrypoint;
    let kind = match e.kind {
        // The pass refuses to run either: said here, as for a missing entry point.
        Some(k @ ("directory" | "submodule")) => {
            format!(", {k}: not a file, so the apply would fail")
        }
        Some(k) => format!(", {k}"),
        None => String::new(),
    };
    let change = match e.change {
        "missing" | "deleted" => format!(
            "{}: the tip has no entry point, so the apply would fail",
            e.change
        ),
        other => other.to_string(),
    };
    line(format!("entry point: {} ({change}{kind})", e.path));
    line(format!("  chosen:    {}", e.why));
    if let Some(note) = &e.note {
        line(format!("  no diff: {note}"));
    }
    for diff_line in e.diff.iter().flatten() {
        line(format!("  {diff_line}"));
    }
    if e.truncated {
        line(format!(
            "  … the diff goes on (shown: {MAX_DIFF_LINES} lines)"
        ));
    }
    let s = &plan.signature;
    line(format!(
        "signature:   {}",
        match (s.verdict, &s.signer, &s.error) {
            ("trusted", Some(signer), _) => format!(
                "trusted: signed by {} ({} key {}){}",
                signer.principal,
                signer.method,
                signer.fingerprint,
                match s.checked {
                    Some(n) if n > 1 => format!("; {n} commits verified"),
                    _ => String::new(),
                }
            ),
            ("untrusted", _, Some(error)) => format!("untrusted: {error}"),
            ("not-checked", _, _) => "not checked: nothing would be applied".to_string(),
            _ => "not checked (no --allowed-signers or --gpg-keyring)".to_string(),
        }
    ));
    if plan.decision == "apply" {
        line(format!("health:      {}", health_words(&plan.health, tip)));
    }
    match &plan.suspension {
        Some(s) if s.active => line(format!(
            "suspended:   by {} since {} until {}{}: the pass fetches and runs nothing",
            s.by,
            s.at,
            s.until,
            s.reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        )),
        Some(s) => line(format!(
            "suspended:   no (the suspension by {} ended at {})",
            s.by, s.until
        )),
        None => line("suspended:   no".to_string()),
    }
    if let Some(r) = &plan.reboot {
        line(format!(
            "reboot:      {} ({} of {}{})",
            crate::reboot::plan::shown(&r.decision, &r.reason),
            r.file,
            short(&r.commit),
            if plan.would_apply {
                ", once applied"
            } else {
                ""
            }
        ));
    }
    if let Some(stale) = &plan.stale {
        line(format!("stale:       {stale}"));
    }
    for warning in &plan.warnings {
        line(format!("warning:     {warning}"));
    }
    out
}

/// What a rewind loses of the applied history, counted up to the bound the new commits are:
/// at the bound there may be more.
fn dropped_line(dropped: usize) -> String {
    let least = if dropped >= MAX_COMMITS_COUNTED {
        "at least "
    } else {
        ""
    };
    format!(
        "  the branch no longer has {least}{dropped} commit{} of the applied history",
        if dropped == 1 { "" } else { "s" }
    )
}

/// One line of the diff stat: `M path | +3 -1`.
fn stat_line(change: &FileChange, width: usize) -> String {
    let mark = match change.change {
        "added" => 'A',
        "deleted" => 'D',
        "type-changed" => 'T',
        _ => 'M',
    };
    let counts = match (&change.note, change.insertions, change.deletions) {
        (Some(note), _, _) => note.clone(),
        (None, Some(0), Some(0)) if change.change == "mode-changed" => "mode".to_string(),
        (None, Some(i), Some(d)) => match (i, d) {
            (0, 0) => "0".to_string(),
            (i, 0) => format!("+{i}"),
            (0, d) => format!("-{d}"),
            (i, d) => format!("+{i} -{d}"),
        },
        _ => String::new(),
    };
    let pad = width.saturating_sub(change.path.chars().count());
    format!("{mark} {}{} | {counts}", change.path, " ".repeat(pad))
}

/// The health policy in words, for the tip `tip`.
pub(super) fn health_words(h: &Health, tip: &str) -> String {
    let check = match (&h.check, h.from, h.missing) {
        (Some(check), _, true) => {
            format!("{check} (--health-check), which {tip} does not have: the apply would fail")
        }
        (Some(check), from, false) => format!(
            "{check} ({}), --health-timeout {}, {}",
            if from == Some("option") {
                "--health-check"
            } else {
                "the commit's own"
            },
            h.timeout,
            match h.retries {
                0 => "no retries".to_string(),
                n => format!("{n} retries {} apart", h.interval),
            }
        ),
        (None, _, _) => "none: the entry point's exit status alone decides".to_string(),
    };
    let failure = match (h.on_failure, &h.revert_to) {
        ("revert", Some(to)) => format!(
            "--on-failure revert: if it fails, the machine goes back to {} and {tip} is held back until the branch moves{}",
            short(to),
            match h.retry_reverted.as_str() {
                "never" => String::new(),
                after => format!(" (or --retry-reverted {after} passes)"),
            }
        ),
        ("revert", None) => format!(
            "--on-failure revert, with nothing applied to go back to: if it fails, {tip} stays pending and is retried every pass"
        ),
        _ => format!(
            "--on-failure stay: if it fails, {tip} stays pending and is retried every pass"
        ),
    };
    format!("{check}; {failure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewind_s_losses_at_the_count_s_bound_are_a_lower_bound() {
        assert!(dropped_line(1).ends_with("no longer has 1 commit of the applied history"));
        assert!(dropped_line(9_999).contains("has 9999 commits"));
        assert!(dropped_line(MAX_COMMITS_COUNTED).contains("has at least 10000 commits"));
    }

    #[test]
    fn the_diff_stat_line_says_what_changed_and_how_much() {
        let change = |change, insertions, deletions, note: Option<&str>| FileChange {
            path: "run.sh".into(),
            change,
            insertions,
            deletions,
            note: note.map(String::from),
        };
        #[rustfmt::skip]
        let table = [
            (change("modified", Some(3), Some(1), None), "M run.sh     | +3 -1"),
            (change("added", Some(9), Some(0), None), "A run.sh     | +9"),
            (change("deleted", Some(0), Some(2), None), "D run.sh     | -2"),
            (change("mode-changed", Some(0), Some(0), None), "M run.sh     | mode"),
            (change("type-changed", None, None, Some("binary, 3 -> 9 bytes")), "T run.sh     | binary, 3 -> 9 bytes"),
        ];
        for (change, want) in table {
            assert_eq!(stat_line(&change, 10), want);
        }
    }
}

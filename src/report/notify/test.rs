//! `gitops notify --test`: a test event to every destination now, and what each answered, so
//! an operator can check a webhook before relying on it.

use std::time::Duration;

use anyhow::Result;
use time::OffsetDateTime;

use super::event::{Event, Kind};
use super::options::NotifyOptions;
use super::send::{send, Answer};
use crate::exit::{fail, Exit};

/// How long one destination has to answer the test.
const TEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Send a test event to every destination now and say what each answered (exits 0 only if all took it)
    #[arg(long, required = true)]
    pub test: bool,

    #[command(flatten)]
    pub notify: NotifyOptions,
}

pub fn run(args: &Args, now: OffsetDateTime) -> Result<Exit> {
    let notifier = args.notify.resolve()?;
    if notifier.is_empty() {
        return Err(fail(
            Exit::Usage,
            "no notification destination: set GITOPS_NOTIFY_URL or --notify-url-file",
        ));
    }
    let event = test_event(now);
    let mut lines = Vec::new();
    let mut all_delivered = true;
    for dest in &notifier.destinations {
        let answer = send(&notifier, dest, &event, None, TEST_TIMEOUT);
        all_delivered &= matches!(answer, Answer::Delivered { .. });
        lines.push([
            dest.shown.clone(),
            dest.format.as_str().to_string(),
            said(&answer),
        ]);
    }
    let width = |i: usize| {
        lines
            .iter()
            .map(|l| l[i].chars().count())
            .max()
            .unwrap_or(0)
    };
    let (shown, format) = (width(0), width(1));
    for [a, b, c] in &lines {
        out!("{a:shown$}  {b:format$}  {c}");
    }
    Ok(if all_delivered {
        Exit::Ok
    } else {
        Exit::ApplyFailed
    })
}

/// What a destination answered, as the operator reads it.
fn said(answer: &Answer) -> String {
    match answer {
        Answer::Delivered { status } => format!("delivered ({status})"),
        Answer::Retry { why, after: None } => format!("failed: {why}; a pass would try again"),
        Answer::Retry {
            why,
            after: Some(after),
        } => format!(
            "failed: {why}; a pass would try again after {}",
            crate::config::format_duration(Duration::from_secs(after.as_secs().max(1)))
        ),
        Answer::Rejected { why, .. } => {
            format!("rejected: {why}; a pass would drop its events: check the URL")
        }
    }
}

fn test_event(now: OffsetDateTime) -> Event {
    let id = super::deliver::event_id()
        .unwrap_or_else(|_| format!("{:032x}", now.unix_timestamp_nanos()));
    let repo_url = std::env::var("GITOPS_REPO_URL")
        .ok()
        .and_then(|u| crate::config::RepoUrl::parse(u.trim()).ok())
        .map(|u| u.redacted);
    let at = crate::report::text::rfc3339(now);
    Event {
        version: 1,
        id,
        event: Kind::Test,
        reminder: false,
        host: super::deliver::host(),
        machine_id: super::deliver::machine_id(),
        outcome: Kind::Test.as_str().to_string(),
        repo_url,
        branch: std::env::var("GITOPS_BRANCH")
            .ok()
            .filter(|b| !b.is_empty()),
        commit: None,
        subject: None,
        previous_commit: None,
        attempt: None,
        started_at: at.clone(),
        finished_at: at,
        duration_seconds: 0.0,
        exit_code: 0,
        error: None,
        // So that the operator sees where an apply's log goes (attached, or quoted).
        log_tail: Some("gitops notify --test: the end of an apply's log shows here.\n".to_string()),
    }
}

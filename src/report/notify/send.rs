//! One delivery: an event, rendered for one destination, posted once, and what the answer
//! means for the outbox (delivered, try again later, or give up).

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use time::OffsetDateTime;

use super::event::{Event, LOG_TAIL_BYTES};
use super::format::{self, Extras, Format, LOG_ATTACHMENT_BYTES};
use super::options::{Destination, Notifier};

/// What a destination made of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A 2xx: the event can leave the outbox for this destination.
    Delivered { status: u16 },
    /// 429, 5xx, or no answer at all: keep the event and try again (not before `after`).
    Retry {
        why: String,
        after: Option<Duration>,
    },
    /// Any other status: sending the same request again would get the same answer.
    Rejected { status: u16, why: String },
}

/// The longest wait a server can ask for: beyond it, the next pass tries anyway.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The most of a response body read: enough for an error message, never a memory hazard.
const MAX_RESPONSE_BODY: u64 = 64 * 1024;

/// Post `event` to `dest`, the log attached or quoted as its format does, within `timeout`
/// all told (connect, send, answer). Never follows a redirect: a webhook that moved must be
/// configured anew, not have its event (and signature) sent somewhere else.
pub fn send(
    notifier: &Notifier,
    dest: &Destination,
    event: &Event,
    log: Option<&Path>,
    timeout: Duration,
) -> Answer {
    let log_limit = match dest.format {
        Format::Discord => LOG_ATTACHMENT_BYTES,
        Format::Slack => LOG_TAIL_BYTES,
        Format::Auto | Format::Json => 0,
    };
    let log = log
        .filter(|_| log_limit > 0)
        .and_then(|p| read_tail(p, log_limit));
    let boundary = format!("gitops-{}", random_hex());
    let body = format::render(
        dest.format,
        event,
        &Extras {
            log: log.as_deref(),
            secret: notifier.secret(),
            now_unix: OffsetDateTime::now_utc().unix_timestamp(),
            boundary: &boundary,
        },
    );
    let agent = crate::http::agent(timeout);
    let mut request = agent
        .post(dest.url())
        .header("Content-Type", &body.content_type);
    for (name, value) in &body.headers {
        request = request.header(name, value);
    }
    if let Some(authorization) = dest.authorization() {
        request = request.header("Authorization", authorization);
    }
    match request.send(&body.bytes[..]) {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let retry_after_header = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let mut answer = Vec::new();
            // What could be read in time is enough: the status has arrived.
            let _ = response
                .body_mut()
                .as_reader()
                .take(MAX_RESPONSE_BODY)
                .read_to_end(&mut answer);
            judge(
                &dest.shown,
                status,
                retry_after_header.as_deref(),
                &answer,
                OffsetDateTime::now_utc(),
            )
        }
        Err(e) => Answer::Retry {
            why: crate::http::network_error(&dest.shown, None, &e, timeout),
            after: None,
        },
    }
}

/// What a status means: 2xx delivered, 429 and 5xx retried (when the server says), anything
/// else rejected with the server's own word for it.
pub fn judge(
    shown: &str,
    status: u16,
    retry_after_header: Option<&str>,
    body: &[u8],
    now: OffsetDateTime,
) -> Answer {
    let reason = ureq::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(|r| format!(" {r}"))
        .unwrap_or_default();
    let detail = server_says(body)
        .map(|d| format!(": {d}"))
        .unwrap_or_default();
    match status {
        200..=299 => Answer::Delivered { status },
        429 | 500..=599 => Answer::Retry {
            why: crate::redact::scrub(&format!("{shown} answered {status}{reason}{detail}")),
            after: retry_after(retry_after_header, body, now),
        },
        300..=399 => Answer::Rejected {
            status,
            why: format!(
                "{shown} answered {status}{reason}: redirects are not followed, configure the URL it moved to"
            ),
        },
        _ => Answer::Rejected {
            status,
            why: crate::redact::scrub(&format!("{shown} answered {status}{reason}{detail}")),
        },
    }
}

/// The server's own short word on a failure: Discord's JSON `message`, else the first line of
/// a short text body (Slack answers `invalid_token`, `no_service`, …); printable, bounded.
fn server_says(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let said = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) => v.get("message")?.as_str()?.to_string(),
        Err(_) if text.trim_start().starts_with('<') => return None, // an HTML page
        Err(_) => text.lines().next()?.to_string(),
    };
    let said: String = said.chars().filter(|c| !c.is_control()).collect();
    let said = said.trim();
    (!said.is_empty()).then(|| format::cut(said, 120))
}

/// How long the server asks us to wait: `Retry-After` (seconds or an HTTP date) or Discord's
/// JSON `retry_after` (seconds, fractional), the longer of the two, at most an hour.
pub fn retry_after(header: Option<&str>, body: &[u8], now: OffsetDateTime) -> Option<Duration> {
    let from_header = header.map(str::trim).and_then(|h| {
        if let Ok(seconds) = h.parse::<u64>() {
            return Some(Duration::from_secs(seconds.min(MAX_RETRY_AFTER.as_secs())));
        }
        let format = time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        );
        let at = time::PrimitiveDateTime::parse(h, &format)
            .ok()?
            .assume_utc();
        let wait = at - now;
        Some(if wait.is_negative() {
            Duration::ZERO
        } else {
            Duration::try_from(wait).unwrap_or(MAX_RETRY_AFTER)
        })
    });
    let from_body = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("retry_after")?.as_f64())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(MAX_RETRY_AFTER.as_secs_f64())));
    from_header
        .into_iter()
        .chain(from_body)
        .max()
        .map(|d| d.min(MAX_RETRY_AFTER))
}

/// The end of the log file, at most `limit` bytes, from a line start. None when it cannot be
/// read (pruned, never written): the event's own tail stands in.
fn read_tail(path: &Path, limit: usize) -> Option<Vec<u8>> {
    let mut file = crate::config::open_regular(path).ok()?;
    let len = file.metadata().ok()?.len();
    let start = len.saturating_sub(limit as u64);
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut bytes = Vec::new();
    file.take(limit as u64).read_to_end(&mut bytes).ok()?;
    // Masked as the event's own tail is: the entry point may print a credential gitops knows.
    let tail = String::from_utf8_lossy(format::log_tail(&bytes, limit, start > 0));
    Some(crate::redact::scrub(&tail).into_bytes())
}

/// 32 random hex digits (the kernel's), or the clock's nanoseconds when it cannot be read: a
/// multipart boundary only has to be unlikely to appear in the log.
fn random_hex() -> String {
    let random = || crate::files::random_suffix().ok();
    match (random(), random()) {
        (Some(a), Some(b)) => format!("{a}{b}"),
        _ => format!("{:032x}", OffsetDateTime::now_utc().unix_timestamp_nanos()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_judged_as_the_outbox_needs() {
        let now = time::macros::datetime!(2025-01-02 03:04:05 UTC);
        let h = "https://hooks.example";
        let table: [(u16, Option<&str>, &str, Answer); 9] = [
            (200, None, "", Answer::Delivered { status: 200 }),
            (204, None, "", Answer::Delivered { status: 204 }),
            (
                500,
                None,
                "",
                Answer::Retry {
                    why: format!("{h} answered 500 Internal Server Error"),
                    after: None,
                },
            ),
            (
                503,
                Some("120"),
                "<html>busy</html>",
                Answer::Retry {
                    why: format!("{h} answered 503 Service Unavailable"),
                    after: Some(Duration::from_secs(120)),
                },
            ),
            (
                429,
                Some("1"),
                r#"{"message": "You are being rate limited.", "retry_after": 2.5, "global": false}"#,
                Answer::Retry {
                    why: format!("{h} answered 429 Too Many Requests: You are being rate limited."),
                    after: Some(Duration::from_millis(2500)),
                },
            ),
            (
                404,
                None,
                r#"{"message": "Unknown Webhook", "code": 10015}"#,
                Answer::Rejected {
                    status: 404,
                    why: format!("{h} answered 404 Not Found: Unknown Webhook"),
                },
            ),
            (
                403,
                None,
                "invalid_token\nmore",
                Answer::Rejected {
                    status: 403,
                    why: format!("{h} answered 403 Forbidden: invalid_token"),
                },
            ),
            (
                301,
                None,
                "",
                Answer::Rejected {
                    status: 301,
                    why: format!("{h} answered 301 Moved Permanently: redirects are not followed, configure the URL it moved to"),
                },
            ),
            (
                599,
                None,
                "",
                Answer::Retry {
                    why: format!("{h} answered 599"),
                    after: None,
                },
            ),
        ];
        for (status, header, body, answer) in table {
            assert_eq!(
                judge(h, status, header, body.as_bytes(), now),
                answer,
                "{status}"
            );
        }
    }

    #[test]
    fn retry_after_reads_seconds_dates_and_discord_and_is_capped() {
        let now = time::macros::datetime!(2025-01-02 03:04:05 UTC);
        let table: [(Option<&str>, &str, Option<u64>); 9] = [
            (None, "", None),
            (Some("30"), "", Some(30_000)),
            (Some(" 7 "), "", Some(7_000)),
            (Some("99999"), "", Some(3_600_000)),
            (Some("Thu, 02 Jan 2025 03:05:05 GMT"), "", Some(60_000)),
            (Some("Thu, 02 Jan 2025 03:00:00 GMT"), "", Some(0)),
            (Some("soon"), "", None),
            (None, r#"{"retry_after": 0.25}"#, Some(250)),
            (Some("1"), r#"{"retry_after": 1e300}"#, Some(3_600_000)),
        ];
        for (header, body, millis) in table {
            assert_eq!(
                retry_after(header, body.as_bytes(), now),
                millis.map(Duration::from_millis),
                "{header:?} {body}"
            );
        }
        assert_eq!(retry_after(None, br#"{"retry_after": -1}"#, now), None);
    }

    #[test]
    fn the_log_tail_is_read_from_a_line_start() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        std::fs::write(&log, "first\nsecond\nthird\n").unwrap();
        assert_eq!(read_tail(&log, 100).unwrap(), b"first\nsecond\nthird\n");
        assert_eq!(read_tail(&log, 10).unwrap(), b"third\n");
        assert_eq!(read_tail(&dir.path().join("gone"), 10), None);
        crate::redact::remember(vec!["t41l-s3cr3t-t0k3n".to_string()]);
        std::fs::write(&log, "+ curl https://h/t41l-s3cr3t-t0k3n\n").unwrap();
        assert_eq!(read_tail(&log, 100).unwrap(), b"+ curl https://h/***\n");
        assert_eq!(read_tail(dir.path(), 10), None);
    }
}

//! The suspension as status shows it: first, since it explains everything below it (a pass
//! `suspended`, a commit not applied); never a reason to be unhealthy.

use time::OffsetDateTime;

use super::render::{parse_time, short, span, Line, Tone};
use crate::pass::suspend::Suspension;

/// What status found in `suspended.json`: nothing, a record, or why it cannot be read.
pub type Found = Result<Option<Suspension>, String>;

/// The summary's lines for the suspension; none when there is none.
pub fn lines(found: &Found, now: OffsetDateTime) -> Vec<Line> {
    let record = match found {
        Ok(None) => return Vec::new(),
        Ok(Some(record)) => record,
        Err(why) => {
            return vec![Line::new(
                "suspended",
                Tone::Bad,
                format!("{why}: not in effect; the next gitops sync removes it (gitops resume removes it now)"),
            )]
        }
    };
    if !record.active_at(now) {
        return vec![Line::new(
            "suspended",
            Tone::Plain,
            format!(
                "the suspension by {} ended at {}: the next pass removes it and applies",
                record.by, record.until
            ),
        )];
    }
    let left = record
        .ends()
        .map(|until| format!(" (in {})", span((until - now).whole_seconds().max(0))))
        .unwrap_or_default();
    let since = parse_time(&record.at)
        .map(|at| {
            format!(
                "{} ago ({})",
                span((now - at).whole_seconds().max(0)),
                record.at
            )
        })
        .unwrap_or_else(|| record.at.clone());
    let mut out = vec![Line::new(
        "suspended",
        Tone::Pending,
        format!(
            "applies held back by {}, since {since}, until {}{left}; gitops resume ends it",
            record.by, record.until
        ),
    )];
    if let Some(reason) = &record.reason {
        out.push(Line::new("  reason", Tone::Plain, reason.clone()));
    }
    if let Some(held) = &record.held {
        let subject = held
            .subject
            .as_deref()
            .map(|s| format!(" {s:?}"))
            .unwrap_or_default();
        out.push(Line::new(
            "  held back",
            Tone::Pending,
            format!("{}{subject}", short(&held.commit)),
        ));
    }
    out
}

/// The suspension as `status --json` adds it beside state.json's fields (`"suspension"`):
/// the record with `"active"`, or `{"error": …}`; None when there is none.
pub fn json(found: &Found, now: OffsetDateTime) -> Option<serde_json::Value> {
    match found {
        Ok(None) => None,
        Ok(Some(record)) => {
            let mut value = serde_json::to_value(record).ok()?;
            if let Some(object) = value.as_object_mut() {
                object.insert("active".into(), record.active_at(now).into());
            }
            Some(value)
        }
        Err(why) => Some(serde_json::json!({ "error": why })),
    }
}

#[cfg(test)]
mod tests {
    use super::super::render::format_lines;
    use super::*;
    use crate::pass::suspend::HeldBack;

    #[test]
    fn a_suspension_says_who_since_until_why_and_what_it_holds_back() {
        let now = time::macros::datetime!(2026-12-03 12:00 UTC);
        let mut record = Suspension {
            by: "alice".into(),
            at: "2026-12-03T11:50:00Z".into(),
            until: "2026-12-03T14:00:00Z".into(),
            reason: Some("db migration".into()),
            held: Some(HeldBack {
                commit: "b".repeat(40),
                subject: Some("Bump nginx".into()),
            }),
        };
        let text = format_lines(&lines(&Ok(Some(record.clone())), now), false);
        assert_eq!(
            text,
            "suspended:    applies held back by alice, since 10min ago (2026-12-03T11:50:00Z), until 2026-12-03T14:00:00Z (in 2h 0min); gitops resume ends it\n  reason:     db migration\n  held back:  bbbbbbbbbbbb \"Bump nginx\"\n"
        );
        let value = json(&Ok(Some(record.clone())), now).unwrap();
        assert_eq!(value["active"], true);
        assert_eq!(value["held"]["commit"], "b".repeat(40));

        record.until = "2026-12-03T12:00:00Z".into();
        let text = format_lines(&lines(&Ok(Some(record.clone())), now), false);
        assert!(text.contains("ended at 2026-12-03T12:00:00Z"), "{text}");
        assert_eq!(json_active(&Ok(Some(record)), now), Some(false));

        assert!(lines(&Ok(None), now).is_empty());
        assert_eq!(json(&Ok(None), now), None);
        let broken: Found = Err("/s/suspended.json is a FIFO, not a file".into());
        let text = format_lines(&lines(&broken, now), false);
        assert!(
            text.starts_with(
                "suspended:    /s/suspended.json is a FIFO, not a file: not in effect"
            ),
            "{text}"
        );
        assert_eq!(
            json(&broken, now).unwrap()["error"],
            "/s/suspended.json is a FIFO, not a file"
        );
    }

    fn json_active(found: &Found, now: OffsetDateTime) -> Option<bool> {
        json(found, now).and_then(|v| v["active"].as_bool())
    }
}

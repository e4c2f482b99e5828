//! Suspension: applies held back by an operator until an expiry, recorded in
//! `STATE/suspended.json`.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::state::{read_private, Layout};

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
}

/// The suspension on record, active or expired; None when there is none.
pub fn read(layout: &Layout) -> Result<Option<Suspension>> {
    let path = layout.suspension_file();
    let Some(bytes) = read_private(&path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).with_context(|| {
        format!(
            "{} is unreadable; run gitops resume to remove it, or gitops suspend to write it again",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suspension_is_active_until_its_expiry_and_an_unreadable_one_never() {
        let s = |until: &str| Suspension {
            by: "alice".into(),
            at: "2026-12-03T10:00:00Z".into(),
            until: until.into(),
            reason: None,
        };
        let now = time::macros::datetime!(2026-12-03 12:00 UTC);
        #[rustfmt::skip]
        let table = [
            ("2026-12-03T12:00:01Z", true),
            ("2026-12-03T12:00:00Z", false), // ends at its expiry
            ("2026-12-03T11:00:00Z", false),
            ("tomorrow", false),
        ];
        for (until, active) in table {
            assert_eq!(s(until).active_at(now), active, "{until}");
        }
    }
}

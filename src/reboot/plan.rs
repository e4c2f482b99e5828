//! The reboot plan: a pure function of the request, the boot, the clock and what was recorded.
//! A request means "this machine must have booted at or after T"; a boot at or after T, or a
//! new boot after the reboot gitops asked for, satisfies it, so no clock can make a loop.

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use super::request::Request;

/// What the machine says about itself now.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub now: OffsetDateTime,
    /// /proc/stat's btime.
    pub booted_at: OffsetDateTime,
    /// /proc/sys/kernel/random/boot_id: a new one proves a reboot, whatever the clocks say.
    pub boot_id: String,
    pub uptime: Duration,
    /// None where the machine cannot tell (no timesyncd, no timedatectl).
    pub clock_synchronised: Option<bool>,
}

/// The operator's guards.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub min_uptime: Duration,
    pub require_clock_sync: bool,
}

/// A reboot gitops asked for: recorded, durably, before the reboot command runs.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Asked {
    /// The request's time (RFC 3339).
    pub after: String,
    pub boot_id: String,
    pub asked_at: String,
}

/// What holds a due reboot back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// The reboot command ran in this boot and the machine is still up.
    CommandDidNotReboot,
    ClockNotSynchronised,
    UptimeTooShort,
    OutsideWindow,
    /// The fleet lock server did not grant the lock (its answer).
    FleetLock(String),
    /// `gitops suspend` holds applies back (who): someone is working on the machine, and a
    /// reboot is the most disruptive thing a pass does.
    Suspended(String),
}

/// The plan for this machine now.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// No request.
    None,
    /// Booted at or after the request's time, or rebooted since gitops asked.
    Satisfied,
    /// Due at this time (the request's time plus this machine's splay), in the future.
    Scheduled {
        at: OffsetDateTime,
    },
    RebootNow,
    /// Due, and held back by `guard`, until `until` where that is known.
    Blocked {
        guard: Guard,
        until: Option<OffsetDateTime>,
    },
}

impl Decision {
    pub fn name(&self) -> &'static str {
        match self {
            Decision::None => "none",
            Decision::Satisfied => "satisfied",
            Decision::Scheduled { .. } => "scheduled",
            Decision::RebootNow => "reboot-now",
            Decision::Blocked { .. } => "blocked",
        }
    }
}

/// Decide. `splay` is this machine's share of the request's splay (`request::splay_offset`).
pub fn decide(
    request: Option<&Request>,
    splay: Duration,
    facts: &Facts,
    policy: &Policy,
    asked: Option<&Asked>,
) -> Decision {
    let Some(request) = request else {
        return Decision::None;
    };
    let asked_for_this = asked.filter(|a| {
        OffsetDateTime::parse(&a.after, &time::format_description::well_known::Rfc3339)
            .is_ok_and(|after| after == request.after)
    });
    if let Some(asked) = asked_for_this {
        if asked.boot_id != facts.boot_id {
            return Decision::Satisfied;
        }
    }
    if facts.booted_at >= request.after {
        return Decision::Satisfied;
    }
    if asked_for_this.is_some() {
        return Decision::Blocked {
            guard: Guard::CommandDidNotReboot,
            until: None,
        };
    }
    let due = request.after + time::Duration::try_from(splay).unwrap_or(time::Duration::ZERO);
    if facts.now < due {
        return Decision::Scheduled { at: due };
    }
    if policy.require_clock_sync && facts.clock_synchronised == Some(false) {
        return Decision::Blocked {
            guard: Guard::ClockNotSynchronised,
            until: None,
        };
    }
    if facts.uptime < policy.min_uptime {
        let left = time::Duration::try_from(policy.min_uptime - facts.uptime)
            .unwrap_or(time::Duration::ZERO);
        return Decision::Blocked {
            guard: Guard::UptimeTooShort,
            until: Some(facts.now + left),
        };
    }
    if let Some(window) = &request.window {
        if !window.is_open(facts.now) {
            return Decision::Blocked {
                guard: Guard::OutsideWindow,
                until: window.next_open(facts.now),
            };
        }
    }
    Decision::RebootNow
}

/// The decision in words, for status, the JSON and the journal.
pub fn reason(decision: &Decision, request: Option<&Request>, facts: &Facts) -> String {
    let at = |t: OffsetDateTime| crate::report::text::rfc3339(t);
    let after = request.map(|r| at(r.after)).unwrap_or_default();
    match decision {
        Decision::None => "no reboot is requested".to_string(),
        Decision::Satisfied => format!(
            "booted at {} (boot {}): the request for a boot at or after {after} is met",
            at(facts.booted_at),
            short_boot(&facts.boot_id)
        ),
        Decision::Scheduled { at: due } => {
            format!("a reboot is due at {} (requested after {after})", at(*due))
        }
        Decision::RebootNow => format!(
            "the machine booted at {} and must have booted at or after {after}: rebooting",
            at(facts.booted_at)
        ),
        Decision::Blocked { guard, until } => {
            let until = until
                .map(|u| format!(" until {}", at(u)))
                .unwrap_or_default();
            match guard {
                Guard::CommandDidNotReboot => format!(
                    "blocked: the reboot command ran in this boot ({}) and the machine is still up; not asking again in this boot (check --reboot-command)",
                    short_boot(&facts.boot_id)
                ),
                Guard::ClockNotSynchronised => "blocked: the clock is not synchronised (NTP); a wrong clock could reboot too early".to_string(),
                Guard::UptimeTooShort => format!("blocked{until}: up for less than --reboot-min-uptime"),
                Guard::OutsideWindow => format!(
                    "blocked{until}: outside the window {}",
                    request.and_then(|r| r.window.as_ref()).map(|w| w.to_string()).unwrap_or_default()
                ),
                Guard::FleetLock(why) => format!("blocked: the fleet lock was not granted: {why}"),
                Guard::Suspended(by) => format!("blocked{until}: applies are suspended by {by} (gitops resume ends it)"),
            }
        }
    }
}

/// The decision and its reason on one line, the name once: a blocked reason already starts
/// with "blocked".
pub fn shown(decision: &str, reason: &str) -> String {
    if reason.starts_with(decision) {
        reason.to_string()
    } else {
        format!("{decision}: {reason}")
    }
}

fn short_boot(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn request(text: &str) -> Request {
        super::super::request::parse(text).unwrap()
    }

    /// What, the request file, the splay, the facts, the policy, what was asked, the plan.
    type Row<'a> = (
        &'a str,
        Option<String>,
        Duration,
        Facts,
        &'a Policy,
        Option<Asked>,
        Decision,
    );

    #[test]
    fn the_plan_for_every_case() {
        // Thursday 2026-12-24.
        let now = datetime!(2026-12-24 03:30:00 UTC);
        let t = "after = 2026-12-24T03:00:00Z\n";
        let facts = |booted_at: OffsetDateTime, minutes_up: u64, synced: Option<bool>| Facts {
            now,
            booted_at,
            boot_id: "bbbbbbbb-this-boot".into(),
            uptime: Duration::from_secs(minutes_up * 60),
            clock_synchronised: synced,
        };
        let early = datetime!(2026-12-20 00:00:00 UTC);
        let asked = |after: &str, boot: &str| Asked {
            after: after.into(),
            boot_id: boot.into(),
            asked_at: "2026-12-24T03:05:00Z".into(),
        };
        let policy = Policy {
            min_uptime: Duration::from_secs(15 * 60),
            require_clock_sync: true,
        };
        let lax = Policy {
            require_clock_sync: false,
            ..policy.clone()
        };
        let windowed = |w: &str| format!("{t}window = {w}\n");
        let hour = Duration::from_secs(3600);
        let blocked = |guard, until| Decision::Blocked { guard, until };
        #[rustfmt::skip]
        let table: Vec<Row> = vec![
            ("no request", None, hour, facts(early, 9999, Some(true)), &policy, None, Decision::None),
            ("booted after T", Some(t.into()), hour, facts(datetime!(2026-12-24 03:10:00 UTC), 20, Some(true)), &policy, None, Decision::Satisfied),
            ("booted exactly at T", Some(t.into()), hour, facts(datetime!(2026-12-24 03:00:00 UTC), 30, Some(true)), &policy, None, Decision::Satisfied),
            ("due", Some(t.into()), Duration::ZERO, facts(early, 9999, Some(true)), &policy, None, Decision::RebootNow),
            ("splay not reached", Some(t.into()), hour, facts(early, 9999, Some(true)), &policy, None, Decision::Scheduled { at: datetime!(2026-12-24 04:00:00 UTC) }),
            ("future request", Some("after = 2026-12-25T00:00:00Z".into()), Duration::ZERO, facts(early, 9999, Some(true)), &policy, None, Decision::Scheduled { at: datetime!(2026-12-25 00:00:00 UTC) }),
            ("asked in this boot, still up", Some(t.into()), Duration::ZERO, facts(early, 9999, Some(true)), &policy, Some(asked("2026-12-24T03:00:00Z", "bbbbbbbb-this-boot")), blocked(Guard::CommandDidNotReboot, None)),
            ("asked, new boot, clock behind", Some(t.into()), Duration::ZERO, facts(early, 9999, Some(true)), &policy, Some(asked("2026-12-24T03:00:00Z", "aaaaaaaa-last-boot")), Decision::Satisfied),
            ("an older request was asked", Some(t.into()), Duration::ZERO, facts(early, 9999, Some(true)), &policy, Some(asked("2026-12-01T00:00:00Z", "bbbbbbbb-this-boot")), Decision::RebootNow),
            ("clock not synchronised", Some(t.into()), Duration::ZERO, facts(early, 9999, Some(false)), &policy, None, blocked(Guard::ClockNotSynchronised, None)),
            ("clock unknown", Some(t.into()), Duration::ZERO, facts(early, 9999, None), &policy, None, Decision::RebootNow),
            ("clock guard off", Some(t.into()), Duration::ZERO, facts(early, 9999, Some(false)), &lax, None, Decision::RebootNow),
            ("up 5 min", Some(t.into()), Duration::ZERO, facts(early, 5, Some(true)), &policy, None, blocked(Guard::UptimeTooShort, Some(datetime!(2026-12-24 03:40:00 UTC)))),
            ("outside Sat,Sun", Some(windowed("Sat,Sun 02:00-04:00")), Duration::ZERO, facts(early, 9999, Some(true)), &policy, None, blocked(Guard::OutsideWindow, Some(datetime!(2026-12-26 02:00:00 UTC)))),
            ("inside Thu", Some(windowed("Thu 03:00-04:00")), Duration::ZERO, facts(early, 9999, Some(true)), &policy, None, Decision::RebootNow),
            ("window across midnight, open", Some(windowed("Wed 23:00-04:00")), Duration::ZERO, facts(early, 9999, Some(true)), &policy, None, Decision::RebootNow),
            ("a request older than the boot", Some("after = 2026-12-19T00:00:00Z".into()), Duration::ZERO, facts(early, 9999, Some(true)), &policy, None, Decision::Satisfied),
        ];
        for (what, text, splay, facts, policy, asked, want) in table {
            let request = text.map(|t| request(&t));
            let got = decide(request.as_ref(), splay, &facts, policy, asked.as_ref());
            assert_eq!(got, want, "{what}");
            assert!(!reason(&got, request.as_ref(), &facts).is_empty());
        }
    }

    #[test]
    fn a_clock_that_jumps_backwards_only_postpones() {
        let r = request("after = 2026-12-24T03:00:00Z\n");
        let facts = Facts {
            now: datetime!(2020-01-01 00:00:00 UTC),
            booted_at: datetime!(2019-12-31 00:00:00 UTC),
            boot_id: "b".into(),
            uptime: Duration::from_secs(86400),
            clock_synchronised: None,
        };
        let policy = Policy {
            min_uptime: Duration::ZERO,
            require_clock_sync: true,
        };
        assert_eq!(
            decide(Some(&r), Duration::ZERO, &facts, &policy, None),
            Decision::Scheduled {
                at: datetime!(2026-12-24 03:00:00 UTC)
            }
        );
    }
}

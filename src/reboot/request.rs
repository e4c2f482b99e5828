//! A reboot request as the repository declares it, in `.gitops/reboot`: "this machine must have
//! booted at or after `after`", with when and with whom it may reboot. Reading it is pure (the
//! local time zone and the zone database are the only things looked up), so every form and
//! every refusal is a table test.
//!
//! # The file
//!
//! ```text
//! # Reboot into the new kernel; at most 30 minutes apart, on a weekend night in Berlin.
//! after  = 2026-12-24T03:00:00Z
//! window = Sat,Sun 02:00-04:00 Europe/Berlin
//! splay  = 30min
//! group  = web
//! ```
//!
//! `key = value` lines; blank lines and `#` comments (from `#` to the end of the line) are
//! ignored, and so is whitespace around `=`. At most 64 KiB. Keys:
//!
//! - `after` (required): the machine must have booted at or after this time. RFC 3339
//!   (`2026-12-24T03:00:00Z`, `2026-12-24T04:00:00+01:00`), or `YYYY-MM-DD HH:MM[:SS]` in the
//!   machine's local time zone (`TZ`, else `/etc/localtime`, else UTC), the form `date -d`
//!   takes. A local time that a daylight saving change skips or repeats is refused, not guessed.
//! - `window` (optional): when in the week the reboot may happen, `[DAYS] HH:MM-HH:MM [ZONE]`.
//!   DAYS is a comma list of `Mon`..`Sun` and ranges like `Mon-Fri` (absent: every day). An end
//!   at or before the start runs across midnight into the next day (`Sun 23:00-01:00` is open
//!   on Monday at 00:30); `24:00` ends at midnight. ZONE is `UTC` (the default) or an IANA name
//!   such as `Europe/Berlin`, read from the system's time zone database. On a daylight saving
//!   change a skipped start or end moves forward by the skipped hour and a repeated one is its
//!   first occurrence: `02:00-04:00` in Berlin lasts one hour on the last Sunday of March and
//!   three on the last Sunday of October.
//! - `splay` (optional, default 0, at most 7d): spread the fleet's reboots over this long
//!   (`30min`, `2h`, as the duration options are written). Each machine reboots at `after`
//!   plus its own offset, whole seconds below `splay`, from a hash of /etc/machine-id and the
//!   request: the same machine and request always get the same offset, so each machine knows
//!   its time in advance and machines spread evenly.
//! - `group` (optional): the FleetLock group to take the lock in (letters, digits, `.` and
//!   `-`); without it, the lock server's default group.
//!
//! An unknown key, a key given twice, a missing `after` or a bad value refuses the whole file
//! with the line number and the accepted forms: a request that cannot be read never reboots.

// Used by plan.rs, coming.
#![allow(dead_code)]

use std::time::Duration;

use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, Offset, TimeZone};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use super::window::shown;
pub use super::window::Window;

/// The largest `.gitops/reboot` read: a request is a few lines.
pub const MAX_FILE: u64 = 64 * 1024;

/// The longest `splay`: a reboot spread over more than a week is a reboot nobody is waiting for.
pub const MAX_SPLAY: Duration = Duration::from_secs(7 * 86400);

/// How times are written, for error messages.
pub const TIME_FORMS: &str =
    "use RFC 3339 such as 2026-12-24T03:00:00Z, or 2026-12-24 03:00[:00] in local time";

const KEYS: &str = "the keys are after, window, splay and group";

/// A parsed `.gitops/reboot`.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The machine must have booted at or after this.
    pub after: OffsetDateTime,
    pub window: Option<Window>,
    /// Zero when not given.
    pub splay: Duration,
    /// The FleetLock group, when given.
    pub group: Option<String>,
}

/// Read a `.gitops/reboot` file; local times are in the system's zone.
pub fn parse(text: &str) -> Result<Request, String> {
    parse_with(text, local_zone)
}

/// `parse` with local times in `zone`, for tests.
pub fn parse_in(text: &str, zone: &TimeZone) -> Result<Request, String> {
    parse_with(text, || Ok(zone.clone()))
}

fn parse_with(text: &str, local: impl Fn() -> Result<TimeZone, String>) -> Result<Request, String> {
    if text.len() as u64 > MAX_FILE {
        return Err(format!(
            "the file is {} bytes: a reboot request is at most 64 KiB",
            text.len()
        ));
    }
    // An editor's byte order mark is not part of the first key.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut after = None;
    let mut window = None;
    let mut splay = None;
    let mut group = None;
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let at = |message: String| format!("line {number}: {message}");
        // No value has a `#` in it, so a comment may follow one.
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(at(format!(
                "{} is not a `key = value` line ({KEYS}; # starts a comment)",
                shown(line)
            )));
        };
        let (key, value) = (key.trim(), value.trim());
        if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
            return Err(at(format!(
                "{key} is given again (first on line {first}): give each key once"
            )));
        }
        match key {
            "after" => {
                let time = parse_time_with(value, &local).map_err(|e| at(format!("after: {e}")))?;
                after = Some(time);
            }
            "window" => {
                let parsed = Window::parse(value).map_err(|e| at(format!("window: {e}")))?;
                window = Some(parsed);
            }
            "splay" => {
                let parsed =
                    crate::config::parse_duration(value).map_err(|e| at(format!("splay: {e}")))?;
                if parsed > MAX_SPLAY {
                    return Err(at(format!(
                        "splay {} is longer than 7d, the most a fleet's reboots are spread over",
                        shown(value)
                    )));
                }
                splay = Some(parsed);
            }
            "group" => {
                let valid = !value.is_empty()
                    && value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
                if !valid {
                    return Err(at(format!(
                        "group {} is not a FleetLock group: use letters, digits, dots and \
                         dashes, such as web",
                        shown(value)
                    )));
                }
                group = Some(value.to_string());
            }
            _ => return Err(at(format!("{} is not a key: {KEYS}", shown(key)))),
        }
        seen.push((key, number));
    }
    let Some(after) = after else {
        return Err(format!(
            "there is no `after = TIME` line, which a reboot request needs: {TIME_FORMS}"
        ));
    };
    Ok(Request {
        after,
        window,
        splay: splay.unwrap_or(Duration::ZERO),
        group,
    })
}

/// Read a time as `reboot-plan --at` and `after =` take it; local times in the system's zone.
pub fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    parse_time_with(text, local_zone)
}

/// `parse_time` with local times in `zone`: setting `TZ` in a test would race the other tests'
/// threads.
pub fn parse_time_in(text: &str, zone: &TimeZone) -> Result<OffsetDateTime, String> {
    parse_time_with(text, || Ok(zone.clone()))
}

/// The zone is looked up only for a local time: a bad `TZ` does not refuse an RFC 3339 time.
fn parse_time_with(
    text: &str,
    zone: impl FnOnce() -> Result<TimeZone, String>,
) -> Result<OffsetDateTime, String> {
    let text = text.trim();
    let invalid = || format!("{} is not a time: {TIME_FORMS}", shown(text));
    let Some(fields) = local_fields(text) else {
        return OffsetDateTime::parse(text, &Rfc3339).map_err(|_| invalid());
    };
    let (year, [month, day, hour, minute, second]) = fields;
    let civil = DateTime::new(year, month, day, hour, minute, second, 0).map_err(|_| invalid())?;
    let zone = zone()?;
    let name = zone.iana_name().unwrap_or("the local time zone");
    let offset = match zone.to_ambiguous_timestamp(civil).offset() {
        AmbiguousOffset::Unambiguous { offset } => offset,
        AmbiguousOffset::Gap { before, after } => {
            return Err(format!(
                "{} does not exist in {name}: the clocks jump from {} to {} over it; write a \
                 time outside the change, or RFC 3339 with an offset",
                shown(text),
                show_offset(before),
                show_offset(after)
            ))
        }
        AmbiguousOffset::Fold { before, after } => {
            return Err(format!(
                "{} happens twice in {name} (at {}, then at {}): write it in RFC 3339 with the \
                 offset you mean, such as {}T{}{}",
                shown(text),
                show_offset(before),
                show_offset(after),
                &text[..10],
                clock_with_seconds(&text[11..]),
                show_offset(before)
            ))
        }
    };
    let instant = offset.to_timestamp(civil).map_err(|_| invalid())?;
    let utc_offset = UtcOffset::from_whole_seconds(offset.seconds()).map_err(|_| invalid())?;
    OffsetDateTime::from_unix_timestamp_nanos(instant.as_nanosecond())
        .ok()
        .and_then(|t| t.checked_to_offset(utc_offset))
        .ok_or_else(invalid)
}

/// `YYYY-MM-DD HH:MM[:SS]`, digits exactly where they belong; its numbers.
fn local_fields(text: &str) -> Option<(i16, [i8; 5])> {
    let bytes = text.as_bytes();
    let pattern: &[u8] = match bytes.len() {
        16 => b"dddd-dd-dd dd:dd",
        19 => b"dddd-dd-dd dd:dd:dd",
        _ => return None,
    };
    let fits = bytes.iter().zip(pattern).all(|(b, p)| match p {
        b'd' => b.is_ascii_digit(),
        _ => b == p,
    });
    if !fits {
        return None;
    }
    let two = |from: usize| text.get(from..from + 2)?.parse::<i8>().ok();
    let second = if bytes.len() == 19 { two(17)? } else { 0 };
    let year = text.get(..4)?.parse::<i16>().ok()?;
    Some((year, [two(5)?, two(8)?, two(11)?, two(14)?, second]))
}

fn clock_with_seconds(clock: &str) -> String {
    if clock.len() == 5 {
        format!("{clock}:00")
    } else {
        clock.to_string()
    }
}

fn show_offset(offset: Offset) -> String {
    let seconds = offset.seconds();
    let sign = if seconds < 0 { '-' } else { '+' };
    let minutes = seconds.unsigned_abs() / 60;
    format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60)
}

/// The machine's zone: `TZ`, else /etc/localtime. Without either it is UTC, as glibc and
/// systemd take it; a `TZ` that names no zone is an error rather than a silent UTC.
pub fn local_zone() -> Result<TimeZone, String> {
    match TimeZone::try_system() {
        Ok(zone) => Ok(zone),
        Err(_) => match std::env::var("TZ") {
            Ok(tz) if !tz.is_empty() => Err(format!(
                "TZ={} is not a time zone this system knows: set TZ to an IANA name such as \
                 Europe/Berlin, or unset it to use /etc/localtime",
                shown(&tz)
            )),
            _ => Ok(TimeZone::UTC),
        },
    }
}

/// How long after `after` this machine reboots: a SHA-256 of the machine id and the request,
/// in whole seconds below `splay`; zero without a splay. The same for every pass, so the plan
/// can say when, and spread evenly across a fleet.
pub fn splay_offset(machine_id: &str, request: &Request) -> Duration {
    let seconds = request.splay.as_secs();
    if seconds == 0 {
        return Duration::ZERO;
    }
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(b"gitops reboot splay\0");
    context.update(machine_id.trim().as_bytes());
    context.update(b"\0");
    // The instant, not its spelling: 03:00Z and 04:00+01:00 are the same request.
    context.update(request.after.unix_timestamp_nanos().to_string().as_bytes());
    context.update(b"\0");
    context.update(request.group.as_deref().unwrap_or("").as_bytes());
    let digest = context.finish();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    Duration::from_secs(u64::from_be_bytes(first) % seconds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn berlin() -> TimeZone {
        match TimeZone::get("Europe/Berlin") {
            Ok(zone) => zone,
            Err(e) => panic!("the tests need tzdata's Europe/Berlin: {e}"),
        }
    }

    #[test]
    fn parses_requests() {
        let window = |text: &str| Window::parse(text).ok();
        let table: &[(&str, Request)] = &[
            (
                "after = 2026-12-24T03:00:00Z\n",
                Request {
                    after: datetime!(2026-12-24 03:00 UTC),
                    window: None,
                    splay: Duration::ZERO,
                    group: None,
                },
            ),
            (
                // The issue's example, with comments, blank lines, CRLF and loose spacing.
                "# reboot into the new kernel\r\n\r\n  after=2026-12-24T03:00:00Z  # the kernel\r\n\
                 window   =   Sat,Sun 02:00-04:00\r\nsplay = 30min\r\ngroup = web\r\n",
                Request {
                    after: datetime!(2026-12-24 03:00 UTC),
                    window: window("Sat,Sun 02:00-04:00 UTC"),
                    splay: Duration::from_secs(1800),
                    group: Some("web".into()),
                },
            ),
            (
                // The article's `schedule_reboot "2024-02-23 19:05:00"`, in local time.
                "\u{feff}after = 2024-02-23 19:05:00",
                Request {
                    after: datetime!(2024-02-23 18:05 UTC),
                    window: None,
                    splay: Duration::ZERO,
                    group: None,
                },
            ),
            (
                "group = eu-west.db-2\nsplay = 7d\nwindow = Mon-Fri 22:00-06:00 Europe/Berlin\n\
                 after = 2026-07-01 03:00",
                Request {
                    after: datetime!(2026-07-01 01:00 UTC),
                    window: window("Mon-Fri 22:00-06:00 Europe/Berlin"),
                    splay: Duration::from_secs(7 * 86400),
                    group: Some("eu-west.db-2".into()),
                },
            ),
        ];
        for (text, expected) in table {
            match parse_in(text, &berlin()) {
                Ok(request) => assert_eq!(&request, expected, "{text:?}"),
                Err(e) => panic!("{text:?}: {e}"),
            }
        }
    }

    #[test]
    fn refuses_bad_files_naming_the_line_and_the_forms() {
        let table = [
            ("", "no `after = TIME` line"),
            ("# only a comment\n\n", "no `after = TIME` line"),
            ("splay = 5min\n", "2026-12-24T03:00:00Z"),
            ("after 2026-12-24T03:00:00Z", "line 1: \"after 2026-12-24T03:00:00Z\" is not a `key = value` line"),
            ("\naftr = 2026-12-24T03:00:00Z", "line 2: \"aftr\" is not a key: the keys are after, window"),
            ("After = 2026-12-24T03:00:00Z", "line 1: \"After\" is not a key"),
            ("= 2026-12-24T03:00:00Z", "line 1: \"\" is not a key"),
            ("after = 2026-12-24T03:00:00Z\nafter = 2026-12-25T03:00:00Z", "line 2: after is given again (first on line 1)"),
            ("after = tomorrow", "line 1: after: \"tomorrow\" is not a time: use RFC 3339 such as 2026-12-24T03:00:00Z, or 2026-12-24 03:00[:00] in local time"),
            ("after =", "line 1: after: \"\" is not a time: use RFC 3339"),
            ("after = 2026-12-24T03:00:00", "is not a time: use RFC 3339"),
            ("after = 2026-02-30 03:00", "is not a time"),
            ("after = 2026-12-24 3:00", "is not a time"),
            ("after = 2026-12-24 03:00 UTC", "is not a time"),
            ("after = 2026-03-29 02:30", "line 1: after: \"2026-03-29 02:30\" does not exist in Europe/Berlin: the clocks jump from +01:00 to +02:00"),
            ("after = 2026-10-25 02:30", "happens twice in Europe/Berlin (at +02:00, then at +01:00): write it in RFC 3339 with the offset you mean, such as 2026-10-25T02:30:00+02:00"),
            ("after = 2026-12-24T03:00:00Z\nwindow = weekends", "line 2: window: \"weekends\" is not a window"),
            ("after = 2026-12-24T03:00:00Z\nwindow = Sat 02:00-04:00 Europe/Berln", "line 2: window: the time zone \"Europe/Berln\" is not in this system's time zone database"),
            ("after = 2026-12-24T03:00:00Z\nsplay = soon", "line 2: splay: \"soon\" is not a duration: write it like 30s, 5min or 2h"),
            ("after = 2026-12-24T03:00:00Z\nsplay = 8d", "line 2: splay \"8d\" is longer than 7d"),
            ("after = 2026-12-24T03:00:00Z\ngroup = web servers", "line 2: group \"web servers\" is not a FleetLock group"),
            ("after = 2026-12-24T03:00:00Z\ngroup = web_1", "is not a FleetLock group: use letters, digits, dots and dashes"),
            ("after = 2026-12-24T03:00:00Z\ngroup =", "line 2: group \"\" is not a FleetLock group"),
            ("after = 2026-12-24T03:00:00Z\ngroup = a\ngroup = a", "line 3: group is given again (first on line 2)"),
        ];
        for (text, expected) in table {
            let err = parse_in(text, &berlin()).expect_err(text);
            assert!(err.contains(expected), "{text:?}: {err}");
            assert!(!err.contains('\n'), "{text:?}: {err}");
        }
        let big = format!("after = 2026-12-24T03:00:00Z\n{}", "#".repeat(64 * 1024));
        let err = parse_in(&big, &berlin()).expect_err("big");
        assert!(err.contains("at most 64 KiB"), "{err}");
        // A long bad value is cut short in the message.
        let long = format!("after = {}", "x".repeat(10_000));
        let err = parse_in(&long, &berlin()).expect_err("long");
        assert!(err.len() < 300, "{err}");
    }

    #[test]
    fn parses_times_in_a_given_zone() {
        let table = [
            ("2026-12-24T03:00:00Z", datetime!(2026-12-24 03:00 UTC)),
            ("2026-12-24t03:00:00z", datetime!(2026-12-24 03:00 UTC)),
            // RFC 3339 allows a space for the T; with an offset it is not local time.
            ("2026-12-24 03:00:00Z", datetime!(2026-12-24 03:00 UTC)),
            ("2026-12-24T04:00:00+01:00", datetime!(2026-12-24 03:00 UTC)),
            (
                "2026-12-24T03:00:00.5Z",
                datetime!(2026-12-24 03:00:00.5 UTC),
            ),
            ("  2026-12-24 04:00 ", datetime!(2026-12-24 03:00 UTC)),
            ("2026-12-24 04:00:59", datetime!(2026-12-24 03:00:59 UTC)),
            ("2026-07-01 03:00", datetime!(2026-07-01 01:00 UTC)),
            // Either side of the spring gap and the autumn fold.
            ("2026-03-29 01:59:59", datetime!(2026-03-29 00:59:59 UTC)),
            ("2026-03-29 03:00", datetime!(2026-03-29 01:00 UTC)),
            ("2026-10-25 01:59:59", datetime!(2026-10-24 23:59:59 UTC)),
            ("2026-10-25 03:00", datetime!(2026-10-25 02:00 UTC)),
        ];
        for (text, expected) in table {
            assert_eq!(parse_time_in(text, &berlin()), Ok(expected), "{text:?}");
        }
        // A local time keeps its zone's offset, for display.
        let local = parse_time_in("2026-07-01 03:00", &berlin()).map(|t| t.offset().whole_hours());
        assert_eq!(local, Ok(2));
        // The same text is another instant in another zone.
        assert_eq!(
            parse_time_in("2026-07-01 03:00", &TimeZone::UTC),
            Ok(datetime!(2026-07-01 03:00 UTC))
        );
        for bad in [
            "",
            "now",
            "2026-12-24",
            "2026-12-24T03:00Z",
            "2026-12-24  03:00",
            "2026-13-01 00:00",
            "2026-12-24 24:00",
            "+2026-12-24 03:00",
            "2026-03-29 02:00",
            "2026-10-25 02:00",
        ] {
            let err = parse_time_in(bad, &berlin()).expect_err(bad);
            assert!(
                err.contains("2026-12-24T03:00:00Z") || err.contains("RFC 3339 with"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn the_local_zone_is_looked_up_only_for_local_times() {
        let broken = || Err::<TimeZone, _>("TZ=\"Nowhere\" is not a time zone".to_string());
        assert_eq!(
            parse_time_with("2026-12-24T03:00:00Z", broken),
            Ok(datetime!(2026-12-24 03:00 UTC))
        );
        assert_eq!(
            parse_time_with("2026-12-24 03:00", broken),
            Err("TZ=\"Nowhere\" is not a time zone".to_string())
        );
        let err = parse_with("after = 2026-12-24 03:00", broken).expect_err("broken TZ");
        assert_eq!(err, "line 1: after: TZ=\"Nowhere\" is not a time zone");
    }

    #[test]
    fn splay_is_deterministic_and_spread() {
        let request = |splay: u64, group: Option<&str>| Request {
            after: datetime!(2026-12-24 03:00 UTC),
            window: None,
            splay: Duration::from_secs(splay),
            group: group.map(String::from),
        };
        let thirty = request(1800, Some("web"));
        let ids: Vec<String> = (0..1000).map(|n| format!("{n:032x}")).collect();
        let offsets: Vec<Duration> = ids.iter().map(|id| splay_offset(id, &thirty)).collect();
        assert!(offsets.iter().all(|o| *o < Duration::from_secs(1800)));
        // Ten three-minute buckets of about 100 machines each.
        let mut buckets = [0u32; 10];
        for offset in &offsets {
            buckets[(offset.as_secs() / 180) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|b| (60..=140).contains(b)),
            "{buckets:?}"
        );
        let distinct: std::collections::BTreeSet<_> = offsets.iter().collect();
        assert!(distinct.len() > 500, "{}", distinct.len());
        // The same every pass; a trailing newline from /etc/machine-id changes nothing.
        assert_eq!(splay_offset(&ids[7], &thirty), offsets[7]);
        assert_eq!(splay_offset(&format!("{}\n", ids[7]), &thirty), offsets[7]);
        // The same instant written with another offset is the same request.
        let mut same = thirty.clone();
        same.after = datetime!(2026-12-24 04:00 +01:00);
        assert_eq!(splay_offset(&ids[7], &same), offsets[7]);
        // Another request or group reshuffles the fleet.
        let mut later = thirty.clone();
        later.after = datetime!(2026-12-25 03:00 UTC);
        let moved = ids
            .iter()
            .zip(&offsets)
            .filter(|(id, o)| splay_offset(id, &later) != **o)
            .count();
        assert!(moved > 900, "{moved}");
        let other_group = request(1800, Some("db"));
        assert_ne!(splay_offset(&ids[7], &other_group), offsets[7]);
        // No splay, no offset; below a second, none either.
        assert_eq!(splay_offset(&ids[7], &request(0, None)), Duration::ZERO);
        let mut tiny = request(0, None);
        tiny.splay = Duration::from_millis(500);
        assert_eq!(splay_offset(&ids[7], &tiny), Duration::ZERO);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn line() -> impl Strategy<Value = String> {
            let key = prop::sample::select(vec!["after", "window", "splay", "group", "x", ""]);
            let value = prop::sample::select(vec![
                "2026-12-24T03:00:00Z",
                "2026-03-29 02:30",
                "2026-10-25 02:30",
                "9999-12-31 23:59:59",
                "0000-01-01 00:00",
                "9999-12-31T23:59:59-23:59",
                "Sat,Sun 02:00-04:00 Europe/Berlin",
                "Sun-Sat 00:00-24:00 Pacific/Apia",
                "30min",
                "7d",
                "99999999999999999999w",
                "web",
                "#",
                "=",
            ]);
            (key, value, "[ \t=#]{0,2}").prop_map(|(k, v, s)| format!("{k}{s}={v}"))
        }

        proptest! {
            #[test]
            fn parse_never_panics(text in "\\PC{0,200}") {
                let _ = parse_in(&text, &TimeZone::UTC);
                let _ = parse_time_in(&text, &TimeZone::UTC);
            }

            #[test]
            fn parse_never_panics_on_near_misses(lines in prop::collection::vec(line(), 0..6)) {
                let text = lines.join("\n");
                match parse_in(&text, &berlin()) {
                    Ok(request) => {
                        let _ = splay_offset("0123", &request);
                        if let Some(window) = &request.window {
                            let _ = window.next_open(request.after);
                        }
                    }
                    Err(e) => prop_assert!(!e.contains('\n'), "{}", e),
                }
            }
        }
    }
}

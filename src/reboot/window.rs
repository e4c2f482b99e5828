//! The weekly maintenance window of a reboot request: `[DAYS] HH:MM-HH:MM [ZONE]`, and the two
//! questions the plan asks of it: is it open now, and when does it next open.
//!
//! A window is a set of intervals of real time, one per listed day: from the instant the zone's
//! clock reads the start on that day to the instant it reads the end (the next day's when the
//! end is not after the start). Where a daylight saving change makes a local time skipped or
//! repeated, it is placed as RFC 5545 (iCalendar) and jiff's `compatible` place it: a skipped
//! time moves forward by the length of the gap, a repeated one is its first occurrence. So
//! `02:00-04:00` in Europe/Berlin lasts one hour on the last Sunday of March and three on the
//! last Sunday of October, and a window is never silently skipped for a week because of a
//! clock change.

// Used by plan.rs, coming.
#![allow(dead_code)]

use std::fmt;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use time::{OffsetDateTime, UtcOffset};

/// How a window is written, for error messages.
pub const FORMS: &str = "write it like Sat,Sun 02:00-04:00 Europe/Berlin: [DAYS] HH:MM-HH:MM \
     [ZONE], DAYS a comma list of Mon..Sun or ranges like Mon-Fri (absent: every day), ZONE UTC \
     (the default) or an IANA name";

const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// Minutes in a day: an end of `24:00` is stored as this.
const DAY: u16 = 24 * 60;

/// How far ahead `next_open` looks: any 7 consecutive days hold a listed day, and a clock
/// change can empty at most one occurrence in a row; three weeks leave room for a zone that
/// skips a whole day (Pacific/Apia, 2011-12-30).
const LOOKAHEAD_DAYS: i32 = 22;

/// A weekly window in one time zone.
#[derive(Debug, Clone)]
pub struct Window {
    /// Listed days, Monday first.
    days: [bool; 7],
    /// The day list as written, normalised (`Sat,Sun`, `Mon-Fri`); None for every day.
    days_text: Option<String>,
    /// Minutes after midnight; `end` is `DAY` for `24:00`.
    start: u16,
    end: u16,
    zone: TimeZone,
    zone_name: String,
}

impl PartialEq for Window {
    fn eq(&self, other: &Self) -> bool {
        self.days == other.days
            && self.start == other.start
            && self.end == other.end
            && self.zone_name == other.zone_name
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(days) = &self.days_text {
            write!(f, "{days} ")?;
        }
        write!(
            f,
            "{}-{} {}",
            clock(self.start),
            clock(self.end),
            self.zone_name
        )
    }
}

fn clock(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

impl Window {
    /// Read a window's value (what follows `window =`). The zone is looked up in the system's
    /// time zone database (`/usr/share/zoneinfo`, or `TZDIR`).
    pub fn parse(text: &str) -> Result<Window, String> {
        Self::parse_with(text, |name| {
            TimeZone::get(name).map_err(|_| {
                format!(
                    "the time zone {name:?} is not in this system's time zone database \
                     (/usr/share/zoneinfo): use UTC or an IANA name such as Europe/Berlin"
                )
            })
        })
    }

    /// `parse` with the zone lookup passed in, so tests choose the database.
    pub fn parse_with(
        text: &str,
        lookup: impl FnOnce(&str) -> Result<TimeZone, String>,
    ) -> Result<Window, String> {
        let invalid = |why: &str| format!("{} is not a window ({why}): {FORMS}", shown(text));
        let tokens: Vec<&str> = text.split_whitespace().collect();
        // The hours are the one token that starts with a digit: days before it (`Sat, Sun`
        // written with a space is still one list), the zone after it.
        let at = tokens
            .iter()
            .position(|t| t.starts_with(|c: char| c.is_ascii_digit()))
            .ok_or_else(|| invalid("no HH:MM-HH:MM"))?;
        let (start, end) = parse_hours(tokens[at]).ok_or_else(|| invalid("bad hours"))?;
        if start == end {
            return Err(invalid(
                "it starts and ends at the same time; 00:00-24:00 is all day",
            ));
        }
        let (days, days_text) = if at == 0 {
            ([true; 7], None)
        } else {
            let (days, text) =
                parse_days(&tokens[..at].concat()).ok_or_else(|| invalid("bad days"))?;
            (days, Some(text))
        };
        let (zone, zone_name) = match &tokens[at + 1..] {
            [] => (TimeZone::UTC, "UTC".to_string()),
            [name] if name.eq_ignore_ascii_case("UTC") => (TimeZone::UTC, "UTC".to_string()),
            [name] => {
                // Only what IANA names are made of: the name becomes a path under
                // /usr/share/zoneinfo, and a request in a repository must not read other files.
                let plausible = name.len() <= 64
                    && name.starts_with(|c: char| c.is_ascii_alphabetic())
                    && !name.contains("..")
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c));
                if !plausible {
                    return Err(invalid("the zone is not an IANA time zone name"));
                }
                (lookup(name)?, name.to_string())
            }
            _ => return Err(invalid("more than one zone after the hours")),
        };
        Ok(Window {
            days,
            days_text,
            start,
            end,
            zone,
            zone_name,
        })
    }

    /// Whether `at` falls inside one of the window's intervals.
    pub fn is_open(&self, at: OffsetDateTime) -> bool {
        let Some(ts) = to_timestamp(at) else {
            return false;
        };
        let today = self.zone.to_datetime(ts).date();
        // An interval that contains `at` started on the local day of `at` or, across midnight
        // (and a clock change at its end), on one of the two before.
        (-2..=0).any(|back| {
            offset_days(today, back)
                .and_then(|day| self.occurrence(day))
                .is_some_and(|(open, close)| open <= ts && ts < close)
        })
    }

    /// When the window next opens at or after `at` (`at` itself when open now); None if it
    /// never opens (only at the end of representable time).
    pub fn next_open(&self, at: OffsetDateTime) -> Option<OffsetDateTime> {
        if self.is_open(at) {
            return Some(at);
        }
        let ts = to_timestamp(at)?;
        let today = self.zone.to_datetime(ts).date();
        let open = (-1..=LOOKAHEAD_DAYS)
            .filter_map(|n| offset_days(today, n).and_then(|day| self.occurrence(day)))
            .map(|(open, _)| open)
            .filter(|open| *open > ts)
            .min()?;
        let offset = UtcOffset::from_whole_seconds(self.zone.to_offset(open).seconds()).ok()?;
        OffsetDateTime::from_unix_timestamp_nanos(open.as_nanosecond())
            .ok()?
            .checked_to_offset(offset)
    }

    /// The interval that opens on local day `day`, if `day` is listed and a clock change has
    /// not emptied it.
    fn occurrence(&self, day: Date) -> Option<(Timestamp, Timestamp)> {
        let weekday = usize::try_from(day.weekday().to_monday_zero_offset()).ok()?;
        if !self.days.get(weekday).copied().unwrap_or(false) {
            return None;
        }
        let open = self.instant(day, self.start)?;
        let close_day = if self.end <= self.start || self.end == DAY {
            day.tomorrow().ok()?
        } else {
            day
        };
        let close = self.instant(close_day, self.end % DAY)?;
        (open < close).then_some((open, close))
    }

    fn instant(&self, day: Date, minutes: u16) -> Option<Timestamp> {
        let hour = i8::try_from(minutes / 60).ok()?;
        let minute = i8::try_from(minutes % 60).ok()?;
        let time = Time::new(hour, minute, 0, 0).ok()?;
        self.zone
            .to_ambiguous_timestamp(day.to_datetime(time))
            .compatible()
            .ok()
    }
}

fn offset_days(day: Date, n: i32) -> Option<Date> {
    day.checked_add(jiff::Span::new().try_days(n).ok()?).ok()
}

fn to_timestamp(at: OffsetDateTime) -> Option<Timestamp> {
    Timestamp::from_nanosecond(at.unix_timestamp_nanos()).ok()
}

/// `HH:MM-HH:MM`, two digits each; the end may be `24:00`.
fn parse_hours(text: &str) -> Option<(u16, u16)> {
    let (start, end) = text.split_once('-')?;
    let start = parse_clock(start)?;
    let end = parse_clock(end)?;
    (start < DAY).then_some((start, end))
}

fn parse_clock(text: &str) -> Option<u16> {
    let bytes = text.as_bytes();
    if bytes.len() != 5 || bytes[2] != b':' {
        return None;
    }
    let two = |i: usize| -> Option<u16> {
        let (a, b) = (bytes[i], bytes[i + 1]);
        (a.is_ascii_digit() && b.is_ascii_digit())
            .then(|| u16::from(a - b'0') * 10 + u16::from(b - b'0'))
    };
    let (hour, minute) = (two(0)?, two(3)?);
    let minutes = hour * 60 + minute;
    (minute < 60 && (hour < 24 || minutes == DAY)).then_some(minutes)
}

/// `Sat,Sun`, `Mon-Fri`, `Fri-Mon` (across the week's end), any case; the set and its
/// normalised spelling.
fn parse_days(text: &str) -> Option<([bool; 7], String)> {
    let mut days = [false; 7];
    let mut items = Vec::new();
    for item in text.split(',') {
        match item.split_once('-') {
            Some((from, to)) => {
                let (from, to) = (day_index(from)?, day_index(to)?);
                let mut day = from;
                loop {
                    days[day] = true;
                    if day == to {
                        break;
                    }
                    day = (day + 1) % 7;
                }
                items.push(format!("{}-{}", DAY_NAMES[from], DAY_NAMES[to]));
            }
            None => {
                let day = day_index(item)?;
                days[day] = true;
                items.push(DAY_NAMES[day].to_string());
            }
        }
    }
    Some((days, items.join(",")))
}

fn day_index(name: &str) -> Option<usize> {
    DAY_NAMES.iter().position(|d| d.eq_ignore_ascii_case(name))
}

/// A value quoted for a message, cut short: a message stays one readable line whatever the
/// file holds.
pub(crate) fn shown(text: &str) -> String {
    const MAX: usize = 60;
    let text = text.trim();
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn window(text: &str) -> Window {
        match Window::parse(text) {
            Ok(w) => w,
            Err(e) => panic!("{text:?}: {e}"),
        }
    }

    #[test]
    fn parses_and_displays_as_written() {
        let table = [
            (
                "Sat,Sun 02:00-04:00 Europe/Berlin",
                "Sat,Sun 02:00-04:00 Europe/Berlin",
            ),
            ("02:00-04:00", "02:00-04:00 UTC"),
            ("  mon-fri   22:00-06:00  utc ", "Mon-Fri 22:00-06:00 UTC"),
            ("Sat, Sun 00:00-24:00", "Sat,Sun 00:00-24:00 UTC"),
            (
                "Fri-Mon 23:30-00:30 America/New_York",
                "Fri-Mon 23:30-00:30 America/New_York",
            ),
        ];
        for (text, shown) in table {
            assert_eq!(window(text).to_string(), shown, "{text:?}");
            assert_eq!(window(shown), window(text), "{text:?} round trip");
        }
    }

    #[test]
    fn refuses_bad_windows_naming_the_form() {
        let table = [
            "",
            "Sat",
            "Sat 2:00-04:00",
            "Sat 02:00-4:00",
            "Sat 02:00",
            "Sat 24:00-02:00",
            "Sat 02:60-03:00",
            "Sat 02:00-24:01",
            "Sat 02:00-02:00",
            "Sa 02:00-04:00",
            "Sat,,Sun 02:00-04:00",
            "Sat-Sun-Mon 02:00-04:00",
            "Sat 02:00-04:00 Europe/Berlin UTC",
            "Sat 02:00-04:00 ../../etc/passwd",
            "Sat 02:00-04:00 /etc/localtime",
            "Sat 02:00-04:00 Mars/Olympus_Mons",
            "02:00-04:00 Sat",
            "Sat ０２:00-04:00",
        ];
        for text in table {
            let err = Window::parse(text).expect_err(text);
            assert!(
                err.contains("Sat,Sun 02:00-04:00 Europe/Berlin") || err.contains("IANA"),
                "{text:?}: {err}"
            );
            assert!(!err.contains('\n'), "{text:?}: {err}");
        }
    }

    #[test]
    fn across_midnight_and_the_weeks_end() {
        // 2026-12-27 is a Sunday, 2026-12-28 a Monday.
        let w = window("Sun 23:00-01:00");
        let table = [
            (datetime!(2026-12-27 22:59:59 UTC), false),
            (datetime!(2026-12-27 23:00 UTC), true),
            (datetime!(2026-12-28 00:30 UTC), true),
            (datetime!(2026-12-28 00:59:59 UTC), true),
            (datetime!(2026-12-28 01:00 UTC), false),
            // Monday 23:30 is not a Sunday night; Sunday 00:30 belongs to Saturday's.
            (datetime!(2026-12-28 23:30 UTC), false),
            (datetime!(2026-12-27 00:30 UTC), false),
        ];
        for (at, open) in table {
            assert_eq!(w.is_open(at), open, "{at}");
        }
        let w = window("Fri-Mon 22:00-02:00");
        // Tuesday 01:00 is Monday night's; Tuesday 23:00 is not listed.
        assert!(w.is_open(datetime!(2026-12-29 01:00 UTC)));
        assert!(!w.is_open(datetime!(2026-12-29 23:00 UTC)));
        assert!(!w.is_open(datetime!(2026-12-30 01:00 UTC)));
        assert_eq!(
            w.next_open(datetime!(2026-12-29 03:00 UTC)),
            Some(datetime!(2027-01-01 22:00 UTC))
        );
    }

    #[test]
    fn next_open_from_inside_before_and_after() {
        // 2026-12-26 is a Saturday.
        let w = window("Sat,Sun 02:00-04:00 Europe/Berlin");
        let table = [
            // Inside: now.
            (
                datetime!(2026-12-26 01:30 UTC),
                datetime!(2026-12-26 01:30 UTC),
            ),
            // Before, the same day: 02:00 CET.
            (
                datetime!(2026-12-25 23:00 UTC),
                datetime!(2026-12-26 01:00 UTC),
            ),
            // Between Saturday's and Sunday's.
            (
                datetime!(2026-12-26 03:00 UTC),
                datetime!(2026-12-27 01:00 UTC),
            ),
            // After Sunday's: next Saturday.
            (
                datetime!(2026-12-27 12:00 UTC),
                datetime!(2027-01-02 01:00 UTC),
            ),
            // The instant it closes is after it.
            (
                datetime!(2026-12-27 03:00 UTC),
                datetime!(2027-01-02 01:00 UTC),
            ),
        ];
        for (at, next) in table {
            let got = w.next_open(at);
            assert_eq!(got, Some(next), "{at}");
            assert!(w.is_open(next), "{at}");
        }
        // Said in the window's zone.
        let next = w.next_open(datetime!(2026-12-25 23:00 UTC));
        assert_eq!(next.map(|t| t.offset().whole_hours()), Some(1));
    }

    #[test]
    fn a_clock_that_jumps_backwards_gets_an_earlier_answer() {
        let w = window("Sat 02:00-04:00");
        let later = w.next_open(datetime!(2026-12-26 05:00 UTC));
        assert_eq!(later, Some(datetime!(2027-01-02 02:00 UTC)));
        // The clock is set back a week: the same window, a week earlier, nothing remembered.
        let earlier = w.next_open(datetime!(2026-12-19 05:00 UTC));
        assert_eq!(earlier, Some(datetime!(2026-12-26 02:00 UTC)));
        assert!(!w.is_open(datetime!(2026-12-19 05:00 UTC)));
    }

    #[test]
    fn daylight_saving_changes_in_berlin() {
        let w = window("Sun 02:00-04:00 Europe/Berlin");
        // 2026-03-29: 02:00 CET becomes 03:00 CEST at 01:00 UTC. The window is 03:00-04:00
        // CEST, one hour: 01:00-02:00 UTC.
        let march = [
            (datetime!(2026-03-29 00:59:59 UTC), false),
            (datetime!(2026-03-29 01:00 UTC), true),
            (datetime!(2026-03-29 01:59:59 UTC), true),
            (datetime!(2026-03-29 02:00 UTC), false),
        ];
        // 2026-10-25: 03:00 CEST becomes 02:00 CET at 01:00 UTC. The window opens at the
        // first 02:00 (CEST, 00:00 UTC) and closes at 04:00 CET (03:00 UTC), three hours.
        let october = [
            (datetime!(2026-10-24 23:59:59 UTC), false),
            (datetime!(2026-10-25 00:00 UTC), true),
            (datetime!(2026-10-25 01:30 UTC), true),
            (datetime!(2026-10-25 02:59:59 UTC), true),
            (datetime!(2026-10-25 03:00 UTC), false),
        ];
        for (at, open) in march.into_iter().chain(october) {
            assert_eq!(w.is_open(at), open, "{at}");
        }
        let next = [
            (
                datetime!(2026-03-28 12:00 UTC),
                datetime!(2026-03-29 01:00 UTC),
                2,
            ),
            (
                datetime!(2026-03-22 03:00 UTC),
                datetime!(2026-03-29 01:00 UTC),
                2,
            ),
            (
                datetime!(2026-03-29 02:00 UTC),
                datetime!(2026-04-05 00:00 UTC),
                2,
            ),
            (
                datetime!(2026-10-24 12:00 UTC),
                datetime!(2026-10-25 00:00 UTC),
                2,
            ),
            (
                datetime!(2026-10-25 03:00 UTC),
                datetime!(2026-11-01 01:00 UTC),
                1,
            ),
        ];
        for (at, open, offset) in next {
            let got = w.next_open(at);
            assert_eq!(got, Some(open), "{at}");
            assert_eq!(got.map(|t| t.offset().whole_hours()), Some(offset), "{at}");
        }
        // A window entirely inside the skipped hour moves with it instead of vanishing.
        let skipped = window("Sun 02:15-02:45 Europe/Berlin");
        assert_eq!(
            skipped.next_open(datetime!(2026-03-28 12:00 UTC)),
            Some(datetime!(2026-03-29 01:15 UTC))
        );
    }

    #[test]
    fn every_day_and_all_day() {
        let w = window("00:00-24:00");
        assert!(w.is_open(datetime!(2026-12-26 00:00 UTC)));
        assert!(w.is_open(datetime!(2026-12-26 23:59:59 UTC)));
        let w = window("Wed 00:00-24:00");
        assert!(!w.is_open(datetime!(2026-12-29 23:59:59 UTC)));
        assert!(w.is_open(datetime!(2026-12-30 00:00 UTC)));
        assert!(!w.is_open(datetime!(2026-12-31 00:00 UTC)));
    }

    #[test]
    fn the_end_of_time_never_opens_and_does_not_panic() {
        let w = window("Sat 02:00-04:00 Europe/Berlin");
        let end = datetime!(9999-12-31 23:00 UTC);
        assert_eq!(w.next_open(end), None);
        let start = datetime!(-9999-01-01 00:00 UTC);
        let _ = w.is_open(start);
        let _ = w.next_open(start);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn any_window() -> impl Strategy<Value = Window> {
            let days = prop::collection::vec(0usize..7, 0..4);
            let zones = prop::sample::select(vec![
                "UTC",
                "Europe/Berlin",
                "America/New_York",
                "Australia/Lord_Howe",
                "Pacific/Apia",
                "Asia/Kathmandu",
            ]);
            (days, 0u16..24, 0u16..60, 0u16..25, 0u16..60, zones).prop_filter_map(
                "a valid window",
                |(days, sh, sm, eh, em, zone)| {
                    let days: Vec<&str> = days.iter().map(|d| DAY_NAMES[*d]).collect();
                    let text = format!("{} {sh:02}:{sm:02}-{eh:02}:{em:02} {zone}", days.join(","));
                    Window::parse(&text).ok()
                },
            )
        }

        proptest! {
            #[test]
            fn next_open_is_open_and_not_before(w in any_window(), secs in -62_000_000_000i64..253_000_000_000) {
                let Ok(at) = OffsetDateTime::from_unix_timestamp(secs) else { return Ok(()) };
                if let Some(next) = w.next_open(at) {
                    prop_assert!(next >= at);
                    prop_assert!(w.is_open(next), "{w} at {at}: {next} is not open");
                    if next > at {
                        prop_assert!(!w.is_open(at));
                        // Nor anywhere between: it is the next opening, not a later one.
                        let gap = next - at;
                        for k in 1..8 {
                            let between = at + gap * k / 8;
                            prop_assert!(!w.is_open(between), "{w} at {at}: open at {between}, before {next}");
                        }
                    }
                }
            }

            #[test]
            fn parse_never_panics(text in "\\PC{0,60}") {
                let _ = Window::parse(&text);
            }
        }
    }
}

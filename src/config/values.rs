//! Durations and sizes as systemd writes them, parsed and shown.

use std::time::Duration;

/// The longest duration any option accepts. A bound at parse time keeps every sum and deadline
/// built from these options (Instant + timeout, install-units' TimeoutStartSec=) far from
/// overflow, and no pass sensibly waits longer than a year.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86400);

/// How `MAX_DURATION` is written in messages and the README.
pub const MAX_DURATION_TEXT: &str = "365d";

/// Parse a duration the way systemd writes them: `90`, `30s`, `5min`, `2h`, `1h 30min`, `1w`,
/// `500ms`, `250us`; at most `MAX_DURATION`. Fractions (`1.5h`), months and years are refused:
/// a month or a year has no fixed length, and no setting here needs them.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let invalid = || format!("{text:?} is not a duration: write it like 30s, 5min or 2h");
    let too_long = || {
        format!(
            "{:?} is too long: durations are at most {MAX_DURATION_TEXT}",
            text.trim()
        )
    };
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(invalid());
        }
        // Any run of digits is a number, however long: too many of them is "too long", not
        // "not a duration".
        let number: u64 = rest[..digits].parse().unwrap_or(u64::MAX);
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = rest[unit_len..].trim_start();
        let term = match unit {
            "ms" | "msec" => Duration::from_millis(number),
            "" | "s" | "sec" | "second" | "seconds" => Duration::from_secs(number),
            "m" | "min" | "minute" | "minutes" => Duration::from_secs(number.saturating_mul(60)),
            "h" | "hr" | "hour" | "hours" => Duration::from_secs(number.saturating_mul(3600)),
            "d" | "day" | "days" => Duration::from_secs(number.saturating_mul(86400)),
            "w" | "week" | "weeks" => Duration::from_secs(number.saturating_mul(7 * 86400)),
            "us" | "usec" => Duration::from_micros(number),
            _ => return Err(invalid()),
        };
        total = total
            .checked_add(term)
            .filter(|t| *t <= MAX_DURATION)
            .ok_or_else(too_long)?;
    }
    Ok(total)
}

/// The largest --max-file-size accepted: beyond it the limit protects nothing.
pub const MAX_FILE_SIZE_LIMIT: u64 = 1 << 40;

/// Parse a size as systemd and coreutils write them, in powers of 1024: `4096`, `512K`,
/// `256M`, `1G`, `256MiB`.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let invalid = || format!("{text:?} is not a size: write it like 512K, 256M or 1G");
    let trimmed = text.trim();
    let digits = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    if digits == 0 {
        return Err(invalid());
    }
    let number: u64 = trimmed[..digits].parse().map_err(|_| invalid())?;
    let shift = match trimmed[digits..].trim_start() {
        "" | "B" => 0,
        "K" | "k" | "KiB" | "KB" => 10,
        "M" | "MiB" | "MB" => 20,
        "G" | "GiB" | "GB" => 30,
        "T" | "TiB" | "TB" => 40,
        _ => return Err(invalid()),
    };
    let too_big = || {
        format!(
            "{text:?} is too large: the maximum is {}",
            show_size(MAX_FILE_SIZE_LIMIT)
        )
    };
    let bytes = number.checked_mul(1u64 << shift).ok_or_else(too_big)?;
    if bytes > MAX_FILE_SIZE_LIMIT {
        return Err(too_big());
    }
    if bytes == 0 {
        return Err(format!(
            "{text:?} would refuse every file: give at least 1 byte"
        ));
    }
    Ok(bytes)
}

/// A size the way an operator reads it: `2.0 KiB`, `500.0 MiB`, or bytes below 1 KiB.
pub fn show_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A duration as people (and `parse_duration`) read it, in one unit: the largest that counts
/// it exactly, at least twice above seconds (`500ms`, `60s`, `90s`, `5min`, `90min`, `2h`).
pub fn format_duration(d: Duration) -> String {
    const UNITS: [(&str, u128); 6] = [
        ("d", 86_400_000_000_000),
        ("h", 3_600_000_000_000),
        ("min", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
    ];
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    let seconds = 1_000_000_000;
    UNITS
        .iter()
        .find(|(_, len)| nanos.is_multiple_of(*len) && (nanos / len >= 2 || *len <= seconds))
        .map_or_else(
            || format!("{}us", nanos / 1_000),
            |(unit, len)| format!("{}{unit}", nanos / len),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_systemd() {
        let table = [
            ("30s", 30),
            ("5min", 300),
            ("2h", 7200),
            ("90", 90),
            ("1h 30min", 5400),
            ("1d", 86400),
            (" 10 s ", 10),
        ];
        for (text, secs) in table {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(14 * 86400)));
        assert_eq!(parse_duration("1 week"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("1usec"), Ok(Duration::from_micros(1)));
        assert!(parse_duration("53w").unwrap_err().contains("at most 365d"));
        for bad in ["", "abc", "5 parsecs", "min", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(parse_duration("365d"), Ok(MAX_DURATION));
        for huge in [
            "366d",
            "365d 1s",
            "99999999999999999999d",
            "18446744073709551615s",
            "9223372036854775807",
            "18446744073709551615ms 18446744073709551615ms",
        ] {
            let err = parse_duration(huge).unwrap_err();
            assert!(err.contains("at most 365d"), "{huge:?}: {err}");
        }
    }

    #[test]
    fn durations_are_shown_as_people_write_them() {
        let table = [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_micros(1500), "1500us"),
            (Duration::from_secs(1), "1s"),
            (Duration::from_secs(60), "60s"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(300), "5min"),
            (Duration::from_secs(3600), "60min"),
            (Duration::from_secs(5400), "90min"),
            (Duration::from_secs(7200), "2h"),
            (Duration::from_secs(86400 + 1), "86401s"),
            (MAX_DURATION, "365d"),
        ];
        for (d, shown) in table {
            assert_eq!(format_duration(d), shown);
            assert_eq!(parse_duration(shown), Ok(d), "{shown} reads back");
        }
    }

    /// Durations as an operator might mistype them: digits of any length, any unit or none.
    const DURATION_TEXT: &str =
        "[0-9 ]{0,30}(ms|s|min|h|d|days|x|)( [0-9]{1,25}(ms|s|min|h|d)){0,3}";

    /// Each unit and its length in nanoseconds.
    const UNITS: [(&str, u128); 5] = [
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("min", 60_000_000_000),
        ("h", 3_600_000_000_000),
        ("d", 86_400_000_000_000),
    ];

    proptest::proptest! {
        /// Whatever the text, the parser answers without panicking, never beyond the maximum.
        #[test]
        fn any_duration_text_parses_or_is_refused(text in DURATION_TEXT) {
            if let Ok(d) = parse_duration(&text) {
                proptest::prop_assert!(d <= MAX_DURATION);
            }
        }

        /// A number with a unit is that many units when it fits, and "at most 365d" when not.
        #[test]
        fn a_number_with_a_unit_is_exact_or_too_long(
            n in proptest::prop_oneof![0u64..40_000_000_000, proptest::num::u64::ANY],
            unit in 0usize..UNITS.len(),
        ) {
            let (name, nanos_per) = UNITS[unit];
            let expected = u128::from(n) * nanos_per;
            match parse_duration(&format!("{n}{name}")) {
                Ok(d) => proptest::prop_assert_eq!(d.as_nanos(), expected),
                Err(e) => {
                    proptest::prop_assert!(expected > MAX_DURATION.as_nanos());
                    proptest::prop_assert!(e.contains("at most 365d"), "{}", e);
                }
            }
        }
    }

    #[test]
    fn sizes_read_like_systemd() {
        let table = [
            ("4096", 4096),
            ("1K", 1024),
            ("512K", 512 << 10),
            ("256M", 256 << 20),
            ("256MiB", 256 << 20),
            ("1G", 1 << 30),
            ("2 GiB", 2 << 30),
            ("1T", 1 << 40),
            (" 10B ", 10),
        ];
        for (text, bytes) in table {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for bad in [
            "",
            "K",
            "1X",
            "-1K",
            "1.5G",
            "0",
            "2T",
            "18446744073709551615K",
            "99999999999999999999999",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_size("2T").unwrap_err().contains("maximum is 1.0 TiB"));
        assert_eq!(show_size(2048), "2.0 KiB");
        assert_eq!(show_size(500 << 20), "500.0 MiB");
        assert_eq!(show_size(1000), "1000 B");
    }
}

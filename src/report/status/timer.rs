//! When gitops.timer fires next, as systemctl tells it.

use std::path::Path;
use std::time::Duration;

use time::OffsetDateTime;

/// How long status waits for systemctl: a health check must answer even when systemd does not.
const SYSTEMCTL_BOUND: Duration = Duration::from_secs(2);

/// The program to ask about the timer: the one named (--systemctl, GITOPS_SYSTEMCTL), else
/// systemctl on a machine booted with systemd (sd_booted(3)'s test); none elsewhere.
pub(super) fn systemctl_program(named: Option<&str>) -> Option<String> {
    match named.filter(|p| !p.is_empty()) {
        Some(program) => Some(program.to_string()),
        None => Path::new("/run/systemd/system")
            .is_dir()
            .then(|| "systemctl".to_string()),
    }
}

/// What systemctl says of gitops.timer's next run (both clocks: `parse_next_elapse`).
pub(super) fn ask_next_elapse(program: &str) -> Option<String> {
    bounded_output(
        program,
        &[
            "show",
            "gitops.timer",
            "-p",
            "NextElapseUSecRealtime",
            "-p",
            "NextElapseUSecMonotonic",
        ],
    )
}

/// What `program ARGS` prints, if it exits 0 within `SYSTEMCTL_BOUND`, in UTC and the C locale
/// so that times can be read back. None otherwise: systemd's tools may hang or be missing.
pub fn bounded_output(program: &str, args: &[&str]) -> Option<String> {
    use std::io::Read as _;
    use std::process::{Command, Stdio};
    let mut child = Command::new(program)
        .args(args)
        .env("TZ", "UTC")
        .env("LC_ALL", "C")
        .env("SYSTEMD_PAGER", "")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = std::time::Instant::now() + SYSTEMCTL_BOUND;
    let mut stdout = child.stdout.take()?;
    let (tx, rx) = std::sync::mpsc::channel();
    // Read apart: a process it left behind may hold the pipe open long after it exits.
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = (&mut stdout).take(4096).read_to_end(&mut bytes);
        let _ = tx.send(bytes);
    });
    let bytes = rx.recv_timeout(SYSTEMCTL_BOUND).ok();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    status.filter(|s| s.success())?;
    String::from_utf8(bytes?).ok()
}

/// When the timer fires next, from systemctl's `NextElapseUSecRealtime=` (a calendar timer:
/// "Wed 2026-12-02 18:30:00 UTC", in UTC as asked, or "@1796230200") or, for a timer on
/// monotonic time as gitops.timer is (OnBootSec=, OnUnitInactiveSec=), `NextElapseUSecMonotonic=`
/// (a time span since boot, "1h 5min 3.250000s") against the monotonic clock now. None for a
/// timer with no next run ("", "n/a", "infinity", "0") or anything else.
pub fn parse_next_elapse(
    text: &str,
    now: OffsetDateTime,
    monotonic_now: Duration,
) -> Option<OffsetDateTime> {
    let value = |key: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(key)?.strip_prefix('='))
            .map(str::trim)
    };
    if let Some(at) = value("NextElapseUSecRealtime").and_then(parse_realtime) {
        return Some(at);
    }
    let since_boot = value("NextElapseUSecMonotonic").and_then(parse_timespan)?;
    if since_boot.is_zero() {
        return None;
    }
    let left = since_boot.saturating_sub(monotonic_now);
    Some(now + time::Duration::try_from(left).ok()?)
}

fn parse_realtime(text: &str) -> Option<OffsetDateTime> {
    if let Some(secs) = text.strip_prefix('@') {
        return OffsetDateTime::from_unix_timestamp(secs.parse().ok()?).ok();
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let [_weekday, date, clock, "UTC"] = words.as_slice() else {
        return None;
    };
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::PrimitiveDateTime::parse(&format!("{date} {clock}"), format)
        .ok()
        .map(time::PrimitiveDateTime::assume_utc)
}

/// A time span as systemd prints one (format_timespan): "2min 10.5s", "1d 3h", "500ms", "0".
fn parse_timespan(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    for word in text.split_whitespace() {
        let unit_at = word.find(|c: char| c.is_ascii_alphabetic())?;
        let (number, unit) = word.split_at(unit_at);
        let number: f64 = number
            .parse()
            .ok()
            .filter(|n: &f64| n.is_finite() && *n >= 0.0)?;
        let seconds = match unit {
            "y" => 31_557_600.0,
            "month" => 2_629_800.0,
            "w" => 604_800.0,
            "d" => 86_400.0,
            "h" => 3_600.0,
            "min" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "μs" => 1e-6,
            _ => return None,
        };
        total += number * seconds;
    }
    (total > 0.0 && total < 1e12).then(|| Duration::from_secs_f64(total))
}

/// CLOCK_MONOTONIC, the clock of a monotonic timer's next elapse.
pub(super) fn monotonic_now() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| {
            Duration::new(
                t.tv_sec().max(0) as u64,
                t.tv_nsec().clamp(0, 999_999_999) as u32,
            )
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timer_s_next_run_is_read_as_systemctl_prints_it() {
        let at = time::macros::datetime!(2026-12-02 18:30:00 UTC);
        let now = time::macros::datetime!(2026-12-02 18:00:00 UTC);
        // The machine booted an hour ago (monotonic clock).
        let up = Duration::from_secs(3600);
        let mono =
            |span: &str| format!("NextElapseUSecRealtime=\nNextElapseUSecMonotonic={span}\n");
        let real = |text: &str| {
            format!("NextElapseUSecRealtime={text}\nNextElapseUSecMonotonic=infinity\n")
        };
        let table = [
            (real("Wed 2026-12-02 18:30:00 UTC"), Some(at)),
            (real("@1796236200"), Some(at)),
            (mono("1h 30min"), Some(at)),
            (
                mono("1h 29min 59.5s"),
                Some(at - time::Duration::milliseconds(500)),
            ),
            (mono("5400s"), Some(at)),
            (mono("59min"), Some(now)),
            (mono("infinity"), None),
            (mono("0"), None),
            (mono(""), None),
            (mono("soon"), None),
            (mono("5 min"), None),
            (real(""), None),
            (real("n/a"), None),
            (real("Wed 2026-12-02 18:30:00 CET"), None),
            (real("2026-12-02 18:30:00"), None),
            (real("@soon"), None),
            (String::new(), None),
        ];
        for (text, want) in table {
            assert_eq!(parse_next_elapse(&text, now, up), want, "{text:?}");
        }
    }
}

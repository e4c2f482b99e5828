//! What the machine says about its boot and its clock: the effects behind the plan's `Facts`.

use std::path::Path;
use std::time::Duration;

use time::OffsetDateTime;

use super::plan::Facts;

/// The boot facts now; the clock's synchronisation is left unknown (`clock_synchronised`
/// asks, which may start timedatectl: only for a reboot that is due). An error names what
/// could not be read: without the boot time and id there is no safe decision.
pub fn read(now: OffsetDateTime) -> Result<Facts, String> {
    let stat = std::fs::read_to_string("/proc/stat")
        .map_err(|e| format!("cannot read /proc/stat ({e}): is /proc mounted?"))?;
    let booted_at = boot_time(&stat).ok_or("/proc/stat has no btime line")?;
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map_err(|e| format!("cannot read /proc/sys/kernel/random/boot_id ({e})"))?
        .trim()
        .to_string();
    let uptime = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|text| uptime(&text))
        .ok_or("cannot read the uptime from /proc/uptime")?;
    Ok(Facts {
        now,
        booted_at,
        boot_id,
        uptime,
        clock_synchronised: None,
    })
}

/// This boot's id, alone (the fleet lock's release needs no more).
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|id| id.trim().to_string())
}

/// `btime SECONDS` of /proc/stat.
pub fn boot_time(stat: &str) -> Option<OffsetDateTime> {
    let secs: i64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    OffsetDateTime::from_unix_timestamp(secs).ok()
}

/// The first field of /proc/uptime, in seconds with a fraction.
pub fn uptime(text: &str) -> Option<Duration> {
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// Whether the clock is synchronised: systemd-timesyncd's flag file, else timedatectl's
/// NTPSynchronized on a machine booted with systemd (bounded to 2 s); None where neither
/// can tell, which is no guard.
pub fn clock_synchronised() -> Option<bool> {
    if Path::new("/run/systemd/timesync/synchronized").exists() {
        return Some(true);
    }
    if !Path::new("/run/systemd/system").is_dir() {
        return None;
    }
    let answer = crate::report::status::bounded_output(
        "timedatectl",
        &["show", "-p", "NTPSynchronized", "--value"],
    )?;
    match answer.trim() {
        "yes" => Some(true),
        "no" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_facts_are_read_as_the_kernel_writes_them() {
        let stat = "cpu  1 2 3\nintr 5\nctxt 9\nbtime 1796232600\nprocesses 7\n";
        assert_eq!(
            boot_time(stat),
            Some(time::macros::datetime!(2026-12-02 17:30:00 UTC))
        );
        assert_eq!(boot_time("cpu 1\n"), None);
        assert_eq!(boot_time("btime soon\n"), None);
        assert_eq!(
            uptime("3600.25 7000.00\n"),
            Some(Duration::from_millis(3_600_250))
        );
        assert_eq!(uptime("-1 0\n"), None);
        assert_eq!(uptime(""), None);
        // This machine's own.
        let facts = read(OffsetDateTime::now_utc()).unwrap();
        assert!(facts.booted_at < facts.now);
        assert!(!facts.boot_id.is_empty());
    }
}

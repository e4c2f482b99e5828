//! Rollout waves without a server: `.gitops/rollout` says how a commit spreads over the fleet,
//! each machine finds its own wave from a stable hash of its host name (ranked among the
//! repository's hosts/), of its machine id or of its group, and a
//! machine in wave k applies a commit `interval × k` after the rollout starts. Everything here
//! is a pure decision but the one read of /etc/machine-id, so each is a table test.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use time::OffsetDateTime;

/// Where a commit describes its rollout, in its own tree: the rollout travels with the commits
/// it paces, and no machine needs a server to learn it.
pub const FILE: &str = ".gitops/rollout";

/// The largest file `parse` reads. A rollout is a few short lines; the file comes from the
/// repository, so a bound keeps a hostile one from costing memory or time.
pub const MAX_FILE_BYTES: usize = 4096;

/// The most waves. Sixteen waves of the longest interval already keep the last machine waiting
/// over a year; more would only be a mistake.
pub const MAX_WAVES: usize = 16;

/// The longest interval between waves: beyond a month a rollout is a freeze, which is the
/// branch's job, not this file's.
pub const MAX_INTERVAL: Duration = Duration::from_secs(30 * 86_400);

/// 100% in `Wave::Percent`'s unit, parts per million: exact, so `100%` is exactly the whole
/// fleet and `0.5%` needs no float rounding.
pub const WHOLE: u32 = 1_000_000;

/// The most digits after a percentage's decimal point: 0.0001% is one part per million.
const MAX_PERCENT_DECIMALS: usize = 4;

/// The longest machine id kept: systemd's are 32 hex digits; a longer one is not an id.
const MAX_MACHINE_ID: usize = 128;

/// The salt of `position`: a machine's wave must not be the same function of its id as any
/// other hash of that id, or waves would correlate with whatever else is spread by it.
const SALT: &[u8] = b"gitops rollout v1\0";

/// The keys the file may have, in the order messages list them.
const KEYS: [&str; 5] = ["waves", "interval", "rollout-start", "by", "fleet"];

/// A rollout as `.gitops/rollout` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    /// The share of the fleet reached by the end of each wave, growing, the last one all of it.
    pub waves: Vec<Wave>,
    /// How long each wave waits after the one before it.
    pub interval: Duration,
    /// When wave 0 starts; None: at the commit's committer date.
    pub start: Option<OffsetDateTime>,
    /// What a machine's wave is hashed from.
    pub by: By,
    /// The fleet's size, for waves given as counts; None: the number of hosts/ in the tree.
    pub fleet: Option<u32>,
}

/// How much of the fleet has the commit by the end of a wave (cumulative, not the wave's own
/// size): so `1, 10%, 100%` reads as "a canary, then a tenth, then everyone".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wave {
    /// This many machines.
    Count(u32),
    /// This share of the fleet, in parts per million (`WHOLE` is 100%).
    Percent(u32),
}

/// What a machine's position in the rollout is hashed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum By {
    /// Each machine on its own, ranked among the hosts the repository lists (hosts/<host>/) by
    /// a stable hash of their names: the waves then have exactly the sizes given (`1` is one
    /// machine). A machine the repository does not list is placed by its machine id.
    #[default]
    Host,
    /// Each machine on its own, by a stable hash of its machine id: each wave gets about its
    /// share (a machine cannot know the others' ids, so `1` may be none or a few).
    MachineId,
    /// Each group as one: a group's machines get a commit together (a cluster that must agree
    /// on its version), by the machine's first group, ranked among the groups the repository
    /// lists (groups/<group>/) so that the waves count groups exactly; a group not listed is
    /// placed by a hash of its name.
    Group,
}

/// The line an operator can copy for each key, in every message about it.
fn example(key: &str) -> &'static str {
    match key {
        "waves" => "waves = 1, 10%, 50%, 100%",
        "interval" => "interval = 30min",
        "rollout-start" => "rollout-start = 2026-12-03T10:00:00Z",
        "by" => "by = host",
        _ => "fleet = 20",
    }
}

/// Text from the file as a message quotes it: escaped, and cut short so that a hostile line
/// cannot make the message long.
fn quote(text: &str) -> String {
    const MAX_QUOTED: usize = 40;
    let cut: String = text.chars().take(MAX_QUOTED).collect();
    if cut.len() < text.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

/// Read `.gitops/rollout`. Err: one sentence for the operator naming the line and the fix. The
/// file comes from the repository and anyone who can push writes it: it is bounded and checked
/// whole, and an unknown key is refused, since a misspelt `interval` must not quietly turn a
/// careful rollout into an all-at-once one.
pub fn parse(text: &str) -> Result<Rollout, String> {
    if text.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{FILE} is {} bytes, more than the {MAX_FILE_BYTES} it may have: keep only its key = value lines ({})",
            text.len(),
            example("waves")
        ));
    }
    // The byte order mark some editors put first is no part of the first key.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut seen: Vec<(&str, usize)> = Vec::new();
    let mut waves: Option<(usize, Vec<Wave>)> = None;
    let mut interval = None;
    let mut start = None;
    let mut by = By::default();
    let mut fleet = None;
    for (index, raw) in text.lines().enumerate() {
        let n = index + 1;
        let line = raw.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!(
                "line {n}: {} is not a key = value line (write e.g. {})",
                quote(line),
                example("interval")
            ));
        };
        let (key, value) = (key.trim(), value.trim());
        if !KEYS.contains(&key) {
            return Err(format!(
                "line {n}: unknown key {} (the keys are {}; fix its spelling or remove the line)",
                quote(key),
                KEYS.join(", ")
            ));
        }
        if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
            return Err(format!(
                "line {n}: {key} is given twice, first on line {first} (keep one of them)"
            ));
        }
        seen.push((key, n));
        let fix = example(key);
        if value.is_empty() {
            return Err(format!("line {n}: {key} has no value (write e.g. {fix})"));
        }
        let at = |e: String| format!("line {n}: {key}: {e} (write e.g. {fix})");
        match key {
            "waves" => waves = Some((n, parse_waves(value).map_err(at)?)),
            "interval" => interval = Some(parse_interval(value).map_err(at)?),
            "rollout-start" => {
                let parsed =
                    OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
                        .map_err(|_| {
                            at(format!("{} is not an RFC 3339 date and time", quote(value)))
                        })?;
                start = Some(parsed);
            }
            "by" => {
                by = match value {
                    "host" => By::Host,
                    "machine-id" => By::MachineId,
                    "group" => By::Group,
                    _ => {
                        return Err(at(format!(
                            "{} is none of host, machine-id and group",
                            quote(value)
                        )))
                    }
                }
            }
            _ => fleet = Some(parse_fleet(value).map_err(at)?),
        }
    }
    let Some((waves_line, waves)) = waves else {
        return Err(format!(
            "{FILE} has no waves line: add one, e.g. {}",
            example("waves")
        ));
    };
    let Some(interval) = interval else {
        return Err(format!(
            "{FILE} has no interval line, so no wave would wait for the one before: add one, e.g. {}",
            example("interval")
        ));
    };
    check_waves(&waves, fleet).map_err(|e| {
        format!(
            "line {waves_line}: waves: {e} (write e.g. {})",
            example("waves")
        )
    })?;
    Ok(Rollout {
        waves,
        interval,
        start,
        by,
        fleet,
    })
}

/// The waves' entries, each on its own; how they relate is `check_waves`' job.
fn parse_waves(value: &str) -> Result<Vec<Wave>, String> {
    let entries: Vec<&str> = value.split(',').map(str::trim).collect();
    if entries.len() > MAX_WAVES {
        return Err(format!(
            "{} waves are too many, the most is {MAX_WAVES}",
            entries.len()
        ));
    }
    let mut waves = Vec::with_capacity(entries.len());
    for entry in entries {
        if entry.is_empty() {
            return Err("an entry between commas is empty".to_string());
        }
        let wave = if let Some(number) = entry.strip_suffix('%') {
            Wave::Percent(parse_percent(number.trim_end(), entry)?)
        } else if entry.bytes().all(|b| b.is_ascii_digit()) {
            match entry.parse::<u32>() {
                Ok(0) => return Err("a wave of 0 machines reaches no machine".to_string()),
                Ok(count) => Wave::Count(count),
                Err(_) => return Err(format!("{} machines are too many", quote(entry))),
            }
        } else {
            return Err(format!(
                "{} is neither a count nor a percentage",
                quote(entry)
            ));
        };
        waves.push(wave);
    }
    Ok(waves)
}

/// A percentage without its `%` (`10`, `0.5`, `12.25`) in parts per million, read as decimal
/// digits rather than as a float: `1e2`, `inf` and `NaN` are no percentages.
fn parse_percent(number: &str, entry: &str) -> Result<u32, String> {
    let not_a_share = || format!("{} is neither a count nor a percentage", quote(entry));
    let (whole, decimals) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (number.contains('.') && !digits(decimals)) {
        return Err(not_a_share());
    }
    if decimals.len() > MAX_PERCENT_DECIMALS {
        return Err(format!("{} is finer than 0.0001%, round it", quote(entry)));
    }
    let whole = whole.trim_start_matches('0');
    // More than three digits is over 100% whatever they are; the bound also keeps the sum
    // below in range.
    if whole.len() > 3 {
        return Err(format!("{} is more than 100%", quote(entry)));
    }
    let whole: u32 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| not_a_share())?
    };
    let mut fraction: u32 = 0;
    for i in 0..MAX_PERCENT_DECIMALS {
        let digit = decimals
            .as_bytes()
            .get(i)
            .map_or(0, |b| u32::from(b - b'0'));
        fraction = fraction * 10 + digit;
    }
    let ppm = whole * 10_000 + fraction;
    if ppm == 0 {
        return Err(format!("{} reaches no machine", quote(entry)));
    }
    if ppm > WHOLE {
        return Err(format!("{} is more than 100%", quote(entry)));
    }
    Ok(ppm)
}

fn parse_interval(value: &str) -> Result<Duration, String> {
    let interval = crate::config::parse_duration(value)?;
    if interval.is_zero() {
        return Err(format!("{} would start every wave at once", quote(value)));
    }
    if interval > MAX_INTERVAL {
        return Err(format!("{} is longer than 30 days", quote(value)));
    }
    Ok(interval)
}

fn parse_fleet(value: &str) -> Result<u32, String> {
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{} is not a number of machines", quote(value)));
    }
    match value.parse::<u32>() {
        Ok(0) => Err("a fleet of 0 machines has no one to roll out to".to_string()),
        Ok(fleet) => Ok(fleet),
        Err(_) => Err(format!("{} machines are too many", quote(value))),
    }
}

/// A wave's share as a fraction (numerator, denominator), None for a count when the fleet's
/// size is unknown. Exact, so that `10, 50%` with `fleet = 20` is refused for 50% = 10 machines.
fn fraction(wave: Wave, fleet: Option<u32>) -> Option<(u64, u64)> {
    match wave {
        Wave::Percent(ppm) => Some((u64::from(ppm), u64::from(WHOLE))),
        Wave::Count(count) => fleet.map(|f| (u64::from(count.min(f)), u64::from(f))),
    }
}

/// A wave as messages name it.
fn show(wave: Wave) -> String {
    match wave {
        Wave::Count(1) => "1 machine".to_string(),
        Wave::Count(count) => format!("{count} machines"),
        Wave::Percent(ppm) => {
            let text = format!("{}.{:04}", ppm / 10_000, ppm % 10_000);
            format!("{}%", text.trim_end_matches('0').trim_end_matches('.'))
        }
    }
}

/// Each wave must reach more machines than the one before and the last all of them. Counts and
/// percentages compare only once the fleet's size is known: with `fleet = N` here, else not at
/// all, and then a wave that turns out to add nobody (a count beyond the percentage after it in
/// a small tree) is simply empty: a host added to hosts/ must not make a commit unappliable.
fn check_waves(waves: &[Wave], fleet: Option<u32>) -> Result<(), String> {
    let Some(&last) = waves.last() else {
        return Err("no wave is given".to_string());
    };
    for (i, &wave) in waves.iter().enumerate() {
        let earlier = waves[..i].iter().rev().find(|&&before| {
            fleet.is_some() || std::mem::discriminant(&before) == std::mem::discriminant(&wave)
        });
        let Some(&before) = earlier else { continue };
        // Two counts compare as they are when the fleet's size is unknown.
        let shares = fraction(before, fleet)
            .zip(fraction(wave, fleet))
            .or(match (before, wave) {
                (Wave::Count(x), Wave::Count(y)) => Some(((x.into(), 1), (y.into(), 1))),
                _ => None,
            });
        if let Some(((a, b), (c, d))) = shares {
            // a/b < c/d, in integers: both sides are below 2^64.
            if a * d >= c * b {
                return Err(format!(
                    "entry {} ({}) reaches no more machines than entry {} ({}); each entry is the share reached so far, so they must grow",
                    i + 1,
                    show(wave),
                    i,
                    show(before)
                ));
            }
        }
    }
    let whole = match (last, fleet) {
        (Wave::Percent(ppm), _) => ppm == WHOLE,
        (Wave::Count(count), Some(fleet)) => count >= fleet,
        (Wave::Count(_), None) => false,
    };
    if !whole {
        return Err(format!(
            "the last wave must be 100% so that every machine gets the commit, not {}",
            show(last)
        ));
    }
    Ok(())
}

/// Where a machine falls in every rollout, in [0, 1): a stable hash of its key. Stable across
/// versions, platforms and runs (FNV-1a 64 then splitmix64's finaliser, written here, no crate
/// whose hash may change), since a machine that moved between waves on an upgrade could apply
/// a commit before its canaries. Never change it; the tests pin it.
pub fn position(key: &str) -> f64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = FNV_OFFSET;
    for &byte in SALT.iter().chain(key.as_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    // FNV alone leaves keys that differ in their last bytes close together; the finaliser
    // spreads every input bit over the top bits used below.
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^= hash >> 31;
    // The top 53 bits are exactly an f64 in [0, 1).
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

/// The index of the wave a machine at `position` is in (0: the first, which does not wait): the
/// first wave whose share so far covers it. Counts are shares of the fleet's size, `fleet = N`
/// if the file gives it, else `hosts_in_tree` (the entries under hosts/ in the commit's tree).
/// A position outside [0, 1), which `position` never gives, is in the last wave.
pub fn wave_of(
    rollout: &Rollout,
    position: f64,
    hosts_in_tree: Option<u32>,
) -> Result<usize, String> {
    let last = rollout.waves.len().saturating_sub(1);
    let fleet = rollout.fleet.or(hosts_in_tree.filter(|n| *n > 0));
    let counts = rollout.waves.iter().any(|w| matches!(w, Wave::Count(_)));
    if counts && fleet.is_none() {
        return Err(format!(
            "waves given as counts need the fleet's size: add fleet = N to {FILE}, or give the waves as percentages"
        ));
    }
    if !(0.0..1.0).contains(&position) {
        return Ok(last);
    }
    for (k, &wave) in rollout.waves.iter().enumerate() {
        if let Some((numerator, denominator)) = fraction(wave, fleet) {
            if position * (denominator as f64) < numerator as f64 {
                return Ok(k);
            }
        }
    }
    // Only a rollout not made by `parse` leaves a position uncovered: the last wave is the
    // careful answer.
    Ok(last)
}

/// When wave `wave` may apply a commit: the rollout's start (`rollout-start`, else the commit's
/// committer date) plus `interval × wave`, the latest representable time if that overflows.
pub fn due_at(rollout: &Rollout, wave: usize, committed_at: OffsetDateTime) -> OffsetDateTime {
    let start = rollout.start.unwrap_or(committed_at);
    let times = u32::try_from(wave).unwrap_or(u32::MAX);
    rollout
        .interval
        .checked_mul(times)
        .and_then(|wait| time::Duration::try_from(wait).ok())
        .and_then(|wait| start.checked_add(wait))
        .unwrap_or_else(|| time::PrimitiveDateTime::MAX.assume_offset(start.offset()))
}

/// Where a machine stands in a rollout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Place {
    /// `rank` (from 0) among the `of` hosts the repository lists (`By::Host`).
    Ranked { rank: usize, of: usize },
    /// A hashed position in [0, 1) (`position`).
    Hashed(f64),
    /// Nothing to place it by: the last wave, since a machine that cannot tell its wave must
    /// not be a canary.
    Last,
}

/// Where `by` finds the names a machine is ranked among: hosts/ for `Host`, groups/ for
/// `Group`. `MachineId` ranks no one, and counts the hosts for a wave given as a count.
pub fn inventory_dir(by: By) -> &'static str {
    match by {
        By::Host | By::MachineId => "hosts",
        By::Group => "groups",
    }
}

/// This machine's place: ranked among `inventory` (the names under `inventory_dir(by)` in the
/// commit's tree) when the inventory lists its host (`Host`) or its first group (`Group`), else
/// by the hash of `machine_key`.
pub fn place(
    by: By,
    host: Option<&str>,
    inventory: &[String],
    machine_id: Option<&str>,
    groups: &[String],
) -> Place {
    let listed = match by {
        By::Host => host,
        By::Group => groups.first().map(String::as_str),
        By::MachineId => None,
    };
    if let Some(host) = listed {
        if inventory.iter().any(|h| h == host) {
            let mut ranked: Vec<(f64, &str)> = inventory
                .iter()
                .map(|h| (position(h), h.as_str()))
                .collect();
            ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
            ranked.dedup_by(|a, b| a.1 == b.1);
            let rank = ranked.iter().position(|(_, h)| *h == host).unwrap_or(0);
            return Place::Ranked {
                rank,
                of: ranked.len(),
            };
        }
    }
    match machine_key(by, machine_id, host, groups) {
        Some(key) => Place::Hashed(position(&key)),
        None => Place::Last,
    }
}

/// The index of the wave a machine at `place` is in. Ranked: the first wave that reaches more
/// machines than its rank (a count as given, a percentage of the inventory rounded up, so
/// `1%` of 20 is still one canary); hashed: `wave_of`, with the inventory's size for counts.
pub fn wave(rollout: &Rollout, place: Place, inventory: usize) -> Result<usize, String> {
    let last = rollout.waves.len().saturating_sub(1);
    match place {
        Place::Last => Ok(last),
        Place::Hashed(position) => wave_of(rollout, position, u32::try_from(inventory).ok()),
        Place::Ranked { rank, of } => Ok(rollout
            .waves
            .iter()
            .position(|&w| {
                let reach = match w {
                    Wave::Count(count) => u64::from(count),
                    Wave::Percent(ppm) => (u64::from(ppm) * of as u64).div_ceil(u64::from(WHOLE)),
                };
                (rank as u64) < reach
            })
            .unwrap_or(last)),
    }
}

/// Whether `id` can be a machine id: not empty, at most 128 bytes, printable ASCII, and not
/// the `uninitialized` systemd writes early in a first boot, which every new machine shares.
fn valid_machine_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_MACHINE_ID
        && id != "uninitialized"
        && id.bytes().all(|b| (b' '..=b'~').contains(&b))
}

/// What this machine's position is hashed from: for `By::MachineId` its machine id, else its
/// host name (a machine without /etc/machine-id still gets a stable wave); for `By::Group` its
/// first group, else the same. None when there is none of them: the caller then puts the
/// machine in the last wave, since a machine that cannot tell its wave must not be a canary.
pub fn machine_key(
    by: By,
    machine_id: Option<&str>,
    host: Option<&str>,
    groups: &[String],
) -> Option<String> {
    let id = machine_id.map(str::trim).filter(|id| valid_machine_id(id));
    let host = host.map(str::trim).filter(|h| !h.is_empty());
    let group = groups.first().map(|g| g.trim()).filter(|g| !g.is_empty());
    let key = match by {
        By::Host | By::MachineId => id.or(host),
        By::Group => group.or(id).or(host),
    };
    key.map(str::to_string)
}

/// This machine's id, from /etc/machine-id; None when the file is missing, unreadable or holds
/// no id (see `machine_key` for what follows). Test builds only: `GITOPS_TEST_MACHINE_ID=<id>`
/// stands in for the file, so the fleet tests give each of their machines its own id on one
/// host; a release build never reads the variable.
pub fn machine_id() -> Option<String> {
    #[cfg(debug_assertions)]
    if let Ok(id) = std::env::var("GITOPS_TEST_MACHINE_ID") {
        let id = id.trim();
        return valid_machine_id(id).then(|| id.to_string());
    }
    read_machine_id(Path::new("/etc/machine-id"))
}

/// The machine id in `path`, read up to a bound: the file is one line of 32 hex digits, and
/// whatever else is there is not an id.
fn read_machine_id(path: &Path) -> Option<String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(1024)
        .read_to_string(&mut text)
        .ok()?;
    let id = text.trim();
    valid_machine_id(id).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn rollout(waves: &[Wave], fleet: Option<u32>) -> Rollout {
        Rollout {
            waves: waves.to_vec(),
            interval: Duration::from_secs(1800),
            start: None,
            by: By::Host,
            fleet,
        }
    }

    use Wave::{Count as C, Percent as P};

    #[test]
    fn groups_the_repository_lists_are_ranked_as_groups() {
        let groups: Vec<String> = ["web", "db", "cache", "mail"].map(String::from).to_vec();
        let plan = Rollout {
            waves: vec![C(1), P(WHOLE)],
            by: By::Group,
            ..rollout(&[], None)
        };
        let waves: Vec<usize> = groups
            .iter()
            .map(|g| {
                let place = place(
                    By::Group,
                    Some("h"),
                    &groups,
                    Some("id"),
                    std::slice::from_ref(g),
                );
                assert!(matches!(place, Place::Ranked { of: 4, .. }), "{place:?}");
                wave(&plan, place, groups.len()).unwrap()
            })
            .collect();
        assert_eq!(waves.iter().filter(|w| **w == 0).count(), 1, "{waves:?}");
        // A machine of an unlisted group: its group's hash.
        assert_eq!(
            place(By::Group, Some("h"), &groups, Some("id"), &["other".into()]),
            Place::Hashed(position("other"))
        );
        assert_eq!(inventory_dir(By::Group), "groups");
        assert_eq!(inventory_dir(By::MachineId), "hosts");
    }

    #[test]
    fn hosts_the_repository_lists_get_waves_of_exactly_the_sizes_given() {
        let inventory: Vec<String> = (1..=20).map(|i| format!("web-{i:02}")).collect();
        let plan = Rollout {
            waves: vec![C(1), P(500_000), P(WHOLE)],
            ..rollout(&[], None)
        };
        let mut sizes = [0; 3];
        for host in &inventory {
            let place = place(By::Host, Some(host), &inventory, Some("same-id"), &[]);
            assert!(matches!(place, Place::Ranked { of: 20, .. }), "{place:?}");
            sizes[wave(&plan, place, inventory.len()).unwrap()] += 1;
        }
        assert_eq!(sizes, [1, 9, 10], "1, then 50% of 20 in all, then the rest");
        // 1% of 20 rounds up: still one canary.
        let small = Rollout {
            waves: vec![P(10_000), P(WHOLE)],
            ..rollout(&[], None)
        };
        let canaries = inventory
            .iter()
            .filter(|h| wave(&small, place(By::Host, Some(h), &inventory, None, &[]), 20) == Ok(0))
            .count();
        assert_eq!(canaries, 1);
        #[rustfmt::skip]
        let table: &[(By, Option<&str>, Option<&str>, Place)] = &[
            // not listed: its machine id's hash
            (By::Host,      Some("db-1"),  Some("id-1"), Place::Hashed(position("id-1"))),
            (By::Host,      None,          Some("id-1"), Place::Hashed(position("id-1"))),
            (By::MachineId, Some("web-01"), Some("id-1"), Place::Hashed(position("id-1"))),
            (By::Host,      Some("db-1"),  None,         Place::Hashed(position("db-1"))),
            (By::Host,      None,          None,         Place::Last),
        ];
        for (by, host, id, want) in table {
            assert_eq!(
                place(*by, *host, &inventory, *id, &[]),
                *want,
                "{by:?} {host:?} {id:?}"
            );
        }
        assert_eq!(wave(&plan, Place::Last, 20), Ok(2));
    }

    #[test]
    fn parse_accepts_the_documented_forms() {
        let full = "# comments and blank lines allowed\n\nwaves = 1, 10%, 50%, 100%\ninterval = 30min\nrollout-start = 2026-12-03T10:00:00Z   # optional\nby = group\nfleet = 20\n";
        #[rustfmt::skip]
        let table: [(&str, Rollout); 6] = [
            (full, Rollout {
                waves: vec![C(1), P(100_000), P(500_000), P(WHOLE)],
                interval: Duration::from_secs(1800),
                start: Some(datetime!(2026-12-03 10:00 UTC)),
                by: By::Group,
                fleet: Some(20),
            }),
            ("waves=100%\ninterval=1h", Rollout { waves: vec![P(WHOLE)], interval: Duration::from_secs(3600), ..rollout(&[], None) }),
            ("  waves =0.5%,12.25 %, 100.0%  \r\n interval = 1h 30min#c", Rollout { waves: vec![P(5_000), P(122_500), P(WHOLE)], interval: Duration::from_secs(5400), ..rollout(&[], None) }),
            ("waves = 1, 5, 20\ninterval = 30d\nfleet = 20", Rollout { waves: vec![C(1), C(5), C(20)], interval: MAX_INTERVAL, fleet: Some(20), ..rollout(&[], None) }),
            ("waves = 5, 30\ninterval = 10min\nfleet = 20\nby = machine-id", Rollout { waves: vec![C(5), C(30)], interval: Duration::from_secs(600), fleet: Some(20), by: By::MachineId, ..rollout(&[], None) }),
            // A count and percentages compare only once the fleet is known (wave_of's job).
            ("waves = 50, 10%, 100%\ninterval = 1min\nrollout-start = 2026-12-03T11:00:00+01:00", Rollout { waves: vec![C(50), P(100_000), P(WHOLE)], interval: Duration::from_secs(60), start: Some(datetime!(2026-12-03 11:00 +1)), ..rollout(&[], None) }),
        ];
        for (text, want) in table {
            assert_eq!(parse(text), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn parse_refuses_with_the_line_and_the_fix() {
        let ok = "interval = 30min\n";
        let too_big = format!("{ok}waves = 100%\n{}", "# padding\n".repeat(410));
        let many = format!("waves = {}100%\n{ok}", "1%, ".repeat(16));
        #[rustfmt::skip]
        let table: Vec<(String, &[&str])> = vec![
            (format!("{ok}waves = 1, abc, 100%"), &["line 2: waves: \"abc\" is neither a count nor a percentage", "write e.g. waves = 1, 10%, 50%, 100%"]),
            (format!("{ok}waves = 10%, 50%"), &["line 2: waves:", "the last wave must be 100% so that every machine gets the commit"]),
            (format!("{ok}waves = 1, 5"), &["line 2: waves:", "the last wave must be 100%"]),
            (format!("{ok}waves = 1, 5\nfleet = 6"), &["line 2: waves:", "the last wave must be 100%", "not 5 machines"]),
            (format!("{ok}waves = 0, 100%"), &["line 2: waves:", "0 machines"]),
            (format!("{ok}waves = 0%, 100%"), &["line 2: waves:", "\"0%\" reaches no machine"]),
            (format!("{ok}waves = 0.0000%, 100%"), &["line 2: waves:", "reaches no machine"]),
            (format!("{ok}waves = 150%"), &["line 2: waves:", "more than 100%"]),
            (format!("{ok}waves = 100.0001%"), &["line 2: waves:", "more than 100%"]),
            (format!("{ok}waves = 00000000000000001000%"), &["line 2: waves:", "more than 100%"]),
            (format!("{ok}waves = 0.00001%, 100%"), &["line 2: waves:", "finer than 0.0001%"]),
            (format!("{ok}waves = 1e2%"), &["line 2: waves:", "\"1e2%\" is neither"]),
            (format!("{ok}waves = NaN%"), &["line 2: waves:", "neither"]),
            (format!("{ok}waves = -5%, 100%"), &["line 2: waves:", "neither"]),
            (format!("{ok}waves = .5%, 100%"), &["line 2: waves:", "neither"]),
            (format!("{ok}waves = 5.%, 100%"), &["line 2: waves:", "neither"]),
            (format!("{ok}waves = 99999999999, 100%"), &["line 2: waves:", "too many"]),
            (format!("{ok}waves = 1,, 100%"), &["line 2: waves:", "empty"]),
            (format!("{ok}waves = 50%, 10%, 100%"), &["line 2: waves:", "entry 2 (10%) reaches no more machines than entry 1 (50%)"]),
            (format!("{ok}waves = 50%, 50%, 100%"), &["line 2: waves:", "entry 2 (50%)"]),
            (format!("{ok}waves = 5, 5, 100%"), &["line 2: waves:", "entry 2 (5 machines)"]),
            (format!("{ok}waves = 10, 50%, 100%\nfleet = 20"), &["line 2: waves:", "entry 2 (50%) reaches no more machines than entry 1 (10 machines)"]),
            (format!("{ok}waves = 30, 100%\nfleet = 20"), &["line 2: waves:", "entry 2 (100%)"]),
            (many, &["line 1: waves:", "17 waves are too many, the most is 16"]),
            (format!("{ok}waves ="), &["line 2: waves has no value", "write e.g. waves ="]),
            ("interval = 30min".to_string(), &["has no waves line", "waves = 1, 10%, 50%, 100%"]),
            ("waves = 100%".to_string(), &["has no interval line", "interval = 30min"]),
            ("waves = 100%\ninterval = 0s".to_string(), &["line 2: interval:", "every wave at once"]),
            ("waves = 100%\ninterval = 31d".to_string(), &["line 2: interval:", "longer than 30 days"]),
            ("waves = 100%\ninterval = soon".to_string(), &["line 2: interval:", "\"soon\" is not a duration"]),
            (format!("{ok}waves = 100%\nrollout-start = tomorrow"), &["line 3: rollout-start:", "not an RFC 3339", "2026-12-03T10:00:00Z"]),
            (format!("{ok}waves = 100%\nby = hostname"), &["line 3: by:", "\"hostname\" is none of host, machine-id and group"]),
            (format!("{ok}waves = 100%\nfleet = 0"), &["line 3: fleet:", "0 machines"]),
            (format!("{ok}waves = 100%\nfleet = -3"), &["line 3: fleet:", "not a number"]),
            (format!("{ok}waves = 100%\nfleet = 4294967296"), &["line 3: fleet:", "too many"]),
            (format!("{ok}waves = 100%\nintervall = 1h"), &["line 3: unknown key \"intervall\"", "waves, interval, rollout-start, by, fleet"]),
            (format!("{ok}waves = 100%\ninterval = 1h"), &["line 3: interval is given twice, first on line 1"]),
            (format!("{ok}\nwaves 100%"), &["line 3: \"waves 100%\" is not a key = value line"]),
            (too_big, &["more than the 4096"]),
        ];
        for (text, wants) in &table {
            let err = parse(text).expect_err(text);
            for want in *wants {
                assert!(err.contains(want), "{text:?}: {err:?} lacks {want:?}");
            }
        }
    }

    #[test]
    fn parse_never_panics_and_quotes_hostile_text_short() {
        let long_key = format!("{} = 1", "k".repeat(3000));
        let err = parse(&long_key).unwrap_err();
        assert!(err.len() < 200, "{err}");
        for text in [
            "=",
            "==",
            "\u{0}=\u{0}",
            "waves = %",
            "waves = .%",
            "waves = é%",
            "#=#",
            "waves = 100%,",
        ] {
            let _ = parse(text);
        }
    }

    /// A change to the hash moves machines between waves: these values must never change.
    #[test]
    fn position_is_pinned() {
        #[rustfmt::skip]
        let table = [
            ("", 0.10693788918800617),
            ("machine-00", 0.4703384839319983),
            ("4c4c4544004d3510804bb4c04f4e3232", 0.4800175223719191),
        ];
        for (key, want) in table {
            assert_eq!(position(key), want, "{key:?}");
        }
    }

    #[test]
    fn position_spreads_keys_evenly() {
        let mut deciles = [0u32; 10];
        for i in 0..10_000u32 {
            let p = position(&format!("{i:032x}"));
            assert!((0.0..1.0).contains(&p), "{p}");
            deciles[(p * 10.0) as usize] += 1;
        }
        // 10% each, within 3% of the 10,000 keys.
        for (d, n) in deciles.iter().enumerate() {
            assert!((700..=1300).contains(n), "decile {d} has {n}: {deciles:?}");
        }
    }

    #[test]
    fn wave_of_reads_counts_and_percentages() {
        let canary = [C(1), P(100_000), P(500_000), P(WHOLE)];
        #[rustfmt::skip]
        type Row<'a> = (&'a [Wave], Option<u32>, f64, Option<u32>, Result<usize, ()>);
        let table: [Row; 16] = [
            (&canary, Some(20), 0.0, None, Ok(0)),
            (&canary, Some(20), 0.049, None, Ok(0)),
            (&canary, Some(20), 0.05, None, Ok(1)),
            (&canary, Some(20), 0.0999, None, Ok(1)),
            (&canary, Some(20), 0.100_1, None, Ok(2)),
            (&canary, Some(20), 0.7, None, Ok(3)),
            (&canary, Some(20), 0.999_999, Some(1000), Ok(3)),
            // The file's fleet beats the tree's count.
            (&canary, Some(20), 0.06, Some(5), Ok(1)),
            // Without one the tree's count is the fleet: 1 of 5 is 20%, so 10% adds nobody.
            (&canary, None, 0.15, Some(5), Ok(0)),
            (&canary, None, 0.25, Some(5), Ok(2)),
            (&canary, None, 0.5, None, Err(())),
            (&canary, None, 0.5, Some(0), Err(())),
            (&[P(5_000), P(WHOLE)], None, 0.004_9, None, Ok(0)),
            (&[P(5_000), P(WHOLE)], None, 0.005, None, Ok(1)),
            // Outside [0, 1): the last wave.
            (&[P(5_000), P(WHOLE)], None, f64::NAN, None, Ok(1)),
            (&[C(3), C(10)], Some(10), 0.35, None, Ok(1)),
        ];
        for (waves, fleet, position, hosts, want) in table {
            let got = wave_of(&rollout(waves, fleet), position, hosts);
            match want {
                Ok(k) => assert_eq!(got, Ok(k), "{waves:?} {fleet:?} {position} {hosts:?}"),
                Err(()) => assert!(
                    got.as_ref()
                        .is_err_and(|e| e.contains("add fleet = N to .gitops/rollout")),
                    "{waves:?} {fleet:?} {position} {hosts:?}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn due_at_adds_an_interval_per_wave() {
        let committed = datetime!(2026-12-01 09:00 UTC);
        let started = Rollout {
            start: Some(datetime!(2026-12-03 10:00 +1)),
            ..rollout(&[P(WHOLE)], None)
        };
        let max = time::PrimitiveDateTime::MAX.assume_utc();
        #[rustfmt::skip]
        let table = [
            (rollout(&[P(WHOLE)], None), 0, committed, committed),
            (rollout(&[P(WHOLE)], None), 1, committed, datetime!(2026-12-01 09:30 UTC)),
            (rollout(&[P(WHOLE)], None), 3, committed, datetime!(2026-12-01 10:30 UTC)),
            (started.clone(), 0, committed, datetime!(2026-12-03 09:00 UTC)),
            (started.clone(), 2, committed, datetime!(2026-12-03 10:00 UTC)),
            (rollout(&[P(WHOLE)], None), 2, datetime!(9999-12-31 23:00 UTC), max),
            (rollout(&[P(WHOLE)], None), usize::MAX, committed, max),
            (Rollout { interval: MAX_INTERVAL, ..rollout(&[P(WHOLE)], None) }, 15, committed, datetime!(2028-02-24 09:00 UTC)),
        ];
        for (rollout, wave, committed_at, want) in table {
            assert_eq!(due_at(&rollout, wave, committed_at), want, "wave {wave}");
        }
    }

    #[test]
    fn the_machine_key_falls_back_to_what_the_machine_has() {
        let id = "4c4c4544004d3510804bb4c04f4e3232";
        let web = vec!["web".to_string(), "eu".to_string()];
        let long = "a".repeat(129);
        let padded = format!(" {id}\n");
        #[rustfmt::skip]
        type Row<'a> = (By, Option<&'a str>, Option<&'a str>, &'a [String], Option<&'a str>);
        let table: [Row; 12] = [
            (By::MachineId, Some(id), Some("web-1"), &web, Some(id)),
            (By::MachineId, Some(padded.as_str()), None, &[], Some(id)),
            (By::MachineId, None, Some("web-1"), &web, Some("web-1")),
            (By::MachineId, Some(""), Some("web-1"), &[], Some("web-1")),
            (
                By::MachineId,
                Some(long.as_str()),
                Some("web-1"),
                &[],
                Some("web-1"),
            ),
            (
                By::MachineId,
                Some("ab\u{7}cd"),
                Some("web-1"),
                &[],
                Some("web-1"),
            ),
            (By::MachineId, Some("ïd"), None, &[], None),
            (By::MachineId, None, None, &web, None),
            (By::Group, Some(id), Some("web-1"), &web, Some("web")),
            (By::Group, Some(id), Some("web-1"), &[], Some(id)),
            (By::Group, None, Some("web-1"), &[], Some("web-1")),
            (By::Group, None, None, &[], None),
        ];
        for (by, machine_id, host, groups, want) in table {
            assert_eq!(
                machine_key(by, machine_id, host, groups).as_deref(),
                want,
                "{by:?} {machine_id:?} {host:?} {groups:?}"
            );
        }
        assert_eq!(
            machine_key(By::MachineId, Some(&"a".repeat(128)), None, &[]).map(|k| k.len()),
            Some(128)
        );
    }

    #[test]
    fn the_machine_id_file_is_read_bounded_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("machine-id");
        #[rustfmt::skip]
        let table: [(&[u8], Option<&str>); 7] = [
            (b"4c4c4544004d3510804bb4c04f4e3232\n", Some("4c4c4544004d3510804bb4c04f4e3232")),
            (b"  abc  \n\n", Some("abc")),
            (b"\n", None),
            (b"uninitialized\n", None),
            (b"4c4c\x004d\n", None),
            (b"\xff\xfe", None),
            (&[b'a'; 2000], None),
        ];
        for (content, want) in table {
            std::fs::write(&path, content).unwrap();
            assert_eq!(read_machine_id(&path).as_deref(), want, "{content:?}");
        }
        assert_eq!(read_machine_id(&dir.path().join("missing")), None);
    }

    /// Not a check of exact sizes (a hash gives each machine a chance, not a place): prints the
    /// distribution the fleet simulation will see.
    #[test]
    fn twenty_machines_in_waves_of_1_50_and_100_percent() {
        let rollout = Rollout {
            fleet: Some(20),
            ..rollout(&[C(1), P(500_000), P(WHOLE)], None)
        };
        let mut sizes = [0u32; 3];
        let mut members: [Vec<String>; 3] = Default::default();
        for i in 0..20 {
            let key = format!("machine-{i:02}");
            let k = wave_of(&rollout, position(&key), None).unwrap();
            sizes[k] += 1;
            members[k].push(key);
        }
        eprintln!(
            "waves 1, 50%, 100% over machine-00..machine-19: sizes {sizes:?}, members {members:?}"
        );
        assert_eq!(sizes.iter().sum::<u32>(), 20);
    }
}

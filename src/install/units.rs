//! `gitops install-units`: write the units (or a cron entry / OpenRC script), the env file and
//! the enablement links into a root, on a live machine or inside an image being built.

use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::ValueEnum;

use super::cron::{cron_entry, existing_cron_minute, random_minute, OPENRC_SCRIPT};
use super::envfile::{env_file, shown};
use super::manifest::{fingerprint, fingerprint_item, read_manifest, write_manifest};
use super::textdiff;
use super::trigger;
use crate::exit::{fail, Exit, ResultExt};

/// The unit files, compiled in: `units/` is their one source.
pub const SERVICE: &str = include_str!("../../units/gitops.service");
pub const TIMER: &str = include_str!("../../units/gitops.timer");

/// Where the record of what install-units wrote lives, inside the root.
pub(super) const MANIFEST: &str = "etc/gitops/install-units.manifest";
pub(super) const ENV_FILE: &str = "etc/gitops/gitops.env";
pub(super) const CRON_FILE: &str = "etc/cron.d/gitops";
const BINARY: &str = "usr/bin/gitops";
const TIMEOUT_DROPIN: &str = "etc/systemd/system/gitops.service.d/timeout.conf";
const ETC_SERVICE: &str = "etc/systemd/system/gitops.service";
const ETC_TIMER: &str = "etc/systemd/system/gitops.timer";
pub(super) const WANTS: &str = "etc/systemd/system/timers.target.wants/gitops.timer";
/// Directories install-units may have created for its own files; `--uninstall` removes them
/// when nothing else is left in them.
const OWN_DIRS: [&str; 2] = [
    "etc/systemd/system/gitops.service.d",
    "etc/systemd/system/timers.target.wants",
];

/// Where packages put the units (.rpm: /usr/lib, .deb: /lib), as (service under the root,
/// the path the enable link names). A unit in /etc would shadow these forever.
const PACKAGED: [(&str, &str); 2] = [
    (
        "usr/lib/systemd/system/gitops.service",
        "/usr/lib/systemd/system/gitops.timer",
    ),
    (
        "lib/systemd/system/gitops.service",
        "/lib/systemd/system/gitops.timer",
    ),
];

/// Test seam: the directory that stands for the running system's root (default `/`). Only a
/// `--root` naming it, with systemd running there, makes `--now` and `--uninstall` run
/// systemctl; tests point it at a temporary root and `GITOPS_SYSTEMCTL` at a recorder.
const LIVE_ROOT_VAR: &str = "GITOPS_LIVE_ROOT";

/// The unit's own TimeoutStartSec=, which covers the default timeouts.
const UNIT_START_LIMIT: u64 = 45 * 60;

/// A drop-in raising TimeoutStartSec= when the timeouts given add up to more than the unit
/// allows: otherwise systemd would kill a pass that gitops itself would still let run.
fn timeout_dropin(env: &[(String, String)]) -> Option<String> {
    let value = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let given = |key: &str, default: u64| {
        value(key)
            .and_then(|v| crate::config::parse_duration(v).ok())
            .map_or(default, |d| d.as_secs())
    };
    let retries = value("GITOPS_HEALTH_RETRIES")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    // One commit's run: its entry point, then every attempt of its health check and the waits
    // between them. A revert runs the previous commit's the same way, in the same pass.
    let one_run = given("GITOPS_APPLY_TIMEOUT", 30 * 60)
        .saturating_add(given("GITOPS_HEALTH_TIMEOUT", 2 * 60).saturating_mul(retries + 1))
        .saturating_add(given("GITOPS_HEALTH_INTERVAL", 10).saturating_mul(retries));
    let runs = match value("GITOPS_ON_FAILURE").map(str::trim) {
        Some("revert") => 2,
        _ => 1,
    };
    // Saturating: the parser bounds each value, and a sum that still reached u64::MAX would
    // only mean "wait as long as systemd can", never a wrapped small limit.
    let needed = [
        one_run.saturating_mul(runs),
        given("GITOPS_FETCH_TIMEOUT", 5 * 60),
        given("GITOPS_LOCK_TIMEOUT", 60),
        4 * 60, // checkout, state, and the 10 s between SIGTERM and SIGKILL
    ]
    .into_iter()
    .fold(0u64, u64::saturating_add);
    (needed > UNIT_START_LIMIT).then(|| {
        format!(
            "# Written by `gitops install-units`: the apply, health check, fetch and lock timeouts\n\
             # given (twice the apply and health check with --on-failure revert) add up to\n\
             # more than gitops.service's own TimeoutStartSec=, so systemd waits this long instead.\n\
             [Service]\n\
             TimeoutStartSec={needed}s\n"
        )
    })
}

/// How the machine runs the periodic pass.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// gitops.service + gitops.timer, enabled through timers.target.wants
    Systemd,
    /// /etc/cron.d/gitops every 5 minutes under flock, for machines without systemd
    Cron,
    /// /etc/init.d/gitops (a pass at boot) plus the cron entry, for OpenRC machines
    Openrc,
}

/// What `gitops install-units` was asked to do.
#[derive(Debug, Clone)]
pub struct Request {
    pub root: PathBuf,
    pub init: Init,
    pub now: bool,
    pub force: bool,
    pub uninstall: bool,
    pub dry_run: bool,
    /// `GITOPS_*` settings given on the command line, in the order to write them.
    pub env: Vec<(String, String)>,
    pub systemctl: String,
    /// `--trigger` and its settings.
    pub trigger: trigger::Args,
}

/// One thing install-units manages under the root.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Item {
    File {
        path: &'static str,
        text: String,
        mode: u32,
    },
    Link {
        path: &'static str,
        target: &'static str,
    },
}

impl Item {
    fn path(&self) -> &'static str {
        match self {
            Item::File { path, .. } | Item::Link { path, .. } => path,
        }
    }
}

/// The state of one item on disk, compared with what we would write.
#[derive(Debug, PartialEq)]
enum Found {
    Missing,
    Same,
    /// Differs, but is exactly what install-units wrote last time: ours to replace.
    Ours,
    /// Differs from anything we wrote: an administrator's edit.
    Edited(String),
}

pub fn run(req: &Request) -> Result<()> {
    if !req.root.is_dir() {
        return Err(fail(
            Exit::Usage,
            format!(
                "--root {} is not a directory: point it at the root of the system to install into",
                req.root.display()
            ),
        ));
    }
    if req.trigger.trigger && req.init != Init::Systemd && !req.uninstall {
        return Err(fail(
            Exit::Usage,
            "--trigger needs --init systemd: the trigger is a socket unit, and its path unit starts gitops.service",
        ));
    }
    let manifest = read_manifest(&req.root);
    if req.uninstall {
        return uninstall(req, &manifest);
    }
    let mut items = plan(req, &manifest)?;
    // What an earlier run wrote and this one leaves as it is.
    let mut keep = vec![ENV_FILE];
    let mut secret = None;
    if req.trigger.trigger {
        let planned = trigger::plan(req, &manifest);
        items.extend(planned.items);
        keep.extend(planned.keep);
        secret = Some(planned.secret);
    }
    let found: Vec<Found> = items
        .iter()
        .map(|item| inspect(&req.root, item, &manifest))
        .collect::<Result<_>>()?;
    refuse_edits(req, &items, &found)?;
    if let Some(secret) = &secret {
        trigger::check_secret(req, secret)?;
    }
    note_packaged(req, &items);
    trigger::note_packaged(req, &items);
    if req.dry_run {
        dry_run(req, &items, &found)?;
        if let Some(secret) = &secret {
            trigger::ensure_secret(req, secret)?;
        }
        out!("dry run: nothing was written");
        return Ok(());
    }

    // Before anything is written into it: the env file never sits in a readable directory.
    let mut changed = tighten_config_dir(&req.root, false)?;
    for (item, f) in items.iter().zip(&found) {
        if *f == Found::Same {
            continue;
        }
        write(&req.root, item)?;
        changed = true;
        let verb = if *f == Found::Missing {
            "wrote"
        } else {
            "replaced"
        };
        out!("{verb} {}", req.root.join(item.path()).display());
    }
    let trigger_changed = items
        .iter()
        .zip(&found)
        .any(|(item, f)| *f != Found::Same && trigger::FILES.contains(&item.path()));
    // The secret before any unit that needs it starts.
    if let Some(secret) = &secret {
        changed |= trigger::ensure_secret(req, secret)?;
    }
    // A trigger installed before and not asked for now goes; on the running system its units
    // stop first, so that no port stays open with its files gone.
    let trigger_dropped = !req.trigger.trigger && trigger::installed(&manifest);
    if trigger_dropped && is_live(&req.root) {
        trigger::stop(req)?;
    }
    let old_secret = trigger::installed_secret(&req.root);
    let mut updated = manifest.clone();
    changed |= remove_stale(&req.root, &items, &keep, &mut updated)?;
    if trigger_dropped {
        trigger::note_secret_kept(req, &old_secret);
        if is_live(&req.root) && !req.now {
            systemctl(req, &["daemon-reload"])?;
        }
    }
    for item in &items {
        updated.insert(item.path().to_string(), fingerprint_item(item));
    }
    // Rewritten only when it changes, so a second run touches no file at all.
    if updated != manifest {
        write_manifest(&req.root, &updated)?;
    }
    if !changed {
        out!("nothing to do: everything is already installed as it should be");
    }
    warn_about_gaps(req);
    start(req, trigger_changed)
}

/// Refuse (exit 2, nothing written) when an administrator edited a file we would replace,
/// showing each diff, unless --force.
fn refuse_edits(req: &Request, items: &[Item], found: &[Found]) -> Result<()> {
    let edited: Vec<(&Item, &String)> = items
        .iter()
        .zip(found)
        .filter_map(|(item, f)| match f {
            Found::Edited(old) => Some((item, old)),
            _ => None,
        })
        .collect();
    if edited.is_empty() || req.force {
        return Ok(());
    }
    for (item, old) in &edited {
        if let Item::File { path, text, .. } = item {
            say!(
                "--- {path} (installed, edited)\n+++ {path} (gitops {})",
                env!("CARGO_PKG_VERSION")
            );
            say!(
                "{}",
                textdiff::diff(&shown(path, old), &shown(path, text), 3).trim_end()
            );
        }
    }
    let first = req.root.join(edited[0].0.path());
    let what = match edited.len() {
        1 => format!("{} was", first.display()),
        n => format!("{} and {} more files were", first.display(), n - 1),
    };
    Err(fail(
        Exit::Usage,
        format!(
            "{what} changed since install-units wrote them (diff above): keep local changes in a drop-in (systemctl edit gitops.service), or rerun with --force to replace them"
        ),
    ))
}

/// The directory of the package's units when the enable link at `wants` names them (not a
/// copy in /etc).
pub(super) fn packaged_dir(items: &[Item], wants: &str) -> Option<&'static Path> {
    items.iter().find_map(|item| match item {
        Item::Link { path, target } if *path == wants && !target.starts_with("/etc/") => {
            Path::new(*target).parent()
        }
        _ => None,
    })
}

/// Say why no unit files are written when a package already installed them.
fn note_packaged(req: &Request, items: &[Item]) {
    if let Some(dir) = packaged_dir(items, WANTS) {
        out!(
            "gitops.service and gitops.timer come from the package in {}: enabling those, with no copies in {} that would hide the package's updates",
            req.root.join(dir.strip_prefix("/").unwrap_or(dir)).display(),
            req.root.join("etc/systemd/system").display()
        );
    }
}

fn dry_run(req: &Request, items: &[Item], found: &[Found]) -> Result<()> {
    tighten_config_dir(&req.root, true)?;
    for (item, f) in items.iter().zip(found) {
        let verb = match f {
            Found::Same => "unchanged",
            Found::Missing => "would write",
            Found::Ours | Found::Edited(_) => "would replace",
        };
        match item {
            Item::File { path, text, mode } => {
                out!(
                    "{verb} {} (mode {mode:04o}):",
                    req.root.join(path).display()
                );
                if *f != Found::Same {
                    for line in shown(path, text).lines() {
                        out!("    {line}");
                    }
                }
            }
            Item::Link { path, target } => {
                out!("{verb} {} -> {target}", req.root.join(path).display())
            }
        }
    }
    Ok(())
}

/// /etc/gitops holds the deploy key and the env file. Something else (cloud-init's
/// write_files, a package, mkdir -p) may have created it 0755 before us: make it 0700.
fn tighten_config_dir(root: &Path, dry_run: bool) -> Result<bool> {
    let dir = root.join("etc/gitops");
    let Ok(meta) = fs::metadata(&dir) else {
        return Ok(false);
    };
    let mode = meta.permissions().mode() & 0o7777;
    if !meta.is_dir() || mode & 0o077 == 0 {
        return Ok(false);
    }
    if dry_run {
        out!(
            "would tighten {} from {mode:04o} to 0700: it holds the deploy key and the env file",
            dir.display()
        );
        return Ok(true);
    }
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).or_exit(Exit::Usage, || {
        format!(
            "cannot make {} private (0700): is the root writable?",
            dir.display()
        )
    })?;
    out!(
        "tightened {} from {mode:04o} to 0700: it holds the deploy key and the env file",
        dir.display()
    );
    Ok(true)
}

/// Files an earlier run installed that this one does not (a cron entry after switching to
/// `--init systemd`, an old timeout drop-in, a trigger not asked for any more) go, unless an
/// administrator edited them. Those in `keep` stay: a run without settings leaves the existing
/// env file (and the trigger's settings) alone.
fn remove_stale(
    root: &Path,
    items: &[Item],
    keep: &[&str],
    manifest: &mut BTreeMap<String, String>,
) -> Result<bool> {
    let mut removed = false;
    let stale: Vec<String> = manifest
        .keys()
        .filter(|p| !keep.contains(&p.as_str()) && !items.iter().any(|i| i.path() == p.as_str()))
        .cloned()
        .collect();
    for path in stale {
        let full = root.join(&path);
        let unchanged = match fs::symlink_metadata(&full) {
            Err(_) => true,
            Ok(meta) if meta.file_type().is_symlink() => true,
            Ok(_) => fs::read(&full).is_ok_and(|b| Some(&fingerprint(&b)) == manifest.get(&path)),
        };
        if !unchanged {
            let shadows = if path == ETC_SERVICE || path == ETC_TIMER {
                " (it overrides the packaged unit until you remove it)"
            } else {
                ""
            };
            say!(
                "gitops: warning: {} is no longer installed but was edited: left in place{shadows}",
                full.display()
            );
            continue;
        }
        match fs::remove_file(&full) {
            Ok(()) => {
                removed = true;
                out!(
                    "removed {} (no longer part of this installation)",
                    full.display()
                )
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("could not remove {}", full.display()))
            }
        }
        manifest.remove(&path);
    }
    if removed {
        for dir in trigger::OWN_DIRS {
            let _ = fs::remove_dir(root.join(dir));
        }
    }
    Ok(removed)
}

/// What to install for the request. A previous cron entry's minute offset is kept so that a
/// second run changes nothing.
fn plan(req: &Request, manifest: &BTreeMap<String, String>) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    match req.init {
        Init::Systemd => {
            match packaged_timer(&req.root) {
                // The package's units stay the ones that run, so its upgrades take effect.
                Some(target) => items.push(Item::Link {
                    path: WANTS,
                    target,
                }),
                None => {
                    items.push(Item::File {
                        path: ETC_SERVICE,
                        text: SERVICE.to_string(),
                        mode: 0o644,
                    });
                    items.push(Item::File {
                        path: ETC_TIMER,
                        text: TIMER.to_string(),
                        mode: 0o644,
                    });
                    // What `systemctl enable` would do, done by hand: an image build cannot
                    // run systemctl.
                    items.push(Item::Link {
                        path: WANTS,
                        target: "/etc/systemd/system/gitops.timer",
                    });
                }
            }
            if let Some(text) = timeout_dropin(&req.env) {
                items.push(Item::File {
                    path: TIMEOUT_DROPIN,
                    text,
                    mode: 0o644,
                });
            }
        }
        Init::Cron | Init::Openrc => {
            let minute = existing_cron_minute(&req.root, manifest).unwrap_or_else(random_minute);
            items.push(Item::File {
                path: CRON_FILE,
                text: cron_entry(minute),
                mode: 0o644,
            });
            if req.init == Init::Openrc {
                items.push(Item::File {
                    path: "etc/init.d/gitops",
                    text: OPENRC_SCRIPT.to_string(),
                    mode: 0o755,
                });
                items.push(Item::Link {
                    path: "etc/runlevels/default/gitops",
                    target: "/etc/init.d/gitops",
                });
            }
        }
    }
    if !req.env.is_empty() {
        items.push(Item::File {
            path: ENV_FILE,
            text: env_file(&req.env),
            mode: 0o600,
        });
    }
    Ok(items)
}

/// The enable link's target when a package installed the units under the root, or None.
/// A link that already names one of the packaged timers (the package's own `systemctl
/// enable`) is kept as it is: on a merged-/usr system both paths are the same file.
fn packaged_timer(root: &Path) -> Option<&'static str> {
    let present: Vec<&'static str> = PACKAGED
        .iter()
        .filter(|(service, timer)| {
            root.join(service).is_file() && root.join(timer.trim_start_matches('/')).is_file()
        })
        .map(|(_, timer)| *timer)
        .collect();
    let existing = fs::read_link(root.join(WANTS)).ok();
    present
        .iter()
        .find(|timer| existing.as_deref() == Some(Path::new(timer)))
        .or(present.first())
        .copied()
}

fn inspect(root: &Path, item: &Item, manifest: &BTreeMap<String, String>) -> Result<Found> {
    let full = root.join(item.path());
    match item {
        Item::File { text, .. } => match fs::read(&full) {
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Found::Missing),
            Err(e) => Err(e).with_context(|| format!("could not read {}", full.display())),
            Ok(bytes) if bytes == text.as_bytes() => Ok(Found::Same),
            Ok(bytes) if manifest.get(item.path()) == Some(&fingerprint(&bytes)) => Ok(Found::Ours),
            Ok(bytes) => Ok(Found::Edited(String::from_utf8_lossy(&bytes).into_owned())),
        },
        Item::Link { target, .. } => match fs::read_link(&full) {
            Ok(existing) if existing == Path::new(target) => Ok(Found::Same),
            Ok(_) => Ok(Found::Ours),
            Err(_) if fs::symlink_metadata(&full).is_err() => Ok(Found::Missing),
            Err(_) => Ok(Found::Edited(format!(
                "{} is not a symlink",
                full.display()
            ))),
        },
    }
}

pub(super) fn write(root: &Path, item: &Item) -> Result<()> {
    let full = root.join(item.path());
    let parent = full.parent().expect("items live in directories");
    // /etc/gitops holds the deploy key and the env file: nobody but root looks inside.
    let mode = if item.path().starts_with("etc/gitops/") {
        0o700
    } else {
        0o755
    };
    make_dir(parent, mode).or_exit(Exit::Usage, || {
        format!("cannot create {}: is the root writable?", parent.display())
    })?;
    match item {
        Item::File { text, mode, .. } => {
            crate::files::write_atomic(&full, text.as_bytes(), true)
                .or_exit(Exit::Usage, || {
                    format!("cannot write {}: is the root writable?", full.display())
                })?;
            fs::set_permissions(&full, fs::Permissions::from_mode(*mode))
                .with_context(|| format!("could not set the mode of {}", full.display()))?;
        }
        Item::Link { target, .. } => {
            let tmp = parent.join(format!(
                ".{}.gitops-new",
                full.file_name().unwrap_or_default().to_string_lossy()
            ));
            let _ = fs::remove_file(&tmp);
            std::os::unix::fs::symlink(target, &tmp)
                .with_context(|| format!("could not create {}", tmp.display()))?;
            fs::rename(&tmp, &full)
                .with_context(|| format!("could not create {}", full.display()))?;
        }
    }
    Ok(())
}

fn uninstall(req: &Request, full_manifest: &BTreeMap<String, String>) -> Result<()> {
    // --uninstall --trigger: the trigger's files alone; the pass's units stay.
    let only_trigger = req.trigger.trigger;
    let manifest: BTreeMap<String, String> = full_manifest
        .iter()
        .filter(|(path, _)| !only_trigger || trigger::FILES.contains(&path.as_str()))
        .map(|(p, f)| (p.clone(), f.clone()))
        .collect();
    let manifest = &manifest;
    if manifest.is_empty() {
        out!(
            "nothing to do: install-units has installed nothing under {}",
            req.root.display()
        );
        return Ok(());
    }
    let mut edited = Vec::new();
    for (path, print) in manifest {
        let full = req.root.join(path);
        if let Ok(bytes) = fs::read(&full) {
            if fs::symlink_metadata(&full).is_ok_and(|m| !m.file_type().is_symlink())
                && fingerprint(&bytes) != *print
            {
                edited.push(full);
            }
        }
    }
    if !edited.is_empty() && !req.force {
        return Err(fail(
            Exit::Usage,
            format!(
                "{} changed since install-units wrote it: move your edit away, or rerun with --uninstall --force to remove it anyway",
                edited[0].display()
            ),
        ));
    }
    if req.dry_run {
        for path in manifest.keys() {
            out!("would remove {}", req.root.join(path).display());
        }
        out!("dry run: nothing was removed");
        return Ok(());
    }
    let live = is_live(&req.root);
    if live && manifest.contains_key(WANTS) {
        systemctl(req, &["disable", "--now", "gitops.timer"])?;
    }
    if live && trigger::installed(manifest) {
        trigger::stop(req)?;
    }
    let secret = trigger::installed_secret(&req.root);
    for path in manifest.keys() {
        let full = req.root.join(path);
        match fs::remove_file(&full) {
            Ok(()) => out!("removed {}", full.display()),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("could not remove {}", full.display()))
            }
        }
    }
    let rest: BTreeMap<String, String> = full_manifest
        .iter()
        .filter(|(path, _)| !manifest.contains_key(*path))
        .map(|(p, f)| (p.clone(), f.clone()))
        .collect();
    if rest.is_empty() {
        fs::remove_file(req.root.join(MANIFEST))
            .context("could not remove the install-units manifest")?;
    } else {
        write_manifest(&req.root, &rest)?;
    }
    if trigger::installed(manifest) {
        trigger::note_secret_kept(req, &secret);
    }
    // Only when empty: another unit's enable link, or the admin's deploy key, keeps its
    // directory.
    for dir in OWN_DIRS.iter().chain(&trigger::OWN_DIRS) {
        let full = req.root.join(dir);
        if fs::remove_dir(&full).is_ok() {
            out!("removed {}/", full.display());
        }
    }
    let _ = fs::remove_dir(req.root.join("etc/gitops"));
    if live && (manifest.contains_key(WANTS) || trigger::installed(manifest)) {
        systemctl(req, &["daemon-reload"])?;
    }
    Ok(())
}

/// Start the timer (and the trigger) when asked and possible; otherwise say what was not done.
fn start(req: &Request, trigger_changed: bool) -> Result<()> {
    if req.init != Init::Systemd {
        if req.now {
            out!("--now starts systemd timers only; cron picks up /etc/cron.d/gitops by itself");
        }
        return Ok(());
    }
    if !req.now {
        if is_live(&req.root) {
            let units = if req.trigger.trigger {
                "gitops.timer gitops-trigger.socket gitops-trigger.path"
            } else {
                "gitops.timer"
            };
            out!("enabled; start it now with: systemctl daemon-reload && systemctl start {units} (or rerun with --now)");
        }
        return Ok(());
    }
    if !is_live(&req.root) {
        out!(
            "not started: {} is not a running systemd system; the timer is enabled and starts at its next boot",
            req.root.display()
        );
        return Ok(());
    }
    // Always: the unit files may have changed since systemd last read them without this run
    // writing them (a package upgrade, an earlier run without --now).
    systemctl(req, &["daemon-reload"])?;
    systemctl(req, &["enable", "--now", "gitops.timer"])?;
    out!("gitops.timer is enabled and active");
    if req.trigger.trigger {
        trigger::start(req, trigger_changed)?;
    }
    Ok(())
}

/// The running system, with systemd as its init: only there may systemctl run.
pub(super) fn is_live(root: &Path) -> bool {
    let live = std::env::var_os(LIVE_ROOT_VAR).map_or_else(|| PathBuf::from("/"), PathBuf::from);
    match (root.canonicalize(), live.canonicalize()) {
        (Ok(root), Ok(live)) => root == live && live.join("run/systemd/system").is_dir(),
        _ => false,
    }
}

pub(super) fn systemctl(req: &Request, args: &[&str]) -> Result<()> {
    let shown = format!("{} {}", req.systemctl, args.join(" "));
    let output = duct::cmd(&req.systemctl, args)
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .run()
        .or_exit(Exit::Internal, || format!("could not run {shown}"))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stdout);
        return Err(fail(
            Exit::Internal,
            format!("{shown} failed: {}", said.trim().replace('\n', " ")),
        ));
    }
    Ok(())
}

fn warn_about_gaps(req: &Request) {
    if !req.root.join(BINARY).exists() {
        say!(
            "gitops: warning: {} does not exist: the units run /usr/bin/gitops, install the binary there",
            req.root.join(BINARY).display()
        );
    }
    if req.env.is_empty() && !req.root.join(ENV_FILE).exists() {
        say!(
            "gitops: warning: no --repo-url given and {} does not exist: passes are skipped until it does",
            req.root.join(ENV_FILE).display()
        );
    }
    if let Some((_, key)) = req.env.iter().find(|(k, _)| k == "GITOPS_SSH_KEY") {
        let in_root = req.root.join(key.trim_start_matches('/'));
        match fs::metadata(&in_root) {
            Err(_) => say!(
                "gitops: warning: the deploy key {} does not exist yet: write it (mode 0600) before the first pass",
                in_root.display()
            ),
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => say!(
                "gitops: warning: the deploy key {} is readable by group or others: chmod 600 it",
                in_root.display()
            ),
            Ok(_) => {}
        }
    }
}

/// Create `dir` with `mode`, and any missing parents 0755: an empty image root must not get
/// a private /etc just because /etc/gitops was the first thing written.
pub(super) fn make_dir(dir: &Path, mode: u32) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)?;
    }
    match fs::DirBuilder::new().mode(mode).create(dir) {
        Err(e) if e.kind() == ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    proptest::proptest! {
        /// Any timeouts, however large or malformed, give a drop-in (or none) without
        /// panicking, and a limit never below what the timeouts given add up to.
        #[test]
        fn the_timeout_dropin_never_wraps(
            apply in "[0-9]{1,22}(s|min|h|d|)",
            fetch in "[0-9]{1,22}(s|min|h|d|)",
            lock in "[0-9]{1,22}(s|min|h|d|)",
        ) {
            let env: Vec<(String, String)> = [
                ("GITOPS_APPLY_TIMEOUT", &apply),
                ("GITOPS_FETCH_TIMEOUT", &fetch),
                ("GITOPS_LOCK_TIMEOUT", &lock),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
            let given: u64 = [&apply, &fetch, &lock]
                .into_iter()
                .filter_map(|v| crate::config::parse_duration(v).ok())
                .map(|d| d.as_secs())
                .sum();
            if let Some(text) = timeout_dropin(&env) {
                let limit: u64 = text
                    .lines()
                    .find_map(|l| l.strip_prefix("TimeoutStartSec="))
                    .and_then(|v| v.strip_suffix('s'))
                    .and_then(|v| v.parse().ok())
                    .unwrap();
                proptest::prop_assert!(limit >= given);
            }
        }
    }

    use super::*;
}

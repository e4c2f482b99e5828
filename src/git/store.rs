//! The bare object store: opening it (created on the first pass), the ssh settings it carries,
//! and what it says about commits (ancestry, subjects).

use std::path::Path;

use anyhow::{Context, Result};
use gix::ObjectId;

use crate::config::Settings;
use crate::exit::{Exit, ResultExt};

/// Open the bare object store, creating it on the first pass. Creation happens in a temporary
/// directory renamed into place, so a pass killed half-way never leaves a store gix cannot open.
pub fn open_store(path: &Path, settings: &Settings) -> Result<gix::Repository> {
    if !path.exists() {
        let tmp = path.with_extension("git.tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)
                .with_context(|| format!("could not remove {}", tmp.display()))?;
        }
        gix::init_bare(&tmp)
            .with_context(|| format!("could not create the object store {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("could not move the object store to {}", path.display()))?;
    }
    // Isolated: the host's and the user's git config (url rewrites, credential helpers that
    // prompt) must not change what a pass does. What we need is passed as overrides.
    let options = gix::open::Options::isolated()
        .strict_config(false)
        .config_overrides(
            ssh_overrides(&ssh_log(path), settings)
                .into_iter()
                .chain(Some(alloc_limit_override(settings.max_file_size))),
        );
    gix::open_opts(path, options).or_exit(Exit::Internal, || {
        format!(
            "the object store {} cannot be opened: remove it and the next pass clones afresh",
            path.display()
        )
    })
}

/// Below this, --max-file-size is enforced at checkout only: trees and commits share gix's
/// allocation limit with blobs, and a large directory's tree must still be readable.
const ALLOC_FLOOR: u64 = 64 << 20;

/// gix inflates every object of a fetched pack whole to hash it, so a 500 MB blob costs
/// 500 MB of memory before checkout could look at its size. Its allocation limit refuses such
/// an object from the size in its pack header instead, before anything is allocated.
fn alloc_limit_override(max_file_size: u64) -> String {
    format!("gitoxide.objects.allocLimit={}", alloc_limit(max_file_size))
}

/// The largest object a fetch accepts for a given --max-file-size.
pub(super) fn alloc_limit(max_file_size: u64) -> u64 {
    max_file_size.max(ALLOC_FLOOR)
}

/// A pass killed while receiving a pack leaves its temporary files (`.tmp*` from gix's
/// tempfiles, `tmp_*` as git names them) in `objects/pack`, each as large as the pack was when
/// it died. One killed while consolidating the packs (or a fetch killed before it removed it)
/// leaves a `.keep`, and a pack whose index never came or was already removed: gix reads a pack
/// only through its index, so such a pack is dead weight. We hold the pass lock, so nobody
/// else can be writing there: they are garbage.
pub(super) fn remove_pack_leftovers(store: &Path) {
    let dir = store.join("objects/pack");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let mut names = Vec::new();
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    let indices: std::collections::HashSet<&str> = names
        .iter()
        .filter_map(|n| n.strip_suffix(".idx"))
        .collect();
    for name in &names {
        if is_pack_leftover(name, |stem| indices.contains(stem)) {
            let _ = std::fs::remove_file(dir.join(name));
        }
    }
}

/// Whether a file of `objects/pack` is garbage; `indexed` says whether a stem has its `.idx`.
/// The entries of the loose-object directories (`objects/xx/`, two hex digits): what is there,
/// whatever state it is in. A directory that cannot be listed is left out.
pub(super) fn loose_object_entries(store: &Path) -> Vec<std::fs::DirEntry> {
    let Ok(entries) = std::fs::read_dir(store.join("objects")) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.len() != 2 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        if let Ok(inner) = std::fs::read_dir(entry.path()) {
            found.extend(inner.flatten());
        }
    }
    found
}

fn is_pack_leftover(name: &str, indexed: impl Fn(&str) -> bool) -> bool {
    if name.starts_with(".tmp") || name.starts_with("tmp_") || name.ends_with(".keep") {
        return true;
    }
    // A pack's companions (.pack, .rev, .bitmap, .mtimes) without its index.
    match name.rsplit_once('.') {
        Some((stem, ext)) if stem.starts_with("pack-") && ext != "idx" => !indexed(stem),
        _ => false,
    }
}

/// ssh never prompts (the timer has nobody to answer), and uses exactly the key and the pinned
/// host keys it is given.
/// ssh's messages go to this file (`-E`) rather than to our stderr, so that a failure reads as
/// one line with ssh's own reason in it instead of ssh's multi-line banner. The stderr of ssh
/// (the server's words) and of a file:// upload-pack go here too.
pub(super) fn ssh_log(store: &Path) -> std::path::PathBuf {
    store.join("gitops-ssh.log")
}

fn ssh_overrides(log: &Path, settings: &Settings) -> Vec<String> {
    // gix runs this through `sh -c`, and kills and waits for the child it started when the
    // connection ends: `exec` makes that child ssh itself, not a shell whose ssh would be left
    // running, reparented to PID 1, after every pass. ssh writes what the server says on its
    // stderr ("fatal: '…' does not appear to be a git repository"), not into the -E log; gix
    // would pass it through to ours and report only "failed to fill whole buffer". Into the
    // log it goes too, next to ssh's own reasons.
    let quoted_log = shell_quote(&log.display().to_string());
    let mut command = format!("exec 2>>{quoted_log} ssh -o BatchMode=yes -E {quoted_log}");
    if let Some(key) = &settings.ssh_key {
        command.push_str(&format!(
            " -i {} -o IdentitiesOnly=yes",
            shell_quote(&key.display().to_string())
        ));
    }
    if let Some(known_hosts) = &settings.known_hosts {
        command.push_str(&format!(
            " -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes",
            shell_quote(&known_hosts.display().to_string())
        ));
    } else if settings.transport.ssh_accept_new {
        // accept-new records a server's first key and refuses any other later: the one
        // relaxation there is (never StrictHostKeyChecking=no). Our file alone, so what is
        // trusted is what it says; unhashed, so an operator can read which server a line is.
        command.push_str(&format!(
            " -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=accept-new -o HashKnownHosts=no",
            shell_quote(&tofu_known_hosts(&settings.state_dir).display().to_string())
        ));
    }
    let mut overrides = vec![
        format!("core.sshCommand={command}"),
        "ssh.variant=ssh".to_string(),
    ];
    if matches!(
        settings.repo_url.scheme,
        gix::url::Scheme::Http | gix::url::Scheme::Https
    ) {
        // The bearer token as gix's http.extraHeader: sent on every request, and gix follows
        // no redirect once a header is configured, so it never reaches another host.
        overrides.extend(
            settings
                .transport
                .bearer_header()
                .map(|h| format!("http.extraHeader={h}")),
        );
    }
    overrides
}

/// Where --ssh-accept-new records the host keys it has seen.
pub(super) fn tofu_known_hosts(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join("known_hosts")
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
/// How the remote tip relates to the applied commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// Nothing applied yet.
    Fresh,
    /// The tip is the applied commit.
    Same,
    /// The applied commit is an ancestor of the tip.
    Descends,
    /// The tip's history does not contain the applied commit (force-push, rollback).
    Diverged,
}

pub fn relation(
    repo: &gix::Repository,
    applied: Option<ObjectId>,
    tip: ObjectId,
) -> Result<Relation> {
    let Some(applied) = applied else {
        return Ok(Relation::Fresh);
    };
    if applied == tip {
        return Ok(Relation::Same);
    }
    // The whole history of the tip is in the store after the fetch: a missing applied commit
    // cannot be its ancestor (and merge_base would error on it).
    if !repo.has_object(applied) {
        return Ok(Relation::Diverged);
    }
    let base = repo
        .merge_base(applied, tip)
        .context("could not compute the merge base")?;
    Ok(if base.map(|b| b.detach()) == Some(applied) {
        Relation::Descends
    } else {
        Relation::Diverged
    })
}

/// Where the store keeps the last applied commit, beside state.json: a state file that is lost
/// or restored from an old copy must not let an older commit be applied as if it were new.
pub const APPLIED_REF: &str = "refs/gitops/applied";

/// The store's record of the last applied commit, read as the loose ref gix writes (one small
/// read, so the usual pass, nothing new, does not open the store for it) or, when `git gc` or
/// `git pack-refs` has moved it, from `packed-refs`. Ok(None): no record. Err: a record that
/// cannot be read, said as the end of a sentence about it; never taken for "no record", which
/// would let a lost state.json apply an older commit as if it were new.
pub fn recorded_applied(store: &Path) -> std::result::Result<Option<ObjectId>, String> {
    let loose = store.join(APPLIED_REF);
    match std::fs::symlink_metadata(&loose) {
        Ok(meta) if !meta.is_file() => return Err("is not a regular file".to_string()),
        Ok(_) => {
            let text = read_small(&loose).map_err(|e| format!("cannot be read ({e})"))?;
            return parse_record(&text)
                .map(Some)
                .ok_or_else(|| "holds no commit id".to_string());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot be read ({e})")),
    }
    let packed = match std::fs::read(store.join("packed-refs")) {
        Ok(packed) => packed,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot be read from packed-refs ({e})")),
    };
    for line in packed.split(|&b| b == b'\n') {
        let Some(at) = line.iter().position(|&b| b == b' ') else {
            continue;
        };
        let (hex, name) = (&line[..at], &line[at + 1..]);
        if name.strip_suffix(b"\r").unwrap_or(name) == APPLIED_REF.as_bytes() {
            return parse_record(hex)
                .map(Some)
                .ok_or_else(|| "holds no commit id in packed-refs".to_string());
        }
    }
    Ok(None)
}

/// A loose ref is one object id and a newline: 41 bytes; more is not a ref gix or git wrote.
fn read_small(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut text = Vec::new();
    std::fs::File::open(path)?
        .take(256)
        .read_to_end(&mut text)?;
    Ok(text)
}

/// The object id a ref file holds, nothing before or after it but the final newline.
fn parse_record(text: &[u8]) -> Option<ObjectId> {
    let hex = text.strip_suffix(b"\n").unwrap_or(text);
    ObjectId::from_hex(hex).ok()
}

/// Record `commit` as applied in the store.
pub fn record_applied(repo: &gix::Repository, commit: ObjectId) -> Result<()> {
    repo.reference(
        APPLIED_REF,
        commit,
        gix::refs::transaction::PreviousValue::Any,
        "gitops: applied",
    )
    .map(|_| ())
    .map_err(|e| anyhow::anyhow!("{e}"))
    .with_context(|| format!("could not record the applied commit in {APPLIED_REF}"))
}

/// The first line of a commit's message.
pub fn subject(repo: &gix::Repository, commit: ObjectId) -> Option<String> {
    let commit = repo.find_commit(commit).ok()?;
    let message = commit.message().ok()?;
    Some(message.summary().to_string())
}

/// A commit's committer time, in seconds since the epoch.
pub fn commit_time(repo: &gix::Repository, commit: ObjectId) -> Option<i64> {
    Some(repo.find_commit(commit).ok()?.time().ok()?.seconds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn settings(dir: &Path, extra: &[&str]) -> crate::config::Settings {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            options: crate::config::Options,
        }
        let state = dir.join("state").display().to_string();
        let checkout = dir.join("gitops").display().to_string();
        let mut args = vec![
            "gitops",
            "--repo-url",
            "ssh://git@example.invalid/r.git",
            "--state-dir",
            &state,
            "--checkout",
            &checkout,
        ];
        args.extend(extra);
        let cli = <Cli as clap::Parser>::try_parse_from(args).unwrap();
        crate::config::Settings::for_sync(&cli.options).unwrap()
    }

    #[test]
    fn host_keys_are_pinned_or_trusted_on_first_use_never_unchecked() {
        let dir = tempfile::tempdir().unwrap();
        let pinned = dir.path().join("pinned");
        std::fs::write(&pinned, "").unwrap();
        let pinned = pinned.display().to_string();
        let log = Path::new("/l");
        let tofu = super::ssh_overrides(log, &settings(dir.path(), &["--ssh-accept-new"]));
        let tofu = tofu.join("\n");
        let file = dir.path().join("state/known_hosts").display().to_string();
        assert!(
            tofu.contains("-o StrictHostKeyChecking=accept-new")
                && tofu.contains(&format!("-o UserKnownHostsFile='{file}'"))
                && tofu.contains("GlobalKnownHostsFile=/dev/null"),
            "{tofu}"
        );
        for extra in [&[][..], &["--ssh-accept-new"], &["--known-hosts", &pinned]] {
            let command = super::ssh_overrides(log, &settings(dir.path(), extra)).join("\n");
            assert!(
                command.contains("BatchMode=yes") && !command.contains("StrictHostKeyChecking=no"),
                "{command}"
            );
        }
    }

    fn record_in(files: &[(&str, &[u8])]) -> std::result::Result<Option<ObjectId>, String> {
        let store = tempfile::tempdir().expect("tempdir");
        for (path, bytes) in files {
            let path = store.path().join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, bytes).expect("write");
        }
        recorded_applied(store.path())
    }

    const ID: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn the_applied_record_is_read_loose_or_packed_and_garbage_is_never_no_record() {
        let id = ObjectId::from_hex(ID.as_bytes()).ok();
        let loose = format!("{ID}\n");
        let packed = format!(
            "# pack-refs with: peeled fully-peeled sorted \n{ID} refs/gitops/applied\n{ID} refs/remotes/origin/HEAD\n"
        );
        assert_eq!(record_in(&[]), Ok(None));
        assert_eq!(record_in(&[(APPLIED_REF, loose.as_bytes())]), Ok(id));
        // `git gc` packs refs: the record must survive it.
        assert_eq!(record_in(&[("packed-refs", packed.as_bytes())]), Ok(id));
        assert_eq!(
            record_in(&[(
                "packed-refs",
                format!("{ID} refs/remotes/origin/HEAD\n").as_bytes()
            )]),
            Ok(None)
        );
        for garbage in [
            &b"garbage\n"[..],
            b"",
            format!("{ID}garbage\n").as_bytes(),
            b"ref: refs/heads/main\n",
            &[0xff; 4096],
        ] {
            assert!(
                record_in(&[(APPLIED_REF, garbage)]).is_err(),
                "{:?}",
                String::from_utf8_lossy(garbage)
            );
        }
        assert!(record_in(&[("packed-refs", b"zz refs/gitops/applied\n")]).is_err());
        let store = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(store.path().join("refs/gitops/applied")).expect("mkdir");
        assert!(recorded_applied(store.path()).is_err_and(|e| e.contains("regular file")));
    }

    #[test]
    fn only_temporary_files_and_packs_without_an_index_are_leftovers() {
        let indexed = |stem: &str| stem == "pack-0123abcd";
        let table = [
            (".tmpAb12Cd", true),
            (".tmp-gitops-consolidate-42", true),
            ("tmp_pack_XyZ", true),
            ("tmp_idx_XyZ", true),
            ("pack-0123abcd.keep", true),
            ("pack-0123abcd.pack", false),
            ("pack-0123abcd.idx", false),
            ("pack-0123abcd.rev", false),
            ("pack-4567ef.pack", true),
            ("pack-4567ef.rev", true),
            // An index without its pack is damage for the heal to see, never swept here.
            ("pack-4567ef.idx", false),
            ("multi-pack-index", false),
        ];
        for (name, leftover) in table {
            assert_eq!(super::is_pack_leftover(name, indexed), leftover, "{name}");
        }
    }
}

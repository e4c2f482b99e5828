//! Attacks on signature verification and on the rollback floor, by a hostile Git host (objects
//! written by hand with `git hash-object --literally`), a pusher without a signing key, and a
//! local user who is not root; each with the real binary, real keys and real git.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use crate::harness::{Machine, RECORDING_RUN_SH};
use crate::support::{run, Upstream};
use crate::trust::{allowed_signers, arg, assert_untrusted, commit, gpg_key, short, ssh_key};

/// The raw bytes of a commit of the upstream repository.
fn object(up: &Upstream, sha: &str) -> Vec<u8> {
    let out = crate::support::git(&up.home())
        .arg("-C")
        .arg(up.bare())
        .args(["cat-file", "commit", sha])
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

/// What a hostile Git host serves: `object` written as it is (no fsck) and made `main`.
fn serve_forged(up: &Upstream, object: &[u8]) -> String {
    let mut child = crate::support::git(&up.home())
        .arg("-C")
        .arg(up.bare())
        .args([
            "hash-object",
            "-t",
            "commit",
            "-w",
            "--literally",
            "--stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(object).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let sha = String::from_utf8(out.stdout).unwrap().trim().to_string();
    run(crate::support::git(&up.home())
        .arg("-C")
        .arg(up.bare())
        .args(["update-ref", "refs/heads/main", &sha]));
    sha
}

/// `object` with its header line starting `name ` replaced by `line`.
fn with_header(object: &[u8], name: &str, line: &str) -> Vec<u8> {
    let text = String::from_utf8(object.to_vec()).unwrap();
    let (headers, message) = text.split_once("\n\n").unwrap();
    let headers: Vec<String> = headers
        .lines()
        .map(|l| {
            if l.starts_with(&format!("{name} ")) {
                line.to_string()
            } else {
                l.to_string()
            }
        })
        .collect();
    format!("{}\n\n{message}", headers.join("\n")).into_bytes()
}

/// `object` with `header` (its continuation lines already indented) added last.
fn add_header(object: &[u8], header: &str) -> Vec<u8> {
    let text = String::from_utf8(object.to_vec()).unwrap();
    let (headers, message) = text.split_once("\n\n").unwrap();
    format!("{headers}\n{header}\n\n{message}").into_bytes()
}

/// An armoured signature as a commit header's value: continuation lines start with a space.
fn as_header(name: &str, armoured: &str) -> String {
    format!("{name} {}", armoured.trim_end().replace('\n', "\n "))
}

fn tree_of(up: &Upstream, sha: &str) -> String {
    run(crate::support::git(&up.home())
        .arg("-C")
        .arg(up.bare())
        .args(["rev-parse", &format!("{sha}^{{tree}}")]))
}

const EVIL_RUN_SH: &str = "#!/bin/sh\necho evil >> \"$OUT/evil\"\n";

#[test]
fn trust_a_signature_carried_over_to_other_content_or_made_for_a_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let alice = ssh_key(dir.path(), "alice", &["-t", "ed25519"]);
    let signers = allowed_signers(dir.path(), &[format!("alice@example.com {}", alice.key())]);
    let up = Upstream::new();
    let signed = commit(&up, "1", "signed", &alice.signing());
    // The pusher without a key: their own, unsigned, commit.
    let evil = up.commit(&[("run.sh", EVIL_RUN_SH)], "evil");
    let m = Machine::new();

    // Alice's valid signature, on a commit that names the evil tree.
    let moved = serve_forged(
        &up,
        &with_header(
            &object(&up, &signed),
            "tree",
            &format!("tree {}", tree_of(&up, &evil)),
        ),
    );
    let refused = m.sync(&up.file_url(), &[&arg(&signers)]);
    assert_untrusted(&m, refused, &moved, "does not match its content");

    // Alice's key signed exactly these bytes, but as a file (`ssh-keygen -Y sign -n file`): a
    // signature made for another purpose is not a commit signature.
    let payload = object(&up, &evil);
    let file = dir.path().join("payload");
    std::fs::write(&file, &payload).unwrap();
    run(Command::new("ssh-keygen")
        .args(["-q", "-Y", "sign", "-n", "file", "-f"])
        .arg(&alice.private)
        .arg(&file));
    let armoured = std::fs::read_to_string(file.with_extension("sig")).unwrap();
    let as_file = serve_forged(&up, &add_header(&payload, &as_header("gpgsig", &armoured)));
    let refused = m.sync(&up.file_url(), &[&arg(&signers)]);
    assert_untrusted(&m, refused, &as_file, "namespace \"file\"");

    // Two signature headers: the one read first decides, and it is garbage.
    let signed_object = object(&up, &signed);
    let doubled = serve_forged(
        &up,
        &add_header(
            &add_header(&unsigned(&signed_object), "gpgsig garbage"),
            &as_header("gpgsig", &signature_of(&signed_object)),
        ),
    );
    let refused = m.sync(&up.file_url(), &[&arg(&signers)]);
    assert_eq!(refused.code, 5, "{}", refused.stderr);
    assert!(
        refused.error_line().contains(short(&doubled)),
        "{}",
        refused.stderr
    );

    assert!(m.runs().is_empty());
    assert!(!m.out.join("evil").exists());
    assert!(m.trees().is_empty(), "{:?}", m.trees());
}

/// A signed commit object without its signature header: the payload that was signed.
fn unsigned(object: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(object.to_vec()).unwrap();
    let (headers, message) = text.split_once("\n\n").unwrap();
    let mut kept = Vec::new();
    let mut inside = false;
    for line in headers.lines() {
        inside = line.starts_with("gpgsig ") || (inside && line.starts_with(' '));
        if !inside {
            kept.push(line);
        }
    }
    format!("{}\n\n{message}", kept.join("\n")).into_bytes()
}

/// The armoured signature of a signed commit object, as it was before git indented it.
fn signature_of(object: &[u8]) -> String {
    let text = String::from_utf8(object.to_vec()).unwrap();
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if let Some(first) = line.strip_prefix("gpgsig ") {
            inside = true;
            out.push_str(first);
            out.push('\n');
        } else if inside && line.starts_with(' ') {
            out.push_str(&line[1..]);
            out.push('\n');
        } else {
            inside = false;
        }
    }
    out
}

#[test]
fn trust_an_unsigned_commit_dated_1970_under_a_tip_dated_2099_is_still_in_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let alice = ssh_key(dir.path(), "alice", &["-t", "ed25519"]);
    let signers = allowed_signers(dir.path(), &[format!("alice@example.com {}", alice.key())]);
    let up = Upstream::new();
    commit(&up, "1", "signed base", &alice.signing());
    let m = Machine::new();
    let range = [arg(&signers), "--verify=range".to_string()];
    let range: Vec<&str> = range.iter().map(String::as_str).collect();
    m.sync(&up.file_url(), &range).expect(0);
    // Dates are the committer's to write: a walk that trusted them to stop early would skip it.
    let unsigned = up.commit_with(
        &[("extra", "2")],
        "unsigned, backdated",
        &[],
        &[("GIT_COMMITTER_DATE", "1970-01-02T00:00:00Z")],
    );
    up.commit_with(
        &[("extra", "3")],
        "signed on top",
        &alice.signing(),
        &[("GIT_COMMITTER_DATE", "2099-01-01T00:00:00Z")],
    );
    let refused = m.sync(&up.file_url(), &range);
    assert_untrusted(&m, refused, &unsigned, "not signed");
    assert_eq!(m.runs().len(), 1);
}

#[test]
fn trust_an_openpgp_signed_message_is_not_a_signature_of_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let alice = gpg_key(dir.path(), "alice");
    let up = Upstream::new();
    let evil = up.commit(&[("run.sh", EVIL_RUN_SH)], "evil");
    // Something alice once signed whole (`gpg --sign --armor`), relabelled as a detached
    // signature: gpgv would check the data inside it, not the commit, if it were let.
    let message = dir.path().join("hello");
    std::fs::write(&message, "anything alice signed once\n").unwrap();
    run(Command::new("gpg")
        .env("GNUPGHOME", alice.home.path())
        .args([
            "--batch",
            "--quiet",
            "--armor",
            "--sign",
            "-u",
            &alice.fingerprint,
        ])
        .arg(&message));
    let armoured = std::fs::read_to_string(message.with_extension("asc"))
        .unwrap()
        .replace("PGP MESSAGE", "PGP SIGNATURE");
    let forged = serve_forged(
        &up,
        &add_header(&object(&up, &evil), &as_header("gpgsig", &armoured)),
    );
    let m = Machine::new();
    let keyring = format!("--gpg-keyring={}", alice.keyring.display());
    let refused = m.sync(&up.file_url(), &[&keyring]);
    assert_untrusted(&m, refused, &forged, "");
    assert!(m.runs().is_empty());
    assert!(!m.out.join("evil").exists());
}

/// The record of the applied commit as the binary keeps it.
fn record(m: &Machine) -> std::path::PathBuf {
    m.state.join("repo.git/refs/gitops/applied")
}

#[test]
fn trust_a_packed_or_unreadable_record_does_not_let_a_lost_state_file_go_back() {
    let up = Upstream::new();
    let first = up.commit(&[("run.sh", RECORDING_RUN_SH)], "first");
    let m = Machine::new();
    m.sync(&up.file_url(), &[]).expect(0);
    let second = up.commit(&[("x", "2")], "second");
    m.sync(&up.file_url(), &[]).expect(0);
    assert_eq!(m.runs().len(), 2);

    // An operator's `git gc` packs refs: the loose record is gone, the packed one counts.
    run(Command::new("git")
        .arg("-C")
        .arg(m.state.join("repo.git"))
        .args(["pack-refs", "--all"]));
    assert!(!record(&m).exists());
    std::fs::remove_file(m.state.join("state.json")).unwrap();
    up.rewind(&first);
    let refused = m.sync(&up.file_url(), &[]).expect(4);
    assert!(
        refused.error_line().contains(short(&second)),
        "{}",
        refused.stderr
    );

    // A record that cannot be read is not "no record".
    let path = record(&m);
    std::fs::write(&path, "garbage\n").unwrap();
    let line = m.sync(&up.file_url(), &[]).expect(4).error_line();
    assert!(
        line.contains("refs/gitops/applied") && line.contains("--allow-rewind"),
        "{line}"
    );
    // Nor is a symlink in its place (the store's own guard names it).
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink("/dev/null", &path).unwrap();
    let line = m.sync(&up.file_url(), &[]).expect(2).error_line();
    assert!(line.contains("symlink"), "{line}");
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, "garbage\n").unwrap();
    assert_eq!(m.runs().len(), 2, "nothing ran");
    // The way out names itself, and writes the record again.
    m.sync(&up.file_url(), &["--allow-rewind"]).expect(0);
    assert_eq!(m.applied().as_deref(), Some(first.as_str()));
    let recorded = std::fs::read_to_string(record(&m)).unwrap();
    assert_eq!(recorded.trim(), first);
    m.sync(&up.file_url(), &[]).expect(0);
}

#[test]
fn trust_a_record_naming_a_commit_the_store_lacks_refuses_with_the_way_out() {
    let up = Upstream::new();
    up.commit(&[("run.sh", RECORDING_RUN_SH)], "first");
    let m = Machine::new();
    m.sync(&up.file_url(), &[]).expect(0);
    std::fs::write(record(&m), "0123456789abcdef0123456789abcdef01234567\n").unwrap();
    std::fs::remove_file(m.state.join("state.json")).unwrap();
    let line = m.sync(&up.file_url(), &[]).expect(4).error_line();
    assert!(
        line.contains("0123456789ab") && line.contains("--allow-rewind"),
        "{line}"
    );
    m.sync(&up.file_url(), &["--allow-rewind"]).expect(0);
    m.sync(&up.file_url(), &[]).expect(0);
}

#[test]
fn trust_keys_reached_through_a_symlink_into_another_users_directory_decide_nothing() {
    if !crate::harness::is_root() {
        eprintln!("skipped: needs root to give a directory to another user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    crate::harness::chmod(dir.path(), 0o755);
    let alice = ssh_key(dir.path(), "alice", &["-t", "ed25519"]);
    let gpg = gpg_key(dir.path(), "alice");
    let up = Upstream::new();
    commit(&up, "1", "signed", &alice.signing());
    // Root's own files, in a directory that nobody (uid 65534) owns and can swap them in.
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    let signers = allowed_signers(&theirs, &[format!("alice@example.com {}", alice.key())]);
    let keyring = theirs.join("keyring.gpg");
    std::fs::copy(&gpg.keyring, &keyring).unwrap();
    std::fs::set_permissions(&keyring, std::fs::Permissions::from_mode(0o644)).unwrap();
    nix::unistd::chown(&theirs, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    // Pointed at from a directory only root may change.
    let mine = dir.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::os::unix::fs::symlink(&signers, mine.join("allowed_signers")).unwrap();
    std::os::unix::fs::symlink(&keyring, mine.join("keyring.gpg")).unwrap();
    let m = Machine::new();
    for option in [
        format!(
            "--allowed-signers={}",
            mine.join("allowed_signers").display()
        ),
        format!("--gpg-keyring={}", mine.join("keyring.gpg").display()),
    ] {
        let line = m.sync(&up.file_url(), &[&option]).expect(2).error_line();
        assert!(
            line.contains(&theirs.display().to_string()) && line.contains("65534"),
            "{option}: {line}"
        );
    }
    assert!(m.runs().is_empty());
}

//! Zero trust: commits signed with throwaway keys made here (ssh-keygen, gpg), verified by the
//! real binary; a stale tip; the store's record of the applied commit when state.json is lost.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{Machine, RECORDING_RUN_SH};
use crate::support::{run, Upstream};

/// A throwaway SSH key and the files around it.
pub(crate) struct SshKey {
    pub(crate) private: PathBuf,
    pub(crate) public: String,
}

pub(crate) fn ssh_key(dir: &Path, name: &str, kind: &[&str]) -> SshKey {
    let private = dir.join(name);
    run(Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-C", name])
        .args(kind)
        .arg("-f")
        .arg(&private));
    let public = std::fs::read_to_string(private.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string();
    SshKey { private, public }
}

impl SshKey {
    /// `git -c` settings that sign a commit with this key.
    pub(crate) fn signing(&self) -> Vec<String> {
        vec![
            "gpg.format=ssh".into(),
            format!("user.signingkey={}", self.private.display()),
            "commit.gpgsign=true".into(),
        ]
    }

    /// The key type and base64, without the comment.
    pub(crate) fn key(&self) -> String {
        self.public
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub(crate) fn fingerprint(&self) -> String {
        let out = run(Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.private.with_extension("pub")));
        out.split_whitespace().nth(1).unwrap().to_string()
    }
}

/// An allowed_signers file with these lines, 0644 as an administrator would leave it.
pub(crate) fn allowed_signers(dir: &Path, lines: &[String]) -> PathBuf {
    let path = dir.join("allowed_signers");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    crate::harness::chmod(&path, 0o644);
    path
}

pub(crate) fn arg(path: &Path) -> String {
    format!("--allowed-signers={}", path.display())
}

pub(crate) fn short(commit: &str) -> &str {
    &commit[..12]
}

/// A commit of the recording entry point (and `extra`), signed with `signing`.
pub(crate) fn commit(up: &Upstream, extra: &str, message: &str, signing: &[String]) -> String {
    up.commit_with(
        &[("run.sh", RECORDING_RUN_SH), ("extra", extra)],
        message,
        signing,
        &[],
    )
}

pub(crate) fn assert_untrusted(m: &Machine, run: crate::harness::Run, commit: &str, why: &str) {
    let line = run.expect(5).error_line();
    assert!(
        line.contains(short(commit)) && line.contains(why),
        "the refusal names {} and {why:?}: {line}",
        short(commit)
    );
    let state = m.state_json();
    assert_eq!(state["last_pass"]["outcome"], "untrusted", "{state}");
    let status = m.run(&["status"]);
    assert!(
        status.stdout.contains(short(commit)) && status.stdout.contains(why),
        "status names the refused commit and why:\n{}",
        status.stdout
    );
}

#[test]
fn commits_signed_by_allowed_ed25519_ecdsa_and_rsa_keys_are_applied_with_their_signer() {
    let dir = tempfile::tempdir().unwrap();
    let kinds: [(&str, &[&str]); 4] = [
        ("ed25519", &["-t", "ed25519"]),
        ("p256", &["-t", "ecdsa", "-b", "256"]),
        ("p384", &["-t", "ecdsa", "-b", "384"]),
        ("rsa", &["-t", "rsa", "-b", "3072"]),
    ];
    for (name, kind) in kinds {
        let key = ssh_key(dir.path(), name, kind);
        let principal = format!("{name}@example.com");
        let signers = allowed_signers(
            dir.path(),
            &[format!("{principal} namespaces=\"git\" {}", key.key())],
        );
        let up = Upstream::new();
        let sha = commit(&up, name, "signed", &key.signing());
        let m = Machine::new();
        m.sync(&up.file_url(), &[&arg(&signers)]).expect(0);
        assert_eq!(m.applied().as_deref(), Some(sha.as_str()), "{name}");
        assert_eq!(m.runs().len(), 1, "{name}");
        let signer = &m.state_json()["applied"]["signer"];
        assert_eq!(signer["method"], "ssh", "{name}: {signer}");
        assert_eq!(signer["principal"], principal.as_str(), "{name}: {signer}");
        assert_eq!(signer["fingerprint"], key.fingerprint().as_str(), "{name}");
        let status = m.run(&["status"]).expect(0);
        assert!(
            status.stdout.contains(&principal) && status.stdout.contains(&key.fingerprint()),
            "status shows the signer:\n{}",
            status.stdout
        );
        let metrics = m.run(&["status", "--prometheus"]).expect(0);
        assert!(
            metrics
                .stdout
                .contains(&format!("principal=\"{principal}\"")),
            "{}",
            metrics.stdout
        );
    }
}

#[test]
fn unsigned_unknown_wrong_namespace_and_expired_signatures_are_refused_with_exit_5() {
    let dir = tempfile::tempdir().unwrap();
    let alice = ssh_key(dir.path(), "alice", &["-t", "ed25519"]);
    let mallory = ssh_key(dir.path(), "mallory", &["-t", "ed25519"]);
    let line = |options: &str| format!("alice@example.com {options} {}", alice.key());
    let cases: [(&str, Vec<String>, Vec<String>, &str); 4] = [
        ("unsigned", vec![line("")], vec![], "not signed"),
        (
            "unknown key",
            vec![line("")],
            mallory.signing(),
            &mallory.fingerprint(),
        ),
        (
            "wrong namespace",
            vec![line("namespaces=\"file\"")],
            alice.signing(),
            "git",
        ),
        (
            "expired",
            vec![line("valid-before=\"20200101\"")],
            alice.signing(),
            "valid-before",
        ),
    ];
    for (case, lines, signing, why) in cases {
        let signers = allowed_signers(dir.path(), &lines);
        let up = Upstream::new();
        let sha = commit(&up, case, case, &signing);
        let m = Machine::new();
        let run = m.sync(&up.file_url(), &[&arg(&signers)]);
        assert_untrusted(&m, run, &sha, why);
        // Nothing of the commit was written out or run.
        assert!(m.runs().is_empty(), "{case}");
        assert!(m.trees().is_empty(), "{case}: {:?}", m.trees());
        assert!(std::fs::symlink_metadata(&m.checkout).is_err(), "{case}");
        assert_eq!(m.applied(), None, "{case}");
    }
}

#[test]
fn a_key_that_becomes_valid_later_is_refused_until_then() {
    let dir = tempfile::tempdir().unwrap();
    let alice = ssh_key(dir.path(), "alice", &["-t", "ed25519"]);
    let signers = allowed_signers(
        dir.path(),
        &[format!(
            "alice@example.com valid-after=\"20990101\" {}",
            alice.key()
        )],
    );
    let up = Upstream::new();
    // The commit claims a date after valid-after: the signer controls that date, so it counts
    // for nothing.
    let sha = up.commit_with(
        &[("run.sh", RECORDING_RUN_SH)],
        "from the future",
        &alice.signing(),
        &[("GIT_COMMITTER_DATE", "2099-06-01T00:00:00Z")],
    );
    let m = Machine::new();
    let run = m.sync(&up.file_url(), &[&arg(&signers)]);
    assert_untrusted(&m, run, &sha, "valid-after");
}

#[test]
fn range_mode_refuses_an_unsigned_commit_under_a_signed_tip_that_tip_mode_applies() {
    let dir = tempfile::tempdir().unwrap();
    let alice = ssh_key(dir.path(), "alice", &["-t", "ed25519"]);
    let signers = allowed_signers(dir.path(), &[format!("alice@example.com {}", alice.key())]);
    let up = Upstream::new();
    commit(&up, "1", "signed base", &alice.signing());
    let tip_mode = Machine::new();
    let range_mode = Machine::new();
    tip_mode.sync(&up.file_url(), &[&arg(&signers)]).expect(0);
    range_mode
        .sync(&up.file_url(), &[&arg(&signers), "--verify", "range"])
        .expect(0);
    let unsigned = commit(&up, "2", "slipped in unsigned", &[]);
    let tip = commit(&up, "3", "signed on top", &alice.signing());

    tip_mode.sync(&up.file_url(), &[&arg(&signers)]).expect(0);
    assert_eq!(tip_mode.applied().as_deref(), Some(tip.as_str()));

    let run = range_mode.sync(&up.file_url(), &[&arg(&signers), "--verify", "range"]);
    assert_untrusted(&range_mode, run, &unsigned, "not signed");
    assert_eq!(range_mode.runs().len(), 1, "nothing ran after the refusal");
}

#[test]
fn first_parent_range_mode_accepts_a_signed_merge_of_unsigned_work() {
    let dir = tempfile::tempdir().unwrap();
    let forge = ssh_key(dir.path(), "forge", &["-t", "ed25519"]);
    let signers = allowed_signers(dir.path(), &[format!("forge@example.com {}", forge.key())]);
    let up = Upstream::new();
    commit(&up, "1", "signed base", &forge.signing());
    let m = Machine::new();
    let range = |extra: &[&str]| {
        let mut args = vec![arg(&signers), "--verify=range".to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    m.sync(&up.file_url(), &with(&range(&[]))).expect(0);

    // A contributor's unsigned commit on a branch, merged by the forge with a signed merge.
    run(up.git_work().args(["checkout", "-q", "-b", "feature"]));
    let unsigned = up.commit_with(&[("feature", "x")], "unsigned work", &[], &[]);
    run(up.git_work().args(["checkout", "-q", "main"]));
    let mut merge = up.git_work();
    for setting in forge.signing() {
        merge.arg("-c").arg(setting);
    }
    run(merge.args([
        "merge",
        "-q",
        "--no-ff",
        "-S",
        "-m",
        "Merge feature",
        "feature",
    ]));
    let merged = up.push_main();

    let run_all = m.sync(&up.file_url(), &with(&range(&[])));
    assert_untrusted(&m, run_all, &unsigned, "not signed");
    m.sync(&up.file_url(), &with(&range(&["--verify-first-parent"])))
        .expect(0);
    assert_eq!(m.applied().as_deref(), Some(merged.as_str()));
}

fn with(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// A GnuPG home with one throwaway key, and its public keyring exported (binary).
pub(crate) struct GpgKey {
    pub(crate) home: tempfile::TempDir,
    pub(crate) fingerprint: String,
    pub(crate) keyring: PathBuf,
}

pub(crate) fn gpg_key(dir: &Path, name: &str) -> GpgKey {
    let home = tempfile::Builder::new()
        .prefix("g")
        .tempdir_in("/tmp")
        .unwrap();
    crate::harness::chmod(home.path(), 0o700);
    let gpg = || {
        let mut cmd = Command::new("gpg");
        cmd.env("GNUPGHOME", home.path())
            .args(["--batch", "--quiet"]);
        cmd
    };
    run(gpg().args([
        "--passphrase",
        "",
        "--quick-gen-key",
        &format!("{name} <{name}@example.com>"),
        "ed25519",
        "sign",
        "never",
    ]));
    let listing = run(gpg().args(["--with-colons", "--list-keys"]));
    let fingerprint = listing
        .lines()
        .find(|l| l.starts_with("fpr:"))
        .and_then(|l| l.split(':').nth(9))
        .unwrap()
        .to_string();
    let exported = gpg().args(["--export", &fingerprint]).output().unwrap();
    let keyring = dir.join(format!("{name}.gpg"));
    std::fs::write(&keyring, exported.stdout).unwrap();
    crate::harness::chmod(&keyring, 0o644);
    GpgKey {
        home,
        fingerprint,
        keyring,
    }
}

impl GpgKey {
    pub(crate) fn signing(&self) -> Vec<String> {
        vec![
            "gpg.format=openpgp".into(),
            format!("user.signingkey={}", self.fingerprint),
            "commit.gpgsign=true".into(),
        ]
    }
}

impl Drop for GpgKey {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "all"])
            .output();
    }
}

#[test]
fn openpgp_commits_are_checked_against_the_keyring_alone() {
    let dir = tempfile::tempdir().unwrap();
    let alice = gpg_key(dir.path(), "alice");
    let bob = gpg_key(dir.path(), "bob");
    let up = Upstream::new();
    let home = alice.home.path().display().to_string();
    let sha = up.commit_with(
        &[("run.sh", RECORDING_RUN_SH)],
        "signed with OpenPGP",
        &alice.signing(),
        &[("GNUPGHOME", &home)],
    );
    let keyring = |k: &GpgKey| format!("--gpg-keyring={}", k.keyring.display());

    let stranger = Machine::new();
    let run = stranger.sync(&up.file_url(), &[&keyring(&bob)]);
    assert_untrusted(&stranger, run, &sha, "");
    assert!(stranger.runs().is_empty());

    let m = Machine::new();
    m.sync(&up.file_url(), &[&keyring(&alice)]).expect(0);
    let signer = &m.state_json()["applied"]["signer"];
    assert_eq!(signer["method"], "openpgp", "{signer}");
    assert_eq!(
        signer["fingerprint"],
        alice.fingerprint.as_str(),
        "{signer}"
    );
}

#[test]
fn a_stale_tip_is_applied_and_reported_until_a_fresh_commit_arrives() {
    let up = Upstream::new();
    let old = up.commit_with(
        &[("run.sh", RECORDING_RUN_SH)],
        "old",
        &[],
        &[("GIT_COMMITTER_DATE", "2020-01-01T00:00:00Z")],
    );
    let m = Machine::new();
    let run = m
        .sync(&up.file_url(), &["--max-commit-age", "7d"])
        .expect(0);
    assert_eq!(m.applied().as_deref(), Some(old.as_str()));
    assert!(run.stderr.contains("--max-commit-age"), "{}", run.stderr);
    assert_eq!(m.state_json()["stale"]["commit"], old.as_str());
    let status = m.run(&["status"]).expect(1);
    assert!(
        status.stdout.contains("stale") && status.stdout.contains(short(&old)),
        "{}",
        status.stdout
    );
    let metrics = m.run(&["status", "--prometheus"]);
    assert!(
        metrics.stdout.contains("gitops_branch_stale 1"),
        "{}",
        metrics.stdout
    );
    // The next pass, nothing new: still stale, without opening the store for the date.
    m.sync(&up.file_url(), &["--max-commit-age", "7d"])
        .expect(0);
    assert!(m.state_json()["stale"].is_object());

    up.commit(&[("fresh", "1")], "fresh");
    m.sync(&up.file_url(), &["--max-commit-age", "7d"])
        .expect(0);
    assert!(m.state_json().get("stale").is_none(), "{}", m.state_json());
    m.run(&["status"]).expect(0);
}

#[test]
fn a_lost_or_old_state_file_does_not_let_the_branch_go_back() {
    let up = Upstream::new();
    let first = up.commit(&[("run.sh", RECORDING_RUN_SH)], "first");
    let m = Machine::new();
    m.sync(&up.file_url(), &[]).expect(0);
    let record = m.state.join("repo.git/refs/gitops/applied");
    assert_eq!(std::fs::read_to_string(&record).unwrap().trim(), first);
    // A state directory from before the record: the next pass, nothing new, writes it.
    std::fs::remove_file(&record).unwrap();
    m.sync(&up.file_url(), &[]).expect(0);
    assert_eq!(std::fs::read_to_string(&record).unwrap().trim(), first);
    let old_state = std::fs::read(m.state.join("state.json")).unwrap();
    let second = up.commit(&[("x", "2")], "second");
    m.sync(&up.file_url(), &[]).expect(0);
    assert_eq!(m.runs().len(), 2);

    // Lost: the same tip is applied again (nothing records its outcome), and a rollback is
    // refused.
    std::fs::remove_file(m.state.join("state.json")).unwrap();
    m.sync(&up.file_url(), &[]).expect(0);
    assert_eq!(m.applied().as_deref(), Some(second.as_str()));
    assert_eq!(m.runs().len(), 3);
    std::fs::remove_file(m.state.join("state.json")).unwrap();
    up.rewind(&first);
    let refused = m.sync(&up.file_url(), &[]).expect(4);
    assert!(
        refused.error_line().contains(short(&second)),
        "{}",
        refused.stderr
    );

    // Restored from an old copy that agrees with the rolled-back branch: still refused.
    std::fs::write(m.state.join("state.json"), &old_state).unwrap();
    m.sync(&up.file_url(), &[]).expect(4);
    assert_eq!(m.runs().len(), 3, "nothing ran");
    // --allow-rewind is the operator's way back, and moves the record with it.
    m.sync(&up.file_url(), &["--allow-rewind"]).expect(0);
    assert_eq!(m.applied().as_deref(), Some(first.as_str()));
    m.sync(&up.file_url(), &[]).expect(0);
}

#[test]
fn trust_options_that_cannot_work_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let alice = ssh_key(dir.path(), "alice", &["-t", "ed25519"]);
    let signers = allowed_signers(dir.path(), &[format!("alice@example.com {}", alice.key())]);
    let up = Upstream::new();
    commit(&up, "1", "signed", &alice.signing());
    let m = Machine::new();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--verify=range".into()], "--allowed-signers"),
        (
            vec![arg(&signers), "--verify-first-parent".into()],
            "--verify range",
        ),
        (
            vec!["--allowed-signers=/nonexistent/allowed".into()],
            "/nonexistent/allowed",
        ),
        (vec!["--gpg-keyring=/nonexistent/k.gpg".into()], "k.gpg"),
    ];
    for (args, names) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let line = m.sync(&up.file_url(), &args).expect(2).error_line();
        assert!(line.contains(names), "{args:?}: {line}");
    }
    // Keys others can change decide nothing.
    crate::harness::chmod(&signers, 0o666);
    let line = m
        .sync(&up.file_url(), &[&arg(&signers)])
        .expect(2)
        .error_line();
    assert!(line.contains("chmod go-w"), "{line}");
    crate::harness::chmod(&signers, 0o644);
    // A certificate authority line is refused until supported, naming the line.
    let ca = allowed_signers(
        dir.path(),
        &[format!("*@example.com cert-authority {}", alice.key())],
    );
    let line = m.sync(&up.file_url(), &[&arg(&ca)]).expect(2).error_line();
    assert!(line.contains("cert-authority"), "{line}");
    assert!(m.runs().is_empty());
}

#[test]
fn an_untrusted_commit_and_a_stale_tip_are_each_told_once() {
    let dir = tempfile::tempdir().unwrap();
    let alice = ssh_key(dir.path(), "alice", &["-t", "ed25519"]);
    let signers = allowed_signers(dir.path(), &[format!("alice@example.com {}", alice.key())]);
    let r = crate::receiver::Receiver::start(vec![]);
    let notify = format!("--notify-url={}", r.url("/hook"));
    let events = || -> Vec<serde_json::Value> {
        r.requests()
            .iter()
            .map(|req| serde_json::from_slice(&req.body).unwrap())
            .collect()
    };
    let up = Upstream::new();
    let unsigned = commit(&up, "1", "unsigned", &[]);
    let m = Machine::new();
    for _ in 0..2 {
        m.sync(&up.file_url(), &[&arg(&signers), &notify]).expect(5);
    }
    let got = events();
    assert_eq!(got.len(), 1, "told once, not every pass: {got:?}");
    assert_eq!(got[0]["event"], "untrusted");
    assert_eq!(got[0]["commit"], unsigned.as_str());
    assert_eq!(got[0]["exit_code"], 5);
    assert!(
        got[0]["error"].as_str().unwrap().contains("not signed"),
        "{}",
        got[0]
    );

    let old = up.commit_with(
        &[("run.sh", RECORDING_RUN_SH)],
        "signed, old",
        &alice.signing(),
        &[("GIT_COMMITTER_DATE", "2020-01-01T00:00:00Z")],
    );
    let stale = [arg(&signers), notify.clone(), "--max-commit-age=7d".into()];
    for _ in 0..2 {
        m.sync(&up.file_url(), &with(&stale)).expect(0);
    }
    let kinds: Vec<_> = events().iter().map(|e| e["event"].clone()).collect();
    assert_eq!(kinds, ["untrusted", "applied", "stale"], "{:?}", events());
    let told = &events()[2];
    assert_eq!(told["commit"], old.as_str());
    assert!(
        told["error"].as_str().unwrap().contains("--max-commit-age"),
        "{told}"
    );
}

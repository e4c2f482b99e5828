//! Real keys made by ssh-keygen and gpg, real commits signed by git, verified through gix.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::signers::AllowedSigners;
use super::*;

/// A throwaway repository with git isolated from the user's and the host's configuration.
struct Fixture {
    dir: tempfile::TempDir,
    repo: PathBuf,
    /// Set once a gpg key is made: gpg-agent runs there and is stopped on drop.
    gnupg: Option<PathBuf>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(home) = &self.gnupg {
            let _ = Command::new("gpgconf")
                .args(["--kill", "gpg-agent"])
                .env("GNUPGHOME", home)
                .status();
        }
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("repo");
        let fixture = Fixture {
            repo,
            dir,
            gnupg: None,
        };
        run(fixture
            .git()
            .args(["init", "-q", "-b", "main"])
            .arg(&fixture.repo));
        fixture
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn git(&self) -> Command {
        let mut cmd = Command::new("git");
        cmd.current_dir(self.dir.path())
            .env("HOME", self.dir.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env_remove("SSH_AUTH_SOCK")
            .env("GIT_AUTHOR_NAME", "Test Author")
            .env("GIT_AUTHOR_EMAIL", "author@example.invalid")
            .env("GIT_COMMITTER_NAME", "Test Committer")
            .env("GIT_COMMITTER_EMAIL", "committer@example.invalid");
        if let Some(home) = &self.gnupg {
            cmd.env("GNUPGHOME", home);
        }
        cmd
    }

    fn in_repo(&self) -> Command {
        let mut cmd = self.git();
        cmd.arg("-C").arg(&self.repo);
        cmd
    }

    /// A new SSH key: (private key path, public line, fingerprint as `ssh-keygen -l` prints it).
    fn ssh_key(&self, name: &str, kind: &[&str]) -> (PathBuf, String, String) {
        let path = self.path(name);
        run(Command::new("ssh-keygen")
            .args(["-q", "-N", "", "-C", name, "-t"])
            .args(kind)
            .arg("-f")
            .arg(&path));
        let public = std::fs::read_to_string(path.with_extension("pub")).expect("public key");
        let listed = run(Command::new("ssh-keygen")
            .arg("-lf")
            .arg(path.with_extension("pub")));
        let fingerprint = listed.split(' ').nth(1).expect("fingerprint").to_string();
        (path, public.trim().to_string(), fingerprint)
    }

    fn commit(&self, message: &str, ssh_key: Option<&Path>) -> ObjectId {
        let mut cmd = self.in_repo();
        if let Some(key) = ssh_key {
            cmd.args(["-c", "gpg.format=ssh", "-c"])
                .arg(format!("user.signingkey={}", key.display()))
                .args(["commit", "-S"]);
        } else {
            cmd.arg("commit");
        }
        run(cmd.args(["-q", "--allow-empty", "-m", message]));
        self.head()
    }

    fn head(&self) -> ObjectId {
        let hex = run(self.in_repo().args(["rev-parse", "HEAD"]));
        ObjectId::from_hex(hex.as_bytes()).expect("commit id")
    }

    /// Writes `object` as a commit object without checking it and returns its id.
    fn write_commit(&self, object: &[u8]) -> ObjectId {
        let mut child = self
            .in_repo()
            .args(["hash-object", "-t", "commit", "-w", "--stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("git hash-object");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(object)
            .expect("write object");
        let out = child.wait_with_output().expect("git hash-object");
        assert!(out.status.success());
        ObjectId::from_hex(String::from_utf8_lossy(&out.stdout).trim().as_bytes()).expect("id")
    }

    fn raw(&self, id: ObjectId) -> Vec<u8> {
        let out = self
            .in_repo()
            .args(["cat-file", "commit", &id.to_string()])
            .output()
            .expect("git cat-file");
        out.stdout
    }

    fn open(&self) -> gix::Repository {
        gix::open_opts(&self.repo, gix::open::Options::isolated()).expect("open repository")
    }

    /// A throwaway OpenPGP key in a private GNUPGHOME: returns its fingerprint. `faked` makes it
    /// as of that time (gpg's --faked-system-time), with `expire`.
    fn gpg_key(&mut self, uid: &str, faked: Option<&str>, expire: &str) -> String {
        let home = self
            .gnupg
            .get_or_insert_with(|| self.dir.path().join("gnupg"))
            .clone();
        std::fs::create_dir_all(&home).expect("GNUPGHOME");
        std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("chmod");
        let mut gpg = Command::new("gpg");
        gpg.env("GNUPGHOME", &home)
            .args(["--batch", "--quiet", "--passphrase", ""]);
        if let Some(at) = faked {
            gpg.args(["--faked-system-time", at]);
        }
        run(gpg.args(["--quick-gen-key", uid, "ed25519", "sign", expire]));
        let listed = run(Command::new("gpg").env("GNUPGHOME", &home).args([
            "--batch",
            "--with-colons",
            "--list-keys",
            uid,
        ]));
        listed
            .lines()
            .find_map(|line| line.strip_prefix("fpr:::::::::"))
            .map(|rest| rest.trim_end_matches(':').to_string())
            .expect("fingerprint")
    }

    /// Exports the keys named (all with none) as a binary keyring file.
    fn keyring(&self, name: &str, keys: &[&str]) -> PathBuf {
        let path = self.path(name);
        let out = Command::new("gpg")
            .env("GNUPGHOME", self.gnupg.as_ref().expect("a gpg key first"))
            .args(["--batch", "--export"])
            .args(keys)
            .output()
            .expect("gpg --export");
        assert!(out.status.success() && !out.stdout.is_empty());
        std::fs::write(&path, out.stdout).expect("keyring");
        path
    }

    fn commit_gpg(&self, message: &str, fingerprint: &str, program: &str) -> ObjectId {
        run(self
            .in_repo()
            .args(["-c", &format!("gpg.program={program}"), "-c"])
            .arg(format!("user.signingkey={fingerprint}"))
            .args(["commit", "-q", "-S", "--allow-empty", "-m", message]));
        self.head()
    }
}

fn ssh_trust(text: &str) -> Trust {
    Trust {
        signers: Some(AllowedSigners::parse(text).expect("allowed_signers parses")),
        gpg_keyring: None,
        mode: VerifyMode::Tip,
        first_parent: false,
    }
}

fn why(result: Result<Verified, Untrusted>, commit: ObjectId) -> Why {
    match result {
        Ok(verified) => panic!("expected a refusal of {commit}, got {verified:?}"),
        Err(untrusted) => {
            assert_eq!(
                untrusted.commit, commit,
                "the refusal names the wrong commit: {untrusted}"
            );
            assert!(untrusted
                .to_string()
                .contains(&commit.to_hex_with_len(12).to_string()));
            untrusted.why
        }
    }
}

#[test]
fn every_key_type_verifies_and_reports_ssh_keygens_fingerprint() {
    let f = Fixture::new();
    for (name, kind) in [
        ("ed", &["ed25519"][..]),
        ("p256", &["ecdsa", "-b", "256"][..]),
        ("p384", &["ecdsa", "-b", "384"][..]),
        ("rsa", &["rsa", "-b", "3072"][..]),
    ] {
        let (key, public, fingerprint) = f.ssh_key(name, kind);
        let tip = f.commit(name, Some(&key));
        let trust = ssh_trust(&format!(
            "# deployers\n{name}@example.com namespaces=\"git\" {public}\n"
        ));
        let verified =
            verify(&f.open(), &trust, None, tip, now()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            verified,
            Verified {
                signer: Signer {
                    method: "ssh".to_string(),
                    principal: format!("{name}@example.com"),
                    fingerprint,
                },
                checked: 1,
            },
            "{name}"
        );
    }
}

#[test]
fn unsigned_unknown_key_wrong_namespace_and_missing_commit_are_refused() {
    let f = Fixture::new();
    let (key, public, fingerprint) = f.ssh_key("signer", &["ed25519"]);
    let (_, other, _) = f.ssh_key("other", &["ed25519"]);
    let signed = f.commit("signed", Some(&key));
    let unsigned = f.commit("unsigned", None);
    let repo = f.open();

    let trust = ssh_trust(&format!("a {public}"));
    assert_eq!(
        why(verify(&repo, &trust, None, unsigned, now()), unsigned),
        Why::Unsigned
    );

    let trust = ssh_trust(&format!("a {other}"));
    assert_eq!(
        why(verify(&repo, &trust, None, signed, now()), signed),
        Why::UnknownKey {
            fingerprint: fingerprint.clone()
        }
    );

    let trust = ssh_trust(&format!("a@x namespaces=\"file\" {public}\n"));
    assert_eq!(
        why(verify(&repo, &trust, None, signed, now()), signed),
        Why::PrincipalNotAllowed {
            principal: "a@x".to_string(),
            fingerprint: fingerprint.clone()
        }
    );

    let missing = ObjectId::from_hex(b"0123456789012345678901234567890123456789").expect("id");
    assert!(matches!(
        why(
            verify(
                &repo,
                &ssh_trust(&format!("a {public}")),
                None,
                missing,
                now()
            ),
            missing
        ),
        Why::Unreadable { .. }
    ));

    let gpg_only = Trust {
        signers: None,
        gpg_keyring: Some(f.path("none.gpg")),
        mode: VerifyMode::Tip,
        first_parent: false,
    };
    assert!(matches!(
        why(verify(&repo, &gpg_only, None, signed, now()), signed),
        Why::Unsupported { .. }
    ));
}

#[test]
fn validity_is_judged_at_the_current_time() {
    let f = Fixture::new();
    let (key, public, _) = f.ssh_key("signer", &["ed25519"]);
    let tip = f.commit("signed", Some(&key));
    let repo = f.open();

    let trust = ssh_trust(&format!("old@x valid-before=\"20200101Z\" {public}"));
    assert_eq!(
        why(verify(&repo, &trust, None, tip, now()), tip),
        Why::NoLongerValid {
            principal: "old@x".to_string(),
            until: "2020-01-01 00:00:00 UTC".to_string()
        }
    );
    let trust = ssh_trust(&format!("new@x valid-after=\"29990101Z\" {public}"));
    assert_eq!(
        why(verify(&repo, &trust, None, tip, now()), tip),
        Why::NotYetValid {
            principal: "new@x".to_string(),
            from: "2999-01-01 00:00:00 UTC".to_string()
        }
    );
    // The same commit verifies once "now" is inside the window: the commit's date plays no part.
    let then = time::macros::datetime!(2019-06-01 00:00 UTC);
    let trust = ssh_trust(&format!("old@x valid-before=\"20200101Z\" {public}"));
    assert!(verify(&repo, &trust, None, tip, then).is_ok());

    // A key on several lines passes through any line that allows git now; otherwise the most
    // telling reason is the one of a line that did allow git.
    let trust = ssh_trust(&format!(
        "file@x namespaces=\"file\" {public}\nold@x valid-before=\"20200101Z\" {public}\ncur@x namespaces=\"git,file\" {public}\n"
    ));
    assert_eq!(
        verify(&repo, &trust, None, tip, now()).map(|v| v.signer.principal),
        Ok("cur@x".to_string())
    );
    let trust = ssh_trust(&format!(
        "file@x namespaces=\"file\" {public}\nold@x valid-before=\"20200101Z\" {public}\n"
    ));
    assert!(matches!(
        why(verify(&repo, &trust, None, tip, now()), tip),
        Why::NoLongerValid { .. }
    ));
}

#[test]
fn a_rewritten_commit_keeps_its_signature_but_fails() {
    let f = Fixture::new();
    let (key, public, _) = f.ssh_key("signer", &["ed25519"]);
    let signed = f.commit("deploy v1", Some(&key));
    let object = f.raw(signed);
    let tampered = String::from_utf8(object.clone())
        .expect("utf-8")
        .replace("deploy v1", "deploy v2");
    let tampered = f.write_commit(tampered.as_bytes());
    let trust = ssh_trust(&format!("a {public}"));
    assert_eq!(
        why(verify(&f.open(), &trust, None, tampered, now()), tampered),
        Why::BadSignature
    );

    // git strips a gpgsig-sha256 header too (a commit signed for both hashes): so must we.
    let text = String::from_utf8(object).expect("utf-8");
    let at = text.find("\ncommitter ").expect("committer") + 1;
    let at = at + text[at..].find('\n').expect("end of committer") + 1;
    let both = format!(
        "{}gpgsig-sha256 first line\n second line\n third line\n{}",
        &text[..at],
        &text[at..]
    );
    let both = f.write_commit(both.as_bytes());
    let verified = verify(&f.open(), &trust, None, both, now());
    assert!(verified.is_ok(), "{verified:?}");
}

#[test]
fn range_mode_finds_an_unsigned_commit_under_a_signed_tip() {
    let f = Fixture::new();
    let (key, public, _) = f.ssh_key("signer", &["ed25519"]);
    let applied = f.commit("applied", Some(&key));
    let middle = f.commit("unsigned middle", None);
    let tip = f.commit("signed tip", Some(&key));
    let repo = f.open();
    let mut trust = ssh_trust(&format!("a {public}"));

    let tip_only = verify(&repo, &trust, Some(applied), tip, now()).expect("tip mode passes");
    assert_eq!(tip_only.checked, 1);

    trust.mode = VerifyMode::Range;
    assert_eq!(
        why(verify(&repo, &trust, Some(applied), tip, now()), middle),
        Why::Unsigned
    );
    // First apply: nothing applied yet, only the tip is verified.
    assert_eq!(
        verify(&repo, &trust, None, tip, now()).map(|v| v.checked),
        Ok(1)
    );

    let signed_middle = {
        run(f
            .in_repo()
            .args(["reset", "-q", "--hard", &applied.to_string()]));
        f.commit("signed middle", Some(&key));
        f.commit("signed tip", Some(&key))
    };
    assert_eq!(
        verify(&f.open(), &trust, Some(applied), signed_middle, now()).map(|v| v.checked),
        Ok(2)
    );
}

#[test]
fn first_parent_accepts_a_signed_merge_of_an_unsigned_branch() {
    let f = Fixture::new();
    let (key, public, _) = f.ssh_key("signer", &["ed25519"]);
    let applied = f.commit("applied", Some(&key));
    run(f.in_repo().args(["checkout", "-q", "-b", "side"]));
    let side = f.commit("unsigned work on a branch", None);
    run(f.in_repo().args(["checkout", "-q", "main"]));
    f.commit("signed on main", Some(&key));
    run(f
        .in_repo()
        .args(["-c", "gpg.format=ssh", "-c"])
        .arg(format!("user.signingkey={}", key.display()))
        .args(["merge", "-q", "--no-ff", "-S", "-m", "merge side", "side"]));
    let merge = f.head();
    let repo = f.open();
    let mut trust = ssh_trust(&format!("a {public}"));
    trust.mode = VerifyMode::Range;

    assert_eq!(
        why(verify(&repo, &trust, Some(applied), merge, now()), side),
        Why::Unsigned
    );
    trust.first_parent = true;
    assert_eq!(
        verify(&repo, &trust, Some(applied), merge, now()).map(|v| v.checked),
        Ok(2)
    );
}

#[test]
fn openpgp_through_gpgv() {
    let mut f = Fixture::new();
    let fingerprint = f.gpg_key("Deployer <deploy@example.com>", None, "never");
    let other = f.gpg_key("Other <other@example.com>", None, "never");
    let good = f.keyring("good.gpg", &[&fingerprint]);
    let wrong = f.keyring("wrong.gpg", &[&other]);
    let tip = f.commit_gpg("signed with OpenPGP", &fingerprint, "gpg");
    let repo = f.open();
    let trust = |keyring: &Path| Trust {
        signers: None,
        gpg_keyring: Some(keyring.to_path_buf()),
        mode: VerifyMode::Tip,
        first_parent: false,
    };

    let verified = verify(&repo, &trust(&good), None, tip, now()).expect("verifies");
    assert_eq!(
        verified.signer,
        Signer {
            method: "openpgp".to_string(),
            principal: "Deployer <deploy@example.com>".to_string(),
            fingerprint: fingerprint.clone(),
        }
    );
    match why(verify(&repo, &trust(&wrong), None, tip, now()), tip) {
        Why::UnknownKey {
            fingerprint: reported,
        } => assert!(fingerprint.ends_with(&reported), "{reported}"),
        other => panic!("expected UnknownKey, got {other:?}"),
    }

    let tampered = String::from_utf8(f.raw(tip))
        .expect("utf-8")
        .replace("signed with", "forged with");
    let tampered = f.write_commit(tampered.as_bytes());
    assert_eq!(
        why(
            verify(&f.open(), &trust(&good), None, tampered, now()),
            tampered
        ),
        Why::BadSignature
    );

    // An SSH-configured agent meeting an OpenPGP commit says what is missing.
    let ssh_only = ssh_trust("");
    assert!(matches!(
        why(verify(&repo, &ssh_only, None, tip, now()), tip),
        Why::Unsupported { .. }
    ));
}

#[test]
fn an_expired_openpgp_key_is_no_longer_valid() {
    let mut f = Fixture::new();
    let fingerprint = f.gpg_key("Past <past@example.com>", Some("20200101T000000"), "1d");
    let keyring = f.keyring("past.gpg", &[&fingerprint]);
    // A gpg that lives in 2020, when the key was still valid, signs the commit.
    let program = f.path("gpg-2020");
    std::fs::write(
        &program,
        "#!/bin/sh\nexec gpg --faked-system-time 20200101T120000 \"$@\"\n",
    )
    .expect("script");
    std::fs::set_permissions(
        &program,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let tip = f.commit_gpg(
        "signed in 2020",
        &fingerprint,
        &program.display().to_string(),
    );
    let trust = Trust {
        signers: None,
        gpg_keyring: Some(keyring),
        mode: VerifyMode::Tip,
        first_parent: false,
    };
    assert_eq!(
        why(verify(&f.open(), &trust, None, tip, now()), tip),
        Why::NoLongerValid {
            principal: "Past <past@example.com>".to_string(),
            until: "2020-01-02 00:00:00 UTC".to_string()
        }
    );
}

#[test]
fn gpgv_status_lines_are_judged_strictly() {
    let good = "[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG 1234 A <a@x>\n[GNUPG:] VALIDSIG SUB 2024-01-01 1 0 4 0 22 10 00 PRIMARY\n";
    assert_eq!(
        gpg::judge(good),
        Ok(Signer {
            method: "openpgp".to_string(),
            principal: "A <a@x>".to_string(),
            fingerprint: "PRIMARY".to_string()
        })
    );
    // A second, bad signature in the same file spoils the good one.
    assert_eq!(
        gpg::judge(&format!("{good}[GNUPG:] BADSIG 99 B <b@x>\n")),
        Err(Why::BadSignature)
    );
    assert!(matches!(
        gpg::judge("[GNUPG:] GOODSIG 1234 A <a@x>\n"),
        Err(Why::Unreadable { .. })
    ));
    assert!(matches!(
        gpg::judge("gpgv: garbage\n"),
        Err(Why::Unreadable { .. })
    ));
    assert_eq!(
        gpg::judge("[GNUPG:] ERRSIG ABCD 22 10 00 1700000000 9 FULLFPR\n[GNUPG:] NO_PUBKEY ABCD\n"),
        Err(Why::UnknownKey {
            fingerprint: "FULLFPR".to_string()
        })
    );
    assert_eq!(
        gpg::judge(&format!("{good}[GNUPG:] REVKEYSIG 1234 A <a@x>\n")),
        Err(Why::NoLongerValid {
            principal: "A <a@x>".to_string(),
            until: "revoked".to_string()
        })
    );
}

#[test]
fn headers_are_stripped_as_git_does() {
    let object = b"tree t\nparent p\ngpgsig a\n b\n c\nmergetag x\n y\ngpgsig-sha256 d\n e\ncommitter c\n\nmessage\ngpgsig kept in the message\n";
    assert_eq!(
        strip_signature_headers(object),
        b"tree t\nparent p\nmergetag x\n y\ncommitter c\n\nmessage\ngpgsig kept in the message\n"
            .to_vec()
    );
    assert_eq!(strip_signature_headers(b""), b"".to_vec());
    assert_eq!(strip_signature_headers(b"gpgsig x"), b"".to_vec());
}

#[test]
fn messages_name_the_commit_reason_and_fix() {
    let commit = ObjectId::from_hex(b"1a2b3c4d5e6f7a8b9c0d1a2b3c4d5e6f7a8b9c0d").expect("id");
    let text = |why: Why| Untrusted { commit, why }.to_string();
    assert_eq!(
        text(Why::Unsigned),
        "commit 1a2b3c4d5e6f is not signed; sign it (git commit -S) with a key listed in --allowed-signers or --gpg-keyring"
    );
    assert!(text(Why::UnknownKey {
        fingerprint: "SHA256:abc".into()
    })
    .contains("SHA256:abc, which is in no line of --allowed-signers"));
    assert!(text(Why::UnknownKey {
        fingerprint: "ABCDEF".into()
    })
    .contains("--gpg-keyring"));
    assert!(text(Why::NoLongerValid {
        principal: "a".into(),
        until: "2024-01-01 00:00:00 UTC".into()
    })
    .contains("valid only before 2024-01-01 00:00:00 UTC"));
}

#[test]
fn a_signature_made_for_another_namespace_says_so_escaped() {
    let f = Fixture::new();
    let (key, public, _) = f.ssh_key("signer", &["ed25519"]);
    let trust = ssh_trust(&format!("a {public}"));
    let payload = f.raw(f.commit("deploy", None));
    // The allowed key signed exactly these bytes, as a file or under a namespace of the
    // signer's choosing with a line break in it: neither is a commit signature.
    for (namespace, shown) in [("file", "\"file\""), ("a\nb", "\"a\\nb\"")] {
        let file = f.path("payload");
        std::fs::write(&file, &payload).expect("payload");
        let _ = std::fs::remove_file(file.with_extension("sig"));
        run(Command::new("ssh-keygen")
            .args(["-q", "-Y", "sign", "-n", namespace, "-f"])
            .arg(&key)
            .arg(&file));
        let armoured = std::fs::read_to_string(file.with_extension("sig")).expect("sig");
        let text = String::from_utf8(payload.clone()).expect("utf-8");
        let (headers, message) = text.split_once("\n\n").expect("headers");
        let header = format!("gpgsig {}", armoured.trim_end().replace('\n', "\n "));
        let forged = f.write_commit(format!("{headers}\n{header}\n\n{message}").as_bytes());
        let refused = verify(&f.open(), &trust, None, forged, now()).expect_err("refused");
        let said = refused.to_string();
        assert!(
            said.contains(&format!("namespace {shown}")) && !said.contains('\n'),
            "{said}"
        );
    }
}

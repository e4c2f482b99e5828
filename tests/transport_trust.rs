//! Who the machine trusts and how it proves itself: its own ssh host key as the deploy key,
//! host keys trusted on first use and then pinned, and an https token read from a file.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use crate::harness::{chmod, everything_shown, Machine, Run, RECORDING_RUN_SH};
use crate::support::{HttpServer, Sshd, Upstream};
use crate::transports::Tls;

/// A key made the way a distribution makes the machine's own ed25519 host key.
fn host_key(dir: &Path) -> std::path::PathBuf {
    let key = dir.join("ssh_host_ed25519_key");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", ""])
        .arg("-f")
        .arg(&key)
        .status()
        .unwrap();
    assert!(status.success());
    key
}

#[test]
fn the_machines_own_host_key_is_its_deploy_key() {
    let up = Upstream::new();
    let commit = up.commit(&[("run.sh", RECORDING_RUN_SH)], "init");
    let sshd = Sshd::start();
    let etc = tempfile::tempdir().unwrap();
    let key = host_key(etc.path());
    let meta = std::fs::metadata(&key).unwrap();
    assert_eq!(
        meta.mode() & 0o777,
        0o600,
        "as ssh-keygen leaves a host key"
    );
    assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw());
    let url = sshd.url(&up.bare());
    let known = sshd.known_hosts().display().to_string();
    let args = ["--ssh-key", key.to_str().unwrap(), "--known-hosts", &known];

    // Not yet registered with the forge: refused.
    let line = Machine::new().sync(&url, &args).expect(3).error_line();
    assert!(line.contains("Permission denied (publickey)"), "{line}");

    // Its .pub given to the forge as this machine's deploy key.
    sshd.authorize(&etc.path().join("ssh_host_ed25519_key.pub"));
    let m = Machine::new();
    m.sync(&url, &args).expect(0);
    assert_eq!(m.applied().as_deref(), Some(commit.as_str()));
}

/// `SHA256:…` of a public key line, as ssh shows it.
fn fingerprint(public: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("k.pub");
    std::fs::write(&file, public).unwrap();
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_whitespace().nth(1).unwrap().to_string()
}

/// The key field of a public key or known_hosts line.
fn key_blob(line: &str) -> String {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let at = fields
        .iter()
        .position(|f| f.starts_with("ssh-") || f.starts_with("ecdsa-"))
        .unwrap_or_else(|| panic!("no key type in {line:?}"));
    fields[at + 1].to_string()
}

#[test]
fn accept_new_records_the_first_host_key_and_then_pins_it() {
    let up = Upstream::new();
    up.commit(&[("run.sh", RECORDING_RUN_SH)], "init");
    let mut sshd = Sshd::start();
    let url = sshd.url(&up.bare());
    let key = sshd.key().display().to_string();
    let m = Machine::new();
    let file = m.state.join("known_hosts");

    // Without it, and nothing pinned, ssh refuses an unknown server (BatchMode, no prompt).
    let mut cmd = m.command();
    // An empty HOME: the user's own known_hosts must not decide this.
    let home = tempfile::tempdir().unwrap();
    cmd.env("HOME", home.path())
        .args(["sync", "--repo-url", &url, "--ssh-key", &key]);
    Run::of(&mut cmd).expect(3);

    let first = m
        .sync(&url, &["--ssh-key", &key, "--ssh-accept-new"])
        .expect(0);
    assert!(!first.stderr.contains("Warning"), "{}", first.stderr);
    let recorded = std::fs::read_to_string(&file).unwrap();
    assert_eq!(recorded.lines().count(), 1, "{recorded}");
    assert!(
        recorded.contains(&format!("[127.0.0.1]:{}", sshd.port())),
        "unhashed, so it can be read: {recorded}"
    );
    assert_eq!(key_blob(&recorded), key_blob(&sshd.host_public_key()));
    let meta = std::fs::symlink_metadata(&file).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o600);
    assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw());

    // The variable works like the flag, and the recorded key is used as it is.
    let second = up.commit(&[("x", "1")], "second");
    let mut cmd = m.command();
    cmd.env("GITOPS_SSH_ACCEPT_NEW", "true")
        .args(["sync", "--repo-url", &url, "--ssh-key", &key]);
    Run::of(&mut cmd).expect(0);
    assert_eq!(m.applied().as_deref(), Some(second.as_str()));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), recorded);

    // The server now presents another key: refused, and the file still holds the first one.
    sshd.restart_with_other_host_key();
    let third = up.commit(&[("x", "2")], "third");
    let run = m
        .sync(&url, &["--ssh-key", &key, "--ssh-accept-new"])
        .expect(3);
    let line = run.error_line();
    assert!(
        line.contains("host key of [127.0.0.1]:")
            && line.contains("has changed")
            && line.contains(&format!(
                "ED25519 key {}",
                fingerprint(&sshd.host_public_key())
            ))
            && line.contains(&format!(
                "ssh-keygen -R '[127.0.0.1]:{}' -f {}",
                sshd.port(),
                file.display()
            )),
        "{line}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), recorded);
    assert!(m.runs().len() == 2 && m.applied().as_deref() == Some(second.as_str()));
    let state = m.state_json();
    assert_eq!(state["last_pass"]["outcome"], "fetch-failed");
    assert!(state["last_pass"]["error"]
        .as_str()
        .unwrap()
        .contains("has changed"));
    let status = m.run(&["status"]);
    assert!(
        status.stdout.contains(&second[..7]) && status.stdout.contains("host key"),
        "{}",
        status.stdout
    );
    assert!(!status.stdout.contains(&third[..12]), "{}", status.stdout);

    // Removing the line is how an operator accepts the new key.
    std::fs::write(&file, "").unwrap();
    m.sync(&url, &["--ssh-key", &key, "--ssh-accept-new"])
        .expect(0);
    assert_eq!(m.applied().as_deref(), Some(third.as_str()));
    assert_eq!(
        key_blob(&std::fs::read_to_string(&file).unwrap()),
        key_blob(&sshd.host_public_key())
    );

    // A known_hosts others could have written to is not trusted.
    chmod(&file, 0o666);
    let line = m
        .sync(&url, &["--ssh-key", &key, "--ssh-accept-new"])
        .expect(2)
        .error_line();
    assert!(line.contains("chmod 600"), "{line}");
}

#[test]
fn accept_new_and_a_pinned_known_hosts_are_refused_together() {
    let m = Machine::new();
    let known = m.dir.path().join("known_hosts");
    std::fs::write(&known, "").unwrap();
    let line = m
        .sync(
            "ssh://git@127.0.0.1:1/r.git",
            &["--ssh-accept-new", "--known-hosts", known.to_str().unwrap()],
        )
        .expect(2)
        .error_line();
    assert!(
        line.contains("--ssh-accept-new") && line.contains("--known-hosts"),
        "{line}"
    );
}

const TOKEN: &str = "gho_T0kenFromAFile42";

/// An https server (TLS in front of git http-backend) for `up`, demanding `auth`.
fn https(up: &Upstream, bearer: bool) -> (HttpServer, Tls) {
    let http = if bearer {
        HttpServer::serve_bearer(&up.srv(), TOKEN)
    } else {
        HttpServer::serve(&up.srv(), Some(("x-access-token", TOKEN)))
    };
    let tls = Tls::front(http.port());
    (http, tls)
}

fn token_file(m: &Machine, text: &str) -> String {
    let path = m.dir.path().join("token");
    std::fs::write(&path, text).unwrap();
    chmod(&path, 0o600);
    path.display().to_string()
}

fn sync_https(m: &Machine, tls: &Tls, url: &str, args: &[&str]) -> Run {
    let mut cmd = m.command();
    cmd.env("SSL_CERT_FILE", tls.ca())
        .args(["sync", "--repo-url", url])
        .args(args);
    Run::of(&mut cmd)
}

#[test]
fn a_token_file_is_sent_as_the_basic_auth_password() {
    let up = Upstream::new();
    let commit = up.commit(&[("run.sh", RECORDING_RUN_SH)], "init");
    let (_http, tls) = https(&up, false);
    let url = format!("https://127.0.0.1:{}/config.git", tls.port());
    let m = Machine::new();
    let file = token_file(&m, &format!("{TOKEN}\n"));

    // Without the token the server refuses.
    sync_https(&m, &tls, &url, &[]).expect(3);
    let run = sync_https(&m, &tls, &url, &["--http-token-file", &file]).expect(0);
    assert_eq!(m.applied().as_deref(), Some(commit.as_str()));
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    assert!(!everything_shown(&m, &run).contains(TOKEN));

    // The user of the URL is the one sent with it.
    let other = Machine::new();
    let file = token_file(&other, TOKEN);
    let with_user = format!("https://oauth2@127.0.0.1:{}/config.git", tls.port());
    let line = sync_https(&other, &tls, &with_user, &["--http-token-file", &file])
        .expect(3)
        .error_line();
    assert!(line.contains("could not fetch"), "{line}");

    // A wrong token: refused, and shown nowhere.
    let wrong = Machine::new();
    let file = token_file(&wrong, "wr0ng-T0ken-value");
    let run = sync_https(&wrong, &tls, &url, &["--http-token-file", &file]).expect(3);
    let shown = everything_shown(&wrong, &run);
    assert!(
        !shown.contains("wr0ng-T0ken-value") && !shown.contains(TOKEN),
        "{shown}"
    );
    assert!(wrong.runs().is_empty());
}

#[test]
fn a_token_file_is_sent_as_a_bearer_token() {
    let up = Upstream::new();
    let commit = up.commit(&[("run.sh", RECORDING_RUN_SH)], "init");
    let (http, tls) = https(&up, true);
    let url = format!("https://127.0.0.1:{}/config.git", tls.port());
    let m = Machine::new();
    let file = token_file(&m, &format!("{TOKEN}\n"));

    // As a password it is not what this server wants.
    sync_https(&m, &tls, &url, &["--http-token-file", &file]).expect(3);
    let before = http.requests();
    let mut cmd = m.command();
    cmd.env("SSL_CERT_FILE", tls.ca())
        .env("GITOPS_HTTP_AUTH", "bearer")
        .env("GITOPS_HTTP_TOKEN_FILE", &file)
        .args(["sync", "--repo-url", &url]);
    let run = Run::of(&mut cmd).expect(0);
    assert_eq!(m.applied().as_deref(), Some(commit.as_str()));
    assert!(http.requests() > before);
    let shown = everything_shown(&m, &run);
    assert!(!shown.contains(TOKEN), "{shown}");

    let wrong = Machine::new();
    let file = token_file(&wrong, "wr0ng-T0ken-value");
    let run = sync_https(
        &wrong,
        &tls,
        &url,
        &["--http-token-file", &file, "--http-auth", "bearer"],
    )
    .expect(3);
    assert!(!everything_shown(&wrong, &run).contains("wr0ng-T0ken-value"));
}

#[test]
fn a_token_file_others_can_read_or_an_empty_one_is_a_usage_error() {
    let m = Machine::new();
    let url = "https://127.0.0.1:1/config.git";
    let file = token_file(&m, TOKEN);
    chmod(Path::new(&file), 0o644);
    let line = m
        .sync(url, &["--http-token-file", &file])
        .expect(2)
        .error_line();
    assert!(
        line.contains("chmod 600") && !line.contains(TOKEN),
        "{line}"
    );

    for (text, why) in [
        ("", "is empty"),
        ("\n", "is empty"),
        ("two\nlines\n", "one line"),
        ("with space", "one line"),
    ] {
        let file = token_file(&m, text);
        let line = m
            .sync(url, &["--http-token-file", &file])
            .expect(2)
            .error_line();
        assert!(line.contains(why), "{text:?}: {line}");
    }
    let missing = m.dir.path().join("missing").display().to_string();
    let line = m
        .sync(url, &["--http-token-file", &missing])
        .expect(2)
        .error_line();
    assert!(line.contains("--http-token-file"), "{line}");

    // Never sent over plain http, nor beside a password in the URL.
    let file = token_file(&m, TOKEN);
    let line = m
        .sync(
            "http://127.0.0.1:1/config.git",
            &["--http-token-file", &file],
        )
        .expect(2)
        .error_line();
    assert!(line.contains("https://"), "{line}");
    let line = m
        .sync(
            "https://u:pw-in-url@127.0.0.1:1/config.git",
            &["--http-token-file", &file],
        )
        .expect(2)
        .error_line();
    assert!(line.contains("take it out of the URL"), "{line}");
    let line = m.sync(url, &["--http-auth", "digest"]).expect(2).stderr;
    assert!(line.contains("basic") && line.contains("bearer"), "{line}");
}

#[test]
fn a_password_in_the_url_still_works_with_a_warning() {
    let up = Upstream::new();
    let commit = up.commit(&[("run.sh", RECORDING_RUN_SH)], "init");
    let (_http, tls) = https(&up, false);
    let url = format!(
        "https://x-access-token:{TOKEN}@127.0.0.1:{}/config.git",
        tls.port()
    );
    let m = Machine::new();
    let run = sync_https(&m, &tls, &url, &[]).expect(0);
    assert_eq!(m.applied().as_deref(), Some(commit.as_str()));
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("carries a password"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    assert!(
        warnings[0].contains("--http-token-file") && warnings[0].contains("***@127.0.0.1"),
        "{}",
        warnings[0]
    );
    assert!(!everything_shown(&m, &run).contains(TOKEN));
    // Every pass says it, the one that changes nothing too.
    let run = sync_https(&m, &tls, &url, &[]).expect(0);
    assert!(run.stderr.contains("carries a password"), "{}", run.stderr);
}

#[test]
fn the_token_file_must_belong_to_us() {
    if !crate::harness::is_root() {
        eprintln!("skipped: needs root to chown");
        return;
    }
    let m = Machine::new();
    let file = token_file(&m, TOKEN);
    std::os::unix::fs::chown(&file, Some(65534), None).unwrap();
    let line = m
        .sync(
            "https://127.0.0.1:1/config.git",
            &["--http-token-file", &file],
        )
        .expect(2)
        .error_line();
    assert!(line.contains("chown"), "{line}");
}

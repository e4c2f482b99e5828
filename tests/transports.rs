//! The same pass over http:// (git http-backend) and ssh:// (a real sshd), and what stays secret.

use std::os::unix::fs::PermissionsExt;

use crate::harness::{Machine, Run, RECORDING_RUN_SH};
use crate::support::{HttpServer, Sshd, Upstream};

#[test]
fn http_fetches_and_applies() {
    let up = Upstream::new();
    let first = up.commit(&[("run.sh", RECORDING_RUN_SH)], "init");
    let http = HttpServer::serve(&up.srv(), None);
    let m = Machine::new();
    m.sync(&http.url("config.git"), &[]).expect(0);
    assert_eq!(m.applied().as_deref(), Some(first.as_str()));
    let second = up.commit(&[("file", "x")], "more");
    m.sync(&http.url("config.git"), &[]).expect(0);
    m.sync(&http.url("config.git"), &[]).expect(0);
    assert_eq!(m.applied().as_deref(), Some(second.as_str()));
    assert_eq!(m.runs().len(), 2);

    let line = m.sync(&http.url("missing.git"), &[]).expect(3).error_line();
    assert!(line.contains("could not fetch"), "{line}");
    assert!(line.contains("check the repository path"), "{line}");
}

#[test]
fn a_local_path_and_a_file_url_work_like_any_remote() {
    let up = Upstream::new();
    let first = up.commit(&[("run.sh", RECORDING_RUN_SH)], "init");
    let by_path = Machine::new();
    let path = up.bare().display().to_string();
    by_path.sync(&path, &[]).expect(0);
    assert_eq!(by_path.applied().as_deref(), Some(first.as_str()));
    let by_url = Machine::new();
    by_url.sync(&up.file_url(), &[]).expect(0);
    assert_eq!(by_url.applied().as_deref(), Some(first.as_str()));

    let second = up.commit(&[("file", "x")], "more");
    by_path.sync(&path, &[]).expect(0);
    by_url.sync(&up.file_url(), &[]).expect(0);
    by_url.sync(&up.file_url(), &[]).expect(0);
    assert_eq!(by_path.applied().as_deref(), Some(second.as_str()));
    assert_eq!(by_url.applied().as_deref(), Some(second.as_str()));
    assert_eq!(by_url.runs().len(), 2);

    let line = by_url
        .sync(&format!("{path}-missing"), &[])
        .expect(3)
        .error_line();
    assert!(line.contains("check the repository path"), "{line}");
}

#[test]
fn http_authentication_is_required_and_clear_text_credentials_are_refused() {
    let secret = "s3cr3t-t0ken";
    let up = Upstream::new();
    up.commit(&[("run.sh", RECORDING_RUN_SH)], "init");
    let http = HttpServer::serve(&up.srv(), Some(("deploy", secret)));
    let m = Machine::new();

    // The server asks for credentials, the URL has none: authentication refused.
    let run = m.sync(&http.url("config.git"), &[]).expect(3);
    assert!(run.error_line().contains("could not fetch"));
    assert!(
        run.error_line().contains("credentials"),
        "{}",
        run.error_line()
    );
    assert!(m.runs().is_empty());

    // Credentials in a plain http:// URL would cross the network readable: refused up front.
    let before = m.state_bytes();
    let url = http.url_with_credentials("deploy", secret, "config.git");
    let run = m.sync(&url, &[]).expect(2);
    assert!(run.error_line().contains("https://"));
    assert!(!run.stderr.contains(secret), "{}", run.stderr);
    let after = String::from_utf8(m.state_bytes().unwrap()).unwrap();
    assert!(!after.contains(secret), "{after}");
    assert!(before.is_some());
    assert_eq!(m.state_json()["last_pass"]["outcome"], "config-error");
}

#[test]
fn credentials_in_the_url_never_reach_state_status_or_errors() {
    let secret = "s3cr3t-t0ken";
    let port = crate::support::free_port();
    let m = Machine::new();
    let url = format!("https://deploy:{secret}@127.0.0.1:{port}/config.git");
    let run = m.sync(&url, &[]).expect(3);
    let line = run.error_line();
    assert!(
        !line.contains(secret) && line.contains("***@127.0.0.1"),
        "{line}"
    );
    let state = std::fs::read_to_string(m.state.join("state.json")).unwrap();
    assert!(!state.contains(secret), "{state}");
    for args in [&["status"][..], &["status", "--json"][..]] {
        let out = m.run(args).expect(1);
        assert!(!out.stdout.contains(secret), "{}", out.stdout);
        assert!(out.stdout.contains("***@127.0.0.1"), "{}", out.stdout);
    }
}

#[test]
fn ssh_with_a_deploy_key_and_pinned_host_key() {
    let up = Upstream::new();
    let commit = up.commit(&[("run.sh", RECORDING_RUN_SH)], "init");
    let sshd = Sshd::start();
    let url = sshd.url(&up.bare());
    let key = sshd.key().display().to_string();
    let known = sshd.known_hosts().display().to_string();
    let m = Machine::new();

    m.sync(&url, &["--ssh-key", &key, "--known-hosts", &known])
        .expect(0);
    assert_eq!(m.applied().as_deref(), Some(commit.as_str()));
    let next = up.commit(&[("x", "y")], "next");
    m.sync(&url, &["--ssh-key", &key, "--known-hosts", &known])
        .expect(0);
    assert_eq!(m.applied().as_deref(), Some(next.as_str()));

    // A key the server does not accept: authentication refused.
    let wrong = sshd.wrong_key().display().to_string();
    let run = m
        .sync(&url, &["--ssh-key", &wrong, "--known-hosts", &known])
        .expect(3);
    assert!(
        run.error_line().contains("Permission denied (publickey)")
            && run.error_line().contains("check the deploy key"),
        "{}",
        run.stderr
    );
    assert_eq!(
        run.stderr.lines().count(),
        1,
        "ssh's own chatter stays out: {}",
        run.stderr
    );

    // A server whose host key is not the pinned one: refused before authenticating.
    let other_hosts = sshd.wrong_known_hosts().display().to_string();
    let run = m
        .sync(&url, &["--ssh-key", &key, "--known-hosts", &other_hosts])
        .expect(3);
    assert!(
        run.error_line().contains("Host key verification failed")
            && run.error_line().contains("--known-hosts"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1, "no banner: {}", run.stderr);
    assert_eq!(m.applied().as_deref(), Some(next.as_str()));
}

#[test]
fn a_deploy_key_readable_by_others_is_rejected() {
    let sshd = Sshd::start();
    let m = Machine::new();
    let key = m.dir.path().join("deploy_key");
    std::fs::copy(sshd.key(), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let url = sshd.url(std::path::Path::new("/srv/x.git"));
    let line = m
        .sync(&url, &["--ssh-key", key.to_str().unwrap()])
        .expect(2)
        .error_line();
    assert!(line.contains("chmod 600"), "{line}");
    let missing = m.dir.path().join("no_key");
    let line = m
        .sync(&url, &["--ssh-key", missing.to_str().unwrap()])
        .expect(2)
        .error_line();
    assert!(line.contains("--ssh-key"), "{line}");
}

/// TLS in front of the CGI server: `socat` terminates it with a leaf certificate for
/// 127.0.0.1 signed by a throwaway CA, which gitops trusts through SSL_CERT_FILE.
pub struct Tls {
    dir: tempfile::TempDir,
    child: std::process::Child,
    port: u16,
}

impl Tls {
    pub fn front(http_port: u16) -> Tls {
        let dir = tempfile::tempdir().unwrap();
        let sh = |script: &str| {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{script}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        sh(
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
            -subj /CN=gitops-test-ca -keyout ca.key -out ca.pem 2>/dev/null",
        );
        sh(
            "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -subj /CN=127.0.0.1 -keyout leaf.key -out leaf.csr 2>/dev/null",
        );
        std::fs::write(
            dir.path().join("leaf.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        sh(
            "openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -extfile leaf.ext -out leaf.pem 2>/dev/null",
        );
        let port = crate::support::free_port();
        let child = std::process::Command::new("socat")
            .arg(format!(
                "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={},key={},verify=0",
                dir.path().join("leaf.pem").display(),
                dir.path().join("leaf.key").display()
            ))
            .arg(format!("TCP:127.0.0.1:{http_port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("socat is missing: apt-get install socat (CI installs it)");
        assert!(crate::support::wait_for_port(
            port,
            std::time::Duration::from_secs(10)
        ));
        Tls { dir, child, port }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn ca(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }
}

impl Drop for Tls {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn https_with_credentials_a_pinned_ca_and_nothing_leaked() {
    let secret = "s3cr3t-t0ken";
    let up = Upstream::new();
    let dumps_env = "#!/bin/sh\nenv > \"$OUT/env\"\n";
    let commit = up.commit(&[("run.sh", dumps_env)], "init");
    let http = HttpServer::serve(&up.srv(), Some(("deploy", secret)));
    let tls = Tls::front(http.port());
    let m = Machine::new();
    let url = format!("https://deploy:{secret}@127.0.0.1:{}/config.git", tls.port);
    let sync = |url: &str, trusted: bool| {
        let mut cmd = m.command();
        cmd.args(["sync", "--repo-url", url]);
        if trusted {
            cmd.env("SSL_CERT_FILE", tls.ca());
        }
        Run::of(&mut cmd)
    };

    // A server certificate nobody vouches for is refused.
    sync(&url, false).expect(3);

    let stderr = sync(&url, true).expect(0).stderr;
    assert_eq!(m.applied().as_deref(), Some(commit.as_str()));
    assert!(!stderr.contains(secret));
    // The entry point learns where its commit came from, without the credentials.
    let env = std::fs::read_to_string(m.out.join("env")).unwrap();
    assert!(!env.contains(secret), "{env}");
    assert!(
        env.lines()
            .any(|l| l.starts_with("GITOPS_REPO_URL=https://") && l.contains("127.0.0.1")),
        "{env}"
    );

    // A rejected password: exit 3, and neither password shows anywhere.
    let wrong = format!(
        "https://deploy:wr0ng-pass@127.0.0.1:{}/config.git",
        tls.port
    );
    let stderr = sync(&wrong, true).expect(3).stderr;
    assert!(
        !stderr.contains("wr0ng-pass") && !stderr.contains(secret),
        "{stderr}"
    );
    let state = std::fs::read_to_string(m.state.join("state.json")).unwrap();
    assert!(
        !state.contains("wr0ng-pass") && !state.contains(secret),
        "{state}"
    );
    let status = m.run(&["status"]);
    assert!(!status.stdout.contains("wr0ng-pass"), "{}", status.stdout);

    // Given as REPO_URL (the script's name), the alias the entry point inherits is redacted too.
    let aliased = Machine::new();
    let mut cmd = aliased.command();
    cmd.arg("sync")
        .env("REPO_URL", &url)
        .env("SSL_CERT_FILE", tls.ca());
    Run::of(&mut cmd).expect(0);
    let env = std::fs::read_to_string(aliased.out.join("env")).unwrap();
    assert!(!env.contains(secret), "{env}");
    assert!(
        env.lines().any(|l| l.starts_with("REPO_URL=https://")),
        "{env}"
    );
}

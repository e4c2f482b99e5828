//! Smoke tests proving the fixtures really serve what a stock `git` client expects.

use super::{
    base64_decode, base64_encode, describe, git, output, run, wait_for_port, Fault, FlakyProxy,
    GitDaemon, HttpServer, Sshd, Upstream,
};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;
use tempfile::TempDir;

/// Runs `git clone` of `url` into `<client>/clone` with an isolated config.
fn clone(client: &TempDir, url: &str, configure: impl FnOnce(&mut Command)) -> Output {
    let mut cmd = git(client.path());
    cmd.current_dir(client.path()).args(["clone", url, "clone"]);
    configure(&mut cmd);
    output(&mut cmd)
}

fn assert_cloned_at(client: &TempDir, out: &Output, sha: &str) {
    assert!(out.status.success(), "clone failed\n{}", describe(out));
    let head = run(git(client.path())
        .current_dir(client.path().join("clone"))
        .args(["rev-parse", "HEAD"]));
    assert_eq!(head, sha);
}

fn tempdir() -> TempDir {
    TempDir::new().expect("create tempdir")
}

fn ls_remote(up: &Upstream) -> String {
    run(git(&up.home()).arg("ls-remote").arg(up.bare()))
}

#[test]
fn upstream_history_operations() {
    let up = Upstream::new();
    assert_eq!(ls_remote(&up), "", "new upstream must have no refs");

    let first = up.commit(
        &[
            ("run.sh", "#!/bin/sh\necho hi\n"),
            ("etc/app/conf.txt", "a=1\n"),
        ],
        "first",
    );
    assert_eq!(first.len(), 40);
    assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
    let second = up.commit_file_mode("run.sh", "#!/bin/sh\necho plain\n", 0o644, "not executable");
    let third = up.remove("etc/app/conf.txt", "drop conf");

    let tree = |rev: &str| {
        run(git(&up.home())
            .arg("--git-dir")
            .arg(up.bare())
            .args(["ls-tree", "-r", rev]))
    };
    let at_first = tree(&first);
    assert!(
        at_first.contains("100755 blob") && at_first.contains("run.sh"),
        "{at_first}"
    );
    assert!(at_first.contains("etc/app/conf.txt"), "{at_first}");
    assert!(tree(&second).contains("100644 blob"), "{}", tree(&second));
    assert!(!tree(&third).contains("conf.txt"));
    assert!(ls_remote(&up).contains(&format!("{third}\trefs/heads/main")));

    up.rewind(&first);
    assert!(ls_remote(&up).contains(&format!("{first}\trefs/heads/main")));
    let after_rewind = up.commit(&[], "empty commit after rewind");
    assert_ne!(after_rewind, first);

    up.push_branch("staging");
    up.set_head("staging");
    let refs = ls_remote(&up);
    assert!(
        refs.contains(&format!("{after_rewind}\trefs/heads/staging")),
        "{refs}"
    );
    let head = run(git(&up.home())
        .arg("--git-dir")
        .arg(up.bare())
        .args(["symbolic-ref", "HEAD"]));
    assert_eq!(head, "refs/heads/staging");

    let client = tempdir();
    let out = clone(&client, &up.file_url(), |_| {});
    assert_cloned_at(&client, &out, &after_rewind);
}

#[test]
fn empty_upstream_has_no_commits() {
    let up = Upstream::empty();
    assert_eq!(ls_remote(&up), "");
    let client = tempdir();
    let out = clone(&client, &up.file_url(), |_| {});
    assert!(out.status.success(), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty repository"));
}

#[test]
fn git_daemon_serves_clone() {
    let up = Upstream::new();
    let sha = up.commit(&[("run.sh", "#!/bin/sh\ntrue\n")], "init");
    let daemon = GitDaemon::serve(&up.srv());
    assert!(wait_for_port(daemon.port(), Duration::from_secs(1)));
    assert!(daemon
        .url("config.git")
        .ends_with(&format!(":{}/config.git", daemon.port())));
    let client = tempdir();
    let out = clone(&client, &daemon.url("config.git"), |_| {});
    assert_cloned_at(&client, &out, &sha);
}

#[test]
fn flaky_proxy_passes_git_through_and_each_fault_breaks_a_clone() {
    let up = Upstream::new();
    let files: Vec<(String, String)> = (0..40)
        .map(|i| (format!("f{i}"), format!("content {i}\n").repeat(50)))
        .collect();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let sha = up.commit(&files, "init");
    let daemon = GitDaemon::serve(&up.srv());
    let proxy = FlakyProxy::new(daemon.port());
    let url = proxy.url("config.git");

    let client = tempdir();
    let out = clone(&client, &url, |_| {});
    assert_cloned_at(&client, &out, &sha);
    assert_eq!(proxy.fired(), []);

    let hold = Duration::from_millis(300);
    let faults = [
        Fault::DropInHandshake { after: 0 },
        Fault::DropInHandshake { after: 30 },
        Fault::DropInPack { keep: 0.5 },
        Fault::TruncatePack { keep: 0.0 },
        Fault::TruncatePack { keep: 0.9 },
        Fault::StallInHandshake { after: 10, hold },
        Fault::StallInPack { keep: 0.3, hold },
    ];
    for fault in faults {
        proxy.next_connection(fault);
        let client = tempdir();
        let out = clone(&client, &url, |_| {});
        assert!(
            !out.status.success(),
            "{fault:?}: the clone succeeded\n{}",
            describe(&out)
        );
        assert_eq!(proxy.fired().last(), Some(&fault), "{fault:?}");
        // Only the one connection: the next is whole again.
        let client = tempdir();
        let out = clone(&client, &url, |_| {});
        assert_cloned_at(&client, &out, &sha);
    }
    assert_eq!(proxy.fired().len(), faults.len());
}

#[test]
fn http_server_serves_protocol_v2_clone() {
    let up = Upstream::new();
    let sha = up.commit(&[("run.sh", "#!/bin/sh\ntrue\n")], "init");
    let server = HttpServer::serve(&up.srv(), None);
    let client = tempdir();
    let out = clone(&client, &server.url("config.git"), |cmd| {
        cmd.args(["-c", "protocol.version=2"])
            .env("GIT_TRACE_PACKET", "1");
    });
    assert_cloned_at(&client, &out, &sha);
    // The server only answers in v2 if GIT_PROTOCOL reached http-backend.
    let trace = String::from_utf8_lossy(&out.stderr);
    assert!(
        trace.contains("< version 2"),
        "server did not speak v2:\n{trace}"
    );
    assert!(server.requests() >= 2, "requests: {}", server.requests());
}

#[test]
fn http_server_rejects_missing_or_wrong_credentials() {
    let up = Upstream::new();
    let sha = up.commit(&[("run.sh", "#!/bin/sh\ntrue\n")], "init");
    let server = HttpServer::serve(&up.srv(), Some(("deploy", "s3cret")));

    let client = tempdir();
    let out = clone(
        &client,
        &server.url_with_credentials("deploy", "s3cret", "config.git"),
        |_| {},
    );
    assert_cloned_at(&client, &out, &sha);

    // Without credentials git asks for a username (and may not, with prompts disabled);
    // with wrong ones the 401 repeats and git gives up.
    for (url, reason) in [
        (server.url("config.git"), "could not read Username"),
        (
            server.url_with_credentials("deploy", "wrong", "config.git"),
            "Authentication failed",
        ),
    ] {
        let client = tempdir();
        let out = clone(&client, &url, |_| {});
        assert!(!out.status.success(), "clone of {url} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(reason), "{}", describe(&out));
        assert!(!client.path().join("clone").exists());
    }

    // The raw challenge, as a non-git HTTP client sees it.
    let reply = raw_request(
        server.port(),
        "GET /config.git/info/refs HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 401"), "{reply}");
    assert!(
        reply.contains("WWW-Authenticate: Basic realm=\"git\""),
        "{reply}"
    );
}

#[test]
fn http_server_decodes_chunked_v2_request() {
    let up = Upstream::new();
    let sha = up.commit(&[("a.txt", "a\n")], "init");
    let server = HttpServer::serve(&up.srv(), Some(("u", "p")));
    let body = b"0014command=ls-refs\n00010000";
    let mut chunked = Vec::new();
    // Split in two chunks so reassembly is exercised, not just a single chunk.
    for part in [&body[..10], &body[10..]] {
        chunked.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        chunked.extend_from_slice(part);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = format!(
        "POST /config.git/git-upload-pack HTTP/1.1\r\nHost: x\r\n\
         Authorization: Basic {}\r\n\
         Content-Type: application/x-git-upload-pack-request\r\n\
         Git-Protocol: version=2\r\nTransfer-Encoding: chunked\r\n\r\n",
        base64_encode(b"u:p")
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(&chunked);
    let reply = raw_request(server.port(), &String::from_utf8(request).unwrap());
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains(&format!("{sha} refs/heads/main")), "{reply}");
}

#[test]
fn http_server_accepts_large_chunked_push() {
    let up = Upstream::new();
    up.commit(&[("a.txt", "a\n")], "init");
    let server = HttpServer::serve(&up.srv(), Some(("u", "p")));
    let url = server.url_with_credentials("u", "p", "config.git");
    let client = tempdir();
    assert_cloned_at(&client, &clone(&client, &url, |_| {}), &ls_remote_main(&up));

    // Incompressible enough that the pack exceeds http.postBuffer (1 MiB), which makes git
    // switch to a chunked POST.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let noise: String = (0..3_000_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'a' + (state % 26) as u8)
        })
        .collect();
    let work = client.path().join("clone");
    std::fs::write(work.join("big.txt"), noise).unwrap();
    run(git(client.path())
        .current_dir(&work)
        .args(["add", "big.txt"]));
    run(git(client.path())
        .current_dir(&work)
        .args(["commit", "-q", "-m", "big"]));
    let pushed = run(git(client.path())
        .current_dir(&work)
        .args(["rev-parse", "HEAD"]));
    let out = output(
        git(client.path())
            .current_dir(&work)
            .env("GIT_TRACE_CURL", "1")
            .env("GIT_TRACE_CURL_NO_DATA", "1")
            .args(["push", "origin", "HEAD:main"]),
    );
    assert!(out.status.success(), "push failed\n{}", describe(&out));
    let trace = String::from_utf8_lossy(&out.stderr);
    assert!(
        trace.contains("Transfer-Encoding: chunked"),
        "push was not chunked:\n{trace}"
    );
    assert_eq!(ls_remote_main(&up), pushed);
}

fn ls_remote_main(up: &Upstream) -> String {
    run(git(&up.home())
        .arg("--git-dir")
        .arg(up.bare())
        .args(["rev-parse", "refs/heads/main"]))
}

#[test]
fn sshd_serves_clone_with_deploy_key_only() {
    let up = Upstream::new();
    let sha = up.commit(&[("run.sh", "#!/bin/sh\ntrue\n")], "init");
    let sshd = Sshd::start();
    let key_mode = std::fs::metadata(sshd.key()).unwrap().permissions().mode();
    assert_eq!(key_mode & 0o777, 0o600);
    let url = sshd.url(&up.bare());
    assert!(url.starts_with("ssh://") && url.contains(&format!("@127.0.0.1:{}/", sshd.port())));

    let attempt = |key: &Path, known_hosts: &Path| {
        let client = tempdir();
        let ssh = sshd.git_ssh_command(key, known_hosts);
        let out = clone(&client, &url, |cmd| {
            cmd.env("GIT_SSH_COMMAND", ssh);
        });
        (client, out)
    };

    let (client, out) = attempt(&sshd.key(), &sshd.known_hosts());
    assert_cloned_at(&client, &out, &sha);

    let (_, out) = attempt(&sshd.wrong_key(), &sshd.known_hosts());
    assert!(!out.status.success(), "wrong key must be refused");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        describe(&out)
    );

    let (_, out) = attempt(&sshd.key(), &sshd.wrong_known_hosts());
    assert!(!out.status.success(), "unpinned host key must be refused");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{}",
        describe(&out)
    );
}

#[test]
fn base64_round_trips() {
    for (plain, encoded) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("user:pass", "dXNlcjpwYXNz"),
    ] {
        assert_eq!(base64_encode(plain.as_bytes()), encoded);
        assert_eq!(base64_decode(encoded).as_deref(), Some(plain.as_bytes()));
    }
    assert_eq!(base64_decode("Zg="), None);
    assert_eq!(base64_decode("Z=g="), None);
    assert_eq!(base64_decode("Zg==Zg=="), None);
}

/// Sends `request` verbatim and returns everything the server answers.
fn raw_request(port: u16, request: &str) -> String {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
    stream.write_all(request.as_bytes()).expect("send request");
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("read reply");
    String::from_utf8_lossy(&reply).into_owned()
}

//! `gitops trigger` as systemd runs it: the real binary given a listening socket on fd 3 with
//! LISTEN_FDS and LISTEN_PID, real HTTP requests on 127.0.0.1, and a recorder as the command
//! that starts a pass.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{chmod, Run};

pub(crate) const SECRET: &str = "6a1f0c9e3b7d4a2f8e5c1b0d9a7f3e2c";

pub(crate) struct Trigger {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) port: u16,
    pub(crate) child: Option<Child>,
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&key, data).as_ref().to_vec()
}

pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize])
            } else {
                '='
            });
        }
    }
    out
}

pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A push to `branch`, unique by `n`.
pub(crate) fn push_body(branch: &str, n: usize) -> String {
    format!(r#"{{"ref":"refs/heads/{branch}","after":"{n:040x}"}}"#)
}

/// The headers each forge sends for `body`, signed with `secret`.
pub(crate) fn signed(forge: &str, secret: &str, body: &str, id: &str) -> Vec<(String, String)> {
    let s = |a: &str, b: String| (a.to_string(), b);
    let key = secret.as_bytes();
    match forge {
        "github" => vec![
            s("X-GitHub-Event", "push".into()),
            s("X-GitHub-Delivery", id.into()),
            s(
                "X-Hub-Signature-256",
                format!("sha256={}", hex(&mac(key, body.as_bytes()))),
            ),
        ],
        "gitea" => vec![
            s("X-Gitea-Event", "push".into()),
            s("X-Gitea-Delivery", id.into()),
            s("X-Gitea-Signature", hex(&mac(key, body.as_bytes()))),
        ],
        "forgejo" => vec![
            s("X-Forgejo-Event", "push".into()),
            s("X-Forgejo-Delivery", id.into()),
            s("X-Forgejo-Signature", hex(&mac(key, body.as_bytes()))),
            s("X-Gitea-Signature", hex(&mac(key, body.as_bytes()))),
        ],
        "gitlab" => vec![
            s("X-Gitlab-Event", "Push Hook".into()),
            s("X-Gitlab-Event-UUID", id.into()),
            s("X-Gitlab-Token", secret.into()),
        ],
        "gitlab-signed" => {
            let ts = now_unix().to_string();
            let signed = format!("{id}.{ts}.{body}");
            vec![
                s("X-Gitlab-Event", "Push Hook".into()),
                s("webhook-id", id.into()),
                s("webhook-timestamp", ts),
                s(
                    "webhook-signature",
                    format!("v1,{}", base64(&mac(key, signed.as_bytes()))),
                ),
            ]
        }
        "gitops" => {
            let ts = now_unix().to_string();
            let signed = format!("{ts}.{body}");
            vec![
                s("X-Gitops-Timestamp", ts),
                s(
                    "X-Gitops-Signature",
                    format!("sha256={}", hex(&mac(key, signed.as_bytes()))),
                ),
            ]
        }
        other => panic!("no forge {other}"),
    }
}

/// A directory with the secret (0600) and the recorder, which appends a line to `calls`.
fn prepared() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    chmod(&secret, 0o600);
    let recorder = dir.path().join("start-pass");
    let calls = dir.path().join("calls");
    std::fs::write(
        &recorder,
        format!("#!/bin/sh\necho called >> '{}'\n", calls.display()),
    )
    .unwrap();
    chmod(&recorder, 0o755);
    dir
}

impl Trigger {
    /// The trigger on a fresh socket, passed as systemd passes it, with the recorder as the
    /// command that starts a pass.
    pub(crate) fn start(extra: &[&str]) -> Trigger {
        Trigger::launch(prepared(), true, extra)
    }

    /// The same without a command: the pass is asked for through the pulse file.
    fn start_pulse(extra: &[&str]) -> Trigger {
        Trigger::launch(prepared(), false, extra)
    }

    /// A second trigger process on the same directory (systemd starting it again).
    fn restart(mut self, extra: &[&str]) -> Trigger {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let dir = tempfile::TempDir::new().unwrap();
        let dir = std::mem::replace(&mut self.dir, dir);
        Trigger::launch(dir, true, extra)
    }

    fn launch(dir: tempfile::TempDir, command: bool, extra: &[&str]) -> Trigger {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let mut args: Vec<String> = vec![
            "trigger".into(),
            "--trigger-secret-file".into(),
            path("secret"),
            "--trigger-state-dir".into(),
            path("state"),
            "--branch".into(),
            "main".into(),
        ];
        if command {
            args.extend(["--trigger-command".into(), path("start-pass")]);
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let child = passed_socket(&listener, &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Trigger {
            dir,
            port,
            child: Some(child),
        }
    }

    pub(crate) fn calls(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("calls"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    pub(crate) fn stats(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.dir.path().join("state/stats.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    pub(crate) fn post(&self, headers: &[(String, String)], body: &str) -> (u16, String) {
        let mut head = format!(
            "POST /trigger HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        self.raw(format!("{head}\r\n{body}").as_bytes())
    }

    /// Send bytes, read the answer to the end: (status, body).
    pub(crate) fn raw(&self, bytes: &[u8]) -> (u16, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let _ = stream.write_all(bytes);
        read_answer(&mut stream)
    }

    /// Stop it and return what it printed.
    pub(crate) fn stop(mut self) -> Run {
        let mut child = self.child.take().unwrap();
        let _ = child.kill();
        Run::within(child, Duration::from_secs(10))
    }
}

impl Drop for Trigger {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub(crate) fn read_answer(stream: &mut TcpStream) -> (u16, String) {
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or("")
        .trim()
        .to_string();
    (status, body)
}

/// `gitops ARGS` with `listener` on fd 3, LISTEN_FDS=1 and LISTEN_PID its own pid (set by the
/// shell that execs it, which keeps its pid), as systemd passes a socket.
fn passed_socket(listener: &TcpListener, args: &[String]) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_gitops"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("STATE_DIRECTORY")
        .stdin(Stdio::null());
    for (key, _) in std::env::vars() {
        if key.starts_with("GITOPS_") {
            cmd.env_remove(key);
        }
    }
    let fd = listener.as_raw_fd();
    // SAFETY: dup2 and fcntl are async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if fd == 3 {
                nix::fcntl::fcntl(
                    std::os::fd::BorrowedFd::borrow_raw(3),
                    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
                )?;
            } else if nix::libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

pub(crate) fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

#[test]
fn each_forge_form_starts_one_pass_and_the_counters_say_so() {
    let t = Trigger::start(&["--trigger-min-interval", "0s"]);
    let forges = [
        "github",
        "gitea",
        "forgejo",
        "gitlab",
        "gitlab-signed",
        "gitops",
    ];
    for (n, forge) in forges.iter().enumerate() {
        let body = push_body("main", n);
        let (status, text) = t.post(&signed(forge, SECRET, &body, &format!("id-{n}")), &body);
        assert_eq!((status, text.as_str()), (202, "started"), "{forge}");
        assert_eq!(t.calls(), n + 1, "{forge}: the recorder is called once");
    }
    let stats = t.stats();
    assert_eq!(stats["accepted"], 6);
    assert_eq!(stats["started"], 6);
    assert_eq!(stats["last"]["forge"], "gitops");
    assert_eq!(stats["last"]["source"], "127.0.0.1");
    let run = t.stop();
    for forge in forges {
        assert!(
            run.stderr
                .contains(&format!("started: {forge} request from 127.0.0.1")),
            "{}",
            run.stderr
        );
    }
    assert!(!run.stderr.contains(SECRET));
}

#[test]
fn requests_without_the_secret_are_refused_and_start_nothing() {
    let t = Trigger::start(&["--trigger-min-interval", "0s"]);
    let body = push_body("main", 1);
    let wrong_secret = "another secret, long enough to pass";
    let mut bad_signature = signed("github", SECRET, &body, "a");
    bad_signature[2].1 = format!("sha256={}", "0".repeat(64));
    let mut stale = signed("gitlab-signed", SECRET, &body, "b");
    let old = (now_unix() - 600).to_string();
    stale[2].1 = old.clone();
    stale[3].1 = format!(
        "v1,{}",
        base64(&mac(
            SECRET.as_bytes(),
            format!("b.{old}.{body}").as_bytes()
        ))
    );
    let cases: Vec<(&str, Vec<(String, String)>)> = vec![
        ("wrong signature", bad_signature),
        (
            "missing signature",
            vec![("X-GitHub-Event".into(), "push".into())],
        ),
        (
            "wrong secret, github",
            signed("github", wrong_secret, &body, "c"),
        ),
        (
            "wrong secret, gitea",
            signed("gitea", wrong_secret, &body, "d"),
        ),
        (
            "wrong token, gitlab",
            signed("gitlab", wrong_secret, &body, "e"),
        ),
        (
            "wrong secret, signed gitlab",
            signed("gitlab-signed", wrong_secret, &body, "f"),
        ),
        ("outside the window", stale),
    ];
    for (what, headers) in &cases {
        let (status, text) = t.post(headers, &body);
        assert_eq!((status, text.as_str()), (401, "unauthorized"), "{what}");
    }
    // A signature over another body.
    let (status, _) = t.post(&signed("github", SECRET, &push_body("main", 2), "g"), &body);
    assert_eq!(status, 401, "a signature of another body");
    assert_eq!(t.calls(), 0);
    let stats = t.stats();
    assert_eq!(stats["accepted"], 0);
    assert_eq!(stats["refused"]["signature"], 6);
    assert_eq!(stats["refused"]["unsigned"], 1);
    assert_eq!(stats["refused"]["timestamp"], 1);
    let run = t.stop();
    assert!(run
        .stderr
        .contains("refused a request from 127.0.0.1: signature (401)"));
    assert!(!run.stderr.contains(SECRET) && !run.stderr.contains(wrong_secret));
}

#[test]
fn only_post_on_the_path_is_served() {
    let t = Trigger::start(&[]);
    let (status, _) = t.raw(b"GET /trigger HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 405);
    let (status, _) = t.raw(b"POST /other HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(status, 404);
    let (status, _) =
        t.raw(b"POST /trigger HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    assert_eq!(status, 411);
    let (status, _) = t.raw(b"POST /trigger HTTP/1.1\r\nBad Header\r\n\r\n");
    assert_eq!(status, 400);
    let mut huge = b"POST /trigger HTTP/1.1\r\n".to_vec();
    huge.extend(
        std::iter::repeat_n(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", 500).flatten(),
    );
    let (status, _) = t.raw(&huge);
    assert_eq!(status, 431);
    assert_eq!(t.calls(), 0);
    let stats = t.stats();
    assert_eq!(stats["refused"]["method"], 1);
    assert_eq!(stats["refused"]["path"], 1);
}

#[test]
fn a_body_over_64_kib_is_refused_from_its_head_without_being_read() {
    let t = Trigger::start(&[]);
    let mut stream = TcpStream::connect(("127.0.0.1", t.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let body = push_body("main", 1);
    let mut head = String::from("POST /trigger HTTP/1.1\r\nContent-Length: 1048576\r\n");
    for (name, value) in signed("github", SECRET, &body, "big") {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let started = Instant::now();
    // The head and 1 KiB of the MiB announced: the answer comes without the rest.
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&[b'x'; 1024]).unwrap();
    let (status, _) = read_answer(&mut stream);
    assert_eq!(status, 413);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(t.calls(), 0);
    assert_eq!(t.stats()["refused"]["size"], 1);
}

#[test]
fn a_client_that_sends_nothing_is_closed_at_the_deadline_and_holds_no_one_else_up() {
    let t = Trigger::start(&["--trigger-min-interval", "0s"]);
    let mut silent = TcpStream::connect(("127.0.0.1", t.port)).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let started = Instant::now();
    // Meanwhile a real delivery is served at once.
    let body = push_body("main", 1);
    let (status, _) = t.post(&signed("github", SECRET, &body, "x"), &body);
    assert_eq!(status, 202);
    assert!(started.elapsed() < Duration::from_secs(5));
    let mut rest = Vec::new();
    let _ = silent.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(13),
        "closed after {waited:?}"
    );
    assert_eq!(t.stats()["refused"]["deadline"], 1);
    // A trickle of one byte a second is held to the same deadline.
    let mut trickle = TcpStream::connect(("127.0.0.1", t.port)).unwrap();
    let started = Instant::now();
    for b in b"POST /trigger HTTP/1.1\r\nX: " {
        if trickle.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(600));
        if started.elapsed() > Duration::from_secs(14) {
            break;
        }
    }
    trickle
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = trickle.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(14),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_replayed_delivery_is_refused_even_under_a_new_id_and_after_a_restart() {
    let t = Trigger::start(&["--trigger-min-interval", "0s"]);
    let body = push_body("main", 7);
    let headers = signed("github", SECRET, &body, "delivery-7");
    assert_eq!(t.post(&headers, &body).0, 202);
    assert_eq!(t.post(&headers, &body).0, 409);
    let mut renamed = headers.clone();
    renamed[1].1 = "delivery-8".into();
    assert_eq!(t.post(&renamed, &body).0, 409, "same body and MAC, new id");
    let gitlab = signed("gitlab", SECRET, &body, "uuid-1");
    assert_eq!(t.post(&gitlab, &body).0, 202);
    assert_eq!(t.post(&gitlab, &body).0, 409);
    assert_eq!(t.calls(), 2);
    assert_eq!(t.stats()["refused"]["replay"], 3);
    // The ids are kept on disk: a new trigger process refuses them too.
    let dir = t.dir.path().to_path_buf();
    let again = t.restart(&["--trigger-min-interval", "0s"]);
    assert_eq!(again.post(&headers, &body).0, 409);
    assert!(dir.exists());
}

#[test]
fn a_burst_of_valid_requests_starts_one_pass_per_interval() {
    let t = Trigger::start(&["--trigger-min-interval", "3s"]);
    let started = Instant::now();
    let mut answers = std::collections::BTreeMap::new();
    for n in 0..100 {
        let body = push_body("main", n);
        let (status, text) = t.post(
            &signed("github", SECRET, &body, &format!("burst-{n}")),
            &body,
        );
        assert_eq!(status, 202);
        *answers.entry(text).or_insert(0) += 1;
    }
    let sent_in = started.elapsed();
    assert!(
        sent_in < Duration::from_secs(3),
        "the burst took {sent_in:?}; the test needs it within one interval"
    );
    assert_eq!(answers.get("started"), Some(&1), "{answers:?}");
    assert_eq!(answers.get("coalesced"), Some(&99), "{answers:?}");
    assert_eq!(t.calls(), 1);
    // One more pass at the end of the interval, for what came in during it; then none.
    assert!(wait_until(Duration::from_secs(5), || t.calls() == 2));
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(t.calls(), 2);
    let stats = t.stats();
    assert_eq!(stats["coalesced"], 99);
    assert_eq!(stats["started"], 2);
}

#[test]
fn a_push_to_another_branch_or_another_event_is_ignored() {
    let t = Trigger::start(&["--trigger-min-interval", "0s"]);
    let body = push_body("dev", 1);
    assert_eq!(
        t.post(&signed("github", SECRET, &body, "a"), &body),
        (202, "ignored".into())
    );
    let body = push_body("main", 2);
    let mut issue = signed("gitea", SECRET, &body, "b");
    issue[0].1 = "issues".into();
    assert_eq!(t.post(&issue, &body), (202, "ignored".into()));
    let body = push_body("main", 3);
    let mut ping = signed("github", SECRET, &body, "c");
    ping[0].1 = "ping".into();
    assert_eq!(t.post(&ping, &body), (200, "pong".into()));
    assert_eq!(t.calls(), 0);
    assert_eq!(t.stats()["ignored"], 3);
    let run = t.stop();
    assert!(run.stderr.contains("ignored: github request from 127.0.0.1, delivery a: a push to refs/heads/dev, not to main"), "{}", run.stderr);
}

#[test]
fn addresses_outside_the_allowed_networks_are_turned_away() {
    let t = Trigger::start(&["--trigger-allow", "10.0.0.0/8, 2001:db8::/32"]);
    let body = push_body("main", 1);
    assert_eq!(t.post(&signed("github", SECRET, &body, "a"), &body).0, 403);
    assert_eq!(t.calls(), 0);
    assert_eq!(t.stats()["refused"]["address"], 1);
    let allowed = Trigger::start(&["--trigger-allow", "127.0.0.0/8"]);
    assert_eq!(
        allowed.post(&signed("github", SECRET, &body, "a"), &body).0,
        202
    );
}

#[test]
fn it_exits_when_idle() {
    let t = Trigger::start(&["--trigger-idle-exit", "1s"]);
    let body = push_body("main", 1);
    assert_eq!(t.post(&signed("github", SECRET, &body, "a"), &body).0, 202);
    let mut t = t;
    let child = t.child.take().unwrap();
    let run = Run::within(child, Duration::from_secs(10)).expect(0);
    assert!(
        run.stderr.contains("serving POST /trigger on 127.0.0.1:"),
        "{}",
        run.stderr
    );
}

#[test]
fn without_a_socket_or_with_a_loose_secret_it_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    chmod(&secret, 0o600);
    let state = dir.path().join("state");
    let gitops = |args: &[&Path]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gitops"));
        cmd.arg("trigger")
            .arg("--trigger-state-dir")
            .arg(&state)
            .args(args)
            .env("RUST_BACKTRACE", "1")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("CREDENTIALS_DIRECTORY");
        Run::of(&mut cmd)
    };
    let run = gitops(&[Path::new("--trigger-secret-file"), &secret]).expect(2);
    assert!(
        run.error_line().contains("systemd-socket-activate"),
        "{}",
        run.stderr
    );
    let run = gitops(&[]).expect(2);
    assert!(
        run.error_line().contains("--trigger-secret-file"),
        "{}",
        run.stderr
    );
    chmod(&secret, 0o644);
    let run = gitops(&[Path::new("--trigger-secret-file"), &secret]).expect(2);
    assert!(run.error_line().contains("chmod 600"), "{}", run.stderr);
    std::fs::write(&secret, "short").unwrap();
    chmod(&secret, 0o600);
    let run = gitops(&[Path::new("--trigger-secret-file"), &secret]).expect(2);
    assert!(
        run.error_line().contains("shorter than 16"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("short\n"));
    std::fs::write(&secret, SECRET).unwrap();
    // Given a file that is not a socket on fd 3.
    let listener_path: PathBuf = dir.path().join("not-a-socket");
    std::fs::write(&listener_path, "").unwrap();
    let file = std::fs::File::open(&listener_path).unwrap();
    let fd = file.as_raw_fd();
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_gitops"))
        .args(["trigger", "--trigger-secret-file"])
        .arg(&secret)
        .arg("--trigger-state-dir")
        .arg(&state);
    unsafe {
        cmd.pre_exec(move || {
            if nix::libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let run = Run::of(&mut cmd).expect(2);
    assert!(
        run.error_line().contains("not a listening stream socket"),
        "{}",
        run.stderr
    );
}

#[test]
fn status_and_the_metrics_show_the_last_trigger_and_its_counters() {
    let t = Trigger::start(&["--trigger-min-interval", "0s"]);
    let body = push_body("main", 1);
    assert_eq!(t.post(&signed("gitea", SECRET, &body, "s1"), &body).0, 202);
    assert_eq!(t.post(&[], &body).0, 401);
    let trigger_state = t.dir.path().join("state");
    let (_up, _daemon, m, url) = crate::harness::applied_machine();
    let metrics = m.dir.path().join("metrics");
    std::fs::create_dir(&metrics).unwrap();
    let mut status = m.command();
    status
        .args(["status", "--trigger-state-dir"])
        .arg(&trigger_state);
    let run = Run::of(&mut status).expect(0);
    assert!(
        run.stdout.contains("trigger:      last gitea request from 127.0.0.1")
            && run.stdout.contains(": started; 1 accepted, 1 started a pass, 0 coalesced, 0 ignored, 1 refused (unsigned 1)"),
        "{}",
        run.stdout
    );
    let mut sync = m.command();
    sync.args(["sync", "--repo-url", &url, "--metrics-dir"])
        .arg(&metrics)
        .arg("--trigger-state-dir")
        .arg(&trigger_state);
    Run::of(&mut sync).expect(0);
    let prom = std::fs::read_to_string(metrics.join("gitops.prom")).unwrap();
    for want in [
        "gitops_trigger_accepted_total 1",
        "gitops_trigger_refused_total{reason=\"unsigned\"} 1",
        "gitops_trigger_last_request_info{forge=\"gitea\",source=\"127.0.0.1\",answer=\"started\"} 1",
    ] {
        assert!(prom.lines().any(|l| l == want), "{want} not in\n{prom}");
    }
    assert!(!prom.contains(SECRET) && !run.stdout.contains(SECRET));
}

#[test]
fn a_pass_that_cannot_be_asked_for_is_answered_as_a_failure_not_as_started() {
    let t = Trigger::start(&["--trigger-min-interval", "0s"]);
    std::fs::write(t.dir.path().join("start-pass"), "#!/bin/sh\nexit 3\n").unwrap();
    let body = push_body("main", 1);
    let (status, text) = t.post(&signed("github", SECRET, &body, "f1"), &body);
    assert_eq!((status, text.as_str()), (503, "failed"));
    let stats = t.stats();
    assert_eq!(stats["started"], 0);
    assert_eq!(stats["start_failed"], 1);
    let run = t.stop();
    assert!(
        run.stderr
            .contains("gitops trigger: error: could not start a pass for a push:"),
        "{}",
        run.stderr
    );
}

#[test]
fn without_a_command_the_pass_is_asked_for_through_the_pulse_file() {
    let t = Trigger::start_pulse(&["--trigger-min-interval", "1s", "--trigger-idle-exit", "1s"]);
    let state = t.dir.path().join("state");
    let pulse = state.join("pulse");
    assert!(!pulse.exists());
    let body = push_body("main", 1);
    assert_eq!(t.post(&signed("github", SECRET, &body, "p1"), &body).0, 202);
    let first = std::fs::read_to_string(&pulse).unwrap();
    assert!(
        first.starts_with("20") && first.ends_with("Z\n"),
        "{first:?}"
    );
    let mut t = t;
    let run = Run::within(t.child.take().unwrap(), Duration::from_secs(10)).expect(0);
    assert!(
        run.stderr
            .contains("gitops trigger: warning: --trigger-min-interval is below 3s"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_path_served_is_the_one_given() {
    let t = Trigger::start(&["--trigger-path", "/hooks/gitops-1"]);
    let body = push_body("main", 1);
    assert_eq!(t.post(&signed("github", SECRET, &body, "a"), &body).0, 404);
    let mut request = format!(
        "POST /hooks/gitops-1 HTTP/1.1\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in signed("github", SECRET, &body, "b") {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("\r\n{body}"));
    assert_eq!(t.raw(request.as_bytes()), (202, "started".into()));
    assert_eq!(t.calls(), 1);
}

//! `gitops trigger` attacked: by a client without the secret, by one holding a captured
//! delivery, by a flood, and by a compromised trigger writing its own state files for root's
//! `gitops status` to read. The real binary on a socket passed as systemd passes it.

use std::io::Write;
use std::net::TcpStream;
use std::os::fd::FromRawFd;
use std::time::Duration;

use crate::harness::Run;

use crate::trigger::{
    base64, hex, mac, now_unix, push_body, read_answer, signed, wait_until, Trigger, SECRET,
};

/// Send `head` and `body`, read the answer to the end: (status, body).
fn post_raw(t: &Trigger, headers: &[(&str, String)], body: &[u8]) -> (u16, String) {
    let mut bytes = format!(
        "POST /trigger HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        bytes.push_str(&format!("{name}: {value}\r\n"));
    }
    bytes.push_str("\r\n");
    let mut bytes = bytes.into_bytes();
    bytes.extend_from_slice(body);
    t.raw(&bytes)
}

#[test]
fn a_mac_captured_from_a_timestamped_form_does_not_verify_as_a_bare_body_mac() {
    let t = Trigger::start(&["--trigger-min-interval", "0s"]);
    // A signed GitLab delivery of a push to another branch: authentic, ignored.
    let body = br#"{"ref":"refs/heads/dev"}"#;
    let id = "msg_2b1f";
    let ts = now_unix().to_string();
    let frame = [id.as_bytes(), b".", ts.as_bytes(), b".", body].concat();
    let tag = mac(SECRET.as_bytes(), &frame);
    let gitlab = [
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", ts.clone()),
        ("webhook-signature", format!("v1,{}", base64(&tag))),
    ];
    assert_eq!(post_raw(&t, &gitlab, body), (202, "ignored".into()));
    // Whoever captured it sends its frame as a GitHub body with the same MAC: the branch
    // is no longer readable, the timestamp no longer checked.
    let github = [("X-Hub-Signature-256", format!("sha256={}", hex(&tag)))];
    assert_eq!(post_raw(&t, &github, &frame).0, 401, "as GitHub, at once");
    let gitea = [("X-Gitea-Signature", hex(&tag))];
    assert_eq!(post_raw(&t, &gitea, &frame).0, 401, "as Gitea, at once");
    // A generic signed request captured ten minutes ago: its window has passed, its MAC
    // over `timestamp.body` is still a MAC of some body.
    let old = (now_unix() - 600).to_string();
    let frame = [old.as_bytes(), b".", br#"{"ref":"refs/heads/main"}"#].concat();
    let tag = mac(SECRET.as_bytes(), &frame);
    let stale = [
        ("X-Gitops-Timestamp", old.clone()),
        ("X-Gitops-Signature", format!("sha256={}", hex(&tag))),
    ];
    assert_eq!(post_raw(&t, &stale, &frame[old.len() + 1..]).0, 401);
    let github = [("X-Hub-Signature-256", format!("sha256={}", hex(&tag)))];
    assert_eq!(
        post_raw(&t, &github, &frame).0,
        401,
        "a stale one as GitHub"
    );
    assert_eq!(t.calls(), 0);
    // What forges send still passes: JSON, GitHub's form encoding, and an empty body.
    for body in [
        &br#"{"ref":"refs/heads/main","n":1}"#[..],
        b"payload=%7B%7D",
        b"",
    ] {
        let github = [(
            "X-Hub-Signature-256",
            format!("sha256={}", hex(&mac(SECRET.as_bytes(), body))),
        )];
        assert_eq!(post_raw(&t, &github, body), (202, "started".into()));
    }
    assert_eq!(t.calls(), 3);
}

/// A connection to the trigger from `source` (any 127.x address is this machine's).
fn connect_from(source: [u8; 4], port: u16) -> TcpStream {
    use nix::libc;
    let address = |ip: [u8; 4], port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip),
        },
        sin_zero: [0; 8],
    };
    let size = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor this function owns, with addresses that live
    // across each call; std's TcpStream cannot choose its source address.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "{}", std::io::Error::last_os_error());
        let stream = TcpStream::from_raw_fd(fd);
        let from = address(source, 0);
        let to = address([127, 0, 0, 1], port);
        let ok = libc::bind(fd, (&raw const from).cast(), size) == 0
            && libc::connect(fd, (&raw const to).cast(), size) == 0;
        assert!(ok, "{}", std::io::Error::last_os_error());
        stream
    }
}

#[test]
fn one_host_holding_idle_connections_does_not_turn_away_the_forge() {
    let t = Trigger::start(&["--trigger-min-interval", "0s"]);
    // One host opens as many connections as the trigger serves at once, and sends nothing.
    let idle: Vec<TcpStream> = (0..32)
        .map(|_| connect_from([127, 0, 0, 1], t.port))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // The forge, from another address, within the 10 s those would hold their slots.
    let body = push_body("main", 1);
    let mut request = format!(
        "POST /trigger HTTP/1.1\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in signed("github", SECRET, &body, "forge-1") {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    let mut forge = connect_from([127, 0, 0, 2], t.port);
    forge
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    forge.write_all(request.as_bytes()).unwrap();
    assert_eq!(read_answer(&mut forge), (202, "started".into()));
    assert_eq!(t.calls(), 1);
    // The host's connections beyond its share were answered at once, not held.
    assert!(
        t.stats()["refused"]["busy"].as_u64().unwrap_or(0) >= 16,
        "{}",
        t.stats()
    );
    drop(idle);
}

#[test]
fn refused_requests_cost_no_disk_flush() {
    let strace = std::process::Command::new("strace").arg("-V").output();
    if !strace.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: strace is not installed");
        return;
    }
    let t = Trigger::start(&[]);
    let pid = t.child.as_ref().unwrap().id();
    let log = t.dir.path().join("strace");
    let mut tracer = std::process::Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=fsync,fdatasync,sync_file_range,syncfs,sync",
        ])
        .arg("-o")
        .arg(&log)
        .args(["-p", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let traced = || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("TracerPid:") && l.trim_end() != "TracerPid:\t0")
    };
    if !wait_until(Duration::from_secs(5), traced) {
        let _ = tracer.kill();
        let _ = tracer.wait();
        eprintln!("skipped: strace could not attach (ptrace not allowed here)");
        return;
    }
    // Anyone can send these, as fast as they can connect: each is counted in stats.json.
    for n in 0..20 {
        let (status, _) = post_raw(&t, &[("X-N", n.to_string())], b"{}");
        assert_eq!(status, 401);
    }
    assert_eq!(t.stats()["refused"]["unsigned"], 20, "still counted");
    // SAFETY: a signal to the tracer this test started; it detaches and flushes its log.
    unsafe { nix::libc::kill(tracer.id() as i32, nix::libc::SIGINT) };
    let _ = tracer.wait();
    let flushes = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        flushes.lines().filter(|l| l.contains("sync")).count(),
        0,
        "a flush per unauthenticated request:\n{flushes}"
    );
}

#[test]
fn what_a_compromised_trigger_writes_cannot_crash_or_fill_root_s_status() {
    let (_up, _daemon, m, _url) = crate::harness::applied_machine();
    // The trigger's own directory: its user, compromised, writes what it likes there.
    let trigger_state = m.dir.path().join("trigger-state");
    std::fs::create_dir(&trigger_state).unwrap();
    let max = u64::MAX;
    let long_time = format!("2026-12-03T07:00:00.{}Z", "0".repeat(20_000));
    let cases = [
        // Refusals that cannot be added up: status adds them up.
        format!(
            r#"{{"accepted":{max},"refused":{{"signature":{max},"unsigned":1}},
               "last":{{"time":"2026-12-03T07:00:00Z","source":"192.0.2.1","forge":"github","answer":"started"}}}}"#
        ),
        // A valid RFC 3339 time, 20 000 digits long.
        format!(
            r#"{{"accepted":1,"last":{{"time":"{long_time}","source":"192.0.2.1","forge":"github","answer":"started"}}}}"#
        ),
    ];
    for stats in cases {
        std::fs::write(trigger_state.join("stats.json"), &stats).unwrap();
        for extra in [&[][..], &["--prometheus"][..]] {
            let mut status = m.command();
            status
                .arg("status")
                .args(extra)
                .arg("--trigger-state-dir")
                .arg(&trigger_state);
            let run = Run::of(&mut status);
            assert!(
                !run.stderr.contains("panicked") && !run.stderr.contains("internal error"),
                "{extra:?}: {}",
                run.stderr
            );
            let run = run.expect(0);
            assert!(
                run.stdout.lines().all(|l| l.len() < 400),
                "{extra:?}: {}",
                &run.stdout[..run.stdout.len().min(2000)]
            );
        }
    }
}

#[test]
fn sockets_passed_beyond_the_first_do_not_leak_into_the_command() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    crate::harness::chmod(&secret, 0o600);
    let fds = dir.path().join("fds");
    let command = dir.path().join("start-pass");
    std::fs::write(
        &command,
        format!("#!/bin/sh\nls -l /proc/$$/fd > '{}'\n", fds.display()),
    )
    .unwrap();
    crate::harness::chmod(&command, 0o755);
    // Two ListenStream= lines: systemd passes fd 3 and fd 4.
    let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let second = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = first.local_addr().unwrap().port();
    let (a, b) = (first.as_raw_fd(), second.as_raw_fd());
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=2 exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_gitops"))
        .arg("trigger")
        .arg("--trigger-secret-file")
        .arg(&secret)
        .arg("--trigger-state-dir")
        .arg(dir.path().join("state"))
        .arg("--trigger-command")
        .arg(&command)
        .env("RUST_BACKTRACE", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // SAFETY: dup2 is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Moved out of the way first, so the second dup2 cannot close the first.
            let moved = |fd| nix::libc::fcntl(fd, nix::libc::F_DUPFD_CLOEXEC, 10);
            let (a2, b2) = (moved(a), moved(b));
            if a2 < 0 || b2 < 0 || nix::libc::dup2(a2, 3) < 0 || nix::libc::dup2(b2, 4) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let body = push_body("main", 1);
    let mut request = format!(
        "POST /trigger HTTP/1.1\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in signed("github", SECRET, &body, "two") {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let answer = read_answer(&mut stream);
    let _ = child.kill();
    let run = Run::within(child, Duration::from_secs(10));
    assert_eq!(answer, (202, "started".into()), "{}", run.stderr);
    let open = std::fs::read_to_string(&fds).unwrap();
    assert!(
        !open.contains("socket:"),
        "the command holds a socket:\n{open}"
    );
    assert!(
        run.stderr.contains("only the first is served"),
        "{}",
        run.stderr
    );
}

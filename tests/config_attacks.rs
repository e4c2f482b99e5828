//! A bad setting is recorded wherever it comes from, and never creates a state directory;
//! passwords with any character stay hidden; a hostile server cannot repaint the terminal;
//! config files never hang or fill the memory; messages name where a value came from; the man
//! pages list the variables.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use crate::harness::{everything_shown, served, Machine, Run};
use crate::support::{GitDaemon, Sshd, Upstream};

#[test]
fn a_bad_variable_is_recorded_and_names_the_variable() {
    let (_up, _daemon, url) = served();
    let m = Machine::new();
    m.sync(&url, &[]).expect(0);
    m.run(&["status"]).expect(0);
    // As systemd's EnvironmentFile= passes them: in the process environment, with no file.
    for (var, value) in [
        ("GITOPS_APPLY_TIMEOUT", "abc"),
        ("GITOPS_APPLY", "sometimes"),
        ("GITOPS_ALLOW_REWIND", "maybe"),
    ] {
        let mut cmd = m.command();
        cmd.env("GITOPS_REPO_URL", &url)
            .env(var, value)
            .args(["--config", "/dev/null", "sync"]);
        let run = Run::of(&mut cmd).expect(2);
        let line = run.error_line();
        assert!(
            line.contains(&format!(
                "invalid value '{value}' for {var} (from the environment or the env file)"
            )),
            "{line}"
        );
        assert!(!line.contains("'--"), "blames a flag never typed: {line}");
        assert_eq!(
            m.state_json()["last_pass"]["outcome"],
            "config-error",
            "{var}"
        );
        assert!(m.state_json()["last_pass"]["error"]
            .as_str()
            .unwrap()
            .contains(var));
        let status = m.run(&["status"]).expect(1);
        assert!(status.stdout.contains(var), "{}", status.stdout);
        m.sync(&url, &[]).expect(0);
    }

    // The state directory from the raw arguments, either spelling, when the variable says
    // another.
    for form in ["split", "joined"] {
        let elsewhere = Machine::new();
        elsewhere.sync(&url, &[]).expect(0);
        let dir = elsewhere.state.display().to_string();
        let mut cmd = m.command();
        cmd.env("GITOPS_LOCK_TIMEOUT", "soon")
            .args(["sync", "--repo-url", &url]);
        if form == "split" {
            cmd.args(["--state-dir", &dir]);
        } else {
            cmd.arg(format!("--state-dir={dir}"));
        }
        Run::of(&mut cmd).expect(2).error_line();
        assert_eq!(
            elsewhere.state_json()["last_pass"]["outcome"],
            "config-error",
            "{form}"
        );
    }

    // From the env file too, with the state directory the file names.
    let other = Machine::new();
    other.sync(&url, &[]).expect(0);
    std::fs::write(
        &m.config,
        format!(
            "GITOPS_STATE_DIR={}\nGITOPS_FETCH_TIMEOUT=1 fortnight\n",
            other.state.display()
        ),
    )
    .unwrap();
    let mut cmd = m.command();
    cmd.env_remove("GITOPS_STATE_DIR")
        .args(["sync", "--repo-url", &url]);
    let line = Run::of(&mut cmd).expect(2).error_line();
    assert!(
        line.contains("for GITOPS_FETCH_TIMEOUT (from the environment or the env file)"),
        "{line}"
    );
    assert_eq!(other.state_json()["last_pass"]["outcome"], "config-error");

    // A value typed on the command line is still blamed on its flag.
    std::fs::write(&m.config, "").unwrap();
    let line = m
        .sync(&url, &["--apply-timeout", "abc"])
        .expect(2)
        .error_line();
    assert!(line.contains("'--apply-timeout <DURATION>'"), "{line}");
}

#[test]
fn a_config_error_never_creates_a_state_directory() {
    let (_up, _daemon, url) = served();
    let default_existed = std::path::Path::new("/var/lib/gitops").exists();
    // A bad value in the environment, and an env file that does not load (Latin-1): neither
    // may create the state directory it would have recorded into.
    let m = Machine::new();
    let mut cmd = m.command();
    cmd.env("GITOPS_APPLY_TIMEOUT", "abc")
        .args(["sync", "--repo-url", &url]);
    Run::of(&mut cmd).expect(2).error_line();
    assert!(
        !m.state.exists(),
        "a config error created {}",
        m.state.display()
    );

    std::fs::write(
        &m.config,
        [
            format!("GITOPS_STATE_DIR={}\n", m.state.display()).as_bytes(),
            b"GITOPS_BRANCH=caf\xe9\n",
        ]
        .concat(),
    )
    .unwrap();
    // Without GITOPS_STATE_DIR this pass would fall back to /var/lib/gitops if it recorded at
    // all: run it only where that directory does not exist, so no test ever writes there.
    // (tests/env_fds_checkout.rs proves the rule with a state directory of the test's own.)
    if !default_existed {
        let mut cmd = m.command();
        cmd.env_remove("GITOPS_STATE_DIR")
            .args(["sync", "--repo-url", &url]);
        let line = Run::of(&mut cmd).expect(2).error_line();
        assert!(line.contains("not UTF-8"), "{line}");
        assert!(!m.state.exists());
        assert!(
            !std::path::Path::new("/var/lib/gitops").exists(),
            "a config error created the default state directory"
        );
    }
    // Nothing recorded: status says so and is not healthy.
    std::fs::write(&m.config, "").unwrap();
    m.run(&["status"]).expect(1);
}

#[test]
fn a_password_with_any_character_is_never_shown() {
    // Applied through file:// URLs (the entry point gets GITOPS_REPO_URL and REPO_URL).
    let up = Upstream::new();
    up.commit(
        &[(
            "run.sh",
            "#!/bin/sh\necho \"url=$GITOPS_REPO_URL alias=$REPO_URL\" >> \"$OUT/runs\"\n",
        )],
        "init",
    );
    let bare = up.bare().display().to_string();
    for password in [
        "S3c#retPW",
        "S3c?retPW",
        "S3c'retPW",
        "S3c/retPW",
        "S3c@re:tPW",
    ] {
        let url = format!("file://deploy:{password}@{bare}");
        let m = Machine::new();
        let mut cmd = m.command();
        cmd.env("REPO_URL", &url).arg("sync");
        let run = Run::of(&mut cmd).expect(0);
        let mut all = everything_shown(&m, &run);
        all.push_str(&m.runs().join("\n"));
        assert!(
            !all.contains("retPW") && !all.contains("re:tPW"),
            "{password}: {all}"
        );
        let shown = format!("file://deploy:***@{bare}");
        assert_eq!(
            m.runs(),
            [format!("url={shown} alias={shown}")],
            "{password}"
        );
        assert_eq!(m.state_json()["repo_url"], shown);

        // A repository that is not there: the error quotes the URL.
        let missing = format!("file://deploy:{password}@{bare}.missing");
        let m = Machine::new();
        let run = m.sync(&missing, &[]);
        assert_ne!(run.code, 0, "{password}");
        run.error_line();
        let all = everything_shown(&m, &run);
        assert!(
            !all.contains("retPW") && !all.contains("re:tPW"),
            "{password}: {all}"
        );
    }

    // ssh:// and git:// URLs, against real servers.
    let sshd = Sshd::start();
    let key = sshd.key().display().to_string();
    let known = sshd.known_hosts().display().to_string();
    for password in ["S3c#retPW", "S3c?retPW", "S3c'retPW", "S3c/ret@PW:x"] {
        let url =
            sshd.url(&up.srv().join("no-such-repo.git"))
                .replacen('@', &format!(":{password}@"), 1);
        let m = Machine::new();
        let run = m.sync(&url, &["--ssh-key", &key, "--known-hosts", &known]);
        assert_ne!(run.code, 0, "{url}");
        let all = everything_shown(&m, &run);
        assert!(
            !all.contains("retPW") && !all.contains("ret@PW"),
            "{password}: {all}"
        );
    }
    let (_up2, daemon, _) = served();
    for password in ["S3c#retPW", "S3c/retPW"] {
        let url = format!("git://u:{password}@127.0.0.1:{}/missing.git", daemon.port());
        let m = Machine::new();
        let run = m.sync(&url, &[]);
        assert_ne!(run.code, 0, "{url}");
        let all = everything_shown(&m, &run);
        assert!(!all.contains("retPW"), "{password}: {all}");
    }
}

/// A git:// server that answers every request with a pkt-line `ERR` carrying `message`.
fn hostile_server(message: Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 512];
            let _ = stream.read(&mut request);
            let mut payload = b"ERR ".to_vec();
            payload.extend_from_slice(&message);
            let _ = write!(stream, "{:04x}", payload.len() + 4);
            let _ = stream.write_all(&payload);
        }
    });
    port
}

#[test]
fn a_hostile_server_cannot_repaint_the_terminal_or_flood_the_state() {
    let mut message = b"\x1b[31mred\x1b[0m\rgitops: up to date\n\x07\x1b]0;owned\x07 ".to_vec();
    message.extend(std::iter::repeat_n(b'A', 65000));
    message.extend_from_slice(b" the end");
    let port = hostile_server(message);
    let m = Machine::new();
    let url = format!("git://127.0.0.1:{port}/r.git");
    let run = m.sync(&url, &[]).expect(3);
    let line = run.error_line();
    assert!(line.contains("red"), "the server's words are kept: {line}");
    assert!(
        line.contains("the end"),
        "the end of a long message is kept: {line}"
    );
    assert!(
        line.chars().count() < 1100,
        "{} characters",
        line.chars().count()
    );
    let all = everything_shown(&m, &run);
    for c in all.chars() {
        assert!(
            !c.is_control() || c == '\n',
            "control character {c:?} shown: {all:?}"
        );
    }
    let state = std::fs::metadata(m.state.join("state.json")).unwrap().len();
    assert!(state < 4096, "state.json is {state} bytes");
}

#[test]
fn config_and_known_hosts_must_be_regular_files_and_never_hang() {
    let (_up, _daemon, url) = served();
    let m = Machine::new();
    let fifo = m.dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let fifo_s = fifo.to_str().unwrap();
    let dir_s = m.dir.path().to_str().unwrap();
    for (args, expect) in [
        (
            vec!["--config", fifo_s, "sync", "--repo-url", &url],
            "not a regular file",
        ),
        (vec!["--config", fifo_s, "status"], "not a regular file"),
        (
            vec!["--config", "/dev/zero", "status"],
            "not a regular file",
        ),
        (vec!["--config", dir_s, "status"], "a directory"),
        (
            vec!["sync", "--repo-url", &url, "--known-hosts", fifo_s],
            "known_hosts file",
        ),
        (
            vec!["sync", "--repo-url", &url, "--known-hosts", dir_s],
            "a directory",
        ),
    ] {
        let run = Run::within(m.spawn(&args), Duration::from_secs(10)).expect(2);
        let line = run.error_line();
        assert!(line.contains(expect), "{args:?}: {line}");
    }
    let big = m.dir.path().join("big.env");
    let mut text = "# padding\n".repeat(110_000);
    text.push_str("GITOPS_BRANCH=main\n");
    std::fs::write(&big, text).unwrap();
    let run = Run::within(
        m.spawn(&["--config", big.to_str().unwrap(), "status"]),
        Duration::from_secs(10),
    )
    .expect(2);
    assert!(
        run.error_line().contains("too large to be an env file"),
        "{}",
        run.stderr
    );
    // `--config /dev/null` stays the way to say "no env file".
    Run::of(
        m.command()
            .args(["--config", "/dev/null", "sync", "--repo-url", &url]),
    )
    .expect(0);
}

#[test]
fn durations_read_and_shown_like_systemd() {
    let (_up, _daemon, url) = served();
    let m = Machine::new();
    m.sync(&url, &["--fetch-timeout", "1w", "--lock-timeout", "1us"])
        .expect(0);
    // Hold the lock as another pass would: a sub-second wait is said as such, not as "0s".
    let lock = std::fs::File::open(m.state.join("lock")).unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
    let run = m.sync(&url, &["--lock-timeout", "500ms"]).expect(75);
    assert!(run.stderr.contains("waiting up to 500ms"), "{}", run.stderr);
    assert!(
        run.error_line().contains("(waited 500ms)"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("up to 0s"), "{}", run.stderr);
    drop(held);
}

#[test]
fn man_pages_list_the_variables_and_no_help_page() {
    let m = Machine::new();
    let out = m.dir.path().join("docs");
    m.run(&["generate-docs", out.to_str().unwrap()]).expect(0);
    let man = out.join("man/man1");
    let main = std::fs::read_to_string(man.join("gitops.1")).unwrap();
    assert!(
        !main.contains("gitops\\-help") && !main.contains("gitops-help"),
        "{main}"
    );
    assert!(!man.join("gitops-help.1").exists());
    let sync = std::fs::read_to_string(man.join("gitops-sync.1")).unwrap();
    for page in [&main, &sync] {
        assert!(page.contains(".SH ENVIRONMENT"));
        for var in [
            "GITOPS_REPO_URL",
            "GITOPS_APPLY_TIMEOUT",
            "GITOPS_STATE_DIR",
            "GITOPS_CONFIG",
            "REPO_URL",
            "/etc/gitops/gitops.env",
        ] {
            assert!(page.contains(var), "{var} missing");
        }
    }
    let status = std::fs::read_to_string(man.join("gitops-status.1")).unwrap();
    assert!(status.contains("GITOPS_STATE_DIR") && !status.contains("GITOPS_APPLY_TIMEOUT"));
}

#[test]
fn a_commit_subject_cannot_repaint_the_terminal() {
    let up = Upstream::new();
    let subject = format!("\x1b[2J\x1b[Hall good\x07 {}", "B".repeat(5000));
    up.commit(&[("run.sh", "#!/bin/sh\nexit 1\n")], &subject);
    let daemon = GitDaemon::serve(&up.srv());
    let m = Machine::new();
    let run = m.sync(&daemon.url("config.git"), &[]).expect(1);
    let all = everything_shown(&m, &run);
    assert!(all.contains("all good"), "the subject is shown: {all}");
    for c in all.chars() {
        assert!(
            !c.is_control() || c == '\n',
            "control character {c:?} shown: {all:?}"
        );
    }
    let state = std::fs::metadata(m.state.join("state.json")).unwrap().len();
    assert!(state < 4096, "state.json is {state} bytes");
}

//! Absurd durations are usage errors, credentials never leave the program, configuration does
//! what it says, and failures keep the server's own reason.

use crate::harness::{everything_shown, is_root, served, Machine, Run, Tmpfs, RECORDING_RUN_SH};
use crate::support::{GitDaemon, HttpServer, Sshd, Upstream};

#[test]
fn absurd_durations_are_usage_errors_naming_the_maximum() {
    let (_up, _daemon, url) = served();
    let m = Machine::new();
    for args in [
        ["--fetch-timeout", "18446744073709551615s"],
        ["--lock-timeout", "9223372036854775807"],
        ["--apply-timeout", "9223372036854775807s"],
        ["--apply-timeout", "366d"],
    ] {
        let run = m.sync(&url, &args).expect(2);
        let line = run.error_line();
        assert!(line.contains("at most 365d"), "{args:?}: {line}");
        assert!(line.contains(args[0]), "{args:?} names its option: {line}");
        assert!(m.runs().is_empty(), "{args:?}: run.sh never runs");
        assert_eq!(m.state_bytes(), None, "{args:?}: nothing recorded");
    }
    // The same bound for a value from the env file.
    std::fs::write(&m.config, "GITOPS_APPLY_TIMEOUT=100000d\n").unwrap();
    let line = m.sync(&url, &[]).expect(2).error_line();
    assert!(line.contains("at most 365d"), "{line}");
    // A flag beats the variable, even an invalid one; the maximum itself is accepted.
    m.sync(&url, &["--apply-timeout", "365d", "--lock-timeout", "365d"])
        .expect(0);
    assert_eq!(m.runs().len(), 1);
}

#[test]
fn a_password_in_a_file_or_ssh_url_is_never_shown() {
    let m = Machine::new();
    let secret = "pa55-file-w0rd";
    let url = format!(
        "file://deploy:{secret}@{}/missing.git",
        m.dir.path().display()
    );
    let run = m.sync(&url, &[]).expect(3);
    let line = run.error_line();
    assert!(line.contains("deploy:***@"), "{line}");
    let all = everything_shown(&m, &run);
    assert!(!all.contains(secret), "{all}");

    let up = Upstream::new();
    up.commit(&[("run.sh", RECORDING_RUN_SH)], "init");
    let sshd = Sshd::start();
    let secret = "pa55-ssh-w0rd";
    let url = sshd
        .url(&up.dir_missing())
        .replacen("@", &format!(":{secret}@"), 1);
    let m = Machine::new();
    let key = sshd.key().display().to_string();
    let known = sshd.known_hosts().display().to_string();
    let run = m
        .sync(&url, &["--ssh-key", &key, "--known-hosts", &known])
        .expect(3);
    run.error_line();
    let all = everything_shown(&m, &run);
    assert!(!all.contains(secret), "{all}");
    assert!(all.contains(":***@127.0.0.1"), "{all}");
}

/// An upstream path that does not exist, for the ssh test.
trait MissingPath {
    fn dir_missing(&self) -> std::path::PathBuf;
}

impl MissingPath for Upstream {
    fn dir_missing(&self) -> std::path::PathBuf {
        self.srv().join("no-such-repo.git")
    }
}

#[test]
fn an_empty_variable_means_unset_and_a_flag_beats_it() {
    let (_up, _daemon, url) = served();
    let m = Machine::new();
    let elsewhere = m.dir.path().join("elsewhere");
    let mut cmd = m.command();
    cmd.env("GITOPS_CHECKOUT", "")
        .env("GITOPS_BRANCH", "")
        .env("GITOPS_ENTRYPOINT", "")
        .env("GITOPS_APPLY_TIMEOUT", "")
        .args(["sync", "--repo-url", &url, "--checkout"])
        .arg(&elsewhere);
    Run::of(&mut cmd).expect(0);
    assert!(elsewhere.join("run.sh").exists(), "the flag's checkout");
    assert_eq!(m.runs().len(), 1);

    // Empty in the env file: unset too, the same for every option.
    let m = Machine::new();
    std::fs::write(
        &m.config,
        format!(
            "GITOPS_REPO_URL={url}\nGITOPS_BRANCH=\nGITOPS_ENTRYPOINT=\nGITOPS_LOCK_TIMEOUT=\n"
        ),
    )
    .unwrap();
    Run::of(m.command().arg("sync")).expect(0);
    assert_eq!(m.state_json()["branch"], "main");

    // Empty in the process, set in the file: the file's value applies.
    let m = Machine::new();
    std::fs::write(
        &m.config,
        format!("GITOPS_REPO_URL={url}\nGITOPS_BRANCH=nope\n"),
    )
    .unwrap();
    let run = Run::of(m.command().env("GITOPS_BRANCH", "").arg("sync")).expect(3);
    assert!(
        run.error_line().contains("no branch \"nope\""),
        "{}",
        run.stderr
    );
}

#[test]
fn the_env_file_warns_about_typos_accepts_a_bom_and_names_a_bad_encoding() {
    let (_up, _daemon, url) = served();
    let m = Machine::new();
    let mut text = b"\xEF\xBB\xBF".to_vec();
    text.extend(format!("GITOPS_REPO_URL={url}\nGITOPS_BRANHC=main\n").as_bytes());
    std::fs::write(&m.config, &text).unwrap();
    let run = Run::of(m.command().arg("sync")).expect(0);
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("gitops: warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    assert!(
        warnings[0].contains("GITOPS_BRANHC")
            && warnings[0].contains("did you mean GITOPS_BRANCH?"),
        "{}",
        warnings[0]
    );
    assert_eq!(m.runs().len(), 1, "the first key, after the BOM, was read");

    let applied = m.applied();
    std::fs::write(&m.config, b"GITOPS_BRANCH=caf\xE9\n").unwrap();
    let run = Run::of(m.command().args(["sync", "--repo-url", &url])).expect(2);
    let line = run.error_line();
    assert!(
        line.contains("not UTF-8") && !line.contains("create it"),
        "{line}"
    );
    // Recorded as a configuration error (status turns unhealthy); what is applied stays.
    let state = m.state_json();
    assert_eq!(state["last_pass"]["outcome"], "config-error");
    assert_eq!(m.applied(), applied);
}

#[track_caller]
fn says_the_server_reason(m: &Machine, run: &Run, words: &str) {
    let line = run.error_line();
    assert!(line.contains(words), "{line}");
    assert!(!line.contains("fill whole buffer"), "{line}");
    assert!(line.contains("check the repository path"), "{line}");
    let recorded = m.state_json()["last_pass"]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(recorded.contains(words), "{recorded}");
    let status = m.run(&["status"]);
    assert!(status.stdout.contains(words), "{}", status.stdout);
    assert_eq!(
        run.stderr.lines().count(),
        1,
        "the server's words are in the error line, not beside it: {}",
        run.stderr
    );
}

#[test]
fn ssh_and_file_failures_keep_the_servers_words() {
    let up = Upstream::new();
    up.commit(&[("run.sh", RECORDING_RUN_SH)], "init");
    let sshd = Sshd::start();
    let key = sshd.key().display().to_string();
    let known = sshd.known_hosts().display().to_string();
    let m = Machine::new();
    let run = m
        .sync(
            &sshd.url(&up.dir_missing()),
            &["--ssh-key", &key, "--known-hosts", &known],
        )
        .expect(3);
    says_the_server_reason(&m, &run, "does not appear to be a git repository");

    // A directory that is not a repository, served by upload-pack over file://.
    let m = Machine::new();
    let fake = m.dir.path().join("fake.git");
    std::fs::create_dir_all(fake.join("objects")).unwrap();
    std::fs::create_dir_all(fake.join("refs")).unwrap();
    std::fs::write(fake.join("HEAD"), "garbage\n").unwrap();
    let run = m.sync(&format!("file://{}", fake.display()), &[]).expect(3);
    says_the_server_reason(&m, &run, "does not appear to be a git repository");

    // A path that does not exist at all.
    let m = Machine::new();
    let missing = m.dir.path().join("missing.git");
    let run = m
        .sync(&format!("file://{}", missing.display()), &[])
        .expect(3);
    let line = run.error_line();
    assert!(
        line.contains(&missing.display().to_string())
            && line.contains("No such file")
            && line.contains("check the repository path"),
        "{line}"
    );
}

#[test]
fn an_http_error_names_its_request_once() {
    let up = Upstream::new();
    up.commit(&[("run.sh", RECORDING_RUN_SH)], "init");
    let http = HttpServer::serve(&up.srv(), None);
    let m = Machine::new();
    let run = m.sync(&http.url("missing.git"), &[]).expect(3);
    let line = run.error_line();
    assert!(line.contains("404"), "{line}");
    assert!(line.contains("check the repository path"), "{line}");
    assert_eq!(line.matches("info/refs").count(), 1, "{line}");

    // Nobody listening: reqwest's request error comes wrapped in gix's, which repeats it.
    let port = crate::support::free_port();
    let run = m
        .sync(&format!("http://127.0.0.1:{port}/config.git"), &[])
        .expect(3);
    let line = run.error_line();
    assert_eq!(line.matches("info/refs").count(), 1, "{line}");
    assert!(line.contains("Connection refused"), "{line}");
}

#[test]
fn a_full_disk_says_so() {
    // A small tmpfs as the state directory: mounting needs root, as CI has.
    if !is_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let up = Upstream::new();
    // Random bytes, hex-encoded, compress to about half: a pack of ~300 KiB cannot fit in the
    // 256 KiB the state directory gets.
    let mut random = vec![0u8; 300_000];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").unwrap(),
        &mut random,
    )
    .unwrap();
    let noise: String = random.iter().map(|b| format!("{b:02x}")).collect();
    up.commit(&[("run.sh", RECORDING_RUN_SH), ("big", &noise)], "big");
    let daemon = GitDaemon::serve(&up.srv());
    let m = Machine::new();
    std::fs::create_dir(&m.state).unwrap();
    let Some(_disk) = Tmpfs::mount(&m.state, "256k") else {
        return;
    };
    let run = m.sync(&daemon.url("config.git"), &[]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    let line = run.error_line();
    assert!(line.contains("full"), "{line}");
    assert!(!line.contains("--repo-url"), "{line}");
    assert!(m.runs().is_empty());
}

#[test]
fn a_failed_apply_says_why_once() {
    let up = Upstream::new();
    up.commit(
        &[("run.sh", "#!/bin/sh\necho doing things\nexit 7\n")],
        "fails",
    );
    let daemon = GitDaemon::serve(&up.srv());
    let m = Machine::new();
    let run = m.sync(&daemon.url("config.git"), &[]).expect(1);
    let line = run.error_line();
    assert!(line.contains("run.sh exited with status 7"), "{line}");
    assert_eq!(
        run.stderr.matches("exited with status 7").count(),
        1,
        "{}",
        run.stderr
    );
    let log = m.state_json()["pending"]["log"]
        .as_str()
        .unwrap()
        .to_string();
    let text = std::fs::read_to_string(log).unwrap();
    assert!(
        text.contains("doing things") && text.contains("run.sh exited with status 7"),
        "{text}"
    );

    // The same for a reason found before running anything.
    up.commit(&[("other", "x")], "no entry point here");
    let run = m
        .sync(&daemon.url("config.git"), &["--entrypoint", "absent.sh"])
        .expect(1);
    run.error_line();
    assert_eq!(
        run.stderr.matches("absent.sh: not found").count(),
        1,
        "{}",
        run.stderr
    );
}

//! install-units --trigger into a temporary root: the socket, service and path units, their
//! drop-ins, the trigger's env file, the secret (written once, shown once, never again), the
//! image root that gets no secret, bad values, removal.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::harness::Run;
use crate::install_units::{mode, one, unit_entries, Live, Root};

const SOCKET: &str = "etc/systemd/system/gitops-trigger.socket";
const SERVICE: &str = "etc/systemd/system/gitops-trigger.service";
const PATH: &str = "etc/systemd/system/gitops-trigger.path";
const SOCKET_WANTS: &str = "etc/systemd/system/sockets.target.wants/gitops-trigger.socket";
const PATH_WANTS: &str = "etc/systemd/system/paths.target.wants/gitops-trigger.path";
const SOCKET_DROPIN: &str = "etc/systemd/system/gitops-trigger.socket.d/install-units.conf";
const SERVICE_DROPIN: &str = "etc/systemd/system/gitops-trigger.service.d/install-units.conf";
const ENV: &str = "etc/gitops/trigger.env";
const SECRET: &str = "etc/gitops/trigger.secret";
const MANIFEST: &str = "etc/gitops/install-units.manifest";

fn shipped(unit: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("units")
            .join(unit),
    )
    .unwrap()
}

fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// Every run of 64 hex digits in `text`: a secret that should not be there.
fn hex64(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_hexdigit())
        .filter(|w| w.len() == 64)
        .map(str::to_string)
        .collect()
}

/// install-units on a live root with stdout on a terminal (util-linux `script`), as an
/// operator at a shell runs it: the only way the secret is ever shown.
fn install_on_a_terminal(l: &Live, args: &[&str]) -> Run {
    let Some(script) = ["/usr/bin/script", "/bin/script"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        panic!("script is missing: apt-get install bsdutils (util-linux; CI has it)");
    };
    let inner = l.command(args);
    let mut line = String::new();
    for word in std::iter::once(inner.get_program()).chain(inner.get_args()) {
        let word = word.to_str().unwrap();
        line.push_str(&format!("'{}' ", word.replace('\'', "'\\''")));
    }
    let mut cmd = Command::new(script);
    for (key, value) in inner.get_envs() {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    cmd.args(["-qec", line.trim_end(), "/dev/null"])
        .stdin(Stdio::null());
    let mut run = Run::of(&mut cmd);
    run.stdout = run.stdout.replace('\r', "");
    run
}

#[test]
fn writes_the_units_drop_ins_env_file_and_links_into_an_image_without_a_secret() {
    let r = Root::new();
    let run = r
        .install(&[
            "--trigger",
            "--branch",
            "prod",
            "--trigger-path",
            "/hooks/gitops",
            "--trigger-min-interval",
            "30s",
            "--trigger-allow",
            "10.0.0.0/8, 2001:db8::/32",
            "--trigger-listen",
            "192.0.2.5:9000",
            "--trigger-secret-file",
            "/etc/gitops/hook.key",
        ])
        .expect(0);
    for (path, unit) in [
        (SOCKET, "gitops-trigger.socket"),
        (SERVICE, "gitops-trigger.service"),
        (PATH, "gitops-trigger.path"),
    ] {
        assert_eq!(r.read(path), shipped(unit), "{path} is the one in units/");
        assert_eq!(mode(&r.path(path)), 0o644, "{path}");
    }
    assert_eq!(
        std::fs::read_link(r.path(SOCKET_WANTS)).unwrap(),
        Path::new("/etc/systemd/system/gitops-trigger.socket")
    );
    assert_eq!(
        std::fs::read_link(r.path(PATH_WANTS)).unwrap(),
        Path::new("/etc/systemd/system/gitops-trigger.path")
    );
    assert_eq!(mode(&r.path(ENV)), 0o600);
    let env = r.read(ENV);
    for line in [
        "GITOPS_TRIGGER_PATH=/hooks/gitops",
        "GITOPS_TRIGGER_MIN_INTERVAL=30s",
        "GITOPS_TRIGGER_ALLOW=\"10.0.0.0/8 2001:db8::/32\"",
        "GITOPS_BRANCH=prod",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} missing from\n{env}");
    }
    assert!(
        !env.contains("GITOPS_REPO_URL"),
        "the pass's settings stay out:\n{env}"
    );
    let socket = unit_entries(&r.read(SOCKET_DROPIN));
    assert_eq!(
        socket
            .iter()
            .filter(|(s, k, _)| s == "Socket" && k == "ListenStream")
            .map(|(_, _, v)| v.as_str())
            .collect::<Vec<_>>(),
        ["", "192.0.2.5:9000"],
        "the packaged address is reset, then replaced"
    );
    assert_eq!(
        socket
            .iter()
            .filter(|(s, k, _)| s == "Socket" && k == "IPAddressAllow")
            .map(|(_, _, v)| v.as_str())
            .collect::<Vec<_>>(),
        ["", "10.0.0.0/8 2001:db8::/32"]
    );
    assert!(r
        .read(SOCKET_DROPIN)
        .contains("ConditionPathExists=\nConditionPathExists=/etc/gitops/hook.key\n"));
    assert!(
        r.read(SERVICE_DROPIN)
            .contains("LoadCredential=\nLoadCredential=trigger-secret:/etc/gitops/hook.key\n"),
        "{}",
        r.read(SERVICE_DROPIN)
    );
    let manifest = r.read(MANIFEST);
    for path in [
        SOCKET,
        SERVICE,
        PATH,
        SOCKET_WANTS,
        PATH_WANTS,
        SOCKET_DROPIN,
        SERVICE_DROPIN,
        ENV,
    ] {
        assert!(
            manifest.contains(path),
            "{path} is not tracked:\n{manifest}"
        );
    }
    // Not the running system: an image. A secret written here would be every clone's.
    assert!(!exists(&r.path("etc/gitops/hook.key")));
    assert!(
        run.stderr.contains("hook.key was not written")
            && run.stderr.contains("shared by every machine"),
        "{}",
        run.stderr
    );
    // Again: nothing changes, nothing is written.
    let again = r
        .install(&[
            "--trigger",
            "--branch",
            "prod",
            "--trigger-path",
            "/hooks/gitops",
            "--trigger-min-interval",
            "30s",
            "--trigger-allow",
            "10.0.0.0/8,2001:db8::/32",
            "--trigger-listen",
            "192.0.2.5:9000",
            "--trigger-secret-file",
            "/etc/gitops/hook.key",
        ])
        .expect(0);
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);
}

#[test]
fn defaults_need_no_drop_in_and_no_env_file() {
    let r = Root::new();
    r.install(&["--trigger", "--trigger-listen", "[::]:9419"])
        .expect(0);
    assert!(exists(&r.path(SOCKET)) && exists(&r.path(SOCKET_WANTS)));
    for absent in [SOCKET_DROPIN, SERVICE_DROPIN, ENV] {
        assert!(!exists(&r.path(absent)), "{absent} written for defaults");
    }
}

#[test]
fn the_secret_is_written_once_shown_once_and_a_second_run_changes_nothing() {
    let l = Live::new();
    let run = install_on_a_terminal(&l, &["--trigger", "--now"]).expect(0);
    let secret = std::fs::read_to_string(l.r.path(SECRET)).unwrap();
    assert_eq!(secret.len(), 64, "32 bytes in hex, no newline: {secret:?}");
    assert!(secret.bytes().all(|b| b.is_ascii_hexdigit()));
    let meta = std::fs::metadata(l.r.path(SECRET)).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    assert_eq!(
        meta.uid(),
        nix::unistd::geteuid().as_raw(),
        "owned by who ran it (root)"
    );
    assert_eq!(mode(&l.r.path("etc/gitops")), 0o700);
    assert_eq!(
        run.stdout.matches(&secret).count(),
        1,
        "shown exactly once:\n{}",
        run.stdout
    );
    assert!(!run.stderr.contains(&secret));
    assert_eq!(
        l.calls(),
        [
            "daemon-reload",
            "enable --now gitops.timer",
            "try-restart gitops-trigger.socket",
            "enable --now gitops-trigger.socket gitops-trigger.path",
        ]
    );

    // Never again, whatever the run: the same files, the same secret, not a word of it.
    let again = install_on_a_terminal(&l, &["--trigger", "--now"]).expect(0);
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);
    assert!(hex64(&again.stdout).is_empty(), "{}", again.stdout);
    assert_eq!(std::fs::read_to_string(l.r.path(SECRET)).unwrap(), secret);
    // Nothing changed: no restart of a socket that may be serving a request right now.
    assert_eq!(
        l.calls(),
        [
            "daemon-reload",
            "enable --now gitops.timer",
            "enable --now gitops-trigger.socket gitops-trigger.path",
        ]
    );
    let dry =
        install_on_a_terminal(&l, &["--trigger", "--dry-run", "--trigger-path", "/x"]).expect(0);
    assert!(hex64(&dry.stdout).is_empty(), "{}", dry.stdout);
}

#[test]
fn off_a_terminal_the_secret_is_written_but_not_shown() {
    let l = Live::new();
    let run = l.install(&["--trigger"]).expect(0);
    let secret = std::fs::read_to_string(l.r.path(SECRET)).unwrap();
    assert_eq!(secret.len(), 64);
    let shown = format!("{}{}", run.stdout, run.stderr);
    assert!(!shown.contains(&secret), "{shown}");
    assert!(
        run.stdout
            .contains("not shown because stdout is not a terminal")
            && run.stdout.contains("cat /etc/gitops/trigger.secret"),
        "{}",
        run.stdout
    );
}

#[test]
fn an_existing_secret_is_kept_and_never_shown() {
    let l = Live::new();
    let mine = "an-administrators-own-webhook-secret-0123456789";
    std::fs::create_dir_all(l.r.path("etc/gitops")).unwrap();
    std::fs::write(l.r.path(SECRET), mine).unwrap();
    std::fs::set_permissions(l.r.path(SECRET), std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = install_on_a_terminal(&l, &["--trigger"]).expect(0);
    assert_eq!(std::fs::read_to_string(l.r.path(SECRET)).unwrap(), mine);
    // On a terminal stderr is the same terminal: all of it is in stdout.
    assert!(!run.stdout.contains(mine), "{}", run.stdout);
    assert!(hex64(&run.stdout).is_empty(), "{}", run.stdout);
    // Its mode is the administrator's to fix: said, not changed behind their back.
    assert!(
        run.stdout
            .contains("readable by group or others: chmod 600 it"),
        "{}",
        run.stdout
    );
    assert_eq!(mode(&l.r.path(SECRET)), 0o644);

    // Too short for the trigger: said, without a character of it.
    let short = Live::new();
    std::fs::create_dir_all(short.r.path("etc/gitops")).unwrap();
    std::fs::write(short.r.path(SECRET), "hunter2\n").unwrap();
    std::fs::set_permissions(short.r.path(SECRET), std::fs::Permissions::from_mode(0o600)).unwrap();
    let run = short.install(&["--trigger"]).expect(0);
    assert!(
        run.stderr.contains("shorter than 16 characters"),
        "{}",
        run.stderr
    );
    assert!(!format!("{}{}", run.stdout, run.stderr).contains("hunter2"));

    // A directory where the secret should be is refused, and nothing is written.
    let other = Live::new();
    std::fs::create_dir_all(other.r.path(SECRET)).unwrap();
    let run = other.install(&["--trigger"]).expect(2);
    assert!(
        run.error_line().contains("not a regular file"),
        "{}",
        run.stderr
    );
    assert!(!exists(&other.r.path(SOCKET)) && !exists(&other.r.path(MANIFEST)));
}

#[test]
fn a_dry_run_writes_nothing_and_shows_no_secret() {
    let l = Live::new();
    let run = l
        .install(&["--trigger", "--dry-run", "--trigger-allow", "192.0.2.0/24"])
        .expect(0);
    assert!(
        run.stdout
            .contains("trigger.secret (mode 0600): a new random webhook secret"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("GITOPS_TRIGGER_ALLOW=192.0.2.0/24"),
        "{}",
        run.stdout
    );
    assert!(hex64(&run.stdout).is_empty());
    assert!(
        std::fs::read_dir(&l.r.root)
            .unwrap()
            .all(|e| e.unwrap().file_name() == "run"),
        "a dry run wrote something"
    );
    assert!(l.calls().is_empty());
}

#[test]
fn secrets_in_an_edited_trigger_env_stay_out_of_the_diff() {
    let r = Root::new();
    r.install(&["--trigger", "--trigger-path", "/a"]).expect(0);
    std::fs::write(
        r.path(ENV),
        format!("{}SOME_TOKEN=t0p-s3cret\n", r.read(ENV)),
    )
    .unwrap();
    let run = r.install(&["--trigger", "--trigger-path", "/b"]).expect(2);
    assert!(run.error_line().contains("--force"), "{}", run.stderr);
    assert!(!run.stderr.contains("t0p-s3cret"), "{}", run.stderr);
    assert!(run.stderr.contains("SOME_TOKEN=***"), "{}", run.stderr);
    assert!(
        run.stderr.contains("+ GITOPS_TRIGGER_PATH=/b"),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_values_exit_2_with_one_line_and_write_nothing() {
    let table: [(&[&str], &str); 11] = [
        (&["--trigger", "--trigger-listen", "0"], "--trigger-listen"),
        (
            &["--trigger", "--trigger-listen", "host.example:80"],
            "[IPV6]:PORT",
        ),
        (
            &["--trigger", "--trigger-listen", "::1:9419"],
            "[IPV6]:PORT",
        ),
        (
            &["--trigger", "--trigger-allow", "10.1.2.3/8"],
            "first address",
        ),
        (&["--trigger", "--trigger-allow", ""], "--trigger-allow"),
        (&["--trigger", "--trigger-path", "hooks"], "URL path"),
        (
            &["--trigger", "--trigger-min-interval", "1s"],
            "at least 3s",
        ),
        (
            &["--trigger", "--trigger-min-interval", "soon"],
            "not a duration",
        ),
        (
            &["--trigger", "--trigger-secret-file", "trigger.secret"],
            "absolute path",
        ),
        (&["--trigger-allow", "10.0.0.0/8"], "--trigger"),
        (&["--trigger", "--init", "cron"], "--init systemd"),
    ];
    for (args, says) in table {
        let r = Root::new();
        let run = r.install(args).expect(2);
        let line = run.error_line();
        assert!(line.contains(says), "{args:?}: {line}");
        assert!(
            std::fs::read_dir(&r.root).unwrap().next().is_none(),
            "{args:?} wrote something"
        );
    }
}

#[test]
fn a_trigger_run_without_settings_keeps_the_earlier_ones() {
    let r = Root::new();
    r.install(&["--trigger", "--trigger-allow", "10.0.0.0/8"])
        .expect(0);
    let dropin = r.read(SOCKET_DROPIN);
    // Enabling packaged units again, say: the allow list must not silently go.
    let run = r.install(&["--trigger"]).expect(0);
    assert!(run.stdout.contains("nothing to do"), "{}", run.stdout);
    assert_eq!(r.read(SOCKET_DROPIN), dropin);
    assert!(r.read(ENV).contains("GITOPS_TRIGGER_ALLOW=10.0.0.0/8"));
    // Settings given: they are the whole of it, as for gitops.env.
    r.install(&["--trigger", "--trigger-path", "/x"]).expect(0);
    assert!(!exists(&r.path(SOCKET_DROPIN)));
    assert!(!exists(
        &r.path("etc/systemd/system/gitops-trigger.socket.d")
    ));
    assert!(!r.read(ENV).contains("ALLOW") && r.read(ENV).contains("GITOPS_TRIGGER_PATH=/x"));
}

#[test]
fn the_trigger_goes_when_a_run_leaves_it_out_and_its_units_stop_first() {
    let l = Live::new();
    l.install(&["--trigger", "--trigger-allow", "10.0.0.0/8"])
        .expect(0);
    std::fs::create_dir_all(l.r.path("etc/gitops")).unwrap();
    assert!(exists(&l.r.path(SECRET)));
    l.calls();
    let run = l.install(&[]).expect(0);
    assert_eq!(
        l.calls(),
        [
            "disable --now gitops-trigger.socket gitops-trigger.path",
            "daemon-reload"
        ]
    );
    for gone in [
        SOCKET,
        SERVICE,
        PATH,
        SOCKET_WANTS,
        PATH_WANTS,
        SOCKET_DROPIN,
        ENV,
    ] {
        assert!(!exists(&l.r.path(gone)), "{gone} stays:\n{}", run.stdout);
    }
    assert!(exists(&l.r.path("etc/systemd/system/gitops.service")));
    assert!(exists(&l.r.path(SECRET)), "the secret is kept");
    assert!(run.stdout.contains("kept "), "{}", run.stdout);
}

#[test]
fn uninstall_trigger_removes_the_trigger_alone_and_keeps_the_secret() {
    let l = Live::new();
    l.install(&[
        "--trigger",
        "--trigger-secret-file",
        "/etc/gitops/hook.key",
        "--now",
    ])
    .expect(0);
    let secret = std::fs::read_to_string(l.r.path("etc/gitops/hook.key")).unwrap();
    l.calls();
    let run = l.install(&["--uninstall", "--trigger"]).expect(0);
    assert_eq!(
        l.calls(),
        [
            "disable --now gitops-trigger.socket gitops-trigger.path",
            "daemon-reload"
        ]
    );
    for gone in [
        SOCKET,
        SERVICE,
        PATH,
        SOCKET_WANTS,
        PATH_WANTS,
        SOCKET_DROPIN,
        SERVICE_DROPIN,
        "etc/systemd/system/gitops-trigger.socket.d",
        "etc/systemd/system/gitops-trigger.service.d",
        "etc/systemd/system/sockets.target.wants",
        "etc/systemd/system/paths.target.wants",
    ] {
        assert!(!exists(&l.r.path(gone)), "{gone} stays:\n{}", run.stdout);
    }
    // The pass's units stay, and the manifest still knows them.
    assert!(exists(&l.r.path("etc/systemd/system/gitops.timer")));
    assert!(l.r.read(MANIFEST).contains("gitops.timer"));
    assert!(!l.r.read(MANIFEST).contains("trigger"));
    assert_eq!(
        std::fs::read_to_string(l.r.path("etc/gitops/hook.key")).unwrap(),
        secret
    );
    assert!(
        run.stdout.contains("kept ") && run.stdout.contains("hook.key"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains(&secret));
    // The rest goes with a plain --uninstall; the secret still stays, and its directory.
    l.install(&["--uninstall"]).expect(0);
    assert!(!exists(&l.r.path(MANIFEST)));
    assert!(exists(&l.r.path("etc/gitops/hook.key")));
}

#[test]
fn packaged_trigger_units_are_enabled_not_copied() {
    for dir in ["usr/lib/systemd/system", "lib/systemd/system"] {
        let r = Root::new();
        std::fs::create_dir_all(r.path(dir)).unwrap();
        for unit in [
            "gitops.service",
            "gitops.timer",
            "gitops-trigger.socket",
            "gitops-trigger.service",
            "gitops-trigger.path",
        ] {
            std::fs::write(r.path(dir).join(unit), shipped(unit)).unwrap();
        }
        let run = r.install(&["--trigger"]).expect(0);
        assert_eq!(
            std::fs::read_link(r.path(SOCKET_WANTS)).unwrap(),
            Path::new("/").join(dir).join("gitops-trigger.socket")
        );
        assert_eq!(
            std::fs::read_link(r.path(PATH_WANTS)).unwrap(),
            Path::new("/").join(dir).join("gitops-trigger.path")
        );
        for copy in [SOCKET, SERVICE, PATH] {
            assert!(
                !exists(&r.path(copy)),
                "{copy} would hide the package's updates"
            );
        }
        assert!(
            run.stdout.contains("come from the package"),
            "{}",
            run.stdout
        );
    }
    // Merged /usr (Debian since 12): both directories hold the units. The links follow the one
    // the package's own `systemctl enable gitops.timer` chose.
    let r = Root::new();
    std::fs::create_dir_all(r.path("usr/lib/systemd/system")).unwrap();
    std::os::unix::fs::symlink("usr/lib", r.path("lib")).unwrap();
    for unit in [
        "gitops.service",
        "gitops.timer",
        "gitops-trigger.socket",
        "gitops-trigger.service",
        "gitops-trigger.path",
    ] {
        std::fs::write(r.path("usr/lib/systemd/system").join(unit), shipped(unit)).unwrap();
    }
    std::fs::create_dir_all(r.path("etc/systemd/system/timers.target.wants")).unwrap();
    std::os::unix::fs::symlink(
        "/lib/systemd/system/gitops.timer",
        r.path("etc/systemd/system/timers.target.wants/gitops.timer"),
    )
    .unwrap();
    r.install(&["--trigger"]).expect(0);
    assert_eq!(
        std::fs::read_link(r.path(SOCKET_WANTS)).unwrap(),
        Path::new("/lib/systemd/system/gitops-trigger.socket")
    );
}

#[test]
fn the_trigger_units_say_what_the_issue_asks() {
    let socket = unit_entries(&shipped("gitops-trigger.socket"));
    assert_eq!(one(&socket, "Socket", "ListenStream"), "[::]:9419");
    assert_eq!(one(&socket, "Socket", "Accept"), "no");
    // A flood never fails the socket: no trigger rate limit (a crash loop meets the service's
    // start limit instead).
    assert_eq!(one(&socket, "Socket", "TriggerLimitIntervalSec"), "0");
    assert_eq!(one(&socket, "Socket", "IPAddressDeny"), "any");
    assert_eq!(one(&socket, "Socket", "IPAddressAllow"), "any");
    assert_eq!(
        one(&socket, "Unit", "ConditionPathExists"),
        "/etc/gitops/trigger.secret"
    );
    assert_eq!(one(&socket, "Install", "WantedBy"), "sockets.target");

    let service = unit_entries(&shipped("gitops-trigger.service"));
    assert_eq!(
        one(&service, "Service", "ExecStart"),
        "/usr/bin/gitops trigger"
    );
    for (key, want) in [
        ("DynamicUser", "yes"),
        ("StateDirectory", "gitops-trigger"),
        (
            "LoadCredential",
            "trigger-secret:/etc/gitops/trigger.secret",
        ),
        ("EnvironmentFile", "-/etc/gitops/trigger.env"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
        ("IPAddressDeny", "any"),
        ("RestrictAddressFamilies", "AF_UNIX"),
    ] {
        assert_eq!(one(&service, "Service", key), want, "{key}");
    }
    assert!(service
        .iter()
        .any(|(s, k, v)| s == "Service" && k == "SystemCallFilter" && v == "@system-service"));
    // Nothing that reads the internet may start units itself: no systemctl, no polkit.
    assert!(!service.iter().any(|(_, _, v)| v.contains("systemctl")));
    assert!(!service.iter().any(|(_, k, _)| k == "User" || k == "Group"));
    // A crash loop stops (and shows), rather than spinning.
    assert!(
        one(&service, "Unit", "StartLimitBurst")
            .parse::<u32>()
            .unwrap()
            > 0
    );

    let path = unit_entries(&shipped("gitops-trigger.path"));
    assert_eq!(
        one(&path, "Path", "PathChanged"),
        "/var/lib/gitops-trigger/pulse"
    );
    assert_eq!(one(&path, "Path", "Unit"), "gitops.service");
    assert_eq!(one(&path, "Install", "WantedBy"), "paths.target");
}

#[test]
fn the_trigger_units_verify_clean_and_the_service_scores_safe() {
    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .iter()
        .find(|p| Path::new(p).exists())
    else {
        panic!("systemd-analyze is missing: apt-get install systemd (CI installs it)");
    };
    let r = Root::new();
    r.install(&["--trigger"]).expect(0);
    let dir = r.m.dir.path().join("verify");
    std::fs::create_dir(&dir).unwrap();
    for unit in [
        "gitops.service",
        "gitops.timer",
        "gitops-trigger.socket",
        "gitops-trigger.service",
        "gitops-trigger.path",
    ] {
        let text = r.read(&format!("etc/systemd/system/{unit}")).replace(
            "ExecStart=/usr/bin/gitops",
            &format!("ExecStart={}", env!("CARGO_BIN_EXE_gitops")),
        );
        std::fs::write(dir.join(unit), text).unwrap();
    }
    let docs = r.m.dir.path().join("docs");
    r.m.run(&["generate-docs", docs.to_str().unwrap()])
        .expect(0);
    let out = Command::new(analyze)
        .env("MANPATH", docs.join("man"))
        .arg("verify")
        .args(
            [
                "gitops-trigger.socket",
                "gitops-trigger.service",
                "gitops-trigger.path",
            ]
            .map(|u| dir.join(u)),
        )
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert_eq!(
        said.trim(),
        "",
        "systemd-analyze verify has something to say"
    );

    // The exposure systemd-analyze gives the service: a weakened unit fails here.
    let out = Command::new(analyze)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(dir.join("gitops-trigger.service"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    let score: f64 = said
        .lines()
        .find_map(|l| l.split("gitops-trigger.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{said}"));
    assert!(score <= 1.0, "exposure {score}:\n{said}");
}

//! install-units into a temporary root: files, modes, links, idempotence, edits, removal.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::harness::{Machine, Run, RECORDING_RUN_SH};
use crate::support::{GitDaemon, Upstream};

pub struct Root {
    pub m: Machine,
    pub root: PathBuf,
}

impl Root {
    pub fn new() -> Root {
        let m = Machine::new();
        let root = m.dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        Root { m, root }
    }

    pub fn install(&self, args: &[&str]) -> Run {
        let mut full = vec!["install-units", "--root", self.root.to_str().unwrap()];
        full.extend(args);
        self.m.run(&full)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap()
    }
}

pub fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

const SERVICE: &str = "etc/systemd/system/gitops.service";
const TIMER: &str = "etc/systemd/system/gitops.timer";
const WANTS: &str = "etc/systemd/system/timers.target.wants/gitops.timer";
const ENV: &str = "etc/gitops/gitops.env";

#[test]
fn installs_units_env_file_and_the_enable_link() {
    let r = Root::new();
    let run = r
        .install(&[
            "--repo-url",
            "git@git.example.com:org/cfg.git",
            "--ssh-key",
            "/etc/gitops/deploy_key",
            "--branch",
            "prod",
            "--apply-timeout",
            "45min",
        ])
        .expect(0);
    assert!(run.stdout.contains("wrote"), "{}", run.stdout);
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("units/gitops.service"))
            .unwrap();
    assert_eq!(r.read(SERVICE), shipped, "the unit is the one in units/");
    assert_eq!(mode(&r.path(SERVICE)), 0o644);
    assert_eq!(mode(&r.path(TIMER)), 0o644);
    assert_eq!(
        std::fs::read_link(r.path(WANTS)).unwrap(),
        Path::new("/etc/systemd/system/gitops.timer")
    );
    assert_eq!(mode(&r.path("etc/gitops")), 0o700);
    assert_eq!(mode(&r.path(ENV)), 0o600);
    let env = r.read(ENV);
    for line in [
        "GITOPS_REPO_URL=git@git.example.com:org/cfg.git",
        "GITOPS_BRANCH=prod",
        "GITOPS_APPLY_TIMEOUT=45min",
        "GITOPS_SSH_KEY=/etc/gitops/deploy_key",
    ] {
        assert!(
            env.lines().any(|l| l == line),
            "{line} missing from:\n{env}"
        );
    }
    assert!(
        !env.contains("GITOPS_STATE_DIR"),
        "defaults and the test's environment stay out:\n{env}"
    );
    // Tell the operator what is missing in the image.
    assert!(
        run.stderr.contains("usr/bin/gitops does not exist"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("deploy key"), "{}", run.stderr);
}

#[test]
fn a_second_run_changes_nothing_and_says_so() {
    let r = Root::new();
    r.install(&["--repo-url", "https://git.example.com/cfg.git"])
        .expect(0);
    let before = std::fs::metadata(r.path(SERVICE))
        .unwrap()
        .modified()
        .unwrap();
    let run = r
        .install(&["--repo-url", "https://git.example.com/cfg.git"])
        .expect(0);
    assert!(run.stdout.contains("nothing to do"), "{}", run.stdout);
    assert_eq!(
        std::fs::metadata(r.path(SERVICE))
            .unwrap()
            .modified()
            .unwrap(),
        before
    );
    // Without config flags the existing env file is left as it is.
    let run = r.install(&[]).expect(0);
    assert!(run.stdout.contains("nothing to do"), "{}", run.stdout);
    assert!(r.read(ENV).contains("https://git.example.com/cfg.git"));
}

#[test]
fn an_edited_unit_is_refused_with_its_diff_unless_forced() {
    let r = Root::new();
    r.install(&[]).expect(0);
    let edited = r
        .read(SERVICE)
        .replace("TimeoutStartSec=45min", "TimeoutStartSec=2h");
    std::fs::write(r.path(SERVICE), &edited).unwrap();
    let run = r.install(&[]).expect(2);
    assert!(run.error_line().contains("--force"));
    assert!(
        run.stderr.contains("- TimeoutStartSec=2h")
            && run.stderr.contains("+ TimeoutStartSec=45min"),
        "{}",
        run.stderr
    );
    assert_eq!(r.read(SERVICE), edited, "nothing was overwritten");
    r.install(&["--force"]).expect(0);
    assert!(r.read(SERVICE).contains("TimeoutStartSec=45min"));
}

#[test]
fn new_settings_replace_our_own_env_file() {
    let r = Root::new();
    r.install(&[
        "--repo-url",
        "https://git.example.com/cfg.git",
        "--branch",
        "main",
    ])
    .expect(0);
    let run = r
        .install(&[
            "--repo-url",
            "https://git.example.com/cfg.git",
            "--branch",
            "prod",
        ])
        .expect(0);
    assert!(run.stdout.contains("replaced"), "{}", run.stdout);
    assert!(r.read(ENV).contains("GITOPS_BRANCH=prod"));
    // An admin's edit of the env file is protected like a unit.
    std::fs::write(r.path(ENV), "GITOPS_REPO_URL=https://elsewhere/cfg.git\n").unwrap();
    r.install(&["--repo-url", "https://git.example.com/cfg.git"])
        .expect(2);
}

#[test]
fn uninstall_removes_what_it_installed_and_keeps_the_rest() {
    let r = Root::new();
    r.install(&["--repo-url", "https://git.example.com/cfg.git"])
        .expect(0);
    std::fs::write(r.path("etc/gitops/deploy_key"), "key").unwrap();
    let run = r.install(&["--uninstall"]).expect(0);
    assert!(run.stdout.contains("removed"), "{}", run.stdout);
    for gone in [
        SERVICE,
        TIMER,
        WANTS,
        ENV,
        "etc/gitops/install-units.manifest",
    ] {
        assert!(
            std::fs::symlink_metadata(r.path(gone)).is_err(),
            "{gone} is still there"
        );
    }
    assert!(
        r.path("etc/gitops/deploy_key").exists(),
        "the admin's deploy key stays"
    );
    let run = r.install(&["--uninstall"]).expect(0);
    assert!(run.stdout.contains("nothing to do"));
}

#[test]
fn dry_run_writes_nothing() {
    let r = Root::new();
    let run = r
        .install(&["--dry-run", "--repo-url", "https://git.example.com/cfg.git"])
        .expect(0);
    assert!(
        run.stdout.contains("would write") && run.stdout.contains("Type=oneshot"),
        "{}",
        run.stdout
    );
    assert!(
        std::fs::read_dir(&r.root).unwrap().next().is_none(),
        "the root is still empty"
    );
}

#[test]
fn now_outside_a_running_systemd_says_what_it_did_not_do() {
    let r = Root::new();
    let run = r.install(&["--now"]).expect(0);
    assert!(run.stdout.contains("not started"), "{}", run.stdout);
    assert!(r.path(WANTS).exists() || std::fs::symlink_metadata(r.path(WANTS)).is_ok());
}

#[test]
fn cron_and_openrc_for_machines_without_systemd() {
    let r = Root::new();
    r.install(&[
        "--init",
        "cron",
        "--repo-url",
        "https://git.example.com/cfg.git",
    ])
    .expect(0);
    let cron = r.read("etc/cron.d/gitops");
    assert_eq!(mode(&r.path("etc/cron.d/gitops")), 0o644);
    let job: Vec<&str> = cron
        .lines()
        .filter(|l| !l.starts_with('#') && !l.contains('=') && !l.trim().is_empty())
        .collect();
    assert_eq!(job.len(), 1, "{cron}");
    let fields: Vec<&str> = job[0].split_whitespace().collect();
    let (minute, step) = fields[0].split_once("-59/").expect("M-59/5");
    assert!(
        minute.parse::<u8>().unwrap() < 5 && step == "5",
        "{}",
        fields[0]
    );
    assert_eq!(&fields[1..6], ["*", "*", "*", "*", "root"]);
    // -o: the lock is not inherited by gitops, nor by a daemon its entry point leaves.
    assert!(job[0].contains("flock -n -o /run/gitops.cron.lock /usr/bin/gitops sync"));
    // The minute offset survives a second run.
    r.install(&["--init", "cron"]).expect(0);
    assert_eq!(r.read("etc/cron.d/gitops"), cron);

    let o = Root::new();
    o.install(&["--init", "openrc"]).expect(0);
    let script = o.path("etc/init.d/gitops");
    assert_eq!(mode(&script), 0o755);
    assert!(o
        .read("etc/init.d/gitops")
        .starts_with("#!/sbin/openrc-run\n"));
    let syntax = std::process::Command::new("sh")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap();
    assert!(syntax.success(), "the OpenRC script is valid sh");
    assert_eq!(
        std::fs::read_link(o.path("etc/runlevels/default/gitops")).unwrap(),
        Path::new("/etc/init.d/gitops")
    );
    assert!(o.path("etc/cron.d/gitops").exists());
}

#[test]
fn bad_input_exits_2() {
    let r = Root::new();
    let missing = r.m.dir.path().join("nope");
    let run =
        r.m.run(&["install-units", "--root", missing.to_str().unwrap()])
            .expect(2);
    assert!(run.error_line().contains("--root"));
    r.install(&["--repo-url", "ftp://x/y"]).expect(2);
    assert!(std::fs::read_dir(&r.root).unwrap().next().is_none());
    r.install(&["--init", "upstart"]).expect(2);
}

#[test]
fn the_host_env_file_never_leaks_into_an_image() {
    let r = Root::new();
    std::fs::write(
        &r.m.config,
        "GITOPS_BRANCH=host-only\nGITOPS_REPO_URL=https://host/cfg.git\n",
    )
    .unwrap();
    r.install(&["--repo-url", "https://image/cfg.git"])
        .expect(0);
    let env = r.read(ENV);
    assert!(
        !env.contains("host-only") && env.contains("https://image/cfg.git"),
        "{env}"
    );
}

#[test]
fn the_installed_units_verify_clean() {
    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .iter()
        .find(|p| Path::new(p).exists())
    else {
        panic!("systemd-analyze is missing: apt-get install systemd (CI installs it)");
    };
    let r = Root::new();
    r.install(&[]).expect(0);
    let dir = r.m.dir.path().join("verify");
    std::fs::create_dir(&dir).unwrap();
    let service = r.read(SERVICE).replace(
        "ExecStart=/usr/bin/gitops",
        &format!("ExecStart={}", env!("CARGO_BIN_EXE_gitops")),
    );
    std::fs::write(dir.join("gitops.service"), service).unwrap();
    std::fs::write(dir.join("gitops.timer"), r.read(TIMER)).unwrap();
    // verify runs man for each Documentation=man: page: the pages the packages ship must be
    // exactly the ones the units name.
    let docs = r.m.dir.path().join("docs");
    r.m.run(&["generate-docs", docs.to_str().unwrap()])
        .expect(0);
    let out = std::process::Command::new(analyze)
        .env("MANPATH", docs.join("man"))
        .arg("verify")
        .arg(dir.join("gitops.service"))
        .arg(dir.join("gitops.timer"))
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
}

#[test]
fn the_written_env_file_drives_a_real_pass() {
    let up = Upstream::new();
    let commit = up.commit(&[("run.sh", RECORDING_RUN_SH)], "init");
    let daemon = GitDaemon::serve(&up.srv());
    let r = Root::new();
    let state = r.m.state.display().to_string();
    let checkout = r.m.checkout.display().to_string();
    r.install(&[
        "--repo-url",
        &daemon.url("config.git"),
        "--state-dir",
        &state,
        "--checkout",
        &checkout,
    ])
    .expect(0);
    let mut cmd = r.m.command();
    cmd.env_remove("GITOPS_STATE_DIR")
        .env_remove("GITOPS_CHECKOUT")
        .env("GITOPS_CONFIG", r.path(ENV))
        .arg("sync");
    Run::of(&mut cmd).expect(0);
    assert_eq!(r.m.applied().as_deref(), Some(commit.as_str()));
}

#[test]
fn long_timeouts_get_a_start_limit_drop_in() {
    let r = Root::new();
    r.install(&["--apply-timeout", "30min"]).expect(0);
    let dropin = "etc/systemd/system/gitops.service.d/timeout.conf";
    assert!(
        !r.path(dropin).exists(),
        "the unit's own limit covers the defaults"
    );
    r.install(&["--apply-timeout", "2h"]).expect(0);
    // 2h + 2min health check + 5min fetch + 60s lock + 4min margin
    assert!(
        r.read(dropin).contains("TimeoutStartSec=7920s"),
        "{}",
        r.read(dropin)
    );
    // A revert runs an entry point and a health check twice in one pass; health check retries
    // add their attempts and waits: (30min + 3 × 5min + 2 × 1min) × 2 + 5min + 60s + 4min.
    r.install(&[
        "--on-failure",
        "revert",
        "--health-timeout",
        "5min",
        "--health-retries",
        "2",
        "--health-interval",
        "1min",
    ])
    .expect(0);
    assert!(
        r.read(dropin).contains("TimeoutStartSec=6240s"),
        "{}",
        r.read(dropin)
    );
    // Back to the default: the drop-in is ours and goes.
    r.install(&["--apply-timeout", "20min"]).expect(0);
    assert!(!r.path(dropin).exists());
}

#[test]
fn switching_the_init_removes_what_the_old_one_needed() {
    let r = Root::new();
    r.install(&["--init", "cron"]).expect(0);
    assert!(r.path("etc/cron.d/gitops").exists());
    let run = r.install(&["--init", "systemd"]).expect(0);
    assert!(!r.path("etc/cron.d/gitops").exists(), "{}", run.stdout);
    assert!(r.path(SERVICE).exists());
    r.install(&["--init", "cron"]).expect(0);
    assert!(!r.path(SERVICE).exists() && std::fs::symlink_metadata(r.path(WANTS)).is_err());
}

#[test]
fn shown_files_never_carry_credentials() {
    let r = Root::new();
    let url = "https://deploy:s3cr3t-t0ken@git.example.com/cfg.git";
    let run = r.install(&["--dry-run", "--repo-url", url]).expect(0);
    assert!(
        !run.stdout.contains("s3cr3t-t0ken") && run.stdout.contains("***@git.example.com"),
        "{}",
        run.stdout
    );
    r.install(&["--repo-url", url]).expect(0);
    assert!(
        r.read(ENV).contains("s3cr3t-t0ken"),
        "the file itself keeps what the pass needs"
    );
    std::fs::write(r.path(ENV), format!("{}# edited\n", r.read(ENV))).unwrap();
    let run = r
        .install(&[
            "--repo-url",
            "https://deploy:0ther-t0ken@git.example.com/cfg.git",
        ])
        .expect(2);
    assert!(
        !run.stderr.contains("s3cr3t-t0ken") && !run.stderr.contains("0ther-t0ken"),
        "{}",
        run.stderr
    );
}

/// `KEY=VALUE` entries of a unit file, by section, in order; comments and blank lines skipped.
pub fn unit_entries(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut entries = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (key, value) = line.split_once('=').expect("KEY=VALUE");
        entries.push((
            section.clone(),
            key.trim().to_string(),
            value.trim().to_string(),
        ));
    }
    entries
}

/// The one value of `key` in `section`, failing when it is missing or set twice.
#[track_caller]
pub fn one(entries: &[(String, String, String)], section: &str, key: &str) -> String {
    let values: Vec<&String> = entries
        .iter()
        .filter(|(s, k, _)| s == section && k == key)
        .map(|(_, _, v)| v)
        .collect();
    assert_eq!(values.len(), 1, "[{section}] {key}= expected once");
    values[0].clone()
}

/// A systemd time span as the units write it (`40min`, `7800s`, `1h 30min`), in seconds.
fn seconds(span: &str) -> u64 {
    let mut total = 0;
    for part in span.split_whitespace() {
        let digits = part
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(part.len());
        let n: u64 = part[..digits].parse().expect("a number");
        total += n * match &part[digits..] {
            "" | "s" | "sec" => 1,
            "min" | "m" => 60,
            "h" => 3600,
            unit => panic!("unit {unit} in {span}"),
        };
    }
    total
}

#[test]
fn the_installed_service_says_what_the_issue_asks() {
    let r = Root::new();
    r.install(&[]).expect(0);
    let e = unit_entries(&r.read(SERVICE));
    assert_eq!(one(&e, "Service", "Type"), "oneshot");
    assert_eq!(one(&e, "Unit", "Wants"), "network-online.target");
    assert_eq!(one(&e, "Unit", "After"), "network-online.target");
    // A package enables the timer before anyone configured the machine: skip those passes.
    assert_eq!(
        one(&e, "Unit", "ConditionPathExists"),
        "/etc/gitops/gitops.env"
    );
    assert_eq!(
        one(&e, "Service", "EnvironmentFile"),
        "-/etc/gitops/gitops.env"
    );
    assert_eq!(one(&e, "Service", "ExecStart"), "/usr/bin/gitops sync");
    assert_eq!(one(&e, "Service", "StateDirectory"), "gitops");
    assert_eq!(one(&e, "Service", "StateDirectoryMode"), "0700");
    // Above the default apply (30min), fetch (5min) and lock (60s) timeouts together, so
    // gitops ends a stuck pass itself rather than systemd killing it unrecorded.
    let limit = seconds(&one(&e, "Service", "TimeoutStartSec"));
    assert!(limit > 30 * 60 + 5 * 60 + 60, "TimeoutStartSec={limit}s");
    let success = one(&e, "Service", "SuccessExitStatus");
    assert!(
        success.split_whitespace().any(|code| code == "75"),
        "SuccessExitStatus={success}: a busy lock is no failure"
    );
    assert_eq!(one(&e, "Service", "SyslogIdentifier"), "gitops");
    for forbidden in [
        "NoNewPrivileges",
        "ProtectSystem",
        "PrivateTmp",
        "ProtectHome",
    ] {
        assert!(
            !e.iter().any(|(_, k, _)| k == forbidden),
            "{forbidden}= would stop a config run from changing the host"
        );
    }
}

#[test]
fn the_installed_timer_spreads_passes_and_never_queues_them() {
    let r = Root::new();
    r.install(&[]).expect(0);
    let e = unit_entries(&r.read(TIMER));
    assert_eq!(seconds(&one(&e, "Timer", "OnBootSec")), 5 * 60);
    // Counted from the end of a pass: a long apply is followed by a pause, not another pass.
    assert_eq!(seconds(&one(&e, "Timer", "OnUnitInactiveSec")), 5 * 60);
    assert!(!e.iter().any(|(_, k, _)| k == "OnUnitActiveSec"));
    let spread = seconds(&one(&e, "Timer", "RandomizedDelaySec"));
    let accuracy = seconds(&one(&e, "Timer", "AccuracySec"));
    assert!(spread >= 30, "RandomizedDelaySec={spread}s spreads a fleet");
    assert!(
        accuracy < spread,
        "AccuracySec={accuracy}s must not coalesce the {spread}s spread away"
    );
    assert_eq!(one(&e, "Timer", "Unit"), "gitops.service");
    assert_eq!(one(&e, "Install", "WantedBy"), "timers.target");
}

/// Put the package's units under the root, as the .rpm (`usr/lib`) or the .deb (`lib`) does.
fn install_package_units(r: &Root, dir: &str) {
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("units");
    std::fs::create_dir_all(r.path(dir)).unwrap();
    for unit in ["gitops.service", "gitops.timer"] {
        std::fs::copy(units.join(unit), r.path(dir).join(unit)).unwrap();
    }
}

#[test]
fn packaged_units_are_enabled_not_copied_into_etc() {
    for (dir, target) in [
        (
            "usr/lib/systemd/system",
            "/usr/lib/systemd/system/gitops.timer",
        ),
        ("lib/systemd/system", "/lib/systemd/system/gitops.timer"),
    ] {
        let r = Root::new();
        install_package_units(&r, dir);
        let run = r
            .install(&[
                "--repo-url",
                "https://git.example.com/cfg.git",
                "--apply-timeout",
                "2h",
            ])
            .expect(0);
        assert!(
            run.stdout.contains("come from the package"),
            "{}",
            run.stdout
        );
        for shadow in [SERVICE, TIMER] {
            assert!(!r.path(shadow).exists(), "{shadow} would shadow {dir}");
        }
        assert_eq!(
            std::fs::read_link(r.path(WANTS)).unwrap(),
            Path::new(target)
        );
        assert!(r.path(target.trim_start_matches('/')).exists());
        assert_eq!(mode(&r.path(ENV)), 0o600);
        assert!(r
            .read("etc/systemd/system/gitops.service.d/timeout.conf")
            .contains("TimeoutStartSec="));
        let run = r
            .install(&[
                "--repo-url",
                "https://git.example.com/cfg.git",
                "--apply-timeout",
                "2h",
            ])
            .expect(0);
        assert!(run.stdout.contains("nothing to do"), "{}", run.stdout);
    }
}

#[test]
fn a_package_installed_later_replaces_our_unedited_etc_copies() {
    let r = Root::new();
    r.install(&["--repo-url", "https://git.example.com/cfg.git"])
        .expect(0);
    let edited = Root::new();
    edited.install(&[]).expect(0);
    std::fs::write(
        edited.path(SERVICE),
        edited.read(SERVICE).replace("45min", "3h"),
    )
    .unwrap();

    install_package_units(&r, "usr/lib/systemd/system");
    let run = r.install(&[]).expect(0);
    for gone in [SERVICE, TIMER] {
        assert!(!r.path(gone).exists(), "{gone} stays: {}", run.stdout);
    }
    assert!(run.stdout.contains("removed"), "{}", run.stdout);
    assert_eq!(
        std::fs::read_link(r.path(WANTS)).unwrap(),
        Path::new("/usr/lib/systemd/system/gitops.timer")
    );
    assert!(r.read(ENV).contains("https://git.example.com/cfg.git"));
    let manifest = r.read("etc/gitops/install-units.manifest");
    assert!(
        !manifest.contains(SERVICE) && !manifest.contains(TIMER),
        "{manifest}"
    );

    // An edited copy is the admin's: it stays, and they are told it hides the package's unit.
    install_package_units(&edited, "usr/lib/systemd/system");
    let run = edited.install(&[]).expect(0);
    assert!(edited.read(SERVICE).contains("3h"));
    assert!(!edited.path(TIMER).exists());
    assert!(
        run.stderr.contains("overrides the packaged unit"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_loose_config_directory_is_made_private() {
    let r = Root::new();
    // As cloud-init's write_files leaves it after writing the deploy key.
    std::fs::create_dir_all(r.path("etc/gitops")).unwrap();
    std::fs::set_permissions(r.path("etc/gitops"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(r.path("etc/gitops/deploy_key"), "key").unwrap();
    let run = r.install(&["--dry-run"]).expect(0);
    assert!(run.stdout.contains("would tighten"), "{}", run.stdout);
    assert_eq!(
        mode(&r.path("etc/gitops")),
        0o755,
        "a dry run changes nothing"
    );
    let run = r
        .install(&["--repo-url", "https://git.example.com/cfg.git"])
        .expect(0);
    assert!(
        run.stdout.contains("tightened") && run.stdout.contains("0755 to 0700"),
        "{}",
        run.stdout
    );
    assert_eq!(mode(&r.path("etc/gitops")), 0o700);
    let run = r
        .install(&["--repo-url", "https://git.example.com/cfg.git"])
        .expect(0);
    assert!(run.stdout.contains("nothing to do"), "{}", run.stdout);
}

#[test]
fn an_empty_root_gets_a_public_etc_and_a_private_etc_gitops() {
    let r = Root::new();
    r.install(&[
        "--init",
        "cron",
        "--repo-url",
        "https://git.example.com/cfg.git",
    ])
    .expect(0);
    assert_eq!(mode(&r.path("etc")) & 0o755, 0o755);
    assert_eq!(mode(&r.path("etc/gitops")), 0o700);
}

#[test]
fn secrets_in_an_edited_env_file_stay_out_of_the_diff() {
    let r = Root::new();
    r.install(&["--repo-url", "https://git.example.com/cfg.git"])
        .expect(0);
    std::fs::write(
        r.path(ENV),
        "GITOPS_REPO_URL=\"https://T0KEN-in-quotes@git.example.com/cfg.git\"\n\
         GITOPS_BRANCH='prod'\n\
         HTTPS_PROXY=http://proxyuser:pr0xy-pw@proxy.example.com:3128\n\
         export API_TOKEN=hunter2-secret\n\
         # note: mirror at https://mirroruser:m1rror-pw@mirror.example.com/cfg.git\n",
    )
    .unwrap();
    let run = r
        .install(&["--repo-url", "https://git.example.com/cfg.git"])
        .expect(2);
    for secret in [
        "T0KEN-in-quotes",
        "pr0xy-pw",
        "proxyuser",
        "hunter2-secret",
        "m1rror-pw",
    ] {
        assert!(
            !run.stderr.contains(secret),
            "{secret} shown in:\n{}",
            run.stderr
        );
    }
    for line in [
        "- GITOPS_REPO_URL=\"https://***@git.example.com/cfg.git\"",
        "- GITOPS_BRANCH='prod'",
        "- HTTPS_PROXY=***",
        "- export API_TOKEN=***",
        "+ GITOPS_REPO_URL=https://git.example.com/cfg.git",
    ] {
        assert!(
            run.stderr.contains(line),
            "{line} missing from:\n{}",
            run.stderr
        );
    }
}

#[test]
fn a_quoted_url_is_redacted_in_a_dry_run() {
    let r = Root::new();
    // The `!` makes install-units quote the value in the env file.
    let url = "https://gh-t0ken!x@git.example.com/cfg.git";
    let run = r.install(&["--dry-run", "--repo-url", url]).expect(0);
    assert!(
        !run.stdout.contains("gh-t0ken")
            && run
                .stdout
                .contains("GITOPS_REPO_URL=\"https://***@git.example.com/cfg.git\""),
        "{}",
        run.stdout
    );
    r.install(&["--repo-url", url]).expect(0);
    assert!(r
        .read(ENV)
        .contains("GITOPS_REPO_URL=\"https://gh-t0ken!x@"));
}

/// Every file, link and directory under `dir` with its inode and modification time.
fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let mut all = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                todo.push(path.clone());
            }
            all.push((path, meta.ino(), meta.mtime(), meta.mtime_nsec()));
        }
    }
    all.sort();
    all
}

#[test]
fn a_second_run_touches_no_file_not_even_the_manifest() {
    let r = Root::new();
    let args = [
        "--repo-url",
        "https://git.example.com/cfg.git",
        "--apply-timeout",
        "2h",
    ];
    r.install(&args).expect(0);
    let before = snapshot(&r.root);
    assert!(before
        .iter()
        .any(|(p, ..)| p.ends_with("install-units.manifest")));
    std::thread::sleep(std::time::Duration::from_millis(20));
    r.install(&args).expect(0);
    assert_eq!(snapshot(&r.root), before);
}

/// A root that install-units takes for the running system (the GITOPS_LIVE_ROOT test seam),
/// with a systemctl that only records its arguments.
pub struct Live {
    pub r: Root,
    log: PathBuf,
    systemctl: PathBuf,
}

impl Live {
    pub fn new() -> Live {
        let r = Root::new();
        std::fs::create_dir_all(r.path("run/systemd/system")).unwrap();
        let log = r.m.dir.path().join("systemctl.log");
        let systemctl = r.m.dir.path().join("systemctl");
        std::fs::write(
            &systemctl,
            format!("#!/bin/sh\necho \"$*\" >> '{}'\n", log.display()),
        )
        .unwrap();
        std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755)).unwrap();
        Live { r, log, systemctl }
    }

    pub fn install(&self, args: &[&str]) -> Run {
        Run::of(&mut self.command(args))
    }

    /// `gitops install-units --root ROOT ARGS…` as the running system, not yet run.
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = self.r.m.command();
        cmd.env("GITOPS_LIVE_ROOT", &self.r.root)
            .env("GITOPS_SYSTEMCTL", &self.systemctl)
            .arg("install-units")
            .arg("--root")
            .arg(&self.r.root)
            .args(args);
        cmd
    }

    /// The systemctl calls since the last look.
    pub fn calls(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let _ = std::fs::remove_file(&self.log);
        text.lines().map(str::to_string).collect()
    }
}

#[test]
fn now_reloads_and_starts_the_timer_even_when_nothing_changed() {
    let l = Live::new();
    let run = l
        .install(&["--now", "--repo-url", "https://git.example.com/cfg.git"])
        .expect(0);
    assert!(run.stdout.contains("enabled and active"), "{}", run.stdout);
    assert_eq!(l.calls(), ["daemon-reload", "enable --now gitops.timer"]);
    // The files are already right, but systemd may not have read them yet (an earlier run
    // without --now, a package upgrade): reload anyway.
    let run = l.install(&["--now"]).expect(0);
    assert!(run.stdout.contains("nothing to do"), "{}", run.stdout);
    assert_eq!(l.calls(), ["daemon-reload", "enable --now gitops.timer"]);
    // Without --now nothing runs.
    l.install(&[]).expect(0);
    assert!(l.calls().is_empty());
}

#[test]
fn uninstall_stops_the_timer_and_removes_its_empty_directories() {
    let l = Live::new();
    l.install(&["--apply-timeout", "2h"]).expect(0);
    assert!(l.r.path("etc/systemd/system/gitops.service.d").is_dir());
    assert!(l.calls().is_empty(), "no --now, no systemctl");
    let run = l.install(&["--uninstall"]).expect(0);
    assert_eq!(l.calls(), ["disable --now gitops.timer", "daemon-reload"]);
    for gone in [
        "etc/systemd/system/gitops.service.d",
        "etc/systemd/system/timers.target.wants",
        "etc/gitops",
    ] {
        assert!(!l.r.path(gone).exists(), "{gone} stays: {}", run.stdout);
    }
    assert!(
        l.r.path("etc/systemd/system").is_dir(),
        "not ours to remove"
    );

    // A directory that holds someone else's link stays.
    let other = Root::new();
    other.install(&[]).expect(0);
    let wants = other.path("etc/systemd/system/timers.target.wants");
    std::os::unix::fs::symlink(
        "/usr/lib/systemd/system/fstrim.timer",
        wants.join("fstrim.timer"),
    )
    .unwrap();
    other.install(&["--uninstall"]).expect(0);
    assert!(wants.join("fstrim.timer").is_symlink());
}

#[test]
fn notification_flags_go_into_the_env_file_and_the_url_is_never_shown() {
    let r = Root::new();
    let urls = [
        "https://discord.com/api/webhooks/1/w3bh00k-t0ken",
        "https://hooks.slack.com/services/T/B/sl4ck-t0ken",
    ];
    let args = [
        "--repo-url",
        "https://git.example.com/cfg.git",
        "--notify-url",
        urls[0],
        "--notify-url",
        urls[1],
        "--notify-format",
        "auto",
        "--notify-secret-file",
        "/etc/gitops/hmac.key",
    ];
    let mut dry = vec!["--dry-run"];
    dry.extend(args);
    let run = r.install(&dry).expect(0);
    assert!(
        run.stdout.contains("GITOPS_NOTIFY_URL=***")
            && run.stdout.contains("GITOPS_NOTIFY_FORMAT=auto")
            && run
                .stdout
                .contains("GITOPS_NOTIFY_SECRET_FILE=/etc/gitops/hmac.key"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("t0ken"), "{}", run.stdout);
    let run = r.install(&args).expect(0);
    assert!(!format!("{}{}", run.stdout, run.stderr).contains("t0ken"));
    assert!(
        r.read(ENV)
            .contains(&format!("GITOPS_NOTIFY_URL=\"{} {}\"", urls[0], urls[1]))
            || r.read(ENV)
                .contains(&format!("GITOPS_NOTIFY_URL='{} {}'", urls[0], urls[1])),
        "{}",
        r.read(ENV)
    );
    let run = r
        .install(&["--dry-run", "--notify-url", "ftp://u:p4ss-w0rd@h/t0ken-x"])
        .expect(2);
    assert!(run.error_line().contains("GITOPS_NOTIFY_URL"));
    assert!(!run.stderr.contains("t0ken") && !run.stderr.contains("p4ss"));
}

/// Every option of a pass given to install-units reaches the env file, read off the option's
/// definition (no list to forget one in): the metrics and reboot options too; the fleet lock
/// URL, which may carry a password, is never shown.
#[test]
fn every_option_given_goes_into_the_env_file() {
    let r = Root::new();
    let args = [
        "--repo-url",
        "https://git.example.com/cfg.git",
        "--metrics-dir",
        "/var/lib/prometheus/node-exporter",
        "--reboot-min-uptime",
        "30min",
        "--reboot-command",
        "/sbin/reboot now",
        "--reboot-require-clock-sync",
        "false",
        "--fleet-lock-url",
        "https://gitops:l0ck-p4ss@lock.example.com/",
        "--allow-rewind",
    ];
    let shown = r.install(&[&["--dry-run"][..], &args].concat()).expect(0);
    assert!(
        shown.stdout.contains("GITOPS_FLEET_LOCK_URL=***"),
        "{}",
        shown.stdout
    );
    assert!(shown.stdout.contains("GITOPS_REBOOT_MIN_UPTIME=30min"));
    assert!(!shown.stdout.contains("l0ck-p4ss"));
    let run = r.install(&args).expect(0);
    assert!(!format!("{}{}", run.stdout, run.stderr).contains("l0ck-p4ss"));
    let env = r.read(ENV);
    for line in [
        "GITOPS_METRICS_DIR=/var/lib/prometheus/node-exporter",
        "GITOPS_REBOOT_MIN_UPTIME=30min",
        "GITOPS_REBOOT_REQUIRE_CLOCK_SYNC=false",
        "GITOPS_FLEET_LOCK_URL=https://gitops:l0ck-p4ss@lock.example.com/",
        "GITOPS_ALLOW_REWIND=true",
    ] {
        assert!(env.contains(line), "{line} missing from\n{env}");
    }
    assert!(env.contains("GITOPS_REBOOT_COMMAND="), "{env}");
}

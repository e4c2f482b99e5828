//! install-units into a temporary root: files, modes, links, idempotence, edits, removal.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::harness::{Machine, RECORDING_RUN_SH};
use crate::support::{GitDaemon, Upstream};

struct Root {
    m: Machine,
    root: PathBuf,
}

impl Root {
    fn new() -> Root {
        let m = Machine::new();
        let root = m.dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        Root { m, root }
    }

    fn install(&self, args: &[&str]) -> crate::harness::Run {
        let mut full = vec!["install-units", "--root", self.root.to_str().unwrap()];
        full.extend(args);
        self.m.run(&full)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap()
    }
}

fn mode(path: &Path) -> u32 {
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
        .replace("TimeoutStartSec=40min", "TimeoutStartSec=2h");
    std::fs::write(r.path(SERVICE), &edited).unwrap();
    let run = r.install(&[]).expect(2);
    assert!(run.error_line().contains("--force"));
    assert!(
        run.stderr.contains("- TimeoutStartSec=2h")
            && run.stderr.contains("+ TimeoutStartSec=40min"),
        "{}",
        run.stderr
    );
    assert_eq!(r.read(SERVICE), edited, "nothing was overwritten");
    r.install(&["--force"]).expect(0);
    assert!(r.read(SERVICE).contains("TimeoutStartSec=40min"));
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
    assert!(job[0].contains("flock -n") && job[0].contains("/usr/bin/gitops sync"));
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
    let out = std::process::Command::new(analyze)
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
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    // 2h + 5min fetch + 60s lock + 4min margin
    assert!(
        r.read(dropin).contains("TimeoutStartSec=7800s"),
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

//! A machine under test: its own state directory, checkout link and env file, and a way to run
//! the real `gitops` binary against it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::support::{GitDaemon, Upstream};

/// The entry point most tests commit: it records each run (commit, previous commit, branch)
/// in `$OUT/runs`, so tests can count runs and check the environment.
pub const RECORDING_RUN_SH: &str = "#!/bin/sh\nset -e\necho \"$GITOPS_COMMIT $GITOPS_PREVIOUS_COMMIT $GITOPS_BRANCH $GITOPS_CHECKOUT\" >> \"$OUT/runs\"\n";

pub struct Machine {
    pub dir: TempDir,
    pub state: PathBuf,
    pub checkout: PathBuf,
    /// Where entry points write (exported as OUT).
    pub out: PathBuf,
    /// An empty env file passed as --config, so the host's /etc/gitops never leaks in.
    pub config: PathBuf,
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Run a prepared command (say `Machine::command` with extra environment) to completion.
    pub fn of(cmd: &mut Command) -> Run {
        Run::from(cmd.output().unwrap())
    }

    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Run a spawned child to completion, or fail the test after `limit` (killing it): a hang
    /// is a bug here.
    pub fn within(mut child: Child, limit: Duration) -> Run {
        let deadline = Instant::now() + limit;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("still running after {limit:?}: it hangs");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Run::from(child.wait_with_output().unwrap())
    }

    /// Assert the exit code, showing the output when it differs.
    #[track_caller]
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// The error line gitops printed: exactly one, naming the cause, never a panic or backtrace.
    #[track_caller]
    pub fn error_line(&self) -> String {
        assert!(!self.stderr.contains("panicked"), "panic: {}", self.stderr);
        assert!(
            !self.stderr.contains("backtrace") && !self.stderr.contains("Backtrace"),
            "backtrace: {}",
            self.stderr
        );
        let errors: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("gitops: error: "))
            .collect();
        assert_eq!(
            errors.len(),
            1,
            "one error line expected in:\n{}",
            self.stderr
        );
        errors[0].to_string()
    }
}

impl Machine {
    pub fn new() -> Machine {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let config = dir.path().join("gitops.env");
        std::fs::write(&config, "").unwrap();
        Machine {
            state: dir.path().join("state"),
            checkout: dir.path().join("gitops"),
            out,
            config,
            dir,
        }
    }

    /// The binary with this machine's paths and a clean GITOPS_* environment.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gitops"));
        // Proxies too: every request of a test goes to 127.0.0.1 directly.
        for (key, _) in std::env::vars() {
            if key.starts_with("GITOPS_")
                || key == "REPO_URL"
                || key.to_ascii_lowercase().ends_with("_proxy")
            {
                cmd.env_remove(key);
            }
        }
        cmd.env("RUST_BACKTRACE", "1")
            .env("GITOPS_CONFIG", &self.config)
            .env("GITOPS_STATE_DIR", &self.state)
            .env("GITOPS_CHECKOUT", &self.checkout)
            .env("OUT", &self.out)
            .stdin(Stdio::null());
        cmd
    }

    /// `gitops sync --repo-url URL ARGS…`
    pub fn sync(&self, url: &str, args: &[&str]) -> Run {
        let mut cmd = self.command();
        cmd.arg("sync").arg("--repo-url").arg(url).args(args);
        Run::of(&mut cmd)
    }

    /// The binary started with `args`, its output captured: for `Run::within`.
    pub fn spawn(&self, args: &[&str]) -> Child {
        let mut cmd = self.command();
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.spawn().unwrap()
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let mut cmd = self.command();
        cmd.args(args);
        Run::of(&mut cmd)
    }

    pub fn state_json(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.state.join("state.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// Bytes of state.json, or None: to prove a command left it alone.
    pub fn state_bytes(&self) -> Option<Vec<u8>> {
        std::fs::read(self.state.join("state.json")).ok()
    }

    /// Lines of `$OUT/runs`: one per entry point run.
    pub fn runs(&self) -> Vec<String> {
        match std::fs::read_to_string(self.out.join("runs")) {
            Ok(text) => text.lines().map(str::to_string).collect(),
            Err(_) => Vec::new(),
        }
    }

    pub fn applied(&self) -> Option<String> {
        self.state_json()["applied"]["commit"]
            .as_str()
            .map(str::to_string)
    }

    /// The tree the checkout link points at.
    pub fn linked_tree(&self) -> PathBuf {
        std::fs::read_link(&self.checkout).unwrap()
    }

    pub fn trees(&self) -> Vec<String> {
        names(&self.state.join("trees"))
    }

    pub fn logs(&self) -> Vec<String> {
        names(&self.state.join("logs"))
    }
}

pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// An upstream whose one commit is the recording entry point, served by `git daemon`.
pub fn served() -> (Upstream, GitDaemon, String) {
    let up = Upstream::new();
    up.commit(&[("run.sh", RECORDING_RUN_SH)], "init");
    let daemon = GitDaemon::serve(&up.srv());
    let url = daemon.url("config.git");
    (up, daemon, url)
}

/// A machine that applied the first commit of `served()`: "state unchanged" means something.
pub fn applied_machine() -> (Upstream, GitDaemon, Machine, String) {
    let (up, daemon, url) = served();
    let m = Machine::new();
    m.sync(&url, &[]).expect(0);
    (up, daemon, m, url)
}

/// Wait until a file appears (an entry point's marker), failing the test after 20 s.
pub fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Everything a command that reads the state shows: the run's stderr, state.json, status (both
/// forms) and the apply logs. For checking that a secret shows nowhere.
pub fn everything_shown(m: &Machine, run: &Run) -> String {
    let mut all = run.stderr.clone();
    all.push_str(&std::fs::read_to_string(m.state.join("state.json")).unwrap_or_default());
    for args in [&["status"][..], &["status", "--json"][..]] {
        let out = m.run(args);
        all.push_str(&out.stdout);
        all.push_str(&out.stderr);
    }
    for log in m.logs() {
        all.push_str(&std::fs::read_to_string(m.state.join("logs").join(log)).unwrap_or_default());
    }
    all
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A small tmpfs mounted on a directory, unmounted when dropped: a disk that fills up.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` where mounting is not allowed (not root): the test says it was skipped.
    pub fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("skipped: could not mount a tmpfs (needs root)");
        }
        mounted.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

//! `GitDaemon`: `git daemon` serving a directory read-only over `git://` on loopback.

use super::{await_server, free_port, git, isolate_git, run, stop, STARTUP_ATTEMPTS};
use std::fs::{self, File};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use tempfile::TempDir;

/// A running `git daemon` exporting every repository under a base directory (no push).
/// Killed when dropped.
pub struct GitDaemon {
    child: Child,
    port: u16,
    // Holds the daemon's log and its empty $HOME for as long as it runs.
    _state: TempDir,
}

impl GitDaemon {
    /// Serve the repositories under `base` at `git://127.0.0.1:PORT/<name>`.
    pub fn serve(base: &Path) -> GitDaemon {
        let state = TempDir::new().expect("create tempdir");
        let exec_path = run(git(state.path()).arg("--exec-path"));
        let daemon = Path::new(&exec_path).join("git-daemon");
        let mut failures = Vec::new();
        for attempt in 0..STARTUP_ATTEMPTS {
            let port = free_port();
            let log = state.path().join(format!("daemon-{attempt}.log"));
            let log_file = File::create(&log).expect("create daemon log");
            // Run git-daemon itself rather than `git daemon`: the `git` wrapper would be the
            // child we kill, leaving the real daemon running.
            let mut cmd = Command::new(&daemon);
            isolate_git(&mut cmd, state.path());
            // --verbose makes the daemon announce "Ready to rumble" once it is listening.
            cmd.args(["--verbose", "--reuseaddr", "--export-all"])
                .arg(format!("--base-path={}", base.display()))
                .arg("--listen=127.0.0.1")
                .arg(format!("--port={port}"))
                .arg("--informative-errors")
                .arg(base)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file);
            let mut child = cmd.spawn().expect("spawn git daemon");
            match await_server(&mut child, port, &log, "Ready to rumble") {
                Ok(()) => {
                    return GitDaemon {
                        child,
                        port,
                        _state: state,
                    }
                }
                Err(why) => {
                    stop(&mut child);
                    let log = fs::read_to_string(&log).unwrap_or_default();
                    failures.push(format!("port {port}: {why}\n{log}"));
                }
            }
        }
        panic!("git daemon did not start:\n{}", failures.join("\n"));
    }

    /// `git://127.0.0.1:PORT/<repo>`, e.g. `url("config.git")`.
    pub fn url(&self, repo: &str) -> String {
        format!("git://127.0.0.1:{}/{repo}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

//! Test fixtures: a real upstream git repository and real servers (git daemon, HTTP, sshd) on loopback.

#[cfg(test)]
mod servers_smoke;

mod daemon;
mod flaky;
mod http;
mod sshd;
mod upstream;

pub use daemon::GitDaemon;
pub use flaky::{Fault, FlakyProxy};
pub use http::{base64_decode, base64_encode, HttpServer};
pub use sshd::Sshd;
pub use upstream::Upstream;

use std::fs;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output};
use std::thread;
use std::time::{Duration, Instant};

/// How long a server may take to start accepting connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How many fresh ports a server gets before giving up: the port from `free_port` can be
/// taken by someone else between releasing and re-binding it.
const STARTUP_ATTEMPTS: usize = 5;

/// Variables that would silently redirect or reconfigure a git (or ssh) invocation if they
/// leaked in from the environment running the tests (e.g. a git hook or a developer shell).
const LEAKY_GIT_VARS: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_CEILING_DIRECTORIES",
    "GIT_CONFIG",
    "GIT_CONFIG_GLOBAL",
    "GIT_CONFIG_SYSTEM",
    "GIT_CONFIG_COUNT",
    "GIT_CONFIG_PARAMETERS",
    "GIT_NAMESPACE",
    "GIT_PROTOCOL",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_SSH_VARIANT",
    "GIT_ASKPASS",
    "SSH_ASKPASS",
    "SSH_AUTH_SOCK",
    "XDG_CONFIG_HOME",
];

/// Make `cmd` (git, or anything that runs git) independent of host and user configuration,
/// with a fixed identity so commits work on a machine with no `~/.gitconfig`.
pub fn isolate_git(cmd: &mut Command, home: &Path) {
    for var in LEAKY_GIT_VARS {
        cmd.env_remove(var);
    }
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", home)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.invalid")
        .env("GIT_COMMITTER_NAME", "Test Committer")
        .env("GIT_COMMITTER_EMAIL", "committer@example.invalid");
}

/// A `git` command isolated with [`isolate_git`], using `home` as `$HOME`.
pub fn git(home: &Path) -> Command {
    let mut cmd = Command::new("git");
    isolate_git(&mut cmd, home);
    cmd
}

/// Run `cmd` to completion; panic with its full output unless it succeeds. Returns trimmed stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = output(cmd);
    if !out.status.success() {
        panic!(
            "command failed ({}): {cmd:?}\n{}",
            out.status,
            describe(&out)
        );
    }
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Run `cmd` to completion and return whatever happened, panicking only if it cannot start.
pub fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Both output streams, for failure messages.
pub fn describe(out: &Output) -> String {
    format!(
        "--- stdout ---\n{}--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A loopback port that was free a moment ago. Another process may grab it before the caller
/// binds it, so servers started on it must be retried on failure.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Poll until 127.0.0.1:`port` accepts a connection; false if `timeout` passes first.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Wait for a freshly spawned server to be serving on `port`. An open port alone is not
/// proof, since a different process may own it; the server must also have written
/// `ready_marker` to its log, which it only does once its own socket is bound.
fn await_server(
    child: &mut Child,
    port: u16,
    log: &Path,
    ready_marker: &str,
) -> Result<(), String> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("exited during startup ({status})"));
        }
        let ready = fs::read_to_string(log).is_ok_and(|s| s.contains(ready_marker));
        if ready && TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "not serving on port {port} after {STARTUP_TIMEOUT:?}"
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Kill and reap a server process; errors are ignored because it may already be gone.
///
/// Servers fork a process per connection. Killing the server first would re-parent those to
/// pid 1, which in containers often never reaps them, so give them a moment to finish.
fn stop(child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while has_children(child.id()) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Whether any process has `pid` as its parent, by scanning `/proc/*/stat`.
fn has_children(pid: u32) -> bool {
    let Ok(entries) = fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // "pid (comm) state ppid ...": comm may contain spaces and parentheses, hence rfind.
        let ppid = stat
            .rfind(')')
            .and_then(|end| stat[end + 1..].split_whitespace().nth(1))
            .and_then(|field| field.parse::<u32>().ok());
        ppid == Some(pid)
    })
}

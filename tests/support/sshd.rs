//! `Sshd`: a throwaway OpenSSH server on loopback with generated host and client keys.

use super::{await_server, free_port, run, stop, STARTUP_ATTEMPTS};
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use tempfile::TempDir;

const SSHD: &str = "/usr/sbin/sshd";

/// A running `sshd` that lets the current user in with [`Sshd::key`] only. Killed when dropped.
///
/// Files in its tempdir: `host_key` (the server's), `deploy_key` (authorized), `wrong_key`
/// (a valid key that is not authorized), `known_hosts` (pins `host_key` for
/// `[127.0.0.1]:PORT`) and `wrong_known_hosts` (pins an unrelated host key for the same address).
pub struct Sshd {
    child: Child,
    port: u16,
    user: String,
    dir: TempDir,
    /// The file (in `dir`) of the host key the server presents.
    host_key: &'static str,
}

impl Sshd {
    pub fn start() -> Sshd {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing; run `apt-get install openssh-server` (.ci/run does this)"
        );
        ensure_privsep_dir();
        let dir = TempDir::new().expect("create tempdir");
        let path = |name: &str| dir.path().join(name);
        for key in ["host_key", "other_host_key", "deploy_key", "wrong_key"] {
            keygen(&path(key));
        }
        fs::copy(path("deploy_key.pub"), path("authorized_keys")).expect("write authorized_keys");
        let user = run(Command::new("id").arg("-un"));

        let mut failures = Vec::new();
        for attempt in 0..STARTUP_ATTEMPTS {
            let port = free_port();
            let config = path(&format!("sshd_config-{attempt}"));
            fs::write(&config, config_text(dir.path(), port, "host_key"))
                .expect("write sshd_config");
            let log = path(&format!("sshd-{attempt}.log"));
            let mut child = spawn_sshd(&config, &log);
            let marker = format!("Server listening on 127.0.0.1 port {port}");
            match await_server(&mut child, port, &log, &marker) {
                Ok(()) => {
                    write_known_hosts(&path("known_hosts"), &path("host_key.pub"), port);
                    write_known_hosts(
                        &path("wrong_known_hosts"),
                        &path("other_host_key.pub"),
                        port,
                    );
                    return Sshd {
                        child,
                        port,
                        user,
                        dir,
                        host_key: "host_key",
                    };
                }
                Err(why) => {
                    stop(&mut child);
                    let log = fs::read_to_string(&log).unwrap_or_default();
                    failures.push(format!("port {port}: {why}\n{log}"));
                }
            }
        }
        panic!("sshd did not start:\n{}", failures.join("\n"));
    }

    /// Let the key whose public half is `public_key` in too, as one more authorized_keys line
    /// (sshd reads the file at every login).
    pub fn authorize(&self, public_key: &Path) {
        let line = fs::read_to_string(public_key).expect("read public key");
        let mut keys = fs::read_to_string(self.dir.path().join("authorized_keys")).unwrap();
        keys.push_str(&line);
        fs::write(self.dir.path().join("authorized_keys"), keys).expect("write authorized_keys");
    }

    /// The public half of the host key this server presents now.
    pub fn host_public_key(&self) -> String {
        fs::read_to_string(self.dir.path().join(format!("{}.pub", self.host_key)))
            .expect("read host public key")
    }

    /// Stop this server and start one on the same port that presents another host key, as a
    /// reinstalled server (or someone in the middle) would.
    pub fn restart_with_other_host_key(&mut self) {
        stop(&mut self.child);
        self.host_key = "other_host_key";
        let path = |name: &str| self.dir.path().join(name);
        let config = path("sshd_config-other");
        fs::write(
            &config,
            config_text(self.dir.path(), self.port, self.host_key),
        )
        .expect("write sshd_config");
        let log = path("sshd-other.log");
        let mut failures = Vec::new();
        // The old socket may linger a moment; sshd binds with SO_REUSEADDR, so a few tries do.
        for _ in 0..STARTUP_ATTEMPTS {
            let mut child = spawn_sshd(&config, &log);
            let marker = format!("Server listening on 127.0.0.1 port {}", self.port);
            match await_server(&mut child, self.port, &log, &marker) {
                Ok(()) => {
                    self.child = child;
                    return;
                }
                Err(why) => {
                    stop(&mut child);
                    failures.push(format!(
                        "{why}\n{}",
                        fs::read_to_string(&log).unwrap_or_default()
                    ));
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
            }
        }
        panic!(
            "sshd did not restart on port {}:\n{}",
            self.port,
            failures.join("\n")
        );
    }

    /// `ssh://USER@127.0.0.1:PORT/abs/path` for a repository given by absolute path.
    pub fn url(&self, repo_abs_path: &Path) -> String {
        assert!(
            repo_abs_path.is_absolute(),
            "{repo_abs_path:?} is not absolute"
        );
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            repo_abs_path.display()
        )
    }

    /// The authorized client private key (mode 0600).
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("deploy_key")
    }

    /// A client private key the server does not accept.
    pub fn wrong_key(&self) -> PathBuf {
        self.dir.path().join("wrong_key")
    }

    /// known_hosts pinning this server's real host key.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// known_hosts pinning a different host key for the same `[127.0.0.1]:PORT`.
    pub fn wrong_known_hosts(&self) -> PathBuf {
        self.dir.path().join("wrong_known_hosts")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A `GIT_SSH_COMMAND` that uses only `key` and `known_hosts`, never prompts, and
    /// ignores the user's ssh config.
    pub fn git_ssh_command(&self, key: &Path, known_hosts: &Path) -> String {
        format!(
            "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o BatchMode=yes \
             -o StrictHostKeyChecking=yes -o UserKnownHostsFile={} \
             -o GlobalKnownHostsFile=/dev/null",
            key.display(),
            known_hosts.display()
        )
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// sshd running as root refuses to start without its privilege-separation directory, which
/// a container may not have.
fn ensure_privsep_dir() {
    let dir = Path::new("/run/sshd");
    if dir.exists() {
        return;
    }
    // Only root needs it and only root can create it; a non-root sshd runs without it.
    if fs::create_dir_all(dir).is_ok() {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
    }
}

fn keygen(path: &Path) {
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "gitops-test", "-f"])
        .arg(path));
    // ssh refuses private keys that others can read; ssh-keygen already uses 0600, keep it explicit.
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod key");
}

fn config_text(dir: &Path, port: u16, host_key: &str) -> String {
    let d = dir.display();
    // AcceptEnv GIT_PROTOCOL lets git clients negotiate protocol v2 over ssh, as real hosts do.
    format!(
        "ListenAddress 127.0.0.1\n\
         Port {port}\n\
         HostKey {d}/{host_key}\n\
         AuthorizedKeysFile {d}/authorized_keys\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PubkeyAuthentication yes\n\
         PermitRootLogin prohibit-password\n\
         StrictModes no\n\
         UsePAM no\n\
         PidFile none\n\
         PrintMotd no\n\
         AcceptEnv GIT_PROTOCOL\n\
         LogLevel VERBOSE\n"
    )
}

fn write_known_hosts(path: &Path, host_pub: &Path, port: u16) {
    let public = fs::read_to_string(host_pub).expect("read host public key");
    // A .pub line is "type base64 comment"; known_hosts wants "host type base64".
    let mut fields = public.split_whitespace();
    let (Some(kind), Some(key)) = (fields.next(), fields.next()) else {
        panic!("malformed public key in {host_pub:?}: {public:?}");
    };
    fs::write(path, format!("[127.0.0.1]:{port} {kind} {key}\n")).expect("write known_hosts");
}

/// sshd in the foreground with `config`, logging to `log`: -e logs to stderr, which includes
/// "Server listening on ..." once the socket is bound.
fn spawn_sshd(config: &Path, log: &Path) -> Child {
    let log_file = File::create(log).expect("create sshd log");
    Command::new(SSHD)
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("spawn sshd")
}

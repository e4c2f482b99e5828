//! The connection to the server: git:// on a socket we build, ssh and http through gix, each
//! bounded by the pass's deadline.

use super::*;

/// The known_hosts of --ssh-accept-new is created by us (0600, never through a link) before ssh
/// appends to it, and refused when it is not ours alone: a line someone else wrote there is a
/// server key gitops would trust.
pub(super) fn prepare_tofu_file(file: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let shown = file.display();
    match std::fs::symlink_metadata(file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::files::create_new(file).map_err(|e| {
                fail(
                    Exit::Usage,
                    format!("could not create {shown} for --ssh-accept-new ({e}): check that the state directory is writable"),
                )
            })?;
            Ok(())
        }
        Err(e) => Err(fail(
            Exit::Usage,
            format!("cannot inspect {shown} ({e}): check the state directory"),
        )),
        Ok(meta) => {
            let me = nix::unistd::geteuid().as_raw();
            let mode = meta.mode() & 0o7777;
            if !meta.is_file() {
                Err(fail(
                    Exit::Usage,
                    format!("{shown} is not a regular file: remove it, and the next pass records the server's host key again"),
                ))
            } else if meta.uid() != me || mode & 0o022 != 0 {
                Err(fail(
                    Exit::Usage,
                    format!(
                        "{shown} belongs to uid {} with mode {mode:04o}, so others may have added host keys to it: check its lines, then chown it to uid {me} and chmod 600 it",
                        meta.uid()
                    ),
                ))
            } else {
                Ok(())
            }
        }
    }
}

/// A socket whose reads fail once the deadline has passed, however the server trickles.
pub(super) struct DeadlineStream {
    stream: TcpStream,
    deadline: Instant,
}

impl std::io::Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let timed_out = || {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer within --fetch-timeout; check the network or raise it",
            )
        };
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        if let Some(signal) = crate::signals::received() {
            // Not ErrorKind::Interrupted: readers retry that one.
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                format!("gitops received {signal} during the fetch"),
            ));
        }
        self.stream.set_read_timeout(Some(left))?;
        match self.stream.read(buf) {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(timed_out())
            }
            other => other,
        }
    }
}

/// git:// gets a connection we build ourselves: gix writes each pkt-line as its own small write
/// and leaves Nagle on, which stalls every v2 request ~40 ms behind the server's delayed ACK.
/// TCP_NODELAY plus one buffered write per request removes the stall. Other schemes use gix's own.
pub(super) fn connect<'a, 'repo>(
    remote: &'a gix::Remote<'repo>,
    deadline: Instant,
    credentials: Option<(String, String)>,
) -> Result<gix::remote::Connection<'a, 'static, 'repo, Box<dyn Transport + Send>>> {
    let (url, version) = remote.sanitized_url_and_version(Direction::Fetch)?;
    let connection = if url.scheme == gix::url::Scheme::Git {
        let host = url
            .host()
            .ok_or_else(|| anyhow!("the git:// URL names no host"))?;
        let port = url.port.unwrap_or(9418);
        let addresses: Vec<_> = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
            .with_context(|| format!("could not resolve {host}"))?
            .collect();
        // Every address in turn (a dead IPv6 route must not hide a working IPv4 one), all
        // within the one deadline.
        let mut last_error = None;
        let mut connected = None;
        for address in &addresses {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match TcpStream::connect_timeout(address, left) {
                Ok(stream) => {
                    connected = Some(stream);
                    break;
                }
                Err(e) => last_error = Some(e),
            }
        }
        let stream = match (connected, last_error) {
            (Some(stream), _) => stream,
            (None, Some(e)) => {
                return Err(e).with_context(|| format!("could not connect to {host}:{port}"))
            }
            (None, None) => return Err(anyhow!("could not connect to {host}:{port} in time")),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(left.max(Duration::from_millis(1))))?;
        let write = BufWriter::new(stream.try_clone()?);
        let read = DeadlineStream { stream, deadline };
        let transport = gix::protocol::transport::client::git::blocking_io::Connection::new(
            read,
            write,
            version,
            url.path.clone(),
            Some((host.to_string(), url.port)),
            gix::protocol::transport::client::git::ConnectMode::Daemon,
            false,
        );
        remote.to_connection_with_transport(Box::new(transport) as Box<dyn Transport + Send>)
    } else if url.scheme == gix::url::Scheme::File {
        let log = ssh_log(remote.repo().path());
        let transport = upload_pack(&url, version, &log)?;
        remote.to_connection_with_transport(Box::new(transport) as Box<dyn Transport + Send>)
    } else {
        if matches!(url.scheme, gix::url::Scheme::Http | gix::url::Scheme::Https) {
            // reqwest is built without a crypto provider of its own (Cargo.toml) and builds its
            // TLS config for plain http too, panicking without one: ring, set here, only for
            // the passes that go through reqwest.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        remote.connect(Direction::Fetch)?
    };
    let (user, password) = match credentials {
        Some((user, password)) => (Some(user), Some(password)),
        None => (None, None),
    };
    // Credentials come from the token file, the URL or nowhere: no helper, no prompt.
    Ok(connection.with_credentials(move |action| match action {
        gix::credentials::helper::Action::Get(ctx) => match (&user, &password) {
            (Some(username), Some(password)) => Ok(Some(gix::credentials::protocol::Outcome {
                identity: gix::sec::identity::Account {
                    username: username.clone(),
                    password: password.clone(),
                    oauth_refresh_token: None,
                },
                next: ctx.into(),
            })),
            _ => Err(gix::Error::from_error(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "the server asks for credentials and none are configured: give a token with --http-token-file",
            ))),
        },
        _ => Ok(None),
    }))
}

/// What git's own file transport takes out of upload-pack's environment: a variable meant for
/// the caller's repository must not point upload-pack at another one.
pub(super) const GIT_ENV_TO_REMOVE: &[&str] = &[
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_OBJECT_DIRECTORY",
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_IMPLICIT_WORK_TREE",
    "GIT_GRAFT_FILE",
    "GIT_INDEX_FILE",
    "GIT_NO_REPLACE_OBJECTS",
    "GIT_REPLACE_REF_BASE",
    "GIT_PREFIX",
    "GIT_INTERNAL_SUPER_PREFIX",
    "GIT_SHALLOW_FILE",
    "GIT_COMMON_DIR",
    "GIT_CONFIG_COUNT",
];

/// file:// gets an upload-pack we start ourselves: gix's own sends upload-pack's stderr to
/// /dev/null, which loses git's reason ("fatal: '…' does not appear to be a git repository",
/// "detected dubious ownership") and leaves only "failed to fill whole buffer". Here stderr goes
/// to the transport log, where `transport_words` finds it.
pub(super) fn upload_pack(
    url: &gix::Url,
    version: gix::protocol::transport::Protocol,
    log: &Path,
) -> Result<
    gix::protocol::transport::client::git::blocking_io::Connection<
        UploadPack,
        std::process::ChildStdin,
    >,
> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    use std::process::{Command, Stdio};
    let path = std::ffi::OsStr::from_bytes(url.path.as_slice());
    // Created here on a first pass (the store did not exist when the pass made it), and never
    // through a link.
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(log)
        .with_context(|| format!("could not create {}", log.display()))?;
    let spawn = |program: &str, subcommand: Option<&str>| {
        let mut command = Command::new(program);
        command
            .args(subcommand)
            .arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr.try_clone()?);
        for var in GIT_ENV_TO_REMOVE {
            command.env_remove(var);
        }
        if version != gix::protocol::transport::Protocol::V1 {
            command.env("GIT_PROTOCOL", format!("version={}", version as usize));
        }
        command.spawn()
    };
    // git-upload-pack is on PATH where git is installed the usual way; `git upload-pack`
    // covers the installs that keep it in git's exec-path only.
    let mut child = match spawn("git-upload-pack", None) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => spawn("git", Some("upload-pack")),
        other => other,
    }
    .map_err(|e| {
        fail(
            Exit::FetchFailed,
            format!("could not start git-upload-pack for a file:// URL ({e}): install git"),
        )
    })?;
    let (Some(stdout), Some(stdin)) = (child.stdout.take(), child.stdin.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(anyhow!("git-upload-pack started without its pipes"));
    };
    Ok(
        gix::protocol::transport::client::git::blocking_io::Connection::new(
            UploadPack { stdout, child },
            stdin,
            version,
            url.path.clone(),
            None::<(String, Option<u16>)>,
            gix::protocol::transport::client::git::ConnectMode::Process,
            false,
        ),
    )
}

/// upload-pack's output, and the process itself: it is stopped and reaped with the connection,
/// so no pass leaves one behind.
pub(super) struct UploadPack {
    stdout: std::process::ChildStdout,
    child: std::process::Child,
}

impl std::io::Read for UploadPack {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.stdout.read(buf)
    }
}

impl Drop for UploadPack {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

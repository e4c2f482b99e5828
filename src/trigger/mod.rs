//! `gitops trigger`: a forge's webhook, served on the socket systemd passes in; an
//! authenticated push starts a pass (through the path unit), and nothing else ever happens.

mod auth;
mod http;
pub mod options;
pub mod record;
mod serve;

use std::net::TcpListener;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::exit::{fail, Exit};
use options::Args;
use record::{Pacer, Seen, Stats};
use serve::{Server, Shared, Start};

/// The first socket systemd passes (sd_listen_fds(3)).
const SD_LISTEN_FDS_START: i32 = 3;
/// Pulses closer than this could take gitops.service past its start limit (install-units
/// refuses less).
const MIN_PULSE_INTERVAL: Duration = Duration::from_secs(3);
/// Secrets shorter than this are refused: a forge's form takes any length, a guess should not.
const MIN_SECRET: usize = 16;

pub fn run(args: &Args) -> Result<Exit> {
    let state_dir = args.state_dir();
    prepare_state_dir(&state_dir)?;
    let secret = read_secret(args)?;
    let listener = listener_from_systemd()?;
    let stats_file = state_dir.join(options::STATS);
    let stats = Stats::load(&stats_file);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    // The interval holds across restarts: the last start, carried over from the file.
    let last = stats.last_start_unix.and_then(|at| {
        let ago = Duration::from_secs(u64::try_from(now.saturating_sub(at)).ok()?);
        (ago < args.trigger_min_interval)
            .then(|| Instant::now().checked_sub(ago))
            .flatten()
    });
    if args.trigger_command.is_none() && args.trigger_min_interval < MIN_PULSE_INTERVAL {
        say!(
            "gitops trigger: warning: --trigger-min-interval is below {}s: pulses that close could start gitops.service past its start limit (5 in 10 s), and gitops-trigger.path would then stop starting passes until reset; use 3s or more",
            MIN_PULSE_INTERVAL.as_secs()
        );
    }
    let start = match &args.trigger_command {
        Some(program) => Start::Command(program.clone()),
        None => Start::Pulse(state_dir.join(options::PULSE)),
    };
    let server = Arc::new(Server {
        secret: auth::Secret::new(&secret),
        path: args.trigger_path.clone(),
        allow: args.trigger_allow.clone(),
        branch: args.branch.clone().filter(|b| !b.is_empty()),
        start,
        stats_file,
        idle_exit: args.trigger_idle_exit,
        shared: Mutex::new(Shared {
            pacer: Pacer {
                interval: args.trigger_min_interval,
                last,
                pending: false,
            },
            seen: Seen::load(&state_dir.join("seen.json")),
            stats,
        }),
    });
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    say!(
        "gitops trigger: serving POST {} on {address}{}",
        args.trigger_path,
        match &args.branch {
            Some(branch) => format!(" for pushes to {branch}"),
            None => String::new(),
        }
    );
    serve::serve(server, listener)?;
    Ok(Exit::Ok)
}

/// The trigger's own directory: created 0700 when missing, and refused when another user
/// owns it or others may write it (a planted pulse or replay file).
fn prepare_state_dir(dir: &Path) -> Result<()> {
    let shown = dir.display();
    if let Err(e) = std::fs::DirBuilder::new().mode(0o700).create(dir) {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            return Err(fail(
                Exit::Usage,
                format!("cannot create the trigger's state directory {shown} ({e}): point --trigger-state-dir at a directory of the user running the trigger"),
            ));
        }
    }
    let meta = std::fs::metadata(dir).map_err(|e| {
        fail(
            Exit::Usage,
            format!("cannot read the trigger's state directory {shown} ({e}): point --trigger-state-dir at a directory"),
        )
    })?;
    let me = nix::unistd::geteuid().as_raw();
    if !meta.is_dir() || meta.uid() != me || meta.permissions().mode() & 0o022 != 0 {
        return Err(fail(
            Exit::Usage,
            format!(
                "the trigger's state directory {shown} must be a directory of uid {me} that group and others cannot write (it is uid {}, mode {:04o}): chown and chmod 700 it",
                meta.uid(),
                meta.permissions().mode() & 0o7777
            ),
        ));
    }
    Ok(())
}

fn read_secret(args: &Args) -> Result<Vec<u8>> {
    let path: PathBuf = match (&args.trigger_secret_file, std::env::var_os("CREDENTIALS_DIRECTORY")) {
        (Some(path), _) => path.clone(),
        (None, Some(dir)) => Path::new(&dir).join(options::CREDENTIAL),
        (None, None) => {
            return Err(fail(
                Exit::Usage,
                "no webhook secret: give --trigger-secret-file FILE (gitops install-units --trigger writes one)",
            ))
        }
    };
    let bytes = crate::report::notify::options::read_secret_file(
        &path,
        "--trigger-secret-file",
        "webhook secret",
    )?;
    let secret = bytes.trim_ascii().to_vec();
    if secret.len() < MIN_SECRET {
        return Err(fail(
            Exit::Usage,
            format!(
                "the webhook secret in {} is shorter than {MIN_SECRET} characters, which a guess could find: write a random one (openssl rand -hex 32)",
                path.display()
            ),
        ));
    }
    Ok(secret)
}

/// The listening socket systemd passed (LISTEN_PID is ours, LISTEN_FDS ≥ 1: the first one).
fn listener_from_systemd() -> Result<TcpListener> {
    let not_passed = || {
        fail(
            Exit::Usage,
            "gitops trigger serves the socket systemd passes it and was given none: start gitops-trigger.socket (gitops install-units --trigger), or try it by hand with systemd-socket-activate -l 127.0.0.1:9419 gitops trigger",
        )
    };
    let var = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
    };
    let pid = var("LISTEN_PID").ok_or_else(not_passed)?;
    let count = var("LISTEN_FDS").ok_or_else(not_passed)?;
    if pid != i64::from(nix::unistd::getpid().as_raw()) || count < 1 {
        return Err(not_passed());
    }
    // Still one thread: nothing reads the environment concurrently. A command the trigger
    // runs must not think the socket is passed to it too.
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(name);
    }
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    use nix::sys::socket::{getsockopt, sockopt};
    // SAFETY: sd_listen_fds(3): systemd passes the sockets from fd 3 on, and LISTEN_PID says
    // they are meant for this process; nothing else in it has touched fd 3. F_GETFD checks it
    // is open before anything owns it.
    let borrowed = unsafe { BorrowedFd::borrow_raw(SD_LISTEN_FDS_START) };
    if fcntl(borrowed, FcntlArg::F_GETFD).is_err() {
        return Err(not_passed());
    }
    let listening = getsockopt(&borrowed, sockopt::AcceptConn).unwrap_or(false);
    if !listening {
        return Err(fail(
            Exit::Usage,
            "the file systemd passed is not a listening stream socket: give gitops-trigger.socket a ListenStream= and Accept=no",
        ));
    }
    let _ = fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    if count > 1 {
        // Sockets of more ListenStream= lines: not served, and not handed on to the command
        // either (systemd passes them inheritable).
        for fd in
            SD_LISTEN_FDS_START + 1..SD_LISTEN_FDS_START.saturating_add(count.min(1024) as i32)
        {
            // SAFETY: fds systemd passed to this process, which nothing else in it uses; only
            // their close-on-exec flag is set, on those that are open.
            let extra = unsafe { BorrowedFd::borrow_raw(fd) };
            let _ = fcntl(extra, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
        }
        say!(
            "gitops trigger: warning: systemd passed {count} sockets and only the first is served: give gitops-trigger.socket one ListenStream="
        );
    }
    // SAFETY: as above; from here on the listener owns fd 3 and closes it.
    let owned = unsafe { OwnedFd::from_raw_fd(SD_LISTEN_FDS_START) };
    let listener = TcpListener::from(owned);
    if listener.local_addr().is_err() {
        return Err(fail(
            Exit::Usage,
            "the socket systemd passed is not a TCP socket: give gitops-trigger.socket a ListenStream= of an address and port (like [::]:9419)",
        ));
    }
    Ok(listener)
}

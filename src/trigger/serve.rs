//! The accept loop and one request's way through it: address, head, path, method, length,
//! body, signature, replay, then what the request asks for. Each connection has its own
//! thread (a client that sends nothing holds only its own), and the process leaves when idle.

use std::collections::HashMap;
use std::net::{IpAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::auth::{self, Action, Secret};
use super::http::{self, Unreadable, MAX_BODY};
use super::options::Cidrs;
use super::record::{Last, Pace, Pacer, Seen, Stats};

/// Reading a whole request may take this long; then the connection is closed.
pub const READ_DEADLINE: Duration = Duration::from_secs(10);
/// Connections served at once; more are answered 503 and closed at once.
const MAX_CONNECTIONS: usize = 32;
/// Connections served at once from one source (an IPv4 address, an IPv6 /64): one host that
/// opens connections and sends nothing would otherwise hold every slot, and turn the forge
/// away, for as long as it reopens them every 10 s. A forge's deliveries take milliseconds,
/// and of several at once one pass is all that is needed. Filling every slot then takes
/// MAX_CONNECTIONS / MAX_PER_SOURCE hosts, which `--trigger-allow` is for. Behind a proxy
/// every request is the proxy's: it must read whole requests before passing them on (nginx
/// does by default) and hold its own clients to their share.
const MAX_PER_SOURCE: usize = 4;

/// How a pass is started.
pub enum Start {
    /// Write the pulse file gitops-trigger.path watches.
    Pulse(PathBuf),
    /// Run this program (tests, machines without the path unit).
    Command(PathBuf),
}

pub struct Server {
    pub secret: Secret,
    pub path: String,
    pub allow: Option<Cidrs>,
    pub branch: Option<String>,
    pub start: Start,
    pub stats_file: PathBuf,
    pub idle_exit: Duration,
    pub shared: Mutex<Shared>,
}

pub struct Shared {
    pub pacer: Pacer,
    pub seen: Seen,
    pub stats: Stats,
}

pub fn serve(server: Arc<Server>, listener: TcpListener) -> anyhow::Result<()> {
    listener.set_nonblocking(true)?;
    let slots = Arc::new(Slots::default());
    let mut last_activity = Instant::now();
    loop {
        let now = Instant::now();
        let due = {
            let mut shared = lock(&server.shared);
            if shared.pacer.take_due(now) {
                server.start_pass(&mut shared, "the requests coalesced in the interval");
                server.save_stats(&shared);
            }
            shared.pacer.due_at()
        };
        let idle_left = server
            .idle_exit
            .saturating_sub(now.saturating_duration_since(last_activity));
        if idle_left.is_zero() && slots.in_use() == 0 && due.is_none() {
            return Ok(());
        }
        // Woken by a connection, the coalesced pass falling due, or the idle limit (checked
        // again each second while connections are still being served).
        let mut wait = if idle_left.is_zero() {
            Duration::from_secs(1)
        } else {
            idle_left
        };
        if let Some(due) = due {
            wait = wait.min(due.saturating_duration_since(now));
        }
        let millis = u16::try_from(wait.as_millis().max(1)).unwrap_or(u16::MAX);
        let mut fds = [nix::poll::PollFd::new(
            listener.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(&mut fds, millis) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => anyhow::bail!("cannot wait for connections on the socket ({e})"),
        }
        loop {
            let (stream, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // A connection reset before we took it, out of file descriptors for a
                // moment: the next poll tries again.
                Err(_) => break,
            };
            last_activity = Instant::now();
            let _ = stream.set_nonblocking(false);
            let Some(slot) = Slots::take(&slots, peer.ip()) else {
                server.count_refused("busy");
                http::respond(&stream, 503, "busy", &[("Retry-After", "10")]);
                continue;
            };
            let server = Arc::clone(&server);
            // The slot goes with the thread, and is given back when it ends however it ends;
            // if it cannot start, at once.
            let _ = std::thread::Builder::new().spawn(move || {
                server.handle(&stream, peer.ip());
                drop(slot);
            });
        }
    }
}

/// The connections being served, by source.
#[derive(Default)]
struct Slots(Mutex<HashMap<IpAddr, usize>>);

/// One connection's place in `Slots`, given back when dropped.
struct Slot {
    slots: Arc<Slots>,
    source: IpAddr,
}

impl Slots {
    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn in_use(&self) -> usize {
        self.counts().values().sum()
    }

    /// A slot for a connection from `peer`, unless all are taken or its source has its share.
    fn take(slots: &Arc<Slots>, peer: IpAddr) -> Option<Slot> {
        let source = source_of(peer);
        let mut counts = slots.counts();
        let total: usize = counts.values().sum();
        let mine = counts.entry(source).or_default();
        if total >= MAX_CONNECTIONS || *mine >= MAX_PER_SOURCE {
            if *mine == 0 {
                counts.remove(&source);
            }
            return None;
        }
        *mine += 1;
        Some(Slot {
            slots: Arc::clone(slots),
            source,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.slots.counts();
        if let Some(n) = counts.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.source);
            }
        }
    }
}

/// What one host is: its IPv4 address (also when mapped into IPv6), or its IPv6 /64, the
/// smallest network a host is usually given.
fn source_of(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !(u128::MAX >> 64)).into()),
        },
        v4 => v4,
    }
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    // A thread that panicked holding the lock left counters, not invariants, behind.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What one request got, for the counters and the log line.
enum Outcome {
    Refused { status: u16, reason: &'static str },
    Accepted,
}

impl Server {
    fn count_refused(&self, reason: &str) {
        let mut shared = lock(&self.shared);
        shared.stats.refuse(reason);
        self.save_stats(&shared);
    }

    fn save_stats(&self, shared: &Shared) {
        if let Err(e) = shared.stats.save(&self.stats_file) {
            say!(
                "gitops trigger: warning: could not write {} ({e}); status will show older counters",
                self.stats_file.display()
            );
        }
    }

    fn handle(&self, stream: &TcpStream, peer: IpAddr) {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        let outcome = self.answer(stream, peer);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        match outcome {
            Outcome::Refused { status, reason } => {
                say!("gitops trigger: refused a request from {peer}: {reason} ({status})");
            }
            Outcome::Accepted => {}
        }
    }

    fn answer(&self, stream: &TcpStream, peer: IpAddr) -> Outcome {
        // Counted before the answer: a client that has its answer finds the counters current.
        let refuse = |status: u16, reason: &'static str, text: &str| {
            self.count_refused(reason);
            http::respond(stream, status, text, &[]);
            Outcome::Refused { status, reason }
        };
        if self.allow.as_ref().is_some_and(|allow| !allow.allows(peer)) {
            return refuse(403, "address", "forbidden");
        }
        let deadline = Instant::now() + READ_DEADLINE;
        let mut reader = http::Reader::new(stream, deadline);
        let head = match reader.head() {
            Ok(head) => head,
            Err(e) => {
                self.count_refused(e.name());
                if let Some(status) = e.status() {
                    http::respond(stream, status, e.name(), &[]);
                }
                return Outcome::Refused {
                    status: e.status().unwrap_or(0),
                    reason: e.name(),
                };
            }
        };
        if head.path != self.path {
            return refuse(404, "path", "not found");
        }
        if head.method != "POST" {
            self.count_refused("method");
            http::respond(stream, 405, "only POST", &[("Allow", "POST")]);
            return Outcome::Refused {
                status: 405,
                reason: "method",
            };
        }
        let length = match (head.content_length, head.chunked) {
            (Some(length), false) => length,
            _ => return refuse(411, "length", "a Content-Length is required"),
        };
        if length > MAX_BODY {
            // Answered from the head alone: the body is never read, and the connection is
            // closed after a short drain so the client can still read the answer.
            self.count_refused("size");
            http::respond(stream, 413, "the body is larger than 64 KiB", &[]);
            drain(stream);
            return Outcome::Refused {
                status: 413,
                reason: "size",
            };
        }
        if head.expect_continue {
            http::respond(stream, 100, "", &[]);
        }
        let body = match reader.body(length) {
            Ok(body) => body,
            Err(Unreadable::Deadline) => return refuse(408, "deadline", "deadline"),
            Err(e) => {
                self.count_refused(e.name());
                return Outcome::Refused {
                    status: 0,
                    reason: e.name(),
                };
            }
        };
        let now_unix = OffsetDateTime::now_utc().unix_timestamp();
        let authentic = match auth::authenticate(&head.headers, &body, &self.secret, now_unix) {
            Ok(authentic) => authentic,
            Err(refusal) => return refuse(401, refusal.name(), "unauthorized"),
        };
        let action = auth::action(&head.headers, &body, self.branch.as_deref());
        let mut shared = lock(&self.shared);
        if !shared.seen.admit(&authentic.replay_keys, now_unix) {
            drop(shared);
            return refuse(409, "replay", "this delivery was already received");
        }
        if let Err(e) = shared.seen.save() {
            say!("gitops trigger: warning: could not record the delivery ids ({e}); a replay after a restart would not be recognised");
        }
        shared.stats.accepted += 1;
        let (status, answer) = match &action {
            Action::Pong => {
                shared.stats.ignored += 1;
                (200, "pong")
            }
            Action::Ignore(_) => {
                shared.stats.ignored += 1;
                (202, "ignored")
            }
            Action::Start => match shared.pacer.request(Instant::now()) {
                Pace::StartNow => match self.start_pass(&mut shared, "a push") {
                    true => (202, "started"),
                    // The forge shows the delivery failed; the timer still runs the pass.
                    false => (503, "failed"),
                },
                Pace::Coalesced => {
                    shared.stats.coalesced += 1;
                    (202, "coalesced")
                }
            },
        };
        shared.stats.last = Some(Last {
            time: rfc3339(OffsetDateTime::now_utc()),
            source: peer.to_string(),
            forge: authentic.forge.name().to_string(),
            answer: answer.to_string(),
        });
        self.save_stats(&shared);
        drop(shared);
        http::respond(stream, status, answer, &[]);
        let delivery = authentic
            .delivery
            .as_deref()
            .map(|d| format!(", delivery {}", auth::shown(d)))
            .unwrap_or_default();
        let why = match &action {
            Action::Ignore(why) => format!(": {why}"),
            _ => String::new(),
        };
        say!(
            "gitops trigger: {answer}: {} request from {peer}{delivery}{why}",
            authentic.forge.name()
        );
        Outcome::Accepted
    }

    /// The one action: ask for a pass. Nothing of the request goes into it.
    /// False when the pass could not be asked for: the request is then not answered
    /// "started", and the counters say so.
    fn start_pass(&self, shared: &mut Shared, why: &str) -> bool {
        shared.stats.last_start_unix = Some(OffsetDateTime::now_utc().unix_timestamp());
        let result = match &self.start {
            Start::Pulse(path) => pulse(path),
            Start::Command(program) => run_command(program),
        };
        match result {
            Ok(()) => {
                shared.stats.started += 1;
                say!("gitops trigger: starting a pass for {why}");
                true
            }
            Err(e) => {
                shared.stats.start_failed += 1;
                say!("gitops trigger: error: could not start a pass for {why}: {e}");
                false
            }
        }
    }
}

/// Read and drop what the client still sends, briefly: closing with unread data would reset
/// the connection before the client reads our answer.
fn drain(stream: &TcpStream) {
    use std::io::Read;
    let until = Instant::now() + Duration::from_secs(1);
    let mut buf = [0u8; 16 * 1024];
    let mut left = 256 * 1024usize;
    let mut stream = stream;
    while left > 0 {
        let Some(wait) = until.checked_duration_since(Instant::now()) else {
            break;
        };
        if stream
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .is_err()
        {
            break;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// The time the pass is asked for, written and closed: PathChanged= fires on the close.
fn pulse(path: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?;
    writeln!(file, "{}", rfc3339(OffsetDateTime::now_utc()))
}

/// The program with no arguments, an empty environment but PATH, no input; waited for (a
/// starter such as `systemctl start --no-block` returns at once), at most 30 s.
fn run_command(program: &std::path::Path) -> std::io::Result<()> {
    let mut child = std::process::Command::new(program)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdin(std::process::Stdio::null())
        .spawn()?;
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait()? {
            return if status.success() {
                Ok(())
            } else {
                Err(std::io::Error::other(format!(
                    "{} exited with {status}",
                    program.display()
                )))
            };
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::other(format!(
                "{} did not finish within 30 s",
                program.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_shared_out_by_source_and_given_back() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(source_of(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(source_of(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        let slots = Arc::new(Slots::default());
        // One /64 is one host, whichever of its addresses it uses.
        let held: Vec<Slot> = (1..=MAX_PER_SOURCE)
            .map(|n| Slots::take(&slots, ip(&format!("2001:db8::{n}"))).unwrap())
            .collect();
        assert!(Slots::take(&slots, ip("2001:db8::ffff")).is_none());
        assert!(Slots::take(&slots, ip("2001:db8:0:1::1")).is_some());
        let others: Vec<Slot> = (0..MAX_CONNECTIONS - MAX_PER_SOURCE)
            .map(|n| Slots::take(&slots, ip(&format!("10.0.{n}.1"))).unwrap())
            .collect();
        assert_eq!(slots.in_use(), MAX_CONNECTIONS);
        assert!(Slots::take(&slots, ip("192.0.2.1")).is_none(), "all taken");
        drop(held);
        drop(others);
        assert_eq!(slots.in_use(), 0);
        assert!(slots.counts().is_empty(), "no source is remembered");
    }
}

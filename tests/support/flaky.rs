//! `FlakyProxy`: a TCP proxy on loopback in front of a real `git daemon` that misbehaves, on
//! the connection the test chooses, the way a network or a broken server does: it hangs up in
//! the handshake or in the pack, stops answering, or ends the pack early as if it were whole.
//!
//! Git's own bytes pass through untouched otherwise: the proxy reads the server's side as
//! pkt-lines only to know where the handshake ends and the pack begins (the first side-band
//! packet), so a fault can be placed there.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long the proxy waits for the daemon before taking it for gone: far longer than any
/// answer on loopback, short enough that a stuck test thread ends.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// What the proxy does to one connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Pass everything on.
    None,
    /// Hang up once `after` bytes of the server's handshake (capabilities, refs, acknowledgements)
    /// have been passed on; 0 hangs up before a byte of it.
    DropInHandshake { after: usize },
    /// Hang up once the fraction `keep` (0 to 1) of the pack's stream has been passed on.
    DropInPack { keep: f64 },
    /// Pass on the fraction `keep` of the pack's data, then end the pack stream with a
    /// flush-pkt as a server that had sent it all would: the pack arrives short, not cut off.
    TruncatePack { keep: f64 },
    /// Stop passing anything on for `hold` once `after` bytes of the handshake went through,
    /// with the connection left open: a server that hangs.
    StallInHandshake { after: usize, hold: Duration },
    /// The same once the fraction `keep` of the pack's stream went through.
    StallInPack { keep: f64, hold: Duration },
}

impl Fault {
    /// The fault's kind, for counting.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::DropInHandshake { .. } => "drop-in-handshake",
            Fault::DropInPack { .. } => "drop-in-pack",
            Fault::TruncatePack { .. } => "truncate-pack",
            Fault::StallInHandshake { .. } => "stall-in-handshake",
            Fault::StallInPack { .. } => "stall-in-pack",
        }
    }
}

struct Shared {
    upstream: u16,
    next: Mutex<Fault>,
    /// Faults that took effect, in order: a pack fault on a connection with no pack never does.
    fired: Mutex<Vec<Fault>>,
    connections: AtomicUsize,
    stop: AtomicBool,
}

/// A proxy on 127.0.0.1 in front of `git daemon`'s port. Stopped when dropped.
pub struct FlakyProxy {
    port: u16,
    shared: Arc<Shared>,
    accepter: Option<thread::JoinHandle<()>>,
}

impl FlakyProxy {
    /// Forward 127.0.0.1:PORT to 127.0.0.1:`upstream`, every connection passed on as is until
    /// [`FlakyProxy::next_connection`] says otherwise.
    pub fn new(upstream: u16) -> FlakyProxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local address").port();
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let shared = Arc::new(Shared {
            upstream,
            next: Mutex::new(Fault::None),
            fired: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let accepting = Arc::clone(&shared);
        let accepter = thread::spawn(move || accept_loop(listener, accepting));
        FlakyProxy {
            port,
            shared,
            accepter: Some(accepter),
        }
    }

    /// `git://127.0.0.1:PORT/<repo>` through the proxy.
    pub fn url(&self, repo: &str) -> String {
        format!("git://127.0.0.1:{}/{repo}", self.port)
    }

    /// What the next connection gets; the ones after it are passed on as is.
    pub fn next_connection(&self, fault: Fault) {
        *lock(&self.shared.next) = fault;
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// The faults that took effect so far, in order.
    pub fn fired(&self) -> Vec<Fault> {
        lock(&self.shared.fired).clone()
    }
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(accepter) = self.accepter.take() {
            let _ = accepter.join();
        }
    }
}

/// A poisoned lock only means another proxy thread panicked; its data is still whole.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                let fault = std::mem::replace(&mut *lock(&shared.next), Fault::None);
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let serving = Arc::clone(&shared);
                thread::spawn(move || {
                    let _ = serve(client, fault, &serving);
                });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(2));
            }
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// One client connection, from accept to hang-up.
fn serve(client: TcpStream, fault: Fault, shared: &Shared) -> io::Result<()> {
    client.set_nonblocking(false)?;
    if let Fault::DropInHandshake { after: 0 } = fault {
        lock(&shared.fired).push(fault);
        return client.shutdown(Shutdown::Both);
    }
    let server = TcpStream::connect((Ipv4Addr::LOCALHOST, shared.upstream))?;
    server.set_read_timeout(Some(UPSTREAM_TIMEOUT))?;
    client.set_nodelay(true)?;
    let client_gone = Arc::new(AtomicBool::new(false));
    {
        // Client to server is passed on as is; its end is how a stall learns the client gave up.
        let mut from = client.try_clone()?;
        let mut to = server.try_clone()?;
        let gone = Arc::clone(&client_gone);
        thread::spawn(move || {
            let _ = io::copy(&mut from, &mut to);
            gone.store(true, Ordering::SeqCst);
            let _ = to.shutdown(Shutdown::Write);
        });
    }
    let mut pump = Pump {
        server: server.try_clone()?,
        client: client.try_clone()?,
        fault,
        handshake: 0,
        fired: false,
        shared,
    };
    let result = pump.run(&client_gone);
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    result
}

/// What the server side's stream does next.
enum Step {
    Go,
    /// The fault says: stop here (hang up, or hang up after the stall).
    End,
}

struct Pump<'a> {
    shared: &'a Shared,
    server: TcpStream,
    client: TcpStream,
    fault: Fault,
    /// Handshake bytes passed on so far.
    handshake: usize,
    fired: bool,
}

impl Pump<'_> {
    /// Said as it happens, before the client can see it: the test reads it right after.
    fn fire(&mut self) {
        self.fired = true;
        lock(&self.shared.fired).push(self.fault);
    }

    fn run(&mut self, client_gone: &AtomicBool) -> io::Result<()> {
        loop {
            let packet = match read_packet(&mut self.server)? {
                None => return Ok(()),
                Some(Packet::Line(packet)) => packet,
                Some(Packet::NotPktLine(header)) => {
                    // Not pkt-lines: pass the rest on blindly.
                    self.client.write_all(&header)?;
                    return io::copy(&mut self.server, &mut self.client).map(|_| ());
                }
            };
            if is_sideband(&packet) {
                // The pack's stream, up to its flush-pkt: gathered whole so that a fault can
                // be placed at a fraction of it.
                let mut pack = vec![packet];
                while let Some(Packet::Line(p)) = read_packet(&mut self.server)? {
                    let flush = p == b"0000";
                    pack.push(p);
                    if flush {
                        break;
                    }
                }
                match self.pack(&pack, client_gone)? {
                    Step::Go => continue,
                    Step::End => return Ok(()),
                }
            }
            match self.handshake_bytes(&packet, client_gone)? {
                Step::Go => {}
                Step::End => return Ok(()),
            }
        }
    }

    fn handshake_bytes(&mut self, packet: &[u8], client_gone: &AtomicBool) -> io::Result<Step> {
        let cut = match self.fault {
            Fault::DropInHandshake { after } | Fault::StallInHandshake { after, .. } => Some(after),
            _ => None,
        };
        match cut {
            Some(after) if self.handshake + packet.len() >= after && !self.fired => {
                let keep = after.saturating_sub(self.handshake);
                self.fire();
                self.client.write_all(&packet[..keep])?;
                if let Fault::StallInHandshake { hold, .. } = self.fault {
                    stall(hold, client_gone, &self.shared.stop);
                }
                Ok(Step::End)
            }
            _ => {
                self.handshake += packet.len();
                self.client.write_all(packet)?;
                Ok(Step::Go)
            }
        }
    }

    fn pack(&mut self, pack: &[Vec<u8>], client_gone: &AtomicBool) -> io::Result<Step> {
        let raw: Vec<u8> = pack.concat();
        // At least one byte passed on and at least one kept back: the fault is always inside.
        let at = |keep: f64| ((raw.len() as f64 * keep) as usize).clamp(1, raw.len() - 1);
        match self.fault {
            Fault::DropInPack { keep } if raw.len() > 1 => {
                self.fire();
                self.client.write_all(&raw[..at(keep)])?;
                Ok(Step::End)
            }
            Fault::StallInPack { keep, hold } if raw.len() > 1 => {
                self.fire();
                self.client.write_all(&raw[..at(keep)])?;
                stall(hold, client_gone, &self.shared.stop);
                Ok(Step::End)
            }
            Fault::TruncatePack { keep } if !self.fired => {
                let short = truncated(pack, keep);
                if short.len() < raw.len() {
                    self.fire();
                }
                self.client.write_all(&short)?;
                Ok(Step::Go)
            }
            _ => {
                self.client.write_all(&raw)?;
                Ok(Step::Go)
            }
        }
    }
}

/// Keep the connection open and silent for `hold`, or until the client hangs up.
fn stall(hold: Duration, client_gone: &AtomicBool, stop: &AtomicBool) {
    let until = Instant::now() + hold;
    while Instant::now() < until
        && !client_gone.load(Ordering::SeqCst)
        && !stop.load(Ordering::SeqCst)
    {
        thread::sleep(Duration::from_millis(10));
    }
}

/// The pack's stream with its data (side band 1) cut after the fraction `keep` of it, the
/// packet holding the cut shortened, the progress packets kept, and a flush-pkt at the end.
fn truncated(pack: &[Vec<u8>], keep: f64) -> Vec<u8> {
    let data: usize = pack
        .iter()
        .filter(|p| p.get(4) == Some(&1))
        .map(|p| p.len() - 5)
        .sum();
    // At least one byte of data is lost, or nothing would be truncated.
    let mut left = ((data as f64 * keep) as usize).min(data.saturating_sub(1));
    let mut out = Vec::new();
    for packet in pack {
        if packet == b"0000" {
            continue;
        }
        if packet.get(4) != Some(&1) {
            out.extend_from_slice(packet);
            continue;
        }
        let payload = &packet[5..];
        let take = payload.len().min(left);
        left -= take;
        if take > 0 {
            out.extend_from_slice(format!("{:04x}", take + 5).as_bytes());
            out.push(1);
            out.extend_from_slice(&payload[..take]);
        }
    }
    out.extend_from_slice(b"0000");
    out
}

/// A side-band packet (pack data, progress, or an error) starts the pack's stream.
fn is_sideband(packet: &[u8]) -> bool {
    packet.len() > 4 && matches!(packet[4], 1..=3)
}

/// One read of the server's side.
enum Packet {
    /// A pkt-line, header included.
    Line(Vec<u8>),
    /// Four bytes that are not a pkt-line length (never seen from git daemon).
    NotPktLine(Vec<u8>),
}

/// The next pkt-line, or `None` at the end of the stream.
fn read_packet(from: &mut TcpStream) -> io::Result<Option<Packet>> {
    let mut header = [0u8; 4];
    let got = read_full(from, &mut header)?;
    if got == 0 {
        return Ok(None);
    }
    let Some(len) = std::str::from_utf8(&header[..got])
        .ok()
        .filter(|_| got == 4)
        .and_then(|h| usize::from_str_radix(h, 16).ok())
    else {
        return Ok(Some(Packet::NotPktLine(header[..got].to_vec())));
    };
    let mut packet = header.to_vec();
    // 0000 flush, 0001 delimiter, 0002 response end: a header alone.
    if len >= 4 {
        packet.resize(len, 0);
        let body = read_full(from, &mut packet[4..])?;
        // Cut short by the server: what came is passed on.
        packet.truncate(4 + body);
    }
    Ok(Some(Packet::Line(packet)))
}

/// Fill `buf` unless the stream ends first; returns how much was read.
fn read_full(from: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match from.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

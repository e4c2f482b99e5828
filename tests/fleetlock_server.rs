//! `FleetLockServer`: a real FleetLock server on 127.0.0.1 for the reboot tests, as airlock
//! and poseidon/fleetlock behave: a counting semaphore of N slots per group, locks owned by
//! their id and recursive (an id holding a slot gets 200 again), a release of a slot not held
//! answered 200, and requests without the protocol's header or body refused with 400.
//! HTTP/1.1 over std::net, one thread per connection, one request per connection.
//!
//! It records every request with the status it got and the most slots ever held at once in
//! one group (`max_held`): what a test of "never more than N reboot together" checks.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// One request as it arrived, and what it was answered.
#[derive(Debug, Clone)]
pub struct LockRequest {
    pub method: String,
    /// As sent, query included.
    pub path: String,
    /// Names lower-cased, in the order sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// `pre-reboot` or `steady-state` (None for any other path).
    pub endpoint: Option<&'static str>,
    /// `client_params.id` and `.group`, when the body had them.
    pub id: Option<String>,
    pub group: Option<String>,
    pub status: u16,
}

impl LockRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Locks {
    /// Group → the ids holding one of its slots.
    held: BTreeMap<String, BTreeSet<String>>,
    max_held: usize,
    requests: Vec<LockRequest>,
    /// Answer every request with this status (and a JSON error) while set.
    failing: Option<u16>,
}

struct Shared {
    slots: usize,
    locks: Mutex<Locks>,
    stopping: AtomicBool,
}

/// Stopped when dropped.
pub struct FleetLockServer {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

/// A client that sends nothing must not keep a thread forever.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A body larger than this is refused: no FleetLock body comes near it.
const MAX_BODY: usize = 64 * 1024;

impl FleetLockServer {
    /// A server with `slots` slots in every group.
    pub fn start(slots: usize) -> FleetLockServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            slots,
            locks: Mutex::new(Locks::default()),
            stopping: AtomicBool::new(false),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if shared.stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        let shared = Arc::clone(&shared);
                        thread::spawn(move || serve(stream, &shared));
                    }
                }
            })
        };
        FleetLockServer {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The base URL, `http://127.0.0.1:PORT` (the server also answers under any path prefix:
    /// `{url}/some/base/v1/pre-reboot`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every request so far, in the order answered.
    pub fn requests(&self) -> Vec<LockRequest> {
        self.shared.locks.lock().unwrap().requests.clone()
    }

    /// The most slots ever held at once in any one group.
    pub fn max_held(&self) -> usize {
        self.shared.locks.lock().unwrap().max_held
    }

    /// The ids holding a slot now, in any group, sorted.
    pub fn holders(&self) -> Vec<String> {
        let locks = self.shared.locks.lock().unwrap();
        let ids: BTreeSet<String> = locks.held.values().flatten().cloned().collect();
        ids.into_iter().collect()
    }

    /// The ids holding a slot of `group` now, sorted.
    pub fn holders_in(&self, group: &str) -> Vec<String> {
        let locks = self.shared.locks.lock().unwrap();
        locks
            .held
            .get(group)
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// While `Some(status)`, answer every request with it and a JSON error, holding and
    /// releasing nothing (a server in trouble); `None` to serve again.
    pub fn fail_with(&self, status: Option<u16>) {
        self.shared.locks.lock().unwrap().failing = status;
    }

    /// Give `id`'s slots back, as an operator clearing a stale lock would.
    pub fn release(&self, id: &str) {
        let mut locks = self.shared.locks.lock().unwrap();
        for ids in locks.held.values_mut() {
            ids.remove(id);
        }
    }

    /// The requests once there are at least `n`; fails the test after `timeout`.
    #[track_caller]
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<LockRequest> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.requests();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} request(s) after {timeout:?}, {n} expected",
                got.len()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for FleetLockServer {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the acceptor up so that it sees the flag.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// The protocol's group syntax, `^[a-zA-Z0-9.-]+$`.
fn group_ok(group: &str) -> bool {
    !group.is_empty()
        && group
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
}

fn error(status: u16, kind: &str, value: &str) -> (u16, Vec<u8>) {
    let body = serde_json::json!({ "kind": kind, "value": value });
    (status, body.to_string().into_bytes())
}

/// Judge one request against the semaphore (under its lock: concurrent requests are
/// serialised here, as a real server's database does).
fn answer(shared: &Shared, mut request: LockRequest) -> (u16, Vec<u8>) {
    let path = request.path.split('?').next().unwrap_or_default();
    request.endpoint = if path.ends_with("/v1/pre-reboot") {
        Some("pre-reboot")
    } else if path.ends_with("/v1/steady-state") {
        Some("steady-state")
    } else {
        None
    };
    let params = serde_json::from_slice::<serde_json::Value>(&request.body)
        .ok()
        .and_then(|v| v.get("client_params").cloned());
    let field = |name: &str| {
        params
            .as_ref()
            .and_then(|p| p.get(name))
            .and_then(|f| f.as_str())
            .map(str::to_string)
    };
    request.id = field("id");
    request.group = field("group");

    let mut locks = shared.locks.lock().unwrap();
    let (status, body) = if let Some(status) = locks.failing {
        error(
            status,
            "server_trouble",
            "the lock server is failing on purpose",
        )
    } else if request.endpoint.is_none() {
        error(404, "not_found", "no such endpoint")
    } else if request.method != "POST" {
        error(405, "method_not_allowed", "only POST is served")
    } else if request.header("fleet-lock-protocol") != Some("true") {
        error(
            400,
            "missing_header",
            "the fleet-lock-protocol header must be true",
        )
    } else {
        match (request.id.clone(), request.group.clone()) {
            (Some(id), Some(group)) if !id.is_empty() && group_ok(&group) => {
                let held = locks.held.entry(group.clone()).or_default();
                if request.endpoint == Some("steady-state") {
                    held.remove(&id);
                    (200, Vec::new())
                } else if held.contains(&id) || held.len() < shared.slots {
                    held.insert(id);
                    let now = held.len();
                    locks.max_held = locks.max_held.max(now);
                    (200, Vec::new())
                } else {
                    let value = format!(
                        "all {} slot(s) of group {group} are held already",
                        shared.slots
                    );
                    error(409, "failed_lock", &value)
                }
            }
            _ => error(
                400,
                "bad_request",
                "the body must be {\"client_params\":{\"id\":…,\"group\":…}} with a valid group",
            ),
        }
    };
    request.status = status;
    locks.requests.push(request);
    (status, body)
}

fn serve(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let (status, body) = match read_request(&mut reader) {
        Some(request) => answer(shared, request),
        None => error(400, "bad_request", "unreadable HTTP request"),
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        _ => "Trouble",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = writer.write_all(head.as_bytes());
    let _ = writer.write_all(&body);
    let _ = writer.flush();
    let _ = writer.shutdown(Shutdown::Both);
}

/// One request: the request line, the headers, and a body by Content-Length.
fn read_request(reader: &mut impl BufRead) -> Option<LockRequest> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut words = line.split_whitespace();
    let method = words.next()?.to_string();
    let path = words.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(Some(0), |(_, v)| v.parse::<usize>().ok())?;
    if length > MAX_BODY {
        return None;
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(LockRequest {
        method,
        path,
        headers,
        body,
        endpoint: None,
        id: None,
        group: None,
        status: 0,
    })
}

/// A raw HTTP request, as a FleetLock client sends it: the status and body answered.
fn post(port: u16, path: &str, header: bool, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let protocol = if header {
        "fleet-lock-protocol: true\r\n"
    } else {
        ""
    };
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{protocol}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn params(id: &str, group: &str) -> String {
    serde_json::json!({ "client_params": { "id": id, "group": group } }).to_string()
}

#[test]
fn fleetlock_server_smoke() {
    const SLOTS: usize = 2;
    let server = FleetLockServer::start(SLOTS);
    let port = server.port();

    // The protocol, one request at a time.
    let pre = "/v1/pre-reboot";
    let steady = "/v1/steady-state";
    assert_eq!(post(port, pre, true, &params("a", "default")).0, 200);
    assert_eq!(
        post(port, pre, true, &params("a", "default")).0,
        200,
        "recursive"
    );
    assert_eq!(post(port, pre, true, &params("b", "default")).0, 200);
    let (status, body) = post(port, pre, true, &params("c", "default"));
    assert_eq!(status, 409);
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["kind"], "failed_lock");
    assert!(
        error["value"].as_str().unwrap().contains("2 slot(s)"),
        "{body}"
    );
    assert_eq!(
        post(port, pre, true, &params("c", "web")).0,
        200,
        "another group"
    );
    assert_eq!(server.holders_in("default"), ["a", "b"]);
    assert_eq!(server.holders(), ["a", "b", "c"]);
    assert_eq!(post(port, steady, true, &params("a", "default")).0, 200);
    assert_eq!(
        post(port, steady, true, &params("a", "default")).0,
        200,
        "held none"
    );
    assert_eq!(post(port, steady, true, &params("zz", "default")).0, 200);
    assert_eq!(
        post(port, "/base/v1/steady-state", true, &params("b", "default")).0,
        200
    );
    assert_eq!(post(port, steady, true, &params("c", "web")).0, 200);
    assert!(server.holders().is_empty());
    assert_eq!(server.max_held(), SLOTS);

    // Refused: no header, a bad body, a bad group, an unknown path.
    assert_eq!(post(port, pre, false, &params("d", "default")).0, 400);
    assert_eq!(post(port, pre, true, "not json").0, 400);
    assert_eq!(
        post(port, pre, true, r#"{"client_params":{"id":"d"}}"#).0,
        400
    );
    assert_eq!(post(port, pre, true, &params("", "default")).0, 400);
    assert_eq!(post(port, pre, true, &params("d", "web servers")).0, 400);
    assert_eq!(
        post(port, "/v1/other", true, &params("d", "default")).0,
        404
    );
    assert!(server.holders().is_empty());
    // An operator clears a stale lock.
    assert_eq!(post(port, pre, true, &params("e", "default")).0, 200);
    server.release("e");
    assert!(server.holders().is_empty());
    server.fail_with(Some(503));
    assert_eq!(post(port, pre, true, &params("d", "default")).0, 503);
    server.fail_with(None);
    let seen = server.requests();
    assert_eq!(seen.len(), 18);
    assert_eq!(
        server.wait_for_requests(18, Duration::from_secs(1)).len(),
        18
    );
    assert_eq!(seen[0].endpoint, Some("pre-reboot"));
    assert_eq!(seen[0].id.as_deref(), Some("a"));
    assert_eq!(seen[0].group.as_deref(), Some("default"));
    assert_eq!(seen[0].header("fleet-lock-protocol"), Some("true"));

    // Five machines racing for two slots: never more than two hold one.
    let server = FleetLockServer::start(SLOTS);
    let port = server.port();
    assert_eq!(server.url(), format!("http://127.0.0.1:{port}"));
    let start = Arc::new(Barrier::new(5));
    let machines: Vec<_> = (0..5)
        .map(|n| {
            let start = Arc::clone(&start);
            thread::spawn(move || {
                let body = params(&format!("machine-{n}"), "default");
                start.wait();
                let deadline = Instant::now() + Duration::from_secs(60);
                while post(port, pre, true, &body).0 != 200 {
                    assert!(Instant::now() < deadline, "machine-{n} never got a slot");
                    thread::sleep(Duration::from_millis(5));
                }
                // Rebooting: the slot is held a while.
                thread::sleep(Duration::from_millis(30));
                assert_eq!(post(port, steady, true, &body).0, 200);
            })
        })
        .collect();
    for machine in machines {
        machine.join().unwrap();
    }
    assert!(
        server.max_held() <= SLOTS,
        "{} held at once",
        server.max_held()
    );
    assert!(server.max_held() >= 1);
    assert!(server.holders().is_empty());
    let granted: BTreeSet<String> = server
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == Some("pre-reboot") && r.status == 200)
        .filter_map(|r| r.id)
        .collect();
    assert_eq!(granted.len(), 5, "{granted:?}");
}

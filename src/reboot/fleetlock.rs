#![allow(dead_code)] // used by the reboot plan, coming
//! The FleetLock client: the protocol Zincati speaks to a reboot-lock server (airlock,
//! poseidon/fleetlock), a counting semaphore per group with recursive locks owned by an id.
//!
//! `POST {base}/v1/pre-reboot` takes a slot before a reboot, `POST {base}/v1/steady-state`
//! gives it back after; both carry `fleet-lock-protocol: true` (proof the request was meant,
//! not a redirect) and `{"client_params":{"id":…,"group":…}}`. Only a 200 is a yes: anything
//! else, or no answer, means the machine does not reboot (or still holds its slot).
//!
//! The base URL may hold credentials (a user part, a token in the path or query): its secrets
//! are given to `crate::redact` before anything can fail, and messages name the server by
//! `scheme://host[:port]` only.

use std::io::Read;
use std::time::Duration;

use ring::hmac;
use serde::Serialize;

use crate::http::{parse_url, Url};

/// gitops' application id for `sd_id128_get_machine_app_specific()`: a random 128-bit id
/// (`systemd-id128 new`, drawn once), so that the id a lock server sees can be linked to
/// neither /etc/machine-id nor the ids other programs derive from it.
pub const APP_ID: [u8; 16] = [
    0x13, 0x2b, 0xd9, 0x7a, 0xb8, 0xfa, 0x46, 0x43, 0x8e, 0xab, 0x16, 0xac, 0xa7, 0x2b, 0xff, 0x41,
];

/// The group of a client that names none, as Zincati's.
pub const DEFAULT_GROUP: &str = "default";

/// The most of an answer read: enough for an error, never a memory hazard.
const MAX_RESPONSE_BODY: u64 = 64 * 1024;

/// The longest server's word quoted in a message.
const MAX_SAID: usize = 200;

/// One of the protocol's two operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Take (or keep) a reboot slot.
    PreReboot,
    /// Give the slot back (a yes also when none is held).
    SteadyState,
}

impl Endpoint {
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::PreReboot => "pre-reboot",
            Endpoint::SteadyState => "steady-state",
        }
    }
}

/// A FleetLock server as this machine talks to it.
pub struct FleetLock {
    /// `scheme://host[:port]/path`, without user part, trailing `/`, query or fragment.
    base: String,
    /// The base URL's query, sent after each endpoint's path (some servers take a token there).
    query: Option<String>,
    /// `Basic …` from the URL's user part.
    authorization: Option<String>,
    /// `scheme://host[:port]`: all that messages show of the URL.
    shown: String,
    /// 32 lower-case hex digits, app-specific to this machine.
    id: String,
    group: String,
}

impl std::fmt::Debug for FleetLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetLock")
            .field("shown", &self.shown)
            .field("id", &self.id)
            .field("group", &self.group)
            .finish()
    }
}

/// One request, built before anything is sent: what the tests check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

#[derive(Serialize)]
struct Body<'a> {
    client_params: ClientParams<'a>,
}

#[derive(Serialize)]
struct ClientParams<'a> {
    id: &'a str,
    group: &'a str,
}

impl FleetLock {
    /// A client of the server at `url` (its base: the endpoints are under it) for the machine
    /// whose /etc/machine-id is `machine_id`, in `group` (`default` when None). The id sent is
    /// the app-specific hash of the machine id, never the machine id itself.
    pub fn new(url: &str, machine_id: &str, group: Option<&str>) -> Result<FleetLock, String> {
        let parsed = parse_url(url);
        // Masked before anything can fail, so that no later message can show them.
        crate::redact::remember(secrets_of(url, parsed.as_ref().ok()));
        let parsed = parsed.map_err(|why| {
            format!(
                "the fleet lock URL is not usable ({why}): give the http:// or https:// base URL of a FleetLock server"
            )
        })?;
        let group = group.unwrap_or(DEFAULT_GROUP);
        check_group(group)?;
        let id = app_specific_id(machine_id, APP_ID)?;
        Ok(FleetLock {
            // The endpoints go under the base's path: `…/base/` and `…/base` alike.
            base: format!("{}{}", parsed.shown(), parsed.path.trim_end_matches('/')),
            authorization: parsed.authorization(),
            shown: parsed.shown(),
            query: parsed.query,
            id,
            group: group.to_string(),
        })
    }

    /// POST `{url}/v1/pre-reboot`: Ok only when the server answers 200 (the slot is ours, or
    /// was already); else one line naming the server and its answer.
    pub fn pre_reboot(&self, timeout: Duration) -> Result<(), String> {
        self.call(Endpoint::PreReboot, timeout)
    }

    /// POST `{url}/v1/steady-state`: Ok only when the server answers 200 (no slot held now).
    pub fn steady_state(&self, timeout: Duration) -> Result<(), String> {
        self.call(Endpoint::SteadyState, timeout)
    }

    /// The id the server knows this machine by (32 hex digits, as Zincati sends it).
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// `scheme://host[:port]`, fit for any message.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The request for `endpoint`, as it will be sent.
    pub fn request(&self, endpoint: Endpoint) -> Request {
        let mut url = format!("{}/v1/{}", self.base, endpoint.name());
        if let Some(query) = &self.query {
            url.push('?');
            url.push_str(query);
        }
        let mut headers = vec![
            ("Content-Type", "application/json".to_string()),
            ("fleet-lock-protocol", "true".to_string()),
        ];
        if let Some(authorization) = &self.authorization {
            headers.push(("Authorization", authorization.clone()));
        }
        let body = Body {
            client_params: ClientParams {
                id: &self.id,
                group: &self.group,
            },
        };
        Request {
            url,
            headers,
            // Two strings in a struct: serialising cannot fail.
            body: serde_json::to_vec(&body).unwrap_or_default(),
        }
    }

    fn call(&self, endpoint: Endpoint, timeout: Duration) -> Result<(), String> {
        let request = self.request(endpoint);
        let mut post = crate::http::agent(timeout).post(&request.url);
        for (name, value) in &request.headers {
            post = post.header(*name, value);
        }
        match post.send(&request.body[..]) {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let mut answer = Vec::new();
                // What could be read in time is enough: the status has arrived.
                let _ = response
                    .body_mut()
                    .as_reader()
                    .take(MAX_RESPONSE_BODY)
                    .read_to_end(&mut answer);
                judge(&self.shown, endpoint, status, &answer)
            }
            Err(e) => Err(crate::http::network_error(
                &format!("the fleet lock server {}", self.shown),
                Some(endpoint.name()),
                &e,
                timeout,
            )),
        }
    }
}

/// What an answer means: 200 is a yes, anything else a no, told with the server's own
/// `{kind, value}` when it sent one (or the first line of a short text answer).
pub fn judge(shown: &str, endpoint: Endpoint, status: u16, body: &[u8]) -> Result<(), String> {
    if status == 200 {
        return Ok(());
    }
    let reason = ureq::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(|r| format!(" {r}"))
        .unwrap_or_default();
    let detail = match status {
        300..=399 => ": redirects are not followed, configure the URL it moved to".to_string(),
        _ => server_says(body)
            .map(|d| format!(": {d}"))
            .unwrap_or_default(),
    };
    Err(crate::redact::scrub(&format!(
        "the fleet lock server {shown} answered {status}{reason} to {}{detail}",
        endpoint.name()
    )))
}

/// The server's word on a refusal: the protocol's `value (kind)`, else the first line of a
/// short text (a proxy's "Unauthorized"); printable and bounded. None for an HTML page.
fn server_says(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let said = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) => {
            let field = |name: &str| {
                v.get(name)
                    .and_then(|f| f.as_str())
                    .map(printable)
                    .filter(|s| !s.is_empty())
            };
            match (field("kind"), field("value")) {
                (Some(kind), Some(value)) => format!("{value} ({kind})"),
                (Some(one), None) | (None, Some(one)) => one,
                (None, None) => return None,
            }
        }
        Err(_) if text.trim_start().starts_with('<') => return None,
        Err(_) => printable(text.lines().next()?),
    };
    (!said.is_empty()).then(|| cut(&said, MAX_SAID))
}

fn printable(text: &str) -> String {
    let text: String = text.chars().filter(|c| !c.is_control()).collect();
    text.trim().to_string()
}

fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// What `scrub` must mask of the server's URL: its credentials and token-like pieces, and the
/// URL whole only when it holds one (masked alone, `http://lock` would garble every line that
/// names the server).
fn secrets_of(url: &str, parsed: Option<&Url>) -> Vec<String> {
    crate::http::secrets_of(url, parsed, false)
}

/// systemd's `sd_id128_get_machine_app_specific()`: HMAC-SHA256 keyed with the machine id's
/// 16 bytes over the app id, its first 16 bytes made a version 4 UUID; as 32 lower-case hex
/// digits, the form Zincati sends. Checked against `systemd-id128 machine-id --app-specific=`.
pub fn app_specific_id(machine_id_hex: &str, app_id: [u8; 16]) -> Result<String, String> {
    let machine_id = parse_id128(machine_id_hex.trim()).ok_or(
        "the machine id (/etc/machine-id) is not 32 hexadecimal digits: run systemd-machine-id-setup to give this machine one",
    )?;
    if machine_id == [0; 16] {
        return Err(
            "the machine id (/etc/machine-id) is all zeros: run systemd-machine-id-setup to give this machine one"
                .to_string(),
        );
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, &machine_id);
    let tag = hmac::sign(&key, &app_id);
    let mut id = [0u8; 16];
    id.copy_from_slice(&tag.as_ref()[..16]);
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    Ok(id.iter().map(|b| format!("{b:02x}")).collect())
}

/// 32 hex digits, or a UUID's 36 with its four dashes (both as systemd reads them).
fn parse_id128(text: &str) -> Option<[u8; 16]> {
    let digits: String = if text.len() == 36 {
        let dashes_fit = text
            .char_indices()
            .all(|(i, c)| matches!(i, 8 | 13 | 18 | 23) == (c == '-'));
        if !dashes_fit {
            return None;
        }
        text.chars().filter(|c| *c != '-').collect()
    } else {
        text.to_string()
    };
    if digits.len() != 32 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(id)
}

/// The protocol's group syntax, `^[a-zA-Z0-9.-]+$`: servers refuse anything else.
fn check_group(group: &str) -> Result<(), String> {
    if !group.is_empty()
        && group
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
    {
        return Ok(());
    }
    let shown = cut(&group.escape_debug().to_string(), 64);
    Err(format!(
        "the fleet lock group \"{shown}\" is not usable: name it with letters, digits, dots and dashes only (as FleetLock requires)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::base64;
    use std::io::{BufRead, BufReader, Write};
    use std::net::{Ipv4Addr, TcpListener};
    use std::sync::mpsc;
    use std::thread;

    const MACHINE: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn fleetlock_app_specific_id_is_systemds() {
        // Vectors computed by systemd's algorithm; the same code gives what
        // `systemd-id128 machine-id --app-specific=` prints for a real /etc/machine-id.
        let table = [
            (MACHINE, "cf78007cfb8248a59a4518fc7eed150d"),
            (
                "5f0c3e4a9b8d47e1a2c6d3b7e8f90a1b\n",
                "abd6a0635bd7449bac12cc6a1b948e0a",
            ),
            (
                "5F0C3E4A-9B8D-47E1-A2C6-D3B7E8F90A1B",
                "abd6a0635bd7449bac12cc6a1b948e0a",
            ),
        ];
        for (machine, id) in table {
            assert_eq!(app_specific_id(machine, APP_ID).unwrap(), id, "{machine}");
        }
        let other_app = [
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        assert_eq!(
            app_specific_id(MACHINE, other_app).unwrap(),
            "4e7a918525b94da8ad4b4f264a130726"
        );
        for bad in [
            "",
            "uninitialized",
            "0123456789abcdef0123456789abcde",
            "0123456789abcdef0123456789abcdeg",
            "01234567-89ab-cdef-0123456789abcdef",
        ] {
            let e = app_specific_id(bad, APP_ID).unwrap_err();
            assert!(e.contains("not 32 hexadecimal digits"), "{bad}: {e}");
            assert!(e.contains("systemd-machine-id-setup"), "{e}");
        }
        let e = app_specific_id(&"0".repeat(32), APP_ID).unwrap_err();
        assert!(e.contains("all zeros"), "{e}");
    }

    #[test]
    fn fleetlock_request_carries_the_header_and_the_body() {
        let lock = FleetLock::new("https://locks.example:8443/base/", MACHINE, None).unwrap();
        assert_eq!(lock.id(), "cf78007cfb8248a59a4518fc7eed150d");
        assert_ne!(lock.id(), MACHINE);
        assert_eq!(lock.group(), "default");
        assert_eq!(lock.shown(), "https://locks.example:8443");
        let request = lock.request(Endpoint::PreReboot);
        assert_eq!(request.url, "https://locks.example:8443/base/v1/pre-reboot");
        assert_eq!(
            request.headers,
            vec![
                ("Content-Type", "application/json".to_string()),
                ("fleet-lock-protocol", "true".to_string()),
            ]
        );
        assert_eq!(
            String::from_utf8(request.body).unwrap(),
            r#"{"client_params":{"id":"cf78007cfb8248a59a4518fc7eed150d","group":"default"}}"#
        );
        let lock = FleetLock::new("http://10.0.0.1", MACHINE, Some("web-1.eu")).unwrap();
        let request = lock.request(Endpoint::SteadyState);
        assert_eq!(request.url, "http://10.0.0.1/v1/steady-state");
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["client_params"]["group"], "web-1.eu");
    }

    #[test]
    fn fleetlock_url_credentials_become_a_header_and_are_masked() {
        let lock = FleetLock::new(
            "https://fl-user:fl-pa55word@locks.example/t0k3nfl33t?key=k3yfl33tlock",
            MACHINE,
            Some("web"),
        )
        .unwrap();
        let request = lock.request(Endpoint::PreReboot);
        assert_eq!(
            request.url,
            "https://locks.example/t0k3nfl33t/v1/pre-reboot?key=k3yfl33tlock"
        );
        assert_eq!(
            request.headers.last().unwrap(),
            &(
                "Authorization",
                format!("Basic {}", base64(b"fl-user:fl-pa55word"))
            )
        );
        assert_eq!(lock.shown(), "https://locks.example");
        let said = crate::redact::scrub(
            "fl-pa55word fl-user /t0k3nfl33t k3yfl33tlock https://fl-user:fl-pa55word@locks.example/",
        );
        for secret in ["fl-pa55word", "fl-user", "t0k3nfl33t", "k3yfl33tlock"] {
            assert!(!said.contains(secret), "{said}");
        }
        assert!(!format!("{lock:?}").contains("pa55word"));

        // A URL without secrets is not masked: messages must still name the server.
        FleetLock::new("http://plain-lockserver:4000/base/", MACHINE, None).unwrap();
        let line = "http://plain-lockserver:4000/base/v1/pre-reboot is down";
        assert_eq!(crate::redact::scrub(line), line);
    }

    #[test]
    fn fleetlock_bad_urls_and_groups_are_refused_in_one_line() {
        let table = [
            ("bad-lock-url.example", "does not start with http"),
            ("ftp://bad-lock-url.example", "is not http or https"),
            (
                "\"https://bad-lock-url.example",
                "a quote the env file kept",
            ),
            ("https://", "names no valid host"),
            ("https://bad-lock-url.example:0", "port is not a number"),
            (
                "https://bad-lock-url.example/a b",
                "space or a control character",
            ),
            ("https://bad-lock-url.example/a<b>", "escape them as %XX"),
        ];
        for (url, why) in table {
            let e = FleetLock::new(url, MACHINE, None).unwrap_err();
            assert!(e.contains(why), "{url}: {e}");
            assert!(e.contains("give the http:// or https:// base URL"), "{e}");
            assert!(!e.contains('\n'));
        }
        // Refusing `https://` did not make every URL a secret.
        assert_eq!(
            crate::redact::scrub("https://elsewhere"),
            "https://elsewhere"
        );
        for group in ["", "web servers", "web/1", "wéb", "a\nb"] {
            let e = FleetLock::new("http://h", MACHINE, Some(group)).unwrap_err();
            assert!(
                e.contains("letters, digits, dots and dashes"),
                "{group}: {e}"
            );
            assert!(!e.contains('\n'), "{e}");
        }
        let e = FleetLock::new("http://h", "nope", None).unwrap_err();
        assert!(e.contains("machine id"), "{e}");
    }

    #[test]
    fn fleetlock_answers_are_judged() {
        let s = "http://127.0.0.1:9";
        let pre = Endpoint::PreReboot;
        let table: [(u16, &str, Result<(), String>); 10] = [
            (200, "", Ok(())),
            (200, "garbage", Ok(())),
            (
                409,
                r#"{"kind":"failed_lock_semaphore_full","value":"semaphore currently full"}"#,
                Err(format!("the fleet lock server {s} answered 409 Conflict to pre-reboot: semaphore currently full (failed_lock_semaphore_full)")),
            ),
            (
                500,
                r#"{"kind":"etcd_error","value":"no\nquorum"}"#,
                Err(format!("the fleet lock server {s} answered 500 Internal Server Error to pre-reboot: noquorum (etcd_error)")),
            ),
            (
                400,
                r#"{"kind":"bad_group"}"#,
                Err(format!("the fleet lock server {s} answered 400 Bad Request to pre-reboot: bad_group")),
            ),
            (
                404,
                "404 page not found\nmore",
                Err(format!("the fleet lock server {s} answered 404 Not Found to pre-reboot: 404 page not found")),
            ),
            (
                502,
                "<html><body>Bad gateway</body></html>",
                Err(format!("the fleet lock server {s} answered 502 Bad Gateway to pre-reboot")),
            ),
            (
                204,
                "",
                Err(format!("the fleet lock server {s} answered 204 No Content to pre-reboot")),
            ),
            (
                307,
                "",
                Err(format!("the fleet lock server {s} answered 307 Temporary Redirect to pre-reboot: redirects are not followed, configure the URL it moved to")),
            ),
            (
                599,
                r#"{"x":1}"#,
                Err(format!("the fleet lock server {s} answered 599 to pre-reboot")),
            ),
        ];
        for (status, body, judged) in table {
            assert_eq!(judge(s, pre, status, body.as_bytes()), judged, "{status}");
        }
        let long = format!(r#"{{"kind":"k","value":"{}"}}"#, "x".repeat(5000));
        let e = judge(s, Endpoint::SteadyState, 503, long.as_bytes()).unwrap_err();
        assert!(e.contains("to steady-state") && e.len() < 400, "{e}");
    }

    /// A one-request HTTP server on 127.0.0.1: answers `reply` and hands over what it got.
    fn one_shot(reply: String) -> (String, mpsc::Receiver<(String, Vec<String>, String)>) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut headers = Vec::new();
            let mut length = 0;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                let header = header.trim_end().to_string();
                if header.is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap();
                    }
                }
                headers.push(header.to_ascii_lowercase());
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let mut writer = stream;
            writer.write_all(reply.as_bytes()).unwrap();
            let _ = writer.flush();
            let body = String::from_utf8(body).unwrap();
            tx.send((line.trim_end().to_string(), headers, body))
                .unwrap();
        });
        (url, rx)
    }

    fn reply(status: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    #[test]
    fn fleetlock_calls_a_real_server() {
        let (url, got) = one_shot(reply("200 OK", ""));
        let lock = FleetLock::new(&format!("{url}/base"), MACHINE, Some("web")).unwrap();
        lock.pre_reboot(Duration::from_secs(10)).unwrap();
        let (line, headers, body) = got.recv().unwrap();
        assert_eq!(line, "POST /base/v1/pre-reboot HTTP/1.1");
        assert!(
            headers.contains(&"fleet-lock-protocol: true".to_string()),
            "{headers:?}"
        );
        assert_eq!(
            body,
            r#"{"client_params":{"id":"cf78007cfb8248a59a4518fc7eed150d","group":"web"}}"#
        );

        let full = r#"{"kind":"failed_lock","value":"all 2 slots taken"}"#;
        let (url, got) = one_shot(reply("409 Conflict", full));
        let lock = FleetLock::new(&url, MACHINE, None).unwrap();
        let e = lock.pre_reboot(Duration::from_secs(10)).unwrap_err();
        assert_eq!(
            e,
            format!("the fleet lock server {url} answered 409 Conflict to pre-reboot: all 2 slots taken (failed_lock)")
        );
        got.recv().unwrap();

        let moved = "HTTP/1.1 308 Permanent Redirect\r\nLocation: http://127.0.0.1:9/x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        let (url, got) = one_shot(moved.to_string());
        let lock = FleetLock::new(&url, MACHINE, None).unwrap();
        let e = lock.steady_state(Duration::from_secs(10)).unwrap_err();
        assert!(e.contains("308") && e.contains("not followed"), "{e}");
        let (line, _, _) = got.recv().unwrap();
        assert_eq!(line, "POST /v1/steady-state HTTP/1.1");
    }

    #[test]
    fn fleetlock_unreachable_server_is_named_by_host_only() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let url = format!("http://u5er:s3cr3tfl@127.0.0.1:{port}/p4th-t0k3n");
        let lock = FleetLock::new(&url, MACHINE, None).unwrap();
        let e = lock.pre_reboot(Duration::from_secs(5)).unwrap_err();
        assert_eq!(
            e,
            format!(
                "the fleet lock server http://127.0.0.1:{port} refused the connection (pre-reboot)"
            )
        );

        // A server that accepts and never answers: bounded by the timeout.
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let hold = thread::spawn(move || {
            let held = listener.accept();
            thread::sleep(Duration::from_secs(2));
            drop(held);
        });
        let lock = FleetLock::new(&url, MACHINE, None).unwrap();
        let started = std::time::Instant::now();
        let e = lock.steady_state(Duration::from_millis(300)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2), "{e}");
        assert!(e.contains("did not answer steady-state within"), "{e}");
        hold.join().unwrap();
    }
}

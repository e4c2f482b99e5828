//! `HttpServer`: a minimal HTTP/1.1 server running `git http-backend` as CGI, optionally behind Basic auth.

use super::isolate_git;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;
use tempfile::TempDir;

/// A stuck client must not keep a connection thread alive forever.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Smart-HTTP git server for the repositories under a base directory. One thread per
/// connection, one request per connection (`Connection: close`). Stopped when dropped.
pub struct HttpServer {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
    // Empty $HOME for http-backend, so no user config reaches it.
    _home: TempDir,
}

struct Shared {
    base: PathBuf,
    home: PathBuf,
    /// Expected `user:pass`, when Basic auth is required.
    credentials: Option<String>,
    /// Expected token, when `Authorization: Bearer` is required instead.
    bearer: Option<String>,
    requests: AtomicUsize,
    stopping: AtomicBool,
}

impl HttpServer {
    /// Serve the repositories under `base` at `http://127.0.0.1:PORT/<name>`. With
    /// `basic_auth`, every request must carry those credentials or gets a 401 challenge.
    pub fn serve(base: &Path, basic_auth: Option<(&str, &str)>) -> HttpServer {
        Self::serve_with(
            base,
            basic_auth.map(|(user, pass)| format!("{user}:{pass}")),
            None,
        )
    }

    /// Like [`HttpServer::serve`], but every request must carry `Authorization: Bearer TOKEN`
    /// or gets a 401 with a Bearer challenge.
    pub fn serve_bearer(base: &Path, token: &str) -> HttpServer {
        Self::serve_with(base, None, Some(token.to_string()))
    }

    fn serve_with(base: &Path, credentials: Option<String>, bearer: Option<String>) -> HttpServer {
        let home = TempDir::new().expect("create tempdir");
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        let shared = Arc::new(Shared {
            base: base.to_path_buf(),
            home: home.path().to_path_buf(),
            credentials,
            bearer,
            requests: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || accept_loop(listener, shared))
        };
        HttpServer {
            port,
            shared,
            acceptor: Some(acceptor),
            _home: home,
        }
    }

    /// `http://127.0.0.1:PORT/<repo>`, e.g. `url("config.git")`.
    pub fn url(&self, repo: &str) -> String {
        format!("http://127.0.0.1:{}/{repo}", self.port)
    }

    /// `http://user:pass@127.0.0.1:PORT/<repo>`; `user` and `pass` are used verbatim, so keep
    /// them free of characters that need percent-encoding.
    pub fn url_with_credentials(&self, user: &str, pass: &str, repo: &str) -> String {
        format!("http://{user}:{pass}@127.0.0.1:{}/{repo}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Number of HTTP requests received so far, including ones refused with 401.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // accept() has no timeout; a connection of our own is what wakes it to see the flag.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let shared = Arc::clone(&shared);
        thread::spawn(move || {
            if let Err(e) = handle(stream, &shared) {
                eprintln!("test HttpServer: connection failed: {e}");
            }
        });
    }
}

struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn handle(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    // Port probes and the shutdown wake-up connect and close without sending anything.
    let Some(request) = read_head(&mut reader)? else {
        return Ok(());
    };
    shared.requests.fetch_add(1, Ordering::SeqCst);

    let granted = match (&shared.credentials, &shared.bearer) {
        (None, None) => Ok(None),
        (Some(expected), _) => match basic_credentials(&request) {
            Some(given) if given == *expected => Ok(given.split(':').next().map(str::to_string)),
            _ => Err("Basic realm=\"git\""),
        },
        (None, Some(token)) => match request.header("Authorization") {
            Some(value) if value == format!("Bearer {token}") => Ok(None),
            _ => Err("Bearer realm=\"git\""),
        },
    };
    let user = match granted {
        Ok(user) => user,
        Err(challenge) => {
            {
                // Consume the body first: closing with unread data makes the kernel send a
                // reset, and the client could see that instead of the 401.
                if !expects_continue(&request) {
                    read_body(&mut reader, &request)?;
                }
                let challenge = [("WWW-Authenticate", challenge)];
                return respond(&mut out, "401 Unauthorized", &challenge, b"auth required\n");
            }
        }
    };

    if expects_continue(&request) {
        out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let body = read_body(&mut reader, &request)?;
    let peer = out.peer_addr()?.ip().to_string();
    let (status, headers, body) = run_backend(&request, body, &peer, user.as_deref(), shared)?;
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    respond(&mut out, &status, &headers, &body)
}

/// Request line and headers; `None` if the peer closed without sending a request.
fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(bad_data(format!("bad request line {line:?}")));
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut request = Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers: Vec::new(),
    };
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(bad_data("connection closed inside headers".into()));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            return Ok(Some(request));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad_data(format!("bad header {line:?}")))?;
        request
            .headers
            .push((name.trim().to_string(), value.trim().to_string()));
    }
}

fn expects_continue(request: &Request) -> bool {
    request
        .header("Expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
}

/// The decoded `user:pass` of a Basic `Authorization` header.
fn basic_credentials(request: &Request) -> Option<String> {
    let value = request.header("Authorization")?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    String::from_utf8(base64_decode(encoded.trim())?).ok()
}

/// The whole request body, de-chunked. git sends `Transfer-Encoding: chunked` for POST
/// bodies larger than `http.postBuffer`.
fn read_body(reader: &mut impl BufRead, request: &Request) -> io::Result<Vec<u8>> {
    let chunked = request
        .header("Transfer-Encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        return read_chunked(reader);
    }
    let length = match request.header("Content-Length") {
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| bad_data(format!("bad Content-Length {v:?}")))?,
        None => 0,
    };
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(body)
}

fn read_chunked(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let size_field = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_field, 16)
            .map_err(|_| bad_data(format!("bad chunk size line {line:?}")))?;
        if size == 0 {
            break;
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0; 2];
        reader.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            return Err(bad_data("chunk not followed by CRLF".into()));
        }
    }
    // Optional trailers, then the empty line that ends the message.
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line.trim_end_matches(['\r', '\n']).is_empty() {
            return Ok(body);
        }
    }
}

type CgiResponse = (String, Vec<(String, String)>, Vec<u8>);

/// Run `git http-backend` for one request and split its CGI output into status, headers, body.
fn run_backend(
    request: &Request,
    body: Vec<u8>,
    peer: &str,
    user: Option<&str>,
    shared: &Shared,
) -> io::Result<CgiResponse> {
    let mut cmd = Command::new("git");
    isolate_git(&mut cmd, &shared.home);
    cmd.arg("http-backend")
        .env("GIT_PROJECT_ROOT", &shared.base)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", &request.method)
        .env("PATH_INFO", &request.path)
        .env("QUERY_STRING", &request.query)
        .env("CONTENT_TYPE", request.header("Content-Type").unwrap_or(""))
        // The body was de-chunked above, so its real length is known even for chunked requests.
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_ADDR", peer)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Without GIT_PROTOCOL the backend silently answers in protocol v0, whatever the client asked.
    if let Some(protocol) = request.header("Git-Protocol") {
        cmd.env("GIT_PROTOCOL", protocol);
    }
    if let Some(encoding) = request.header("Content-Encoding") {
        cmd.env("HTTP_CONTENT_ENCODING", encoding);
    }
    // http-backend only allows receive-pack (push) for an authenticated user.
    if let Some(user) = user {
        cmd.env("REMOTE_USER", user);
    }
    let mut child = cmd.spawn()?;
    // Feed stdin from its own thread: the backend may start writing before it has read
    // everything, and both pipes filling up at once would deadlock.
    let mut stdin = child.stdin.take().expect("piped stdin");
    let feeder = thread::spawn(move || stdin.write_all(&body));
    let output = child.wait_with_output()?;
    // A backend that exits early closes stdin; its output below says why.
    let _ = feeder.join();

    let stdout = output.stdout;
    let Some((head_len, sep_len)) = find_header_end(&stdout) else {
        let msg = format!(
            "git http-backend gave no CGI headers ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        return Ok((
            "500 Internal Server Error".into(),
            Vec::new(),
            msg.into_bytes(),
        ));
    };
    let mut status = "200 OK".to_string();
    let mut headers = Vec::new();
    for line in String::from_utf8_lossy(&stdout[..head_len]).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().to_string();
        if name.eq_ignore_ascii_case("Status") {
            status = value;
        } else {
            headers.push((name.trim().to_string(), value));
        }
    }
    Ok((status, headers, stdout[head_len + sep_len..].to_vec()))
}

/// Where the CGI header block ends: (its length, length of the blank-line separator).
fn find_header_end(out: &[u8]) -> Option<(usize, usize)> {
    let crlf = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    let lf = out.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn respond(
    out: &mut TcpStream,
    status: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    out.write_all(head.as_bytes())?;
    out.write_all(body)?;
    out.flush()?;
    out.shutdown(Shutdown::Write)
}

fn bad_data(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with `=` padding (RFC 4648), as used by HTTP Basic auth.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64_ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Inverse of [`base64_encode`]; `None` for anything that is not padded standard base64.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (index, quad) in bytes.chunks(4).enumerate() {
        let last = index == bytes.len() / 4 - 1;
        let padding = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if padding > 2 || (padding > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - padding] {
            let value = BASE64_ALPHABET.iter().position(|&a| a == c)?;
            n = (n << 6) | value as u32;
        }
        n <<= 6 * padding as u32;
        let decoded = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&decoded[..3 - padding]);
    }
    Some(out)
}

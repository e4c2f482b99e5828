//! Just enough HTTP/1.1 to read one webhook request under a deadline and answer it: a head of
//! at most 16 KiB, a body of at most 64 KiB announced by Content-Length, one request per
//! connection.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub const MAX_HEAD: usize = 16 * 1024;
pub const MAX_BODY: usize = 64 * 1024;

pub struct Head {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub content_length: Option<usize>,
    pub chunked: bool,
    pub expect_continue: bool,
}

/// Why a request could not be read; each is answered (when the client can still hear it)
/// with its status and counted under its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// Nothing, or not all, within the deadline (or the client went away).
    Deadline,
    Closed,
    TooLarge,
    Malformed,
}

impl Unreadable {
    pub fn status(self) -> Option<u16> {
        match self {
            Unreadable::Deadline => Some(408),
            Unreadable::Closed => None,
            Unreadable::TooLarge => Some(431),
            Unreadable::Malformed => Some(400),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Unreadable::Deadline => "deadline",
            Unreadable::Closed => "closed",
            Unreadable::TooLarge => "head-size",
            Unreadable::Malformed => "malformed",
        }
    }
}

/// Reads from a stream, every read bounded by what is left until `deadline`: a client that
/// trickles one byte a second still ends at the deadline, not at a per-read timeout.
pub struct Reader<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
    /// Bytes read past the head: the start of the body.
    buffered: Vec<u8>,
}

impl<'a> Reader<'a> {
    pub fn new(stream: &'a TcpStream, deadline: Instant) -> Self {
        Reader {
            stream,
            deadline,
            buffered: Vec::new(),
        }
    }

    fn read_some(&mut self, buf: &mut [u8]) -> Result<usize, Unreadable> {
        let left = self
            .deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(Unreadable::Deadline)?;
        self.stream
            .set_read_timeout(Some(left))
            .map_err(|_| Unreadable::Closed)?;
        let mut stream = self.stream;
        match stream.read(buf) {
            Ok(0) => Err(Unreadable::Closed),
            Ok(n) => Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(Unreadable::Deadline)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(0),
            Err(_) => Err(Unreadable::Closed),
        }
    }

    pub fn head(&mut self) -> Result<Head, Unreadable> {
        let mut data = Vec::with_capacity(2048);
        let mut buf = [0u8; 4096];
        let end = loop {
            if let Some(end) = find(&data, b"\r\n\r\n") {
                break end;
            }
            if data.len() > MAX_HEAD {
                return Err(Unreadable::TooLarge);
            }
            let n = self.read_some(&mut buf)?;
            data.extend_from_slice(&buf[..n]);
        };
        if end > MAX_HEAD {
            return Err(Unreadable::TooLarge);
        }
        self.buffered = data.split_off(end + 4);
        parse_head(&data[..end])
    }

    /// The body, `length` bytes (already checked against MAX_BODY).
    pub fn body(&mut self, length: usize) -> Result<Vec<u8>, Unreadable> {
        let mut body = std::mem::take(&mut self.buffered);
        if body.len() > length {
            // Bytes after the body: a second request we do not serve on this connection.
            body.truncate(length);
        }
        let mut buf = [0u8; 8192];
        while body.len() < length {
            let want = (length - body.len()).min(buf.len());
            let n = self.read_some(&mut buf[..want])?;
            body.extend_from_slice(&buf[..n]);
        }
        Ok(body)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The request line and the headers. Obsolete line folding, a bare LF or CR, control
/// characters, a name that is not a token and conflicting lengths are refused, as a proxy in
/// front might read them otherwise (RFC 9112 2.2, 5.1).
pub fn parse_head(bytes: &[u8]) -> Result<Head, Unreadable> {
    let text = std::str::from_utf8(bytes).map_err(|_| Unreadable::Malformed)?;
    // Lines end in CRLF, split below; any other control character but a tab is refused.
    let control = |c: char| c.is_ascii_control() && c != '\t';
    if text.split("\r\n").any(|line| line.contains(control)) {
        return Err(Unreadable::Malformed);
    }
    let mut lines = text.split("\r\n");
    let request = lines.next().ok_or(Unreadable::Malformed)?;
    let mut words = request.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(Unreadable::Malformed);
    };
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0")
        || method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
        || !target.starts_with('/')
    {
        return Err(Unreadable::Malformed);
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    let mut headers = Vec::new();
    for line in lines {
        if line.contains('\n') || line.starts_with([' ', '\t']) {
            return Err(Unreadable::Malformed);
        }
        let (name, value) = line.split_once(':').ok_or(Unreadable::Malformed)?;
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() || !name.bytes().all(token) {
            return Err(Unreadable::Malformed);
        }
        // Optional whitespace is spaces and tabs (RFC 9110 5.6.3), not what Unicode calls one.
        let value = value.trim_matches([' ', '\t']);
        headers.push((name.to_ascii_lowercase(), value.to_string()));
    }
    let mut content_length = None;
    for (_, value) in headers.iter().filter(|(n, _)| n == "content-length") {
        let n: usize =
            (!value.is_empty() && value.len() <= 12 && value.bytes().all(|b| b.is_ascii_digit()))
                .then(|| value.parse().ok())
                .flatten()
                .ok_or(Unreadable::Malformed)?;
        if content_length.is_some_and(|c| c != n) {
            return Err(Unreadable::Malformed);
        }
        content_length = Some(n);
    }
    let chunked = headers.iter().any(|(n, _)| n == "transfer-encoding");
    let expect_continue = headers
        .iter()
        .any(|(n, v)| n == "expect" && v.eq_ignore_ascii_case("100-continue"));
    Ok(Head {
        method: method.to_string(),
        path: path.to_string(),
        headers,
        content_length,
        chunked,
        expect_continue,
    })
}

/// One answer, then the connection closes. The bodies are fixed words of ours, never anything
/// from the request.
pub fn respond(mut stream: &TcpStream, status: u16, text: &str, extra: &[(&str, &str)]) {
    let reason = match status {
        100 => "Continue",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n");
    if status != 100 {
        for (name, value) in extra {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str(&format!(
            "Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}\n",
            text.len() + 1
        ));
    } else {
        out.push_str("\r\n");
    }
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let _ = stream.write_all(out.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_or_are_refused_as_a_table() {
        let ok = |t: &str| parse_head(t.as_bytes()).map(|h| (h.method, h.path, h.content_length));
        assert_eq!(
            ok("POST /trigger?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 12"),
            Ok(("POST".into(), "/trigger".into(), Some(12)))
        );
        assert_eq!(ok("GET / HTTP/1.0"), Ok(("GET".into(), "/".into(), None)));
        for bad in [
            "POST /trigger HTTP/2\r\nHost: a",
            "POST  /trigger HTTP/1.1",
            "post /trigger HTTP/1.1",
            "POST trigger HTTP/1.1",
            "POST /t HTTP/1.1\r\n folded: x",
            "POST /t HTTP/1.1\r\nNo colon",
            "POST /t HTTP/1.1\r\nBad name: x",
            "POST /t HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6",
            "POST /t HTTP/1.1\r\nContent-Length: -5",
            "POST /t HTTP/1.1\r\nContent-Length: 99999999999999999999",
            "POST /t HTTP/1.1\r\nA: b\nC: d",
        ] {
            assert_eq!(
                parse_head(bad.as_bytes()).err(),
                Some(Unreadable::Malformed),
                "{bad:?}"
            );
        }
        let head =
            parse_head(b"POST /t HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue")
                .unwrap();
        assert!(head.chunked && head.expect_continue);
    }

    #[test]
    fn control_characters_and_other_spaces_are_refused_where_a_proxy_could_read_them_otherwise() {
        for bad in [
            // A bare CR ends a line for some proxies: a header of theirs, part of a value here.
            "POST /t HTTP/1.1\r\nX-A: x\rContent-Length: 0",
            "POST /t HTTP/1.1\r\nX-A: x\0y",
            "POST /t HTTP/1.1\r\nX-A: x\x7f",
            "POST /t\x1b[2J HTTP/1.1",
            "POST /t\0 HTTP/1.1",
            // Only spaces and tabs surround a value: these lengths are not numbers to a proxy.
            "POST /t HTTP/1.1\r\nContent-Length: \u{3000}5",
            "POST /t HTTP/1.1\r\nContent-Length: 5\u{a0}",
        ] {
            assert_eq!(
                parse_head(bad.as_bytes()).err(),
                Some(Unreadable::Malformed),
                "{bad:?}"
            );
        }
        let head =
            parse_head(b"POST /t HTTP/1.1\r\nX-A: \t a\tb \t\r\nContent-Length: 5 ").unwrap();
        assert_eq!(head.headers[0], ("x-a".into(), "a\tb".into()));
        assert_eq!(head.content_length, Some(5));
    }
}

//! The outbound HTTP client that notifications and the fleet lock share: an http(s) URL taken
//! apart without ever being quoted, what of it `redact` must mask, one ureq agent, and a
//! connection that failed said in one sentence.

use std::sync::Arc;
use std::time::Duration;

/// An http(s) URL taken apart.
#[derive(Debug, PartialEq, Eq)]
pub struct Url {
    /// `http` or `https`, lower case.
    pub scheme: String,
    pub userinfo: Option<String>,
    /// `host[:port]`, lower case.
    pub authority: String,
    /// The host alone, lower case.
    pub host: String,
    /// From the first `/` up to the query, as written; empty when there is none.
    pub path: String,
    pub query: Option<String>,
}

impl Url {
    /// The path and query as a request line sends them (`/` for none).
    pub fn path_query(&self) -> String {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        match &self.query {
            Some(query) => format!("{path}?{query}"),
            None => path.to_string(),
        }
    }

    /// What messages show of it: `scheme://host[:port]`.
    pub fn shown(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }

    /// The `Authorization` its user part makes, if it has one.
    pub fn authorization(&self) -> Option<String> {
        self.userinfo.as_deref().map(basic_authorization)
    }
}

/// Read an http(s) URL; the reason it is refused never quotes it.
pub fn parse_url(url: &str) -> Result<Url, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("it does not start with http:// or https://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        let shown: String = scheme
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(10)
            .collect();
        if shown == "http" || shown == "https" {
            return Err(format!(
                "a character precedes its {shown}:// (a quote the env file kept?)"
            ));
        }
        return Err(format!("its scheme {shown:?} is not http or https"));
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("it holds a space or a control character".to_string());
    }
    let rest = rest.split('#').next().unwrap_or_default();
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path_query) = rest.split_at(end);
    // The user part ends at the last `@`: a password may hold one.
    let (userinfo, authority) = match authority.rsplit_once('@') {
        Some((user, host)) => (Some(user.to_string()), host),
        None => (None, authority),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (inside, after) = v6.split_once(']').ok_or("its IPv6 address has no ]")?;
        (format!("[{inside}]"), after.strip_prefix(':'))
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host.to_string(), Some(port)),
            None => (authority.to_string(), None),
        }
    };
    let host_ok = !host.is_empty()
        && (host.starts_with('[')
            || host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')));
    if !host_ok {
        return Err("it names no valid host".to_string());
    }
    if let Some(port) = port {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err("its port is not a number from 1 to 65535".to_string());
        }
    }
    let (path, query) = match path_query.split_once('?') {
        Some((path, query)) => (path, Some(query.to_string()).filter(|q| !q.is_empty())),
        None => (path_query, None),
    };
    let parsed = Url {
        scheme,
        userinfo,
        authority: authority.to_ascii_lowercase(),
        host: host.to_ascii_lowercase(),
        path: path.to_string(),
        query,
    };
    // What the HTTP client will parse at every request: refused now rather than at each pass.
    let uri = format!("{}{}", parsed.shown(), parsed.path_query());
    if ureq::http::Uri::try_from(uri).is_err() {
        return Err("its path holds characters a URL cannot (escape them as %XX)".to_string());
    }
    Ok(parsed)
}

/// What `scrub` must mask of a URL from now on: the pieces of its path and query that look
/// like tokens (a server may quote one alone, as sent or percent-decoded), the user part, its
/// pieces and the `Authorization` made of them (a 401 page may echo the header), and the URL
/// with its path and query whole when `path_is_secret` (a webhook's path is its token) or when
/// it holds one of those. Words and short strings are left out: masking "/", "api" or "v1"
/// everywhere would garble every line.
pub fn secrets_of(url: &str, parsed: Option<&Url>, path_is_secret: bool) -> Vec<String> {
    let Some(parsed) = parsed else {
        // Unparsed: the URL and whatever follows its scheme.
        let mut secrets = vec![url.to_string()];
        secrets.extend(url.split_once("://").map(|(_, rest)| rest.to_string()));
        return retain_secret(secrets);
    };
    let mut secrets = Vec::new();
    let path_query = parsed.path_query();
    let pieces = path_query.split(['/', '?', '&', '=']);
    for piece in pieces.flat_map(|p| [p.to_string(), decoded(p)]) {
        if looks_like_a_token(&piece) {
            secrets.push(piece);
        }
    }
    if let Some(userinfo) = &parsed.userinfo {
        let authorization = basic_authorization(userinfo);
        secrets.push(authorization.trim_start_matches("Basic ").to_string());
        secrets.push(authorization);
        for text in [userinfo.clone(), decoded(userinfo)] {
            secrets.extend(text.split(':').map(str::to_string));
            secrets.push(text);
        }
    }
    if path_is_secret || !secrets.is_empty() || parsed.query.is_some() {
        secrets.push(url.to_string());
        secrets.push(decoded(&path_query));
        secrets.push(path_query);
    }
    retain_secret(secrets)
}

/// Too short to mask without garbling every line, or a bare scheme ("https://", refused).
fn retain_secret(mut secrets: Vec<String>) -> Vec<String> {
    secrets.retain(|s| s.len() >= 4 && s != "/" && !s.ends_with("://"));
    secrets
}

/// A piece of a URL a server would know as a credential: long, or short with letters and
/// digits mixed as generated tokens have them (a word such as "hooks" or "true" has none).
fn looks_like_a_token(piece: &str) -> bool {
    let has = |f: fn(&char) -> bool| piece.chars().any(|c| f(&c));
    piece.len() >= 16
        || (piece.len() >= 6 && has(char::is_ascii_digit) && has(char::is_ascii_alphabetic))
}

fn decoded(text: &str) -> String {
    String::from_utf8_lossy(&percent_decoded(text)).into_owned()
}

/// `Basic base64(user:password)`, percent escapes decoded as browsers and curl do.
pub fn basic_authorization(userinfo: &str) -> String {
    let decoded = percent_decoded(userinfo);
    format!("Basic {}", base64(&decoded))
}

pub fn percent_decoded(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An agent for one request: rustls on ring with the system's certificates (the crypto stack
/// the https fetch already uses), the whole exchange bounded by `timeout`, no redirects (a
/// redirected request is never taken for the one meant), every status returned as a
/// response, and the proxies of the environment (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`,
/// `NO_PROXY`) honoured, as curl and the https fetch do.
pub fn agent(timeout: Duration) -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build();
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .http_status_as_error(false)
        .proxy(ureq::Proxy::try_from_env())
        .user_agent(concat!("gitops/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls)
        .build()
        .into()
}

/// One sentence for a request that got no answer: `who` names the server by host only,
/// `during` the request when there are several kinds (the fleet lock's pre-reboot).
pub fn network_error(
    who: &str,
    during: Option<&str>,
    e: &ureq::Error,
    timeout: Duration,
) -> String {
    use std::io::ErrorKind;
    let within = crate::config::format_duration(timeout);
    let answer_to = during.map(|d| format!("{d} ")).unwrap_or_default();
    let in_brackets = during.map(|d| format!(" ({d})")).unwrap_or_default();
    let while_doing = during.map(|d| format!(" during {d}")).unwrap_or_default();
    let said = match e {
        ureq::Error::Timeout(_) => format!("{who} did not answer {answer_to}within {within}"),
        ureq::Error::Io(io) if io.kind() == ErrorKind::ConnectionRefused => {
            format!("{who} refused the connection{in_brackets}")
        }
        ureq::Error::Io(io) if io.kind() == ErrorKind::TimedOut => {
            format!("{who} did not answer {answer_to}within {within}")
        }
        // std reports a name that does not resolve as an uncategorised error.
        ureq::Error::Io(io) if io.to_string().contains("lookup address") => {
            format!("{who}: its host name does not resolve")
        }
        ureq::Error::Io(io) => format!("{who}: the connection failed{while_doing} ({io})"),
        ureq::Error::HostNotFound => format!("{who}: its host name does not resolve"),
        ureq::Error::ConnectionFailed => format!("{who}: the connection failed{while_doing}"),
        ureq::Error::Tls(why) => format!("{who}: TLS failed ({why})"),
        ureq::Error::Rustls(why) => format!("{who}: TLS failed ({why})"),
        other => match during {
            Some(d) => format!("{who}: {d} failed ({other})"),
            None => format!("{who}: {other}"),
        },
    };
    let said: String = said
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    crate::redact::scrub(&said)
}

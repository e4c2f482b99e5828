//! The one place credentials are taken out of text that leaves the program: the error line,
//! warnings, what a pass records in state.json (which `status` shows), the configured URL as
//! the entry point and status see it (`redact_url`), and the env files install-units shows.
//!
//! Two layers, because neither is enough alone: the secrets of the configured URL are masked
//! wherever they appear (a server may echo them without the URL around them), and any
//! `scheme://user:password@` in the text is masked whatever the scheme (gix quotes the URL it
//! was given in some of its messages, and a password can be shorter than we dare mask blindly).

use std::sync::Mutex;

/// The secrets of the configured URL, once the settings are known.
static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Remember the strings that `scrub` must mask from now on.
pub fn remember(secrets: Vec<String>) {
    if let Ok(mut known) = SECRETS.lock() {
        known.extend(secrets.into_iter().filter(|s| !s.is_empty()));
    }
}

/// Text fit to print or record: remembered secrets and URL credentials masked.
pub fn scrub(text: &str) -> String {
    let known = SECRETS.lock().map(|s| s.clone()).unwrap_or_default();
    mask_urls(&mask_secrets(text, &known))
}

/// Replace every occurrence of each secret with `***`, longest first so that a secret that
/// contains another is masked whole.
pub fn mask_secrets(text: &str, secrets: &[String]) -> String {
    let mut secrets: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets
        .into_iter()
        .fold(text.to_string(), |t, s| t.replace(s.as_str(), "***"))
}

/// Mask the credentials of every `scheme://userinfo@host` in a text: the whole user part of
/// http(s) URLs (tokens are often sent as the user name), the password of any other scheme.
///
/// Conservative on purpose, since a password may hold any of `/ ? # ' : @`: a URL runs to the
/// next whitespace, `"`, `<`, `>` or backquote, and its user part ends at the last `@` before
/// the first `/` that follows the first `@`. A path that holds an `@` may be masked too much;
/// a password is never shown.
pub fn mask_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("://") {
        let (before, after) = rest.split_at(start + 3);
        out.push_str(before);
        let scheme: String = before[..start]
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '`' | '<' | '>'))
            .unwrap_or(after.len());
        let url = &after[..end];
        match userinfo_end(url) {
            Some(at) => {
                out.push_str(&masked_userinfo(&scheme, &url[..at]));
                out.push_str(&url[at..]);
            }
            None => out.push_str(url),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Where the user part of `url` (the text after `scheme://`) ends: the last `@` before the
/// first `/` that follows the first `@`.
fn userinfo_end(url: &str) -> Option<usize> {
    let first = url.find('@')?;
    let slash = url[first..].find('/').map_or(url.len(), |s| first + s);
    url[..slash].rfind('@')
}

/// The user part as it may be shown: nothing of it for http(s), the user alone otherwise.
fn masked_userinfo(scheme: &str, userinfo: &str) -> String {
    let http = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
    match userinfo.split_once(':') {
        _ if http => "***".to_string(),
        Some((user, _)) => format!("{user}:***"),
        None => userinfo.to_string(),
    }
}

/// The parts of a configured URL, read from its text: `scheme`, the user part (everything
/// between `scheme://` and the last `@` whose remainder is `host[:port]/path`, or `/path` for
/// file://, and whose user name holds no `/`, so that a password may hold any character), and
/// that remainder. None when the URL
/// has no `scheme://` or no user part.
pub fn split_userinfo(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, after) = url.split_once("://")?;
    let file = scheme.eq_ignore_ascii_case("file");
    let mut candidates: Vec<usize> = after.match_indices('@').map(|(i, _)| i).collect();
    candidates.reverse();
    candidates.into_iter().find_map(|at| {
        let remainder = &after[at + 1..];
        // A user name never holds a `/`: `https://host/a@b/r.git` is a path with an `@`, which
        // must not send the fetch to host `b`. A password may hold anything.
        let user = after[..at].split(':').next().unwrap_or_default();
        let fits = !user.contains('/')
            && if file {
                remainder.starts_with('/')
            } else {
                host_then_path(remainder)
            };
        fits.then(|| (scheme, &after[..at], remainder))
    })
}

/// `host[:port]/path`: a host name or `[IPv6]`, an optional numeric port, then `/`.
fn host_then_path(text: &str) -> bool {
    let host_len = if text.starts_with('[') {
        text.find(']').map_or(0, |i| i + 1)
    } else {
        text.find(|c: char| !(c.is_alphanumeric() || matches!(c, '.' | '-' | '_')))
            .unwrap_or(text.len())
    };
    if host_len == 0 {
        return false;
    }
    let rest = &text[host_len..];
    let rest = match rest.strip_prefix(':') {
        Some(port) => port.trim_start_matches(|c: char| c.is_ascii_digit()),
        None => rest,
    };
    rest.starts_with('/')
}

/// A configured URL as logs, state and status show it, and the strings that must be masked
/// wherever they appear (the password of any scheme, and the user of http(s) URLs, where
/// tokens are often sent as the user name).
pub fn redact_url(url: &str) -> (String, Vec<String>) {
    match split_userinfo(url) {
        Some((scheme, userinfo, remainder)) => {
            let http = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
            let mut secrets = Vec::new();
            match userinfo.split_once(':') {
                Some((user, password)) => {
                    secrets.push(password.to_string());
                    if http {
                        secrets.push(user.to_string());
                    }
                }
                None if http => secrets.push(userinfo.to_string()),
                None => {}
            }
            let shown = format!(
                "{scheme}://{}@{remainder}",
                masked_userinfo(scheme, userinfo)
            );
            (shown, secrets)
        }
        None => (mask_urls(url), Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_any_scheme_are_masked() {
        let table = [
            ("https://user:tok@host/r.git", "https://***@host/r.git"),
            ("https://tok@host/r.git", "https://***@host/r.git"),
            ("HTTP://u:p@h/r", "HTTP://***@h/r"),
            ("http://host/r.git", "http://host/r.git"),
            ("ssh://git@host/r.git", "ssh://git@host/r.git"),
            ("ssh://git:pw@host/r.git", "ssh://git:***@host/r.git"),
            ("git://u:pw@host/r", "git://u:***@host/r"),
            ("file://u:s3cret@/srv/r.git", "file://u:***@/srv/r.git"),
            ("git@host:org/r.git", "git@host:org/r.git"),
            ("/srv/r.git", "/srv/r.git"),
            ("https://host/p@th", "https://***@th"),
            (
                "file://u:S3c/retPW@/tmp/src.git",
                "file://u:***@/tmp/src.git",
            ),
            ("ssh://u:S3c?ret#P'W@h/r", "ssh://u:***@h/r"),
            ("'ssh://u:S3c'retPW@h/r' failed", "'ssh://u:***@h/r' failed"),
            (
                "The url \"file://u:pw@/x\" and git+ssh://a:b@h/y, then ssh://c:d@h",
                "The url \"file://u:***@/x\" and git+ssh://a:***@h/y, then ssh://c:***@h",
            ),
            (
                "a p:w@ss@h URL: ssh://u:p:w@ss@h/r",
                "a p:w@ss@h URL: ssh://u:***@h/r",
            ),
            ("nothing here", "nothing here"),
            ("://u:p@h", "://u:***@h"),
            ("é://ü:é@h/ä", "é://ü:***@h/ä"),
        ];
        for (text, shown) in table {
            assert_eq!(mask_urls(text), shown, "{text}");
        }
    }

    #[test]
    fn a_configured_url_is_split_at_the_last_at_before_its_host() {
        let table = [
            (
                "file://u:S3c#retPW@/tmp/r.git",
                "file://u:***@/tmp/r.git",
                &["S3c#retPW"][..],
            ),
            (
                "file://u:S3c/retPW@/tmp/r.git",
                "file://u:***@/tmp/r.git",
                &["S3c/retPW"],
            ),
            (
                "ssh://u:S3c?re@tPW@h:2222/r",
                "ssh://u:***@h:2222/r",
                &["S3c?re@tPW"],
            ),
            ("ssh://u:S3c'retPW@h/r", "ssh://u:***@h/r", &["S3c'retPW"]),
            (
                "git://u:a/b@c:d@[::1]:9418/r",
                "git://u:***@[::1]:9418/r",
                &["a/b@c:d"],
            ),
            (
                "https://deploy:t0k#en@h/r.git",
                "https://***@h/r.git",
                &["t0k#en", "deploy"],
            ),
            ("https://t0ken@h/r.git", "https://***@h/r.git", &["t0ken"]),
            ("ssh://git@h/r.git", "ssh://git@h/r.git", &[]),
            ("https://h/p@th/x.git", "https://***@th/x.git", &[]),
            ("git@h:org/r.git", "git@h:org/r.git", &[]),
            ("/srv/r.git", "/srv/r.git", &[]),
        ];
        for (url, shown, secrets) in table {
            let (got, got_secrets) = redact_url(url);
            assert_eq!(got, shown, "{url}");
            assert_eq!(got_secrets, secrets, "{url}");
        }
    }

    #[test]
    fn remembered_secrets_are_masked_anywhere() {
        let secrets = vec![
            "deploy".to_string(),
            "t0ken".to_string(),
            "t0ken-long".to_string(),
        ];
        let text = "Credentials provided for deploy were not accepted: t0ken-long, t0ken";
        assert_eq!(
            mask_secrets(text, &secrets),
            "Credentials provided for *** were not accepted: ***, ***"
        );
        assert_eq!(mask_secrets("clean", &[String::new()]), "clean");
    }
}

//! The one place credentials are taken out of text that leaves the program: the error line,
//! warnings, and what a pass records in state.json (which `status` shows).
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
/// The authority ends at the first `/`, `?`, `#`, whitespace or quote after `://`.
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
            .find(|c: char| {
                c.is_whitespace() || matches!(c, '/' | '?' | '#' | '"' | '\'' | '`' | '<' | '>')
            })
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                let http =
                    scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
                match userinfo.split_once(':') {
                    _ if http => out.push_str("***"),
                    Some((user, _)) => {
                        out.push_str(user);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
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
            ("https://host/p@th", "https://host/p@th"),
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

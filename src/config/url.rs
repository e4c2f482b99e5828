//! The repository URL: the forms accepted, and what of it may be printed.

use std::path::Path;

use anyhow::Result;

use super::absolute;
use crate::exit::{fail, Exit};

/// A repository URL together with the form of it that is safe to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoUrl {
    /// What gix connects to. For http(s) the user and password are taken out (they go to the
    /// server through the credentials callback), so no gix error message can carry them.
    pub raw: String,
    /// What logs, state and status show.
    pub redacted: String,
    pub scheme: gix::url::Scheme,
    /// http(s) user and password from the URL.
    pub credentials: Option<(String, String)>,
    /// The password (and the http(s) user) as typed in the URL, whatever characters it holds.
    typed_secrets: Vec<String>,
}

impl RepoUrl {
    /// Strings that must never be printed: the password of any scheme, and the user name of
    /// http(s) URLs (tokens are often sent as the user). Short ones are left to the URL
    /// pattern of `redact::scrub`: masking "git" wherever it appears would garble every line.
    pub fn secrets(&self) -> Vec<String> {
        let mut secrets = match &self.credentials {
            Some((user, password)) => vec![user.clone(), password.clone()],
            None => Vec::new(),
        };
        // Read from the text as typed, not from gix's parse: gix takes `file://u:p@/path` apart
        // without a password, and then quotes the whole URL in its error.
        secrets.extend(self.typed_secrets.iter().cloned());
        secrets.retain(|s| s.len() >= 4);
        secrets.sort();
        secrets.dedup();
        secrets
    }
}

impl RepoUrl {
    /// Accept the URL forms Git users write, reject the rest with the reason.
    pub fn parse(raw: &str) -> Result<RepoUrl> {
        use gix::url::Scheme;
        let bad = |why: &str| {
            fail(
                Exit::Usage,
                format!(
                    "--repo-url {:?} is not a usable Git URL ({why}): use ssh://host/path, user@host:path, git://, http(s):// or an absolute path",
                    unusable_url_shown(raw)
                ),
            )
        };
        // A relative path would change meaning with the working directory of whoever runs us.
        let raw = if raw.starts_with('.') {
            absolute(Path::new(raw)).display().to_string()
        } else {
            raw.to_string()
        };
        // The user part is read from the text (a password may hold `/ ? # @ :`, which gix
        // would take for the path or the host), and gix never sees a password: http(s)
        // credentials go to the server through the credentials callback, and ssh, git and file
        // URLs have no use for one (ssh authenticates with the key), so no gix message can
        // quote it.
        let (redacted, typed_secrets) = crate::redact::redact_url(&raw);
        let mut credentials = None;
        let mut fetch_url = raw.clone();
        if let Some((scheme, userinfo, remainder)) = crate::redact::split_userinfo(&raw) {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            if scheme.eq_ignore_ascii_case("http") {
                return Err(bad(
                    "credentials would travel in clear text over http: use https://",
                ));
            }
            if scheme.eq_ignore_ascii_case("https") {
                credentials = Some((percent_decoded(user), percent_decoded(password)));
                fetch_url = format!("{scheme}://{remainder}");
            } else if user.is_empty() {
                fetch_url = format!("{scheme}://{remainder}");
            } else {
                fetch_url = format!("{scheme}://{user}@{remainder}");
            }
        }
        let url = gix::url::parse(gix::bstr::BStr::new(fetch_url.as_str()))
            .map_err(|_| bad("it does not parse"))?;
        match url.scheme {
            Scheme::File => {
                if !Path::new(&url.path.to_string()).is_absolute() {
                    return Err(bad("a local path must be absolute"));
                }
            }
            Scheme::Http if url.password().is_some() || url.user().is_some() => {
                return Err(bad(
                    "credentials would travel in clear text over http: use https://",
                ))
            }
            Scheme::Git | Scheme::Http | Scheme::Https | Scheme::Ssh => {
                if url.host().is_none_or(str::is_empty) {
                    return Err(bad("it names no host"));
                }
                if url.path.is_empty() || url.path == "/" {
                    return Err(bad("it names no repository path"));
                }
            }
            Scheme::Ext | Scheme::Helper(_) | Scheme::HelperUrl(_) => {
                return Err(bad("only ssh, git, http(s) and file URLs are supported"))
            }
        }
        Ok(RepoUrl {
            redacted,
            typed_secrets,
            scheme: url.scheme,
            raw: fetch_url,
            credentials,
        })
    }
}

/// A URL that did not parse, fit to print: the user part masked as in a configured URL, or,
/// when even that rule does not find a host after it, everything from `://` to the last `@`.
/// A password may hold spaces and quotes, which end a URL for `redact::mask_urls`.
fn unusable_url_shown(raw: &str) -> String {
    if crate::redact::split_userinfo(raw).is_some() {
        return crate::redact::redact_url(raw).0;
    }
    match (raw.split_once("://"), raw.rfind('@')) {
        (Some((scheme, _)), Some(at)) if at > scheme.len() + 3 => {
            format!("{scheme}://***@{}", &raw[at + 1..])
        }
        _ => crate::redact::mask_urls(raw),
    }
}

/// `%XX` escapes decoded, as Git decodes the user part of a URL; anything else kept as written.
fn percent_decoded(text: &str) -> String {
    String::from_utf8_lossy(&crate::http::percent_decoded(text)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        let table = [
            ("https://user:tok@host/r.git", "https://***@host/r.git"),
            ("https://tok@host/r.git", "https://***@host/r.git"),
            ("http://host/r.git", "http://host/r.git"),
            ("ssh://git@host/r.git", "ssh://git@host/r.git"),
            ("ssh://git:pw@host/r.git", "ssh://git:***@host/r.git"),
            ("git@host:org/r.git", "git@host:org/r.git"),
            ("/srv/r.git", "/srv/r.git"),
            ("file://u:S3c/ret@/srv/r.git", "file://u:***@/srv/r.git"),
        ];
        for (url, shown) in table {
            assert_eq!(
                RepoUrl::parse(url).map(|u| u.redacted).ok(),
                Some(shown.to_string()),
                "{url}"
            );
        }
    }

    #[test]
    fn urls_are_validated() {
        for good in [
            "git://127.0.0.1:9418/r",
            "https://h/r.git",
            "ssh://git@h:22/r",
            "git@h:org/r.git",
            "/srv/r.git",
            "file:///srv/r.git",
        ] {
            assert!(RepoUrl::parse(good).is_ok(), "{good} should parse");
        }
        for bad in [
            "ftp://h/r",
            "git://",
            "http:///r",
            "https://h",
            "file://relative",
        ] {
            let err = RepoUrl::parse(bad).unwrap_err();
            assert_eq!(crate::exit::code_of(&err), Exit::Usage, "{bad}");
        }
        let err = RepoUrl::parse("ftp://u:secret@h/r").unwrap_err();
        assert!(!format!("{err:#}").contains("secret"));
        let err = RepoUrl::parse("ftp://u:se/cr?et#@h/r").unwrap_err();
        let text = format!("{err:#}");
        assert!(!text.contains("se/cr") && !text.contains("et#"), "{text}");
        let path = RepoUrl::parse("https://h/a@b/r.git").unwrap();
        assert_eq!(
            path.raw, "https://h/a@b/r.git",
            "an @ in the path is not a user"
        );
        assert_eq!(path.credentials, None);
        let url = RepoUrl::parse("https://u:se/cr?et#@h/r").unwrap();
        assert_eq!(
            (url.raw.as_str(), url.redacted.as_str()),
            ("https://h/r", "https://***@h/r")
        );
    }

    #[test]
    fn urls_that_fail_to_parse_show_no_password_whatever_it_holds() {
        let table = [
            (
                "http://u:my secret@127.0.0.1:1/r.git",
                "http://***@127.0.0.1:1/r.git",
                "my secret",
            ),
            (
                "http://u:q\"uo<te>@127.0.0.1:1/r.git",
                "http://***@127.0.0.1:1/r.git",
                "uo<te",
            ),
            ("ftp://u:a b@h/r", "ftp://u:***@h/r", "a b"),
            // No host after the user part: everything up to the last @ goes.
            ("http://u:my secret@", "http://***@", "my secret"),
            ("git://u:p w@@/", "git://***@/", "p w"),
        ];
        for (raw, shown, secret) in table {
            assert_eq!(unusable_url_shown(raw), shown, "{raw}");
            let err = format!("{:#}", RepoUrl::parse(raw).unwrap_err());
            assert!(!err.contains(secret), "{raw}: {err}");
        }
    }

    #[test]
    fn https_credentials_are_kept_out_of_the_url_gix_sees() {
        let url = RepoUrl::parse("https://deploy:t0ken-x@git.example.com/org/cfg.git").unwrap();
        assert_eq!(url.raw, "https://git.example.com/org/cfg.git");
        assert_eq!(url.redacted, "https://***@git.example.com/org/cfg.git");
        assert_eq!(url.credentials, Some(("deploy".into(), "t0ken-x".into())));
        assert_eq!(url.secrets(), ["deploy", "t0ken-x"]);
        let url = RepoUrl::parse("https://de%40ploy:t0k#en/x@h/r.git").unwrap();
        assert_eq!(url.raw, "https://h/r.git");
        assert_eq!(url.credentials, Some(("de@ploy".into(), "t0k#en/x".into())));
        let ssh = RepoUrl::parse("ssh://git@h/r.git").unwrap();
        assert_eq!(ssh.raw, "ssh://git@h/r.git");
        assert!(ssh.secrets().is_empty());
        for (other, fetched) in [
            ("ssh://git:pa55word@h/r.git", "ssh://git@h/r.git"),
            ("file://u:pa55word@/srv/r.git", "file://u@/srv/r.git"),
        ] {
            let url = RepoUrl::parse(other).unwrap();
            assert_eq!(url.raw, fetched, "gix never sees the password of {other}");
            assert_eq!(url.secrets(), ["pa55word"], "{other}");
            assert!(!url.redacted.contains("pa55word"), "{other}");
        }
    }
}

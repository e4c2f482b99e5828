//! Where notifications go: the options, and the validated `Notifier` they resolve to. A
//! webhook URL is a secret (its path holds the token), so it is never shown: messages name the
//! destination by `scheme://host[:port]` only.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::format::{sha256_hex, Format};
use crate::exit::{fail, Exit};
use crate::http::{parse_url, Url};

/// The notification settings `sync`, `install-units` and `notify --test` take.
#[derive(clap::Args, Clone)]
pub struct NotifyOptions {
    /// Webhook URL to tell of applies and failures (several: separate them with spaces or commas). Its token is a secret: prefer --notify-url-file
    #[arg(long, env = "GITOPS_NOTIFY_URL", value_name = "URL")]
    pub notify_url: Vec<String>,

    /// File with webhook URLs, one a line (# comments), not readable by group or others: keeps the token out of the env file
    #[arg(long, env = "GITOPS_NOTIFY_URL_FILE", value_name = "FILE")]
    pub notify_url_file: Option<PathBuf>,

    /// Body of the notifications: auto tells Discord and Slack webhooks by their address, json otherwise
    #[arg(long, env = "GITOPS_NOTIFY_FORMAT", value_enum, default_value_t = Format::Auto)]
    pub notify_format: Format,

    /// File holding the key that signs json notifications (X-Gitops-Signature: sha256=HMAC), not readable by group or others
    #[arg(long, env = "GITOPS_NOTIFY_SECRET_FILE", value_name = "FILE")]
    pub notify_secret_file: Option<PathBuf>,
}

/// By hand: the derived one would print the URLs.
impl std::fmt::Debug for NotifyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyOptions")
            .field("notify_url", &format!("({} given)", self.notify_url.len()))
            .field("notify_url_file", &self.notify_url_file)
            .field("notify_format", &self.notify_format)
            .field("notify_secret_file", &self.notify_secret_file)
            .finish()
    }
}

/// Where the notifications of this machine go, and the key that signs json ones.
#[derive(Clone)]
pub struct Notifier {
    pub destinations: Vec<Destination>,
    secret: Option<Vec<u8>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("destinations", &self.destinations)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Notifier {
    pub fn is_empty(&self) -> bool {
        self.destinations.is_empty()
    }

    pub fn secret(&self) -> Option<&[u8]> {
        self.secret.as_deref()
    }
}

/// One webhook.
#[derive(Clone, PartialEq, Eq)]
pub struct Destination {
    /// What is sent to: the URL without its user part (that goes in `authorization`).
    url: String,
    /// `Basic …` from the URL's user part, when it has one.
    authorization: Option<String>,
    /// Never `Auto`.
    pub format: Format,
    /// 16 hex digits of the URL's SHA-256: a stable, non-secret name to record delivery under.
    pub key: String,
    /// `scheme://host[:port]`: all that messages show of it.
    pub shown: String,
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("shown", &self.shown)
            .field("format", &self.format)
            .field("key", &self.key)
            .finish()
    }
}

impl Destination {
    pub(super) fn url(&self) -> &str {
        &self.url
    }

    pub(super) fn authorization(&self) -> Option<&str> {
        self.authorization.as_deref()
    }
}

/// The largest URL or key file read.
const MAX_SECRET_FILE: u64 = 64 * 1024;

impl NotifyOptions {
    /// Validate the settings: every problem is a usage error (exit 2), and no message shows
    /// more of a URL than its scheme and host.
    pub fn resolve(&self) -> Result<Notifier> {
        let mut urls: Vec<(String, String)> = Vec::new();
        for value in &self.notify_url {
            for url in value
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|u| !u.is_empty())
            {
                urls.push((
                    url.to_string(),
                    "--notify-url (GITOPS_NOTIFY_URL)".to_string(),
                ));
            }
        }
        if let Some(file) = &self.notify_url_file {
            let text = read_secret_file(file, "--notify-url-file", "webhook URL file")?;
            let text = String::from_utf8_lossy(&text);
            // The byte order mark some editors write would be read as part of the scheme.
            let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
            for (number, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                urls.push((
                    line.to_string(),
                    format!("line {} of {}", number + 1, file.display()),
                ));
            }
        }
        let mut destinations: Vec<Destination> = Vec::new();
        for (url, source) in urls {
            let parsed = parse_url(&url);
            // Masked before anything can fail, so that no later message can show them.
            crate::redact::remember(secrets_of(&url, parsed.as_ref().ok()));
            let parsed = parsed.map_err(|why| {
                fail(
                    Exit::Usage,
                    format!(
                        "the notification URL from {source} is not usable ({why}): give an http:// or https:// webhook URL"
                    ),
                )
            })?;
            let format = match self.notify_format {
                Format::Auto => Format::detect(&parsed.host, &parsed.path_query()),
                other => other,
            };
            let destination = Destination {
                url: format!("{}{}", parsed.shown(), parsed.path_query()),
                authorization: parsed.authorization(),
                format,
                key: sha256_hex(url.as_bytes())[..16].to_string(),
                shown: parsed.shown(),
            };
            // The same URL twice (the env file and the URL file) is one destination.
            if !destinations.iter().any(|d| d.key == destination.key) {
                destinations.push(destination);
            }
        }
        let secret = match &self.notify_secret_file {
            Some(file) => {
                let mut key = read_secret_file(file, "--notify-secret-file", "signing key file")?;
                if key.ends_with(b"\n") {
                    key.pop();
                    if key.ends_with(b"\r") {
                        key.pop();
                    }
                }
                if key.is_empty() {
                    return Err(fail(
                        Exit::Usage,
                        format!(
                            "the signing key file {} is empty: write the shared key into it",
                            file.display()
                        ),
                    ));
                }
                let text = String::from_utf8_lossy(&key).into_owned();
                if text.len() >= 4 {
                    crate::redact::remember(vec![text]);
                }
                Some(key)
            }
            None => None,
        };
        Ok(Notifier {
            destinations,
            secret,
        })
    }
}

/// What `scrub` must mask of a webhook URL: its path is its token, so the path is masked whole
/// as well as its pieces.
fn secrets_of(url: &str, parsed: Option<&Url>) -> Vec<String> {
    crate::http::secrets_of(url, parsed, true)
}

/// Read a file holding a secret, checked as the deploy key is: a regular file, readable by its
/// owner alone, owned by us or root.
pub(crate) fn read_secret_file(path: &Path, flag: &str, what: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let shown = path.display();
    let file = crate::config::open_regular(path).map_err(|e| {
        fail(
            Exit::Usage,
            format!("cannot read the {what} {shown} ({e}): point {flag} at an existing file"),
        )
    })?;
    let meta = file.metadata().map_err(|e| {
        fail(
            Exit::Usage,
            format!("cannot read the {what} {shown} ({e}): point {flag} at an existing file"),
        )
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(fail(
            Exit::Usage,
            format!(
                "the {what} {shown} is readable by group or others (mode {mode:04o}): run chmod 600 {shown}"
            ),
        ));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(fail(
            Exit::Usage,
            format!(
                "the {what} {shown} belongs to uid {}, not to the user running gitops (uid {me}): chown it",
                meta.uid()
            ),
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| {
            fail(
                Exit::Usage,
                format!("cannot read the {what} {shown} ({e}): point {flag} at a readable file"),
            )
        })?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(fail(
            Exit::Usage,
            format!(
                "the {what} {shown} is larger than {} KiB: point {flag} at the right file",
                MAX_SECRET_FILE / 1024
            ),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::base64;
    use std::os::unix::fs::PermissionsExt;

    fn options(urls: &[&str], format: Format) -> NotifyOptions {
        NotifyOptions {
            notify_url: urls.iter().map(|u| u.to_string()).collect(),
            notify_url_file: None,
            notify_format: format,
            notify_secret_file: None,
        }
    }

    #[test]
    fn urls_are_read_and_shown_by_host_only() {
        let table = [
            (
                "https://discord.com/api/webhooks/123/T0KEN-abcdefghijklmnop",
                "https://discord.com",
                Format::Discord,
            ),
            (
                "https://hooks.slack.com/services/T0/B0/xyzxyzxyzxyzxyzxyz",
                "https://hooks.slack.com",
                Format::Slack,
            ),
            (
                "HTTP://U:pw@Alerts.Example.com:8080/in?token=abcd",
                "http://alerts.example.com:8080",
                Format::Json,
            ),
            ("http://[::1]:9000", "http://[::1]:9000", Format::Json),
        ];
        for (url, shown, format) in table {
            let notifier = options(&[url], Format::Auto).resolve().unwrap();
            let d = &notifier.destinations[0];
            assert_eq!((d.shown.as_str(), d.format), (shown, format), "{url}");
            assert_eq!(d.key.len(), 16);
            assert!(!format!("{notifier:?}").contains("pw"), "{notifier:?}");
        }
        let d = &options(&["http://u:p%40ss@h/x"], Format::Auto)
            .resolve()
            .unwrap()
            .destinations[0];
        assert_eq!(d.url(), "http://h/x");
        assert_eq!(d.authorization(), Some("Basic dTpwQHNz"));
    }

    #[test]
    fn several_urls_separated_by_spaces_or_commas_and_the_same_one_once() {
        let notifier = options(
            &["http://a/1, http://b/2 http://a/1", "http://c/3"],
            Format::Slack,
        )
        .resolve()
        .unwrap();
        let shown: Vec<&str> = notifier
            .destinations
            .iter()
            .map(|d| d.shown.as_str())
            .collect();
        assert_eq!(shown, ["http://a", "http://b", "http://c"]);
        assert!(notifier
            .destinations
            .iter()
            .all(|d| d.format == Format::Slack));
        assert!(options(&[" , "], Format::Auto)
            .resolve()
            .unwrap()
            .is_empty());
    }

    #[test]
    fn bad_urls_are_usage_errors_that_quote_nothing_of_them() {
        for bad in [
            "ftp://h/s3cr3t-path",
            "discord.com/api/webhooks/1/s3cr3t-path",
            "https:///s3cr3t-path",
            "https://h:99999/s3cr3t-path",
            "https://h:0/s3cr3t-path",
            "https://user:s3cr3t-path@/x",
            "https://h\u{7}/s3cr3t-path",
            "https://h/s3cr3t-path\"<>",
        ] {
            let err = options(&[bad], Format::Auto).resolve().unwrap_err();
            assert_eq!(crate::exit::code_of(&err), Exit::Usage, "{bad}");
            let text = format!("{err:#}");
            assert!(!text.contains("s3cr3t"), "{bad}: {text}");
            assert!(text.contains("GITOPS_NOTIFY_URL"), "{text}");
        }
    }

    #[test]
    fn a_stray_character_before_the_scheme_is_named_as_such() {
        let err = options(&["\"https://h/s3cr3t-path"], Format::Auto)
            .resolve()
            .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("a character precedes its https://"), "{text}");
    }

    #[test]
    fn secrets_of_a_url_are_masked_from_then_on() {
        let url = "https://discord.com/api/webhooks/1234/abcdefghijklmnopqrstuvwx?wait=true";
        options(&[url], Format::Auto).resolve().unwrap();
        let said = crate::redact::scrub(&format!(
            "posting to {url} failed; server said abcdefghijklmnopqrstuvwx is bad"
        ));
        assert!(!said.contains("abcdefghijklmnop"), "{said}");
        assert!(!said.contains("/1234"), "{said}");
        let secrets = secrets_of(
            "https://u:pa55@h/",
            parse_url("https://u:pa55@h/").ok().as_ref(),
        );
        assert!(secrets.contains(&"pa55".to_string()), "{secrets:?}");
        assert!(!secrets.contains(&"/".to_string()));
        assert!(secrets_of("https://", None).is_empty());
    }

    #[test]
    fn what_a_server_may_echo_of_a_url_is_masked() {
        // (URL, what the server echoes, what may still be shown of the line)
        let table = [
            (
                "http://u:hunt3r%40pw@h/x",
                "denied: Authorization: Basic dTpodW50M3JAcHc=",
                "denied: Authorization: ***",
            ),
            (
                "http://u:hunt3r%40pw@h/x",
                "bad password hunt3r@pw",
                "bad password ***",
            ),
            (
                "http://h/hook?token=sh0rtT0k",
                "bad token sh0rtT0k",
                "bad token ***",
            ),
            (
                "http://h/hook/ab12cd34",
                "unknown hook ab12cd34",
                "unknown hook ***",
            ),
            (
                "http://h/hook/t0k%2Bpl%2Fus",
                "unknown t0k+pl/us",
                "unknown ***",
            ),
            // Words are not masked: the server's message stays readable.
            (
                "http://h/notifications?wait=true",
                "notifications: wait is true",
                "notifications: wait is true",
            ),
        ];
        for (url, echoed, shown) in table {
            let parsed = parse_url(url).unwrap();
            let secrets = secrets_of(url, Some(&parsed));
            assert_eq!(
                crate::redact::mask_secrets(echoed, &secrets),
                shown,
                "{url}"
            );
        }
    }

    #[test]
    fn url_and_key_files_are_checked_like_the_deploy_key() {
        let dir = tempfile::tempdir().unwrap();
        let urls = dir.path().join("urls");
        std::fs::write(
            &urls,
            "# the team's channel\nhttp://a/hook1\n\n  http://b/hook2  \n",
        )
        .unwrap();
        std::fs::set_permissions(&urls, std::fs::Permissions::from_mode(0o600)).unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "s3cret-key\n").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
        let mut opts = options(&["http://c/x"], Format::Json);
        opts.notify_url_file = Some(urls.clone());
        opts.notify_secret_file = Some(key.clone());
        let notifier = opts.resolve().unwrap();
        assert_eq!(notifier.destinations.len(), 3);
        assert_eq!(notifier.secret(), Some(&b"s3cret-key"[..]));
        assert!(!format!("{notifier:?}").contains("s3cret"));

        // As Windows editors save it: a byte order mark and CRLF line ends.
        std::fs::write(
            &urls,
            "\u{feff}http://a/hook1\r\n\r\n# c\r\nhttp://b/hook2\r\n",
        )
        .unwrap();
        assert_eq!(opts.resolve().unwrap().destinations.len(), 3);

        std::fs::set_permissions(&urls, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = format!("{:#}", opts.resolve().unwrap_err());
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&urls, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&urls, "http://a/ok\nnot a url\n").unwrap();
        let err = format!("{:#}", opts.resolve().unwrap_err());
        assert!(err.contains("line 2 of"), "{err}");
        opts.notify_url_file = Some(dir.path().to_path_buf());
        let err = opts.resolve().unwrap_err();
        assert_eq!(crate::exit::code_of(&err), Exit::Usage);
        opts.notify_url_file = None;
        std::fs::write(&key, "\n").unwrap();
        assert!(format!("{:#}", opts.resolve().unwrap_err()).contains("is empty"));
    }

    #[test]
    fn base64_matches_the_rfc_vectors() {
        let table = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in table {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }
}

//! How a pass reaches the Git server: trust on first use for ssh host keys, an https token read
//! from a file, and the largest repository a fetch accepts.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::ValueEnum;

use crate::config::RepoUrl;
use crate::exit::{fail, Exit};

/// The user sent with a token in basic auth when the URL names none. GitHub wants exactly this
/// for app and Actions tokens and accepts any user with a personal token; Gitea and Forgejo
/// accept any; GitLab wants `oauth2` for OAuth tokens, which goes in the URL as its user.
pub const TOKEN_USER: &str = "x-access-token";

/// The options of a pass about the transport.
#[derive(clap::Args, Debug, Clone)]
pub struct TransportOptions {
    /// Trust an ssh server's host key on first use: record it in STATE_DIR/known_hosts and refuse any other key for that server afterwards (not with --known-hosts)
    #[arg(long, env = "GITOPS_SSH_ACCEPT_NEW", value_parser = clap::builder::BoolishValueParser::new())]
    pub ssh_accept_new: bool,

    /// File holding the token for https:// URLs (its first line); must not be readable by group or others
    #[arg(long, env = "GITOPS_HTTP_TOKEN_FILE", value_name = "FILE")]
    pub http_token_file: Option<PathBuf>,

    /// How the token is sent: basic (as the password, the user from the URL or x-access-token) or bearer (an Authorization: Bearer header)
    #[arg(long, env = "GITOPS_HTTP_AUTH", value_enum, default_value_t = HttpAuth::Basic)]
    pub http_auth: HttpAuth,

    /// Refuse a repository whose packed objects grow larger than this while fetching (512M, 1G, 4GiB)
    #[arg(long, env = "GITOPS_MAX_REPO_SIZE", value_name = "SIZE", default_value = "1G", value_parser = crate::config::parse_size)]
    pub max_repo_size: u64,

    /// Fetch only the last N commits of the branch into a new store, as `git clone --depth N` does; later fetches add the new commits, and fetch the whole history when that is what it takes to prove a new tip descends from the applied commit. Default: the whole history
    #[arg(long, env = "GITOPS_DEPTH", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub depth: Option<u32>,
}

/// How an https token is presented to the server.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpAuth {
    /// HTTP basic authentication with the token as the password.
    Basic,
    /// `Authorization: Bearer <token>` on every request.
    Bearer,
}

/// The transport settings of a pass, validated.
#[derive(Debug, Clone)]
pub struct Transport {
    pub ssh_accept_new: bool,
    pub http_token: Option<Token>,
    pub http_auth: HttpAuth,
    pub max_repo_size: u64,
    /// How many commits a new store receives; None: the whole history.
    pub depth: Option<std::num::NonZeroU32>,
}

/// A token read from --http-token-file. Its `Debug` shows no byte of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

impl TransportOptions {
    /// Check the options against each other and the URL, and read the token file.
    pub fn resolve(&self, url: &RepoUrl, known_hosts: Option<&Path>) -> Result<Transport> {
        if self.ssh_accept_new && known_hosts.is_some() {
            return Err(fail(
                Exit::Usage,
                "--ssh-accept-new and --known-hosts contradict each other (trust the first key seen, or only the pinned ones): keep one of them",
            ));
        }
        let http_token = match &self.http_token_file {
            Some(path) => Some(read_token(path)?),
            None => None,
        };
        if http_token.is_some() {
            let https = url.scheme == gix::url::Scheme::Https;
            if !https {
                return Err(fail(
                    Exit::Usage,
                    format!(
                        "--http-token-file is only sent to https:// URLs, and {} is not one: use the https:// URL of the repository, or unset GITOPS_HTTP_TOKEN_FILE",
                        url.redacted
                    ),
                ));
            }
            if url.credentials.as_ref().is_some_and(|(_, p)| !p.is_empty()) {
                return Err(fail(
                    Exit::Usage,
                    "both the repository URL and --http-token-file carry a password: take it out of the URL",
                ));
            }
        }
        Ok(Transport {
            ssh_accept_new: self.ssh_accept_new,
            http_token,
            http_auth: self.http_auth,
            max_repo_size: self.max_repo_size,
            depth: self.depth.and_then(std::num::NonZeroU32::new),
        })
    }
}

/// The first line of the token file, checked as the deploy key is (ours or root's, not readable
/// by group or others). A token is a header value as well as a password: visible ASCII only, so
/// a stray byte is an error here rather than a header silently dropped by the HTTP client.
fn read_token(path: &Path) -> Result<Token> {
    let bytes =
        crate::report::notify::options::read_secret_file(path, "--http-token-file", "token file")?;
    let text = String::from_utf8_lossy(&bytes);
    let token = text.strip_suffix('\n').unwrap_or(&text);
    let token = token.strip_suffix('\r').unwrap_or(token);
    if token.is_empty() {
        return Err(fail(
            Exit::Usage,
            format!(
                "the token file {} is empty: write the token into it (one line)",
                path.display()
            ),
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(fail(
            Exit::Usage,
            format!(
                "the token file {} holds more than one line, spaces or non-ASCII bytes: write the token alone on one line",
                path.display()
            ),
        ));
    }
    crate::redact::remember(vec![token.to_string()]);
    Ok(Token(token.to_string()))
}

impl Transport {
    /// The user and password the credentials callback answers with, when the server asks:
    /// the token as the password in basic mode, else whatever the URL carries.
    pub fn credentials(&self, url: &RepoUrl) -> Option<(String, String)> {
        match (&self.http_token, self.http_auth) {
            (Some(token), HttpAuth::Basic) => {
                let user = url
                    .credentials
                    .as_ref()
                    .map(|(u, _)| u.clone())
                    .filter(|u| !u.is_empty())
                    .unwrap_or_else(|| TOKEN_USER.to_string());
                Some((user, token.expose().to_string()))
            }
            _ => url.credentials.clone(),
        }
    }

    /// The header every http request carries in bearer mode.
    pub fn bearer_header(&self) -> Option<String> {
        match (&self.http_token, self.http_auth) {
            (Some(token), HttpAuth::Bearer) => {
                Some(format!("Authorization: Bearer {}", token.expose()))
            }
            _ => None,
        }
    }
}

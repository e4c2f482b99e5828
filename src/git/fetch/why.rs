//! Why a fetch failed, in words an operator can act on: the fix for each failure, the
//! server's own words before ssh's, a changed host key named as such.

use super::*;

/// The refusal of a server whose key is not the one trusted on first use: which key it offers
/// now, and the command that forgets the old one.
pub(super) fn changed_host_key(cause: &str, log: &Path, file: &Path, what: &str) -> String {
    let host = cause
        .split("Host key for ")
        .nth(1)
        .and_then(|rest| rest.split(" has changed").next())
        .unwrap_or("HOST");
    let said = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = said.lines().map(str::trim).collect();
    // "The fingerprint for the ED25519 key sent by the remote host is" / "SHA256:…."
    let offered = lines
        .iter()
        .position(|l| l.starts_with("The fingerprint for the "))
        .and_then(|at| {
            let kind = lines[at]
                .strip_prefix("The fingerprint for the ")?
                .split(' ')
                .next()?;
            let print = lines.get(at + 1)?.trim_end_matches('.');
            Some(format!("{kind} key {print}"))
        })
        .unwrap_or_else(|| "another key".to_string());
    let file = file.display();
    format!(
        "could not fetch {what}: the host key of {host} has changed: the server now presents {offered}, not the key recorded on first use in {file}; if that is its real new key (check the fingerprint out of band), run ssh-keygen -R '{host}' -f {file} and the next pass records it, otherwise someone may be intercepting the connection"
    )
}

/// ssh's words for a server whose key differs from the one known_hosts has for it.
pub(super) fn host_key_changed(cause: &str) -> bool {
    cause.contains("has changed and you have requested strict checking")
        || cause.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
}

/// What to change, judged from the words of a failed gix fetch; `None` for the words our own
/// socket puts inside gix's errors, which already say it (a deadline names its option) or
/// need no change (a signal stopped us).
pub(super) fn fetch_fix(cause: &str) -> Option<&'static str> {
    let has = |words: &[&str]| words.iter().any(|w| cause.contains(w));
    if has(&["during the fetch", "--fetch-timeout"]) {
        return None;
    }
    Some(
        if has(&[
            "No space left on device",
            "os error 28",
            "Disk quota exceeded",
        ]) {
            // Our side, whatever the URL: a pack that does not fit in the state directory.
            "the disk holding the state directory (--state-dir) is full: free space on it"
        } else if has(&["dubious ownership"]) {
            "the repository belongs to another user, and git serves only its owner's repositories: chown it to the user gitops runs as"
        } else if has(&["Host key verification failed", "REMOTE HOST IDENTIFICATION"]) {
            "pin the server's host key in --known-hosts (ssh-keyscan it, then check its fingerprint out of band)"
        } else if has(&["repository not exported", "no such repository"]) {
            // git daemon's answer for a path it does not serve, whatever the reason.
            "check the repository path in --repo-url"
        } else if has(&[
            "Connection refused",
            "could not connect",
            "could not resolve",
            "Name or service not known",
            "No route to host",
            "Network is unreachable",
            "timed out",
            "Connection reset",
        ]) {
            "check the host and port in --repo-url and that the Git server is up and reachable from here"
        } else if has(&[
            "Permission denied",
            "HTTP status 401",
            "HTTP status 403",
            "uthentication",
            "access denied",
            "Access denied",
        ]) {
            "check the deploy key (--ssh-key) or the URL's credentials, and that the server grants this machine read access"
        } else if has(&[
            "HTTP status 404",
            "not found",
            "Not Found",
            "does not exist",
            "not a git repository",
            "does not appear to be a git repository",
            "valid git directory",
            "No such file",
        ]) {
            "check the repository path in --repo-url"
        } else {
            "check --repo-url and that this machine may read the repository"
        },
    )
}

/// Whether gix's error only says that the other side stopped talking, which the server's own
/// words explain better; any other error (our disk full, say) stays the cause.
pub(super) fn stream_ended(cause: &str) -> bool {
    [
        "fill whole buffer",
        "nexpected end of file",
        "UnexpectedEof",
        "Broken pipe",
        "hung up",
    ]
    .iter()
    .any(|w| cause.contains(w))
}

/// What the other side said, from the transport log (ssh's `-E` messages, the stderr of ssh and
/// of a local upload-pack). The server's `fatal:`/`error:` lines win, as
/// "the server says: …"; otherwise ssh's last two lines ("Host key verification failed.",
/// "Permission denied (publickey)."), without the banner around them.
pub(super) fn transport_words(log: &Path) -> Option<String> {
    let bytes = std::fs::read(log).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('@'))
        .collect();
    let server: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("fatal:") || l.starts_with("error:") || l.starts_with("ERROR:"))
        .collect();
    if !server.is_empty() {
        let mut said: Vec<&str> = Vec::new();
        for line in server {
            if !said.contains(&line) {
                said.push(line);
            }
        }
        return Some(format!("the server says: {}", said.join(" ")));
    }
    let tail = &lines[lines.len().saturating_sub(2)..];
    if tail.is_empty() {
        return None;
    }
    let words = tail.join(" ");
    Some(if words.starts_with("ssh:") {
        words
    } else {
        format!("ssh: {words}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fetch_failure_names_a_fix() {
        let table = [
            (
                "could not connect to 127.0.0.1:1: Connection refused (os error 111)",
                "host and port",
            ),
            (
                "could not resolve nonexistent.invalid: Name or service not known",
                "host and port",
            ),
            (
                "ssh: git@127.0.0.1: Permission denied (publickey).",
                "deploy key",
            ),
            ("Received HTTP status 401", "deploy key"),
            (
                "could not connect to 127.0.0.1:8403: Connection refused",
                "host and port",
            ),
            ("ssh: Host key verification failed.", "--known-hosts"),
            ("Received HTTP status 404", "repository path"),
            (
                "access denied or repository not exported: /x.git",
                "repository path",
            ),
            (
                "An IO error occurred: no such repository: /x.git",
                "repository path",
            ),
            (
                "\"/x\" is a valid git directory: No such file or directory",
                "repository path",
            ),
            ("something gix never said before", "--repo-url"),
            (
                "Failed to write the received pack: No space left on device (os error 28)",
                "disk holding the state directory",
            ),
            (
                "the server says: fatal: detected dubious ownership in repository at '/r'",
                "chown",
            ),
            (
                "the server says: fatal: '/x' does not appear to be a git repository",
                "repository path",
            ),
        ];
        for (cause, fix) in table {
            let said = fetch_fix(cause).unwrap_or_default();
            assert!(said.contains(fix), "{cause} → {said}");
        }
        for says_it_already in [
            "gitops received SIGTERM during the fetch",
            "no answer within --fetch-timeout; check the network or raise it",
        ] {
            assert_eq!(fetch_fix(says_it_already), None, "{says_it_already}");
        }
    }

    #[test]
    fn the_servers_words_come_before_sshs() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("gitops-ssh.log");
        assert_eq!(transport_words(&log), None);
        std::fs::write(
            &log,
            "Warning: something\nfatal: '/x' does not appear to be a git repository\n",
        )
        .unwrap();
        assert_eq!(
            transport_words(&log).as_deref(),
            Some("the server says: fatal: '/x' does not appear to be a git repository")
        );
        std::fs::write(&log, "@@@@@@\ngit@h: Permission denied (publickey).\n").unwrap();
        assert_eq!(
            transport_words(&log).as_deref(),
            Some("ssh: git@h: Permission denied (publickey).")
        );
        std::fs::write(&log, b"fatal: caf\xE9\n").unwrap();
        assert_eq!(
            transport_words(&log).as_deref(),
            Some("the server says: fatal: caf\u{FFFD}")
        );
        assert!(stream_ended(
            "An IO error occurred when talking to the server: failed to fill whole buffer"
        ));
        assert!(!stream_ended("No space left on device (os error 28)"));
    }
}

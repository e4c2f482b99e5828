//! The env file install-units writes, and how files are shown without their secrets.

use super::trigger;
use super::units::ENV_FILE;

/// The settings gitops itself reads from the env file. Showing a file masks the value of any
/// other key entirely (a proxy password, a token for the entry point): we cannot know which
/// of them are secret. GITOPS_NOTIFY_URL is left out on purpose: its path is the webhook's
/// token, so it is masked whole, and so is GITOPS_FLEET_LOCK_URL, which may carry a password.
const KNOWN_KEYS: [&str; 48] = [
    "GITOPS_REPO_URL",
    "REPO_URL",
    "GITOPS_BRANCH",
    "GITOPS_STATE_DIR",
    "GITOPS_CHECKOUT",
    "GITOPS_ENTRYPOINT",
    "GITOPS_APPLY",
    "GITOPS_APPLY_TIMEOUT",
    "GITOPS_FETCH_TIMEOUT",
    "GITOPS_ALLOW_REWIND",
    "GITOPS_SSH_KEY",
    "GITOPS_KNOWN_HOSTS",
    "GITOPS_LOCK_TIMEOUT",
    "GITOPS_MAX_FILE_SIZE",
    "GITOPS_NOTIFY_URL_FILE",
    "GITOPS_NOTIFY_FORMAT",
    "GITOPS_NOTIFY_SECRET_FILE",
    "GITOPS_METRICS_DIR",
    "GITOPS_REBOOT_FILE",
    "GITOPS_REBOOT_COMMAND",
    "GITOPS_REBOOT_MIN_UPTIME",
    "GITOPS_REBOOT_REQUIRE_CLOCK_SYNC",
    "GITOPS_MACHINE_ID_FILE",
    "GITOPS_ALLOWED_SIGNERS",
    "GITOPS_GPG_KEYRING",
    "GITOPS_VERIFY",
    "GITOPS_VERIFY_FIRST_PARENT",
    "GITOPS_MAX_COMMIT_AGE",
    "GITOPS_SSH_ACCEPT_NEW",
    "GITOPS_HTTP_TOKEN_FILE",
    "GITOPS_HTTP_AUTH",
    "GITOPS_MAX_REPO_SIZE",
    "GITOPS_TRIGGER_PATH",
    "GITOPS_TRIGGER_MIN_INTERVAL",
    "GITOPS_TRIGGER_ALLOW",
    "GITOPS_TRIGGER_STATE_DIR",
    "GITOPS_DEPTH",
    "GITOPS_HEALTH_CHECK",
    "GITOPS_HEALTH_TIMEOUT",
    "GITOPS_HEALTH_RETRIES",
    "GITOPS_HEALTH_INTERVAL",
    "GITOPS_ON_FAILURE",
    "GITOPS_RETRY_REVERTED",
    "GITOPS_MAX_SUSPEND",
    "GITOPS_HOST",
    "GITOPS_GROUPS",
    "GITOPS_WATCH",
    "GITOPS_SPARSE",
];

/// A file as it may be shown (a diff, --dry-run): credentials in URLs masked everywhere, and
/// in the env file the whole value of any key gitops does not know.
pub(super) fn shown(path: &str, text: &str) -> String {
    let mut out = String::new();
    // In the env file, a value that goes on over lines (a trailing backslash, or a quote not
    // closed on its line) is masked on every following line until it ends.
    let mut open: Option<char> = None;
    for line in text.lines() {
        let shown = if path != ENV_FILE && path != trigger::ENV_FILE {
            crate::redact::mask_urls(line)
        } else if let Some(end) = open {
            let done = match end {
                '\\' => !line.ends_with('\\'),
                quote => line.trim_end().ends_with(quote),
            };
            if done {
                open = None;
            }
            "***".to_string()
        } else {
            let (shown, goes_on) = shown_env_line(line);
            open = goes_on;
            shown
        };
        out.push_str(&shown);
        out.push('\n');
    }
    out
}

/// One env-file line as it may be shown, and what ends its value when it goes on over the
/// next lines (a backslash, or the quote it opened). Quotes are taken off before looking at
/// the value (and put back), so a quoted URL is redacted too.
fn shown_env_line(line: &str) -> (String, Option<char>) {
    let trimmed = line.trim_start();
    let commented = trimmed
        .strip_prefix('#')
        .or_else(|| trimmed.strip_prefix(';'));
    let assignment = commented.map(str::trim_start).unwrap_or(line);
    let Some((key, value)) = assignment.split_once('=') else {
        return (crate::redact::mask_urls(line), None);
    };
    let name = key.trim().trim_start_matches("export ").trim();
    let is_name = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if commented.is_some() && !is_name {
        // Prose that happens to hold an '=': nothing to mask but URLs.
        return (crate::redact::mask_urls(line), None);
    }
    // A comment does not go on over lines; a value does.
    let goes_on = |value: &str| -> Option<char> {
        if commented.is_some() {
            return None;
        }
        let value = value.trim();
        let quote = value.chars().next().filter(|q| *q == '"' || *q == '\'');
        match quote {
            Some(q) if value.len() < 2 || !value.ends_with(q) => Some(q),
            _ if value.ends_with('\\') => Some('\\'),
            _ => None,
        }
    };
    let prefix = &line[..line.len() - assignment.len()];
    // A value split over lines cannot be redacted piecemeal (half a password is still a
    // secret): masked whole, like every value gitops does not know.
    if !KNOWN_KEYS.contains(&name) || goes_on(value).is_some() {
        return (format!("{prefix}{key}=***"), goes_on(value));
    }
    let trimmed_value = value.trim();
    let quote = trimmed_value.chars().next().filter(|q| {
        (*q == '"' || *q == '\'') && trimmed_value.len() >= 2 && trimmed_value.ends_with(*q)
    });
    let shown = match quote {
        Some(q) => format!(
            "{q}{}{q}",
            crate::redact::mask_urls(&trimmed_value[1..trimmed_value.len() - 1])
        ),
        None => crate::redact::mask_urls(trimmed_value),
    };
    (format!("{prefix}{key}={shown}"), goes_on(value))
}

/// The env file from the settings given: the syntax `parse_env_file` and systemd both read.
pub fn env_file(env: &[(String, String)]) -> String {
    env_text(
        "# Written by `gitops install-units`. gitops.service reads it (EnvironmentFile=) and so does\n# `gitops sync` run by hand: both see the same settings. KEY=VALUE, as systemd reads it.\n",
        env,
    )
}

/// KEY=VALUE lines under a header, quoted where systemd and `parse_env_file` need it.
pub(super) fn env_text(header: &str, env: &[(String, String)]) -> String {
    let mut out = String::from(header);
    for (key, value) in env {
        let plain = !value.is_empty()
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:@+,=%~".contains(c));
        if plain {
            out.push_str(&format!("{key}={value}\n"));
        } else {
            out.push_str(&format!(
                "{key}=\"{}\"\n",
                value.replace('\\', "\\\\").replace('"', "\\\"")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_env_files_carry_no_secret() {
        let table = [
            ("GITOPS_BRANCH=main", "GITOPS_BRANCH=main"),
            (
                "GITOPS_REPO_URL=\"https://tok:pw@h/x\"",
                "GITOPS_REPO_URL=\"https://***@h/x\"",
            ),
            ("HTTPS_PROXY=http://u:pw@proxy", "HTTPS_PROXY=***"),
            ("#TOKEN=abc", "#TOKEN=***"),
            ("  # API_KEY = abc", "  # API_KEY =***"),
            (
                "#GITOPS_REPO_URL=https://u:pw@h/x",
                "#GITOPS_REPO_URL=https://***@h/x",
            ),
            (
                "# written by install-units (EnvironmentFile=) for you",
                "# written by install-units (EnvironmentFile=) for you",
            ),
            (
                "GITOPS_REPO_URL=https://u:se\\\ncret@h/x\nGITOPS_BRANCH=main",
                "GITOPS_REPO_URL=***\n***\nGITOPS_BRANCH=main",
            ),
            (
                "TOKEN=\"first\nsecond\nthird\"\nGITOPS_BRANCH=main",
                "TOKEN=***\n***\n***\nGITOPS_BRANCH=main",
            ),
        ];
        for (text, want) in table {
            assert_eq!(shown(ENV_FILE, text).trim_end(), want, "{text}");
        }
    }

    #[test]
    fn env_file_round_trips_through_our_parser() {
        let env = vec![
            (
                "GITOPS_REPO_URL".to_string(),
                "git@host:org/cfg.git".to_string(),
            ),
            ("GITOPS_BRANCH".to_string(), "prod".to_string()),
            (
                "GITOPS_ENTRYPOINT".to_string(),
                "deploy/run me.sh".to_string(),
            ),
            ("GITOPS_X".to_string(), "a \"quoted\" \\ value".to_string()),
        ];
        let text = env_file(&env);
        let parsed = crate::config::parse_env_file(&text).unwrap();
        assert_eq!(parsed, env);
    }
}

//! The env file and the `GITOPS_*` variables: parsing, loading, typos, flags over variables.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::DEFAULT_CONFIG;
use crate::exit::{fail, Exit};

/// Parse an env file as systemd's `EnvironmentFile=` does: `KEY=VALUE` lines, `#` and `;`
/// comments, optional single or double quotes, a trailing backslash continuing the line.
pub fn parse_env_file(text: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut logical = String::new();
    let mut start_line = 0;
    for (number, line) in text.lines().enumerate() {
        if logical.is_empty() {
            start_line = number + 1;
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
                continue;
            }
        }
        if let Some(stripped) = line.strip_suffix('\\') {
            logical.push_str(stripped);
            continue;
        }
        logical.push_str(line);
        let entry = std::mem::take(&mut logical);
        let (key, value) = entry
            .split_once('=')
            .ok_or_else(|| format!("line {start_line} is not KEY=VALUE"))?;
        let key = key.trim();
        let key = key.strip_prefix("export ").map(str::trim).unwrap_or(key);
        if key.is_empty()
            || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || key.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(format!(
                "line {start_line}: {key:?} is not a valid variable name"
            ));
        }
        let value = unquote(value.trim());
        // No environment variable can hold one (set_var would panic on it), and systemd
        // refuses the file too.
        if value.contains('\0') {
            return Err(format!(
                "line {start_line}: the value of {key} holds a NUL byte, which no environment variable can hold"
            ));
        }
        out.push((key.to_string(), value));
    }
    if !logical.is_empty() {
        return Err(format!(
            "line {start_line} ends with a backslash and nothing follows"
        ));
    }
    Ok(out)
}

fn unquote(value: &str) -> String {
    let bytes = value.as_bytes();
    if bytes.len() >= 2 && bytes[0] == b'\'' && bytes[bytes.len() - 1] == b'\'' {
        return value[1..value.len() - 1].to_string();
    }
    if bytes.len() >= 2 && bytes[0] == b'"' && bytes[bytes.len() - 1] == b'"' {
        let mut out = String::new();
        let mut chars = value[1..value.len() - 1].chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            } else {
                out.push(c);
            }
        }
        return out;
    }
    value.to_string()
}

/// Whether a variable is one of ours: a `GITOPS_*` setting or the `REPO_URL` alias.
fn is_ours(key: &str) -> bool {
    key.starts_with("GITOPS_") || key == "REPO_URL"
}

/// An empty value means unset, for every option alike: take empty `GITOPS_*` variables out of
/// the process environment before clap reads it. clap takes an empty variable as an empty
/// value, so `GITOPS_CHECKOUT=` would beat the default, fail a flag's own value check
/// ("a value is required"), or make `GITOPS_BRANCH=` an invalid branch.
pub fn forget_empty_variables() {
    let empty: Vec<std::ffi::OsString> = std::env::vars_os()
        .filter(|(key, value)| value.is_empty() && key.to_str().is_some_and(is_ours))
        .map(|(key, _)| key)
        .collect();
    for key in empty {
        // Single-threaded still: nothing else reads the environment while it changes.
        std::env::remove_var(key);
    }
}

/// A flag beats its variable: take the variable of every option given on the command line out
/// of the environment before clap reads it. clap reads a global option's variable at every
/// level of the command line, so an invalid `GITOPS_APPLY_TIMEOUT` in the environment or env
/// file would fail `gitops sync --apply-timeout 5min` although the flag replaces it.
pub fn forget_variables_given_as_flags(command: &clap::Command, args: &[std::ffi::OsString]) {
    let given: Vec<&str> = args
        .iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .filter_map(|a| a.to_str()?.strip_prefix("--"))
        .map(|a| a.split_once('=').map_or(a, |(name, _)| name))
        .collect();
    fn walk(command: &clap::Command, given: &[&str]) {
        for arg in command.get_arguments() {
            if let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) {
                if given.contains(&long) {
                    // Single-threaded still: nothing else reads the environment meanwhile.
                    std::env::remove_var(env);
                }
            }
        }
        for sub in command.get_subcommands() {
            walk(sub, given);
        }
    }
    walk(command, &given);
}

/// Every variable the command line reads (`GITOPS_*`), from clap's definition, so that a
/// setting added later is known here without a second list to keep up to date.
pub fn known_variables(command: &clap::Command) -> Vec<String> {
    let mut known: Vec<String> = command
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .filter_map(|env| env.to_str().map(str::to_string))
        .collect();
    for sub in command.get_subcommands() {
        known.extend(known_variables(sub));
    }
    known.sort();
    known.dedup();
    known
}

/// The variable of the option `--long`, anywhere in the command line's definition.
pub fn variable_of(command: &clap::Command, long: &str) -> Option<String> {
    command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(long))
        .and_then(|arg| arg.get_env())
        .and_then(|env| env.to_str().map(str::to_string))
        .or_else(|| {
            command
                .get_subcommands()
                .find_map(|sub| variable_of(sub, long))
        })
}

/// The known variable a mistyped one most likely meant: the nearest by edit distance (a swap
/// of two neighbours counts as one edit), if it is near enough to be a typo.
pub fn nearest_variable<'a>(key: &str, known: &'a [String]) -> Option<&'a str> {
    let (distance, nearest) = known
        .iter()
        .map(|k| (edit_distance(key, k), k.as_str()))
        .min_by_key(|(d, _)| *d)?;
    (distance <= 3).then_some(nearest)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and transpositions
/// of adjacent characters, each costing one.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The largest env file read: a few settings take a few hundred bytes.
pub const MAX_ENV_FILE: u64 = 1024 * 1024;

/// Read a regular file of at most `limit` bytes, opened without blocking so that a FIFO or a
/// device at the path is refused ("not a regular file") instead of hanging the pass, and
/// never read beyond the limit (`/dev/zero` would otherwise fill the memory).
pub fn read_regular_file(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    // `--config /dev/null` is the usual way to say "no env file".
    if std::fs::metadata(path).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_char_device() && m.rdev() == nix::libc::makedev(1, 3)
    }) {
        return Ok(Vec::new());
    }
    let file = open_regular(path)?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "too large to be an env file: more than {} KiB",
            limit / 1024
        )));
    }
    Ok(bytes)
}

/// Open a file for reading without blocking on a FIFO, and refuse anything but a regular file.
pub fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other(if meta.is_dir() {
            "a directory, not a regular file"
        } else {
            "not a regular file"
        }));
    }
    Ok(file)
}

/// The env file last read by `load_env_file` (--config, GITOPS_CONFIG or the default), for
/// advice that tells the operator where to set something.
static ENV_FILE_USED: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

pub(super) fn env_file_used() -> PathBuf {
    ENV_FILE_USED
        .lock()
        .ok()
        .and_then(|used| used.clone())
        .unwrap_or_else(|| DEFAULT_CONFIG.into())
}

/// The env file's text: UTF-8, with a byte-order mark (which some editors write) skipped.
fn env_file_text(bytes: &[u8]) -> std::result::Result<&str, std::str::Utf8Error> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes)
}

/// Load the env file into the process environment, below variables already set, so that a
/// manual run sees what the timer's run sees (systemd exports the same file to the service).
/// A missing default file is fine; a missing file that was asked for is an error. An empty
/// value means unset, as it does in the process environment (`forget_empty_variables`). A
/// `GITOPS_*` key that is not in `known` gets a warning naming the nearest known one.
pub fn load_env_file(explicit: Option<&Path>, known: &[String]) -> Result<()> {
    let path = explicit.unwrap_or(Path::new(DEFAULT_CONFIG));
    if let Ok(mut used) = ENV_FILE_USED.lock() {
        *used = Some(path.to_path_buf());
    }
    let bytes = match read_regular_file(path, MAX_ENV_FILE) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(fail(
                Exit::Usage,
                format!(
                    "cannot read the config file {} ({e}): create it or point --config at an existing file",
                    path.display()
                ),
            ))
        }
        Err(e) => {
            return Err(fail(
                Exit::Usage,
                format!(
                    "cannot read the config file {} ({e}): point --config at an env file of KEY=VALUE lines",
                    path.display()
                ),
            ))
        }
    };
    let text = env_file_text(&bytes).map_err(|e| {
        fail(
            Exit::Usage,
            format!(
                "the config file {} is not UTF-8 text (invalid byte at offset {}): save it as UTF-8",
                path.display(),
                e.valid_up_to()
            ),
        )
    })?;
    let pairs = parse_env_file(text).map_err(|why| {
        fail(
            Exit::Usage,
            format!(
                "the config file {} is malformed: {why}; fix it (KEY=VALUE per line)",
                path.display()
            ),
        )
    })?;
    for (key, _) in &pairs {
        if key.starts_with("GITOPS_") && !known.contains(key) {
            let hint = match nearest_variable(key, known) {
                Some(near) => format!("did you mean {near}?"),
                None => "it is ignored".to_string(),
            };
            say!(
                "gitops: warning: the config file {} sets {key}, which is not a gitops setting: {hint}",
                path.display()
            );
        }
    }
    // Either spelling of the URL in the process environment beats both spellings in the file.
    let set = |key: &str| std::env::var_os(key).is_some_and(|v| !v.is_empty());
    let url_in_process = set("GITOPS_REPO_URL") || set("REPO_URL");
    for (key, value) in pairs {
        let is_url = key == "GITOPS_REPO_URL" || key == "REPO_URL";
        let empty_and_ours = value.is_empty() && is_ours(&key);
        let beaten = set(&key) || (is_url && url_in_process);
        if !beaten && !empty_and_ours {
            std::env::set_var(&key, value);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_follows_environmentfile_syntax() {
        let text = "# comment\n; other comment\n\nGITOPS_REPO_URL=git://h/r\n  GITOPS_BRANCH = prod \nQ1='a b'\nQ2=\"x \\\"y\\\"\"\nLONG=one \\\ntwo\nexport E=1\nEMPTY=\n";
        let parsed = parse_env_file(text).unwrap();
        let expect = [
            ("GITOPS_REPO_URL", "git://h/r"),
            ("GITOPS_BRANCH", "prod"),
            ("Q1", "a b"),
            ("Q2", "x \"y\""),
            ("LONG", "one two"),
            ("E", "1"),
            ("EMPTY", ""),
        ];
        let got: Vec<(&str, &str)> = parsed
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, expect);
        assert!(parse_env_file("just words\n")
            .unwrap_err()
            .contains("line 1"));
        assert!(parse_env_file("A=1\n9X=2\n")
            .unwrap_err()
            .contains("line 2"));
        assert!(parse_env_file("A=1 \\").is_err());
        assert_eq!(
            parse_env_file("A=1\nB=x\0y\n").unwrap_err(),
            "line 2: the value of B holds a NUL byte, which no environment variable can hold"
        );
        assert!(parse_env_file("A\0=1\n")
            .unwrap_err()
            .starts_with("line 1: \"A\\0\" is not a valid variable name"));
    }

    #[test]
    fn a_mistyped_variable_is_matched_to_the_nearest_known_one() {
        let known: Vec<String> = [
            "GITOPS_BRANCH",
            "GITOPS_REPO_URL",
            "GITOPS_CHECKOUT",
            "GITOPS_APPLY",
            "GITOPS_APPLY_TIMEOUT",
            "GITOPS_SSH_KEY",
        ]
        .map(String::from)
        .to_vec();
        let table = [
            ("GITOPS_BRANHC", Some("GITOPS_BRANCH")),
            ("GITOPS_BRANCHES", Some("GITOPS_BRANCH")),
            ("GITOPS_REPOURL", Some("GITOPS_REPO_URL")),
            ("GITOPS_REPO_ULR", Some("GITOPS_REPO_URL")),
            ("GITOPS_APLY", Some("GITOPS_APPLY")),
            ("GITOPS_APPLY_TIMOUT", Some("GITOPS_APPLY_TIMEOUT")),
            ("GITOPS_SSHKEY", Some("GITOPS_SSH_KEY")),
            ("GITOPS_SOMETHING_ELSE", None),
            ("GITOPS_Ä", None),
        ];
        for (key, nearest) in table {
            assert_eq!(nearest_variable(key, &known), nearest, "{key}");
        }
        assert_eq!(nearest_variable("GITOPS_X", &[]), None);
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn env_file_text_skips_a_bom_and_refuses_other_encodings() {
        assert_eq!(env_file_text(b"\xEF\xBB\xBFA=1\n"), Ok("A=1\n"));
        assert_eq!(env_file_text(b"A=1\n"), Ok("A=1\n"));
        let latin1 = b"GITOPS_BRANCH=caf\xE9\n";
        assert_eq!(env_file_text(latin1).unwrap_err().valid_up_to(), 17);
    }
}

//! The allowed_signers format of ssh-keygen(1) ("ALLOWED SIGNERS"), the file git's
//! `gpg.ssh.allowedSignersFile` names: `principals [options] keytype base64 [comment]`.
//!
//! Parsing is pure and refuses, at start-up, every line this verifier could not honour later
//! (certificate authorities, DSA, P-521, RSA sizes the `ssh-key` crate refuses), so a file that
//! parses is a file whose every key can verify a commit.

use jiff::{civil::DateTime, tz::TimeZone, Timestamp};
use ssh_key::{public::KeyData, PublicKey};

/// The lines of an allowed_signers file, in file order.
#[derive(Debug, Clone)]
pub struct AllowedSigners {
    lines: Vec<Line>,
}

/// One key line: who it names, the namespaces it allows and when it is valid.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    /// The principals field as written (without its quotes): what the signer is reported as.
    pub(crate) principals: String,
    /// The `namespaces=` pattern list; `None` allows every namespace, as in ssh-keygen.
    namespaces: Option<String>,
    pub(crate) valid_after: Option<Bound>,
    pub(crate) valid_before: Option<Bound>,
    pub(crate) key: KeyData,
}

/// A `valid-after`/`valid-before` instant, kept with the form an operator reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bound {
    /// Seconds since the Unix epoch.
    pub(crate) at: i64,
    /// The instant in UTC, `2024-01-01 00:00:00 UTC`.
    pub(crate) shown: String,
}

impl AllowedSigners {
    /// Parses the text of an allowed_signers file. Err is one line naming the line number, what
    /// is wrong and the fix.
    pub fn parse(text: &str) -> Result<AllowedSigners, String> {
        parse_in(text, &TimeZone::system())
    }

    /// The number of key lines.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether the file lists no key at all.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The lines listing exactly this key (key data compared, comments ignored).
    pub(crate) fn lines_for<'a>(&'a self, key: &'a KeyData) -> impl Iterator<Item = &'a Line> {
        self.lines.iter().filter(move |line| &line.key == key)
    }
}

impl Line {
    /// Whether the line's `namespaces=` list lets `namespace` through, with ssh's pattern-list
    /// rules: `*`/`?` wildcards, and a matching `!pattern` denies whatever else matches.
    pub(crate) fn allows_namespace(&self, namespace: &str) -> bool {
        let Some(list) = &self.namespaces else {
            return true;
        };
        let mut allowed = false;
        for pattern in list.split(',') {
            let (negated, pattern) = match pattern.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, pattern),
            };
            if wildcard(pattern.as_bytes(), namespace.as_bytes()) {
                if negated {
                    return false;
                }
                allowed = true;
            }
        }
        allowed
    }
}

/// Key types this verifier can check. Everything else is refused with a message of its own.
const SUPPORTED: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// Key types recognised only to refuse them clearly (a token that is none of these is read as
/// options).
const REFUSED: &[&str] = &["ssh-dss", "ecdsa-sha2-nistp521"];

fn is_key_type(token: &str) -> bool {
    SUPPORTED.contains(&token)
        || REFUSED.contains(&token)
        || token.ends_with("-cert-v01@openssh.com")
}

pub(crate) fn parse_in(text: &str, zone: &TimeZone) -> Result<AllowedSigners, String> {
    let mut lines = Vec::new();
    // A byte-order mark, which some editors write, would otherwise become part of the first
    // principal (or turn a first comment line into a key line).
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let line = raw.trim_start_matches([' ', '\t', '\r']);
        if line.is_empty() || line.starts_with('#') || line.trim_end().is_empty() {
            continue;
        }
        lines.push(parse_line(line, zone).map_err(|what| format!("line {number}: {what}"))?);
    }
    Ok(AllowedSigners { lines })
}

fn parse_line(line: &str, zone: &TimeZone) -> Result<Line, String> {
    let (principals, rest) = principals(line)?;
    if !line.starts_with('"') {
        // A line whose principals were forgotten reads its options as the principals and
        // applies none of them: `namespaces="file" KEY` would then allow "git" too.
        if is_key_type(&principals) {
            return Err(format!(
                "the line starts with the key type {principals}; put the signer's principal first (alice@example.com {principals} …)"
            ));
        }
        let name = principals.split([',', '=']).next().unwrap_or_default();
        if OPTIONS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "the line starts with the option {name}, so it would be read as the principals and not applied; put the signer's principal first (alice@example.com {name}=… keytype base64)"
            ));
        }
    }
    let rest = skip_blank(rest);
    let (first, _) = token(rest);
    if first.is_empty() {
        return Err(missing_key());
    }
    let mut options = Options::default();
    let rest = if is_key_type(first) {
        rest
    } else {
        let after = parse_options(rest, zone, &mut options)?;
        skip_blank(after)
    };
    let (key_type, rest) = token(rest);
    if key_type.is_empty() {
        return Err(missing_key());
    }
    let (base64, _comment) = token(skip_blank(rest));
    let key = parse_key(key_type, base64)?;
    if let (Some(after), Some(before)) = (&options.valid_after, &options.valid_before) {
        if before.at <= after.at {
            return Err(format!(
                "valid-before ({}) is not later than valid-after ({}); correct one of them",
                before.shown, after.shown
            ));
        }
    }
    Ok(Line {
        principals,
        namespaces: options.namespaces,
        valid_after: options.valid_after,
        valid_before: options.valid_before,
        key,
    })
}

/// The option names of an allowed_signers line, lower case.
const OPTIONS: &[&str] = &[
    "namespaces",
    "valid-after",
    "valid-before",
    "cert-authority",
];

fn missing_key() -> String {
    "no key after the principals; a line reads `principals [options] keytype base64 [comment]`"
        .to_string()
}

/// The principals field: a quoted string or a run of non-blank characters.
fn principals(line: &str) -> Result<(String, &str), String> {
    let (principals, rest) = if let Some(quoted) = line.strip_prefix('"') {
        let Some(end) = quoted.find('"') else {
            return Err("the principals' opening quote is never closed; close it".to_string());
        };
        let rest = &quoted[end + 1..];
        if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
            return Err(
                "text right after the principals' closing quote; put a space after it".to_string(),
            );
        }
        (&quoted[..end], rest)
    } else {
        token(line)
    };
    if principals.is_empty() {
        return Err("empty principals; name the signer first (e.g. alice@example.com)".to_string());
    }
    Ok((principals.to_string(), rest))
}

fn skip_blank(text: &str) -> &str {
    text.trim_start_matches([' ', '\t'])
}

/// The run of characters up to the next blank, and the rest.
fn token(text: &str) -> (&str, &str) {
    let end = text.find([' ', '\t', '\r']).unwrap_or(text.len());
    (&text[..end], &text[end..])
}

#[derive(Default)]
struct Options {
    namespaces: Option<String>,
    valid_after: Option<Bound>,
    valid_before: Option<Bound>,
}

/// Reads `name[=value],...` up to the first blank outside quotes; returns what follows.
fn parse_options<'a>(
    mut text: &'a str,
    zone: &TimeZone,
    options: &mut Options,
) -> Result<&'a str, String> {
    loop {
        let name_end = text.find(['=', ',', ' ', '\t', '\r']).unwrap_or(text.len());
        let name = &text[..name_end];
        let lower = name.to_ascii_lowercase();
        text = &text[name_end..];
        let value = match text.strip_prefix('=') {
            Some(after) => {
                let (value, after) = option_value(after, name)?;
                text = after;
                Some(value)
            }
            None => None,
        };
        match lower.as_str() {
            "cert-authority" => {
                return Err("cert-authority lines are not supported yet; list the signers' own keys".to_string())
            }
            "namespaces" | "valid-after" | "valid-before" => {
                let Some(value) = value else {
                    return Err(format!("option {name} needs a value; write {lower}=\"...\""));
                };
                match lower.as_str() {
                    "namespaces" => {
                        if options.namespaces.is_some() {
                            return Err("namespaces is given twice; merge them into one list".to_string());
                        }
                        if value.is_empty() {
                            return Err("namespaces is empty; write namespaces=\"git\"".to_string());
                        }
                        options.namespaces = Some(value);
                    }
                    "valid-after" => {
                        if options.valid_after.is_some() {
                            return Err("valid-after is given twice; keep one".to_string());
                        }
                        options.valid_after = Some(parse_time(&value, zone, "valid-after")?);
                    }
                    _ => {
                        if options.valid_before.is_some() {
                            return Err("valid-before is given twice; keep one".to_string());
                        }
                        options.valid_before = Some(parse_time(&value, zone, "valid-before")?);
                    }
                }
            }
            "" => return Err("an empty option (two commas, or a comma at the end); remove it".to_string()),
            _ => {
                return Err(format!(
                    "unknown option {name:?}; the options are namespaces=, valid-after= and valid-before="
                ))
            }
        }
        match text.chars().next() {
            None | Some(' ' | '\t' | '\r') => return Ok(text),
            Some(',') => text = &text[1..],
            Some(other) => {
                return Err(format!(
                    "unexpected {other:?} after option {name}; separate options with commas and no spaces"
                ))
            }
        }
    }
}

/// An option's value: `"..."` (with `\"` for a quote, as ssh's opt_dequote) or a bare run up to
/// a comma or blank.
fn option_value<'a>(text: &'a str, name: &str) -> Result<(String, &'a str), String> {
    let Some(quoted) = text.strip_prefix('"') else {
        let end = text.find([',', ' ', '\t', '\r']).unwrap_or(text.len());
        return Ok((text[..end].to_string(), &text[end..]));
    };
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &quoted[at + 1..])),
            '\\' if quoted[at + 1..].starts_with('"') => {
                value.push('"');
                chars.next();
            }
            c => value.push(c),
        }
    }
    Err(format!(
        "the value of {name} opens a quote that is never closed; close it"
    ))
}

/// `YYYYMMDD[Z]` or `YYYYMMDDHHMM[SS][Z]`; local time unless it ends in Z (ssh-keygen(1)).
fn parse_time(value: &str, zone: &TimeZone, option: &str) -> Result<Bound, String> {
    let bad = || {
        format!(
            "{option}={value:?} is not a time; write YYYYMMDD or YYYYMMDDHHMM[SS], with a final Z for UTC"
        )
    };
    let (digits, utc) = match value.strip_suffix(['Z', 'z']) {
        Some(digits) => (digits, true),
        None => (value, false),
    };
    if !matches!(digits.len(), 8 | 12 | 14) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let field = |from: usize, to: usize| {
        digits
            .get(from..to)
            .and_then(|s| s.parse::<i16>().ok())
            .unwrap_or(0)
    };
    let year = digits
        .get(0..4)
        .and_then(|s| s.parse::<i16>().ok())
        .ok_or_else(bad)?;
    let (hour, minute, second) = match digits.len() {
        8 => (0, 0, 0),
        12 => (field(8, 10), field(10, 12), 0),
        _ => (field(8, 10), field(10, 12), field(12, 14)),
    };
    let civil = DateTime::new(
        year,
        field(4, 6) as i8,
        field(6, 8) as i8,
        hour as i8,
        minute as i8,
        second as i8,
        0,
    )
    .map_err(|_| bad())?;
    let instant = if utc {
        civil
            .to_zoned(TimeZone::UTC)
            .map_err(|_| bad())?
            .timestamp()
    } else {
        // A local time that a daylight saving change skips or repeats is read as mktime(3)
        // would: the later offset for a gap, the earlier for a fold.
        zone.to_ambiguous_zoned(civil)
            .compatible()
            .map_err(|_| bad())?
            .timestamp()
    };
    Ok(Bound {
        at: instant.as_second(),
        shown: show(instant),
    })
}

fn show(instant: Timestamp) -> String {
    instant.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn parse_key(key_type: &str, base64: &str) -> Result<KeyData, String> {
    if key_type == "ssh-dss" {
        return Err("DSA keys are not supported (OpenSSH has dropped them too); list the signer's ed25519, ECDSA or RSA key".to_string());
    }
    if key_type == "ecdsa-sha2-nistp521" {
        return Err("ECDSA P-521 keys are not supported; list the signer's ed25519, ECDSA P-256/P-384 or RSA key".to_string());
    }
    if key_type.ends_with("-cert-v01@openssh.com") {
        return Err("SSH certificates are not supported; list the signer's plain public key (the .pub file)".to_string());
    }
    if !SUPPORTED.contains(&key_type) {
        return Err(format!(
            "unknown key type {key_type:?}; the line must read `principals [options] keytype base64 [comment]` with keytype one of {}",
            SUPPORTED.join(", ")
        ));
    }
    if base64.is_empty() {
        return Err(format!(
            "the {key_type} key has no base64 data; paste the whole .pub line"
        ));
    }
    let key = PublicKey::from_openssh(&format!("{key_type} {base64}")).map_err(|e| {
        format!("the {key_type} key does not decode ({e}); paste the .pub line unchanged")
    })?;
    if key.algorithm().as_str() != key_type {
        return Err(format!(
            "the key data is a {} key, not {key_type}; paste the .pub line unchanged",
            key.algorithm()
        ));
    }
    if let KeyData::Rsa(rsa) = key.key_data() {
        let bits = rsa.n.as_positive_bytes().map_or(0, |n| {
            n.first().map_or(0, |top| {
                (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize)
            })
        });
        if !(2048..=4096).contains(&bits) {
            return Err(format!(
                "an RSA key of {bits} bits; only RSA keys of 2048 to 4096 bits can be verified: use an ed25519 key (ssh-keygen -t ed25519) or RSA of 3072 bits"
            ));
        }
    }
    Ok(key.key_data().clone())
}

/// ssh's match_pattern: `*` any run, `?` one character; iterative, no recursion.
fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::tz;
    use proptest::prelude::*;

    const KED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHvwARvjGb+qzamBI3doPf5rc2+oXcch8qqSkM2YixK6";
    const KECDSAB256: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBL2rQczOOGCBtJACt+8OQuJi8bXJ6U/8gO3rSymwim73hxJWslKymCo2S7shW1ZKREZEgpjrHgsnVkxH77t9Mfc=";
    const KECDSAB384: &str = "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBI5cC+NUTbq0XngCjo2oYHpH8LNOx5wYHClrplj96U4WwUoCP/hIJgx23GJJR1HvGejSHIj1hByqfXEuuQl+CJe0wXP6+lqcrs14Oh0pOX3YteGEGUWdizYup3hL1WMgiw==";
    const KECDSAB521: &str = "ecdsa-sha2-nistp521 AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBAAh+tQfrPMGn+MDs6s+Qc4K12E9q1DFSGdq0ywpbklaTgi0cs2N0uYxmK9cqOqgWavzC9QZ0SomE7Y1EZIXN+QEMAD+3Ml4eI091a2DLYrKJY1TYPkzVq0jICGJ/N05wQsac+mFZUX/sH9RKMUTqdy/5aGonaOtjVifIxGU0lrGLZV0RA==";
    const KRSAB1024: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCRgxHxasdlukbTigb/i9khzWWa9lIiRUG2jZXWLhCSBjQj3B7cY9Nk4EpSb62gAmw4hx4Ah81A047Txnsjtncrtyo69sCLhxzLNlyuKnKNV3BSvwtrHWLsElgPGkV/CGglkzmB9hPvhXqLjZPPDG5Qf+iI3ubRJmSr4cozVpDtvQ==";
    const KRSAB3072: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQCONHM18JfQmCPMLGPuD66DdFXDpcCzp6+8suUJeeGPlNf6nN3L2TF/4FKNd7eWsMXo4S2Ppt1bs8+hDcKcN2RG/p6p4GU8e9acSaiZQ4mbS8a2NdTYAdVhjYF2GXTacrAs2TS43MKjqVcI6wUSkwyiQHr7gAbZerodgbUWm/kAl/7CviVbHSuYz8n0nkP/FiA9L/bsUNd8FYmmKxMOnkdKFc75IVSfHbt7xbvGkuXS8bcCl6EbaMlQUmSE/2DWcxTYkjSZJKF2Giw0lKmHyAWytw2yF4rECguflvGn6glm3G8zgqIXEdRPZ3pdT3/yu3+OXRI0l8etW4KMQKIhSazxmB8JFoB73poGfPEKH80i9ECDgPtmQ4f7h6mEtRYJfw621O8cFkJmOWpQfVeOG7EY6u/nMped0EDKtgOBCGVHez2iifcUJqdFB6x3b5aPTKA+3Udtq9Dfo/hgTDogWM7ptgpZ4nIujpmTWlABPFBgDAhP2k/9uBVOnrKcWt+IJAM=";
    const KDSA: &str = "ssh-dss AAAAB3NzaC1kc3MAAACBAKEG+KpHdHTE6CmT5MUh5ha2+whg/VTp4+/fNP1PmcV0IaJJpuNkMXrCEZpmR6NGDNLqIFUCRozdkaNkw1yxoJv0onwmWJrq6z1LYV5iQkmWWLFIPOcQdfSHRspEe4JDyRiTcYB8heclH6G4Kv1+7hpdxC1VGrn/THLaeymfDHcxAAAAFQCevALxpx1jIF2hpwxRQx+4wycEBwAAAIAgFvpBErTZQT1j9b+kV3PzpuGqJhiDzcX+kwDjLRJ/71g5Mq3iWFJpHbWk+SeIygCJUWMMpPnTQVcOKdCDimRZidk4G6QyW3JMaUNyUC0zhjbD5kd4qBWKFKuU90oh1WxUQLMm5Iyp1d/FXf3t9T807y91oInnaX+fJP+TW5/+SgAAAIEAgO6xVOkQeKzX1dz/LV4Z+gOT/xGwqoAmk3CxjCjGKRw9dPrvf4p4upFCGz/Ty4LhwadFjVrnJLkCXoXs1lF9vdLDTDPwsO01RrxPBMpRvfKyu6lLdy9YBgmZg0qFMWq/6u1UnuDJkJSEKZ8PdIunoPwcFnSktNePV1aaEU+rSoY=";

    fn utc(text: &str) -> Result<AllowedSigners, String> {
        parse_in(text, &TimeZone::UTC)
    }

    fn one(text: &str) -> Line {
        let parsed = utc(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"));
        assert_eq!(parsed.len(), 1, "{text:?}");
        parsed.lines[0].clone()
    }

    fn at(text: &str) -> i64 {
        text.parse::<Timestamp>()
            .expect("test timestamp")
            .as_second()
    }

    #[test]
    fn good_lines() {
        let line = one(&format!("alice@example.com {KED25519} alice's laptop"));
        assert_eq!(line.principals, "alice@example.com");
        assert!(line.allows_namespace("git") && line.allows_namespace("file"));
        assert_eq!(
            (line.valid_after.clone(), line.valid_before.clone()),
            (None, None)
        );

        let line = one(&format!(
            "  \"alice@example.com,bob@example.com\" namespaces=\"git\" {KECDSAB256}"
        ));
        assert_eq!(line.principals, "alice@example.com,bob@example.com");
        assert!(line.allows_namespace("git") && !line.allows_namespace("file"));

        let line = one(&format!("a NAMESPACES=\"file,git\",Valid-After=20240101,valid-before=\"20250102030405Z\" {KECDSAB384}"));
        assert!(line.allows_namespace("git"));
        let after = line.valid_after.clone().expect("valid-after");
        assert_eq!(
            (after.at, after.shown.as_str()),
            (at("2024-01-01T00:00:00Z"), "2024-01-01 00:00:00 UTC")
        );
        assert_eq!(
            line.valid_before.map(|b| b.at),
            Some(at("2025-01-02T03:04:05Z"))
        );

        let line = one(&format!(
            "a namespaces=\"g*,!gi?\",valid-after=202401011230z {KRSAB3072} c"
        ));
        assert!(
            line.allows_namespace("gx")
                && !line.allows_namespace("git")
                && !line.allows_namespace("file")
        );
        assert_eq!(
            line.valid_after.map(|b| b.at),
            Some(at("2024-01-01T12:30:00Z"))
        );

        let line = one(&format!("a namespaces=\"*\" {KED25519}"));
        assert!(line.allows_namespace("git"));
        let line = one(&format!("a namespaces=git {KED25519}"));
        assert!(line.allows_namespace("git") && !line.allows_namespace("gitx"));

        let text = format!("# team\n\n   \t\n# {KED25519}\nalice {KED25519}\r\nbob {KECDSAB256}\n");
        let parsed = utc(&text).expect("parses");
        assert_eq!(parsed.len(), 2);
        assert!(!parsed.is_empty());
        assert!(utc("# nothing\n").expect("parses").is_empty());
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_principal() {
        let line = one(&format!("\u{feff}alice {KED25519}"));
        assert_eq!(line.principals, "alice");
        let parsed = utc(&format!("\u{feff}# team\r\nbob {KED25519}\r\n")).expect("parses");
        assert_eq!(parsed.lines[0].principals, "bob");
        // A quoted principal is what it says, even when it reads like an option.
        assert_eq!(
            one(&format!("\"namespaces=x\" {KED25519}")).principals,
            "namespaces=x"
        );
    }

    #[test]
    fn local_time_unless_z() {
        let zone = TimeZone::fixed(tz::offset(2));
        let parsed = parse_in(
            &format!("a valid-before=20240101,valid-after=\"199912312300\" {KED25519}"),
            &zone,
        )
        .expect("parses");
        let line = &parsed.lines[0];
        assert_eq!(
            line.valid_before.as_ref().map(|b| b.at),
            Some(at("2023-12-31T22:00:00Z"))
        );
        assert_eq!(
            line.valid_before.as_ref().map(|b| b.shown.as_str()),
            Some("2023-12-31 22:00:00 UTC")
        );
        assert_eq!(
            line.valid_after.as_ref().map(|b| b.at),
            Some(at("1999-12-31T21:00:00Z"))
        );
        let parsed =
            parse_in(&format!("a valid-before=20240101Z {KED25519}"), &zone).expect("parses");
        assert_eq!(
            parsed.lines[0].valid_before.as_ref().map(|b| b.at),
            Some(at("2024-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn errors_name_the_line_and_the_fix() {
        let cases: Vec<(String, &str)> = vec![
            (
                format!("a cert-authority {KED25519}"),
                "line 1: cert-authority lines are not supported yet; list the signers' own keys",
            ),
            (format!("a {KDSA}"), "line 1: DSA keys are not supported"),
            (
                format!("a {KECDSAB521}"),
                "line 1: ECDSA P-521 keys are not supported",
            ),
            (
                format!("a {KRSAB1024}"),
                "line 1: an RSA key of 1024 bits; only RSA keys of 2048 to 4096 bits",
            ),
            (
                format!("a restrict {KED25519}"),
                "line 1: unknown option \"restrict\"",
            ),
            (
                format!("# c\n\na valid-before=2024011 {KED25519}"),
                "line 3: valid-before=\"2024011\" is not a time",
            ),
            (
                format!("a valid-after=20241301 {KED25519}"),
                "line 1: valid-after=\"20241301\" is not a time",
            ),
            (
                format!("a valid-after=2024010112345X {KED25519}"),
                "line 1: valid-after=\"2024010112345X\" is not a time",
            ),
            (
                format!("a valid-after=20250101,valid-before=20240101 {KED25519}"),
                "line 1: valid-before (2024-01-01 00:00:00 UTC) is not later than valid-after",
            ),
            (
                format!("a namespaces=\"git\",namespaces=\"file\" {KED25519}"),
                "line 1: namespaces is given twice",
            ),
            (
                format!("a valid-after=20240101,valid-after=20240101 {KED25519}"),
                "line 1: valid-after is given twice",
            ),
            (
                format!("a valid-before=20240101,valid-before=20240101 {KED25519}"),
                "line 1: valid-before is given twice",
            ),
            (
                format!("a namespaces=\"\" {KED25519}"),
                "line 1: namespaces is empty",
            ),
            (
                format!("a namespaces {KED25519}"),
                "line 1: option namespaces needs a value",
            ),
            (
                format!("a namespaces=\"git {KED25519}"),
                "line 1: the value of namespaces opens a quote that is never closed",
            ),
            (
                format!("a namespaces=\"git\", {KED25519}"),
                "line 1: an empty option",
            ),
            (
                format!("a namespaces=\"git\"x {KED25519}"),
                "line 1: unexpected 'x' after option namespaces",
            ),
            (
                format!("\"a {KED25519}"),
                "line 1: the principals' opening quote is never closed",
            ),
            (
                format!("\"a\"b {KED25519}"),
                "line 1: text right after the principals' closing quote",
            ),
            (format!("\"\" {KED25519}"), "line 1: empty principals"),
            ("alice".to_string(), "line 1: no key after the principals"),
            (
                "alice namespaces=\"git\"".to_string(),
                "line 1: no key after the principals",
            ),
            (
                "alice ssh-ed25519".to_string(),
                "line 1: the ssh-ed25519 key has no base64 data",
            ),
            (
                "alice ssh-ed25519 AAAA!!".to_string(),
                "line 1: the ssh-ed25519 key does not decode",
            ),
            (
                format!(
                    "alice ecdsa-sha2-nistp384 {}",
                    &KED25519["ssh-ed25519 ".len()..]
                ),
                "line 1: the ecdsa-sha2-nistp384 key does not decode",
            ),
            (
                "alice namespaces=\"git\" ssh-foo AAAA".to_string(),
                "line 1: unknown key type \"ssh-foo\"",
            ),
            (
                format!(
                    "alice ssh-ed25519-cert-v01@openssh.com {}",
                    &KED25519["ssh-ed25519 ".len()..]
                ),
                "line 1: SSH certificates are not supported",
            ),
            (format!("ok {KED25519}\nbad {KDSA}"), "line 2: DSA keys"),
            // No principals: the options would be read as them, and restrict nothing.
            (
                format!("namespaces=\"file\" {KED25519}"),
                "line 1: the line starts with the option namespaces",
            ),
            (
                format!("Valid-Before=20200101,namespaces=\"git\" {KED25519}"),
                "line 1: the line starts with the option Valid-Before",
            ),
            (
                format!("cert-authority {KED25519}"),
                "line 1: the line starts with the option cert-authority",
            ),
            (
                format!("{KED25519} alice@laptop"),
                "line 1: the line starts with the key type ssh-ed25519",
            ),
        ];
        for (text, expected) in cases {
            match utc(&text) {
                Ok(_) => panic!("{text:?} should be refused"),
                Err(e) => assert!(
                    e.starts_with(expected),
                    "{text:?}:\n  got  {e}\n  want {expected}…"
                ),
            }
        }
    }

    #[test]
    fn options_are_case_insensitive_and_cert_authority_is_refused_in_any_case() {
        assert!(utc(&format!("a Cert-Authority {KED25519}"))
            .is_err_and(|e| e.contains("cert-authority")));
        assert!(one(&format!("a NameSpaces=\"git\" {KED25519}")).allows_namespace("git"));
    }

    #[test]
    fn wildcards() {
        for (pattern, text, want) in [
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("g?t", "git", true),
            ("g*t", "gt", true),
            ("g*t", "gitx", false),
            ("*a*b", "xaxxab", true),
            ("a**", "a", true),
        ] {
            assert_eq!(
                wildcard(pattern.as_bytes(), text.as_bytes()),
                want,
                "{pattern:?} {text:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in "(\\PC|[ \t\n\",=!*Z0-9]){0,200}") {
            let _ = utc(&text);
        }

        #[test]
        fn parse_never_panics_near_valid_lines(
            principals in "[\"a-z@,. ]{0,12}",
            options in "[a-zA-Z\"=,0-9 Z-]{0,40}",
            key in prop::sample::select(vec![KED25519, KECDSAB256, KRSAB3072, KDSA, "ssh-rsa AAAA", ""]),
        ) {
            let _ = utc(&format!("{principals} {options} {key}"));
        }
    }
}

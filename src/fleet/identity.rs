//! This machine's name and groups, as the repository's `hosts/<host>/` and `groups/<group>/`
//! directories know them.

/// The options that say who this machine is.
#[derive(clap::Args, Debug, Clone)]
pub struct IdentityOptions {
    /// This machine's name in the repository, for hosts/{host}/ [default: the short hostname]
    #[arg(long, env = "GITOPS_HOST", value_name = "NAME")]
    pub host: Option<String>,

    /// The groups this machine is in, in order of precedence, for groups/{group}/ (web,eu)
    #[arg(
        long = "group",
        env = "GITOPS_GROUPS",
        value_name = "NAMES",
        value_delimiter = ','
    )]
    pub groups: Vec<String>,
}

/// Who this machine is. `host` is None only when no --host was given and the hostname cannot
/// name a directory: then only entry points without {host} apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub host: Option<String>,
    pub groups: Vec<String>,
}

impl Identity {
    /// GITOPS_GROUPS as the entry point gets it: the groups joined by commas.
    pub fn groups_text(&self) -> String {
        self.groups.join(",")
    }
}

/// The longest host or group name: a directory name, and a DNS label is at most 63.
const MAX_NAME: usize = 64;

/// Whether `name` can be one directory of the repository: letters, digits, `.`, `_` and `-`,
/// not starting with a dot (no `.`, `..` or hidden directory), at most `MAX_NAME` bytes.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The identity from the options, `hostname` asked only when no --host was given. Err: the
/// sentence for the operator (a usage error).
pub fn resolve(
    options: &IdentityOptions,
    hostname: impl FnOnce() -> Option<String>,
) -> Result<Identity, String> {
    let host = match options.host.as_deref().map(str::trim) {
        Some(host) if valid_name(host) => Some(host.to_string()),
        Some(host) => {
            return Err(format!(
                "--host {host:?} cannot name a directory of the repository (hosts/<host>/): use letters, digits, '.', '_' and '-', not starting with '.'"
            ))
        }
        // A machine's hostname is its name in the repository, as `hostname -s` prints it.
        None => hostname()
            .and_then(|h| h.split('.').next().map(str::to_string))
            .filter(|h| valid_name(h)),
    };
    let mut groups: Vec<String> = Vec::new();
    for group in options
        .groups
        .iter()
        .map(|g| g.trim())
        .filter(|g| !g.is_empty())
    {
        if !valid_name(group) {
            return Err(format!(
                "--group {group:?} cannot name a directory of the repository (groups/<group>/): use letters, digits, '.', '_' and '-', not starting with '.'"
            ));
        }
        if !groups.iter().any(|g| g == group) {
            groups.push(group.to_string());
        }
    }
    Ok(Identity { host, groups })
}

/// The kernel's hostname.
pub fn hostname() -> Option<String> {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(host: Option<&str>, groups: &[&str]) -> IdentityOptions {
        IdentityOptions {
            host: host.map(String::from),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn names_are_one_safe_directory() {
        #[rustfmt::skip]
        let table = [
            ("web-1", true), ("db_2.eu", true), ("A9", true),
            ("", false), (".", false), ("..", false), (".hidden", false),
            ("a/b", false), ("a b", false), ("wéb", false), ("a\n", false),
        ];
        for (name, want) in table {
            assert_eq!(valid_name(name), want, "{name:?}");
        }
        assert!(valid_name(&"a".repeat(64)) && !valid_name(&"a".repeat(65)));
    }

    #[test]
    fn the_identity_comes_from_the_options_else_the_short_hostname() {
        let host = |h: &str| Some(h.to_string());
        type Row<'a> = (
            Option<&'a str>,
            &'a [&'a str],
            Option<&'a str>,
            Result<Identity, &'a str>,
        );
        #[rustfmt::skip]
        let table: &[Row] = &[
            // --host       --group           hostname              identity
            (None,          &[],              Some("web-1.example.com"), Ok(Identity { host: host("web-1"), groups: vec![] })),
            (Some("db-1"),  &["db", "eu"],    Some("ignored"),      Ok(Identity { host: host("db-1"), groups: vec!["db".into(), "eu".into()] })),
            (None,          &["web", " web"], None,                 Ok(Identity { host: None, groups: vec!["web".into()] })),
            (None,          &[],              Some(""),             Ok(Identity { host: None, groups: vec![] })),
            (None,          &["", "eu"],      Some("a b"),          Ok(Identity { host: None, groups: vec!["eu".into()] })),
            (Some("../x"),  &[],              None,                 Err("--host \"../x\"")),
            (None,          &["we/b"],        None,                 Err("--group \"we/b\"")),
        ];
        for (h, groups, hostname, want) in table {
            let got = resolve(&options(*h, groups), || hostname.map(String::from));
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(&got, want, "{h:?} {groups:?}"),
                (Err(got), Err(start)) => assert!(got.starts_with(start), "{got}"),
                (got, want) => panic!("{h:?} {groups:?}: {got:?}, wanted {want:?}"),
            }
        }
    }
}

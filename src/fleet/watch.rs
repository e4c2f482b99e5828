//! Which commits concern this machine: those that change a path it watches (`--watch`), its
//! entry point or `.gitops/`. A commit that changes none of them runs nothing here.

use super::identity::Identity;

/// gitops's own files in the repository (health check, reboot request, rollout): every machine
/// reads them, so a change to them concerns every machine.
pub const GITOPS_DIR: &str = ".gitops/";

/// The options that scope a machine to its part of the repository.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct WatchOptions {
    /// Paths of the repository this machine reads, space separated (hosts/{host}/ common/): a commit that changes none of them, nor the entry point or .gitops/, runs nothing [default: the whole tree]
    #[arg(long, env = "GITOPS_WATCH", value_name = "PATHS")]
    pub watch: Option<String>,

    /// Write only the watched paths, the entry points and .gitops/ into the checkout (needs --watch)
    #[arg(long, env = "GITOPS_SPARSE", value_parser = clap::builder::BoolishValueParser::new())]
    pub sparse: bool,
}

/// `--watch` validated: None watches the whole tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watch {
    pub templates: Option<Vec<String>>,
    pub sparse: bool,
}

impl WatchOptions {
    /// Err: the sentence for the operator (a usage error).
    pub fn resolve(&self) -> Result<Watch, String> {
        let templates = match self.watch.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(parse(text)?),
        };
        if self.sparse && templates.is_none() {
            return Err(
                "--sparse writes only the watched paths, and no --watch names any: give --watch PATHS (hosts/{host}/ common/) or drop --sparse"
                    .to_string(),
            );
        }
        Ok(Watch {
            templates,
            sparse: self.sparse,
        })
    }
}

/// `--watch`'s templates, space separated; a trailing `/` is allowed (it names a directory).
fn parse(text: &str) -> Result<Vec<String>, String> {
    let mut templates = Vec::new();
    for t in text.split_whitespace() {
        let bare = t.trim_end_matches('/');
        let filled = bare.replace("{host}", "h").replace("{group}", "g");
        if bare.is_empty()
            || bare.starts_with('/')
            || bare
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(format!(
                "--watch {t:?} must be a path inside the repository, such as hosts/{{host}}/ or common/ (the whole tree is watched without --watch)"
            ));
        }
        if filled.contains(['{', '}']) {
            return Err(format!(
                "--watch {t:?} has a placeholder gitops does not know: only {{host}} and {{group}} are filled in"
            ));
        }
        templates.push(t.to_string());
    }
    Ok(templates)
}

/// The paths that concern this machine, without trailing slashes: the watched ones filled in,
/// then `entry_points` (the entry point it runs and those that would take its place, see
/// `entry::up_to_choice`), then `.gitops/`. None: the whole tree.
pub fn paths(watch: &Watch, who: &Identity, entry_points: &[String]) -> Option<Vec<String>> {
    let templates = watch.templates.as_ref()?;
    let mut out: Vec<String> = Vec::new();
    let filled = super::entry::candidates(templates, who)
        .into_iter()
        .map(|(path, _)| path)
        .chain(entry_points.iter().cloned())
        .chain([GITOPS_DIR.to_string()]);
    for path in filled {
        let path = path.trim_end_matches('/').to_string();
        if !out.contains(&path) {
            out.push(path);
        }
    }
    Some(out)
}

/// How the watched paths are said: as given, filled in (`hosts/web-1/ common/`).
pub fn shown(watch: &Watch, who: &Identity) -> String {
    let templates = watch.templates.as_deref().unwrap_or_default();
    let filled: Vec<String> = super::entry::candidates(templates, who)
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    match filled.is_empty() {
        true => "the entry point or .gitops/".to_string(),
        false => filled.join(" "),
    }
}

/// Why a tip was skipped, as state.json's `seen` records it: the watched paths it was skipped
/// under, so that a tip skipped under other options is known for one.
pub fn skip_why(watch: &Watch, who: &Identity) -> String {
    format!("no change under {}", shown(watch, who))
}

/// Everything that decides which paths concern a machine, in one line: the watched templates,
/// the entry point's templates, who the machine is and a named health check. A tip skipped
/// under another key was judged against other paths, and a sparse tree written under another
/// holds other files.
pub fn scope_key(
    watch: &Watch,
    who: &Identity,
    entrypoints: &[String],
    health_check: Option<&str>,
) -> String {
    format!(
        "watch {} | entry {} | host {} | groups {} | check {}",
        watch.templates.as_deref().unwrap_or_default().join(" "),
        entrypoints.join(" "),
        who.host.as_deref().unwrap_or_default(),
        who.groups_text(),
        health_check.unwrap_or_default()
    )
    // One line wherever it is kept.
    .replace('\n', "\\n")
}

/// Whether a tip skipped under `key` (see `scope_key`) is still skipped: not when the machine
/// now watches other paths (or the whole tree), as another host, in other groups or with
/// other entry points.
pub fn still_skipped(watch: &Watch, key: Option<&str>, now: &str) -> bool {
    watch.templates.is_some() && key == Some(now)
}

/// The first of `paths` whose entry differs between the two trees (`old` and `new` give an
/// entry's mode and object, None when absent, Err when it cannot be told): None when no
/// watched path changed. A path that cannot be told counts as changed: running is the safe
/// side.
pub fn first_change<E: PartialEq>(
    paths: &[String],
    old: impl Fn(&str) -> Result<Option<E>, String>,
    new: impl Fn(&str) -> Result<Option<E>, String>,
) -> Option<String> {
    paths
        .iter()
        .find(|path| match (old(path), new(path)) {
            (Ok(a), Ok(b)) => a != b,
            _ => true,
        })
        .cloned()
}

/// The paths that concern this machine in a commit whose tree has the files `exists` says
/// (see `paths`); None: the whole tree.
pub fn scope(
    watch: &Watch,
    who: &Identity,
    templates: &[String],
    exists: impl Fn(&str) -> bool,
) -> Option<Vec<String>> {
    watch.templates.as_ref()?;
    paths(
        watch,
        who,
        &super::entry::up_to_choice(templates, who, exists),
    )
}

/// Whether the file at `path` (a repository path, as bytes: Git's paths need not be UTF-8) is
/// one a sparse tree writes: under one of `paths`, or a directory on the way to one.
pub fn in_sparse_tree(paths: &[String], path: &[u8]) -> bool {
    paths.iter().any(|p| {
        let p = p.as_bytes();
        path == p
            || path
                .strip_prefix(p)
                .is_some_and(|r| r.first() == Some(&b'/'))
            || p.strip_prefix(path)
                .is_some_and(|r| r.first() == Some(&b'/'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(host: Option<&str>, groups: &[&str]) -> Identity {
        Identity {
            host: host.map(str::to_string),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn resolve(watch: Option<&str>, sparse: bool) -> Result<Watch, String> {
        WatchOptions {
            watch: watch.map(str::to_string),
            sparse,
        }
        .resolve()
    }

    #[test]
    fn watch_templates_are_paths_inside_the_repository() {
        #[rustfmt::skip]
        type Row<'a> = (Option<&'a str>, bool, Result<Option<&'a [&'a str]>, &'a str>);
        let table: &[Row] = &[
            (None, false, Ok(None)),
            (Some("  "), false, Ok(None)),
            (
                Some("hosts/{host}/ common/"),
                false,
                Ok(Some(&["hosts/{host}/", "common/"])),
            ),
            (
                Some("groups/{group} x.conf"),
                true,
                Ok(Some(&["groups/{group}", "x.conf"])),
            ),
            (
                Some("/etc/"),
                false,
                Err("must be a path inside the repository"),
            ),
            (
                Some("a/../b"),
                false,
                Err("must be a path inside the repository"),
            ),
            (
                Some("./a"),
                false,
                Err("must be a path inside the repository"),
            ),
            (
                Some("a//b"),
                false,
                Err("must be a path inside the repository"),
            ),
            (
                Some("/"),
                false,
                Err("must be a path inside the repository"),
            ),
            (
                Some("hosts/{hostname}/"),
                false,
                Err("placeholder gitops does not know"),
            ),
            (None, true, Err("--sparse writes only the watched paths")),
        ];
        for (watch, sparse, expected) in table {
            let got = resolve(*watch, *sparse);
            match (expected, got) {
                (Ok(want), Ok(got)) => assert_eq!(
                    got.templates,
                    want.map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
                    "{watch:?}"
                ),
                (Err(want), Err(got)) => assert!(got.contains(want), "{watch:?}: {got}"),
                (want, got) => panic!("{watch:?}: expected {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn the_paths_are_the_watched_ones_the_entry_points_and_gitops_own() {
        let watch = resolve(Some("hosts/{host}/ groups/{group}/ common/"), false).unwrap();
        let entry = [
            "hosts/web-1/run.sh".to_string(),
            "groups/web/run.sh".to_string(),
        ];
        let got = paths(&watch, &who(Some("web-1"), &["web", "eu"]), &entry).unwrap();
        assert_eq!(
            got,
            [
                "hosts/web-1",
                "groups/web",
                "groups/eu",
                "common",
                "hosts/web-1/run.sh",
                "groups/web/run.sh",
                ".gitops",
            ]
        );
        // No host: {host} templates give nothing.
        let got = paths(&watch, &who(None, &[]), &["run.sh".to_string()]).unwrap();
        assert_eq!(got, ["common", "run.sh", ".gitops"]);
        assert_eq!(paths(&Watch::default(), &who(None, &[]), &entry), None);
        assert_eq!(
            shown(&watch, &who(Some("web-1"), &["web"])),
            "hosts/web-1/ groups/web/ common/"
        );
    }

    #[test]
    fn a_commit_concerns_the_machine_when_a_watched_entry_differs() {
        let paths: Vec<String> = ["hosts/web-1", "common", ".gitops"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let tree = |entries: &'static [(&'static str, u32)]| {
            move |p: &str| -> Result<Option<u32>, String> {
                match entries.iter().find(|(path, _)| *path == p) {
                    Some((_, id)) if *id == 0 => Err("a symlink on the way".into()),
                    Some((_, id)) => Ok(Some(*id)),
                    None => Ok(None),
                }
            }
        };
        #[rustfmt::skip]
        type Tree = &'static [(&'static str, u32)];
        let table: &[(Tree, Tree, Option<&str>)] = &[
            // old tree                              new tree                                first change
            (
                &[("hosts/web-1", 1), ("common", 2)],
                &[("hosts/web-1", 1), ("common", 2)],
                None,
            ),
            (
                &[("hosts/web-1", 1), ("common", 2)],
                &[("hosts/web-1", 3), ("common", 2)],
                Some("hosts/web-1"),
            ),
            (
                &[("hosts/web-1", 1), ("common", 2)],
                &[("hosts/web-1", 1), ("common", 4)],
                Some("common"),
            ),
            (&[("hosts/web-1", 1)], &[], Some("hosts/web-1")),
            (&[], &[(".gitops", 5)], Some(".gitops")),
            (&[], &[], None),
            // cannot be told: counts as changed
            (&[("common", 0)], &[("common", 0)], Some("common")),
        ];
        for (old, new, expected) in table {
            let got = first_change(&paths, tree(old), tree(new));
            assert_eq!(got.as_deref(), *expected, "{old:?} -> {new:?}");
        }
    }

    #[test]
    fn a_sparse_tree_holds_the_watched_paths_and_the_directories_on_the_way() {
        let paths: Vec<String> = ["hosts/web-1", "run.sh", ".gitops"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        #[rustfmt::skip]
        let table = [
            ("hosts/web-1/nginx.conf", true),
            ("hosts/web-1", true),
            ("hosts", true),
            ("hosts/web-10/nginx.conf", false),
            ("hosts/web-2/run.sh", false),
            ("run.sh", true),
            ("run.sh.orig", false),
            (".gitops/health", true),
            ("common/x", false),
        ];
        for (path, expected) in table {
            assert_eq!(in_sparse_tree(&paths, path.as_bytes()), expected, "{path}");
        }
    }
}

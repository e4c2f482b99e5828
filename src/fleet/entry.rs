//! Which entry point of a commit this machine runs: the first of `--entrypoint`'s templates,
//! with `{host}` and `{group}` filled in, that the commit has.

use super::identity::Identity;

/// The default: the host's own, then each of its groups' in order, then the repository's.
pub const DEFAULT_TEMPLATES: &str = "hosts/{host}/run.sh groups/{group}/run.sh run.sh";

/// `--entrypoint`'s templates, space separated. Err: the sentence for the operator.
pub fn parse(text: &str) -> Result<Vec<String>, String> {
    let templates: Vec<String> = text.split_whitespace().map(str::to_string).collect();
    if templates.is_empty() {
        return Err(format!(
            "--entrypoint {text:?} names no entry point: give a path inside the repository, such as run.sh"
        ));
    }
    for t in &templates {
        let bare = t.replace("{host}", "h").replace("{group}", "g");
        if t.starts_with('/') || t.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(format!(
                "--entrypoint {t:?} must be a path inside the repository, such as run.sh"
            ));
        }
        if bare.contains(['{', '}']) {
            return Err(format!(
                "--entrypoint {t:?} has a placeholder gitops does not know: only {{host}} and {{group}} are filled in"
            ));
        }
    }
    Ok(templates)
}

/// The entry point chosen, and why, for the journal and status.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Choice {
    pub path: String,
    pub why: String,
}

/// Every path the templates give for this machine, in order, each with why it would be the
/// one. A template with {host} gives nothing without a host; one with {group}, one path per
/// group.
pub fn candidates(templates: &[String], who: &Identity) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for t in templates {
        let hosts: Vec<Option<&str>> = match (t.contains("{host}"), who.host.as_deref()) {
            (false, _) => vec![None],
            (true, Some(host)) => vec![Some(host)],
            (true, None) => vec![],
        };
        let groups: Vec<Option<&str>> = match t.contains("{group}") {
            false => vec![None],
            true => who.groups.iter().map(|g| Some(g.as_str())).collect(),
        };
        for host in &hosts {
            for group in &groups {
                let mut path = t.clone();
                let mut why = Vec::new();
                if let Some(host) = host {
                    path = path.replace("{host}", host);
                    why.push(format!("host {host}"));
                }
                if let Some(group) = group {
                    path = path.replace("{group}", group);
                    why.push(format!("group {group}"));
                }
                let why = match why.is_empty() {
                    true => "the repository's".to_string(),
                    false => format!("this machine's, as {}", why.join(" and ")),
                };
                out.push((path, why));
            }
        }
    }
    out
}

/// The candidates up to and including the one the commit's tree has (`exists`), or all of them:
/// the entry point a machine runs, and every one that would take its place by appearing. A
/// change to any of them changes what the machine runs; one further down cannot.
pub fn up_to_choice(
    templates: &[String],
    who: &Identity,
    exists: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut out = Vec::new();
    for (path, _) in candidates(templates, who) {
        let found = exists(&path);
        out.push(path);
        if found {
            break;
        }
    }
    out
}

/// The first candidate the commit has (`exists`), or, when it has none, the last one: running
/// it fails with the usual "not found", which names the option.
pub fn choose(templates: &[String], who: &Identity, exists: impl Fn(&str) -> bool) -> Choice {
    let all = candidates(templates, who);
    if let Some((path, why)) = all.iter().find(|(path, _)| exists(path)) {
        return Choice {
            path: path.clone(),
            why: why.clone(),
        };
    }
    let tried: Vec<&str> = all.iter().map(|(p, _)| p.as_str()).collect();
    let path = all
        .last()
        .map(|(p, _)| p.clone())
        // Every template needs a host and there is none: the last template, unfilled.
        .unwrap_or_else(|| templates.last().cloned().unwrap_or_default());
    Choice {
        path,
        why: match tried.len() {
            0 => "no template applies to this machine".to_string(),
            _ => format!("the commit has none of {}", tried.join(", ")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(host: Option<&str>, groups: &[&str]) -> Identity {
        Identity {
            host: host.map(String::from),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn templates_are_paths_inside_the_repository_with_known_placeholders() {
        assert_eq!(
            parse(DEFAULT_TEMPLATES).unwrap(),
            ["hosts/{host}/run.sh", "groups/{group}/run.sh", "run.sh"]
        );
        assert_eq!(parse("  deploy.sh ").unwrap(), ["deploy.sh"]);
        for bad in [
            "",
            "  ",
            "/etc/run.sh",
            "../run.sh",
            "a//b",
            "hosts/{hostname}/run.sh",
            "x/{",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_first_entry_point_the_commit_has_is_chosen() {
        let templates = parse(DEFAULT_TEMPLATES).unwrap();
        let has = |present: &'static [&'static str]| move |p: &str| present.contains(&p);
        #[rustfmt::skip]
        let table: &[(Identity, &'static [&'static str], &str, &str)] = &[
            // machine                               the commit has                         chosen                why
            (who(Some("web-1"), &["web", "eu"]),    &["hosts/web-1/run.sh", "run.sh"],     "hosts/web-1/run.sh", "this machine's, as host web-1"),
            (who(Some("web-2"), &["web", "eu"]),    &["groups/eu/run.sh", "groups/web/run.sh", "run.sh"], "groups/web/run.sh", "this machine's, as group web"),
            (who(Some("web-2"), &["eu", "web"]),    &["groups/eu/run.sh", "groups/web/run.sh"], "groups/eu/run.sh", "this machine's, as group eu"),
            (who(Some("db-1"), &[]),                &["groups/web/run.sh", "run.sh"],      "run.sh",             "the repository's"),
            (who(None, &["web"]),                   &["hosts/web-1/run.sh", "groups/web/run.sh"], "groups/web/run.sh", "this machine's, as group web"),
            (who(Some("db-1"), &["db"]),            &[],                                   "run.sh",             "the commit has none of hosts/db-1/run.sh, groups/db/run.sh, run.sh"),
        ];
        for (machine, present, path, why) in table {
            let got = choose(&templates, machine, has(present));
            assert_eq!(
                (got.path.as_str(), got.why.as_str()),
                (*path, *why),
                "{machine:?} {present:?}"
            );
        }
        // A lone template without placeholders is today's --entrypoint.
        let plain = parse("deploy.sh").unwrap();
        assert_eq!(choose(&plain, &who(None, &[]), |_| false).path, "deploy.sh");
        // Only host templates and no host: the last template, which fails as not found.
        let only_host = parse("hosts/{host}/run.sh").unwrap();
        let got = choose(&only_host, &who(None, &[]), |_| true);
        assert_eq!(
            (got.path.as_str(), got.why.as_str()),
            ("hosts/{host}/run.sh", "no template applies to this machine")
        );
    }
}

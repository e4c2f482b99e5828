//! One repository, many machines: each machine runs its own entry point (hosts/<host>/,
//! groups/<group>/, else the repository's), learns who it is, and says which it ran and why.

use crate::harness::Machine;
use crate::support::{GitDaemon, Upstream};

/// An entry point that records which file ran, for which host and groups.
fn recorder(name: &str) -> String {
    format!("#!/bin/sh\necho \"{name} $GITOPS_HOST $GITOPS_GROUPS\" >> \"$OUT/ran\"\n")
}

fn ran(m: &Machine) -> Vec<String> {
    std::fs::read_to_string(m.out.join("ran"))
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// A repository with an entry point for web-1, one for the group web, and the repository's.
fn fleet_repo() -> (Upstream, GitDaemon, String) {
    let up = Upstream::new();
    let host = recorder("host");
    let group = recorder("group");
    let all = recorder("all");
    up.commit(
        &[
            ("hosts/web-1/run.sh", host.as_str()),
            ("groups/web/run.sh", group.as_str()),
            ("run.sh", all.as_str()),
        ],
        "three entry points",
    );
    let daemon = GitDaemon::serve(&up.srv());
    let url = daemon.url("config.git");
    (up, daemon, url)
}

#[test]
fn each_machine_runs_its_own_entry_point_and_says_why() {
    let (_up, _daemon, url) = fleet_repo();
    #[rustfmt::skip]
    let table: &[(&[&str], &str, &str)] = &[
        // options                                       ran                why (journal, status)
        (&["--host", "web-1", "--group", "web"],         "host web-1 web",  "hosts/web-1/run.sh: this machine's, as host web-1"),
        (&["--host", "web-2", "--group", "db,web"],      "group web-2 db,web", "groups/web/run.sh: this machine's, as group web"),
        (&["--host", "db-1"],                             "all db-1 ",       "run.sh: the repository's"),
    ];
    for (args, want, why) in table {
        let m = Machine::new();
        let run = m.sync(&url, args).expect(0);
        assert_eq!(ran(&m), [*want], "{args:?}");
        assert!(
            run.stderr.contains(&format!("entry point {why}")),
            "{}",
            run.stderr
        );
        let state = m.state_json();
        let (path, reason) = why.split_once(": ").unwrap();
        assert_eq!(state["applied"]["entrypoint"]["path"], path);
        assert_eq!(state["applied"]["entrypoint"]["why"], reason);
        let status = m.run(&["status"]);
        assert!(
            status
                .stdout
                .contains(&format!("entry point: {path} ({reason})")),
            "{}",
            status.stdout
        );
    }
}

#[test]
fn the_variables_name_the_machine_and_the_host_defaults_to_the_short_hostname() {
    let (_up, _daemon, url) = fleet_repo();
    let m = Machine::new();
    let mut cmd = m.command();
    cmd.args(["sync", "--repo-url", &url])
        .env("GITOPS_HOST", "web-1")
        .env("GITOPS_GROUPS", "web,eu");
    crate::harness::Run::of(&mut cmd).expect(0);
    assert_eq!(ran(&m), ["host web-1 web,eu"]);

    // Without --host: the kernel's hostname, cut at the first dot.
    let other = Machine::new();
    other.sync(&url, &[]).expect(0);
    let short = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .split('.')
        .next()
        .unwrap()
        .to_string();
    let want = if short == "web-1" { "host" } else { "all" };
    assert_eq!(ran(&other), [format!("{want} {short} ")]);
}

#[test]
fn templates_choose_among_any_names_and_a_plan_shows_the_choice() {
    let (up, _daemon, url) = fleet_repo();
    let site = recorder("site");
    up.commit(&[("sites/eu/deploy.sh", site.as_str())], "a site's own");
    let m = Machine::new();
    let templates = "hosts/{host}/deploy.sh sites/{group}/deploy.sh run.sh";
    let plan = m.run(&[
        "plan",
        "--repo-url",
        &url,
        "--entrypoint",
        templates,
        "--group",
        "us,eu",
    ]);
    assert_eq!(plan.code, 10, "{}", plan.stderr);
    assert!(
        plan.stdout.contains(
            "entry point: sites/eu/deploy.sh (added, executable)\n  chosen:    this machine's, as group eu"
        ),
        "{}",
        plan.stdout
    );
    m.sync(
        &url,
        &[
            "--entrypoint",
            templates,
            "--group",
            "us,eu",
            "--host",
            "db-1",
        ],
    )
    .expect(0);
    assert_eq!(ran(&m), ["site db-1 us,eu"]);
}

#[test]
fn names_that_are_not_one_directory_are_usage_errors() {
    let (_up, _daemon, url) = fleet_repo();
    for args in [
        &["--host", "../etc"][..],
        &["--host", ".hidden"],
        &["--group", "web,a/b"],
        &["--entrypoint", "hosts/{hostname}/run.sh"],
        &["--entrypoint", "run.sh/"],
        &["--entrypoint", "   "],
    ] {
        let m = Machine::new();
        let run = m.sync(&url, args).expect(2);
        let line = run.error_line();
        assert!(
            line.contains("--host") || line.contains("--group") || line.contains("--entrypoint"),
            "{args:?}: {line}"
        );
        assert!(ran(&m).is_empty());
    }
}

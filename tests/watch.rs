//! Applies scoped to what a machine reads (`--watch`): a commit that changes none of its paths
//! runs nothing there, and is still held to the rewind refusal.

use crate::harness::Machine;
use crate::support::{GitDaemon, Upstream};

/// An entry point that records its host and the commit it ran.
const RECORDER: &str = "#!/bin/sh\necho \"$GITOPS_HOST $GITOPS_COMMIT\" >> \"$OUT/ran\"\n";

fn ran(m: &Machine) -> Vec<String> {
    std::fs::read_to_string(m.out.join("ran"))
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

fn fleet() -> (Upstream, GitDaemon, String) {
    let up = Upstream::new();
    up.commit(
        &[
            ("hosts/web-1/run.sh", RECORDER),
            ("hosts/web-2/run.sh", RECORDER),
            ("common/motd", "hello\n"),
            ("run.sh", RECORDER),
        ],
        "two hosts",
    );
    let daemon = GitDaemon::serve(&up.srv());
    let url = daemon.url("config.git");
    (up, daemon, url)
}

const WATCH: &[&str] = &["--host", "web-1", "--watch", "hosts/{host}/ common/"];

#[test]
fn a_commit_outside_the_watched_paths_runs_nothing_and_is_recorded_as_seen() {
    let (up, _daemon, url) = fleet();
    let m = Machine::new();
    m.sync(&url, WATCH).expect(0);
    let first = m.applied().unwrap();
    assert_eq!(ran(&m), [format!("web-1 {first}")]);
    let linked = m.linked_tree();

    let other = up.commit(&[("hosts/web-2/app.conf", "x\n")], "web-2 only");
    let run = m.sync(&url, WATCH).expect(0);
    assert!(
        run.stderr
            .contains("skipped: no change under hosts/web-1/ common/")
            || run.stderr.contains(&format!(
                "skipped {} (main): no change under hosts/web-1/ common/",
                &other[..12]
            )),
        "{}",
        run.stderr
    );
    assert_eq!(ran(&m).len(), 1, "nothing ran for web-2's commit");
    let state = m.state_json();
    assert_eq!(state["last_pass"]["outcome"], "up-to-date");
    assert_eq!(state["applied"]["commit"], first.as_str());
    assert_eq!(state["seen"]["commit"], other.as_str());
    assert_eq!(state["seen"]["why"], "no change under hosts/web-1/ common/");
    assert_eq!(m.linked_tree(), linked, "the applied tree stays linked");
    let status = m.run(&["status"]).expect(0);
    assert!(
        status
            .stdout
            .contains(&format!("skipped:      {}", &other[..12]))
            && status
                .stdout
                .contains("no change under hosts/web-1/ common/"),
        "{}",
        status.stdout
    );

    // The next pass: up to date, against the seen tip.
    let run = m.sync(&url, WATCH).expect(0);
    assert!(run.stderr.contains("up to date"), "{}", run.stderr);
    assert_eq!(ran(&m).len(), 1);

    // The repository's own run.sh is below web-1's in the lookup: not web-1's concern.
    up.commit(
        &[("run.sh", "#!/bin/sh\necho new >> \"$OUT/ran\"\n")],
        "top run.sh",
    );
    m.sync(&url, WATCH).expect(0);
    assert_eq!(ran(&m).len(), 1);

    // common/ is watched; .gitops/ always is.
    let common = up.commit(&[("common/motd", "hello again\n")], "common");
    m.sync(&url, WATCH).expect(0);
    assert_eq!(ran(&m).last().unwrap(), &format!("web-1 {common}"));
    assert!(
        m.state_json().get("seen").is_none(),
        "an apply ends the skip"
    );
    let own = up.commit(
        &[(".gitops/health", "#!/bin/sh\nexit 0\n")],
        "a health check",
    );
    m.sync(&url, WATCH).expect(0);
    assert_eq!(ran(&m).last().unwrap(), &format!("web-1 {own}"));
    let mine = up.commit(&[("hosts/web-1/app.conf", "y\n")], "web-1's own");
    m.sync(&url, WATCH).expect(0);
    assert_eq!(ran(&m).last().unwrap(), &format!("web-1 {mine}"));
    assert_eq!(ran(&m).len(), 4);

    // Without --watch every commit runs.
    let everyone = Machine::new();
    everyone.sync(&url, &["--host", "web-1"]).expect(0);
    up.commit(&[("hosts/web-2/app.conf", "z\n")], "web-2 again");
    everyone.sync(&url, &["--host", "web-1"]).expect(0);
    assert_eq!(ran(&everyone).len(), 2);
}

#[test]
fn a_rewind_below_a_seen_commit_is_refused() {
    let (up, _daemon, url) = fleet();
    let m = Machine::new();
    m.sync(&url, WATCH).expect(0);
    let applied = m.applied().unwrap();
    up.commit(&[("hosts/web-2/app.conf", "x\n")], "web-2 only");
    m.sync(&url, WATCH).expect(0);
    // Back to the applied commit: the branch no longer holds the commit seen.
    up.rewind(&applied);
    let run = m.sync(&url, WATCH).expect(4);
    assert!(
        run.stderr
            .contains("no longer descends from the commit this machine last saw")
            && run.stderr.contains("skipped here"),
        "{}",
        run.stderr
    );
    assert_eq!(ran(&m).len(), 1);
}

#[test]
fn an_entry_point_that_would_take_over_concerns_the_machine() {
    let (up, _daemon, url) = fleet();
    let m = Machine::new();
    // web-3 has no directory: the repository's run.sh is its entry point, and a hosts/web-3/
    // appearing changes that.
    let args = ["--host", "web-3", "--watch", "common/"];
    m.sync(&url, &args).expect(0);
    up.commit(
        &[(
            "run.sh",
            RECORDER
                .replace("$GITOPS_HOST", "top $GITOPS_HOST")
                .as_str(),
        )],
        "top",
    );
    m.sync(&url, &args).expect(0);
    assert_eq!(ran(&m).len(), 2, "its entry point changed");
    up.commit(&[("hosts/web-3/run.sh", RECORDER)], "web-3 gets its own");
    m.sync(&url, &args).expect(0);
    assert_eq!(ran(&m).len(), 3, "its own entry point appeared");
    let state = m.state_json();
    assert_eq!(state["applied"]["entrypoint"]["path"], "hosts/web-3/run.sh");
}

#[test]
fn bad_watch_options_are_usage_errors() {
    let (_up, _daemon, url) = fleet();
    let m = Machine::new();
    for (args, says) in [
        (
            &["--watch", "../etc"][..],
            "must be a path inside the repository",
        ),
        (
            &["--watch", "hosts/{hots}/"][..],
            "placeholder gitops does not know",
        ),
        (&["--sparse"][..], "--sparse writes only the watched paths"),
    ] {
        let run = m.sync(&url, args).expect(2);
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
    }
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_sparse_tree_holds_only_what_the_machine_reads() {
    let (up, _daemon, url) = fleet();
    up.commit(
        &[
            (".gitops/health", "#!/bin/sh\nexit 0\n"),
            ("checks/web.sh", "#!/bin/sh\nexit 0\n"),
        ],
        "checks",
    );
    let m = Machine::new();
    let args = [
        "--host",
        "web-1",
        "--watch",
        "hosts/{host}/ common/",
        "--sparse",
        "--health-check",
        "checks/web.sh",
    ];
    m.sync(&url, &args).expect(0);
    assert_eq!(
        files(&m.checkout),
        [
            ".gitops/health",
            "checks/web.sh",
            "common/motd",
            "hosts/web-1/run.sh"
        ]
    );
    // The next tree too, and the machine's own file is there.
    up.commit(
        &[
            ("hosts/web-1/app.conf", "y\n"),
            ("hosts/web-2/app.conf", "n\n"),
        ],
        "both",
    );
    m.sync(&url, &args).expect(0);
    assert_eq!(
        files(&m.checkout),
        [
            ".gitops/health",
            "checks/web.sh",
            "common/motd",
            "hosts/web-1/app.conf",
            "hosts/web-1/run.sh"
        ]
    );
    assert_eq!(ran(&m).len(), 2);
    // Without --sparse, the whole tree.
    let whole = Machine::new();
    whole
        .sync(&url, &["--host", "web-1", "--watch", "hosts/{host}/"])
        .expect(0);
    assert!(files(&whole.checkout).contains(&"hosts/web-2/app.conf".to_string()));
}

#[test]
fn turning_sparse_on_or_off_reshapes_the_applied_tree_at_the_next_pass() {
    let (_up, _daemon, url) = fleet();
    let m = Machine::new();
    let watch = ["--host", "web-1", "--watch", "hosts/{host}/"];
    let sparse = [&watch[..], &["--sparse"]].concat();
    m.sync(&url, &watch).expect(0);
    assert!(files(&m.checkout).contains(&"hosts/web-2/run.sh".to_string()));
    // No new commit: the next pass writes the applied tree again, sparse, and runs nothing.
    let run = m.sync(&url, &sparse).expect(0);
    assert!(
        run.stderr
            .contains("written for other --watch or --sparse settings"),
        "{}",
        run.stderr
    );
    assert_eq!(files(&m.checkout), ["hosts/web-1/run.sh"]);
    // Nothing more to do while the options stay.
    let run = m.sync(&url, &sparse).expect(0);
    assert!(!run.stderr.contains("wrote it again"), "{}", run.stderr);
    // Off again: the whole tree.
    m.sync(&url, &watch).expect(0);
    assert!(files(&m.checkout).contains(&"hosts/web-2/run.sh".to_string()));
    assert_eq!(ran(&m).len(), 1, "no entry point ran for it");
}

#[test]
fn the_variables_watch_and_sparse_as_the_options_do() {
    let (up, _daemon, url) = fleet();
    let m = Machine::new();
    let sync = || {
        let mut cmd = m.command();
        cmd.args(["sync", "--repo-url", &url])
            .env("GITOPS_HOST", "web-1")
            .env("GITOPS_WATCH", "hosts/{host}/ common/")
            .env("GITOPS_SPARSE", "1");
        crate::harness::Run::of(&mut cmd).expect(0)
    };
    sync();
    assert_eq!(files(&m.checkout), ["common/motd", "hosts/web-1/run.sh"]);
    up.commit(&[("hosts/web-2/app.conf", "x\n")], "web-2 only");
    let run = sync();
    assert!(
        run.stderr.contains("no change under hosts/web-1/ common/"),
        "{}",
        run.stderr
    );
    assert_eq!(ran(&m).len(), 1);
}

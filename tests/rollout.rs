//! Rollout waves as an operator meets them: a rollout file that cannot be read stops every
//! machine's applies, loudly, until a commit fixes it, and that commit reaches every machine at
//! once.

use crate::harness::Machine;
use crate::support::{GitDaemon, Upstream};

const RECORDER: &str = "#!/bin/sh\necho \"$GITOPS_COMMIT\" >> \"$OUT/ran\"\n";

fn ran(m: &Machine) -> usize {
    std::fs::read_to_string(m.out.join("ran"))
        .map(|t| t.lines().count())
        .unwrap_or_default()
}

#[test]
fn a_broken_rollout_stops_applies_until_a_commit_fixes_it() {
    let up = Upstream::new();
    up.commit(
        &[
            ("run.sh", RECORDER),
            ("hosts/a/x", "a\n"),
            ("hosts/b/x", "b\n"),
            (".gitops/rollout", "waves = 1, 100%\ninterval = 1h\n"),
        ],
        "two hosts",
    );
    let daemon = GitDaemon::serve(&up.srv());
    let url = daemon.url("config.git");
    let machines: Vec<(Machine, &str)> = vec![(Machine::new(), "a"), (Machine::new(), "b")];
    for (m, host) in &machines {
        m.sync(&url, &["--host", host]).expect(0);
    }
    // The commit that breaks the file changes it: it reaches both at once.
    up.commit(
        &[(".gitops/rollout", "waves = 1, 100%\nintervall = 1h\n")],
        "a typo",
    );
    for (m, host) in &machines {
        m.sync(&url, &["--host", host]).expect(0);
        assert_eq!(ran(m), 2, "{host}");
    }
    // The next commit cannot be paced: nothing runs anywhere, and every pass says why.
    up.commit(&[("hosts/a/x", "a2\n"), ("hosts/b/x", "b2\n")], "both");
    for (m, host) in &machines {
        let run = m.sync(&url, &["--host", host]).expect(2);
        assert!(
            run.stderr.contains("the rollout of")
                && run.stderr.contains("line 2: unknown key \"intervall\"")
                && run.stderr.contains("fix it with a new commit"),
            "{}",
            run.stderr
        );
        assert_eq!(ran(m), 2, "{host}");
        assert_eq!(m.state_json()["last_pass"]["outcome"], "config-error");
        let plan = m
            .run(&["plan", "--repo-url", &url, "--host", host])
            .expect(2);
        assert!(plan.stderr.contains("unknown key"), "{}", plan.stderr);
    }
    // The fix reaches both at once, whatever their waves.
    up.commit(
        &[(".gitops/rollout", "waves = 1, 100%\ninterval = 1h\n")],
        "fix",
    );
    for (m, host) in &machines {
        m.sync(&url, &["--host", host]).expect(0);
        assert_eq!(ran(m), 3, "{host}");
    }
}

#[test]
fn a_rollout_file_that_is_not_a_small_file_is_refused() {
    for (what, setup) in [("a directory", 0), ("over 4 KiB", 1), ("a symlink", 2)] {
        let up = Upstream::new();
        up.commit(&[("run.sh", RECORDER), ("x", "1\n")], "start");
        let daemon = GitDaemon::serve(&up.srv());
        let url = daemon.url("config.git");
        let m = Machine::new();
        m.sync(&url, &["--host", "a"]).expect(0);
        match setup {
            0 => up.commit(&[(".gitops/rollout/waves", "1\n")], what),
            1 => up.commit(
                &[(
                    ".gitops/rollout",
                    &format!("waves = 100%\ninterval = 1h\n#{}\n", "x".repeat(5000)),
                )],
                what,
            ),
            _ => up.commit_symlink(".gitops/rollout", "/etc/passwd", what),
        };
        // Introduced: it changes the rollout, so it applies.
        m.sync(&url, &["--host", "a"]).expect(0);
        up.commit(&[("x", "2\n")], "next");
        let run = m.sync(&url, &["--host", "a"]).expect(2);
        assert!(
            run.stderr.contains("the rollout of"),
            "{what}: {}",
            run.stderr
        );
        assert_eq!(ran(&m), 2, "{what}");
    }
}

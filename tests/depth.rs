//! `--depth`: a shallow store that receives about what `git clone --depth N` does, grows only
//! by the new commits, and proves every new tip descends from the applied commit.

use std::path::Path;

use crate::harness::{Machine, RECORDING_RUN_SH};
use crate::support::{git, run, GitDaemon, HttpServer, Upstream};

/// How many commits the store holds of the history of the applied commit.
fn commits_in_store(m: &Machine, up: &Upstream) -> usize {
    let applied = m.applied().expect("a commit is applied");
    let count = run(git(&up.home())
        .arg("--git-dir")
        .arg(m.state.join("repo.git"))
        .args(["rev-list", "--count", &applied]));
    count.trim().parse().unwrap()
}

fn is_shallow(m: &Machine) -> bool {
    m.state.join("repo.git/shallow").exists()
}

/// `count` commits, each changing one file, on top of a first with the recording entry point.
fn history(up: &Upstream, count: usize) -> Vec<String> {
    let mut ids = vec![up.commit(&[("run.sh", RECORDING_RUN_SH), ("v", "0")], "first")];
    for i in 1..count {
        ids.push(up.commit(&[("v", &i.to_string())], &format!("change {i}")));
    }
    ids
}

fn packed_bytes(store: &Path) -> u64 {
    std::fs::read_dir(store.join("objects/pack"))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn a_shallow_store_holds_the_tip_and_grows_by_the_new_commits_only() {
    let up = Upstream::new();
    let ids = history(&up, 30);
    let daemon = GitDaemon::serve(&up.srv());
    let url = daemon.url("config.git");

    let shallow = Machine::new();
    shallow.sync(&url, &["--depth", "1"]).expect(0);
    assert_eq!(shallow.applied().as_deref(), ids.last().map(String::as_str));
    assert!(is_shallow(&shallow), "the store is shallow");
    assert_eq!(commits_in_store(&shallow, &up), 1);

    let full = Machine::new();
    full.sync(&url, &[]).expect(0);
    assert!(!is_shallow(&full));
    assert_eq!(commits_in_store(&full, &up), 30);
    let (small, large) = (
        packed_bytes(&shallow.state.join("repo.git")),
        packed_bytes(&full.state.join("repo.git")),
    );
    assert!(small < large, "{small} bytes shallow, {large} full");

    // New commits arrive as they would in any store, without deepening what was cut.
    up.commit(&[("v", "a")], "a");
    let b = up.commit(&[("v", "b")], "b");
    let run = shallow.sync(&url, &["--depth", "1"]).expect(0);
    assert!(!run.stderr.contains("whole history"), "{}", run.stderr);
    assert_eq!(shallow.applied().as_deref(), Some(b.as_str()));
    assert_eq!(commits_in_store(&shallow, &up), 3);
    assert!(is_shallow(&shallow));

    // The variable says the same as the flag.
    let by_env = Machine::new();
    let mut cmd = by_env.command();
    cmd.env("GITOPS_DEPTH", "2")
        .args(["sync", "--repo-url", &url]);
    crate::harness::Run::of(&mut cmd).expect(0);
    assert_eq!(commits_in_store(&by_env, &up), 2);
}

#[test]
fn a_rewind_hidden_by_the_shallow_boundary_is_proven_and_refused() {
    let up = Upstream::new();
    let ids = history(&up, 10);
    let daemon = GitDaemon::serve(&up.srv());
    let url = daemon.url("config.git");
    let m = Machine::new();
    m.sync(&url, &["--depth", "1"]).expect(0);
    let tip = ids[9].clone();

    // Back to a commit the shallow store never received.
    up.rewind(&ids[3]);
    let run = m.sync(&url, &["--depth", "1"]).expect(4);
    assert!(
        run.error_line().contains("--allow-rewind"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("fetching the whole history"),
        "{}",
        run.stderr
    );
    assert_eq!(m.applied().as_deref(), Some(tip.as_str()));
    assert_eq!(m.runs().len(), 1, "nothing ran");
    assert!(!is_shallow(&m), "the whole history was fetched to know");

    // A rewritten history beside the old one, forked below the boundary a second machine has.
    let other = Machine::new();
    up.rewind(&tip);
    other.sync(&url, &["--depth", "2"]).expect(0);
    up.rewind(&ids[5]);
    let forked = up.commit(&[("v", "rewritten")], "rewritten on top of change 5");
    other.sync(&url, &["--depth", "2"]).expect(4);
    assert_eq!(other.applied().as_deref(), Some(tip.as_str()));
    // The operator's way out is the same as in a full store.
    other
        .sync(&url, &["--depth", "2", "--allow-rewind"])
        .expect(0);
    assert_eq!(other.applied().as_deref(), Some(forked.as_str()));
}

#[test]
fn a_shallow_store_works_over_http_and_file_urls() {
    let up = Upstream::new();
    let ids = history(&up, 8);
    let http = HttpServer::serve(&up.srv(), None);
    for url in [http.url("config.git"), up.file_url()] {
        up.rewind(&ids[7]);
        let m = Machine::new();
        m.sync(&url, &["--depth", "1"]).expect(0);
        assert!(is_shallow(&m), "{url}");
        assert_eq!(commits_in_store(&m, &up), 1, "{url}");
        let next = up.commit(&[("v", "next")], "next");
        m.sync(&url, &["--depth", "1"]).expect(0);
        assert_eq!(m.applied().as_deref(), Some(next.as_str()), "{url}");
        up.rewind(&ids[2]);
        m.sync(&url, &["--depth", "1"]).expect(4);
        assert_eq!(m.applied().as_deref(), Some(next.as_str()), "{url}");
    }
}

#[test]
fn a_depth_that_is_not_a_positive_count_is_a_usage_error() {
    let m = Machine::new();
    for bad in ["0", "-1", "many", "99999999999"] {
        let flag = format!("--depth={bad}");
        let run = m.sync("git://127.0.0.1:9/config.git", &[&flag]).expect(2);
        assert!(run.stderr.contains("--depth"), "{bad}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
    assert!(!m.state.join("repo.git").exists());
}

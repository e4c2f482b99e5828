//! `--watch` and rollout waves attacked: by whoever can push (dates no clock can hold), by a
//! busy repository (commits that keep coming), and by an operator who changes a machine's
//! options between passes.

use crate::harness::{Machine, Run};
use crate::support::Upstream;

/// An entry point that records its host and the commit it ran.
const RECORDER: &str = "#!/bin/sh\necho \"$GITOPS_HOST $GITOPS_COMMIT\" >> \"$OUT/ran\"\n";
pub(crate) const ROLLOUT: &str = "waves = 1, 100%\ninterval = 1h\n";
pub(crate) const WATCH: &str = "hosts/{host}/ common/";

/// The lines of `$OUT/ran`: one per entry point run, its host and commit.
pub(crate) fn ran(m: &Machine) -> Vec<String> {
    std::fs::read_to_string(m.out.join("ran"))
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Two hosts, each with its entry point, a common/ both watch, and `.gitops/rollout` when
/// given: served from a file:// URL.
fn fleet(rollout: Option<&str>) -> (Upstream, String) {
    let up = Upstream::new();
    let mut files = vec![
        ("hosts/web-1/run.sh", RECORDER),
        ("hosts/web-2/run.sh", RECORDER),
        ("common/motd", "hello\n"),
    ];
    if let Some(rollout) = rollout {
        files.push((".gitops/rollout", rollout));
    }
    up.commit(&files, "two hosts");
    let url = up.file_url();
    (up, url)
}

/// `gitops sync` as `host`, `offset` seconds from now.
fn sync(m: &Machine, url: &str, host: &str, offset: i64, args: &[&str]) -> Run {
    let mut cmd = m.command();
    cmd.args(["sync", "--repo-url", url, "--host", host])
        .args(args)
        .env("GITOPS_TEST_CLOCK_OFFSET", offset.to_string());
    Run::of(&mut cmd)
}

/// Both hosts' machines, applied at the first commit: (the canary's, the other's).
fn canary_and_other(
    url: &str,
    up: &Upstream,
) -> ((&'static str, Machine), (&'static str, Machine)) {
    let machines = [("web-1", Machine::new()), ("web-2", Machine::new())];
    for (host, m) in &machines {
        sync(m, url, host, 0, &["--watch", WATCH]).expect(0);
    }
    // A probe commit tells the two apart: the canary runs it, the other waits.
    up.commit(&[("common/motd", "probe\n")], "probe");
    for (host, m) in &machines {
        sync(m, url, host, 0, &["--watch", WATCH]).expect(0);
    }
    let [a, b] = machines;
    let waits = |m: &Machine| m.state_json().get("waiting").is_some();
    let (canary, other) = match (waits(&a.1), waits(&b.1)) {
        (false, true) => (a, b),
        (true, false) => (b, a),
        got => panic!("one machine is the canary, one waits: {got:?}"),
    };
    // Both at the probe, so the tests start from the same applied commit.
    sync(&other.1, url, other.0, 3700, &["--watch", WATCH]).expect(0);
    assert!(other.1.state_json().get("waiting").is_none());
    (canary, other)
}

#[test]
fn a_committer_date_no_clock_can_hold_does_not_make_a_wave_wait_for_a_moving_time() {
    let (up, url) = fleet(Some(ROLLOUT));
    let (_, (host, m)) = canary_and_other(&url, &up);
    // Year 31 million: no date type holds it. Read as "now", the wave's time would move with
    // every pass and the machine would wait for ever, its status a different time each pass.
    up.commit_with(
        &[("common/motd", "far\n")],
        "far",
        &[],
        &[("GIT_COMMITTER_DATE", "@999999999999999 +0000")],
    );
    let mut times = Vec::new();
    for offset in [0, 600, 1800] {
        sync(&m, &url, host, offset, &["--watch", WATCH]).expect(0);
        let state = m.state_json();
        times.push(
            state["waiting"]["at"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    assert!(!times[0].is_empty(), "the wave waits");
    assert_eq!(times[0], times[1], "a wave's time does not move: {times:?}");
    assert_eq!(times[1], times[2], "a wave's time does not move: {times:?}");
    // A date ahead of every clock holds no wave past the interval after the machine first saw
    // the commit.
    let before = ran(&m).len();
    sync(&m, &url, host, 2 * 3600, &["--watch", WATCH]).expect(0);
    assert_eq!(ran(&m).len(), before + 1, "{:?}", m.state_json());
}

#[test]
fn a_commit_that_does_not_concern_a_waiting_machine_does_not_restart_its_wave() {
    let (up, url) = fleet(Some(ROLLOUT));
    let (_, (host, m)) = canary_and_other(&url, &up);
    let before = ran(&m).len();
    let common = up.commit(&[("common/motd", "new\n")], "common");
    sync(&m, &url, host, 0, &["--watch", WATCH]).expect(0);
    assert_eq!(m.state_json()["waiting"]["commit"], common.as_str());
    // Half an hour later another host's commit: nothing this machine reads. In a busy fleet
    // repository such commits keep coming; were each a new start, later waves would never
    // get common/'s change.
    let later = time::OffsetDateTime::now_utc().unix_timestamp() + 1800;
    let theirs = up.commit_with(
        &[("apps/web-3.conf", "x\n")],
        "web-3's",
        &[],
        &[("GIT_COMMITTER_DATE", &format!("@{later} +0000"))],
    );
    // An hour after common/'s commit: this machine's wave has come for its change.
    sync(&m, &url, host, 3700, &["--watch", WATCH]).expect(0);
    assert_eq!(
        ran(&m)[before..],
        [format!("{host} {theirs}")],
        "{:?}",
        m.state_json()
    );

    // A commit that does change what it reads starts its wave afresh.
    let later = time::OffsetDateTime::now_utc().unix_timestamp() + 7200;
    let mine = up.commit_with(
        &[("common/motd", "again\n")],
        "common again",
        &[],
        &[("GIT_COMMITTER_DATE", &format!("@{later} +0000"))],
    );
    sync(&m, &url, host, 9000, &["--watch", WATCH]).expect(0);
    assert_eq!(m.state_json()["waiting"]["commit"], mine.as_str());
    sync(&m, &url, host, 11_000, &["--watch", WATCH]).expect(0);
    assert_eq!(ran(&m).last().unwrap(), &format!("{host} {mine}"));
}

#[test]
fn apply_always_runs_every_pass_however_often_others_commit() {
    let (up, url) = fleet(None);
    let m = Machine::new();
    let args = ["--watch", WATCH, "--apply", "always"];
    sync(&m, &url, "web-1", 0, &args).expect(0);
    // A busy repository: another host's commit before every pass.
    for i in 0..3 {
        up.commit(&[("hosts/web-2/app.conf", &format!("{i}\n"))], "web-2's");
        sync(&m, &url, "web-1", 0, &args).expect(0);
    }
    assert_eq!(
        ran(&m).len(),
        4,
        "--apply always runs the entry point every pass"
    );
    // And plan says so, with the exit that means "the entry point would run".
    up.commit(&[("hosts/web-2/app.conf", "last\n")], "web-2's");
    let mut cmd = m.command();
    cmd.args(["plan", "--repo-url", &url, "--host", "web-1"])
        .args(args);
    let plan = Run::of(&mut cmd).expect(10);
    assert!(
        plan.stdout
            .contains("unchanged; --apply always runs it all the same"),
        "{}",
        plan.stdout
    );
}

#[test]
fn a_skipped_tip_is_looked_at_again_when_the_machine_watches_more() {
    let (up, url) = fleet(None);
    let m = Machine::new();
    sync(&m, &url, "web-1", 0, &["--watch", "hosts/{host}/"]).expect(0);
    let common = up.commit(&[("common/motd", "new\n")], "common");
    sync(&m, &url, "web-1", 0, &["--watch", "hosts/{host}/"]).expect(0);
    assert_eq!(m.state_json()["seen"]["commit"], common.as_str());
    assert_eq!(ran(&m).len(), 1);
    // The operator adds common/: the tip changes it, so it is this machine's to apply now.
    sync(&m, &url, "web-1", 0, &["--watch", WATCH]).expect(0);
    assert_eq!(ran(&m).last().unwrap(), &format!("web-1 {common}"));

    // The same without --watch at all: the whole tree is the machine's.
    up.commit(&[("hosts/web-2/app.conf", "x\n")], "web-2's");
    sync(&m, &url, "web-1", 0, &["--watch", WATCH]).expect(0);
    assert!(m.state_json().get("seen").is_some());
    let run = sync(&m, &url, "web-1", 0, &[]).expect(0);
    assert_eq!(ran(&m).len(), 3, "{}", run.stderr);
    // And a scope that still does not cover it skips it again, quietly, once.
    up.commit(&[("hosts/web-2/app.conf", "y\n")], "web-2's again");
    sync(&m, &url, "web-1", 0, &["--watch", WATCH]).expect(0);
    sync(&m, &url, "web-1", 0, &["--watch", "hosts/{host}/"]).expect(0);
    let run = sync(&m, &url, "web-1", 0, &["--watch", "hosts/{host}/"]).expect(0);
    assert!(run.stderr.contains("up to date"), "{}", run.stderr);
    assert_eq!(ran(&m).len(), 3);
}

#[test]
fn a_rollout_saved_with_a_byte_order_mark_and_crlf_lines_is_read() {
    // What an editor on Windows saves: refused, it would stop every commit after it on every
    // machine until someone found the invisible character.
    let (up, url) = fleet(Some("\u{feff}waves = 1, 100%\r\ninterval = 1h\r\n"));
    let (_, (host, m)) = canary_and_other(&url, &up);
    up.commit(&[("common/motd", "next\n")], "next");
    sync(&m, &url, host, 0, &["--watch", WATCH]).expect(0);
    assert_eq!(m.state_json()["waiting"]["wave"], 1);
}

// The review's findings: a lost state.json, a suspension, --apply always and a reverted change
// against the gate.

#[test]
fn a_lost_state_json_does_not_make_a_waiting_machine_a_canary() {
    let (up, url) = fleet(Some(ROLLOUT));
    let (_, (host, m)) = canary_and_other(&url, &up);
    let before = ran(&m).len();
    up.commit(&[("common/motd", "risky\n")], "risky");
    sync(&m, &url, host, 0, &["--watch", WATCH]).expect(0);
    assert!(m.state_json().get("waiting").is_some());
    std::fs::remove_file(m.state.join("state.json")).unwrap();
    // The store still records the applied commit: the tip is a new commit over it, paced.
    let run = sync(&m, &url, host, 0, &["--watch", WATCH]).expect(0);
    assert_eq!(ran(&m).len(), before, "{}", run.stderr);
    assert!(run.stderr.contains("waiting for wave 1"), "{}", run.stderr);
    // And another host's commit is still not this machine's.
    up.commit(&[("hosts/web-3/x", "x\n")], "web-3's");
    sync(&m, &url, host, 3700, &["--watch", WATCH]).expect(0);
    assert_eq!(
        ran(&m).len(),
        before + 1,
        "its wave came: the risky change runs once"
    );
}

#[test]
fn a_suspension_holds_back_only_what_would_run() {
    let (up, url) = fleet(Some(ROLLOUT));
    let (_, (host, m)) = canary_and_other(&url, &up);
    let before = ran(&m).len();
    m.run(&["suspend", "--for", "2h", "--reason", "maintenance"])
        .expect(0);
    // A commit this machine waits for, and one that is another host's: neither is held back
    // by the suspension, since neither would run now.
    let risky = up.commit(&[("common/motd", "risky\n")], "risky");
    let run = sync(&m, &url, host, 0, &["--watch", WATCH]).expect(0);
    let state = m.state_json();
    assert_eq!(
        state["last_pass"]["outcome"], "up-to-date",
        "{}",
        run.stderr
    );
    assert_eq!(state["waiting"]["commit"], risky.as_str());
    assert!(!run.stderr.contains("holds back"), "{}", run.stderr);
    // Its wave comes while suspended: now it would run, and the suspension holds it back.
    let run = sync(&m, &url, host, 3700, &["--watch", WATCH]).expect(0);
    assert_eq!(
        m.state_json()["last_pass"]["outcome"],
        "suspended",
        "{}",
        run.stderr
    );
    assert_eq!(ran(&m).len(), before);
    m.run(&["resume"]).expect(0);
    sync(&m, &url, host, 3700, &["--watch", WATCH]).expect(0);
    assert_eq!(ran(&m).len(), before + 1);
}

#[test]
fn apply_always_runs_the_applied_commit_while_the_tip_waits() {
    let (up, url) = fleet(Some(ROLLOUT));
    let (_, (host, m)) = canary_and_other(&url, &up);
    let applied = m.applied().unwrap();
    let before = ran(&m).len();
    let risky = up.commit(&[("common/motd", "risky\n")], "risky");
    let args = ["--watch", WATCH, "--apply", "always"];
    for _ in 0..2 {
        let run = sync(&m, &url, host, 0, &args).expect(0);
        assert!(run.stderr.contains("waiting for wave 1"), "{}", run.stderr);
    }
    let runs = ran(&m);
    assert_eq!(
        runs[before..],
        [format!("{host} {applied}"), format!("{host} {applied}")],
        "drift correction goes on with the applied commit"
    );
    let state = m.state_json();
    assert_eq!(state["applied"]["commit"], applied.as_str());
    assert_eq!(state["waiting"]["commit"], risky.as_str());
    // The plan says both, and exits 10: the entry point would run.
    let mut cmd = m.command();
    cmd.args(["plan", "--repo-url", &url, "--host", host])
        .args(args)
        .env("GITOPS_TEST_CLOCK_OFFSET", "0");
    let plan = Run::of(&mut cmd).expect(10);
    assert!(
        plan.stdout
            .contains("run the applied commit again meanwhile"),
        "{}",
        plan.stdout
    );
    sync(&m, &url, host, 3700, &args).expect(0);
    assert_eq!(ran(&m).last().unwrap(), &format!("{host} {risky}"));
}

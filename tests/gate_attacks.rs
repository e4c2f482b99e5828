//! The gate asked before the suspension, a reverted change held back while the branch moves
//! elsewhere, and `--apply always` running the applied commit while the tip waits for its wave:
//! attacked with a suspension, a failing applied commit and the notifications each sends.

use crate::fleet_attacks::{ran, ROLLOUT, WATCH};
use crate::harness::{chmod, Machine, Run};
use crate::receiver::Receiver;
use crate::support::Upstream;

/// An entry point that records its host and commit, and fails while $OUT/broken exists (the
/// machine's state, not the commit's).
const RECORDER: &str = "#!/bin/sh\necho \"$GITOPS_HOST $GITOPS_COMMIT\" >> \"$OUT/ran\"\n[ ! -e \"$OUT/broken\" ] || { echo broken; exit 1; }\n";
fn fleet() -> (Upstream, String) {
    let up = Upstream::new();
    up.commit(
        &[
            ("hosts/web-1/run.sh", RECORDER),
            ("hosts/web-2/run.sh", RECORDER),
            ("common/motd", "hello\n"),
            (".gitops/rollout", ROLLOUT),
        ],
        "two hosts",
    );
    let url = up.file_url();
    (up, url)
}

fn sync(m: &Machine, url: &str, host: &str, offset: i64, args: &[&str]) -> Run {
    let mut cmd = m.command();
    cmd.args(["sync", "--repo-url", url, "--host", host, "--watch", WATCH])
        .args(args)
        .env("GITOPS_TEST_CLOCK_OFFSET", offset.to_string());
    Run::of(&mut cmd)
}

fn plan(m: &Machine, url: &str, host: &str, offset: i64, args: &[&str]) -> Run {
    let mut cmd = m.command();
    cmd.args(["plan", "--repo-url", url, "--host", host, "--watch", WATCH])
        .args(args)
        .env("GITOPS_TEST_CLOCK_OFFSET", offset.to_string());
    Run::of(&mut cmd)
}

/// The machine of the two that is in the later wave, applied at a probe commit, telling
/// `hook` of everything in json.
fn waiting_machine(url: &str, up: &Upstream, hook: &str) -> (&'static str, Machine) {
    let machines = [("web-1", Machine::new()), ("web-2", Machine::new())];
    for (host, m) in &machines {
        sync(m, url, host, 0, &[]).expect(0);
    }
    up.commit(&[("common/motd", "probe\n")], "probe");
    for (host, m) in &machines {
        sync(m, url, host, 0, &[]).expect(0);
    }
    let (host, m) = machines
        .into_iter()
        .find(|(_, m)| m.state_json().get("waiting").is_some())
        .expect("one machine waits");
    sync(&m, url, host, 3700, &[]).expect(0);
    notify_to(&m, hook);
    (host, m)
}

fn events(r: &Receiver) -> Vec<serde_json::Value> {
    r.requests()
        .iter()
        .map(|req| serde_json::from_slice(&req.body).unwrap())
        .collect()
}

fn kinds(r: &Receiver) -> Vec<String> {
    events(r)
        .iter()
        .map(|e| e["event"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_suspension_under_apply_always_does_not_say_it_holds_back_a_tip_that_waits_for_its_wave() {
    let hook = Receiver::start(vec![]);
    let (up, url) = fleet();
    let (host, m) = waiting_machine(&url, &up, &hook.url("/hook"));
    m.run(&["suspend", "--for", "2h"]).expect(0);
    let risky = up.commit(&[("common/motd", "risky\n")], "risky");
    let always = ["--apply", "always"];
    for _ in 0..2 {
        let run = sync(&m, &url, host, 0, &always).expect(0);
        assert!(
            !run.stderr
                .contains(&format!("not applying {}", &risky[..12])),
            "the tip waits for its wave whatever the suspension: {}",
            run.stderr
        );
    }
    assert_eq!(m.state_json()["last_pass"]["outcome"], "suspended");
    assert_eq!(kinds(&hook), ["suspended"], "{:?}", events(&hook));
    // Its wave comes while suspended: now the suspension holds it back, and says so once.
    for _ in 0..2 {
        sync(&m, &url, host, 3700, &always).expect(0);
    }
    let got = events(&hook);
    assert_eq!(kinds(&hook), ["suspended", "suspend-blocked"], "{got:?}");
    assert_eq!(got[1]["commit"], risky.as_str());
}

#[test]
fn a_failing_applied_commit_run_again_while_the_tip_waits_counts_its_attempts() {
    let hook = Receiver::start(vec![]);
    let (up, url) = fleet();
    let (host, m) = waiting_machine(&url, &up, &hook.url("/hook"));
    let applied = m.applied().unwrap();
    let risky = up.commit(&[("common/motd", "risky\n")], "risky");
    std::fs::write(m.out.join("broken"), "").unwrap();
    let always = ["--apply", "always", "--on-failure", "revert"];
    for attempt in 1..=2 {
        let run = sync(&m, &url, host, 0, &always);
        assert_eq!(run.code, 1, "{}", run.stderr);
        let state = m.state_json();
        assert_eq!(
            state["last_pass"]["outcome"], "apply-failed",
            "{}",
            run.stderr
        );
        assert_eq!(state["applied"]["commit"], applied.as_str());
        assert_eq!(state["pending"]["commit"], applied.as_str());
        assert_eq!(state["pending"]["attempts"], attempt);
        assert!(state["pending"].get("reverted_at").is_none(), "{state}");
        assert_eq!(state["waiting"]["commit"], risky.as_str(), "{state}");
    }
    let got = events(&hook);
    // Told once (which commit it names is event.rs's `subject_of`, out of this file's reach).
    assert_eq!(kinds(&hook), ["apply-failed"], "{got:?}");
    // The plan says what the next pass does: run the applied commit (exit 10).
    plan(&m, &url, host, 0, &always).expect(10);
    // At its wave the tip runs, on a machine repaired meanwhile, and that is told.
    std::fs::remove_file(m.out.join("broken")).unwrap();
    let run = sync(&m, &url, host, 3700, &always).expect(0);
    assert!(
        run.stderr.contains("new commit, attempt 1"),
        "{}",
        run.stderr
    );
    assert_eq!(ran(&m).last().unwrap(), &format!("{host} {risky}"));
    let state = m.state_json();
    assert_eq!(state["applied"]["commit"], risky.as_str());
    assert!(state["pending"].is_null(), "{state}");
    assert!(state["waiting"].is_null(), "{state}");
    assert_eq!(kinds(&hook), ["apply-failed", "applied"]);
}

#[test]
fn the_plan_under_apply_always_while_the_tip_waits_reads_the_reboot_request_of_the_applied_commit()
{
    let hook = Receiver::start(vec![]);
    let (up, url) = fleet();
    let (host, m) = waiting_machine(&url, &up, &hook.url("/hook"));
    let applied = m.applied().unwrap();
    let risky = up.commit(&[("common/motd", "risky\n")], "risky");
    let always = ["--apply", "always"];
    let mut args = always.to_vec();
    args.push("--json");
    let v: serde_json::Value =
        serde_json::from_str(&plan(&m, &url, host, 0, &args).expect(10).stdout).unwrap();
    assert_eq!(v["tip"]["commit"], risky.as_str());
    // After the pass the applied commit is still the applied one: its request is what counts.
    assert_eq!(v["reboot"]["commit"], applied.as_str(), "{v}");
    // And it runs it as --apply always does, attempt 1, as the pass says it.
    assert_eq!(v["reason"], "always", "{v}");
    assert_eq!(v["attempt"], 1, "{v}");
    sync(&m, &url, host, 0, &always).expect(0);
    assert_eq!(m.applied().unwrap(), applied);
}

fn notify_to(m: &Machine, hook: &str) {
    let file = m.dir.path().join("notify-url");
    std::fs::write(&file, format!("{hook}\n")).unwrap();
    chmod(&file, 0o600);
    std::fs::write(
        &m.config,
        format!(
            "GITOPS_NOTIFY_URL_FILE={}\nGITOPS_NOTIFY_FORMAT=json\n",
            file.display()
        ),
    )
    .unwrap();
}

#[test]
fn a_held_change_is_told_once_not_as_suspended_and_the_plan_agrees_with_each_pass() {
    let hook = Receiver::start(vec![]);
    let up = Upstream::new();
    up.commit(
        &[("hosts/web-1/run.sh", RECORDER), ("common/motd", "hello\n")],
        "one host",
    );
    let url = up.file_url();
    let m = Machine::new();
    let host = "web-1";
    let revert = ["--on-failure", "revert", "--retry-reverted", "1h"];
    sync(&m, &url, host, 0, &revert).expect(0);
    let good = m.applied().unwrap();
    notify_to(&m, &hook.url("/hook"));
    let bad = up.commit(
        &[("hosts/web-1/run.sh", "#!/bin/sh\necho bad; exit 1\n")],
        "bad",
    );
    let run = sync(&m, &url, host, 0, &revert);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(kinds(&hook), ["reverted"]);
    m.run(&["suspend", "--for", "2h"]).expect(0);
    // Other hosts' commits keep coming, while suspended: the reverted change is held, as
    // itself, not as a suspended apply; told once.
    for n in 0..3 {
        let other = up.commit(&[("hosts/web-2/n", &format!("{n}\n"))], "other");
        let p = plan(&m, &url, host, 0, &revert).expect(0);
        assert!(p.stdout.contains("would hold"), "{}", p.stdout);
        let run = sync(&m, &url, host, 0, &revert);
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(run.stderr.contains(&other[..12]), "{}", run.stderr);
        assert!(run.stderr.contains(&bad[..12]), "{}", run.stderr);
        let state = m.state_json();
        assert_eq!(state["last_pass"]["outcome"], "reverted");
        assert_eq!(state["pending"]["commit"], bad.as_str());
        assert_eq!(state["applied"]["commit"], good.as_str());
    }
    assert_eq!(
        kinds(&hook),
        ["reverted", "suspended"],
        "{:?}",
        events(&hook)
    );
    m.run(&["resume"]).expect(0);
    // An hour on, --retry-reverted tries the change again at the tip: the plan says so (10).
    let p = plan(&m, &url, host, 3700, &revert).expect(10);
    let run = sync(&m, &url, host, 3700, &revert);
    assert_eq!(run.code, 1, "{} / {}", p.stdout, run.stderr);
    assert_eq!(m.state_json()["applied"]["commit"], good.as_str());
    // A fix, under another host's commit after it: applied, told, and nothing held.
    let fixed = format!("{RECORDER}# fixed\n");
    up.commit(&[("hosts/web-1/run.sh", &fixed)], "fix");
    let tip = up.commit(&[("hosts/web-2/n", "later\n")], "other");
    plan(&m, &url, host, 3700, &revert).expect(10);
    sync(&m, &url, host, 3700, &revert).expect(0);
    assert_eq!(m.applied().unwrap(), tip);
    assert_eq!(ran(&m).last().unwrap(), &format!("{host} {tip}"));
    assert_eq!(
        kinds(&hook).last().unwrap(),
        "applied",
        "{:?}",
        kinds(&hook)
    );
}

#[test]
fn a_lost_state_json_under_apply_always_runs_the_stores_applied_commit_while_the_tip_waits() {
    let hook = Receiver::start(vec![]);
    let (up, url) = fleet();
    let (host, m) = waiting_machine(&url, &up, &hook.url("/hook"));
    let applied = m.applied().unwrap();
    let risky = up.commit(&[("common/motd", "risky\n")], "risky");
    std::fs::remove_file(m.state.join("state.json")).unwrap();
    let always = ["--apply", "always"];
    plan(&m, &url, host, 0, &always).expect(10);
    let run = sync(&m, &url, host, 0, &always).expect(0);
    assert!(run.stderr.contains("waiting for wave 1"), "{}", run.stderr);
    assert_eq!(ran(&m).last().unwrap(), &format!("{host} {applied}"));
    let state = m.state_json();
    assert_eq!(state["applied"]["commit"], applied.as_str(), "{state}");
    assert_eq!(state["waiting"]["commit"], risky.as_str(), "{state}");
    // Without --apply always, the same: nothing runs, and the tip still waits.
    std::fs::remove_file(m.state.join("state.json")).unwrap();
    let before = ran(&m).len();
    plan(&m, &url, host, 0, &[]).expect(0);
    sync(&m, &url, host, 0, &[]).expect(0);
    assert_eq!(ran(&m).len(), before);
    sync(&m, &url, host, 3700, &[]).expect(0);
    assert_eq!(ran(&m).last().unwrap(), &format!("{host} {risky}"));
}

//! A fleet of 20 machines against one served repository: each runs only its part, a commit
//! reaches the machines it concerns, and a rollout reaches them wave by wave, each exactly once.
//! Run with `--nocapture` to see the simulation's table.

use crate::harness::{Machine, Run};
use crate::support::{GitDaemon, Upstream};

const MACHINES: usize = 20;
/// Records the host and commit of every run.
const RECORDER: &str = "#!/bin/sh\necho \"$GITOPS_HOST $GITOPS_COMMIT\" >> \"$OUT/ran\"\n";

struct Fleet {
    up: Upstream,
    _daemon: GitDaemon,
    url: String,
    machines: Vec<(String, Machine)>,
}

impl Fleet {
    fn new() -> Fleet {
        let up = Upstream::new();
        let mut files: Vec<(String, String)> = (1..=MACHINES)
            .map(|i| (format!("hosts/web-{i:02}/run.sh"), RECORDER.to_string()))
            .collect();
        files.push(("common/motd".into(), "welcome\n".into()));
        let files: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect();
        up.commit(&files, "twenty hosts");
        let daemon = GitDaemon::serve(&up.srv());
        let url = daemon.url("config.git");
        let machines = (1..=MACHINES)
            .map(|i| (format!("web-{i:02}"), Machine::new()))
            .collect();
        Fleet {
            up,
            _daemon: daemon,
            url,
            machines,
        }
    }

    /// One pass on every machine, `offset` seconds from now; the hosts that ran `commit`.
    fn pass(&self, offset: i64, commit: &str) -> Vec<String> {
        let (ran, codes) = self.pass_with(offset, commit, &[]);
        assert!(codes.iter().all(|c| *c == 0), "exit codes {codes:?}");
        ran
    }

    /// One pass on every machine with `extra` options: the hosts that ran `commit`, and every
    /// machine's exit code.
    fn pass_with(&self, offset: i64, commit: &str, extra: &[&str]) -> (Vec<String>, Vec<i32>) {
        let mut ran = Vec::new();
        let mut codes = Vec::new();
        for (i, (host, m)) in self.machines.iter().enumerate() {
            let before = runs_of(m, commit);
            let mut cmd = m.command();
            cmd.args([
                "sync",
                "--repo-url",
                &self.url,
                "--watch",
                "hosts/{host}/ common/",
            ])
            .args(extra)
            .env("GITOPS_HOST", host)
            .env("GITOPS_TEST_MACHINE_ID", format!("{:032x}", i + 1))
            .env("GITOPS_TEST_CLOCK_OFFSET", offset.to_string());
            codes.push(Run::of(&mut cmd).code);
            if runs_of(m, commit) > before {
                ran.push(host.clone());
            }
        }
        (ran, codes)
    }

    /// `gitops plan` on machine `i`, as its passes run it.
    fn plan(&self, i: usize, json: bool) -> Run {
        let (host, m) = &self.machines[i];
        let mut cmd = m.command();
        cmd.args([
            "plan",
            "--repo-url",
            &self.url,
            "--watch",
            "hosts/{host}/ common/",
        ])
        .env("GITOPS_HOST", host)
        .env("GITOPS_TEST_MACHINE_ID", format!("{:032x}", i + 1));
        if json {
            cmd.arg("--json");
        }
        Run::of(&mut cmd)
    }

    /// How many times each machine ran `commit`.
    fn counts(&self, commit: &str) -> Vec<usize> {
        self.machines
            .iter()
            .map(|(_, m)| runs_of(m, commit))
            .collect()
    }
}

fn runs_of(m: &Machine, commit: &str) -> usize {
    std::fs::read_to_string(m.out.join("ran"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.ends_with(commit))
        .count()
}

fn show(hosts: &[String]) -> String {
    match hosts.len() {
        0 => "none".to_string(),
        MACHINES => format!("all {MACHINES}"),
        n => format!("{n}: {}", hosts.join(" ")),
    }
}

#[test]
fn twenty_machines_run_their_own_part_and_a_rollout_goes_wave_by_wave() {
    let fleet = Fleet::new();
    let first = fleet.up.commit(&[], "first apply");
    let ran = fleet.pass(0, &first);
    println!("{:<44} {}", "first apply", show(&ran));
    assert_eq!(ran.len(), MACHINES);

    let own = fleet
        .up
        .commit(&[("hosts/web-03/app.conf", "port 8080\n")], "web-03 only");
    let ran = fleet.pass(0, &own);
    println!("{:<44} {}", "a commit under hosts/web-03/", show(&ran));
    assert_eq!(ran, ["web-03"]);

    let common = fleet
        .up
        .commit(&[("common/motd", "welcome back\n")], "everyone");
    let ran = fleet.pass(0, &common);
    println!("{:<44} {}", "a commit under common/", show(&ran));
    assert_eq!(ran.len(), MACHINES);

    let rollout = fleet.up.commit(
        &[(
            ".gitops/rollout",
            "waves = 1, 50%, 100%\ninterval = 30min\n",
        )],
        "roll out in waves",
    );
    let ran = fleet.pass(0, &rollout);
    println!(
        "{:<44} {}",
        "the commit that adds .gitops/rollout",
        show(&ran)
    );
    assert_eq!(
        ran.len(),
        MACHINES,
        "a change to the rollout goes everywhere at once"
    );

    let risky = fleet
        .up
        .commit(&[("common/motd", "a risky change\n")], "risky");
    let mut reached = 0;
    #[rustfmt::skip]
    let steps: &[(i64, &str, usize)] = &[
        // clock          what                          machines that have it after
        (0,           "risky, +0min (wave 0)",       1),
        (20 * 60,     "risky, +20min",               1),
        (31 * 60,     "risky, +31min (wave 1)",      10),
        (45 * 60,     "risky, +45min",               10),
        (61 * 60,     "risky, +61min (wave 2)",      20),
        (120 * 60,    "risky, +120min",              20),
    ];
    for (offset, what, total) in steps {
        let ran = fleet.pass(*offset, &risky);
        reached += ran.len();
        println!("{what:<44} {} (reached {reached})", show(&ran));
        assert_eq!(reached, *total, "{what}");
    }
    // During a rollout, a commit to one host's own directory is that host's alone: at once.
    let own = fleet
        .up
        .commit(&[("hosts/web-07/app.conf", "port 8081\n")], "web-07 only");
    let ran = fleet.pass(0, &own);
    println!(
        "{:<44} {}",
        "a commit under hosts/web-07/, rollout on",
        show(&ran)
    );
    assert_eq!(ran, ["web-07"]);
    assert!(
        fleet.counts(&risky).iter().all(|n| *n == 1),
        "each machine ran the risky commit exactly once: {:?}",
        fleet.counts(&risky)
    );
    // A waiting machine says when.
    let (_, late) = &fleet.machines[0];
    let status = late.run(&["status"]);
    assert!(status.stdout.contains("applied:"), "{}", status.stdout);
}

#[test]
fn a_waiting_machine_says_its_wave_and_when_in_status_and_plan() {
    let fleet = Fleet::new();
    fleet.up.commit(
        &[(".gitops/rollout", "waves = 1, 100%\ninterval = 2h\n")],
        "two waves",
    );
    fleet.pass(0, "-");
    let next = fleet.up.commit(&[("common/motd", "next\n")], "next");
    let ran = fleet.pass(0, &next);
    assert_eq!(ran.len(), 1);
    let i = fleet
        .machines
        .iter()
        .position(|(h, _)| !ran.contains(h))
        .unwrap();
    let (host, m) = &fleet.machines[i];
    let state = m.state_json();
    assert_eq!(state["waiting"]["commit"], next.as_str(), "{host}");
    assert_eq!(state["waiting"]["wave"], 1);
    let status = m.run(&["status"]).expect(0);
    println!("{}", status.stdout);
    assert!(
        status.stdout.contains(&format!(
            "waiting:      {} \"next\" for wave 1 at",
            &next[..12]
        )) && (status.stdout.contains("(in 1h 59min;") || status.stdout.contains("(in 2h;")),
        "{}",
        status.stdout
    );
    let plan = fleet.plan(i, false).expect(0);
    println!("{}", plan.stdout);
    assert!(
        plan.stdout.contains(&format!(
            "gitops plan: the next sync would wait for wave 1 at {}: {} reaches this machine then; nothing would run",
            state["waiting"]["at"].as_str().unwrap(),
            &next[..12]
        )) && plan
            .stdout
            .contains("rollout:     this machine is in wave 1 (waves 0 to 1), which begins at"),
        "{}",
        plan.stdout
    );
    let json = fleet.plan(i, true).expect(0);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(json["gate"]["verdict"], "wait");
    assert_eq!(json["gate"]["rollout"]["wave"], 1);
    assert_eq!(json["outcome"], "up-to-date");
    // A commit that concerns another host only: on the canary, which has everything before
    // it, the plan says it would skip.
    let other = fleet
        .up
        .commit(&[("hosts/nobody/x", "x\n")], "someone else's");
    let canary = fleet.machines.iter().position(|(h, _)| *h == ran[0]);
    let host = &ran[0];
    let plan = fleet.plan(canary.unwrap(), false).expect(0);
    assert!(
        plan.stdout
            .contains(&format!("the next sync would skip {}", &other[..12]))
            && plan
                .stdout
                .contains(&format!("no change under hosts/{host}/ common/")),
        "{}",
        plan.stdout
    );
}

#[test]
fn a_bad_commit_stops_at_its_canary_when_the_fix_comes_before_the_next_wave() {
    let fleet = Fleet::new();
    let revert = ["--on-failure", "revert"];
    let start = fleet.up.commit(
        &[
            (".gitops/rollout", "waves = 1, 100%\ninterval = 1h\n"),
            (".gitops/health", "#!/bin/sh\n! grep -q BAD common/motd\n"),
        ],
        "waves, and a health check",
    );
    let (ran, _) = fleet.pass_with(0, &start, &revert);
    assert_eq!(ran.len(), MACHINES);
    let bad = fleet.up.commit(&[("common/motd", "BAD\n")], "a bad motd");
    let (ran, codes) = fleet.pass_with(0, &bad, &revert);
    println!("{:<44} {}", "bad, +0min: the canary", show(&ran));
    assert_eq!(ran.len(), 1, "the canary alone tries it");
    let canary = fleet
        .machines
        .iter()
        .position(|(h, _)| *h == ran[0])
        .unwrap();
    assert_eq!(codes[canary], 1, "the canary's pass fails: reverted");
    assert_eq!(
        fleet.machines[canary].1.state_json()["pending"]["outcome"],
        "reverted"
    );
    assert_eq!(codes.iter().filter(|c| **c == 0).count(), MACHINES - 1);
    // Other hosts' commits keep coming: the canary keeps the bad change held back (exit 1,
    // nothing run), and no one else runs them before their wave.
    let theirs = fleet
        .up
        .commit(&[("hosts/web-05/app.conf", "port 1\n")], "web-05's");
    let (ran, codes) = fleet.pass_with(5 * 60, &theirs, &revert);
    println!("{:<44} {}", "another host's commit, +5min", show(&ran));
    assert!(ran.is_empty(), "{ran:?}");
    assert_eq!(codes[canary], 1);
    assert_eq!(fleet.counts(&bad).iter().sum::<usize>(), 1);
    // The operator sees the canary's revert and pushes a fix before the next wave.
    let fix = fleet
        .up
        .commit(&[("common/motd", "good again\n")], "fix the motd");
    let (ran, _) = fleet.pass_with(10 * 60, &fix, &revert);
    println!(
        "{:<44} {}",
        "the fix, pushed at once; +10min: the canary",
        show(&ran)
    );
    assert_eq!(ran, [fleet.machines[canary].0.clone()]);
    // The next wave begins an hour after the fix (committed at +0), and gets the fix, never
    // the bad commit.
    let (ran, _) = fleet.pass_with(50 * 60, &fix, &revert);
    assert!(ran.is_empty(), "{ran:?}");
    let (ran, codes) = fleet.pass_with(61 * 60, &fix, &revert);
    println!(
        "{:<44} {}",
        "fix, +61min (wave 1): everyone else",
        show(&ran)
    );
    assert_eq!(ran.len(), MACHINES - 1);
    assert!(codes.iter().all(|c| *c == 0), "{codes:?}");
    assert_eq!(
        fleet.counts(&bad).iter().sum::<usize>(),
        1,
        "only the canary ran it"
    );
    assert!(fleet.counts(&fix).iter().all(|n| *n == 1));
}

//! Reboots declared in Git, against this machine's real clock and boot (never rebooted: the
//! reboot command is a recorder): a request due after this boot is carried out exactly once,
//! one older than the boot never, a withdrawn one not at all, a bad one is told, never obeyed.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use time::OffsetDateTime;

use crate::harness::{Machine, Run};
use crate::receiver::Receiver;
use crate::support::{GitDaemon, Upstream};

const RUN_SH: &str = "#!/bin/sh\necho applied\n";

/// To the second, as requests are usually written.
fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// This boot's time, as the kernel says it.
fn booted_at() -> OffsetDateTime {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let secs: i64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    OffsetDateTime::from_unix_timestamp(secs).unwrap()
}

/// A time after this boot and before now: a request that is due.
fn due() -> String {
    let boot = booted_at();
    let now = OffsetDateTime::now_utc();
    rfc3339(boot + (now - boot) / 2)
}

/// A reboot command that records each call in $OUT/reboots and returns, like a
/// `systemctl reboot` that did not reboot.
fn recorder(m: &Machine, exit: i32) -> PathBuf {
    let path = m.dir.path().join("reboot-recorder");
    std::fs::write(
        &path,
        format!("#!/bin/sh\necho \"reboot $*\" >> \"$OUT/reboots\"\nexit {exit}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn reboots(m: &Machine) -> usize {
    std::fs::read_to_string(m.out.join("reboots"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// The guards a test machine cannot meet deterministically (it may have just booted, its
/// clock may not be synchronised) are turned off; the plan's table tests cover them.
fn reboot_env(m: &Machine, exit: i32) -> String {
    format!(
        "GITOPS_REBOOT_COMMAND={}\nGITOPS_REBOOT_MIN_UPTIME=0\nGITOPS_REBOOT_REQUIRE_CLOCK_SYNC=false\n",
        recorder(m, exit).display()
    )
}

fn plan(m: &Machine, args: &[&str]) -> Run {
    let mut cmd = m.command();
    cmd.arg("reboot-plan").args(args);
    Run::of(&mut cmd)
}

#[test]
fn reboot_plan_against_this_machine_s_clock_and_boot() {
    let m = Machine::new();
    std::fs::write(&m.config, reboot_env(&m, 0)).unwrap();
    let before_boot = rfc3339(booted_at() - time::Duration::hours(1));
    let run = plan(&m, &["--at", &before_boot, "--json"]).expect(0);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["decision"], "satisfied", "{json}");
    assert_eq!(json["booted_at"], rfc3339(booted_at()));

    let tomorrow = rfc3339(OffsetDateTime::now_utc() + time::Duration::days(1));
    let run = plan(&m, &["--at", &tomorrow, "--json"]).expect(0);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["decision"], "scheduled", "{json}");
    assert_eq!(json["reboot_at"], tomorrow.as_str());

    let due = due();
    let run = plan(&m, &["--at", &due, "--dry-run"]).expect(0);
    assert!(run.stdout.starts_with("reboot-now: "), "{}", run.stdout);
    assert_eq!(reboots(&m), 0, "a dry run never reboots");
    plan(&m, &["--at", &due]).expect(0);
    assert_eq!(reboots(&m), 1);
    let run = plan(&m, &["--at", &due]).expect(0);
    assert!(run.stdout.starts_with("blocked: "), "{}", run.stdout);
    assert!(!run.stdout.contains("blocked: blocked"), "{}", run.stdout);
    assert!(run.stdout.contains("still up"), "{}", run.stdout);
    assert_eq!(reboots(&m), 1, "asked once in this boot, never again");

    // Local time as the article's `date -d` took it, and a time that is not one.
    let local = plan(&m, &["--at", "2000-01-01 00:00", "--dry-run"]).expect(0);
    assert!(local.stdout.starts_with("satisfied: "), "{}", local.stdout);
    let bad = plan(&m, &["--at", "next tuesday"]).expect(2);
    assert!(
        bad.error_line().contains("RFC 3339"),
        "{}",
        bad.error_line()
    );
}

struct Served {
    up: Upstream,
    _daemon: GitDaemon,
    url: String,
}

fn served(request: Option<&str>) -> Served {
    let up = Upstream::new();
    let mut files = vec![("run.sh", RUN_SH)];
    if let Some(request) = request {
        files.push((".gitops/reboot", request));
    }
    up.commit(&files, "first");
    let daemon = GitDaemon::serve(&up.srv());
    let url = daemon.url("config.git");
    Served {
        up,
        _daemon: daemon,
        url,
    }
}

fn events(r: &Receiver) -> Vec<String> {
    r.requests()
        .iter()
        .map(|req| {
            let e: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
            e["event"].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn a_committed_request_reboots_exactly_once_and_never_again_after_the_boot() {
    let request = format!(
        "# the article's schedule_reboot, as one line\nafter = {}\n",
        due()
    );
    let s = served(Some(&request));
    let m = Machine::new();
    let r = Receiver::start(vec![]);
    std::fs::write(
        &m.config,
        format!(
            "{}GITOPS_NOTIFY_URL={}\nGITOPS_NOTIFY_FORMAT=json\n",
            reboot_env(&m, 0),
            r.url("/hook")
        ),
    )
    .unwrap();
    for _ in 0..3 {
        m.sync(&s.url, &[]).expect(0);
    }
    assert_eq!(reboots(&m), 1, "exactly one reboot asked over three passes");
    assert_eq!(events(&r), ["applied", "reboot", "reboot-failed"]);
    let state = m.state_json();
    assert_eq!(state["reboot"]["decision"], "blocked", "{state}");
    let status = m.run(&["status"]);
    assert!(
        status.stdout.contains("reboot:       blocked: "),
        "{}",
        status.stdout
    );
    assert!(
        !status.stdout.contains("blocked: blocked"),
        "{}",
        status.stdout
    );
    let metrics = m.run(&["status", "--prometheus"]).stdout;
    assert!(
        metrics.contains("gitops_reboot_plan{decision=\"blocked\"} 1\n"),
        "{metrics}"
    );

    // The machine rebooted: another boot id is in the record. From now on, satisfied.
    let mut state = m.state_json();
    state["reboot"]["asked"]["boot_id"] = "00000000-another-boot".into();
    std::fs::write(
        m.state.join("state.json"),
        serde_json::to_vec(&state).unwrap(),
    )
    .unwrap();
    for _ in 0..2 {
        m.sync(&s.url, &[]).expect(0);
    }
    assert_eq!(reboots(&m), 1);
    assert_eq!(m.state_json()["reboot"]["decision"], "satisfied");
}

#[test]
fn a_request_older_than_the_boot_or_withdrawn_never_reboots() {
    let old = format!(
        "after = {}\n",
        rfc3339(booted_at() - time::Duration::days(1))
    );
    let s = served(Some(&old));
    let m = Machine::new();
    std::fs::write(&m.config, reboot_env(&m, 0)).unwrap();
    m.sync(&s.url, &[]).expect(0);
    assert_eq!(m.state_json()["reboot"]["decision"], "satisfied");

    let later = format!(
        "after = {}\n",
        rfc3339(OffsetDateTime::now_utc() + time::Duration::days(2))
    );
    s.up.commit(
        &[(".gitops/reboot", &later)],
        "reboot the day after tomorrow",
    );
    m.sync(&s.url, &[]).expect(0);
    assert_eq!(m.state_json()["reboot"]["decision"], "scheduled");
    s.up.remove(".gitops/reboot", "no reboot after all");
    m.sync(&s.url, &[]).expect(0);
    assert_eq!(m.state_json()["reboot"]["decision"], "none");
    assert_eq!(reboots(&m), 0);
}

#[test]
fn a_bad_request_is_recorded_and_told_never_obeyed() {
    let s = served(Some("after = tomorrow\n"));
    let m = Machine::new();
    let r = Receiver::start(vec![]);
    std::fs::write(
        &m.config,
        format!(
            "{}GITOPS_NOTIFY_URL={}\nGITOPS_NOTIFY_FORMAT=json\n",
            reboot_env(&m, 0),
            r.url("/hook")
        ),
    )
    .unwrap();
    let run = m.sync(&s.url, &[]).expect(0);
    assert!(run.stderr.contains("reboot request"), "{}", run.stderr);
    m.sync(&s.url, &[]).expect(0);
    assert_eq!(events(&r), ["applied", "reboot-invalid"], "told once");
    let state = m.state_json();
    assert_eq!(state["reboot"]["decision"], "invalid");
    assert!(state["reboot"]["reason"]
        .as_str()
        .unwrap()
        .contains("line 1"));
    assert_eq!(reboots(&m), 0);

    // A symlink to a file of this machine is refused without reading it.
    let secret = m.dir.path().join("secret");
    std::fs::write(
        &secret,
        "after = 2000-01-01T00:00:00Z\nroot-password-hash\n",
    )
    .unwrap();
    s.up.commit_symlink(".gitops/reboot", secret.to_str().unwrap(), "link it");
    let run = m.sync(&s.url, &[]).expect(0);
    let state = m.state_json();
    assert_eq!(state["reboot"]["decision"], "invalid");
    assert!(state["reboot"]["reason"]
        .as_str()
        .unwrap()
        .contains("symlink"));
    assert!(!run.stderr.contains("root-password-hash"));
    assert_eq!(reboots(&m), 0);

    s.up.remove(".gitops/reboot", "no request");
    m.sync(&s.url, &[]).expect(0);
    assert_eq!(m.state_json()["reboot"]["decision"], "none");
}

#[test]
fn a_reboot_command_that_fails_is_said_and_not_repeated() {
    let s = served(Some(&format!("after = {}\n", due())));
    let m = Machine::new();
    std::fs::write(&m.config, reboot_env(&m, 1)).unwrap();
    let run = m.sync(&s.url, &[]).expect(0);
    assert!(run.stderr.contains("reboot command"), "{}", run.stderr);
    m.sync(&s.url, &[]).expect(0);
    assert_eq!(reboots(&m), 1);
    assert_eq!(m.state_json()["reboot"]["decision"], "blocked");
}

#[test]
fn a_fleet_lock_of_two_lets_two_of_five_machines_reboot_at_a_time() {
    let server = crate::fleetlock_server::FleetLockServer::start(2);
    let s = served(Some(&format!("after = {}\ngroup = web\n", due())));
    let machines: Vec<Machine> = (1..=5)
        .map(|i| {
            let m = Machine::new();
            let id = m.dir.path().join("machine-id");
            std::fs::write(&id, format!("{i:032x}\n")).unwrap();
            std::fs::write(
                &m.config,
                format!(
                    "{}GITOPS_FLEET_LOCK_URL={}\nGITOPS_MACHINE_ID_FILE={}\n",
                    reboot_env(&m, 0),
                    server.url(),
                    id.display()
                ),
            )
            .unwrap();
            m
        })
        .collect();
    let all_at_once = |machines: &[&Machine]| {
        let children: Vec<_> = machines
            .iter()
            .map(|m| m.spawn(&["sync", "--repo-url", &s.url]))
            .collect();
        for child in children {
            Run::within(child, std::time::Duration::from_secs(60)).expect(0);
        }
    };
    all_at_once(&machines.iter().collect::<Vec<_>>());
    assert_eq!(server.max_held(), 2, "never more than two hold the lock");
    let (rebooted, waiting): (Vec<&Machine>, Vec<&Machine>) =
        machines.iter().partition(|m| reboots(m) == 1);
    assert_eq!(rebooted.len(), 2);
    for m in &waiting {
        let state = m.state_json();
        assert_eq!(state["reboot"]["decision"], "blocked");
        assert!(
            state["reboot"]["reason"]
                .as_str()
                .unwrap()
                .contains("fleet lock"),
            "{state}"
        );
    }

    // The two come back (another boot id): their next pass releases the lock, and the next
    // passes of the others take it, two at a time, until every machine has rebooted once.
    for m in &rebooted {
        let mut state = m.state_json();
        state["reboot"]["asked"]["boot_id"] = "00000000-another-boot".into();
        std::fs::write(
            m.state.join("state.json"),
            serde_json::to_vec(&state).unwrap(),
        )
        .unwrap();
    }
    for _ in 0..3 {
        all_at_once(&machines.iter().collect::<Vec<_>>());
        for m in machines.iter().filter(|m| reboots(m) == 1) {
            let mut state = m.state_json();
            if state["reboot"]["asked"]["boot_id"] != "00000000-another-boot" {
                state["reboot"]["asked"]["boot_id"] = "00000000-another-boot".into();
                std::fs::write(
                    m.state.join("state.json"),
                    serde_json::to_vec(&state).unwrap(),
                )
                .unwrap();
            }
        }
    }
    assert_eq!(server.max_held(), 2);
    for m in &machines {
        assert_eq!(reboots(m), 1, "each machine rebooted exactly once");
    }
    all_at_once(&machines.iter().collect::<Vec<_>>());
    assert!(server.holders().is_empty(), "{:?}", server.holders());
}

#[test]
fn a_state_json_found_unreadable_after_the_ask_does_not_ask_again_in_this_boot() {
    let s = served(Some(&format!("after = {}\n", due())));
    let m = Machine::new();
    std::fs::write(&m.config, reboot_env(&m, 0)).unwrap();
    m.sync(&s.url, &[]).expect(0);
    assert_eq!(reboots(&m), 1);
    // Moved aside by the next pass, which starts from a fresh state: the reboot asked for in
    // this boot is still known, from its copy beside state.json.
    std::fs::write(m.state.join("state.json"), "{ torn").unwrap();
    let run = m.sync(&s.url, &[]).expect(0);
    assert!(run.stderr.contains("moved it to"), "{}", run.stderr);
    assert_eq!(reboots(&m), 1, "never a second reboot command in one boot");
    let state = m.state_json();
    assert_eq!(state["reboot"]["decision"], "blocked", "{state}");
    assert!(
        state["reboot"]["reason"]
            .as_str()
            .unwrap()
            .contains("still up"),
        "{state}"
    );
}

#[test]
fn a_blank_reboot_command_is_a_usage_error_before_anything_is_asked() {
    let m = Machine::new();
    std::fs::write(&m.config, reboot_env(&m, 0)).unwrap();
    let run = plan(&m, &["--reboot-command", "  ", "--at", &due()]).expect(2);
    assert!(
        run.error_line().contains("reboot command is blank"),
        "{}",
        run.error_line()
    );
    assert_eq!(reboots(&m), 0);
    assert!(m.state_bytes().is_none(), "nothing recorded");
}

#[test]
fn a_fleet_lock_is_kept_while_the_reboot_asked_for_may_still_come() {
    // One slot: a machine whose reboot command returned (as `shutdown -r +5` does) keeps the
    // lock on its next passes in the same boot, so the other does not go down with it.
    let server = crate::fleetlock_server::FleetLockServer::start(1);
    let s = served(Some(&format!("after = {}\n", due())));
    let machines: Vec<Machine> = (1..=2)
        .map(|i| {
            let m = Machine::new();
            let id = m.dir.path().join("machine-id");
            std::fs::write(&id, format!("{i:032x}\n")).unwrap();
            std::fs::write(
                &m.config,
                format!(
                    "{}GITOPS_FLEET_LOCK_URL={}\nGITOPS_MACHINE_ID_FILE={}\n",
                    reboot_env(&m, 0),
                    server.url(),
                    id.display()
                ),
            )
            .unwrap();
            m
        })
        .collect();
    machines[0].sync(&s.url, &[]).expect(0);
    assert_eq!(reboots(&machines[0]), 1);
    for _ in 0..2 {
        machines[0].sync(&s.url, &[]).expect(0);
        machines[1].sync(&s.url, &[]).expect(0);
    }
    assert_eq!(
        reboots(&machines[1]),
        0,
        "the lock was given back too early"
    );
    assert_eq!(server.holders().len(), 1);

    // Long overdue: released, and the other machine takes its turn.
    let mut state = machines[0].state_json();
    state["reboot"]["asked"]["asked_at"] =
        rfc3339(OffsetDateTime::now_utc() - time::Duration::hours(1)).into();
    std::fs::write(
        machines[0].state.join("state.json"),
        serde_json::to_vec(&state).unwrap(),
    )
    .unwrap();
    machines[0].sync(&s.url, &[]).expect(0);
    machines[1].sync(&s.url, &[]).expect(0);
    assert_eq!(reboots(&machines[1]), 1);
    assert_eq!(reboots(&machines[0]), 1);
}

//! Flags, environment and the env file: precedence, aliases, option placement.

use crate::harness::{Machine, Run, RECORDING_RUN_SH};
use crate::support::{GitDaemon, Upstream};

#[test]
fn the_env_file_configures_a_pass_and_flags_and_environment_win() {
    let up = Upstream::new();
    up.commit(
        &[
            ("run.sh", RECORDING_RUN_SH),
            ("alt.sh", "#!/bin/sh\necho alt >> \"$OUT/runs\"\n"),
        ],
        "init",
    );
    let daemon = GitDaemon::serve(&up.srv());
    let m = Machine::new();
    std::fs::write(
        &m.config,
        format!(
            "# written by install-units\nGITOPS_REPO_URL={}\nGITOPS_ENTRYPOINT='alt.sh'\nGITOPS_APPLY=always\n",
            daemon.url("config.git")
        ),
    )
    .unwrap();
    // The file alone.
    m.run(&["sync"]).expect(0);
    assert_eq!(m.runs(), ["alt"]);
    // The process environment beats the file.
    let mut cmd = m.command();
    cmd.arg("sync").env("GITOPS_ENTRYPOINT", "run.sh");
    assert!(cmd.status().unwrap().success());
    assert_eq!(m.runs().len(), 2);
    assert!(m.runs()[1].ends_with(&m.checkout.display().to_string()));
    // A flag beats both.
    let mut cmd = m.command();
    cmd.args(["sync", "--entrypoint", "alt.sh"])
        .env("GITOPS_ENTRYPOINT", "run.sh");
    assert!(cmd.status().unwrap().success());
    assert_eq!(m.runs()[2], "alt");
}

#[test]
fn repo_url_is_an_alias_and_a_missing_explicit_config_is_an_error() {
    let up = Upstream::new();
    let commit = up.commit(&[("run.sh", RECORDING_RUN_SH)], "init");
    let daemon = GitDaemon::serve(&up.srv());
    let m = Machine::new();
    let mut cmd = m.command();
    cmd.arg("sync").env("REPO_URL", daemon.url("config.git"));
    assert!(cmd.status().unwrap().success());
    assert_eq!(m.applied().as_deref(), Some(commit.as_str()));

    let missing = m.dir.path().join("nope.env");
    let run = m
        .run(&["--config", missing.to_str().unwrap(), "status"])
        .expect(2);
    assert!(run.error_line().contains("nope.env"));

    std::fs::write(&m.config, "this is not an assignment\n").unwrap();
    let run = m.run(&["status"]).expect(2);
    assert!(run.error_line().contains("line 1"));
}

#[test]
fn repo_url_in_the_environment_beats_either_spelling_in_the_file() {
    let up = Upstream::new();
    let commit = up.commit(&[("run.sh", RECORDING_RUN_SH)], "init");
    let daemon = GitDaemon::serve(&up.srv());
    let m = Machine::new();
    let port = crate::support::free_port();
    std::fs::write(
        &m.config,
        format!("GITOPS_REPO_URL=git://127.0.0.1:{port}/nowhere.git\n"),
    )
    .unwrap();
    let mut cmd = m.command();
    cmd.arg("sync").env("REPO_URL", daemon.url("config.git"));
    Run::of(&mut cmd).expect(0);
    assert_eq!(m.applied().as_deref(), Some(commit.as_str()));

    // An empty variable is no URL at all: the file's applies.
    std::fs::write(
        &m.config,
        format!("GITOPS_REPO_URL={}\n", daemon.url("config.git")),
    )
    .unwrap();
    let mut cmd = m.command();
    cmd.arg("sync")
        .env("REPO_URL", "")
        .env("GITOPS_REPO_URL", "");
    Run::of(&mut cmd).expect(0);
}

#[test]
fn a_missing_default_config_file_is_fine() {
    if std::path::Path::new("/etc/gitops/gitops.env").exists() {
        eprintln!("skipped: this host has /etc/gitops/gitops.env");
        return;
    }
    let up = Upstream::new();
    let commit = up.commit(&[("run.sh", RECORDING_RUN_SH)], "init");
    let daemon = GitDaemon::serve(&up.srv());
    let m = Machine::new();
    let mut cmd = m.command();
    cmd.env_remove("GITOPS_CONFIG")
        .args(["sync", "--repo-url", &daemon.url("config.git")]);
    Run::of(&mut cmd).expect(0);
    assert_eq!(m.applied().as_deref(), Some(commit.as_str()));
}

#[test]
fn status_json_has_the_documented_schema() {
    let up = Upstream::new();
    let commit = up.commit(&[("run.sh", RECORDING_RUN_SH)], "Subject line\n\nbody");
    let daemon = GitDaemon::serve(&up.srv());
    let m = Machine::new();
    // Before any pass: unhealthy, and still valid JSON.
    let run = m.run(&["status", "--json"]).expect(1);
    let empty: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(empty["applied"].is_null());

    m.sync(&daemon.url("config.git"), &[]).expect(0);
    let run = m.run(&["status", "--json"]).expect(0);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    for key in [
        "repo_url",
        "branch",
        "applied",
        "last_pass",
        "pending",
        "consecutive_failures",
    ] {
        assert!(json.get(key).is_some(), "status --json lacks {key}: {json}");
    }
    for key in ["commit", "applied_at", "log"] {
        assert!(json["applied"].get(key).is_some(), "applied lacks {key}");
    }
    for key in [
        "started_at",
        "finished_at",
        "outcome",
        "remote_commit",
        "error",
    ] {
        assert!(
            json["last_pass"].get(key).is_some(),
            "last_pass lacks {key}"
        );
    }
    assert_eq!(json["applied"]["commit"], commit.as_str());
    let applied_at = json["applied"]["applied_at"].as_str().unwrap();
    assert!(time::OffsetDateTime::parse(
        applied_at,
        &time::format_description::well_known::Rfc3339
    )
    .is_ok());

    let human = m.run(&["status"]).expect(0);
    assert!(
        human.stdout.contains(&commit[..12]) && human.stdout.contains("\"Subject line\""),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("last pass:    applied"),
        "{}",
        human.stdout
    );
}

#[test]
fn reboot_plan_reads_its_options_from_the_env_file() {
    let m = Machine::new();
    std::fs::write(&m.config, "GITOPS_REBOOT_FILE=../outside\n").unwrap();
    let run = m.run(&["reboot-plan", "--dry-run"]).expect(2);
    assert!(
        run.error_line().contains("GITOPS_REBOOT_FILE"),
        "{}",
        run.error_line()
    );
    std::fs::write(&m.config, "GITOPS_REBOOT_FILE=.gitops/reboot\n").unwrap();
    let run = m.run(&["reboot-plan", "--dry-run"]).expect(0);
    assert!(run.stdout.starts_with("none: "), "{}", run.stdout);
}

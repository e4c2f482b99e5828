//! The pass's notifications against a real HTTP receiver on loopback: one event per apply and
//! none for up-to-date passes; failure, reminder and recovery; the outbox keeps what a receiver
//! did not take, sends it exactly once, honours Retry-After, never changes the exit code and
//! never holds the pass past its bound.

use std::time::{Duration, Instant};

use crate::harness::{everything_shown, Machine};
use crate::receiver::{Receiver, Reply};
use crate::support::{GitDaemon, Upstream};

const TOKEN: &str = "s3cr3t-w3bh00k-t0k3n-4f1c";

/// An entry point that says something, so the event carries a log tail.
const TALKING_RUN_SH: &str = "#!/bin/sh\necho \"applying $GITOPS_COMMIT\"\necho done\n";
const FAILING_RUN_SH: &str = "#!/bin/sh\necho \"about to fail\"\nexit 3\n";

struct Fleet {
    up: Upstream,
    first: String,
    _daemon: GitDaemon,
    url: String,
    m: Machine,
}

/// A served repository whose first commit says something, and a machine that notifies `hook`
/// in the json format, through a URL file (mode 0600) so the token is in no env file.
fn fleet(hook: &str) -> Fleet {
    let up = Upstream::new();
    let first = up.commit(&[("run.sh", TALKING_RUN_SH)], "first: say hello");
    let daemon = GitDaemon::serve(&up.srv());
    let url = daemon.url("config.git");
    let m = Machine::new();
    let file = m.dir.path().join("notify-url");
    std::fs::write(&file, format!("{hook}\n")).unwrap();
    crate::harness::chmod(&file, 0o600);
    std::fs::write(
        &m.config,
        format!(
            "GITOPS_NOTIFY_URL_FILE={}\nGITOPS_NOTIFY_FORMAT=json\n",
            file.display()
        ),
    )
    .unwrap();
    Fleet {
        up,
        first,
        _daemon: daemon,
        url,
        m,
    }
}

fn events(r: &Receiver) -> Vec<serde_json::Value> {
    r.requests()
        .iter()
        .map(|req| serde_json::from_slice(&req.body).unwrap())
        .collect()
}

fn outbox_len(m: &Machine) -> usize {
    crate::harness::names(&m.state.join("outbox"))
        .iter()
        .filter(|n| n.ends_with(".json"))
        .count()
}

#[test]
fn one_event_per_apply_with_the_commit_and_the_log_and_none_when_up_to_date() {
    let r = Receiver::start(vec![]);
    let f = fleet(&r.url(&format!("/hooks/{TOKEN}")));
    let first = f.first.clone();
    f.m.sync(&f.url, &[]).expect(0);
    let got = events(&r);
    assert_eq!(got.len(), 1, "{got:?}");
    let e = &got[0];
    assert_eq!(e["version"], 1);
    assert_eq!(e["event"], "applied");
    assert_eq!(e["outcome"], "applied");
    assert_eq!(e["commit"], first.as_str());
    assert_eq!(e["subject"], "first: say hello");
    assert_eq!(e["exit_code"], 0);
    assert!(e["previous_commit"].is_null());
    assert_eq!(e["id"].as_str().unwrap().len(), 32);
    let tail = e["log_tail"].as_str().unwrap();
    assert!(tail.contains(&format!("applying {first}")), "{tail}");
    let req = &r.requests()[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, format!("/hooks/{TOKEN}"));

    for _ in 0..3 {
        f.m.sync(&f.url, &[]).expect(0);
    }
    assert_eq!(r.requests().len(), 1, "up-to-date passes tell nothing");
    assert_eq!(outbox_len(&f.m), 0);

    let second =
        f.up.commit(&[("run.sh", &format!("{TALKING_RUN_SH}# 2\n"))], "second");
    f.m.sync(&f.url, &[]).expect(0);
    let got = events(&r);
    assert_eq!(got.len(), 2);
    assert_eq!(got[1]["commit"], second.as_str());
    assert_eq!(got[1]["previous_commit"], first.as_str());
    assert_ne!(got[0]["id"], got[1]["id"]);
}

#[test]
fn a_failure_is_told_once_reminded_hourly_and_its_end_is_told() {
    let r = Receiver::start(vec![]);
    let f = fleet(&r.url(&format!("/hooks/{TOKEN}")));
    f.m.sync(&f.url, &[]).expect(0);
    let broken = f.up.commit(&[("run.sh", FAILING_RUN_SH)], "break it");
    f.m.sync(&f.url, &[]).expect(1);
    f.m.sync(&f.url, &[]).expect(1);
    let got = events(&r);
    assert_eq!(got.len(), 2, "the first failure only: {got:?}");
    let failed = &got[1];
    assert_eq!(failed["event"], "apply-failed");
    assert_eq!(failed["commit"], broken.as_str());
    assert_eq!(failed["attempt"], 1);
    assert_eq!(failed["reminder"], false);
    assert_eq!(failed["exit_code"], 1);
    assert!(failed["error"].as_str().unwrap().contains("status 3"));
    assert!(failed["log_tail"]
        .as_str()
        .unwrap()
        .contains("about to fail"));

    // An hour later (the failure's record moved back), a reminder.
    let state_file = f.m.state.join("state.json");
    let mut state = f.m.state_json();
    state["notify"]["told"]["at"] = "2020-01-01T00:00:00Z".into();
    std::fs::write(&state_file, serde_json::to_vec(&state).unwrap()).unwrap();
    f.m.sync(&f.url, &[]).expect(1);
    let got = events(&r);
    assert_eq!(got.len(), 3);
    assert_eq!(got[2]["event"], "apply-failed");
    assert_eq!(got[2]["reminder"], true);
    assert_eq!(got[2]["attempt"], 3);
    f.m.sync(&f.url, &[]).expect(1);
    assert_eq!(r.requests().len(), 3, "one reminder an hour");

    let fixed = f.up.commit(&[("run.sh", TALKING_RUN_SH)], "fix it");
    f.m.sync(&f.url, &[]).expect(0);
    let got = events(&r);
    assert_eq!(got.len(), 4);
    assert_eq!(got[3]["event"], "applied");
    assert_eq!(got[3]["commit"], fixed.as_str());

    // A configuration error, then the first good pass after it: recovered.
    let missing = f.m.dir.path().join("no_known_hosts");
    f.m.sync(&f.url, &["--known-hosts", missing.to_str().unwrap()])
        .expect(2);
    f.m.sync(&f.url, &[]).expect(0);
    let got = events(&r);
    let kinds: Vec<&str> = got.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "applied",
            "apply-failed",
            "apply-failed",
            "applied",
            "config-error",
            "recovered"
        ]
    );
    assert_eq!(got[4]["exit_code"], 2);
    assert!(got[4]["error"].as_str().unwrap().contains("known_hosts"));
}

#[test]
fn an_event_a_receiver_failed_to_take_arrives_with_the_next_pass_exactly_once() {
    let r = Receiver::start(vec![Reply::status(500)]);
    let f = fleet(&r.url(&format!("/hooks/{TOKEN}")));
    let run = f.m.sync(&f.url, &[]).expect(0);
    assert!(run.stderr.contains("500"), "{}", run.stderr);
    assert_eq!(outbox_len(&f.m), 1);
    let status = f.m.run(&["status"]);
    assert!(status.stdout.contains("500"), "{}", status.stdout);
    let state = f.m.state_json();
    assert!(state["notify"]["last_error"]
        .as_str()
        .unwrap()
        .contains("500"));

    f.m.sync(&f.url, &[]).expect(0);
    f.m.sync(&f.url, &[]).expect(0);
    let got = events(&r);
    assert_eq!(got.len(), 2, "sent, refused, sent again once: {got:?}");
    assert_eq!(got[0]["id"], got[1]["id"], "the resend is recognisable");
    assert_eq!(outbox_len(&f.m), 0);
    let state = f.m.state_json();
    assert!(state["notify"]["last_error"].is_null(), "{state}");
    assert_eq!(state["notify"]["delivered_total"], 1);
    let shown = everything_shown(&f.m, &run);
    assert!(!shown.contains(TOKEN), "{shown}");
}

#[test]
fn a_retry_after_is_honoured() {
    let r = Receiver::start(vec![Reply::Status(
        429,
        vec![("Retry-After".into(), "3600".into())],
        Vec::new(),
    )]);
    let f = fleet(&r.url(&format!("/hooks/{TOKEN}")));
    f.m.sync(&f.url, &[]).expect(0);
    f.m.sync(&f.url, &[]).expect(0);
    assert_eq!(r.requests().len(), 1, "nothing sent before Retry-After");
    assert_eq!(outbox_len(&f.m), 1);
    let until = f.m.state_json()["notify"]["wait_until"]
        .as_object()
        .unwrap()
        .clone();
    assert_eq!(until.len(), 1, "{until:?}");

    // The hour has passed.
    let state_file = f.m.state.join("state.json");
    let mut state = f.m.state_json();
    let key = until.keys().next().unwrap().clone();
    state["notify"]["wait_until"][&key] = "2020-01-01T00:00:00Z".into();
    std::fs::write(&state_file, serde_json::to_vec(&state).unwrap()).unwrap();
    f.m.sync(&f.url, &[]).expect(0);
    assert_eq!(r.requests().len(), 2);
    assert_eq!(outbox_len(&f.m), 0);
}

#[test]
fn a_receiver_that_hangs_or_refuses_never_changes_the_exit_code_or_holds_the_pass() {
    let hanging = Receiver::start(vec![Reply::Hang, Reply::Hang, Reply::Hang]);
    let refusing = Receiver::refusing("/hooks/other");
    let f = fleet(&hanging.url(&format!("/hooks/{TOKEN}")));
    // Both destinations: the hanging one first.
    let file = f.m.dir.path().join("notify-url");
    std::fs::write(
        &file,
        format!(
            "{}\n{}\n",
            hanging.url(&format!("/hooks/{TOKEN}")),
            refusing
        ),
    )
    .unwrap();
    let started = Instant::now();
    let run = f.m.sync(&f.url, &[]).expect(0);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(14), "the pass took {took:?}");
    assert!(run.stderr.contains("gitops: applying"), "{}", run.stderr);
    assert_eq!(outbox_len(&f.m), 1);
    let state = f.m.state_json();
    assert_eq!(state["last_pass"]["outcome"], "applied");

    // A failing apply keeps its own code.
    f.up.commit(&[("run.sh", FAILING_RUN_SH)], "break it");
    let started = Instant::now();
    f.m.sync(&f.url, &[]).expect(1);
    assert!(started.elapsed() < Duration::from_secs(14));
    assert_eq!(outbox_len(&f.m), 2);
}

#[test]
fn the_outbox_is_bounded_and_counts_what_it_drops() {
    let refusing = Receiver::refusing(&format!("/hooks/{TOKEN}"));
    let f = fleet(&refusing);
    f.m.sync(&f.url, &[]).expect(0);
    assert_eq!(outbox_len(&f.m), 1);
    let dir = f.m.state.join("outbox");
    let name = crate::harness::names(&dir).pop().unwrap();
    let one: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(&name)).unwrap()).unwrap();
    // 210 more, one of them from two weeks ago.
    for i in 0..210 {
        let mut e = one.clone();
        let id = format!("{i:032x}");
        e["event"]["id"] = id.clone().into();
        let at = if i == 0 {
            "2020-01-01T00:00:00Z".to_string()
        } else {
            e["queued_at"].as_str().unwrap().to_string()
        };
        e["queued_at"] = at.clone().into();
        let stamp: String = at.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        std::fs::write(
            dir.join(format!("{stamp}-{id}.json")),
            serde_json::to_vec(&e).unwrap(),
        )
        .unwrap();
    }
    f.up.commit(&[("run.sh", &format!("{TALKING_RUN_SH}# 2\n"))], "second");
    let run = f.m.sync(&f.url, &[]).expect(0);
    assert!(run.stderr.contains("dropped"), "{}", run.stderr);
    assert_eq!(outbox_len(&f.m), 200);
    assert_eq!(f.m.state_json()["notify"]["dropped_total"], 12);
    assert!(
        !dir.join("20200101T000000Z-".to_string() + &format!("{:032x}.json", 0))
            .exists(),
        "the oldest went first"
    );
}

#[test]
fn the_token_the_password_and_the_key_show_nowhere_a_pass_writes() {
    const PASSWORD: &str = "pa55w0rd-0f-the-h00k";
    const KEY: &str = "hmac-k3y-n0b0dy-sh0uld-s33";
    let r = Receiver::start(vec![Reply::Status(
        500,
        vec![],
        format!("no such hook /hooks/{TOKEN} for user:{PASSWORD}").into_bytes(),
    )]);
    let f = fleet(&r.url(&format!("/hooks/{TOKEN}")));
    let hook = r
        .url(&format!("/hooks/{TOKEN}"))
        .replace("http://", &format!("http://user:{PASSWORD}@"));
    std::fs::write(f.m.dir.path().join("notify-url"), format!("{hook}\n")).unwrap();
    let key = f.m.dir.path().join("hmac.key");
    std::fs::write(&key, format!("{KEY}\n")).unwrap();
    crate::harness::chmod(&key, 0o600);
    let metrics = f.m.dir.path().join("metrics");
    std::fs::create_dir(&metrics).unwrap();
    let args = [
        "--notify-secret-file",
        key.to_str().unwrap(),
        "--metrics-dir",
        metrics.to_str().unwrap(),
    ];
    let run = f.m.sync(&f.url, &args).expect(0);
    assert_eq!(outbox_len(&f.m), 1, "the event waits after the 500");
    let mut shown = everything_shown(&f.m, &run);
    shown.push_str(&f.m.run(&["status", "--prometheus"]).stdout);
    shown.push_str(&std::fs::read_to_string(metrics.join("gitops.prom")).unwrap());
    let outbox = f.m.state.join("outbox");
    for name in crate::harness::names(&outbox) {
        shown.push_str(&std::fs::read_to_string(outbox.join(name)).unwrap());
    }
    let again = f.m.sync(&f.url, &args).expect(0);
    shown.push_str(&again.stderr);
    assert_eq!(r.requests().len(), 2);
    for req in r.requests() {
        shown.push_str(&String::from_utf8_lossy(&req.body));
        for (name, value) in &req.headers {
            if name != "authorization" {
                shown.push_str(&format!("{name}: {value}\n"));
            }
        }
        assert!(req.header("x-gitops-signature").is_some());
    }
    assert!(shown.contains("127.0.0.1"), "{shown}");
    for secret in [TOKEN, PASSWORD, KEY] {
        assert!(!shown.contains(secret), "{secret} shows in:\n{shown}");
    }
}

#[test]
fn discord_and_slack_get_the_commit_and_the_log_of_each_apply() {
    let discord = Receiver::start(vec![]);
    let slack = Receiver::start(vec![]);
    let f = fleet(&discord.url(&format!("/api/webhooks/1/{TOKEN}")));
    let failing = format!("{FAILING_RUN_SH}# {}\n", "x".repeat(10));
    let broken = f.up.commit(&[("run.sh", &failing)], "break <@everyone> it");
    // Formats by flag: auto tells them apart by host, and here both are 127.0.0.1.
    std::fs::write(&f.m.config, "").unwrap();
    let discord_url = discord.url(&format!("/api/webhooks/1/{TOKEN}"));
    let slack_url = slack.url(&format!("/services/{TOKEN}"));
    let to_discord = ["--notify-url", &discord_url, "--notify-format", "discord"];
    let to_slack = ["--notify-url", &slack_url, "--notify-format", "slack"];
    f.m.sync(&f.url, &to_discord).expect(1);
    f.m.sync(&f.url, &to_slack).expect(1);

    let requests = discord.requests();
    assert_eq!(requests.len(), 1);
    let parts = crate::notify::multipart(&requests[0]);
    let payload = parts
        .iter()
        .find(|(head, _)| head.contains("name=\"payload_json\""))
        .unwrap();
    let payload: serde_json::Value = serde_json::from_slice(&payload.1).unwrap();
    let text = payload.to_string();
    assert!(text.contains(&broken[..7]), "{text}");
    assert!(text.contains("apply-failed"), "{text}");
    assert!(text.contains("break"), "{text}");
    assert_eq!(payload["allowed_mentions"]["parse"], serde_json::json!([]));
    let file = parts
        .iter()
        .find(|(head, _)| head.contains("name=\"files[0]\""))
        .unwrap();
    assert!(String::from_utf8_lossy(&file.1).contains("about to fail"));

    // The second pass failed the same commit again within the hour: nothing new to tell, and
    // the first event had left the outbox (every destination of its pass had it).
    assert_eq!(slack.requests().len(), 0);
    f.up.commit(&[("run.sh", TALKING_RUN_SH)], "fix it");
    f.m.sync(&f.url, &to_slack).expect(0);
    let requests = slack.requests();
    assert_eq!(requests.len(), 1);
    let body: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert!(body["text"].as_str().unwrap().contains("applied"), "{body}");
    assert!(body["blocks"].to_string().contains("applying"), "{body}");
}

#[test]
fn a_webhook_url_in_the_environment_never_reaches_the_entry_point_or_the_log_sent() {
    let r = Receiver::start(vec![]);
    let up = Upstream::new();
    up.commit(
        &[(
            "run.sh",
            "#!/bin/sh\nset -x\nenv\necho \"hook: $GITOPS_NOTIFY_URL\"\n",
        )],
        "print everything",
    );
    let daemon = GitDaemon::serve(&up.srv());
    let m = Machine::new();
    // As systemd's EnvironmentFile= passes it: in the process's environment.
    let mut cmd = m.command();
    cmd.env(
        "GITOPS_NOTIFY_URL",
        r.url(&format!("/api/webhooks/1/{TOKEN}")),
    )
    .args(["sync", "--notify-format", "discord", "--repo-url"])
    .arg(daemon.url("config.git"));
    let run = crate::harness::Run::of(&mut cmd).expect(0);
    let req = &r.wait_for_requests(1, Duration::from_secs(5))[0];
    let body = String::from_utf8_lossy(&req.body);
    assert!(
        body.contains("GITOPS_COMMIT="),
        "the log is attached: {body}"
    );
    assert!(!body.contains(TOKEN), "{body}");
    assert!(!run.stdout.contains(TOKEN), "{}", run.stdout);
    let shown = everything_shown(&m, &run);
    assert!(!shown.contains(TOKEN), "{shown}");
}

#[test]
fn receivers_that_hang_do_not_keep_the_next_one_from_its_event() {
    let first = Receiver::start(vec![Reply::Hang, Reply::Hang]);
    let second = Receiver::start(vec![Reply::Hang, Reply::Hang]);
    let healthy = Receiver::start(vec![]);
    let f = fleet(&first.url(&format!("/hooks/{TOKEN}")));
    std::fs::write(
        f.m.dir.path().join("notify-url"),
        format!(
            "{}\n{}\n{}\n",
            first.url(&format!("/hooks/{TOKEN}")),
            second.url(&format!("/hooks/{TOKEN}")),
            healthy.url(&format!("/hooks/{TOKEN}")),
        ),
    )
    .unwrap();
    let started = Instant::now();
    f.m.sync(&f.url, &[]).expect(0);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(14), "the pass took {took:?}");
    assert_eq!(
        events(&healthy).len(),
        1,
        "the healthy receiver has its event"
    );
    assert_eq!(outbox_len(&f.m), 1, "kept for the two that hang");
}
